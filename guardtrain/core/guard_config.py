"""``GuardConfig``: when the guard calls a run unhealthy.

A frozen, keyword-only dataclass validated in ``__post_init__`` by the one ``Validator``:
every wrong field is reported at once, each with what was expected, what was found and a
Fix (docs/architecture.md, "Errors"). How the defaults were chosen is in the tuning notes
of ``scripts/rescue_bench.py``.

Pure module: no TensorFlow, no Ray.
"""

from __future__ import annotations

import dataclasses

from guardtrain.core.errors import Problem
from guardtrain.core.validation import Validator, is_int, is_number

__all__ = ["GuardConfig"]

_CODE = "GT110"


@dataclasses.dataclass(frozen=True, kw_only=True)
class GuardConfig:
    """When the guard calls a run unhealthy. Defaults favour missing over false alarms.

    Args:
        warmup_steps: steps at the start of every attempt that are never judged (Adam's
            bias correction, learning-rate warm-up, the first fast drop). Only non-finite
            steps are caught during warm-up. Every rescue pays warm-up + window once per
            attempt.
        window_steps: steps a verdict looks at; every condition must hold over all of
            them. The first verdict comes after ``warmup_steps + window_steps`` steps.
        flat_loss_fraction: the loss "does not fall" when the median of the window's
            second half is less than this fraction of the starting loss below the first
            half's (1%: below real progress), or less than 3 standard errors of the
            difference of the two medians under the window's own batch noise.
        converged_loss_fraction: a flat loss at or below this fraction of the run's
            starting loss is CONVERGED, never rescued ...
        converged_reference_fraction: ... when it is also at or below this fraction of
            the reference loss (the best constant prediction's, when known): far below
            a huge starting loss is not enough.
        no_progress_fraction: NO_PROGRESS when a loss that does not fall stays above
            ``1 - no_progress_fraction`` times the reference loss (within 1% of it, or
            above it; weak-signal tasks such as click prediction learn a few percent below
            it) ...
        no_progress_windows: ... once the attempt has run ``warmup_steps`` plus this
            many windows (a slow healthy start gets that long to leave the reference).
        diverged_rise_fraction: DIVERGED when the loss rises this many starting losses
            above its low (2.0: a positive loss at three times where it started).
        max_nonfinite_steps: non-finite steps tolerated in a window (raise it under
            mixed precision, where loss scaling skips overflowing steps by design).
        stall_update_ratio: median ``update_ratio`` below which the weights barely move
            (healthy is ~1e-3; CS231n).
        thrown_update_ratio: median ``update_ratio`` at which the weights are thrown
            around (1e-1).
        oscillation_update_ratio: least median ``update_ratio`` for OSCILLATING (ten
            times healthy), so a loss that alternates for another reason (interleaved
            data sources) is not blamed on the learning rate.
        oscillation_flip_fraction: share of steps where the loss changes direction for
            OSCILLATING. Independent noise flips 2/3 of the time; 0.9 is far above it.
        vanishing_layer_ratio: ``grad_first / grad_last`` below this is VANISHING ...
        vanishing_grad_norm: ... when ``grad_first`` is also below this, and the slowest
            layer's update ratio below ``stall_update_ratio`` (all in a window whose loss
            does not fall): the flat loss and the still layer keep a healthy run out.
        dead_zero_fraction: median share of gradient entries exactly 0 for DEAD_UNITS.
        imbalance_grad_ratio: a replica is silent when its gradient norm is at most this
            fraction of the largest replica's.
        imbalance_steps_fraction: share of the window's steps the same replica must be
            silent for REPLICA_IMBALANCE.
        stats_every: the norms (gradient, update, weight, per layer, zero share) are
            measured on one step in k (the first ceil(n / k) steps of each n-step chunk);
            the loss and the finite flag on every step. 1 measures every step. ``None``
            (default): 10, or fewer so that a window holds at least 10 measured steps
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
    converged_reference_fraction: float = 0.9
    no_progress_fraction: float = 0.01
    no_progress_windows: int = 3
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
        v = Validator("GuardConfig", code=_CODE)

        def need(ok, name, expected, fix):
            # The problem names the value it was given ("GuardConfig(window_steps=3)"):
            # a JOB file's reader sees the field among many and finds it by its value.
            if not ok:
                value = getattr(self, name)
                v.add(Problem(code=_CODE, where=f"GuardConfig({name}={value!r})",
                              expected=expected, found=repr(value), fix=fix))
            return bool(ok)

        need(is_int(self.warmup_steps) and self.warmup_steps >= 0, "warmup_steps",
             "an int >= 0", "use warmup_steps=50")
        window_ok = need(is_int(self.window_steps) and self.window_steps >= 8, "window_steps",
                         "an int >= 8 (a verdict needs enough steps to tell a trend from "
                         "noise)", "use window_steps=100")
        need(self.stats_every is None or is_int(self.stats_every) and self.stats_every >= 1
             and (not window_ok or self.window_steps >= 3 * self.stats_every),
             "stats_every", f"an int >= 1 with at least 3 measured steps per window "
             f"(window_steps={self.window_steps!r})",
             "use stats_every=10, or 1 to measure every step")
        need(is_int(self.no_progress_windows) and self.no_progress_windows >= 1,
             "no_progress_windows", "an int >= 1", "use no_progress_windows=3")
        need(is_int(self.max_nonfinite_steps) and self.max_nonfinite_steps >= 0,
             "max_nonfinite_steps", "an int >= 0", "use 0, or a few under mixed precision")
        for name in ("flat_loss_fraction", "converged_loss_fraction",
                     "converged_reference_fraction", "no_progress_fraction",
                     "oscillation_flip_fraction", "dead_zero_fraction",
                     "imbalance_steps_fraction", "decayed_lr_fraction"):
            value = getattr(self, name)
            need(is_number(value) and 0 < value <= 1, name, "a fraction in (0, 1]",
                 f"keep the default {_default(name)}")
        for name in ("diverged_rise_fraction", "stall_update_ratio", "thrown_update_ratio",
                     "oscillation_update_ratio", "vanishing_layer_ratio",
                     "vanishing_grad_norm", "imbalance_grad_ratio"):
            value = getattr(self, name)
            need(is_number(value) and value > 0, name, "a finite number > 0",
                 f"keep the default {_default(name)}")
        if not v.problems and not (self.stall_update_ratio < self.oscillation_update_ratio
                                   <= self.thrown_update_ratio):
            v.add(Problem(
                code=_CODE,
                where=f"GuardConfig(stall_update_ratio={self.stall_update_ratio!r}, "
                      f"oscillation_update_ratio={self.oscillation_update_ratio!r}, "
                      f"thrown_update_ratio={self.thrown_update_ratio!r})",
                expected="stall < oscillation <= thrown",
                found=f"{self.stall_update_ratio!r}, {self.oscillation_update_ratio!r}, "
                      f"{self.thrown_update_ratio!r}",
                fix="keep the defaults 1e-5, 1e-2, 1e-1"))
        v.raise_if_any()

    @property
    def no_progress_after(self) -> int:
        """Steps an attempt runs before NO_PROGRESS may be judged (a slow start's grace)."""
        return self.warmup_steps + self.no_progress_windows * self.window_steps

    @property
    def measure_every(self) -> int:
        """The norms are measured on every ``measure_every``-th step."""
        if self.stats_every is not None:
            return self.stats_every
        return max(1, min(10, self.window_steps // 10))


def _default(name: str):
    return GuardConfig.__dataclass_fields__[name].default
