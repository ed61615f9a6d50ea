"""The rescue policy: what to do about a verdict. Pure and deterministic; the loop applies it.

```
verdict                               decision
HEALTHY, CONVERGED                    Snapshot when verdict.snapshot_ok, else Continue
STALLED                               Probe larger rates from the snapshot, then after_probe:
                                      Adjust to the best rate, or the next optimizer
NO_PROGRESS                           the same, probing a smaller and a larger rate
DIVERGED, OSCILLATING                 Adjust: roll back, learning rate / lr_down_factor
VANISHING, DEAD_UNITS                 Probe the next optimizer on the ladder, fresh state,
                                      at its usual rate x switch_probe_multipliers, then
                                      after_probe: Adjust to it at the best of them (its
                                      usual rate when none lowers the loss)
any of the above after                the same switch (learning-rate moves did not help)
  lr_moves_before_switch lr moves
REPLICA_IMBALANCE; non-finite loss    Abort, UnhealthyTrainingError (GT306, GT307, GT308):
  at an attempt's first step; zero      no hyperparameter fixes the data
  gradients at the snapshot
attempts or ladder spent              Abort, RescueExhaustedError (GT501, GT502) carrying
                                      every attempt
```

Two facts come from the engine on every call, never from a stored copy: the rate the
optimizer runs at now (a ``ReduceLROnPlateau`` or a schedule may have moved it since the
rescue last set it) and the step of the last healthy snapshot (the engine keeps the
weights, so it keeps their step). The loop, once per chunk (every input is globally
reduced, so every worker takes the same branch; docs/architecture.md, "The data path"):

```
state = initial_state(optimizer="sgd", learning_rate=1e-6, step=0)  # + snapshot the weights
verdict = ...                                # guard.observe
decision = decide(verdict, state, config, snapshot_step=..., learning_rate=...)
if decision.action == PROBE:                 # run the probes, then:
    state = apply(decision, state)
    decision = after_probe(results, state, config)
state = apply(decision, state)               # then act on decision (see decisions)
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
from guardtrain.core.decisions import (ABORT, ADJUST, CONTINUE, PROBE, SNAPSHOT, Abort, Action,
                                       Adjust, Continue, Decision, Probe, ProbeOutcome,
                                       Snapshot, format_decision, percent, probe_summary)
from guardtrain.core.errors import ConfigError, GuardtrainError
from guardtrain.core.rates import round_rate
from guardtrain.core.rescue_config import RescueConfig
from guardtrain.core.verdicts import DEAD_UNITS, NO_PROGRESS, STALLED, VANISHING, Verdict

__all__ = [
    "CONTINUE", "SNAPSHOT", "PROBE", "ADJUST", "ABORT", "Action",
    "RescueConfig", "RescueState", "Decision", "Continue", "Snapshot", "Probe", "Adjust",
    "Abort", "ProbeOutcome", "Attempt", "ProbeResult",
    "initial_state", "decide", "after_probe", "apply", "finish",
    "format_decision", "error_for", "unhealthy_error",
]


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
        if not losses:
            raise ConfigError(f"ProbeResult(losses=...): expected at least one loss, found "
                              f"{self.losses!r}", code="GT120",
                              fix="pass the loss of every probe step")
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

    It holds what only the policy knows. The rate the optimizer runs at now and the step
    of the last healthy snapshot belong to the engine and are handed to ``decide``.

    Args:
        attempt: the running attempt's number (1-based).
        optimizer: the running optimizer's Keras name.
        learning_rate: the rate the running attempt started with (the compiled rate, or
            the last ADJUST's); a callback may have moved the optimizer's since.
        lr_moves: learning-rate moves since the optimizer last changed.
        tried_optimizers: every optimizer run so far.
        pending: the PROBE decision awaiting ``after_probe``, else None.
        attempts: every attempt so far, the running one last.
    """

    attempt: int
    optimizer: str
    learning_rate: float
    lr_moves: int = 0
    tried_optimizers: tuple[str, ...] = ()
    pending: Probe | None = None
    attempts: tuple[Attempt, ...] = ()


