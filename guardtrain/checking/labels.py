"""Labels against the loss and the output layer.

``check_output`` reads the output layer and the loss alone, every output activation
against every cross-entropy, with and without ``from_logits``:

```
output activation     probabilities expected (from_logits=False)   from_logits=True
softmax               right (1 unit: GT211)                        GT212 E
sigmoid               right for binary; softmax losses: GT219 W    GT212 E
linear / none         GT213 W (logits read as probabilities)       right
relu, tanh, elu, ...  GT217 E (not probabilities: log of 0, NaN)   GT218 W (logits cut)
```

``check_labels`` reads the label sample against them: sparse ids in ``[0, K)``, one-hot
width ``K``, binary labels in ``[0, 1]``, one class only, label shapes that would
broadcast. ``K`` is the output width, ``model.outputs[i].shape[-1]``.
"""

from __future__ import annotations

import numpy as np

from guardtrain.checking import codes
from guardtrain.checking.shapes import var_name
from guardtrain.checking.specs import (BINARY, CATEGORICAL, CLASSIFICATION, REGRESSION,
                                       SPARSE, OutputSpec, Sample)
from guardtrain.core.errors import Problem

__all__ = ["check_output", "check_labels"]

#: More distinct non-integer values than this under a classification loss looks like a
#: regression target.
CONTINUOUS_DISTINCT = 20


def _where(output: OutputSpec) -> str:
    return f"model output {output.name!r}"


# Activations whose outputs are probabilities (softmax: a distribution; sigmoid: each unit).
_PROBABILITY = ("softmax", "sigmoid", "hard_sigmoid")
# No activation: the layer's output is raw logits.
_LINEAR = ("linear", None)


def check_output(output: OutputSpec) -> list[Problem]:
    """The output activation against the loss (GT211-GT213, GT217-GT219)."""
    loss, act, k = output.loss, output.activation, output.width
    if loss is None or loss.kind not in CLASSIFICATION:
        return []
    where = _where(output)
    if act == "softmax" and k == 1:
        return [Problem(codes.SOFTMAX_ONE_UNIT, where, "softmax over 2 or more units",
                        "softmax over 1 unit: it outputs 1.0 for every input, so nothing "
                        "is learned", "two classes: Dense(1, activation='sigmoid') with "
                        "loss='binary_crossentropy', or Dense(2, activation='softmax') with "
                        "loss='sparse_categorical_crossentropy'")]
    if loss.from_logits and act in ("softmax", "sigmoid"):
        return [Problem(codes.ACTIVATION_LOGITS, where,
                        f"raw logits (no activation) for {loss.name}(from_logits=True)",
                        f"a {act} output: probabilities read as logits, gradients shrink",
                        f"drop the activation (Dense({k})), or keep it and use "
                        "from_logits=False")]
    right = "softmax" if loss.kind != BINARY else "sigmoid"
    if act is not None and act not in _PROBABILITY + _LINEAR and not loss.from_logits:
        return [Problem(codes.NOT_PROBABILITY, where,
                        f"probabilities ({right}) for {loss.name}(from_logits=False)",
                        f"a {act} output: not probabilities (units at 0 give log(0), "
                        "outputs above 1 are clipped, and neither passes a gradient)",
                        f"use activation='{right}' on the last layer, or no activation "
                        f"with keras.losses.{_class_name(loss.kind)}(from_logits=True)")]
    # log_softmax gives log-probabilities: as logits they are the same distribution.
    if act not in _PROBABILITY + _LINEAR + ("log_softmax",) and loss.from_logits:
        return [Problem(codes.ACTIVATED_LOGITS, where,
                        f"raw logits (no activation) for {loss.name}(from_logits=True)",
                        f"a {act} output: logits it cannot produce are cut off, and a unit "
                        "pushed there gets no gradient", f"drop the activation (Dense({k}))",
                        severity="warning")]
    if act == "sigmoid" and loss.kind in (SPARSE, CATEGORICAL) and k and k > 1:
        return [Problem(codes.SIGMOID_MULTICLASS, where,
                        f"softmax probabilities for {loss.name}, one class per sample",
                        f"sigmoid over {k} units: they do not sum to 1, and the loss "
                        "renormalises them (a multi-label output with a multi-class loss)",
                        "use activation='softmax', or binary_crossentropy with multi-hot "
                        "labels if a sample can have several classes",
                        severity="warning")]
    if not loss.from_logits and act == "linear":
        return [Problem(codes.LINEAR_PROBABILITY, where,
                        f"probabilities ({'sigmoid' if loss.kind == BINARY else 'softmax'}) "
                        f"for {loss.name}(from_logits=False)",
                        "a linear output (raw logits); the loss usually stalls near ln(K)",
                        f"compile with keras.losses.{_class_name(loss.kind)}"
                        "(from_logits=True), or add the activation to the last layer",
                        severity="warning")]
    return []


