"""Steps that are not finite, judged from an attempt's first step, warm-up or not.

``nonfinite`` turns more non-finite steps than ``max_nonfinite_steps`` into DIVERGED, and
says when the cause cannot be a learning rate (``evidence["cause"] == "input"``): a batch
that held NaN/inf, or a loss or gradient that was non-finite before any update.
``skips_persist`` judges a loss-scale optimizer's overflow skips (mixed precision), which
are expected a few at a time (docs/architecture.md, "Guard verdicts").

Pure module: NumPy only, no TensorFlow, no Ray.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from guardtrain.core.guard_config import GuardConfig
from guardtrain.core.guard_rules import Baseline
from guardtrain.core.verdicts import DIVERGED, Verdict

__all__ = ["nonfinite", "skips_persist"]


# -- loss-scale overflow skips (mixed precision) ----------------------------------------

# A loss-scale optimizer skips overflowing steps by design while it finds its scale (a
# burst at the start, one now and then later). In half of a full window's steps they mean
# the gradient overflows at any scale: the weights no longer move.
_SKIPS_PERSIST_FRACTION = 0.5


def skips_persist(w: Mapping[str, np.ndarray], config: GuardConfig) -> Verdict | None:
    """DIVERGED when loss-scale skips fill half of a full window's steps."""
    if "skipped" not in w:
        return None
    skipped = np.asarray(w["skipped"], bool)
    count, total = int(skipped.sum()), len(skipped)
    if count < 3 or count < _SKIPS_PERSIST_FRACTION * total:
        return None
    steps = w["step"]
    return Verdict(kind=DIVERGED, step=int(steps[-1]), first_step=int(steps[0]),
                   reason=f"DIVERGED at step {int(steps[-1])}: the loss-scale optimizer "
                          f"skipped {count} of {total} steps (the scaled gradient overflows "
                          f"at every scale it tried)",
                   evidence={"loss_scale_skips": count, "steps": total})


# -- non-finite steps: judged from the first step, warm-up or not -------------------------

def nonfinite(w: Mapping[str, np.ndarray], config: GuardConfig, base: Baseline, *,
              settled: bool) -> Verdict | None:
    """DIVERGED when the window holds more non-finite steps than tolerated, else None."""
    loss = np.asarray(w["loss"], dtype=np.float64)
    bad = ~np.asarray(w["finite"], bool) | ~np.isfinite(loss)
    count = int(bad.sum())
    if count <= config.max_nonfinite_steps:
        return None
    steps = w["step"]
    i = int(np.argmax(bad))
    at, last = int(steps[i]), int(steps[-1])
    grad = float(w["grad_norm_max"][i])
    if not math.isfinite(loss[i]):
        what = f"loss {loss[i]}"
    elif not math.isfinite(grad):
        what = f"gradient norm {grad}"
    else:
        what = "update or weights non-finite"
    ev = {"nonfinite_steps": count, "first_nonfinite_step": at, "steps": len(steps),
          "nonfinite": what.split(" ")[0]}
    text = f"{what} at step {at} ({count} non-finite of {len(steps)} steps)"
    # The loss and the gradient of an attempt's first step are computed at the restored
    # weights before any update: no learning rate made them non-finite, the inputs or the
    # model did (its update, which the rate scales, may be non-finite for other reasons).
    # A batch that held NaN/inf (the step reports it) makes it the data's fault, at
    # whatever step: never a learning-rate problem.
    inputs = w.get("inputs_finite")
    if inputs is not None and not np.asarray(inputs, bool).all():
        first_bad = int(steps[int(np.argmin(np.asarray(inputs, bool)))])
        ev.update(cause="input", nonfinite_inputs_step=first_bad)
        text += f"; the batch of step {first_bad} held NaN/inf values"
        return Verdict(kind=DIVERGED, step=last, first_step=int(steps[0]), evidence=ev,
                       reason=f"DIVERGED at step {last}: {text}", settled=settled)
    measured = bool(np.asarray(w.get("measured", np.ones(len(steps), bool)), bool)[i])
    if at == base.start_step and (not math.isfinite(loss[i])
                                  or (measured and not math.isfinite(grad))):
        ev["cause"] = "input"
        text += ", the attempt's first step, before any update"
    return Verdict(kind=DIVERGED, step=last, first_step=int(steps[0]), evidence=ev,
                   reason=f"DIVERGED at step {last}: {text}", settled=settled)
