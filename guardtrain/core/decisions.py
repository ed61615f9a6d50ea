"""What the rescue tells the loop to do: one frozen dataclass per kind of decision.

```
kind       action    carries                                            the loop
Continue   CONTINUE  -                                                  goes on
Snapshot   SNAPSHOT  -                                                  keeps the weights at
                                                                        ``step`` as the last
                                                                        healthy ones
Probe      PROBE     from_step, learning_rates, steps, optimizer        runs ``steps`` steps
                     (None: the running one; a name: a fresh one)       at each rate from the
                                                                        snapshot, then calls
                                                                        ``after_probe``
Adjust     ADJUST    from_step, optimizer_from/_to, learning_rate_from  restores the snapshot
                     /_to, fresh_optimizer_state, probe, why            and runs on with the
                                                                        new setting
Abort      ABORT     code, fix, why                                     raises ``error_for``
```

Every kind shares ``step``, ``attempt``, ``max_attempts``, ``reason`` and ``verdict``. A
decision's ``summary()`` is the one line a person reads (the ``change:`` line of
``format_decision``); it is built from the fields and never read back: code reads the
fields, and ``record()`` is the flat dict the run's events keep (docs/architecture.md,
"Rescue").

Pure module: no TensorFlow, no Ray.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Sequence

from guardtrain.core.str_enum import ValueEnum
from guardtrain.core.verdicts import Verdict

__all__ = ["Action", "CONTINUE", "SNAPSHOT", "PROBE", "ADJUST", "ABORT", "ProbeOutcome",
           "Decision", "Continue", "Snapshot", "Probe", "Adjust", "Abort",
           "format_decision", "probe_summary"]


class Action(ValueEnum):
    """What the loop does after a chunk; each reads as its bare name (``"ADJUST"``)."""

    CONTINUE = "CONTINUE"
    SNAPSHOT = "SNAPSHOT"
    PROBE = "PROBE"
    ADJUST = "ADJUST"
    ABORT = "ABORT"


CONTINUE = Action.CONTINUE
SNAPSHOT = Action.SNAPSHOT
PROBE = Action.PROBE
ADJUST = Action.ADJUST
ABORT = Action.ABORT

_FAMILY = {"3": "UnhealthyTrainingError", "5": "RescueExhaustedError"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProbeOutcome:
    """What one probed rate did: the change of the loss, as a fraction of its start.

    Args:
        learning_rate: the rate probed.
        change: ``(loss_end - loss_start) / |loss_start|``; ``None`` when the probe went
            non-finite or the loss doubled.

    Example:

    >>> ProbeOutcome(learning_rate=1e-3, change=-0.19).describe()
    '1e-3 -19%'
    """

    learning_rate: float
    change: float | None

    @property
    def diverged(self) -> bool:
        return self.change is None

    def describe(self) -> str:
        if self.change is None:
            return f"{short_rate(self.learning_rate)} diverged"
        return f"{short_rate(self.learning_rate)} {percent(100 * self.change)}"


def probe_summary(outcomes: Sequence[ProbeOutcome]) -> str:
    """``"probe: 1e-5 -0.1%, 1e-4 -2%, 1e-2 diverged"`` ('' for no outcomes)."""
    return "probe: " + ", ".join(o.describe() for o in outcomes) if outcomes else ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Decision:
    """The fields every decision shares. JSON-able with ``dataclasses.asdict``.

    Args:
        step: the step the decision is taken at (the verdict's last step).
        attempt: the attempt that runs after this decision (new for ADJUST).
        max_attempts: the budget, for the log line.
        reason: the verdict's one-line reason.
        verdict: the verdict decided on.
    """

    action: ClassVar[Action]

    step: int
    attempt: int
    max_attempts: int
    reason: str
    verdict: Verdict | None = None

    def summary(self) -> str:
        """One line for people: what changes. Display only: never parsed."""
        raise NotImplementedError

    def describe(self) -> str:
        """The log block (``format_decision``)."""
        return format_decision(self)

    def record(self) -> dict[str, Any]:
        """The flat, JSON-able dict of the ``decision`` event: the shared fields, the
        summary, and only the fields of this kind."""
        verdict = None
        if self.verdict is not None:
            verdict = dataclasses.asdict(self.verdict)
            verdict["kind"] = str(self.verdict.kind)
        return {"action": str(self.action), "step": self.step, "attempt": self.attempt,
                "max_attempts": self.max_attempts, "reason": self.reason, "verdict": verdict,
                "summary": self.summary(), **self._own_record()}

    def _own_record(self) -> dict[str, Any]:
        return {}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Continue(Decision):
    """Go on; nothing changes."""

    action = Action.CONTINUE

    def summary(self) -> str:
        return "none"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Snapshot(Decision):
    """Go on, and keep the weights and optimizer state at ``step`` as the last healthy."""

    action = Action.SNAPSHOT

    def summary(self) -> str:
        return f"snapshot the weights at step {self.step}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Probe(Decision):
    """A short range test from the snapshot; then call ``after_probe`` with the results.

    Args:
        from_step: the snapshot step every candidate starts from.
        learning_rates: the candidate rates, ascending.
        steps: steps per candidate.
        optimizer: ``None`` probes the running optimizer; a Keras name probes that
            optimizer, freshly built (a switch probe).
        optimizer_from, learning_rate_from: the running optimizer and its rate now.
        probe: the outcomes of an earlier probe this one follows (or empty).
        why: why a switch is probed, in a few words (or "").
    """

    action = Action.PROBE

    from_step: int
    learning_rates: tuple[float, ...]
    steps: int
    optimizer: str | None = None
    optimizer_from: str
    learning_rate_from: float
    probe: tuple[ProbeOutcome, ...] = ()
    why: str = ""

    @property
    def fresh_optimizer_state(self) -> bool:
        """A switch probe builds its optimizer fresh; a rate probe keeps the state."""
        return self.optimizer is not None

    def summary(self) -> str:
        rates = ", ".join(short_rate(r) for r in self.learning_rates)
        because = _because(self.probe, self.why)
        if self.optimizer is None:
            text = (f"probe learning_rate {rates} for {self.steps} steps each (now "
                    f"{self.learning_rate_from:.1e}, {self.optimizer_from})")
        else:
            text = (f"probe {self.optimizer} (fresh state) at learning_rate {rates} for "
                    f"{self.steps} steps each, instead of {self.optimizer_from} at "
                    f"{self.learning_rate_from:.1e}")
        return text + (f" ({because})" if because else "")

    def _own_record(self) -> dict[str, Any]:
        return {"from_step": self.from_step, "learning_rates": list(self.learning_rates),
                "steps": self.steps, "optimizer": self.optimizer}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Adjust(Decision):
    """Restore the snapshot at ``from_step`` and run on as attempt ``attempt``.

    Args:
        from_step: the snapshot step to restore.
        optimizer_from, optimizer_to: the running optimizer and the one to run (the same
            name when only the rate moves).
        learning_rate_from, learning_rate_to: the rate now and the rate to run with.
        fresh_optimizer_state: build ``optimizer_to`` fresh instead of restoring the
            snapshot's optimizer state (True when the optimizer changes).
        probe: the probe outcomes the new setting was chosen from (or empty).
        why: the reason for the move beyond the verdict, in a few words (or "").
    """

    action = Action.ADJUST

    from_step: int
    optimizer_from: str
    optimizer_to: str
    learning_rate_from: float
    learning_rate_to: float
    fresh_optimizer_state: bool = False
    probe: tuple[ProbeOutcome, ...] = ()
    why: str = ""

    def summary(self) -> str:
        parts = []
        if self.optimizer_to != self.optimizer_from:
            parts.append(f"optimizer {self.optimizer_from} -> {self.optimizer_to}")
        parts.append(f"learning_rate {self.learning_rate_from:.1e} -> "
                     f"{self.learning_rate_to:.1e}")
        if self.fresh_optimizer_state:
            parts.append("fresh optimizer state")
        because = _because(self.probe, self.why)
        return ", ".join(parts) + (f" ({because})" if because else "")

    def _own_record(self) -> dict[str, Any]:
        return {"from_step": self.from_step, "optimizer_from": self.optimizer_from,
                "optimizer_to": self.optimizer_to,
                "learning_rate_from": self.learning_rate_from,
                "learning_rate_to": self.learning_rate_to,
                "fresh_optimizer_state": self.fresh_optimizer_state}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Abort(Decision):
    """Stop: raise ``error_for(decision, state)``.

    Args:
        code: the error code (GT3xx: no hyperparameter fixes it; GT5xx: budget spent).
        fix: the ``Fix:`` line.
        why: what was spent, for a GT5xx (e.g. ``"4 of 4 attempts spent"``), or "".
    """

    action = Action.ABORT

    code: str
    fix: str
    why: str = ""

    def summary(self) -> str:
        return f"stop: {self.why or _FAMILY.get(self.code[2:3], 'error')} [{self.code}]"

    def _own_record(self) -> dict[str, Any]:
        return {"code": self.code, "fix": self.fix}


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
             f"  change: {decision.summary()}"]
    if isinstance(decision, (Probe, Adjust)):
        lines.append(f"  from:   snapshot at step {decision.from_step}")
    if isinstance(decision, Abort) and decision.fix:
        lines.append(f"  fix:    {decision.fix}")
    return "\n".join(lines)


def short_rate(lr: float) -> str:
    """1e-05 -> '1e-5', 2.5e-04 -> '2.5e-4': compact, for the probe summary."""
    mantissa, exponent = f"{lr:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def percent(p: float) -> str:
    """-19.3 -> '-19%', -2.04 -> '-2%', -0.1 -> '-0.1%'."""
    return f"{p:+.0f}%" if abs(p) >= 10 else f"{p:+.2g}%"


def _because(probe: Sequence[ProbeOutcome], why: str) -> str:
    return "; ".join(part for part in (probe_summary(probe), why) if part)