def check_labels(output: OutputSpec, y: Sample) -> list[Problem]:
    """The label sample against the output's loss and width (GT205-GT210, GT214-GT216)."""
    loss = output.loss
    if loss is None or y.rows.dtype.kind not in "biuf" or len(y.rows) == 0:
        return []
    rows = y.rows
    finite = rows[np.isfinite(rows).reshape(len(rows), -1).all(axis=1)] \
        if rows.dtype.kind == "f" else rows
    if len(finite) == 0:
        return []
    if loss.kind == SPARSE:
        return _sparse(output, y, finite)
    if loss.kind == CATEGORICAL:
        return _categorical(output, y, finite)
    if loss.kind == BINARY:
        return _binary(output, y, finite)
    if loss.kind == REGRESSION:
        return _regression(output, y, finite)
    return []


def _sparse(output, y, rows):
    k, name = output.width, var_name(y.where)
    per = rows.shape[1:]
    # One id per position of a sequence or image output (n, T, K): labels (n, T) or
    # (n, T, 1), as Keras takes them.
    inner = tuple(output.shape[1:-1]) if len(output.shape) > 2 else ()
    if inner and _fits(per, inner):
        per = ()
    if per not in ((), (1,)):
        if _one_hot(rows):
            return [Problem(codes.ONE_HOT_SPARSE, y.where,
                            f"one class id per sample for {output.loss.name}",
                            f"one-hot labels of shape {_shape(y)}",
                            f"loss='categorical_crossentropy', or ids: {name}.argmax(-1)")]
        return [Problem(codes.LABEL_SHAPE, y.where,
                        f"one class id per sample (shape (n,)) for {output.loss.name}",
                        f"labels of shape {_shape(y)}",
                        "give one integer id per sample, or a loss for this label shape")]
    ids = rows.reshape(-1)
    if output.loss.ignore_class is not None:
        ids = ids[ids != output.loss.ignore_class]
    if rows.dtype.kind == "f" and not np.all(ids == np.round(ids)):
        return [_continuous(output, y, ids, severity="error")]
    lo, hi = int(ids.min()), int(ids.max())
    problems = []
    if k is not None and (lo < 0 or hi >= k):
        problems.append(_range_problem(output, y, lo, hi, k))
    return problems + _single_class(y, np.unique(ids))


def _range_problem(output, y, lo, hi, k):
    name = var_name(y.where)
    expected = f"class ids in [0, {k}) for {k} output{'s' if k != 1 else ''}"
    found = f"labels from {lo} to {hi} in {y.describe()}"
    if k == 1:
        fix = ("a 1-unit output cannot hold classes for a sparse loss: two classes -> "
               "Dense(1, activation='sigmoid') with loss='binary_crossentropy'; more -> "
               f"Dense({hi + 1}) with this loss")
    elif lo == 1 and hi == k:
        fix = f"labels look 1-based; use {name} - 1"
    elif lo < 0:
        fix = (f"labels go down to {lo}: remap them to 0..{k - 1} (e.g. {name} = "
               f"np.unique({name}, return_inverse=True)[1]), or pass ignore_class={lo} "
               "to the loss if they mark samples to skip")
    else:
        fix = (f"labels reach {hi} but the model has {k} outputs (classes 0..{k - 1}): "
               f"make the last layer Dense({hi + 1}), or remap the labels to 0..{k - 1}")
    return Problem(codes.LABEL_RANGE, y.where, expected, found, fix)


def _categorical(output, y, rows):
    k, name = output.width, var_name(y.where)
    per = rows.shape[1:]
    if per in ((), (1,)):
        if k == 1:
            return [Problem(codes.ONE_HOT_WIDTH, y.where,
                            f"one-hot labels over 2 or more classes for {output.loss.name}",
                            "1 output unit: the loss is 0 whatever the weights",
                            "two classes: Dense(1, activation='sigmoid') with "
                            "loss='binary_crossentropy'")]
        return [Problem(codes.INT_CATEGORICAL, y.where,
                        f"one-hot labels of shape (n, {k}) for {output.loss.name}",
                        f"one class id per sample, shape {_shape(y)}",
                        "loss='sparse_categorical_crossentropy', or one-hot: "
                        f"keras.utils.to_categorical({name}, {k})")]
    width = per[-1]
    problems = []
    if k is not None and width != k:
        problems.append(Problem(
            codes.ONE_HOT_WIDTH, y.where, f"one-hot width {k} (the output width)",
            f"labels of shape {_shape(y)} (width {width})",
            f"one-hot over {k} classes: keras.utils.to_categorical(ids, {k}); or make the "
            f"last layer Dense({width})"))
    problems += _outside_unit(output, y, rows)
    if not problems:
        problems += _single_class(y, np.unique(rows.reshape(-1, width).argmax(-1)))
    return problems


