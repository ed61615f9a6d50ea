"""The guard: is training healthy? A pure verdict on a window of per-step statistics.

Every figure read here is globally reduced before it reaches the host, and every rule is
a deterministic function of those figures: no clock, no randomness. So every worker
reaches the same verdict at the same step and no collective is left waiting
(docs/architecture.md, "The data path").

A guard that interrupts healthy training is worse than none. So nothing is judged during
warm-up, every verdict needs its condition over a whole window, and every verdict about a
run that does not learn needs two witnesses: a weight-side figure orders of magnitude off
its healthy value, *and* a loss that does not fall. The rules, in the order ``judge``
asks them (the first that holds wins; defaults in ``GuardConfig``; each rule is a function
of ``guard_rules``):

```
rule               verdict            holds when
nonfinite          DIVERGED           any non-finite step (from the very first step,
                                      warm-up or not); a loss-scale optimizer's skipped
                                      overflow is not one, unless skips fill half of a
                                      full window's measured steps (skips_persist)
-- nothing else until warmup_steps + window_steps steps of the attempt --
replica_imbalance  REPLICA_IMBALANCE  one replica's gradient norm <= 1e-3 x the largest,
                                      in >= 90% of steps
falling            HEALTHY            loss falls between window halves by >= 1% of the
                                      starting loss and by >= 3 standard errors of noise
loss_blown_up      DIVERGED           loss risen by >= 2 x the starting loss above its low,
                                      in the last quarter's median and in 3/4 of the
                                      second half's steps
converged          CONVERGED          flat, at <= 10% of the starting loss and at <= 90%
                                      of the reference loss (when known): never rescued
                                      (unless no gradient reaches the first layer:
                                      DEAD_UNITS below)
dead_units         DEAD_UNITS         flat, >= 90% of gradient entries exactly 0, and the
                                      weights still: update_ratio < 1e-5, or (units that
                                      died during the attempt) the slowest layer's ratio
                                      < 1e-5, or the first layer's gradient exactly 0
                                      while the last layer's is not, or that share rose
                                      by >= 0.5 since the attempt's first step
vanishing          VANISHING          flat, grad_first/grad_last < 1e-2, grad_first < 1e-2,
                                      and the slowest layer's update ratio < 1e-5 (Adam
                                      moves every layer whatever the gradient's size)
stalled            STALLED            flat, update_ratio < 1e-5 (HEALTHY instead when a
                                      learning-rate schedule is decaying or warming up)
oscillating        OSCILLATING        flat, update_ratio >= 1e-2, and the loss flips
                                      direction in >= 90% of steps or update_ratio
                                      >= 1e-1 (weights thrown around)
no_progress        NO_PROGRESS        flat, at >= 99% of the reference loss (the best
                                      constant prediction's), once the attempt has run
                                      warm-up + 3 windows (not while a schedule warms up,
                                      nor with a validation loss below that line)
healthy_rest       HEALTHY            everything else
```

A verdict's weights are fit to be "the last healthy" snapshot (``snapshot_ok``) only when
the loss is not above the DIVERGED line and no units died in the window (>= 90% of
gradient entries exactly 0 at its end, up from the attempt's first step): a rollback to
dead units could not revive them.

Use ``observe`` from the loop (it holds the rolling window and the starting figures in a
``GuardState``), or ``judge`` on a window you keep yourself.

Pure module: NumPy only, no TensorFlow, no Ray.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import numpy as np

from guardtrain.core import guard_nonfinite, guard_rules
from guardtrain.core.errors import ConfigError
from guardtrain.core.guard_config import GuardConfig
from guardtrain.core.guard_rules import Baseline, number
from guardtrain.core.stats import REPLICA_NORMS, median_last
from guardtrain.core.verdicts import (CONVERGED, DEAD_UNITS, DIVERGED, HEALTHY, NO_PROGRESS,
                                      OSCILLATING, REPLICA_IMBALANCE, STALLED, VANISHING,
                                      VERDICT_KINDS, Verdict, VerdictKind)

__all__ = [
    "HEALTHY", "CONVERGED", "STALLED", "DIVERGED", "OSCILLATING", "VANISHING",
    "DEAD_UNITS", "REPLICA_IMBALANCE", "NO_PROGRESS", "VERDICT_KINDS", "VerdictKind",
    "REQUIRED_COLUMNS", "GuardConfig", "Verdict", "Baseline", "GuardState", "judge",
    "observe", "new_attempt",
]

#: Columns a chunk must carry (the optional ones: ``learning_rate``, ``REPLICA_NORMS``).
REQUIRED_COLUMNS = ("step", "loss", "finite", "update_ratio", "grad_first", "grad_last",
                    "zero_grad_fraction", "grad_norm_min", "grad_norm_max", "grad_norm_argmin")

_OPTIONAL_COLUMNS = ("learning_rate", "measured", "skipped", "inputs_finite", REPLICA_NORMS)
# The run's starting loss is the median of its first 20 finite losses: fewer are too noisy
# at small batch sizes (a low start makes any later loss look like a rise), and a rate high
# enough to inflate it blows up to non-finite soon after anyway.
_BASELINE_STEPS = 20


class GuardState(NamedTuple):
    """What ``observe`` carries from chunk to chunk. Picklable, for checkpoints.

    Args:
        window: the attempt's last ``window_steps`` rows (None before the first chunk).
        attempt_steps: rows observed in this attempt.
        baseline: the starting figures.
        first_losses: the run's first finite losses, from which ``baseline.loss`` is made.
    """

    window: Mapping[str, np.ndarray] | None = None
    attempt_steps: int = 0
    baseline: Baseline = Baseline()
    first_losses: tuple[float, ...] = ()


def new_attempt(state: GuardState, *, from_start: bool = False) -> GuardState:
    """The state for an attempt that restarts from a snapshot: fresh window and warm-up,
    the run's starting loss kept.

    Args:
        state: the state the previous attempt ended with.
        from_start: the snapshot is the run's initial weights. The starting loss is then
            measured again, from this attempt's first steps: the previous attempt's first
            steps may already have been thrown upwards by the rate being replaced (SGD at
            100 puts the loss in the thousands before it turns non-finite), and every
            loss after that would look "far below where the run began" (CONVERGED).
    """
    # Facts about the labels and the model, not about an attempt: kept.
    kept = dict(reference=state.baseline.reference, validation=state.baseline.validation)
    if from_start:
        return GuardState(baseline=Baseline(**kept))
    return GuardState(baseline=Baseline(loss=state.baseline.loss, **kept),
                      first_losses=state.first_losses)


def observe(state: GuardState, chunk: Mapping[str, Any], config: GuardConfig
            ) -> tuple[GuardState, Verdict]:
    """Adds one chunk of per-step statistics and judges the attempt so far.

    Args:
        state: from the previous call; ``GuardState()`` at the start of the run,
            ``new_attempt(state)`` after a rollback.
        chunk: ``{column: array[steps]}``: the ``STAT_COLUMNS``, ``"step"``, optionally
            ``"learning_rate"`` (per step; lets a decaying schedule not look like a
            stall) and ``REPLICA_NORMS`` (``[steps, replicas]``).
        config: the thresholds.

    Returns:
        ``(new_state, verdict)``; the input state is not modified.

    Example:

    >>> import numpy as np
    >>> n = 300
    >>> chunk = {"step": np.arange(1, n + 1), "loss": np.linspace(2.3, 1.0, n),
    ...          "finite": np.ones(n, bool), "update_ratio": np.full(n, 1e-3),
    ...          "grad_first": np.ones(n), "grad_last": np.ones(n),
    ...          "zero_grad_fraction": np.zeros(n), "grad_norm_min": np.ones(n),
    ...          "grad_norm_max": np.ones(n), "grad_norm_argmin": np.zeros(n, int)}
    >>> state, verdict = observe(GuardState(), chunk, GuardConfig())
    >>> str(verdict.kind), verdict.settled
    ('HEALTHY', True)
    """
    rows = _as_rows(chunk, "observe(chunk=...)")
    n = len(rows["loss"])
    if n == 0:
        raise ConfigError("observe(chunk=...): expected at least one step, found 0",
                          code="GT111", fix="call observe once per non-empty chunk")

    first_losses = state.first_losses
    if len(first_losses) < _BASELINE_STEPS:
        fresh = rows["loss"][np.isfinite(rows["loss"])][:_BASELINE_STEPS - len(first_losses)]
        first_losses = first_losses + tuple(float(x) for x in fresh)
    base = state.baseline
    if first_losses:
        base = base._replace(loss=float(median_last(first_losses)))
    if base.start_step is None:
        zeros = rows["zero_grad_fraction"][np.isfinite(rows["zero_grad_fraction"])]
        base = base._replace(start_step=int(rows["step"][0]),
                             zero_grad_fraction=number(zeros[0]) if zeros.size else None)
    if "learning_rate" in rows:
        lr = rows["learning_rate"][np.isfinite(rows["learning_rate"])]
        if lr.size:
            peak = float(lr.max()) if base.learning_rate is None else max(
                base.learning_rate, float(lr.max()))
            base = base._replace(learning_rate=peak)

    if state.window is None:
        window = rows
    else:
        window = {k: np.concatenate([state.window[k], rows[k]]) for k in rows
                  if k in state.window}
    window = {k: v[-config.window_steps:] for k, v in window.items()}
    seen = state.attempt_steps + n
    new_state = GuardState(window=window, attempt_steps=seen, baseline=base,
                           first_losses=first_losses)

    if seen >= config.warmup_steps + config.window_steps:
        return new_state, judge(window, config, baseline=base, attempt_steps=seen)
    # Warm-up, or the window is not full yet: only a non-finite step is judged.
    verdict = guard_nonfinite.nonfinite(window, config, base, settled=False)
    if verdict is None:
        last = int(rows["step"][-1])
        if seen < config.warmup_steps:
            why = f"warming up ({seen} of {config.warmup_steps} steps)"
        else:
            why = (f"filling the window ({seen - config.warmup_steps} of "
                   f"{config.window_steps} steps)")
        verdict = Verdict(kind=HEALTHY, step=last, reason=f"HEALTHY at step {last}: {why}",
                          evidence={"attempt_steps": seen}, settled=False)
    return new_state, verdict


def judge(window: Mapping[str, Any], config: GuardConfig, *,
          baseline: Baseline | None = None, attempt_steps: int | None = None) -> Verdict:
    """Judges the last ``config.window_steps`` steps (all past warm-up).

    Non-finite steps first; then, on a full window, the figures (``guard_rules.measure``)
    and the rules of ``guard_rules.RULES`` in order (the table in the module docstring).

    Args:
        window: ``{column: array[steps]}`` as for ``observe``. Fewer rows than
            ``window_steps`` are only checked for non-finite steps.
        config: the thresholds.
        baseline: the starting figures. Without them the window's own first quarter
            stands for the starting loss, so CONVERGED is never found; without its
            ``reference``, NO_PROGRESS is never found.
        attempt_steps: steps the attempt has run, for NO_PROGRESS's patience; None
            judges the window as it is.

    Returns:
        The ``Verdict``. Same inputs, same verdict.
    """
    w = _as_rows(window, "judge(window=...)")
    w = {k: v[-config.window_steps:] for k, v in w.items()}
    base = baseline or Baseline()
    steps = w["step"]
    last = int(steps[-1])
    verdict = guard_nonfinite.nonfinite(w, config, base,
                                    settled=len(steps) >= config.window_steps)
    if verdict is not None:
        return verdict
    ok = np.asarray(w["finite"], bool) & np.isfinite(w["loss"])
    okm = ok & np.asarray(w.get("measured", np.ones(len(steps), bool)), bool)
    # Fewer than 8 usable steps (a short window, or non-finite steps tolerated), or fewer
    # than 3 measured ones: too few to tell a trend from noise.
    if len(steps) >= config.window_steps:
        verdict = guard_nonfinite.skips_persist(w, config)
        if verdict is not None:
            return verdict
    if len(steps) < config.window_steps or ok.sum() < 8 or okm.sum() < 3:
        return Verdict(kind=HEALTHY, step=last, settled=False,
                       reason=f"HEALTHY at step {last}: filling the window "
                              f"({len(steps)} of {config.window_steps} steps)")
    figures = guard_rules.measure(w, config, base, attempt_steps=attempt_steps)
    for rule in guard_rules.RULES:
        verdict = rule(figures, config)
        if verdict is not None:
            return verdict
    return guard_rules.healthy_rest(figures, config)


def _as_rows(chunk: Mapping[str, Any], call: str) -> dict[str, np.ndarray]:
    missing = [c for c in REQUIRED_COLUMNS if c not in chunk]
    if missing:
        raise ConfigError(f"{call}: expected the columns {list(REQUIRED_COLUMNS)}, "
                          f"missing {missing}", code="GT111",
                          fix="pass the dict from stats.summarise_chunk plus 'step'")
    n = len(np.asarray(chunk["loss"]))
    rows, bad = {}, []
    for k, v in chunk.items():
        v = np.asarray(v)
        if v.ndim >= 1 and len(v) == n:
            rows[k] = v
        elif k in REQUIRED_COLUMNS or k in _OPTIONAL_COLUMNS:
            bad.append(k)
        # Anything else (bookkeeping such as a scalar "attempt") is not read here.
    if bad:
        raise ConfigError(f"{call}: expected every column to have {n} rows (one per step), "
                          f"found {bad} differ", code="GT111",
                          fix="pass one entry per step in every column")
    return rows
