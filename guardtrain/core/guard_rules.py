"""The guard's rules: the figures of a window, computed once, and an ordered table of rules.

``judge`` (in ``guard``) measures a window into ``Figures`` and asks each rule of ``RULES``
in turn; the first that returns a verdict wins, and a window no rule claims is HEALTHY
(docs/architecture.md, "Guard verdicts"). Each rule is a small function
``(figures, config) -> Verdict | None``; the thresholds are ``GuardConfig``'s fields.

A falling loss is never touched: it falls by a real fraction of the starting loss *and* by
more than batch noise could move the median of a half window (with weights that barely
move, the two medians still differ by chance).

Pure module: NumPy only, no TensorFlow, no Ray.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, NamedTuple

import numpy as np

from guardtrain.core.guard_config import GuardConfig
from guardtrain.core.stats import REPLICA_NORMS, median_last
from guardtrain.core.verdicts import (CONVERGED, DEAD_UNITS, DIVERGED, HEALTHY, NO_PROGRESS,
                                      OSCILLATING, REPLICA_IMBALANCE, STALLED, VANISHING,
                                      Verdict, VerdictKind)

__all__ = ["Baseline", "Figures", "measure", "RULES", "healthy_rest", "number", "relative_to"]

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
# A rate that ends a window this much above where it began is still warming up.
_RISING = 1.05


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
        reference: the loss of a model that learned nothing from its inputs (the best
            constant prediction's, ``core.reference``); None when unknown.
        validation: the latest validation loss, when there is validation data: below the
            reference, it vouches that the model learned (regularisation or dropout can
            hold the training loss up).
    """

    loss: float | None = None
    learning_rate: float | None = None
    zero_grad_fraction: float | None = None
    start_step: int | None = None
    reference: float | None = None
    validation: float | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Figures:
    """The named figures of one settled window, each computed once for every rule.

    Args:
        window: the window's columns; ok / okm: its finite steps, and those among them
            whose norms were measured.
        base: the starting figures.
        first, last, steps: the first and last step judged, and how many steps.
        loss: the finite losses; half: where the second half starts.
        early, late: medians of the first and second half; first_q, last_q: of the first
            and last quarter.
        ref: the starting loss; low: the lowest of it and the first quarter; scale: the
            unit of every loss-relative rule; line: the DIVERGED line.
        progress, noise: the fall between the halves and its batch noise, in ``scale``.
        ratio: median update ratio; slowest: the slowest layer's; zero, zero_end: the
            median share of zero gradient entries over the window and its last quarter.
        g_first, g_last: median first- and last-layer gradient norms; layer_ratio: the
            median of their ratio.
        at_start, cut_off, died, dead, dying: the dead-unit findings (see ``measure``).
        last_finite: the last step is finite (its weights may be kept).
        attempt_steps: steps the attempt has run (None: unknown, the window alone).
        evidence: the figures every verdict carries.
    """

    window: Mapping[str, np.ndarray]
    ok: np.ndarray
    okm: np.ndarray
    base: Baseline
    first: int
    last: int
    steps: int
    loss: np.ndarray
    half: int
    early: float
    late: float
    first_q: float
    last_q: float
    ref: float
    low: float
    scale: float
    line: float
    progress: float
    noise: float
    ratio: float
    slowest: float
    zero: float
    zero_end: float
    g_first: float
    g_last: float
    layer_ratio: float
    at_start: bool
    cut_off: bool
    died: bool
    dead: bool
    dying: bool
    last_finite: bool
    attempt_steps: int | None
    evidence: Mapping[str, object]

    @property
    def trend(self) -> str:
        return f"loss {self.early:.4g} -> {self.late:.4g}"

    @property
    def over(self) -> str:
        return f"over {self.steps} steps"

    @property
    def healthy_text(self) -> str:
        return f"{self.trend} {self.over}, update_ratio median {self.ratio:.1e}"

    def verdict(self, kind: VerdictKind, text: str, snapshot_ok: bool = False,
                **more) -> Verdict:
        """A settled verdict on this window, with the common evidence and ``more``."""
        return Verdict(kind=kind, step=self.last, first_step=self.first,
                       snapshot_ok=snapshot_ok and self.last_finite and not self.dying,
                       reason=f"{kind} at step {self.last}: {text}",
                       evidence={**self.evidence, **more})


