"""The reference for "learned nothing": the loss of the best constant prediction.

A model that ignores its inputs can still learn one thing: the label distribution. Its
best loss is a number computed from the labels alone — the entropy of the class
frequencies for a cross-entropy, the variance of the targets for MSE — and a run whose
loss stays there has learned nothing from the inputs, however much its weights move
(docs/architecture.md, "Guard verdicts").

```
loss (Keras name)                    best constant prediction   its loss, per output column
sparse_categorical_crossentropy      class frequencies p        -sum p log p
categorical_crossentropy             mean label vector q        -sum q log q
binary_crossentropy                  positive share p           -(p log p + (1-p) log(1-p))
mean_squared_error                   mean                       variance
mean_absolute_error                  median                     mean |y - median|
huber (delta)                        the Huber location         mean Huber(y - location)
```

``from_logits`` does not change the figure (logits reach any probability), label
smoothing does (the smoothed labels are what is predicted). Keras averages over the last
axis and over the batch; so does every figure here. A model with several outputs adds
them with its ``loss_weights``. For any other loss there is no constant reference: the
engine may measure one instead, and says so (``Reference.how``).

Pure module: NumPy only, no TensorFlow, no Ray.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

__all__ = ["LOSSES", "OutputLoss", "Reference", "constant_loss", "reference_loss",
           "canonical_loss"]

# Keras clips probabilities to [eps, 1 - eps] (keras.config.epsilon()).
_EPS = 1e-7
# float32's relative precision.
_F32_EPS = 1.2e-7

#: The canonical names of the losses with a constant reference.
SPARSE_CE = "sparse_categorical_crossentropy"
CATEGORICAL_CE = "categorical_crossentropy"
BINARY_CE = "binary_crossentropy"
MSE = "mean_squared_error"
MAE = "mean_absolute_error"
HUBER = "huber"
LOSSES = (SPARSE_CE, CATEGORICAL_CE, BINARY_CE, MSE, MAE, HUBER)

# Every spelling Keras accepts for them (lower case, "_" removed), class names included.
_ALIASES = {
    "sparsecategoricalcrossentropy": SPARSE_CE,
    "categoricalcrossentropy": CATEGORICAL_CE,
    "binarycrossentropy": BINARY_CE,
    "mse": MSE, "meansquarederror": MSE,
    "mae": MAE, "meanabsoluteerror": MAE,
    "huber": HUBER, "huberloss": HUBER,
}


def canonical_loss(name: str) -> str | None:
    """The canonical name of a loss with a constant reference, or None.

    >>> canonical_loss("MSE"), canonical_loss("SparseCategoricalCrossentropy")
    ('mean_squared_error', 'sparse_categorical_crossentropy')
    """
    return _ALIASES.get(str(name).lower().replace("_", ""))


@dataclasses.dataclass(frozen=True)
class OutputLoss:
    """One output's loss, as the reference needs it.

    Args:
        name: the loss (any Keras spelling: ``"mse"``, ``"SparseCategoricalCrossentropy"``).
        width: the output's last-axis width (the class count of a softmax).
        label_smoothing: the loss's ``label_smoothing`` (cross-entropies).
        delta: the Huber loss's ``delta``.
        weight: the output's ``loss_weights`` entry.
    """

    name: str
    width: int | None = None
    label_smoothing: float = 0.0
    delta: float = 1.0
    weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class Reference:
    """The loss of a model that learned nothing from its inputs.

    Args:
        loss: the figure, in the units of the training loss.
        how: ``"constant"`` (the best constant prediction, computed from the labels) or
            ``"measured"`` (the untrained model's loss on a sample, its output bias
            fitted: an upper estimate, for a loss with no constant reference).
        detail: one line a person can check, e.g. ``"best constant prediction for
            sparse_categorical_crossentropy over all 1,000 labels"``.
        rows: the labels it was computed from.
    """

    loss: float
    how: str
    detail: str
    rows: int = 0

    def record(self) -> dict[str, Any]:
        """The fields as plain JSON-able values (events, evidence)."""
        return {"loss": self.loss, "how": self.how, "detail": self.detail, "rows": self.rows}


def constant_loss(out: OutputLoss, y: Any) -> float | None:
    """The loss of the best constant prediction of ``y`` under ``out``'s loss, or None.

    None for a loss without a constant reference, for labels it cannot read (sparse ids
    outside ``[0, width)``), or for no labels.

    Example:

    >>> round(constant_loss(OutputLoss("sparse_categorical_crossentropy", width=4),
    ...                     [0, 1, 2, 3]), 6) == round(math.log(4), 6)
    True
    >>> constant_loss(OutputLoss("mse"), [[1.0], [3.0]])
    1.0
    """
    name = canonical_loss(out.name)
    y = np.asarray(y)
    if name is None or y.size == 0 or not np.issubdtype(y.dtype, np.number) \
            and y.dtype != bool:
        return None
    y = y.astype(np.float64)
    if not np.all(np.isfinite(y)):
        return None
    if name == SPARSE_CE:
        return _sparse_ce(y, out.width, out.label_smoothing)
    cols = _columns(y)
    if name == CATEGORICAL_CE:
        if cols.shape[1] < 2:
            return None
        smooth = out.label_smoothing
        q = cols.mean(axis=0) * (1 - smooth) + smooth / cols.shape[1]
        return _cross_entropy(q, q)
    if name == BINARY_CE:
        p = cols.mean(axis=0) * (1 - out.label_smoothing) + 0.5 * out.label_smoothing
        per = [_cross_entropy(np.array([pc, 1 - pc]), np.array([pc, 1 - pc])) for pc in p]
        return float(np.mean(per))
    if name in (MSE, MAE, HUBER) and np.any(cols.std(axis=0) <= _F32_EPS * np.abs(
            cols.mean(axis=0)) * 8):
        # A spread float32 cannot resolve around the mean: no model reaches the figure.
        return None
    if name == MSE:
        return float(np.mean(cols.var(axis=0)))
    if name == MAE:
        return float(np.mean(np.abs(cols - np.median(cols, axis=0)).mean(axis=0)))
    return float(np.mean([_huber_best(c, out.delta) for c in cols.T]))


def reference_loss(outputs: Sequence[OutputLoss], labels: Sequence[Any], *,
                   total_rows: int | None = None) -> Reference | None:
    """The constant reference of a whole model: each output's, added with its weight.

    Args:
        outputs: one ``OutputLoss`` per model output.
        labels: that output's labels (a sample, or all of them).
        total_rows: the rows in the whole data (for the description), when known.

    Returns:
        A ``Reference`` (``how="constant"``), or None when any output has no constant
        reference.
    """
    if not outputs or len(outputs) != len(labels):
        return None
    total, names = 0.0, []
    for out, y in zip(outputs, labels):
        value = constant_loss(out, y)
        if value is None or not math.isfinite(value):
            return None
        total += float(out.weight) * value
        names.append(canonical_loss(out.name))
    rows = int(np.asarray(labels[0]).shape[0]) if np.ndim(labels[0]) else 0
    over = (f"all {rows:,} labels" if total_rows in (None, rows)
            else f"a sample of {rows:,} of {total_rows:,} labels")
    what = names[0] if len(set(names)) == 1 else ", ".join(names)
    outputs_text = f" ({len(outputs)} outputs, weighted)" if len(outputs) > 1 else ""
    return Reference(loss=total, how="constant", rows=rows,
                     detail=f"best constant prediction for {what}{outputs_text} over {over}")


# -- the figures -------------------------------------------------------------------------

def _columns(y: np.ndarray) -> np.ndarray:
    """Labels as ``[rows, columns]``: Keras reduces over the last axis, then the rest."""
    if y.ndim <= 1:
        return y.reshape(-1, 1)
    return y.reshape(-1, y.shape[-1])


def _cross_entropy(q: np.ndarray, p: np.ndarray) -> float:
    """-sum q log p, with Keras's clipping of the prediction ``p``."""
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(-np.sum(q * np.log(p)))


def _sparse_ce(y: np.ndarray, width: int | None, smoothing: float) -> float | None:
    ids = y.reshape(-1)
    if np.any(ids != np.round(ids)) or ids.min() < 0:
        return None
    k = int(width) if width else int(ids.max()) + 1
    if ids.max() >= k:
        return None
    p = np.bincount(ids.astype(np.int64), minlength=k) / ids.size
    p = p * (1 - smoothing) + smoothing / k
    return _cross_entropy(p, p)


def _huber_best(c: np.ndarray, delta: float) -> float:
    """Mean Huber loss at the location that minimises it (bisection on its derivative,
    which is monotone: sum of clip(m - y, -delta, delta))."""
    lo, hi = float(c.min()), float(c.max())
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.sum(np.clip(mid - c, -delta, delta)) > 0:
            hi = mid
        else:
            lo = mid
        if hi - lo <= 1e-12 * max(1.0, abs(mid)):
            break
    r = np.abs(c - 0.5 * (lo + hi))
    return float(np.mean(np.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta))))
