"""A catalogue of bad inputs: each ends in a ``GuardtrainError`` with its exact ``[GT...]``
code and a non-empty Fix, before anything starts — never in a raw TensorFlow, NumPy or
pyarrow exception. One test id per case, in three lists:

- ``CASES``: the data against the model, through ``guardtrain.checking.check`` and through
  ``guardtrain.fit`` (which checks first);
- ``CONFIG_CASES``: the configs and ``fit``'s own arguments, refused before any data is read;
- ``JOB_CASES``: JOB files written to ``tmp_path``, through ``parse_job`` (keys and values)
  and ``load_job`` (the data files).
"""

import re

import numpy as np
import pytest

from guardtrain.core.errors import GuardtrainError, InputSpecError
from guardtrain.core.guard_config import GuardConfig
from guardtrain.core.launch_config import LaunchConfig
from guardtrain.core.rescue_config import RescueConfig
from tests.helpers import class_data, classifier, conv_classifier

pytestmark = pytest.mark.tf

N = 64
X, Y3 = class_data(N)           # 4 features, classes 0, 1, 2 in turn
RNG = np.random.default_rng(0)  # the other draws of the cases


def _two_inputs():
    import keras

    a, b = keras.Input((4,), name="a"), keras.Input((2,), name="b")
    out = keras.layers.Dense(1)(keras.layers.Concatenate()([a, b]))
    model = keras.Model({"a": a, "b": b}, out)
    model.compile("sgd", "mse")
    return model


def _frozen():
    model = classifier(compile=False)
    model.trainable = False
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def _no_loss():
    model = classifier(compile=False)
    model.compile("adam")
    return model


def _ds(x=X, y=Y3, batch=16):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y) if y is not None else x)
    return ds.batch(batch) if batch else ds


def _parquet(tmp_path, **kw):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from guardtrain.data import parquet

    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "d": X[:, 3],
                             "name": ["n"] * N, "y": Y3}), tmp_path / "t.parquet")
    return parquet(tmp_path, **kw)


def _raise(ctx):
    raise RuntimeError("bucket not found")


def _dataset_fn(ctx):
    return _ds()


def _builder_raises():
    raise FileNotFoundError("weights.h5")


def _no_weights():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Flatten()])
    model.compile("sgd", "mse")
    return model


