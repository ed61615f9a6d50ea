"""The guard: is training healthy? A pure verdict on a window of per-step statistics.

Every figure read here is globally reduced before it reaches the host (DESIGN §2), and
every rule is a deterministic function of those figures: no clock, no randomness. So
every worker reaches the same verdict at the same step and no collective is left waiting.

A guard that interrupts healthy training is worse than none (PITFALLS 24). So nothing is
judged during warm-up, every verdict needs its condition over a whole window, and every
verdict about a run that does not learn needs two witnesses: a weight-side figure orders
of magnitude off its healthy value, *and* a loss that does not fall. A falling loss is
never touched; "falling" means by a real fraction of the starting loss *and* by more than
batch noise moves the median of a half window (with weights that stand still, the two
medians still differ by chance). Rules, in order (the first that holds wins; defaults in
``GuardConfig``):

```
DIVERGED           any non-finite step (checked from the very first step, warm-up or not)
-- nothing else until warmup_steps + window_steps steps of the attempt --
REPLICA_IMBALANCE  one replica's gradient norm <= 1e-3 x the largest, in >= 90% of steps
HEALTHY            loss falls between window halves by >= 1% of the starting loss and by
                   >= 3 standard errors of batch noise
DIVERGED           loss risen by >= 2 x the starting loss above its low, in the last
                   quarter's median and in 3/4 of the second half's steps
CONVERGED          flat, and at <= 10% of the starting loss: never rescued (unless no
                   gradient reaches the first layer: DEAD_UNITS below)
DEAD_UNITS         flat, >= 90% of gradient entries exactly 0, and the weights still:
                   update_ratio < 1e-5, or (units that died during the attempt) the
                   slowest layer's ratio < 1e-5, or the first layer's gradient exactly 0
                   while the last layer's is not, or that share rose by >= 0.5 since the
                   attempt's first step
VANISHING          flat, grad_first/grad_last < 1e-3, grad_first < 1e-4, and the slowest
                   layer's update ratio < 1e-5 (Adam moves every layer whatever the
                   gradient's size: a tiny gradient is then not why the loss is flat)
STALLED            flat, update_ratio < 1e-5 (and no learning-rate schedule decaying)
OSCILLATING        flat, update_ratio >= 1e-2, and the loss flips direction in >= 90% of
                   steps or update_ratio >= 1e-1 (weights thrown around)
HEALTHY            everything else
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

import dataclasses
import math
from typing import Any, Mapping, NamedTuple

import numpy as np

from guardtrain.core.errors import ConfigError
from guardtrain.core.stats import REPLICA_NORMS, median_last

__all__ = [
    "HEALTHY", "CONVERGED", "STALLED", "DIVERGED", "OSCILLATING", "VANISHING",
    "DEAD_UNITS", "REPLICA_IMBALANCE", "VERDICT_KINDS",
    "REQUIRED_COLUMNS", "GuardConfig", "Verdict", "Baseline", "GuardState", "judge",
    "observe", "new_attempt",
]

HEALTHY = "HEALTHY"
CONVERGED = "CONVERGED"
STALLED = "STALLED"
DIVERGED = "DIVERGED"
OSCILLATING = "OSCILLATING"
VANISHING = "VANISHING"
DEAD_UNITS = "DEAD_UNITS"
REPLICA_IMBALANCE = "REPLICA_IMBALANCE"
VERDICT_KINDS = (HEALTHY, CONVERGED, STALLED, DIVERGED, OSCILLATING, VANISHING,
                 DEAD_UNITS, REPLICA_IMBALANCE)

#: Columns a chunk must carry (the optional ones: ``learning_rate``, ``REPLICA_NORMS``).
REQUIRED_COLUMNS = ("step", "loss", "finite", "update_ratio", "grad_first", "grad_last",
                    "zero_grad_fraction", "grad_norm_min", "grad_norm_max", "grad_norm_argmin")

_OPTIONAL_COLUMNS = ("learning_rate", "measured", REPLICA_NORMS)
# The run's starting loss is the median of its first 20 finite losses: fewer are too noisy
# at small batch sizes (a low start makes any later loss look like a rise), and a rate high
# enough to inflate it blows up to non-finite soon after anyway.
_BASELINE_STEPS = 20
# DIVERGED needs the loss above the line in this share of the window's second half, so a
# few noisy batches never make a divergence.
_DIVERGED_STEPS_FRACTION = 0.75
# A healthy window may end a little above where it began (noise, a new epoch); only a
# rise beyond this fraction of the starting loss makes its weights unfit for a snapshot.
_SNAPSHOT_RISE_FRACTION = 0.1
# A fall counts only beyond this many standard errors of the difference between the two
# half-window medians (3: by chance alone, about one window in 700).
_NOISE_MARGIN = 3.0
# Units "died" in a window when the share of exactly-0 gradient entries rose by more than
# this since the attempt's first step.
_DYING_RISE = 0.05
# DEAD_UNITS without still weights needs this rise: from a healthy share (5-20% at batch
# 32, up to ~75% at batch 1) to >= 90% is not the slow sparsening of healthy training.
_DIED_RISE = 0.5
_TINY = 1e-30


@dataclasses.dataclass(frozen=True, kw_only=True)
class GuardConfig:
    """When the guard calls a run unhealthy. Defaults favour missing over false alarms.

    Args:
        warmup_steps: steps at the start of every attempt that are never judged (Adam's
            bias correction, learning-rate warm-up, the first fast drop). Only non-finite
            steps are caught during warm-up. 50 (was 100): with the noise test below, no
            healthy control of the rescue benchmark was judged unhealthy at 50 + 100,
            and every rescue pays warm-up + window once per attempt.
        window_steps: steps a verdict looks at; every condition must hold over all of
            them. The first verdict comes after ``warmup_steps + window_steps`` steps.
            100 (was 200), see ``warmup_steps``.
        flat_loss_fraction: the loss "does not fall" when the median of the window's
            second half is less than this fraction of the starting loss below the first
            half's (1%: below real progress), or less than 3 standard errors of the
            difference of the two medians under the window's own batch noise.
        converged_loss_fraction: a flat loss at or below this fraction of the run's
            starting loss is CONVERGED, never rescued.
        diverged_rise_fraction: DIVERGED when the loss rises this many starting losses
            above its low (2.0: a positive loss at three times where it started; at 1.0,
            heavy-tailed batch noise on a noisy starting loss gave false alarms).
        max_nonfinite_steps: non-finite steps tolerated in a window (raise it under
            mixed precision, where loss scaling skips overflowing steps by design).
        stall_update_ratio: median ``update_ratio`` below which the weights barely move
            (healthy is ~1e-3; CS231n). Adam at lr 1e-6 measures ~5e-6 on a small MLP.
        thrown_update_ratio: median ``update_ratio`` at which the weights are thrown
            around (1e-1).
        oscillation_update_ratio: least median ``update_ratio`` for OSCILLATING (ten
            times healthy), so a loss that alternates for another reason (interleaved
            data sources) is not blamed on the learning rate.
        oscillation_flip_fraction: share of steps where the loss changes direction for
            OSCILLATING. Independent noise flips 2/3 of the time; 0.9 is far above it.
        vanishing_layer_ratio: ``grad_first / grad_last`` below this is VANISHING ...
        vanishing_grad_norm: ... when ``grad_first`` is also below this (PITFALLS 21),
            and the slowest layer's update ratio below ``stall_update_ratio`` (all in a
            window whose loss does not fall). 1e-2 and 1e-2 (the usual rule is 1e-3 and
            1e-4, PITFALLS 21): a 5-layer sigmoid MLP under SGD sits at chance with a
            first-layer gradient of 3e-5..3e-4 (circles) or 1e-3..1.5e-3 (blobs), 3e-4..4e-3
            of the last layer's, and Adam trains it; the flat loss and the still layer keep
            a healthy run out.
        dead_zero_fraction: median share of gradient entries exactly 0 for DEAD_UNITS.
        imbalance_grad_ratio: a replica is silent when its gradient norm is at most this
            fraction of the largest replica's.
        imbalance_steps_fraction: share of the window's steps the same replica must be
            silent for REPLICA_IMBALANCE.
        stats_every: the norms (gradient, update, weight, per layer, zero share) are
            measured on one step in k (the first ceil(n / k) steps of each n-step chunk);
            the loss and the finite flag on every step. 10:
            measuring every step costs 10-30% on a 0.1-0.3 ms step (an MLP), and a
            window of 100 steps still holds 10 measured steps (``scripts/bench_overhead.py``).
            1 measures every step (CNN-sized steps pay 2-4% for it). ``None`` (default):
            10, or fewer so that a window holds at least 10 measured steps
            (``window_steps // 10``); see ``measure_every``.
        decayed_lr_fraction: when the chunk carries ``learning_rate`` and its window
            median is below this fraction of the attempt's peak (a schedule decaying), or
            the rate is still rising (a schedule warming up), tiny updates are the
            schedule's doing and are not called STALLED.

    Example:

    >>> GuardConfig(warmup_steps=20, window_steps=50).window_steps
    50
    """

    warmup_steps: int = 50
    window_steps: int = 100
    flat_loss_fraction: float = 0.01
    converged_loss_fraction: float = 0.1
    diverged_rise_fraction: float = 2.0
    max_nonfinite_steps: int = 0
    stall_update_ratio: float = 1e-5
    thrown_update_ratio: float = 1e-1
    oscillation_update_ratio: float = 1e-2
    oscillation_flip_fraction: float = 0.9
    vanishing_layer_ratio: float = 1e-2
    vanishing_grad_norm: float = 1e-2
    dead_zero_fraction: float = 0.9
    imbalance_grad_ratio: float = 1e-3
    imbalance_steps_fraction: float = 0.9
    decayed_lr_fraction: float = 0.1
    stats_every: int | None = None

    def __post_init__(self):
        problems = []

        def need(ok, name, expected, fix):
            if not ok:
                value = getattr(self, name)
                problems.append(f"GuardConfig({name}={value!r}): expected {expected}, "
                                f"found {value!r}. Fix: {fix}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        need(is_int(self.warmup_steps) and self.warmup_steps >= 0, "warmup_steps",
             "an int >= 0", "use warmup_steps=100")
        need(is_int(self.window_steps) and self.window_steps >= 8, "window_steps",
             "an int >= 8 (a verdict needs enough steps to tell a trend from noise)",
             "use window_steps=200")
        need(self.stats_every is None or is_int(self.stats_every) and self.stats_every >= 1
             and (not is_int(self.window_steps) or self.window_steps >= 3 * self.stats_every),
             "stats_every", f"an int >= 1 with at least 3 measured steps per window "
             f"(window_steps={self.window_steps!r})",
             "use stats_every=10, or 1 to measure every step")
        need(is_int(self.max_nonfinite_steps) and self.max_nonfinite_steps >= 0,
             "max_nonfinite_steps", "an int >= 0", "use 0, or a few under mixed precision")
        for name in ("flat_loss_fraction", "converged_loss_fraction",
                     "oscillation_flip_fraction", "dead_zero_fraction",
                     "imbalance_steps_fraction", "decayed_lr_fraction"):
            v = getattr(self, name)
            need(is_num(v) and 0 < v <= 1, name, "a fraction in (0, 1]",
                 f"keep the default {GuardConfig.__dataclass_fields__[name].default}")
        for name in ("diverged_rise_fraction", "stall_update_ratio", "thrown_update_ratio",
                     "oscillation_update_ratio", "vanishing_layer_ratio",
                     "vanishing_grad_norm", "imbalance_grad_ratio"):
            v = getattr(self, name)
            need(is_num(v) and v > 0, name, "a finite number > 0",
                 f"keep the default {GuardConfig.__dataclass_fields__[name].default}")
        if not problems and not (self.stall_update_ratio < self.oscillation_update_ratio
                                 <= self.thrown_update_ratio):
            problems.append(
                f"GuardConfig(stall_update_ratio={self.stall_update_ratio!r}, "
                f"oscillation_update_ratio={self.oscillation_update_ratio!r}, "
                f"thrown_update_ratio={self.thrown_update_ratio!r}): expected stall < "
                "oscillation <= thrown. Fix: keep the defaults 1e-5, 1e-2, 1e-1")
        if problems:
            raise ConfigError("\n".join(problems), code="GT110",
                              fix="see each problem above")

    @property
    def measure_every(self) -> int:
        """The norms are measured on every ``measure_every``-th step."""
        if self.stats_every is not None:
            return self.stats_every
        return max(1, min(10, self.window_steps // 10))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Verdict:
    """What the guard concluded about the latest window, and the evidence for it.

    Args:
        kind: one of ``VERDICT_KINDS``.
        step: the last step judged (the optimizer step the weights are at).
        first_step: the first step of the window judged (``None`` during warm-up).
        reason: one line a person can believe, e.g. ``"STALLED at step 400:
            update_ratio median 3.1e-07 over 200 steps, loss 2.302 -> 2.301"``.
        evidence: the numbers behind it (plain floats, ints, bools, strings:
            JSON-able), with ``"replica"`` for REPLICA_IMBALANCE and ``"cause"`` when
            the cause is not a hyperparameter (``"input"``, ``"zero_gradients"``).
        settled: False while warming up or filling the window (only non-finite steps
            are judged then).
        snapshot_ok: the weights at ``step`` are fit to be the "last healthy" snapshot.
    """

    kind: str
    step: int
    reason: str
    first_step: int | None = None
    evidence: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    settled: bool = True
    snapshot_ok: bool = False

    @property
    def unhealthy(self) -> bool:
        """True for every kind but HEALTHY and CONVERGED."""
        return self.kind not in (HEALTHY, CONVERGED)


class Baseline(NamedTuple):
    """The starting figures a window is judged against.

    Args:
        loss: the run's starting loss (kept across attempts, so CONVERGED means "far
            below where the run began").
        learning_rate: the highest rate seen in this attempt (schedule detection).
        zero_grad_fraction: share of zero gradient entries at the attempt's first step,
            i.e. at the snapshot weights.
        start_step: the step of the attempt's first row (its loss does not depend on
            the learning rate).
    """

    loss: float | None = None
    learning_rate: float | None = None
    zero_grad_fraction: float | None = None
    start_step: int | None = None


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
    if from_start:
        return GuardState()
    return GuardState(baseline=Baseline(loss=state.baseline.loss),
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
    >>> verdict.kind, verdict.settled
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
                             zero_grad_fraction=_num(zeros[0]) if zeros.size else None)
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
        return new_state, judge(window, config, baseline=base)
    # Warm-up, or the window is not full yet: only a non-finite step is judged.
    verdict = _nonfinite(window, config, base, settled=False)
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
          baseline: Baseline | None = None) -> Verdict:
    """Judges the last ``config.window_steps`` steps (all past warm-up).

    Args:
        window: ``{column: array[steps]}`` as for ``observe``. Fewer rows than
            ``window_steps`` are only checked for non-finite steps.
        config: the thresholds.
        baseline: the starting figures. Without them the window's own first quarter
            stands for the starting loss, so CONVERGED is never found.

    Returns:
        The ``Verdict``. Same inputs, same verdict.
    """
    w = _as_rows(window, "judge(window=...)")
    w = {k: v[-config.window_steps:] for k, v in w.items()}
    base = baseline or Baseline()
    steps = w["step"]
    last = int(steps[-1])
    verdict = _nonfinite(w, config, base, settled=len(steps) >= config.window_steps)
    if verdict is not None:
        return verdict
    ok = np.asarray(w["finite"], bool) & np.isfinite(w["loss"])
    # The norms are measured on one step in k (stats_every); the loss on every step.
    okm = ok & np.asarray(w.get("measured", np.ones(len(steps), bool)), bool)
    # Fewer than 8 usable steps (a short window, or non-finite steps tolerated), or fewer
    # than 3 measured ones: too few to tell a trend from noise.
    if len(steps) < config.window_steps or ok.sum() < 8 or okm.sum() < 3:
        return Verdict(kind=HEALTHY, step=last, settled=False,
                       reason=f"HEALTHY at step {last}: filling the window "
                              f"({len(steps)} of {config.window_steps} steps)")
    first = int(steps[0])
    loss = w["loss"][ok]
    n = loss.size
    half, quarter = n // 2, max(1, n // 4)
    early, late = float(median_last(loss[:half])), float(median_last(loss[half:]))
    first_q, last_q = float(median_last(loss[:quarter])), float(median_last(loss[-quarter:]))
    ref = base.loss if base.loss is not None else first_q
    low = min(ref, first_q)
    # Loss-relative rules use the starting loss as their unit; |low| covers losses that
    # start near 0 and go negative (cosine similarity).
    scale = max(abs(ref), abs(low), _TINY)
    progress = (early - late) / scale
    noise = _median_gap_noise(loss, half) / scale
    ratio = float(median_last(w["update_ratio"][okm]))
    # The slowest layer's update ratio: the layer a vanished gradient or dead units
    # leave behind. Absent (scripted chunks), the whole model's ratio stands in.
    slowest = (float(median_last(w["layer_ratio_min"][okm])) if "layer_ratio_min" in w
               else ratio)
    zero = float(median_last(w["zero_grad_fraction"][okm]))
    zero_end = float(median_last(w["zero_grad_fraction"][okm][-max(1, int(okm.sum()) // 4):]))
    ev = {"steps": len(steps), "loss_start": _num(ref), "loss_early": _num(early),
          "loss_late": _num(late), "progress": _num(progress), "noise": _num(noise),
          "update_ratio": _num(ratio)}
    trend = f"loss {early:.4g} -> {late:.4g}"
    over = f"over {len(steps)} steps"

    # A tolerated non-finite last step (max_nonfinite_steps) may have left the weights
    # non-finite: never snapshot them.
    last_finite = bool(w["finite"][-1]) and math.isfinite(float(w["loss"][-1]))
    # Units that died in this window (most gradient entries exactly 0 at its end, and
    # more than at the attempt's first step): a rollback to these weights could not
    # revive them, so they are never "the last healthy" weights.
    dying = zero_end >= config.dead_zero_fraction and (
        base.zero_grad_fraction is None or zero_end > base.zero_grad_fraction + _DYING_RISE)

    def verdict(kind, text, snapshot_ok=False, **more):
        return Verdict(kind=kind, step=last, first_step=first,
                       snapshot_ok=snapshot_ok and last_finite and not dying,
                       reason=f"{kind} at step {last}: {text}", evidence={**ev, **more})

    silent = _silent_replica(w, okm, config)
    if silent is not None:
        r, count, own, others = silent
        return verdict(REPLICA_IMBALANCE,
                       f"replica {r} gradient norm {own:.1e} vs {others:.1e} on the others "
                       f"in {count} of {int(okm.sum())} measured steps",
                       replica=r, silent_steps=count, replica_grad_norm=_num(own),
                       others_grad_norm=_num(others))

    # A falling loss is never touched: it falls by a real fraction of the starting loss
    # *and* by more than batch noise could move the median of a half window (with
    # weights that barely move, the medians still differ by chance).
    healthy_text = f"{trend} {over}, update_ratio median {ratio:.1e}"
    line = low + config.diverged_rise_fraction * scale
    if progress >= max(config.flat_loss_fraction, _NOISE_MARGIN * noise):
        # High above the run's start but falling (a new attempt recovering from a
        # bad start): left alone, not kept.
        return verdict(HEALTHY, healthy_text, snapshot_ok=late < line)

    if last_q >= line and np.mean(loss[half:] >= line) >= _DIVERGED_STEPS_FRACTION:
        return verdict(DIVERGED, f"loss rose to {last_q:.4g} from a low of {low:.4g} {over} "
                                 f"(run started at {ref:.4g})", loss_last=_num(last_q))

    # From here on the loss does not fall.
    at_start = (base.zero_grad_fraction is not None
                and base.zero_grad_fraction >= config.dead_zero_fraction)
    # Units dead since the attempt's first step: the whole model must stand still. Units
    # that died on the way: the layers they feed stand still (the output layer's bias,
    # or an optimizer's momentum, may still move the rest), or no gradient reaches the
    # first layer at all (exactly 0 in most steps) while the output layer still gets one.
    still = ratio if at_start else min(ratio, slowest)
    cut_off = (not at_start and float(median_last(w["grad_first"][okm])) == 0.0
               and float(median_last(w["grad_last"][okm])) > 0.0)
    # Or most of the network died during this attempt: half of all gradient entries or
    # more went to exactly 0 since its first step (a few live units may still move).
    died = (base.zero_grad_fraction is not None
            and zero - base.zero_grad_fraction >= _DIED_RISE)
    dead = zero >= config.dead_zero_fraction and (still < config.stall_update_ratio
                                                  or cut_off or died)

    # A network cut off by dead units is not CONVERGED, however far below a (possibly
    # absurd: inputs off scale) starting loss it sits.
    if not (dead and cut_off) and base.loss is not None and (ref - late) >= (
            1 - config.converged_loss_fraction) * max(abs(ref), _TINY):
        return verdict(CONVERGED, f"loss {late:.4g} flat {over}, down from {ref:.4g} at the "
                                  f"start", snapshot_ok=True)

    if dead:
        more = {"zero_grad_fraction": _num(zero), "zero_grad_fraction_at_start":
                _num(base.zero_grad_fraction) if base.zero_grad_fraction is not None else None}
        if at_start:
            more["cause"] = "zero_gradients"
        return verdict(DEAD_UNITS, f"{zero:.0%} of gradient entries exactly 0, update_ratio "
                                   f"median {ratio:.1e} {over}, {trend}"
                                   + (" (already at the attempt's first step)" if at_start
                                      else "")
                                   + (", no gradient reaches the first layer" if cut_off
                                      else ""), **more)

    g_first = float(median_last(w["grad_first"][okm]))
    layer_ratio = float(median_last(w["grad_first"][okm]
                                  / np.maximum(w["grad_last"][okm], _TINY)))
    # The first layers' gradient is tiny *and* some layer barely moves: under an adaptive
    # optimizer (Adam) a tiny gradient still moves every layer, and is no cause of a
    # flat loss.
    if (layer_ratio < config.vanishing_layer_ratio and g_first < config.vanishing_grad_norm
            and slowest < config.stall_update_ratio):
        return verdict(VANISHING, f"first-layer gradient {g_first:.1e} = {layer_ratio:.1e} x "
                                  f"the last layer's, slowest layer's update ratio "
                                  f"{slowest:.1e} {over}, {trend}",
                       grad_first=_num(g_first), grad_first_over_last=_num(layer_ratio),
                       slowest_layer_ratio=_num(slowest))

    if ratio < config.stall_update_ratio:
        schedule = _schedule_moving(w, ok, base, config)
        if schedule:
            return verdict(HEALTHY, f"{healthy_text}; small updates follow the learning-rate "
                                    f"schedule ({schedule})", snapshot_ok=progress >= 0)
        return verdict(STALLED, f"update_ratio median {ratio:.1e} {over}, {trend}")

    if ratio >= config.oscillation_update_ratio:
        d = np.diff(loss)
        flips = float(np.mean(d[1:] * d[:-1] < 0)) if d.size > 1 else 0.0
        if flips >= config.oscillation_flip_fraction or ratio >= config.thrown_update_ratio:
            amp = float(median_last(np.abs(d))) if d.size else 0.0
            return verdict(OSCILLATING, f"loss flips direction in {flips:.0%} of steps "
                                        f"(step-to-step {amp:.3g}), update_ratio median "
                                        f"{ratio:.1e} {over}, {trend}",
                           flip_fraction=_num(flips), loss_step_change=_num(amp))

    return verdict(HEALTHY, healthy_text,
                   snapshot_ok=progress >= -_SNAPSHOT_RISE_FRACTION)


# -- helpers ------------------------------------------------------------------------------

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


def _num(x) -> float | str | None:
    """A JSON-able number: non-finite values become the strings 'nan', 'inf', '-inf'."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else str(x)


