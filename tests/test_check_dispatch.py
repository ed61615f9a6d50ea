"""Parquet sources (guardtrain.data), their columns (GT262, GT263) and dispatch to Ray
workers (GT260, GT264). The cluster's resources are not an input problem: they are
compared once, at launch (tests/test_resources.py)."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from guardtrain.checking import codes, sources
from guardtrain.checking.dispatch import check_dispatch
from guardtrain.checking.parquet_schema import check_columns
from guardtrain.checking.specs import Inputs
from guardtrain.core.launch_config import LaunchConfig
from guardtrain.data import parquet


@pytest.fixture
def table_dir(tmp_path):
    """Three files of 40 rows, 2 row groups each: columns a, b, vec (list), y, name."""
    rng = np.random.default_rng(0)
    for i in range(3):
        n = 40
        table = pa.table({
            "a": rng.random(n), "b": rng.random(n).astype("float32"),
            "vec": pa.array(list(rng.random((n, 4))), type=pa.list_(pa.float64(), 4)),
            "y": (np.arange(n) + i * n) % 3, "name": ["x"] * n})
        pq.write_table(table, tmp_path / f"part-{i}.parquet", row_group_size=20)
    return tmp_path


@pytest.mark.pure
def test_parquet_resolves_dir_glob_and_file(table_dir):
    assert len(parquet(table_dir, features=["a"]).files) == 3
    assert len(parquet(f"{table_dir}/part-[01].parquet", features=["a"]).files) == 2
    assert len(parquet(table_dir / "part-0.parquet", features=["a"]).files) == 1
    assert parquet(table_dir / "nothing-*.parquet", features=["a"]).files == ()


@pytest.mark.pure
def test_parquet_reads_scalar_columns_and_list_column(table_dir):
    src = parquet(table_dir, features=["a", "b"], label="y")
    x, y = src.read_numpy()
    assert x.shape == (120, 2) and x.dtype == np.float32 and y.shape == (120,)
    vec = parquet(table_dir, features="vec", label="y")
    x, _ = vec.read_numpy()
    assert x.shape == (120, 4)
    assert src.num_rows() == 120 and "y" in src.schema().names


@pytest.mark.pure
def test_parquet_shards_by_file_then_row_group_then_rows(table_dir):
    src = parquet(table_dir, features=["a"], label="y")
    sizes = [len(src.read_numpy(i, 3)[1]) for i in range(3)]
    assert sizes == [40, 40, 40]                     # by file
    sizes = [len(src.read_numpy(i, 6)[1]) for i in range(6)]
    assert sizes == [20] * 6                         # by row group
    sizes = [len(src.read_numpy(i, 7)[1]) for i in range(7)]
    assert sum(sizes) == 120 and min(sizes) > 0      # by rows
    one = parquet(table_dir / "part-0.parquet", features=["a"], label="y")
    assert [len(one.read_numpy(i, 2)[1]) for i in range(2)] == [20, 20]


@pytest.mark.pure
def test_parquet_sample_is_bounded_and_spread(table_dir):
    src = parquet(table_dir, features=["a"], label="y")
    table = src.sample(12)
    assert table.num_rows == 12
    # Spread over row groups of every file, not only the head of the first.
    assert len(set(src.to_numpy(table)[1].tolist())) > 1


@pytest.mark.pure
def test_parquet_columns_missing_and_of_the_wrong_type(table_dir):
    schema = parquet(table_dir, features=["a"]).schema()
    [p] = check_columns(schema, ["a", "bb"], "y")
    assert p.code == codes.PARQUET_MISSING == "GT262" and "did you mean 'b'" in p.fix
    [p] = check_columns(schema, ["a", "name"], "y")
    assert p.code == "GT263" and "string" in p.found
    [p] = check_columns(schema, ["a"], "name")
    assert p.code == "GT263" and "label column" in p.where
    [p] = check_columns(schema, ["a", "vec"], "y")
    assert p.code == "GT263" and "only feature" in p.expected
    assert check_columns(schema, ["vec"], "y") == []


@pytest.mark.pure
def test_parquet_source_through_the_sampler(table_dir):
    inputs, problems = sources.load(parquet(table_dir, features=["a", "b"], label="y"))
    assert problems == [] and inputs.n_rows == 120 and inputs.x[0][1].columns == ("a", "b")
    inputs, [p] = sources.load(parquet(table_dir / "none*.parquet", features=["a"]))
    assert inputs is None and p.code == "GT270"
    _, [p] = sources.load(parquet(table_dir, features=["zz"], label="y"))
    assert p.code == "GT262"


@pytest.mark.pure
def test_dataset_object_cannot_go_to_workers():
    inputs = Inputs(kind="dataset")
    [p] = check_dispatch(inputs, LaunchConfig(workers=2))
    assert p.code == "GT260" and "def dataset_fn(ctx)" in p.fix
    assert check_dispatch(inputs, LaunchConfig()) == []
    assert check_dispatch(Inputs(kind="dataset_fn"), LaunchConfig(workers=2)) == []


@pytest.mark.pure
def test_relative_parquet_path_warns_for_workers(table_dir, monkeypatch):
    monkeypatch.chdir(table_dir)
    relative = parquet("part-*.parquet", features=["a"], label="y")
    inputs = Inputs(kind="parquet", source=relative)
    [p] = check_dispatch(inputs, LaunchConfig(workers=2))
    assert p.code == "GT264" and p.severity == "warning"
    assert os.path.abspath("part-*.parquet") in p.fix
    absolute = Inputs(kind="parquet", source=parquet(table_dir, features=["a"], label="y"))
    assert check_dispatch(absolute, LaunchConfig(workers=2)) == []
    assert check_dispatch(inputs, LaunchConfig()) == []


@pytest.mark.tf
def test_check_with_workers_reports_dataset_object():
    import keras
    import tensorflow as tf
    from guardtrain.checking import check
    from guardtrain.core.errors import InputSpecError

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    ds = tf.data.Dataset.from_tensor_slices((np.random.rand(32, 4), np.random.rand(32)))
    with pytest.raises(InputSpecError, match=r"\[GT260\]"):
        check(model, ds.batch(8), launch=LaunchConfig(workers=2))
    fn = lambda ctx: ds.batch(ctx.get_per_replica_batch_size(8))  # noqa: E731
    report = check(model, fn, launch=LaunchConfig(workers=2))
    assert report.input_kind == "dataset_fn"


@pytest.mark.tf
def test_check_leaves_cluster_resources_to_the_launch():
    import keras
    from guardtrain.checking import check

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.random.rand(64, 4).astype("float32"), np.random.rand(64).astype("float32")
    report = check(model, x, y, batch_size=8, launch=LaunchConfig(workers=2, gpus_per_worker=1))
    assert not [w for w in report.warnings if w.code.startswith("GT26")]