def measure(w: Mapping[str, np.ndarray], config: GuardConfig, base: Baseline, *,
            attempt_steps: int | None = None) -> Figures:
    """The figures of a settled window (enough finite and measured steps)."""
    steps = w["step"]
    ok = np.asarray(w["finite"], bool) & np.isfinite(w["loss"])
    # The norms are measured on one step in k (stats_every); the loss on every step.
    okm = ok & np.asarray(w.get("measured", np.ones(len(steps), bool)), bool)
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
    g_first = float(median_last(w["grad_first"][okm]))
    g_last = float(median_last(w["grad_last"][okm]))
    layer_ratio = float(median_last(w["grad_first"][okm]
                                    / np.maximum(w["grad_last"][okm], _TINY)))

    # A tolerated non-finite last step (max_nonfinite_steps) may have left the weights
    # non-finite: never snapshot them.
    last_finite = bool(w["finite"][-1]) and math.isfinite(float(w["loss"][-1]))
    # Units that died in this window (most gradient entries exactly 0 at its end, and
    # more than at the attempt's first step): a rollback to these weights could not
    # revive them, so they are never "the last healthy" weights.
    dying = zero_end >= config.dead_zero_fraction and (
        base.zero_grad_fraction is None or zero_end > base.zero_grad_fraction + _DYING_RISE)
    at_start = (base.zero_grad_fraction is not None
                and base.zero_grad_fraction >= config.dead_zero_fraction)
    # Units dead since the attempt's first step: the whole model must stand still. Units
    # that died on the way: the layers they feed stand still (the output layer's bias,
    # or an optimizer's momentum, may still move the rest), or no gradient reaches the
    # first layer at all (exactly 0 in most steps) while the output layer still gets one.
    still = ratio if at_start else min(ratio, slowest)
    cut_off = not at_start and g_first == 0.0 and g_last > 0.0
    # Or most of the network died during this attempt: half of all gradient entries or
    # more went to exactly 0 since its first step (a few live units may still move).
    died = (base.zero_grad_fraction is not None
            and zero - base.zero_grad_fraction >= _DIED_RISE)
    dead = zero >= config.dead_zero_fraction and (still < config.stall_update_ratio
                                                  or cut_off or died)
    evidence = {"steps": len(steps), "loss_start": number(ref), "loss_early": number(early),
                "loss_late": number(late), "progress": number(progress),
                "noise": number(noise), "update_ratio": number(ratio)}
    if base.reference is not None:
        evidence["reference_loss"] = number(base.reference)
    return Figures(window=w, ok=ok, okm=okm, base=base, first=int(steps[0]),
                   last=int(steps[-1]), steps=len(steps), loss=loss, half=half, early=early,
                   late=late, first_q=first_q, last_q=last_q, ref=ref, low=low, scale=scale,
                   line=low + config.diverged_rise_fraction * scale, progress=progress,
                   noise=noise, ratio=ratio, slowest=slowest, zero=zero, zero_end=zero_end,
                   g_first=g_first, g_last=g_last, layer_ratio=layer_ratio,
                   at_start=at_start, cut_off=cut_off, died=died, dead=dead, dying=dying,
                   last_finite=last_finite, attempt_steps=attempt_steps, evidence=evidence)


# -- the rules, in order ------------------------------------------------------------------

def replica_imbalance(f: Figures, config: GuardConfig) -> Verdict | None:
    """One replica's gradient norm near 0 while the others' is not, in most steps."""
    silent = _silent_replica(f.window, f.okm, config)
    if silent is None:
        return None
    r, count, own, others = silent
    return f.verdict(REPLICA_IMBALANCE,
                     f"replica {r} gradient norm {own:.1e} vs {others:.1e} on the others "
                     f"in {count} of {int(f.okm.sum())} measured steps",
                     replica=r, silent_steps=count, replica_grad_norm=number(own),
                     others_grad_norm=number(others))


