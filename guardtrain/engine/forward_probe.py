"""Where a non-finite first step comes from: one batch through the model, layer by layer.

A loss that is non-finite at an attempt's first step was computed before any update: no
learning rate made it. Either the batch holds NaN/inf, or the forward pass overflows on
finite inputs (an exponential activation, raw-scale inputs into a deep stack). The guard
alone cannot tell these apart; this probe runs one batch through every layer of a
functional or Sequential model and names the first layer whose output is non-finite or
overflowing, with its activation (docs/architecture.md, "Rescue").
"""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np

__all__ = ["probe_forward"]

logger = logging.getLogger(__name__)

# A layer output this large overflows float32 as soon as it is squared or summed over a
# batch (3.4e38 is the largest float32).
_OVERFLOW = 1e18


def probe_forward(model: keras.Model, x: Any) -> dict[str, Any] | None:
    """The first non-finite or overflowing place in ``model``'s forward pass on ``x``.

    Returns:
        ``{"where": "inputs", "nonfinite_values": n}`` when the batch itself holds NaN/inf;
        ``{"where": "layer", "layer", "layer_class", "activation", "nonfinite_values",
        "max_abs", "layer_index"}`` for the first layer whose output is non-finite or
        above 1e18 in magnitude; ``{"where": "none"}`` when the whole pass is finite;
        ``None`` when the model cannot be probed (subclassed, or layers with several
        outputs).
    """
    leaves = [np.asarray(keras.ops.convert_to_numpy(t)) for t in keras.tree.flatten(x)]
    bad_inputs = sum(int((~np.isfinite(a)).sum()) for a in leaves
                     if np.issubdtype(a.dtype, np.floating))
    if bad_inputs:
        return {"where": "inputs", "nonfinite_values": bad_inputs}
    layers = [layer for layer in getattr(model, "layers", [])
              if not isinstance(layer, keras.layers.InputLayer)]
    try:
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        taps = keras.Model(inputs, [layer.output for layer in layers])
        outputs = taps(x, training=False)
    except Exception as err:  # subclassed, nested or multi-output layers: no taps
        logger.debug("forward probe not possible: %s", err)
        return None
    if len(layers) == 1:
        outputs = [outputs]
    for index, (layer, out) in enumerate(zip(layers, outputs)):
        # A layer may have several outputs (an LSTM's states): every part counts.
        parts = [np.asarray(keras.ops.convert_to_numpy(t), np.float64).reshape(-1)
                 for t in keras.tree.flatten(out)]
        a = np.concatenate(parts) if parts else np.zeros(0)
        finite = np.isfinite(a)
        biggest = float(np.abs(a[finite]).max()) if finite.any() else float("inf")
        if a.size and (not finite.all() or biggest > _OVERFLOW):
            return {"where": "layer", "layer": layer.name, "layer_index": index,
                    "layer_class": type(layer).__name__,
                    "activation": _activation_name(layer),
                    "nonfinite_values": int((~finite).sum()), "max_abs": biggest}
    return {"where": "none"}


def _activation_name(layer) -> str | None:
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    return act if isinstance(act, str) else getattr(act, "__name__", None)