def initial_state(*, optimizer: str, learning_rate: float, step: int = 0) -> RescueState:
    """The state at the start of a run; the loop snapshots the weights at ``step`` too.

    Args:
        optimizer: Keras name of the compiled optimizer (``"sgd"``, ``"adam"``, ...).
        learning_rate: its rate now (a schedule's current value).
        step: the optimizer step the weights start at.

    Example:

    >>> initial_state(optimizer="SGD", learning_rate=1e-6).attempts[0].summary
    'start'
    """
    name = optimizer.strip().lower()
    lr = round_rate(learning_rate)
    return RescueState(attempt=1, optimizer=name, learning_rate=lr, tried_optimizers=(name,),
                       attempts=(Attempt(number=1, optimizer=name, learning_rate=lr,
                                         from_step=int(step)),))


def decide(verdict: Verdict, state: RescueState, config: RescueConfig, *,
           snapshot_step: int, learning_rate: float) -> Decision:
    """Turns a verdict into a decision. Pure: same inputs, same decision.

    Args:
        verdict: from ``guard.observe`` / ``guard.judge``.
        state: the rescue state (no probe pending).
        config: the rescue policy.
        snapshot_step: the step of the last healthy snapshot, where a PROBE or an ADJUST
            starts from (the engine's: ``loop.snapshot_step``).
        learning_rate: the rate the optimizer runs at now (``loop.learning_rate``): a
            DIVERGED divides this one, a STALLED probes above it.

    Returns:
        The ``Decision``; pass it to ``apply`` and act on it.

    Example:

    >>> from guardtrain.core.verdicts import Verdict
    >>> v = Verdict(kind="STALLED", step=300, reason="STALLED at step 300: ...")
    >>> d = decide(v, initial_state(optimizer="sgd", learning_rate=1e-6), RescueConfig(),
    ...            snapshot_step=0, learning_rate=1e-6)
    >>> str(d.action), d.learning_rates
    ('PROBE', (1e-05, 0.0001, 0.001, 0.01))
    """
    if state.pending is not None:
        raise ConfigError("decide(state=...): expected no probe pending, found one from step "
                          f"{state.pending.step}", code="GT121",
                          fix="after a PROBE, call after_probe(results, state, config)")
    common = dict(step=verdict.step, attempt=state.attempt, max_attempts=config.max_attempts,
                  reason=verdict.reason, verdict=verdict)
    if not verdict.unhealthy:
        return Snapshot(**common) if verdict.snapshot_ok else Continue(**common)

    code = abort_code(verdict)
    if code is not None:
        return Abort(**common, code=code, fix=fix_for(verdict, code))
    if state.attempt >= config.max_attempts:
        return _exhausted(verdict, state, config, CODE_ATTEMPTS_SPENT)

    now = round_rate(learning_rate)
    at = dict(snapshot_step=int(snapshot_step), learning_rate=now)
    if verdict.kind in (VANISHING, DEAD_UNITS):
        return _switch(verdict, state, config, **at)
    if state.lr_moves >= config.lr_moves_before_switch:
        return _switch(verdict, state, config, **at,
                       why=f"{state.lr_moves} learning-rate moves on {state.optimizer} did "
                           f"not help")
    if verdict.kind in (STALLED, NO_PROGRESS):
        # STALLED probes larger rates; NO_PROGRESS a smaller and a larger one.
        stalled = verdict.kind == STALLED
        rates = _rates(now, config.probe_multipliers if stalled
                       else config.no_progress_multipliers, config)
        if not rates:
            return _switch(verdict, state, config, **at,
                           why=f"no rate {'above' if stalled else 'around'} {now:.1e} "
                               f"within max_learning_rate")
        return _probe(verdict, state, config, rates, **at)
    # DIVERGED, OSCILLATING: the rate is too high for these weights.
    return _adjust(verdict, state, config, from_step=int(snapshot_step), learning_rate=now,
                   to_rate=round_rate(now / config.lr_down_factor), to_optimizer=state.optimizer)


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
        An ADJUST (or a switch PROBE, or an ABORT when nothing is left to try).
    """
    pending = state.pending
    if pending is None:
        raise ConfigError("after_probe(state=...): expected a state with a probe pending, "
                          "found none", code="GT121",
                          fix="state = apply(probe_decision, state) before after_probe")
    if not results:
        raise ConfigError("after_probe(results=...): expected one ProbeResult per probed "
                          "rate, found none", code="GT121",
                          fix="run each rate in decision.learning_rates")
    verdict = pending.verdict
    ordered = sorted(results, key=lambda r: r.learning_rate)
    firsts = [r.loss_start for r in ordered if math.isfinite(r.loss_start)]
    # Every probe starts from the same weights, so their first losses measure one point:
    # their median is a steadier start than any one batch.
    start = float(np.median(firsts)) if firsts else math.nan
    best, best_change, outcomes, sane = None, -config.probe_min_drop_fraction, [], {}
    for r in ordered:
        change = (r.loss_end - start) / max(abs(start), 1e-30)
        if not (r.all_finite and math.isfinite(start)) or change >= 1.0:
            outcomes.append(ProbeOutcome(learning_rate=r.learning_rate, change=None))
            continue
        sane[r.learning_rate] = change
        outcomes.append(ProbeOutcome(learning_rate=r.learning_rate, change=change))
        if change <= best_change and (best is None or change < best_change):
            best, best_change = r.learning_rate, change
    outcomes = tuple(outcomes)
    if state.attempt >= config.max_attempts:
        return _exhausted(verdict, state, config, CODE_ATTEMPTS_SPENT)
    at = dict(from_step=pending.from_step, learning_rate=pending.learning_rate_from)
    nxt = pending.optimizer
    if nxt is not None and nxt != state.optimizer:
        lr = _switch_rate(best, best_change, sane, config.optimizer_learning_rates[nxt])
        return _adjust(verdict, state, config, **at, to_rate=lr, to_optimizer=nxt,
                       probe=outcomes)
    if best is None:
        return _switch(verdict, state, config, snapshot_step=pending.from_step,
                       learning_rate=pending.learning_rate_from, probe=outcomes,
                       why=f"none lowered the loss by "
                           f"{percent(100 * config.probe_min_drop_fraction).lstrip('+')}")
    return _adjust(verdict, state, config, **at, to_rate=best, to_optimizer=state.optimizer,
                   probe=outcomes)


def apply(decision: Decision, state: RescueState) -> RescueState:
    """The state after the loop carries out ``decision``. Pure."""
    act = decision.action
    if act in (CONTINUE, SNAPSHOT):
        return state
    if act == PROBE:
        return state._replace(pending=decision)
    if act == ABORT:
        outcome = "exhausted" if is_exhausted(decision.code) else "aborted"
        return state._replace(pending=None, attempts=close(
            state.attempts, step=decision.step, outcome=outcome, verdict=decision.verdict))
    if not isinstance(decision, Adjust):
        raise ConfigError(f"apply(decision=...): expected a Decision from decide, found "
                          f"{decision!r}", code="GT121", fix="pass a Decision from decide")
    switched = decision.optimizer_to != state.optimizer
    new = Attempt(number=decision.attempt, optimizer=decision.optimizer_to,
                  learning_rate=decision.learning_rate_to, from_step=decision.from_step,
                  optimizer_from=decision.optimizer_from,
                  learning_rate_from=decision.learning_rate_from, reason=decision.reason,
                  summary=decision.summary())
    return state._replace(
        attempt=decision.attempt, optimizer=decision.optimizer_to,
        learning_rate=decision.learning_rate_to,
        lr_moves=0 if switched else state.lr_moves + 1,
        tried_optimizers=state.tried_optimizers + ((decision.optimizer_to,) if switched
                                                   else ()),
        pending=None, attempts=close(state.attempts, step=decision.step, outcome="rescued",
                                     verdict=decision.verdict) + (new,))


def finish(state: RescueState, *, step: int) -> RescueState:
    """The state when training ends normally: the running attempt is ``completed``."""
    return state._replace(attempts=close(state.attempts, step=step, outcome="completed"))


def error_for(decision: Decision, state: RescueState) -> GuardtrainError:
    """The error an ABORT decision raises, with the whole attempt history.

    Args:
        decision: an ABORT decision.
        state: the rescue state, before or after ``apply(decision, state)``.

    Returns:
        ``UnhealthyTrainingError`` (GT3xx) or ``RescueExhaustedError`` (GT5xx); both keep
        every attempt in ``details["attempts"]``.
    """
    if not isinstance(decision, Abort):
        raise ConfigError(f"error_for(decision=...): expected an ABORT decision, found "
                          f"{decision.action}", code="GT121", fix="only ABORT raises")
    attempts = apply(decision, state).attempts
    if is_exhausted(decision.code):
        return exhausted_error(decision.verdict, code=decision.code, fix=decision.fix,
                               max_attempts=decision.max_attempts, attempts=attempts)
    return unhealthy_error(decision.verdict, attempts=attempts)


# -- helpers ------------------------------------------------------------------------------

def _adjust(verdict, state, config, *, from_step, learning_rate, to_rate, to_optimizer,
            probe=(), why="") -> Adjust:
    return Adjust(step=verdict.step, attempt=state.attempt + 1,
                  max_attempts=config.max_attempts, reason=verdict.reason, verdict=verdict,
                  from_step=from_step, optimizer_from=state.optimizer,
                  optimizer_to=to_optimizer, learning_rate_from=learning_rate,
                  learning_rate_to=float(to_rate),
                  fresh_optimizer_state=to_optimizer != state.optimizer,
                  probe=tuple(probe), why=why)


def _switch(verdict, state, config, *, snapshot_step, learning_rate, probe=(), why=""
            ) -> Decision:
    ladder = config.optimizer_ladder
    # Up the ladder from the current rung; from an optimizer off the ladder, from the bottom.
    start = ladder.index(state.optimizer) + 1 if state.optimizer in ladder else 0
    nxt = next((o for o in ladder[start:] if o not in state.tried_optimizers), None)
    if nxt is None:
        because = "; ".join(p for p in (probe_summary(probe), why) if p)
        return _exhausted(verdict, state, config, CODE_LADDER_SPENT, because)
    usual = config.optimizer_learning_rates[nxt]
    rates = _rates(usual, config.switch_probe_multipliers, config)
    if rates:
        return _probe(verdict, state, config, rates, snapshot_step=snapshot_step,
                      learning_rate=learning_rate, optimizer=nxt, probe=probe, why=why)
    return _adjust(verdict, state, config, from_step=snapshot_step,
                   learning_rate=learning_rate, to_rate=usual, to_optimizer=nxt,
                   probe=probe, why=why)


def _rates(base: float, multipliers, config) -> tuple[float, ...]:
    """``base`` times each multiplier, rounded, up to ``max_learning_rate``."""
    return tuple(r for r in (round_rate(base * m) for m in multipliers)
                 if r <= config.max_learning_rate)


def _probe(verdict, state, config, rates, *, snapshot_step, learning_rate, optimizer=None,
           probe=(), why="") -> Probe:
    """A PROBE of ``rates`` from the snapshot; of a fresh ``optimizer`` when given."""
    return Probe(step=verdict.step, attempt=state.attempt, max_attempts=config.max_attempts,
                 reason=verdict.reason, verdict=verdict, from_step=snapshot_step,
                 learning_rates=rates, steps=config.probe_steps, optimizer=optimizer,
                 optimizer_from=state.optimizer, learning_rate_from=learning_rate,
                 probe=tuple(probe), why=why)


# A switch probe's rate within this share of the best drop counts as "as good".
_AS_GOOD = 0.9
# ... and a loss that rose by no more than this share of its start, as flat (batch noise).
_FLAT_RISE = 0.05


def _switch_rate(best, best_change, sane: Mapping[float, float], usual: float) -> float:
    """The rate a switch probe keeps. The new optimizer runs either way (the verdict called
    for it); between rates that did about as well, the largest: it leaves a plateau sooner
    and the guard lowers it if it proves too high. On a plateau (every rate flat), the
    largest flat one likewise; when every rate rose beyond batch noise, the usual rate
    (the tuning notes of ``scripts/rescue_bench.py`` have the measurements).
    """
    if best is not None:
        return max(lr for lr, c in sane.items() if c <= _AS_GOOD * best_change)
    flat = [lr for lr, c in sane.items() if c <= _FLAT_RISE]
    return max(flat) if flat else usual


def _exhausted(verdict, state, config, code, because: str = "") -> Abort:
    if code == CODE_LADDER_SPENT:
        spent = (f"no optimizer left on the ladder {config.optimizer_ladder} after "
                 f"{state.optimizer}")
        fix = ("the problem is probably not the optimizer: read each attempt's reason, check "
               "the inputs and the model, or lengthen optimizer_ladder")
    else:
        spent = f"{state.attempt} of {config.max_attempts} attempts spent"
        fix = ("no learning rate or optimizer tried fixed it: read each attempt's reason, "
               "check the inputs and the model, or raise RescueConfig(max_attempts=...)")
    return Abort(step=verdict.step, attempt=state.attempt, max_attempts=config.max_attempts,
                 reason=verdict.reason, verdict=verdict, code=code, fix=fix,
                 why=spent + (f" ({because})" if because else ""))