def _binary(output, y, rows):
    k = output.width
    per = rows.shape[1:]
    if per in ((), (1,)) and k is not None and k > 1:
        return [Problem(codes.BINARY_WIDE_OUTPUT, y.where,
                        f"one label per output unit ({k}) for {output.loss.name}",
                        f"one label per sample, shape {_shape(y)}, for {k} output units",
                        f"{k} classes: Dense({k}, activation='softmax') with "
                        "loss='sparse_categorical_crossentropy'; a yes/no target: "
                        "Dense(1, activation='sigmoid')")]
    if per not in ((), (1,)) and k is not None and per[-1] != k:
        return [Problem(codes.LABEL_SHAPE, y.where, f"labels of width {k} (the output width)",
                        f"labels of shape {_shape(y)}",
                        f"make the last layer Dense({per[-1]}), or the labels (n, {k})")]
    problems = _outside_unit(output, y, rows)
    if problems:
        return problems
    values = np.unique(rows)
    if len(values) > CONTINUOUS_DISTINCT and not np.all(values == np.round(values)):
        return [_continuous(output, y, values, severity="warning")]
    return _single_class(y, values)


def _regression(output, y, rows):
    per, out = tuple(rows.shape[1:]), tuple(output.shape[1:])
    if per == out or (per == () and out == (1,)) or (per == (1,) and out == ()):
        return []
    k = output.width
    ids = rows.reshape(-1)
    if (per in ((), (1,)) and k and k > 1 and np.all(ids == np.round(ids))
            and ids.min() >= 0 and ids.max() < k):
        fix = (f"labels look like class ids 0..{int(ids.max())} for {k} outputs: "
               "loss='sparse_categorical_crossentropy'")
    else:
        fix = f"give labels of shape (n, {', '.join(map(str, out))}) or change the last layer"
    return [Problem(codes.LABEL_SHAPE, y.where,
                    f"labels shaped like the output (None, {', '.join(map(str, out))}) for "
                    f"{output.loss.name}", f"labels of shape {_shape(y)}; the loss would "
                    "broadcast them against every output unit", fix)]


def _outside_unit(output, y, rows):
    lo, hi = float(rows.min()), float(rows.max())
    if lo >= 0 and hi <= 1:
        return []
    name = var_name(y.where)
    values = np.unique(rows)
    if set(values.tolist()) <= {-1.0, 1.0}:
        fix = f"labels look like -1/+1: use ({name} + 1) / 2"
    elif output.loss.kind == BINARY and np.all(values == np.round(values)) and lo >= 0:
        fix = (f"labels look like class ids 0..{int(hi)}: Dense({int(hi) + 1}, "
               "activation='softmax') with loss='sparse_categorical_crossentropy'")
    else:
        fix = "labels must be probabilities: 0/1 (or one-hot) targets, or rescale to [0, 1]"
    return [Problem(codes.LABEL_NOT_BINARY, y.where, f"labels in [0, 1] for {output.loss.name}",
                    f"labels from {lo:g} to {hi:g} in {y.describe()}", fix)]


def _continuous(output, y, values, *, severity):
    return Problem(codes.CONTINUOUS_TARGETS, y.where,
                   f"class labels for {output.loss.name}",
                   f"{len(np.unique(values)):,} distinct non-integer values (e.g. "
                   f"{float(values[0]):g}) in {y.describe()}: a continuous target",
                   "for a numeric target use loss='mse' (or 'huber') with a linear output; "
                   "for classes, turn values into integer ids", severity=severity)


def _single_class(y: Sample, classes) -> list[Problem]:
    if len(classes) != 1:
        return []
    sampled = "" if y.complete else " (a sample: other classes may exist further on)"
    return [Problem(codes.SINGLE_CLASS, y.where, "at least 2 classes",
                    f"only class {classes[0]:g} in {y.describe()}{sampled}",
                    "check the split or the filter that made the labels; shuffle before "
                    "splitting", severity="error" if y.complete else "warning")]


def _one_hot(rows) -> bool:
    flat = rows.reshape(len(rows), -1)
    return bool(np.isin(flat, (0, 1)).all() and np.all(flat.sum(axis=1) == 1))


def _fits(per: tuple, inner: tuple) -> bool:
    """Label dims ``per`` are the output's inner dims (None: any size), maybe plus 1."""
    if len(per) == len(inner) + 1 and per[-1] == 1:
        per = per[:-1]
    return len(per) == len(inner) and all(d is None or d == p for p, d in zip(per, inner))


def _shape(y: Sample) -> str:
    dims = (y.n_total,) + tuple(y.rows.shape[1:])
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def _class_name(kind: str) -> str:
    return {SPARSE: "SparseCategoricalCrossentropy", CATEGORICAL: "CategoricalCrossentropy",
            BINARY: "BinaryCrossentropy"}[kind]
