"""Labels vs loss vs output layer (GT205-GT216), and reading the loss off the model."""

import functools

import numpy as np
import pytest

from guardtrain.checking.labels import check_labels, check_output
from guardtrain.checking.specs import LossSpec, OutputSpec
from tests.helpers import classifier, sample

SPARSE = LossSpec("sparse_categorical", "sparse_categorical_crossentropy")
CATEGORICAL = LossSpec("categorical", "categorical_crossentropy")
BINARY = LossSpec("binary", "binary_crossentropy")
MSE = LossSpec("regression", "mse")


def _out(width, loss, activation="softmax"):
    return OutputSpec("dense", (None, width), activation, loss)


_y = functools.partial(sample, where="y")


def _codes(problems):
    return [p.code for p in problems]


@pytest.mark.pure
def test_sparse_labels_in_range_pass():
    assert check_labels(_out(10, SPARSE), _y(np.arange(100) % 10)) == []
    assert check_labels(_out(10, SPARSE), _y((np.arange(100) % 10).astype("float32"))) == []


@pytest.mark.pure
def test_one_based_sparse_labels():
    [p] = check_labels(_out(10, SPARSE), _y(np.arange(100) % 10 + 1))
    assert p.code == "GT205" and p.fix == "labels look 1-based; use y - 1"
    assert "[0, 10)" in p.expected and "from 1 to 10" in p.found


@pytest.mark.pure
def test_sparse_labels_above_width_and_negative():
    [p] = check_labels(_out(10, SPARSE), _y(np.arange(100) % 12))
    assert p.code == "GT205" and "Dense(12)" in p.fix
    [p] = check_labels(_out(3, SPARSE), _y([-1, 0, 1, 2]))
    assert p.code == "GT205" and "ignore_class=-1" in p.fix
    ignoring = LossSpec("sparse_categorical", "scce", ignore_class=-1)
    assert check_labels(_out(3, ignoring), _y([-1, 0, 1, 2])) == []


@pytest.mark.pure
def test_sparse_loss_on_one_unit_output():
    [p] = check_labels(_out(1, SPARSE, "sigmoid"), _y([0, 1, 0, 1]))
    assert p.code == "GT205" and "binary_crossentropy" in p.fix


@pytest.mark.pure
def test_one_hot_labels_with_sparse_loss():
    [p] = check_labels(_out(4, SPARSE), _y(np.eye(4)[np.arange(8) % 4]))
    assert p.code == "GT206" and "categorical_crossentropy" in p.fix and "argmax" in p.fix


@pytest.mark.pure
def test_integer_labels_with_categorical_loss():
    [p] = check_labels(_out(4, CATEGORICAL), _y(np.arange(8) % 4))
    assert p.code == "GT207" and "to_categorical(y, 4)" in p.fix
    assert check_labels(_out(4, CATEGORICAL), _y(np.eye(4)[np.arange(8) % 4])) == []


@pytest.mark.pure
def test_one_hot_width_differs_from_output():
    [p] = check_labels(_out(10, CATEGORICAL), _y(np.eye(5)[np.arange(10) % 5]))
    assert p.code == "GT208" and "width 5" in p.found and "Dense(5)" in p.fix
    [p] = check_labels(_out(1, CATEGORICAL, "sigmoid"), _y([0, 1, 1, 0]))
    assert p.code == "GT208" and "loss is 0" in p.found


@pytest.mark.pure
def test_binary_labels_outside_zero_one():
    [p] = check_labels(_out(1, BINARY, "sigmoid"), _y([0, 1, 2, 1]))
    assert p.code == "GT209" and "sparse_categorical_crossentropy" in p.fix
    [p] = check_labels(_out(1, BINARY, "sigmoid"), _y([-1, 1, 1, -1]))
    assert p.code == "GT209" and "(y + 1) / 2" in p.fix
    assert check_labels(_out(1, BINARY, "sigmoid"), _y([0, 1, 1, 0])) == []


@pytest.mark.pure
def test_binary_loss_on_wide_output_with_one_label_per_sample():
    [p] = check_labels(_out(10, BINARY, "sigmoid"), _y(np.arange(20) % 10))
    assert p.code == "GT210" and "sparse_categorical_crossentropy" in p.fix
    multi_label = (np.random.default_rng(0).random((20, 10)) > 0.5).astype("float32")
    assert check_labels(_out(10, BINARY, "sigmoid"), _y(multi_label)) == []


@pytest.mark.pure
def test_one_unit_softmax():
    [p] = check_output(_out(1, BINARY, "softmax"))
    assert p.code == "GT211" and "sigmoid" in p.fix
    assert check_output(_out(1, BINARY, "sigmoid")) == []


@pytest.mark.pure
def test_squashing_output_with_from_logits():
    logits = LossSpec("sparse_categorical", "SparseCategoricalCrossentropy", from_logits=True)
    [p] = check_output(_out(10, logits, "softmax"))
    assert p.code == "GT212" and "Dense(10)" in p.fix
    assert check_output(_out(10, logits, "linear")) == []


@pytest.mark.pure
def test_linear_output_with_probability_loss_warns():
    [p] = check_output(_out(10, SPARSE, "linear"))
    assert p.code == "GT213" and p.severity == "warning" and "from_logits=True" in p.fix
    assert check_output(_out(10, SPARSE, "softmax")) == []
    assert check_output(_out(10, MSE, "linear")) == []


@pytest.mark.pure
@pytest.mark.parametrize("act", ["relu", "tanh", "elu", "exponential", "log_softmax"])
@pytest.mark.parametrize("kind", [SPARSE, BINARY])
def test_an_output_that_is_not_a_probability_with_a_probability_loss_is_refused(act, kind):
    [p] = check_output(_out(10 if kind == SPARSE else 1, kind, act))
    right = "softmax" if kind == SPARSE else "sigmoid"
    assert p.code == "GT217" and p.severity == "error" and act in p.found
    assert f"activation='{right}'" in p.fix and "from_logits=True" in p.fix