def _nonfinite(w: Mapping[str, np.ndarray], config: GuardConfig, base: Baseline, *,
               settled: bool) -> Verdict | None:
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
    # The loss of an attempt's first step is computed at the restored weights before any
    # update: no learning rate made it non-finite, the inputs or the model did.
    if at == base.start_step and not math.isfinite(loss[i]):
        ev["cause"] = "input"
        text += ", the attempt's first step, before any update"
    return Verdict(kind=DIVERGED, step=last, first_step=int(steps[0]), evidence=ev,
                   reason=f"DIVERGED at step {last}: {text}", settled=settled)


def _silent_replica(w, ok, config):
    """(replica, silent steps, its median norm, the largest's median) or None."""
    top = np.asarray(w["grad_norm_max"], np.float64)[ok]
    reps = w.get(REPLICA_NORMS)
    if reps is not None and reps.ndim == 2 and reps.shape[1] >= 2:
        reps = np.asarray(reps, np.float64)[ok]
        silent = (reps <= config.imbalance_grad_ratio * top[:, None]) & (top[:, None] > 0)
        counts = silent.sum(axis=0)
        r = int(np.argmax(counts))  # ties: the lowest global index
        own = reps[:, r]
    else:
        low = np.asarray(w["grad_norm_min"], np.float64)[ok]
        arg = np.asarray(w["grad_norm_argmin"]).astype(np.int64)[ok]
        silent = (low <= config.imbalance_grad_ratio * top) & (top > 0)
        if not silent.any():
            return None
        counts = np.bincount(arg[silent])
        r = int(np.argmax(counts))
        own = np.where(arg == r, low, np.nan)
    count = int(counts[r]) if counts.size else 0
    if ok.sum() == 0 or count < config.imbalance_steps_fraction * ok.sum():
        return None
    return r, count, float(np.nanmedian(own)), float(median_last(top))


