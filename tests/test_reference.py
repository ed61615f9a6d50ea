"""The reference loss (the best constant prediction's) against independent computations.

Pure tier: each figure against the loss formula written out in NumPy and evaluated at
the constant, and against a brute-force search over constants (no closed form used). TF
tier: against Keras's own loss functions at that constant, and the check's wiring.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from guardtrain.core.reference import OutputLoss, constant_loss, reference_loss

RNG = np.random.default_rng(7)


def _ce(y_onehot, q):
    q = np.clip(q, 1e-7, 1 - 1e-7)
    return float(np.mean(-np.sum(y_onehot * np.log(q), axis=-1)))


def _bce(y, p):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(np.mean(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)), axis=-1)))


def _best_on_grid(loss_of, lo, hi, n=4001):
    """The smallest loss over evenly spaced constants: no closed form, only evaluation."""
    return min(loss_of(c) for c in np.linspace(lo, hi, n))


@pytest.mark.pure
def test_sparse_cross_entropy_is_the_entropy_of_the_class_frequencies():
    y = RNG.choice(4, size=1000, p=[0.5, 0.3, 0.15, 0.05])
    got = constant_loss(OutputLoss("sparse_categorical_crossentropy", width=4), y)
    p = np.bincount(y, minlength=4) / y.size
    assert got == pytest.approx(_ce(np.eye(4)[y], p), rel=1e-9)
    # Any other constant prediction is worse.
    for _ in range(20):
        q = RNG.dirichlet(np.ones(4))
        assert _ce(np.eye(4)[y], q) > got


@pytest.mark.pure
def test_balanced_classes_give_log_k_whatever_the_spelling():
    y = np.arange(300) % 3
    for name in ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy"):
        assert constant_loss(OutputLoss(name, width=3), y) == pytest.approx(math.log(3))
    # A class the labels never use costs nothing: the constant predicts it with 0.
    assert constant_loss(OutputLoss("sparse_categorical_crossentropy", width=10), y) \
        == pytest.approx(math.log(3))


@pytest.mark.pure
def test_categorical_cross_entropy_with_and_without_label_smoothing():
    y = np.eye(5)[RNG.choice(5, size=500, p=[0.4, 0.3, 0.1, 0.1, 0.1])]
    got = constant_loss(OutputLoss("categorical_crossentropy", width=5), y)
    assert got == pytest.approx(_ce(y, y.mean(0)), rel=1e-9)
    smoothed = y * 0.9 + 0.1 / 5
    got = constant_loss(OutputLoss("categorical_crossentropy", width=5, label_smoothing=0.1), y)
    assert got == pytest.approx(_ce(smoothed, smoothed.mean(0)), rel=1e-9)
    for _ in range(20):
        assert _ce(smoothed, RNG.dirichlet(np.ones(5))) > got


@pytest.mark.pure
@pytest.mark.parametrize("columns", [1, 3])
def test_binary_cross_entropy_against_a_search_over_constants(columns):
    y = (RNG.random((400, columns)) < [0.2, 0.5, 0.9][:columns]).astype(float)
    got = constant_loss(OutputLoss("binary_crossentropy"), y)
    best = sum(_best_on_grid(lambda c, j=j: _bce(y[:, j:j + 1], c), 0.0, 1.0)
               for j in range(columns)) / columns
    assert got == pytest.approx(best, abs=1e-5)


@pytest.mark.pure
def test_binary_labels_given_as_one_column_vector_or_flat():
    y = (RNG.random(200) < 0.3).astype(float)
    flat = constant_loss(OutputLoss("binary_crossentropy"), y)
    assert flat == pytest.approx(constant_loss(OutputLoss("binary_crossentropy"), y[:, None]))
    p = y.mean()
    assert flat == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)))


@pytest.mark.pure
def test_mse_mae_huber_against_a_search_over_constants():
    y = np.concatenate([RNG.normal(2.0, 1.5, size=(300, 2)),
                        RNG.standard_cauchy(size=(20, 2))])  # heavy tails: mean != median
    lo, hi = float(y.min()), float(y.max())
    mse = lambda c, j: float(np.mean((y[:, j] - c) ** 2))  # noqa: E731
    mae = lambda c, j: float(np.mean(np.abs(y[:, j] - c)))  # noqa: E731

    def huber(c, j, d=1.0):
        r = np.abs(y[:, j] - c)
        return float(np.mean(np.where(r <= d, 0.5 * r ** 2, d * (r - 0.5 * d))))

    for name, fn in (("mse", mse), ("mean_absolute_error", mae), ("huber", huber)):
        got = constant_loss(OutputLoss(name), y)
        grid = np.mean([_best_on_grid(lambda c: fn(c, j), lo, hi, 20001) for j in range(2)])
        assert got == pytest.approx(grid, rel=1e-4), name
        assert got <= grid + 1e-12, name  # the exact optimum is never beaten by the grid


@pytest.mark.pure
def test_a_multi_output_reference_adds_the_outputs_with_their_weights():
    cls = np.arange(100) % 4
    reg = RNG.normal(size=(100, 1))
    ref = reference_loss([OutputLoss("sparse_categorical_crossentropy", width=4, weight=0.5),
                          OutputLoss("mse", weight=2.0)], [cls, reg], total_rows=1000)
    assert ref.loss == pytest.approx(0.5 * math.log(4) + 2.0 * reg.var())
    assert ref.how == "constant" and ref.rows == 100
    assert "a sample of 100 of 1,000 labels" in ref.detail and "2 outputs" in ref.detail


@pytest.mark.pure
def test_no_reference_for_what_it_cannot_reason_about():
    assert constant_loss(OutputLoss("kl_divergence"), np.ones((4, 2))) is None
    assert constant_loss(OutputLoss("sparse_categorical_crossentropy", width=3), [0, 5]) is None
    assert constant_loss(OutputLoss("mse"), [1.0, np.nan]) is None
    assert constant_loss(OutputLoss("mse"), np.array(["a", "b"])) is None
    assert reference_loss([OutputLoss("mse"), OutputLoss("poisson")],
                          [np.ones(3), np.ones(3)]) is None


@pytest.mark.tf
@pytest.mark.parametrize("loss, make_y, width", [
    ("sparse_categorical_crossentropy", lambda: RNG.choice(3, size=256, p=[.6, .3, .1]), 3),
    ("categorical_crossentropy", lambda: np.eye(3)[RNG.choice(3, size=256)], 3),
    ("binary_crossentropy", lambda: (RNG.random((256, 2)) < [.2, .7]).astype("float32"), 2),
    ("mse", lambda: RNG.normal(1, 2, size=(256, 2)), 2),
    ("mae", lambda: RNG.exponential(size=(256, 1)), 1),
    ("huber", lambda: RNG.standard_cauchy(size=(256, 1)), 1),
])
def test_keras_own_loss_at_the_constant_equals_the_reference(loss, make_y, width):
    """Keras's loss of the constant prediction is the figure, and moving the constant
    raises it: the figure is the minimum Keras would report."""
    import keras

    y = make_y()
    fn = keras.losses.get(loss)
    got = constant_loss(OutputLoss(loss, width=width), y)
    if loss == "sparse_categorical_crossentropy":
        const = np.bincount(y, minlength=width) / y.size
    elif loss in ("categorical_crossentropy", "binary_crossentropy", "mse"):
        const = y.mean(0)
    elif loss == "mae":
        const = np.median(y, 0)
    else:
        const = None  # Huber's location: searched below with Keras itself
    y_arr = np.asarray(y, "float32")

    def keras_loss(c):
        pred = np.broadcast_to(np.asarray(c, "float32"), (len(y), width)).copy()
        return float(np.mean(keras.ops.convert_to_numpy(fn(y_arr, pred))))

    if const is None:
        lo, hi = float(np.min(y)), float(np.max(y))
        best = min(keras_loss(c) for c in np.linspace(max(lo, -5), min(hi, 5), 2001))
        assert got == pytest.approx(best, rel=1e-3)
        return
    assert keras_loss(const) == pytest.approx(got, rel=1e-5)
    if loss in ("mse", "mae"):
        assert keras_loss(const + 0.05) > got