def falling(f: Figures, config: GuardConfig) -> Verdict | None:
    """HEALTHY: the loss falls by a real fraction and by more than batch noise."""
    if not f.progress >= max(config.flat_loss_fraction, _NOISE_MARGIN * f.noise):
        return None
    # High above the run's start but falling (a new attempt recovering from a bad
    # start): left alone, not kept.
    return f.verdict(HEALTHY, f.healthy_text, snapshot_ok=f.late < f.line)


def loss_blown_up(f: Figures, config: GuardConfig) -> Verdict | None:
    """DIVERGED: the loss far above its low, at the end and in most of the second half."""
    if not (f.last_q >= f.line
            and np.mean(f.loss[f.half:] >= f.line) >= _DIVERGED_STEPS_FRACTION):
        return None
    return f.verdict(DIVERGED, f"loss rose to {f.last_q:.4g} from a low of {f.low:.4g} "
                               f"{f.over} (run started at {f.ref:.4g})",
                     loss_last=number(f.last_q))


# From here on the loss does not fall (the rules above caught a falling or rising one).

def converged(f: Figures, config: GuardConfig) -> Verdict | None:
    """CONVERGED: flat far below the starting loss and the reference (never rescued)."""
    # A network cut off by dead units is not CONVERGED, however far below a (possibly
    # absurd: inputs off scale) starting loss it sits; nor is a loss near the reference,
    # which a constant prediction reaches.
    if (f.dead and f.cut_off) or f.base.loss is None or not (f.ref - f.late) >= (
            1 - config.converged_loss_fraction) * max(abs(f.ref), _TINY):
        return None
    reference = f.base.reference
    if reference is not None and reference > _TINY \
            and not f.late <= config.converged_reference_fraction * reference:
        return None
    below = (f", {f.late / reference:.0%} of the constant-prediction loss {reference:.4g}"
             if reference is not None and reference > _TINY else "")
    return f.verdict(CONVERGED, f"loss {f.late:.4g} flat {f.over}, down from {f.ref:.4g} at "
                                f"the start{below}", snapshot_ok=True)


def dead_units(f: Figures, config: GuardConfig) -> Verdict | None:
    """DEAD_UNITS: most gradient entries exactly 0 and the weights still (see ``measure``)."""
    if not f.dead:
        return None
    base = f.base
    more = {"zero_grad_fraction": number(f.zero), "zero_grad_fraction_at_start":
            number(base.zero_grad_fraction) if base.zero_grad_fraction is not None else None}
    if f.at_start:
        more["cause"] = "zero_gradients"
    return f.verdict(DEAD_UNITS, f"{f.zero:.0%} of gradient entries exactly 0, update_ratio "
                                 f"median {f.ratio:.1e} {f.over}, {f.trend}"
                                 + (" (already at the attempt's first step)" if f.at_start
                                    else "")
                                 + (", no gradient reaches the first layer" if f.cut_off
                                    else ""), **more)


def vanishing(f: Figures, config: GuardConfig) -> Verdict | None:
    """VANISHING: the first layers' gradient tiny *and* some layer barely moves."""
    # Under an adaptive optimizer (Adam) a tiny gradient still moves every layer, and is
    # no cause of a flat loss.
    if not (f.layer_ratio < config.vanishing_layer_ratio
            and f.g_first < config.vanishing_grad_norm
            and f.slowest < config.stall_update_ratio):
        return None
    return f.verdict(VANISHING, f"first-layer gradient {f.g_first:.1e} = {f.layer_ratio:.1e} x "
                                f"the last layer's, slowest layer's update ratio "
                                f"{f.slowest:.1e} {f.over}, {f.trend}",
                     grad_first=number(f.g_first), grad_first_over_last=number(f.layer_ratio),
                     slowest_layer_ratio=number(f.slowest))


