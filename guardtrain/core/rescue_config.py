"""``RescueConfig``: how a rescue may change a run, and how many times.

A frozen, keyword-only dataclass validated in ``__post_init__`` by the one ``Validator``:
every wrong field is reported at once (docs/architecture.md, "Errors"). How the defaults
were chosen is in the tuning notes of ``scripts/rescue_bench.py``.

Pure module: no TensorFlow, no Ray.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from guardtrain.core.validation import Validator, is_int, is_number

__all__ = ["RescueConfig"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RescueConfig:
    """How a rescue may change a run, and how many times.

    Args:
        max_attempts: attempts in all, the first included (4: three rescues). Spent ->
            ``RescueExhaustedError``.
        lr_down_factor: DIVERGED / OSCILLATING divide the learning rate by this.
        probe_multipliers: STALLED probes the current rate times each of these, from the
            snapshot (a short range test); kept in ascending order.
        no_progress_multipliers: NO_PROGRESS (the loss stays at the constant-prediction
            loss, the weights moving) probes the current rate times each of these, below
            and above it: either way may be what keeps the model at the label
            distribution.
        probe_steps: steps each probe runs.
        probe_min_drop_fraction: a probed rate must lower the loss by at least this
            fraction of its starting value to be kept (above batch noise).
        max_learning_rate: probed rates above this are not tried.
        optimizer_ladder: optimizers to move up to, in order, by Keras name. From an
            optimizer on the ladder the next rung is tried; from one off it, the first.
            This pure class cannot ask Keras whether a name exists: ``gt.fit`` and the
            JOB reader do, before the run starts (GT122).
        optimizer_learning_rates: the usual rate of each optimizer on the ladder.
        lr_moves_before_switch: learning-rate moves on one optimizer before any further
            trouble switches optimizer instead.
        switch_probe_multipliers: a switch to another optimizer first probes it, fresh,
            from the snapshot, at its usual rate times each of these, and keeps the best.
            ``()`` switches at the usual rate without a probe.

    Example:

    >>> RescueConfig(max_attempts=6, optimizer_ladder=("adam", "sgd")).optimizer_ladder
    ('adam', 'sgd')
    """

    max_attempts: int = 4
    lr_down_factor: float = 10.0
    probe_multipliers: tuple[float, ...] = (10.0, 100.0, 1000.0, 10000.0)
    no_progress_multipliers: tuple[float, ...] = (0.1, 10.0)
    probe_steps: int = 20
    probe_min_drop_fraction: float = 0.01
    max_learning_rate: float = 1.0
    optimizer_ladder: tuple[str, ...] = ("sgd", "adam", "rmsprop")
    optimizer_learning_rates: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {"sgd": 1e-2, "adam": 1e-3, "rmsprop": 1e-3})
    lr_moves_before_switch: int = 2
    switch_probe_multipliers: tuple[float, ...] = (1.0, 10.0)

    def __post_init__(self):
        v = Validator("RescueConfig", code="GT120")
        v.need(is_int(self.max_attempts) and self.max_attempts >= 1, "max_attempts",
               self.max_attempts, "an int >= 1 (the first attempt counts)",
               "use max_attempts=4")
        v.need(is_number(self.lr_down_factor) and self.lr_down_factor > 1, "lr_down_factor",
               self.lr_down_factor, "a number > 1", "use lr_down_factor=10")
        mults = self.probe_multipliers
        v.need(isinstance(mults, (tuple, list)) and len(mults) >= 1
               and all(is_number(m) and m > 1 for m in mults),
               "probe_multipliers", mults, "a non-empty tuple of numbers > 1",
               "use probe_multipliers=(10, 100, 1000, 10000)")
        still = self.no_progress_multipliers
        v.need(isinstance(still, (tuple, list)) and len(still) >= 1
               and all(is_number(m) and m > 0 and m != 1 for m in still),
               "no_progress_multipliers", still, "a non-empty tuple of numbers > 0, not 1",
               "use no_progress_multipliers=(0.1, 10)")
        v.need(is_int(self.probe_steps) and self.probe_steps >= 2, "probe_steps",
               self.probe_steps, "an int >= 2", "use probe_steps=20")
        v.need(is_number(self.probe_min_drop_fraction)
               and 0 < self.probe_min_drop_fraction < 1, "probe_min_drop_fraction",
               self.probe_min_drop_fraction, "a fraction in (0, 1)",
               "use probe_min_drop_fraction=0.01")
        v.need(is_number(self.max_learning_rate) and self.max_learning_rate > 0,
               "max_learning_rate", self.max_learning_rate, "a number > 0",
               "use max_learning_rate=1.0")
        ladder = self.optimizer_ladder
        ladder_ok = v.need(isinstance(ladder, (tuple, list))
                           and all(isinstance(o, str) and o.strip() for o in ladder),
                           "optimizer_ladder", ladder, "a tuple of optimizer names",
                           'use optimizer_ladder=("sgd", "adam", "rmsprop")')
        if ladder_ok:
            ladder = tuple(o.strip().lower() for o in ladder)
            ladder_ok = v.need(len(set(ladder)) == len(ladder), "optimizer_ladder",
                               self.optimizer_ladder, "each optimizer once",
                               "remove the repeated name")
        rates = self.optimizer_learning_rates
        if v.need(isinstance(rates, Mapping), "optimizer_learning_rates", rates,
                  "a dict {name: rate}", 'use {"sgd": 1e-2, "adam": 1e-3}'):
            rates = {str(k).strip().lower(): r for k, r in rates.items()}
            missing = [o for o in ladder if not (is_number(rates.get(o)) and rates[o] > 0)] \
                if ladder_ok else []
            v.need(not missing, "optimizer_learning_rates", self.optimizer_learning_rates,
                   f"a rate > 0 for every optimizer on the ladder {ladder}",
                   f"add a usual rate for {missing}, e.g. "
                   f"{{'{missing[0] if missing else ''}': 1e-3}}")
        v.need(is_int(self.lr_moves_before_switch) and self.lr_moves_before_switch >= 0,
               "lr_moves_before_switch", self.lr_moves_before_switch, "an int >= 0",
               "use lr_moves_before_switch=2")
        switch = self.switch_probe_multipliers
        v.need(isinstance(switch, (tuple, list)) and all(is_number(m) and m > 0 for m in switch),
               "switch_probe_multipliers", switch, "a tuple of numbers > 0 (empty: no probe)",
               "use switch_probe_multipliers=(1, 10)")
        v.raise_if_any()
        # Normalised copies: names compare case-blind, the caller's dict cannot change us.
        object.__setattr__(self, "switch_probe_multipliers",
                           tuple(sorted(set(float(m) for m in switch))))
        object.__setattr__(self, "probe_multipliers", tuple(sorted(float(m) for m in mults)))
        object.__setattr__(self, "no_progress_multipliers",
                           tuple(sorted(set(float(m) for m in still))))
        object.__setattr__(self, "optimizer_ladder", ladder)
        object.__setattr__(self, "optimizer_learning_rates", rates)