@pytest.mark.pure
def test_an_activation_before_logits_warns_except_log_softmax():
    logits = LossSpec("sparse_categorical", "SparseCategoricalCrossentropy", from_logits=True)
    [p] = check_output(_out(10, logits, "relu"))
    assert p.code == "GT218" and p.severity == "warning" and "Dense(10)" in p.fix
    assert check_output(_out(10, logits, "log_softmax")) == []
    assert check_output(_out(10, logits, None)) == []  # unknown activation: nothing said


@pytest.mark.pure
def test_sparse_ids_per_position_of_a_sequence_output_are_what_keras_takes():
    seq = OutputSpec("dense", (None, 12, 50), "softmax", SPARSE)
    ids = np.random.default_rng(0).integers(0, 50, size=(40, 12))
    assert check_labels(seq, _y(ids)) == []
    assert check_labels(seq, _y(ids[..., None])) == []
    [p] = check_labels(seq, _y(ids[:, :5]))
    assert p.code == "GT216"


@pytest.mark.pure
def test_sigmoid_units_with_a_softmax_loss_warn():
    [p] = check_output(_out(10, SPARSE, "sigmoid"))
    assert p.code == "GT219" and p.severity == "warning" and "softmax" in p.fix
    assert check_output(_out(1, BINARY, "sigmoid")) == []
    assert check_output(_out(10, BINARY, "sigmoid")) == []  # multi-label: right


@pytest.mark.pure
def test_continuous_targets_with_classification_loss():
    y = np.random.default_rng(0).random(200)
    [p] = check_labels(_out(1, BINARY, "sigmoid"), _y(y))
    assert p.code == "GT214" and p.severity == "warning" and "mse" in p.fix
    [p] = check_labels(_out(10, SPARSE), _y(y * 5))
    assert p.code == "GT214" and p.severity == "error"
    soft = np.array([0.1, 0.9, 0.2, 0.8])   # a few soft labels are fine
    assert check_labels(_out(1, BINARY, "sigmoid"), _y(soft)) == []


@pytest.mark.pure
def test_single_class_present():
    [p] = check_labels(_out(10, SPARSE), _y(np.full(50, 3)))
    assert p.code == "GT215" and p.severity == "error" and "only class 3" in p.found
    [p] = check_labels(_out(10, SPARSE), _y(np.full(50, 3), n_total=1000))
    assert p.severity == "warning" and "sample" in p.found
    [p] = check_labels(_out(1, BINARY, "sigmoid"), _y(np.zeros(20)))
    assert p.code == "GT215"


@pytest.mark.pure
def test_regression_labels_that_would_broadcast():
    [p] = check_labels(_out(1, MSE, "linear"), _y(np.random.rand(20, 3)))
    assert p.code == "GT216" and "broadcast" in p.found
    [p] = check_labels(_out(10, MSE, "linear"), _y(np.arange(20) % 10))
    assert p.code == "GT216" and "sparse_categorical_crossentropy" in p.fix
    assert check_labels(_out(1, MSE, "linear"), _y(np.random.rand(20))) == []
    assert check_labels(_out(3, MSE, "linear"), _y(np.random.rand(20, 3))) == []


@pytest.mark.pure
def test_nonfinite_labels_do_not_confuse_range_checks():
    y = np.array([0, 1, np.nan, 2], dtype="float32")
    assert check_labels(_out(3, SPARSE), _y(y)) == []


@pytest.mark.tf
def test_loss_spec_reads_strings_objects_functions_and_partials():
    import keras
    from guardtrain.checking.model_spec import loss_spec

    assert loss_spec("sparse_categorical_crossentropy").kind == "sparse_categorical"
    assert loss_spec("mse").kind == "regression"
    obj = loss_spec(keras.losses.CategoricalCrossentropy(from_logits=True))
    assert (obj.kind, obj.from_logits) == ("categorical", True)
    assert loss_spec(keras.losses.binary_crossentropy).kind == "binary"
    part = loss_spec(functools.partial(keras.losses.sparse_categorical_crossentropy,
                                       from_logits=True))
    assert (part.kind, part.from_logits) == ("sparse_categorical", True)
    assert loss_spec(lambda a, b: a - b).kind == "unknown"
    ignore = loss_spec(keras.losses.SparseCategoricalCrossentropy(ignore_class=-1))
    assert ignore.ignore_class == -1


@pytest.mark.tf
def test_describe_reads_activation_width_and_per_output_losses():
    import keras
    from guardtrain.checking.model_spec import describe

    inp = keras.Input((4,))
    a = keras.layers.Dense(3, name="a")(inp)
    b = keras.layers.Softmax(name="b")(keras.layers.Dense(5)(inp))
    model = keras.Model(inp, [a, b])
    model.compile("adam", ["mse", keras.losses.CategoricalCrossentropy()])
    spec = describe(model)
    assert [(o.name, o.width, o.activation, o.loss.kind) for o in spec.outputs] == [
        ("a", 3, "linear", "regression"), ("b", 5, "softmax", "categorical")]


@pytest.mark.tf
def test_sparse_labels_one_based_end_to_end():
    from guardtrain.checking import check
    from guardtrain.core.errors import InputSpecError

    model = classifier(units=10)
    x = np.random.rand(64, 4).astype("float32")
    with pytest.raises(InputSpecError) as info:
        check(model, x, np.arange(64) % 10 + 1)
    assert "[GT205]" in str(info.value) and "labels look 1-based; use y - 1" in str(info.value)