def _channels_first_model():
    import keras

    model = keras.Sequential([keras.Input((1, 28, 28)),
                              keras.layers.Conv2D(2, 3, data_format="channels_first"),
                              keras.layers.Flatten(), keras.layers.Dense(10, "softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def _parquet_empty(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from guardtrain.data import parquet

    pq.write_table(pa.table({"a": pa.array([], pa.float32()), "y": pa.array([], pa.int64())}),
                   tmp_path / "empty.parquet")
    return parquet(tmp_path / "empty.parquet", features=["a"], label="y")


def _parquet_text(tmp_path):
    from guardtrain.data import parquet

    (tmp_path / "t.parquet").write_text("a,b,y\n1,2,0\n")
    return parquet(tmp_path / "t.parquet", features=["a", "b"], label="y")


def _parquet_ragged(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from guardtrain.data import parquet

    rows = [[0.1, 0.2, 0.3, 0.4]] * (N - 1) + [[0.1, 0.2]]
    pq.write_table(pa.table({"v": rows, "y": Y3}), tmp_path / "v.parquet")
    return parquet(tmp_path / "v.parquet", features="v", label="y")


# (id, code, build) where build(tmp_path) -> (model, x, y, kwargs)
CASES = [
    ("conv-fed-flat-images", "GT201",
     lambda t: (conv_classifier(), RNG.random((N, 784), dtype=np.float32), np.arange(N) % 10, {})),
    ("wrong-feature-count", "GT201", lambda t: (classifier(), X[:, :3], Y3, {})),
    ("channels-first-images", "GT202",
     lambda t: (conv_classifier(), RNG.random((N, 1, 28, 28), dtype=np.float32),
                np.arange(N) % 10, {})),
    ("x-y-count-mismatch", "GT203", lambda t: (classifier(), X, Y3[:50], {})),
    ("dict-missing-input", "GT204", lambda t: (_two_inputs(), {"a": X}, RNG.random(N), {})),
    ("one-array-for-two-inputs", "GT204", lambda t: (_two_inputs(), X, RNG.random(N), {})),
    ("one-based-labels", "GT205", lambda t: (classifier(units=10), X, np.arange(N) % 10 + 1, {})),
    ("labels-above-width", "GT205", lambda t: (classifier(), X, np.arange(N) % 7, {})),
    ("negative-labels", "GT205", lambda t: (classifier(), X, Y3 - 1, {})),
    ("one-hot-with-sparse-loss", "GT206", lambda t: (classifier(), X, np.eye(3)[Y3], {})),
    ("ids-with-categorical-loss", "GT207",
     lambda t: (classifier(loss="categorical_crossentropy"), X, Y3, {})),
    ("one-hot-width-mismatch", "GT208",
     lambda t: (classifier(loss="categorical_crossentropy"), X, np.eye(5)[np.arange(N) % 5], {})),
    ("binary-labels-0-1-2", "GT209",
     lambda t: (classifier(units=1, activation="sigmoid", loss="binary_crossentropy"), X, Y3, {})),
    ("binary-loss-wide-output", "GT210",
     lambda t: (classifier(units=10, activation="sigmoid", loss="binary_crossentropy"), X,
                np.arange(N) % 2, {})),
    ("one-unit-softmax", "GT211",
     lambda t: (classifier(units=1, activation="softmax", loss="binary_crossentropy"), X,
                np.arange(N) % 2, {})),
    ("softmax-with-from-logits", "GT212",
     lambda t: (classifier(loss=__import__("keras").losses.SparseCategoricalCrossentropy(
         from_logits=True)), X, Y3, {})),
    ("relu-output-cross-entropy", "GT217",
     lambda t: (classifier(activation="relu"), X, Y3, {})),
    ("relu-output-binary-cross-entropy", "GT217",
     lambda t: (classifier(units=1, activation="relu", loss="binary_crossentropy"), X,
                np.arange(N) % 2, {})),
    ("continuous-ids-sparse-loss", "GT214", lambda t: (classifier(), X, RNG.random(N) * 2, {})),
    ("single-class", "GT215", lambda t: (classifier(), X, np.ones(N, int), {})),
    ("regression-labels-broadcast", "GT216",
     lambda t: (classifier(units=1, activation="linear", loss="mse"), X, RNG.random((N, 3)), {})),
    ("string-features", "GT220",
     lambda t: (classifier(), np.array([["a", "b", "c", "d"]] * N), Y3, {})),
    ("object-number-features", "GT220", lambda t: (classifier(), X.astype(object), Y3, {})),
    ("string-labels", "GT223",
     lambda t: (classifier(), X, np.array(["cat", "dog", "eel"] * 21 + ["cat"]), {})),
    ("nan-features", "GT230", lambda t: (classifier(), np.where(X > 0.9, np.nan, X), Y3, {})),
    ("inf-labels", "GT231",
     lambda t: (classifier(units=1, activation="linear", loss="mse"), X,
                np.r_[RNG.random(N - 1), np.inf], {})),
    ("all-constant-features", "GT232", lambda t: (classifier(), np.zeros((N, 4)), Y3, {})),
    ("fewer-samples-than-replicas", "GT240",
     lambda t: (classifier(), X[:1], Y3[:1], {"launch": LaunchConfig(cpu_replicas=2)})),
    ("batch-not-divisible", "GT241",
     lambda t: (classifier(), X, Y3, {"batch_size": 15, "launch": LaunchConfig(cpu_replicas=2)})),
    ("zero-per-replica", "GT243",
     lambda t: (classifier(), X, Y3, {"batch_size": 1, "launch": LaunchConfig(cpu_replicas=2)})),
    ("batch-size-zero", "GT244", lambda t: (classifier(), X, Y3, {"batch_size": 0})),
    ("not-compiled", "GT250", lambda t: (classifier(compile=False), X, Y3, {})),
    ("all-frozen", "GT251", lambda t: (_frozen(), X, Y3, {})),
    ("builder-returns-none", "GT253", lambda t: (lambda: None, X, Y3, {})),
    ("model-is-a-path", "GT253", lambda t: ("model.keras", X, Y3, {})),
    ("compiled-without-loss", "GT254", lambda t: (_no_loss(), X, Y3, {})),
    ("dataset-object-to-workers", "GT260",
     lambda t: (classifier(), _ds(), None, {"launch": LaunchConfig(workers=2)})),
    ("parquet-missing-column", "GT262",
     lambda t: (classifier(), _parquet(t, features=["a", "b", "c", "e"], label="y"), None, {})),
    ("parquet-string-column", "GT263",
     lambda t: (classifier(), _parquet(t, features=["a", "b", "c", "name"], label="y"), None, {})),
    ("parquet-no-files", "GT270",
     lambda t: (classifier(), __import__("guardtrain.data").data.parquet(
         t / "missing-*.parquet", features=["a"], label="y"), None, {})),
    ("dataset-fn-raises", "GT270",
     lambda t: (classifier(), _raise, None, {"steps_per_epoch": 4})),
    ("unbatched-dataset", "GT271", lambda t: (classifier(), _ds(batch=None), None, {})),
    ("arrays-without-y", "GT272", lambda t: (classifier(), X, None, {})),
    ("y-with-dataset", "GT273", lambda t: (classifier(), _ds(), Y3, {})),
    ("empty-arrays", "GT274", lambda t: (classifier(), X[:0], Y3[:0], {})),
    # -- structure and shapes --------------------------------------------------------------
    ("dict-key-not-the-input-name", "GT204",
     lambda t: (classifier(), {"features": X}, Y3, {})),
    ("dict-key-not-the-output-name", "GT204",
     lambda t: (classifier(), X, {"labels": Y3}, {})),
    ("three-arrays-for-two-inputs", "GT204",
     lambda t: (_two_inputs(), [X, X[:, :2], X], RNG.random(N), {})),
    ("sequences-into-a-dense-model", "GT201",
     lambda t: (classifier(), RNG.random((N, 4, 2), dtype=np.float32), Y3, {})),
    ("channels-last-into-channels-first", "GT202",
     lambda t: (_channels_first_model(), RNG.random((N, 28, 28, 1), dtype=np.float32),
                np.arange(N) % 10, {})),
    ("ragged-list-features", "GT275",
     lambda t: (classifier(), [[0.1, 0.2, 0.3, 0.4]] * (N - 1) + [[0.1, 0.2]], Y3, {})),
    ("ragged-list-labels", "GT275",
     lambda t: (classifier(), X, [[0]] * (N - 1) + [[0, 1]], {})),
    # -- validation data given as a list, as Keras allows ----------------------------------
    ("validation-list-wrong-features", "GT201",
     lambda t: (classifier(), X, Y3, {"validation_data": [X[:, :3], Y3]})),
    ("validation-list-count-mismatch", "GT203",
     lambda t: (classifier(), X, Y3, {"validation_data": [X, Y3[:10]]})),
    ("validation-without-labels", "GT272",
     lambda t: (classifier(), X, Y3, {"validation_data": (X, None)})),
    # -- labels and losses -----------------------------------------------------------------
    ("categorical-loss-one-unit", "GT208",
     lambda t: (classifier(units=1, activation="sigmoid", loss="categorical_crossentropy"),
                X, np.arange(N) % 2, {})),
    ("minus-one-plus-one-labels", "GT209",
     lambda t: (classifier(units=1, activation="sigmoid", loss="binary_crossentropy"), X,
                np.where(np.arange(N) % 2, 1, -1), {})),
    ("sigmoid-with-from-logits", "GT212",
     lambda t: (classifier(units=1, activation="sigmoid",
                           loss=__import__("keras").losses.BinaryCrossentropy(from_logits=True)),
                X, np.arange(N) % 2, {})),
    ("datetime-features", "GT220",
     lambda t: (classifier(), np.full((N, 4), np.datetime64("2024-01-01")), Y3, {})),
    # -- batches, the model ----------------------------------------------------------------
    ("dataset-batch-not-divisible", "GT241",
     lambda t: (classifier(), _ds(batch=15), None, {"launch": LaunchConfig(cpu_replicas=2)})),
    ("model-without-weights", "GT251", lambda t: (_no_weights(), X, X, {})),
    ("builder-raises", "GT253", lambda t: (_builder_raises, X, Y3, {})),
    # -- sources ---------------------------------------------------------------------------
    ("x-is-none", "GT270", lambda t: (classifier(), None, None, {})),
    ("dataset-fn-returns-an-array", "GT270",
     lambda t: (classifier(), lambda ctx: X, None, {"steps_per_epoch": 2})),
    ("dataset-without-labels", "GT272", lambda t: (classifier(), _ds(y=None), None, {})),
    ("empty-dataset", "GT274", lambda t: (classifier(), _ds().take(0), None, {})),
    ("dataset-fn-without-steps", "GT102",
     lambda t: (classifier(), _dataset_fn, None, {"steps_per_epoch": None})),
    ("repeated-dataset-without-steps", "GT102",
     lambda t: (classifier(), _ds().repeat(), None, {"steps_per_epoch": None})),
    # -- Parquet ---------------------------------------------------------------------------
    ("parquet-without-label", "GT272",
     lambda t: (classifier(), _parquet(t, features=["a", "b", "c", "d"]), None, {})),
    ("parquet-ragged-list-column", "GT263",
     lambda t: (classifier(), _parquet_ragged(t), None, {})),
    ("parquet-no-rows", "GT274", lambda t: (classifier((1,)), _parquet_empty(t), None, {})),
    ("parquet-file-is-text", "GT270",
     lambda t: (classifier((2,)), _parquet_text(t), None, {})),
]

# Where gt.fit stops earlier than check, on its own rule for the same mistake.
FIT_CODES = {"batch-size-zero": "GT108"}


def _fit(**kwargs):
    """gt.fit on good data with one wrong argument: it must stop before anything runs."""
    import guardtrain

    def run(tmp_path):
        guardtrain.fit(classifier(), X, Y3,
                       **{"epochs": 1, "verbose": 0, "run_dir": tmp_path / "run", **kwargs})
    return run


def _ladder(*names):
    from guardtrain.checking.optimizers import check_ladder

    rates = {n: 1e-3 for n in names}
    return lambda t: check_ladder(RescueConfig(optimizer_ladder=names,
                                               optimizer_learning_rates=rates))


# (id, code, run) where run(tmp_path) must raise
CONFIG_CASES = [
    ("launch-gpus-as-text", "GT101", lambda t: LaunchConfig(gpus_per_worker="1")),
    ("launch-workers-float", "GT101", lambda t: LaunchConfig(workers=2.0)),
    ("launch-address-a-port", "GT101", lambda t: LaunchConfig(address=6379)),
    ("launch-storage-path-a-list", "GT101", lambda t: LaunchConfig(storage_path=["/tmp"])),
    ("launch-cpu-replicas-with-workers", "GT101",
     lambda t: LaunchConfig(workers=2, cpu_replicas=2)),
    ("launch-negative-timeout", "GT101", lambda t: LaunchConfig(step_timeout_s=-1)),
    ("guard-window-too-short", "GT110", lambda t: GuardConfig(window_steps=3)),
    ("rescue-zero-attempts", "GT120", lambda t: RescueConfig(max_attempts=0)),
    ("rescue-unknown-optimizer", "GT122", _ladder("sgd", "adamm")),
    ("fit-epochs-zero", "GT108", _fit(epochs=0)),
    ("fit-steps-per-epoch-negative", "GT108", _fit(steps_per_epoch=-1)),
    ("fit-steps-per-loop-fraction", "GT108", _fit(steps_per_loop=1.5)),
    ("fit-batch-size-as-text", "GT108", _fit(batch_size="32")),
    ("fit-epochs-bool", "GT108", _fit(epochs=True)),
    ("fit-shuffle-as-text", "GT108", _fit(shuffle="yes")),
    ("fit-verbose-out-of-range", "GT103", _fit(verbose=5)),
    ("fit-launch-a-string", "GT109", _fit(launch="ray")),
    ("fit-launch-dict-unknown-field", "GT109", _fit(launch={"gpus": 1})),
    ("fit-launch-dict-wrong-value", "GT101", _fit(launch={"workers": "2"})),
    ("fit-guard-a-string", "GT107", _fit(guard="strict")),
    ("fit-rescue-a-number", "GT107", _fit(rescue=3)),
    ("fit-rescue-unknown-optimizer", "GT122",
     _fit(rescue={"optimizer_ladder": ["sgd", "adamw2"],
                  "optimizer_learning_rates": {"sgd": 1e-2, "adamw2": 1e-3}})),
]

_JOB = "model: os.path:join\ndata: {npz: d.npz}\n"


def _job(text=_JOB, *, overrides=(), files=None, load=False):
    """A JOB file with ``text`` in tmp_path (and ``files(tmp_path)`` beside it), read by
    parse_job, or by load_job (which also imports and reads the data)."""
    from guardtrain.interface.jobfile import load_job, parse_job

    def run(tmp_path):
        (tmp_path / "job.yaml").write_text(text)
        if files:
            files(tmp_path)
        (load_job if load else parse_job)(tmp_path / "job.yaml", list(overrides))
    return run


def _npz(tmp_path, **arrays):
    np.savez(tmp_path / "d.npz", **(arrays or {"x": X, "y": Y3}))


def _empty_parquet_file(tmp_path):
    _parquet_empty(tmp_path)


JOB_CASES = [
    ("job-not-yaml", "GT130", _job("model: [unclosed\n")),
    ("job-unknown-key", "GT131", _job(_JOB + "epochz: 3\n")),
    ("job-data-missing", "GT133", _job("model: os.path:join\n")),
    ("job-epochs-as-words", "GT132", _job(_JOB + "epochs: two\n")),
    ("job-steps-per-loop-fraction", "GT132", _job(_JOB + "steps_per_loop: 1.5\n")),
    ("job-two-data-sources", "GT132",
     _job("model: os.path:join\ndata: {npz: d.npz, parquet: d.parquet}\n")),
    ("job-validation-dataset-fn", "GT132",
     _job(_JOB + "validation: {dataset_fn: 'os.path:join'}\n")),
    ("job-guard-a-number", "GT132", _job(_JOB + "guard: 3\n")),
    ("job-import-path-without-colon", "GT134",
     _job("model: tiny_model.build\ndata: {npz: d.npz}\n")),
    ("job-override-without-value", "GT135", _job(overrides=["epochs"])),
    ("job-dataset-fn-without-steps", "GT102",
     _job("model: os.path:join\ndata: {dataset_fn: 'os.path:join'}\n")),
    ("job-launch-gpus-as-text", "GT101", _job(_JOB + "launch: {gpus_per_worker: '1'}\n")),
    ("job-rescue-unknown-optimizer", "GT122",
     _job(_JOB + "rescue: {optimizer_ladder: [sgd, adamm], "
                 "optimizer_learning_rates: {sgd: 0.01, adamm: 0.001}}\n")),
    ("job-model-module-missing", "GT134",
     _job("model: no_such_module_here:build\ndata: {npz: d.npz}\n", files=_npz, load=True)),
    ("job-npz-missing-file", "GT136", _job(load=True)),
    ("job-npz-is-a-text-file", "GT136",
     _job(files=lambda t: (t / "d.npz").write_text("x,y\n1,0\n"), load=True)),
    ("job-npz-missing-array", "GT136",
     _job(files=lambda t: _npz(t, features=X, y=Y3), load=True)),
    ("job-validation-parquet-no-rows", "GT136",
     _job(_JOB + "validation: {parquet: empty.parquet, features: [a], label: y}\n",
          files=lambda t: (_npz(t), _empty_parquet_file(t)), load=True)),
]


def _assert_guarded(err, code):
    """A guardtrain error, with ``code`` itself and a Fix for it."""
    text = str(err)
    assert isinstance(err, GuardtrainError), f"{type(err).__name__}: {text}"
    assert re.search(r"\[GT\d{3}\]", text) and "Fix:" in text, text
    if isinstance(err, InputSpecError):
        fixes = [p.fix for p in err.problems if p.code == code]
        assert fixes and all(f.strip() for f in fixes), text
    else:
        assert err.code == code and (err.fix or "").strip(), text


ALL_CASES = CASES + CONFIG_CASES + JOB_CASES


def test_catalogue_is_large_and_distinct():
    assert len(ALL_CASES) >= 70
    assert len({name for name, _, _ in ALL_CASES}) == len(ALL_CASES)
    assert set(FIT_CODES) <= {name for name, _, _ in CASES}


@pytest.mark.parametrize("name,code,build", CASES, ids=[c[0] for c in CASES])
def test_check_catalogue(name, code, build, tmp_path):
    from guardtrain.checking import check

    model, x, y, kwargs = build(tmp_path)
    with pytest.raises(Exception) as info:
        check(model, x, y, **kwargs)
    _assert_guarded(info.value, code)


@pytest.mark.parametrize("name,code,build", CASES, ids=[c[0] for c in CASES])
def test_fit_catalogue(name, code, build, tmp_path):
    import guardtrain

    model, x, y, kwargs = build(tmp_path)
    with pytest.raises(Exception) as info:
        guardtrain.fit(model, x, y, epochs=1, verbose=0, run_dir=tmp_path / "run", **kwargs)
    _assert_guarded(info.value, FIT_CODES.get(name, code))
    assert not (tmp_path / "run").exists()   # refused before anything started


@pytest.mark.parametrize("name,code,run", CONFIG_CASES + JOB_CASES,
                         ids=[c[0] for c in CONFIG_CASES + JOB_CASES])
def test_config_and_job_catalogue(name, code, run, tmp_path):
    with pytest.raises(Exception) as info:
        run(tmp_path)
    _assert_guarded(info.value, code)


def test_a_text_file_given_as_npz_is_not_called_object_arrays(tmp_path):
    with pytest.raises(GuardtrainError) as info:
        _job(files=lambda t: (t / "d.npz").write_text("x,y\n1,0\n"), load=True)(tmp_path)
    text = str(info.value)
    assert "is not an .npz archive" in text and "text file" in text, text
    assert "object arrays" not in text


def test_an_empty_parquet_source_says_it_holds_no_rows(tmp_path):
    from guardtrain.checking import check

    with pytest.raises(InputSpecError) as info:
        check(classifier((1,)), _parquet_empty(tmp_path))
    text = str(info.value)
    assert "no rows" in text and "pad" not in text, text


def test_validation_data_as_a_list_reads_as_the_tuple(tmp_path):
    from guardtrain.checking import check

    listed = check(classifier(), X, Y3, validation_data=[X, Y3])
    assert listed.warnings == check(classifier(), X, Y3, validation_data=(X, Y3)).warnings
