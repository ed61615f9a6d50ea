"""The rescue policy: what to do about a verdict. Pure and deterministic; the loop applies it.

```
verdict                               decision
HEALTHY, CONVERGED                    SNAPSHOT when verdict.snapshot_ok, else CONTINUE
STALLED                               PROBE larger rates from the snapshot, then after_probe:
                                      ADJUST to the best rate, or the next optimizer
DIVERGED, OSCILLATING                 ADJUST: roll back, learning rate / lr_down_factor
VANISHING, DEAD_UNITS                 PROBE the next optimizer on the ladder, fresh state,
                                      at its usual rate x switch_probe_multipliers, then
                                      after_probe: ADJUST to it at the best of them (its
                                      usual rate when none lowers the loss)
any of the above after                the same switch (learning-rate moves did not help)
  lr_moves_before_switch lr moves
REPLICA_IMBALANCE; non-finite loss    ABORT, UnhealthyTrainingError (GT306, GT307, GT308):
  at an attempt's first step; zero      no hyperparameter fixes the data
  gradients at the snapshot
attempts or ladder spent              ABORT, RescueExhaustedError (GT501, GT502) carrying
                                      every attempt
```

The loop, once per chunk (every input is globally reduced, so every worker takes the same
branch; DESIGN §2):

```
state = initial_state(optimizer="sgd", learning_rate=1e-6, step=0)  # + snapshot the weights
verdict = ...                                # guard.observe
decision = decide(verdict, state, config)
if decision.action == PROBE:                 # run the probes, then:
    state = apply(decision, state)
    decision = after_probe(results, state, config)
state = apply(decision, state)               # then act on decision (see Decision)
if decision.action == ABORT:
    raise error_for(decision, state)
```

Pure module: no TensorFlow, no Ray.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from guardtrain.core.attempts import (CODE_ATTEMPTS_SPENT, CODE_LADDER_SPENT, Attempt, abort_code,
                                 close, exhausted_error, fix_for, is_exhausted,
                                 unhealthy_error)
from guardtrain.core.errors import ConfigError, GuardtrainError
from guardtrain.core.guard import DEAD_UNITS, STALLED, VANISHING, Verdict

__all__ = [
    "CONTINUE", "SNAPSHOT", "PROBE", "ADJUST", "ABORT",
    "RescueConfig", "RescueState", "Decision", "Attempt", "ProbeResult",
    "initial_state", "decide", "after_probe", "apply", "finish",
    "format_decision", "error_for", "unhealthy_error",
]

CONTINUE = "CONTINUE"
SNAPSHOT = "SNAPSHOT"
PROBE = "PROBE"
ADJUST = "ADJUST"
ABORT = "ABORT"


def _require(ok: bool, call: str, expected: str, found, fix: str) -> None:
    if not ok:
        raise ConfigError(f"{call}: expected {expected}, found {found!r}", code="GT120",
                          fix=fix)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RescueConfig:
    """How a rescue may change a run, and how many times.

    Args:
        max_attempts: attempts in all, the first included (4: three rescues). Spent ->
            ``RescueExhaustedError``.
        lr_down_factor: DIVERGED / OSCILLATING divide the learning rate by this.
        probe_multipliers: STALLED probes the current rate times each of these, from the
            snapshot (a short range test); kept in ascending order.
        probe_steps: steps each probe runs.
        probe_min_drop_fraction: a probed rate must lower the loss by at least this
            fraction of its starting value to be kept (above batch noise).
        max_learning_rate: probed rates above this are not tried.
        optimizer_ladder: optimizers to move up to, in order, by Keras name. From an
            optimizer on the ladder the next rung is tried; from one off it, the first.
        optimizer_learning_rates: the usual rate of each optimizer on the ladder.
        lr_moves_before_switch: learning-rate moves on one optimizer before any further
            trouble switches optimizer instead.
        switch_probe_multipliers: a switch to another optimizer first probes it, fresh,
            from the snapshot, at its usual rate times each of these, and keeps the best
            (1 and 10: on inputs left at 255x their scale Adam needed 1e-2 where 1e-3
            stayed below target; a 5-layer sigmoid MLP learnt faster at 1e-2). ``()``
            switches at the usual rate without a probe.

    Example:

    >>> RescueConfig(max_attempts=6, optimizer_ladder=("adam", "sgd")).optimizer_ladder
    ('adam', 'sgd')
    """

    max_attempts: int = 4
    lr_down_factor: float = 10.0
    probe_multipliers: tuple[float, ...] = (10.0, 100.0, 1000.0, 10000.0)
    probe_steps: int = 20
    probe_min_drop_fraction: float = 0.01
    max_learning_rate: float = 1.0
    optimizer_ladder: tuple[str, ...] = ("sgd", "adam", "rmsprop")
    optimizer_learning_rates: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {"sgd": 1e-2, "adam": 1e-3, "rmsprop": 1e-3})
    lr_moves_before_switch: int = 2
    switch_probe_multipliers: tuple[float, ...] = (1.0, 10.0)

    def __post_init__(self):
        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        _require(is_int(self.max_attempts) and self.max_attempts >= 1,
                 "RescueConfig(max_attempts=...)", "an int >= 1 (the first attempt counts)",
                 self.max_attempts, "use max_attempts=4")
        _require(_is_num(self.lr_down_factor) and self.lr_down_factor > 1,
                 "RescueConfig(lr_down_factor=...)", "a number > 1", self.lr_down_factor,
                 "use lr_down_factor=10")
        mults = self.probe_multipliers
        _require(isinstance(mults, (tuple, list)) and len(mults) >= 1
                 and all(_is_num(m) and m > 1 for m in mults),
                 "RescueConfig(probe_multipliers=...)", "a non-empty tuple of numbers > 1",
                 mults, "use probe_multipliers=(10, 100, 1000, 10000)")
        _require(is_int(self.probe_steps) and self.probe_steps >= 2,
                 "RescueConfig(probe_steps=...)", "an int >= 2", self.probe_steps,
                 "use probe_steps=20")
        _require(_is_num(self.probe_min_drop_fraction) and 0 < self.probe_min_drop_fraction < 1,
                 "RescueConfig(probe_min_drop_fraction=...)", "a fraction in (0, 1)",
                 self.probe_min_drop_fraction, "use probe_min_drop_fraction=0.01")
        _require(_is_num(self.max_learning_rate) and self.max_learning_rate > 0,
                 "RescueConfig(max_learning_rate=...)", "a number > 0",
                 self.max_learning_rate, "use max_learning_rate=1.0")
        ladder = self.optimizer_ladder
        _require(isinstance(ladder, (tuple, list))
                 and all(isinstance(o, str) and o.strip() for o in ladder),
                 "RescueConfig(optimizer_ladder=...)", "a tuple of optimizer names", ladder,
                 'use optimizer_ladder=("sgd", "adam", "rmsprop")')
        ladder = tuple(o.strip().lower() for o in ladder)
        _require(len(set(ladder)) == len(ladder), "RescueConfig(optimizer_ladder=...)",
                 "each optimizer once", self.optimizer_ladder, "remove the repeated name")
        rates = self.optimizer_learning_rates
        _require(isinstance(rates, Mapping), "RescueConfig(optimizer_learning_rates=...)",
                 "a dict {name: rate}", rates, 'use {"sgd": 1e-2, "adam": 1e-3}')
        rates = {str(k).strip().lower(): v for k, v in rates.items()}
        missing = [o for o in ladder if not (_is_num(rates.get(o)) and rates[o] > 0)]
        _require(not missing, "RescueConfig(optimizer_learning_rates=...)",
                 f"a rate > 0 for every optimizer on the ladder {ladder}",
                 self.optimizer_learning_rates,
                 f"add a usual rate for {missing}, e.g. {{'{missing[0] if missing else ''}"
                 "': 1e-3}")
        _require(is_int(self.lr_moves_before_switch) and self.lr_moves_before_switch >= 0,
                 "RescueConfig(lr_moves_before_switch=...)", "an int >= 0",
                 self.lr_moves_before_switch, "use lr_moves_before_switch=2")
        switch = self.switch_probe_multipliers
        _require(isinstance(switch, (tuple, list)) and all(_is_num(m) and m > 0 for m in switch),
                 "RescueConfig(switch_probe_multipliers=...)",
                 "a tuple of numbers > 0 (empty: no probe)", switch,
                 "use switch_probe_multipliers=(1, 10)")
        object.__setattr__(self, "switch_probe_multipliers",
                           tuple(sorted(set(float(m) for m in switch))))
        # Normalised copies: names compare case-blind, the caller's dict cannot change us.
        object.__setattr__(self, "probe_multipliers", tuple(sorted(float(m) for m in mults)))
        object.__setattr__(self, "optimizer_ladder", ladder)
        object.__setattr__(self, "optimizer_learning_rates", rates)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Decision:
    """What the loop must do after a chunk. JSON-able with ``dataclasses.asdict``.

    Args:
        action: ``CONTINUE``, ``SNAPSHOT`` (go on, and keep the current weights and
            optimizer state as the last healthy snapshot), ``PROBE`` (from the snapshot,
            run ``probe_steps`` steps at each of ``probe_learning_rates``, then call
            ``after_probe``; with ``optimizer`` set, a switch probe: install a fresh
            ``optimizer`` first), ``ADJUST`` (restore the snapshot at ``from_step``, run on
            with ``optimizer`` at ``learning_rate`` as attempt ``attempt``) or ``ABORT``
            (raise ``error_for(decision, state)``).
        step: the step the decision is taken at (the verdict's last step).
        attempt: the attempt that runs after this decision (new for ADJUST).
        max_attempts: the budget, for the log line.
        reason: the verdict's one-line reason.
        change: one line: what changes.
        verdict: the verdict decided on.
        from_step: PROBE/ADJUST: the snapshot step to restore.
        learning_rate: ADJUST: the rate to run with.
        optimizer: ADJUST: the optimizer to run (the same name when only the rate moves).
        reset_optimizer: ADJUST: build a fresh optimizer state instead of restoring the
            snapshot's (True when the optimizer changes).
        probe_learning_rates: PROBE: the candidate rates, ascending.
        optimizer (PROBE): the optimizer a switch probe tries, fresh; ``None`` probes the
            running one.
        probe_steps: PROBE: steps per candidate.
        code: ABORT: the error code.
        fix: ABORT: the ``Fix:`` line.
    """

    action: str
    step: int
    attempt: int
    max_attempts: int
    reason: str
    change: str = "none"
    verdict: Verdict | None = None
    from_step: int | None = None
    learning_rate: float | None = None
    optimizer: str | None = None
    reset_optimizer: bool = False
    probe_learning_rates: tuple[float, ...] = ()
    probe_steps: int = 0
    code: str | None = None
    fix: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProbeResult:
    """What one probed learning rate did, from the snapshot.

    Args:
        learning_rate: the rate probed.
        losses: the loss of each probe step (the first is at the snapshot weights).
        finite: per step, loss, gradients and weights all finite (or one bool).

    Example:

    >>> r = ProbeResult(learning_rate=1e-3, losses=[2.3, 2.1, 1.9], finite=True)
    >>> r.loss_start, r.loss_end
    (2.3, 1.9)
    """

    learning_rate: float
    losses: tuple[float, ...]
    finite: tuple[bool, ...] | bool = True

    def __post_init__(self):
        losses = tuple(float(x) for x in np.asarray(self.losses, np.float64).reshape(-1))
        _require(len(losses) >= 1, "ProbeResult(losses=...)", "at least one loss",
                 self.losses, "pass the loss of every probe step")
        object.__setattr__(self, "losses", losses)
        object.__setattr__(self, "learning_rate", float(self.learning_rate))
        finite = self.finite
        finite = (bool(finite),) if np.ndim(finite) == 0 else tuple(
            bool(f) for f in np.asarray(finite).reshape(-1))
        object.__setattr__(self, "finite", finite)

    @classmethod
    def from_chunk(cls, learning_rate: float, chunk: Mapping[str, Any]) -> "ProbeResult":
        """Builds one from the statistics of the probe's steps (``loss``, ``finite``)."""
        return cls(learning_rate=learning_rate, losses=chunk["loss"], finite=chunk["finite"])

    @property
    def loss_start(self) -> float:
        return self.losses[0]

    @property
    def loss_end(self) -> float:
        # Mean of the last quarter: one batch is too noisy to rank rates by.
        tail = self.losses[-max(1, len(self.losses) // 4):]
        return float(np.mean(tail))

    @property
    def all_finite(self) -> bool:
        return all(self.finite) and all(math.isfinite(x) for x in self.losses)


class RescueState(NamedTuple):
    """Where the rescue stands. Immutable; ``apply`` returns the next one. Picklable.

    Args:
        attempt: the running attempt's number (1-based).
        optimizer: the running optimizer's Keras name.
        learning_rate: the running rate.
        snapshot_step: the step of the last healthy snapshot (the initial weights first).
        lr_moves: learning-rate moves since the optimizer last changed.
        tried_optimizers: every optimizer run so far.
        pending: the PROBE decision awaiting ``after_probe``, else None.
        attempts: every attempt so far, the running one last.
    """

    attempt: int
    optimizer: str
    learning_rate: float
    snapshot_step: int
    lr_moves: int = 0
    tried_optimizers: tuple[str, ...] = ()
    pending: Decision | None = None
    attempts: tuple[Attempt, ...] = ()


def initial_state(*, optimizer: str, learning_rate: float, step: int = 0) -> RescueState:
    """The state at the start of a run; the loop snapshots the weights at ``step`` too.

    Args:
        optimizer: Keras name of the compiled optimizer (``"sgd"``, ``"adam"``, ...).
        learning_rate: its rate now (a schedule's current value).
        step: the optimizer step the weights start at.

    Example:

    >>> initial_state(optimizer="SGD", learning_rate=1e-6).attempts[0].change
    'start'
    """
    name = optimizer.strip().lower()
    lr = _round(float(learning_rate))
    return RescueState(attempt=1, optimizer=name, learning_rate=lr, snapshot_step=int(step),
                       tried_optimizers=(name,),
                       attempts=(Attempt(number=1, optimizer=name, learning_rate=lr,
                                         from_step=int(step)),))


def decide(verdict: Verdict, state: RescueState, config: RescueConfig) -> Decision:
    """Turns a verdict into a decision. Pure: same inputs, same decision.

    Args:
        verdict: from ``guard.observe`` / ``guard.judge``.
        state: the rescue state (no probe pending).
        config: the rescue policy.

    Returns:
        The ``Decision``; pass it to ``apply`` and act on it.

    Example:

    >>> from guardtrain.core.guard import Verdict
    >>> v = Verdict(kind="STALLED", step=300, reason="STALLED at step 300: ...")
    >>> d = decide(v, initial_state(optimizer="sgd", learning_rate=1e-6), RescueConfig())
    >>> d.action, d.probe_learning_rates
    ('PROBE', (1e-05, 0.0001, 0.001, 0.01))
    """
    if state.pending is not None:
        raise ConfigError("decide(state=...): expected no probe pending, found one from step "
                          f"{state.pending.step}", code="GT121",
                          fix="after a PROBE, call after_probe(results, state, config)")
    common = dict(step=verdict.step, attempt=state.attempt, max_attempts=config.max_attempts,
                  reason=verdict.reason, verdict=verdict)
    if not verdict.unhealthy:
        if verdict.snapshot_ok:
            return Decision(action=SNAPSHOT, **common,
                            change=f"snapshot the weights at step {verdict.step}")
        return Decision(action=CONTINUE, **common)

    code = abort_code(verdict)
    if code is not None:
        return Decision(action=ABORT, **common, code=code, fix=fix_for(verdict, code),
                        change=f"stop: {_FAMILY[code[2]]} [{code}]")
    if state.attempt >= config.max_attempts:
        return _exhausted(verdict, state, config, CODE_ATTEMPTS_SPENT)

    if verdict.kind in (VANISHING, DEAD_UNITS):
        return _switch(verdict, state, config, "")
    if state.lr_moves >= config.lr_moves_before_switch:
        return _switch(verdict, state, config,
                       f"{state.lr_moves} learning-rate moves on {state.optimizer} did not help")
    if verdict.kind == STALLED:
        rates = _rates(state.learning_rate, config.probe_multipliers, config)
        if not rates:
            return _switch(verdict, state, config,
                           f"no rate above {state.learning_rate:.1e} within max_learning_rate")
        return _probe(verdict, state, config, rates,
                      change=f"probe learning_rate {', '.join(_short(r) for r in rates)} for "
                             f"{config.probe_steps} steps each (now {state.learning_rate:.1e}"
                             f", {state.optimizer})")
    # DIVERGED, OSCILLATING: the rate is too high for these weights.
    lr = _round(state.learning_rate / config.lr_down_factor)
    return _adjust(verdict, state, config, learning_rate=lr, optimizer=state.optimizer,
                   change=f"learning_rate {state.learning_rate:.1e} -> {lr:.1e}")


def after_probe(results: Sequence[ProbeResult], state: RescueState, config: RescueConfig
                ) -> Decision:
    """Turns the probe results into a decision: the best rate, or the next optimizer.

    Keeps the rate whose loss fell most (at least ``probe_min_drop_fraction``) without a
    non-finite step or a doubling; ties go to the smaller rate. A switch probe (the
    pending decision names another optimizer) always ends in that optimizer: at the best
    rate (the largest of those about as good), else the largest whose loss stayed flat,
    else its usual rate (see ``_switch_rate``).

    Args:
        results: one ``ProbeResult`` per probed rate, any order.
        state: the state after ``apply(probe_decision, state)``.
        config: the rescue policy.

    Returns:
        An ADJUST (or ABORT when nothing is left to try).
    """
    pending = state.pending
    if pending is None:
        raise ConfigError("after_probe(state=...): expected a state with a probe pending, "
                          "found none", code="GT121",
                          fix="state = apply(probe_decision, state) before after_probe")
    if not results:
        raise ConfigError("after_probe(results=...): expected one ProbeResult per probed "
                          "rate, found none", code="GT121",
                          fix="run each rate in decision.probe_learning_rates")
    verdict = pending.verdict
    ordered = sorted(results, key=lambda r: r.learning_rate)
    firsts = [r.loss_start for r in ordered if math.isfinite(r.loss_start)]
    # Every probe starts from the same weights, so their first losses measure one point:
    # their median is a steadier start than any one batch.
    start = float(np.median(firsts)) if firsts else math.nan
    best, best_change, labels, sane = None, -config.probe_min_drop_fraction, [], {}
    for r in ordered:
        change = (r.loss_end - start) / max(abs(start), 1e-30)
        if not (r.all_finite and math.isfinite(start)) or change >= 1.0:
            labels.append(f"{_short(r.learning_rate)} diverged")
            continue
        sane[r.learning_rate] = change
        labels.append(f"{_short(r.learning_rate)} {_pct(100 * change)}")
        if change <= best_change and (best is None or change < best_change):
            best, best_change = r.learning_rate, change
    summary = "probe: " + ", ".join(labels)
    if state.attempt >= config.max_attempts:
        return _exhausted(verdict, state, config, CODE_ATTEMPTS_SPENT)
    nxt = pending.optimizer
    if nxt is not None and nxt != state.optimizer:
        lr = _switch_rate(best, best_change, sane, config.optimizer_learning_rates[nxt])
        return _adjust(verdict, state, config, learning_rate=lr, optimizer=nxt,
                       reset_optimizer=True, change=_switch_change(state, nxt, lr, summary))
    if best is None:
        return _switch(verdict, state, config,
                       f"{summary}; none lowered the loss by "
                       f"{_pct(100 * config.probe_min_drop_fraction).lstrip('+')}")
    return _adjust(verdict, state, config, learning_rate=best, optimizer=state.optimizer,
                   change=f"learning_rate {state.learning_rate:.1e} -> {best:.1e} ({summary})")


def apply(decision: Decision, state: RescueState) -> RescueState:
    """The state after the loop carries out ``decision``. Pure."""
    act = decision.action
    if act == CONTINUE:
        return state
    if act == SNAPSHOT:
        return state._replace(snapshot_step=decision.step)
    if act == PROBE:
        return state._replace(pending=decision)
    if act == ABORT:
        outcome = "exhausted" if is_exhausted(decision.code) else "aborted"
        return state._replace(pending=None, attempts=close(
            state.attempts, step=decision.step, outcome=outcome, verdict=decision.verdict))
    if act != ADJUST:
        raise ConfigError(f"apply(decision=...): expected an action in {_ACTIONS}, found "
                          f"{act!r}", code="GT121", fix="pass a Decision from decide")
    switched = decision.optimizer != state.optimizer
    new = Attempt(number=decision.attempt, optimizer=decision.optimizer,
                  learning_rate=decision.learning_rate, from_step=decision.from_step,
                  change=decision.change, reason=decision.reason)
    return state._replace(
        attempt=decision.attempt, optimizer=decision.optimizer,
        learning_rate=decision.learning_rate,
        lr_moves=0 if switched else state.lr_moves + 1,
        tried_optimizers=state.tried_optimizers + ((decision.optimizer,) if switched else ()),
        pending=None, attempts=close(state.attempts, step=decision.step, outcome="rescued",
                                     verdict=decision.verdict) + (new,))


def finish(state: RescueState, *, step: int) -> RescueState:
    """The state when training ends normally: the running attempt is ``completed``."""
    return state._replace(attempts=close(state.attempts, step=step, outcome="completed"))


def format_decision(decision: Decision) -> str:
    """The log block of a decision, one fixed shape::

        [rescue] ADJUST  attempt 2 of 4
          reason: STALLED at step 400: update_ratio median 3.1e-07 over 200 steps, ...
          change: learning_rate 1.0e-06 -> 1.0e-03 (probe: 1e-5 -0.1%, 1e-4 -2%, ...)
          from:   snapshot at step 200

    The decision carries every figure, so it reads the same before or after ``apply``.
    """
    lines = [f"[rescue] {decision.action}  attempt {decision.attempt} of "
             f"{decision.max_attempts}",
             f"  reason: {decision.reason}",
             f"  change: {decision.change}"]
    if decision.from_step is not None:
        lines.append(f"  from:   snapshot at step {decision.from_step}")
    if decision.fix:
        lines.append(f"  fix:    {decision.fix}")
    return "\n".join(lines)


def error_for(decision: Decision, state: RescueState) -> GuardtrainError:
    """The error an ABORT decision raises, with the whole attempt history.

    Args:
        decision: an ABORT decision.
        state: the rescue state, before or after ``apply(decision, state)``.

    Returns:
        ``UnhealthyTrainingError`` (GT3xx) or ``RescueExhaustedError`` (GT5xx); both keep
        every attempt in ``details["attempts"]``.
    """
    if decision.action != ABORT:
        raise ConfigError(f"error_for(decision=...): expected an ABORT decision, found "
                          f"{decision.action}", code="GT121", fix="only ABORT raises")
    attempts = apply(decision, state).attempts
    if is_exhausted(decision.code):
        return exhausted_error(decision.verdict, code=decision.code, fix=decision.fix,
                               max_attempts=decision.max_attempts, attempts=attempts)
    return unhealthy_error(decision.verdict, attempts=attempts)


# -- helpers ------------------------------------------------------------------------------

_ACTIONS = (CONTINUE, SNAPSHOT, PROBE, ADJUST, ABORT)
_FAMILY = {"3": "UnhealthyTrainingError", "5": "RescueExhaustedError"}


def _adjust(verdict, state, config, *, learning_rate, optimizer, change,
            reset_optimizer=False) -> Decision:
    return Decision(action=ADJUST, step=verdict.step, attempt=state.attempt + 1,
                    max_attempts=config.max_attempts, reason=verdict.reason, change=change,
                    verdict=verdict, from_step=state.snapshot_step,
                    learning_rate=float(learning_rate), optimizer=optimizer,
                    reset_optimizer=reset_optimizer)


def _switch(verdict, state, config, why: str) -> Decision:
    ladder = config.optimizer_ladder
    # Up the ladder from the current rung; from an optimizer off the ladder, from the bottom.
    start = ladder.index(state.optimizer) + 1 if state.optimizer in ladder else 0
    nxt = next((o for o in ladder[start:] if o not in state.tried_optimizers), None)
    if nxt is None:
        return _exhausted(verdict, state, config, CODE_LADDER_SPENT, why)
    lr = config.optimizer_learning_rates[nxt]
    rates = _rates(lr, config.switch_probe_multipliers, config)
    if rates:
        return _probe(verdict, state, config, rates, optimizer=nxt,
                      change=f"probe {nxt} (fresh state) at learning_rate "
                             f"{', '.join(_short(r) for r in rates)} for "
                             f"{config.probe_steps} steps each, instead of "
                             f"{state.optimizer} at {state.learning_rate:.1e}"
                             + (f" ({why})" if why else ""))
    return _adjust(verdict, state, config, learning_rate=lr, optimizer=nxt,
                   change=_switch_change(state, nxt, lr, why), reset_optimizer=True)


def _rates(base: float, multipliers, config) -> tuple[float, ...]:
    """``base`` times each multiplier, rounded, up to ``max_learning_rate``."""
    return tuple(r for r in (_round(base * m) for m in multipliers)
                 if r <= config.max_learning_rate)


def _probe(verdict, state, config, rates, *, change, optimizer=None) -> Decision:
    """A PROBE of ``rates`` from the snapshot; of a fresh ``optimizer`` when given."""
    return Decision(action=PROBE, step=verdict.step, attempt=state.attempt,
                    max_attempts=config.max_attempts, reason=verdict.reason, verdict=verdict,
                    from_step=state.snapshot_step, optimizer=optimizer,
                    reset_optimizer=optimizer is not None, probe_learning_rates=rates,
                    probe_steps=config.probe_steps, change=change)


def _switch_change(state, nxt: str, lr: float, why: str) -> str:
    return (f"optimizer {state.optimizer} -> {nxt}, learning_rate {state.learning_rate:.1e} "
            f"-> {lr:.1e}, fresh optimizer state" + (f" ({why})" if why else ""))


# A switch probe's rate within this share of the best drop counts as "as good".
_AS_GOOD = 0.9
# ... and a loss that rose by no more than this share of its start, as flat (batch noise).
_FLAT_RISE = 0.05


def _switch_rate(best, best_change, sane: Mapping[float, float], usual: float) -> float:
    """The rate a switch probe keeps. The new optimizer runs either way (the verdict called
    for it); between rates that did about as well, the largest: it leaves a plateau sooner
    and the guard lowers it if it proves too high. Measured on the rescue benchmark: a
    5-layer sigmoid MLP probed Adam 1e-3 -34 % and 1e-2 -33 %, and only 1e-2 reached the
    target in the budget; on a plateau (+0.3 %, +1.5 %) likewise; batch-1 noise (+25 %,
    +40 %) is no plateau, and the usual rate did better there.
    """
    if best is not None:
        return max(lr for lr, c in sane.items() if c <= _AS_GOOD * best_change)
    flat = [lr for lr, c in sane.items() if c <= _FLAT_RISE]
    return max(flat) if flat else usual


def _exhausted(verdict, state, config, code, why: str = "") -> Decision:
    if code == CODE_LADDER_SPENT:
        spent = (f"no optimizer left on the ladder {config.optimizer_ladder} after "
                 f"{state.optimizer}")
        fix = ("the problem is probably not the optimizer: read each attempt's reason, check "
               "the inputs and the model, or lengthen optimizer_ladder")
    else:
        spent = f"{state.attempt} of {config.max_attempts} attempts spent"
        fix = ("no learning rate or optimizer tried fixed it: read each attempt's reason, "
               "check the inputs and the model, or raise RescueConfig(max_attempts=...)")
    return Decision(action=ABORT, step=verdict.step, attempt=state.attempt,
                    max_attempts=config.max_attempts, reason=verdict.reason, verdict=verdict,
                    change=f"stop: {spent}" + (f" ({why})" if why else "")
                           + f" [{code}]", code=code, fix=fix)


def _round(lr: float) -> float:
    """To 6 significant digits, so 1e-6 x 10 is 1e-05 and not 9.999999999999999e-06, and a
    rate read back from a float32 variable (0.0010000000475) is 0.001 again: below float32's
    precision, so no rate a user set is changed."""
    return float(f"{lr:.6g}")


def _short(lr: float) -> str:
    """1e-05 -> '1e-5', 2.5e-04 -> '2.5e-4': compact, for the probe summary."""
    mantissa, exponent = f"{lr:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _pct(p: float) -> str:
    """-19.3 -> '-19%', -2.04 -> '-2%', -0.1 -> '-0.1%'."""
    return f"{p:+.0f}%" if abs(p) >= 10 else f"{p:+.2g}%"
