"""Reads a compiled ``keras.Model`` into a ``ModelSpec``: inputs, outputs, loss, optimizer.

Only attributes are read; nothing is traced or run. The loss comes from ``model.loss``
(a string, a ``Loss`` object, a function, or a list/dict of them per output); the output
activation from the layer that produces each of ``model.outputs``.
"""

from __future__ import annotations

import functools
import logging

from guardtrain.checking.specs import (BINARY, CATEGORICAL, REGRESSION, SPARSE, UNKNOWN,
                                       InputSpec, LossSpec, ModelSpec, OutputSpec)

__all__ = ["describe", "loss_spec"]

logger = logging.getLogger(__name__)

# Normalised names (lower case, no "_") of the losses whose labels we know how to read.
_KINDS = {
    SPARSE: {"sparsecategoricalcrossentropy"},
    CATEGORICAL: {"categoricalcrossentropy", "categoricalfocalcrossentropy"},
    BINARY: {"binarycrossentropy", "binaryfocalcrossentropy"},
    REGRESSION: {"mse", "mae", "mape", "msle", "meansquarederror", "meanabsoluteerror",
                 "meanabsolutepercentageerror", "meansquaredlogarithmicerror", "huber",
                 "logcosh"},
}
_INTEGER_LAYERS = {"Embedding", "IntegerLookup", "StringLookup", "CategoryEncoding", "Hashing",
                   "TextVectorization"}


def loss_spec(loss) -> LossSpec | None:
    """Reads one loss (string, ``Loss`` object or function) into a ``LossSpec``."""
    if loss is None:
        return None
    from_logits, ignore, config = False, None, {}
    if isinstance(loss, str):
        name = loss
    elif isinstance(loss, functools.partial):
        name = getattr(loss.func, "__name__", repr(loss))
        config = dict(loss.keywords)
        from_logits = bool(config.get("from_logits", False))
    elif callable(loss) and hasattr(loss, "get_config"):
        config = _safe_config(loss)
        fn = getattr(loss, "fn", None)  # Keras wraps loss functions in LossFunctionWrapper
        name = type(loss).__name__
        if name == "LossFunctionWrapper" and fn is not None:
            name = getattr(fn, "__name__", name)
        from_logits = bool(config.get("from_logits", False))
        ignore = config.get("ignore_class")
    else:
        name = getattr(loss, "__name__", type(loss).__name__)
    key = name.lower().replace("_", "")
    kind = next((k for k, names in _KINDS.items() if key in names), UNKNOWN)
    return LossSpec(kind=kind, name=name, from_logits=from_logits, ignore_class=ignore,
                    label_smoothing=_number(config.get("label_smoothing"), 0.0),
                    delta=_number(config.get("delta"), 1.0),
                    reduction=config.get("reduction", "sum_over_batch_size"))


def _number(value, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def describe(model) -> ModelSpec:
    """Describes a ``keras.Model``: inputs, outputs with activation and loss, training state."""
    inputs, structure = _inputs(model)
    compiled = bool(getattr(model, "compiled", False)) and model.optimizer is not None
    loss = getattr(model, "loss", None) if compiled else None
    return ModelSpec(
        inputs=inputs,
        outputs=_outputs(model, loss),
        input_structure=structure,
        compiled=compiled,
        has_loss=loss is not None,
        built=bool(model.built),
        n_weights=len(model.weights),
        n_trainable=len(model.trainable_weights) if model.trainable else 0,
        lr_schedule=_schedule(model.optimizer) if compiled else None,
        own_train_step=_own_train_step(model),
        jit_compile=bool(getattr(model, "jit_compile", False)) if compiled else False,
        masked=_masked(model),
    )


def _masked(model) -> bool:
    """A layer that masks positions (Masking, mask_zero=True): a masked loss averages over
    the unmasked positions only."""
    for layer in getattr(model, "_flatten_layers", lambda: [])():
        if type(layer).__name__ == "Masking" or getattr(layer, "mask_zero", False):
            return True
    return False


def _own_train_step(model) -> str | None:
    """The model's class name when it overrides ``train_step`` (Keras's own otherwise)."""
    import keras

    return (None if getattr(type(model), "train_step", None) is keras.Model.train_step
            else type(model).__qualname__)


def _inputs(model) -> tuple[tuple[InputSpec, ...], str]:
    try:
        tensors = list(model.inputs or [])
    except (AttributeError, ValueError):
        return (), "single"  # subclassed or not built: shapes unknown
    struct = getattr(model, "_inputs_struct", None)
    if isinstance(struct, dict):
        names, structure = list(struct), "dict"
        tensors = list(struct.values())
    else:
        names = [t.name for t in tensors]
        structure = "list" if len(tensors) > 1 else "single"
    integer_inputs = _integer_consumers(model)
    specs = tuple(
        InputSpec(name=name, shape=tuple(t.shape), dtype=str(t.dtype),
                  takes_integers="int" in str(t.dtype) or t.name in integer_inputs)
        for name, t in zip(names, tensors))
    return specs, structure


def _integer_consumers(model) -> set[str]:
    """Names of the input tensors read directly by an Embedding or a lookup layer."""
    names = set()
    for layer in getattr(model, "layers", []):
        if type(layer).__name__ in _INTEGER_LAYERS:
            try:
                import keras

                names.update(t.name for t in keras.tree.flatten(layer.input))
            except Exception:  # a shared or unconnected layer has no single input: skip it
                continue
    return names


def _outputs(model, loss) -> tuple[OutputSpec, ...]:
    try:
        tensors = list(model.outputs or [])
    except (AttributeError, ValueError):
        return ()
    names = list(getattr(model, "output_names", None) or [t.name for t in tensors])
    if isinstance(loss, dict):
        losses = [loss.get(n) for n in names]
    elif isinstance(loss, (list, tuple)):
        losses = list(loss) + [None] * (len(tensors) - len(loss))
    else:
        losses = [loss] * len(tensors)
    weights = _loss_weights(model, names)
    return tuple(
        OutputSpec(name=n, shape=tuple(t.shape), activation=_activation(t), loss=loss_spec(l),
                   loss_weight=w)
        for n, t, l, w in zip(names, tensors, losses, weights))


def _loss_weights(model, names) -> list[float]:
    """Each output's ``loss_weights`` entry, as ``compile`` took it (1.0 when absent)."""
    given = getattr(getattr(model, "_compile_loss", None), "_user_loss_weights", None)
    if isinstance(given, dict):
        return [_number(given.get(n), 1.0) for n in names]
    if isinstance(given, (list, tuple)):
        return [_number(w, 1.0) for w in given] + [1.0] * (len(names) - len(given))
    return [_number(given, 1.0)] * len(names)


def _activation(tensor) -> str | None:
    """The activation that produces ``tensor``: read off the layer that made it."""
    history = getattr(tensor, "_keras_history", None)
    layer = history.operation if history is not None else None
    if layer is None:
        return None
    if type(layer).__name__ == "Softmax":
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    if isinstance(activation, str):
        return activation
    return getattr(activation, "__name__", None)


def _schedule(optimizer) -> str | None:
    import keras

    rate = getattr(optimizer, "_learning_rate", None)
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        return type(rate).__name__
    return None


def _safe_config(obj) -> dict:
    try:
        return obj.get_config() or {}
    except Exception:  # a custom Loss without get_config: read nothing from it
        return {}