def stalled(f: Figures, config: GuardConfig) -> Verdict | None:
    """STALLED: the weights barely move, unless a learning-rate schedule explains it."""
    if not f.ratio < config.stall_update_ratio:
        return None
    schedule = _schedule_moving(f.window, f.ok, f.base, config)
    if schedule:
        return f.verdict(HEALTHY, f"{f.healthy_text}; small updates follow the "
                                  f"learning-rate schedule ({schedule})",
                         snapshot_ok=f.progress >= 0)
    return f.verdict(STALLED, f"update_ratio median {f.ratio:.1e} {f.over}, {f.trend}")


def oscillating(f: Figures, config: GuardConfig) -> Verdict | None:
    """OSCILLATING: large updates and a loss that flips direction, or weights thrown."""
    if not f.ratio >= config.oscillation_update_ratio:
        return None
    d = np.diff(f.loss)
    flips = float(np.mean(d[1:] * d[:-1] < 0)) if d.size > 1 else 0.0
    if not (flips >= config.oscillation_flip_fraction
            or f.ratio >= config.thrown_update_ratio):
        return None
    amp = float(median_last(np.abs(d))) if d.size else 0.0
    return f.verdict(OSCILLATING, f"loss flips direction in {flips:.0%} of steps "
                                  f"(step-to-step {amp:.3g}), update_ratio median "
                                  f"{f.ratio:.1e} {f.over}, {f.trend}",
                     flip_fraction=number(flips), loss_step_change=number(amp))


def no_progress(f: Figures, config: GuardConfig) -> Verdict | None:
    """NO_PROGRESS: the loss stays at (or above) the reference, whatever the weights do."""
    reference = f.base.reference
    if reference is None or not reference > _TINY:
        return None
    # A slow healthy start gets no_progress_windows windows to leave the reference, and a
    # rate still warming up (a schedule) explains a loss that has not moved yet.
    if f.attempt_steps is not None and f.attempt_steps < config.no_progress_after:
        return None
    floor = (1 - config.no_progress_fraction) * reference
    val = f.base.validation
    if not f.late >= floor or (val is not None and math.isfinite(val) and val < floor):
        return None
    if _rate_rising(f.window, f.ok):
        return None
    gap = (f.late - reference) / reference
    return f.verdict(NO_PROGRESS,
                     f"loss {f.late:.4g} {f.over} is {relative_to(gap, reference)}, the "
                     f"loss of a constant prediction (the label "
                     f"distribution, without looking at the inputs); "
                     f"update_ratio median {f.ratio:.1e}",
                     snapshot_ok=False, reference_gap=number(gap))


def healthy_rest(f: Figures, config: GuardConfig) -> Verdict:
    """HEALTHY: no rule claimed the window; its weights are kept unless the loss rose."""
    return f.verdict(HEALTHY, f.healthy_text,
                     snapshot_ok=f.progress >= -_SNAPSHOT_RISE_FRACTION)


Rule = Callable[[Figures, GuardConfig], "Verdict | None"]

#: The rules in the order they are asked; the first verdict wins (``healthy_rest`` last).
RULES: tuple[Rule, ...] = (replica_imbalance, falling, loss_blown_up, converged, dead_units,
                           vanishing, stalled, oscillating, no_progress)


# -- helpers ------------------------------------------------------------------------------

def number(x) -> float | str | None:
    """A JSON-able number: non-finite values become the strings 'nan', 'inf', '-inf'."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else str(x)


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


def _rate_rising(w, ok) -> bool:
    """The learning rate rose over the window (a warm-up schedule still climbing)."""
    if "learning_rate" not in w:
        return False
    lr = np.asarray(w["learning_rate"], np.float64)[ok]
    lr = lr[np.isfinite(lr)]
    return lr.size >= 2 and lr[-1] > _RISING * lr[0]


def relative_to(gap: float, reference: float) -> str:
    """``"within 0.6% of 1.386"`` below the reference, ``"3.1% above 1.386"`` above."""
    return (f"{gap:.1%} above {reference:.4g}" if gap > 0
            else f"within {-gap:.1%} of {reference:.4g}")


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