def _median_gap_noise(loss: np.ndarray, half: int) -> float:
    """Standard error of (median of loss[:half]) - (median of loss[half:]) under batch
    noise alone.

    The per-step noise is read from step-to-step differences (a trend cancels in them),
    robustly (MAD), so a few wild batches do not widen it: sigma = 1.4826 MAD(diff)/sqrt 2.
    A median of m samples has a standard error of about 1.2533 sigma / sqrt m.
    """
    d = np.diff(loss)
    if d.size < 2:
        return 0.0
    sigma = 1.4826 * float(median_last(np.abs(d - median_last(d)))) / math.sqrt(2.0)
    m1, m2 = max(half, 1), max(loss.size - half, 1)
    return 1.2533 * sigma * math.sqrt(1.0 / m1 + 1.0 / m2)


def _schedule_moving(w, ok, base: Baseline, config: GuardConfig) -> str:
    """Why the learning rate itself explains small updates, or ''."""
    if "learning_rate" not in w or base.learning_rate is None:
        return ""
    lr = np.asarray(w["learning_rate"], np.float64)[ok]
    if lr.size < 2:
        return ""
    now = float(median_last(lr))
    if now < config.decayed_lr_fraction * base.learning_rate:
        return f"rate {now:.1e}, {now / base.learning_rate:.0%} of its peak"
    if lr[-1] > 2 * lr[0]:
        return f"rate rising {lr[0]:.1e} -> {lr[-1]:.1e}"
    return ""
