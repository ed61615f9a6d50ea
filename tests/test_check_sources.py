"""What x/y can be (GT270-GT274), several problems at once, validation data, the report."""

import pickle

import numpy as np
import pytest

from guardtrain.checking import sources
from guardtrain.checking.specs import InputSpec, ModelSpec
from tests.helpers import class_data, classifier

pytestmark = pytest.mark.tf


def test_arrays_without_y_and_empty_arrays():
    x, _ = class_data()
    _, [p] = sources.load(x, None)
    assert p.code == "GT272"
    _, problems = sources.load(np.zeros((0, 4)), np.zeros(0))
    assert [p.code for p in problems] == ["GT274", "GT274"]
    _, [p] = sources.load(None)
    assert p.code == "GT270"


def test_dataset_sampled_with_take():
    import tensorflow as tf

    x, y = class_data()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    inputs, problems = sources.load(ds)
    assert problems == [] and inputs.kind == "dataset" and inputs.batch == 16
    assert inputs.x[0][1].rows.shape == (64, 4) and inputs.y[0][1].rows.shape == (64,)


def test_unbatched_dataset_and_features_only_dataset():
    import tensorflow as tf

    x, y = class_data()
    spec = ModelSpec(inputs=(InputSpec("x", (None, 4)),))
    _, [p] = sources.load(tf.data.Dataset.from_tensor_slices((x, y)), model=spec)
    assert p.code == "GT271" and "dataset.batch(" in p.fix
    _, [p] = sources.load(tf.data.Dataset.from_tensor_slices(x).batch(8), model=spec)
    assert p.code == "GT272"
    _, [p] = sources.load(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), y)
    assert p.code == "GT273"


def test_dataset_function_called_with_an_input_context():
    import tensorflow as tf

    x, y = class_data()
    seen = []

    def dataset_fn(ctx):
        seen.append(ctx)
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(
            ctx.get_per_replica_batch_size(16))

    inputs, problems = sources.load(dataset_fn)
    assert problems == [] and inputs.kind == "dataset_fn"
    assert isinstance(seen[0], tf.distribute.InputContext)

    def broken(ctx):
        raise OSError("no such bucket")

    _, [p] = sources.load(broken)
    assert p.code == "GT270" and "no such bucket" in p.found
    _, [p] = sources.load(lambda ctx: [1, 2, 3])
    assert p.code == "GT270" and "list" in p.found


def test_several_problems_reported_together():
    from guardtrain.checking import check
    from guardtrain.core.errors import InputSpecError

    model = classifier(units=10)
    x, _ = class_data(features=5)
    x[3, 0] = np.nan
    y = np.arange(64) % 10 + 1
    with pytest.raises(InputSpecError) as info:
        check(model, x, y, batch_size=33, launch=None)
    found = [p.code for p in info.value.problems]
    assert found == ["GT201", "GT230", "GT205"]
    text = str(info.value)
    assert text.startswith("[GT200] 3 problems with the training inputs:")
    assert text.count("Fix:") == 3


def test_warnings_are_listed_beside_errors():
    from guardtrain.checking import check
    from guardtrain.core.errors import InputSpecError

    x, y = class_data()
    with pytest.raises(InputSpecError) as info:
        check(classifier(), x * 1000, y + 1)
    assert [p.code for p in info.value.problems] == ["GT205"]
    assert [w.code for w in info.value.warnings] == ["GT234"]
    assert "and 1 warning:" in str(info.value)
    # It crosses process boundaries (Ray) intact.
    back = pickle.loads(pickle.dumps(info.value))
    assert back.problems == info.value.problems and back.warnings == info.value.warnings
    assert str(back) == str(info.value)


def test_clean_inputs_give_a_readable_report():
    from guardtrain.checking import CheckReport, check

    x, y = class_data()
    report = check(classifier(), x, y, batch_size=16)
    assert isinstance(report, CheckReport) and report.warnings == ()
    assert report.samples == 64 and report.batch_size == 16 and report.replicas >= 1
    assert str(report).startswith("[check] OK  64 samples (arrays), batch 16")


def test_validation_data_checked_with_its_own_names():
    from guardtrain.checking import check
    from guardtrain.core.errors import InputSpecError

    x, y = class_data()
    with pytest.raises(InputSpecError) as info:
        check(classifier(), x, y, validation_data=(x.reshape(64, 2, 2), y))
    [p] = info.value.problems
    assert p.where == "validation_data x" and p.fix == "4 = 4: x_val.reshape(-1, 4)"


def test_unbuilt_sequential_is_built_on_the_data_shape():
    import keras
    from guardtrain.checking import check
    from guardtrain.core.errors import InputSpecError

    model = keras.Sequential([keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x, _ = class_data()
    with pytest.raises(InputSpecError, match=r"\[GT205\]"):
        check(model, x, np.arange(64) % 10 + 1)


def test_dict_of_labels_for_named_outputs():
    import keras
    from guardtrain.checking import check
    from guardtrain.core.errors import InputSpecError

    inp = keras.Input((4,))
    model = keras.Model(inp, {"cls": keras.layers.Dense(3, activation="softmax", name="cls")(inp),
                              "reg": keras.layers.Dense(1, name="reg")(inp)})
    model.compile("adam", {"cls": "sparse_categorical_crossentropy", "reg": "mse"})
    x, y = class_data()
    check(model, x, {"cls": y, "reg": np.random.rand(64)})
    with pytest.raises(InputSpecError) as info:
        check(model, x, {"cls": y + 1, "reg": np.random.rand(64)})
    assert [(p.code, p.where) for p in info.value.problems] == [("GT205", "y['cls']")]


def test_parquet_end_to_end(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from guardtrain.checking import check
    from guardtrain.data import parquet
    from guardtrain.core.errors import InputSpecError

    x, y = class_data()
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "d": x[:, 3], "y": y}),
                   tmp_path / "t.parquet")
    report = check(classifier(), parquet(tmp_path, features=list("abcd"), label="y"))
    assert report.samples == 64 and report.input_kind == "parquet"
    with pytest.raises(InputSpecError, match=r"\[GT201\]"):
        check(classifier(), parquet(tmp_path, features=list("abc"), label="y"))


def test_subclassed_model_called_once_to_read_its_output_width():
    import keras
    from guardtrain.checking import check
    from guardtrain.core.errors import InputSpecError

    class Classifier(keras.Model):
        def __init__(self):
            super().__init__()
            self.head = keras.layers.Dense(3)

        def call(self, x):
            return self.head(x)

    model = Classifier()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = class_data()
    assert check(model, x, y).warnings == ()
    with pytest.raises(InputSpecError) as info:
        check(model, x, y + 1)
    assert [p.code for p in info.value.problems] == ["GT205"]


@pytest.mark.pure
def test_ragged_python_lists_are_a_problem_not_a_numpy_error():
    x = [[1.0, 2.0, 3.0]] * 3 + [[1.0]]
    inputs, problems = sources.load(x, [0, 1, 0, 1])
    assert [p.code for p in problems] == ["GT275"]
    assert "row lengths 1..3" in problems[0].found and "pad_sequences(x" in problems[0].fix
    inputs, problems = sources.load([[1.0, 2.0]] * 4, [0, 1, 0, 1])
    assert problems == [] and inputs.x[0][1].rows.shape == (4, 2)
