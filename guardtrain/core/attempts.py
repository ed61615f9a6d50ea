"""The attempt record, and the errors a run ends with when rescue cannot or may not help.

Codes (``guardtrain.core.errors`` families):

```
UnhealthyTrainingError  GT301 STALLED  GT302 DIVERGED  GT303 OSCILLATING  GT304 VANISHING
                        GT305 DEAD_UNITS  GT306 REPLICA_IMBALANCE  GT309 NO_PROGRESS
                        GT307 non-finite loss at an attempt's first step (the inputs)
                        GT308 gradients exactly 0 at the starting weights
RescueExhaustedError    GT501 every attempt of the budget spent
                        GT502 no optimizer left on the ladder
```

Pure module: no TensorFlow, no Ray.
"""

from __future__ import annotations

import dataclasses

from guardtrain.core.errors import RescueExhaustedError, UnhealthyTrainingError
from guardtrain.core.verdicts import (DEAD_UNITS, DIVERGED, NO_PROGRESS, OSCILLATING,
                                      REPLICA_IMBALANCE, STALLED, VANISHING, Verdict)

__all__ = ["Attempt", "VERDICT_CODES", "unhealthy_error", "exhausted_error", "abort_code",
           "fix_for", "close", "is_exhausted"]

#: Error code per verdict, when training must stop because of it.
VERDICT_CODES = {STALLED: "GT301", DIVERGED: "GT302", OSCILLATING: "GT303",
                 VANISHING: "GT304", DEAD_UNITS: "GT305", REPLICA_IMBALANCE: "GT306",
                 NO_PROGRESS: "GT309"}
CODE_INPUT = "GT307"
CODE_ZERO_GRADIENTS = "GT308"
CODE_ATTEMPTS_SPENT = "GT501"
CODE_LADDER_SPENT = "GT502"

_EXPECTED = {
    STALLED: "the weights to move ~1e-3 of their norm per step and the loss to fall",
    DIVERGED: "a finite loss that does not climb far above where the run started",
    OSCILLATING: "a loss that settles downwards, with updates ~1e-3 of the weights",
    VANISHING: "the first layer's gradient at least 1e-2 of the last layer's",
    DEAD_UNITS: "most gradient entries non-zero",
    REPLICA_IMBALANCE: "every replica's gradient norm of the same order",
    NO_PROGRESS: "a loss clearly below that of a constant prediction (the label "
                 "distribution, learned without looking at the inputs)",
}
_FIX = {
    STALLED: "raise the learning rate 10-1000x, or use an adaptive optimizer (Adam)",
    DIVERGED: "lower the learning rate 10x, or clip gradients (clipnorm=1.0)",
    OSCILLATING: "lower the learning rate 3-10x",
    VANISHING: "use ReLU-family activations with He initialisation, normalisation or "
               "residual connections, or Adam",
    DEAD_UNITS: "lower the learning rate, standardise inputs far off unit scale "
                "((x - mean) / std), or use LeakyReLU/ELU activations",
    REPLICA_IMBALANCE: "that replica's data shard is empty, constant or all zeros: give "
                       "every replica at least one real batch (check the sharding)",
    NO_PROGRESS: "nothing was learned from the inputs: check that each label belongs to "
                 "its row (shuffled or misaligned labels carry no signal), that the inputs "
                 "are on a unit scale, and that the output activation matches the loss; "
                 "then the architecture (saturating activations in a deep stack)",
    CODE_INPUT: "look for NaN/inf in x and y (np.isfinite(x).all()) and for labels the "
                "loss cannot take (e.g. log of 0)",
    CODE_ZERO_GRADIENTS: "the loss does not reach the trainable weights: check frozen "
                         "layers, a non-differentiable loss (argmax, round), all-zero "
                         "inputs",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Attempt:
    """One attempt of a run: what it ran with, what changed, why, from which step, how it
    ended. Every fact is a field; ``summary`` is the same change in words, for display.

    Args:
        number: 1 for the run as the user configured it.
        optimizer: Keras name of the optimizer it ran, e.g. ``"adam"``.
        learning_rate: the rate it started with.
        from_step: the step it started from (the snapshot it was rolled back to).
        optimizer_from: the optimizer before the change (``None`` for attempt 1).
        learning_rate_from: the rate before the change, as the optimizer had it then
            (``None`` for attempt 1).
        reason: why: the verdict that ended the previous attempt (``""`` for the first).
        summary: the change in one line, for people (``"start"`` for the first); never
            parsed.
        outcome: ``"running"``, ``"completed"``, ``"rescued"`` (a later attempt took
            over), ``"aborted"`` or ``"exhausted"``.
        end_step: the step it ended at.
        end_verdict: the name of the verdict kind that ended it.
        end_reason: that verdict's reason.

    Example:

    >>> import dataclasses, json
    >>> a = Attempt(number=1, optimizer="sgd", learning_rate=1e-6, from_step=0)
    >>> json.loads(json.dumps(dataclasses.asdict(a)))["outcome"]
    'running'
    """

    number: int
    optimizer: str
    learning_rate: float
    from_step: int
    optimizer_from: str | None = None
    learning_rate_from: float | None = None
    reason: str = ""
    summary: str = "start"
    outcome: str = "running"
    end_step: int | None = None
    end_verdict: str | None = None
    end_reason: str | None = None


def close(attempts: tuple[Attempt, ...], *, step: int, outcome: str,
          verdict: Verdict | None = None, reason: str | None = None) -> tuple[Attempt, ...]:
    """The history with its running (last) attempt ended; unchanged if none runs."""
    if not attempts or attempts[-1].outcome != "running":
        return attempts
    last = dataclasses.replace(
        attempts[-1], outcome=outcome, end_step=int(step),
        end_verdict=str(verdict.kind) if verdict is not None else None,
        end_reason=reason if reason is not None else (verdict.reason if verdict else None))
    return attempts[:-1] + (last,)


def abort_code(verdict: Verdict) -> str | None:
    """The code when no hyperparameter can fix the verdict's cause, else None."""
    cause = verdict.evidence.get("cause")
    if verdict.kind == REPLICA_IMBALANCE:
        return VERDICT_CODES[REPLICA_IMBALANCE]
    if verdict.kind == DIVERGED and cause == "input":
        return CODE_INPUT
    if verdict.kind == DEAD_UNITS and cause == "zero_gradients":
        return CODE_ZERO_GRADIENTS
    return None


def fix_for(verdict: Verdict, code: str) -> str:
    """The ``Fix:`` line for a verdict that stops the run with ``code``."""
    if code in _FIX:
        return _FIX[code]
    fix = _FIX.get(verdict.kind, "see the reason above")
    if verdict.kind == REPLICA_IMBALANCE:
        fix = f"replica {verdict.evidence.get('replica')}: {fix}"
    return fix


def unhealthy_error(verdict: Verdict, *, attempts: tuple[Attempt, ...] = ()
                    ) -> UnhealthyTrainingError:
    """The error for an unhealthy verdict when rescue is off, or cannot help.

    Args:
        verdict: an unhealthy verdict.
        attempts: the attempt history, kept in ``details["attempts"]``.

    Example:

    >>> from guardtrain.core.verdicts import Verdict
    >>> v = Verdict(kind="STALLED", step=300, reason="STALLED at step 300: ...")
    >>> unhealthy_error(v).code
    'GT301'
    """
    code = abort_code(verdict) or VERDICT_CODES.get(verdict.kind, "GT300")
    expected = _EXPECTED.get(verdict.kind)
    message = verdict.reason + (f"; expected {expected}" if expected else "")
    return UnhealthyTrainingError(message, code=code, fix=fix_for(verdict, code),
                                  details=_details(verdict, attempts))


def exhausted_error(verdict: Verdict, *, code: str, fix: str, max_attempts: int,
                    attempts: tuple[Attempt, ...]) -> RescueExhaustedError:
    """The error when the budget or the ladder is spent, listing every attempt."""
    spent = ("every optimizer on the ladder" if code == CODE_LADDER_SPENT
             else f"{len(attempts)} of {max_attempts} attempts")
    history = "\n".join(
        f"  attempt {a.number}: {a.optimizer}, learning_rate {a.learning_rate:.1e}, from step "
        f"{a.from_step} -> {a.end_reason or a.outcome}" for a in attempts)
    return RescueExhaustedError(
        f"rescue spent {spent} and training is still unhealthy: {verdict.reason}\n{history}",
        code=code, fix=fix, details=_details(verdict, attempts))


def _details(verdict: Verdict, attempts: tuple[Attempt, ...]) -> dict:
    details = {"verdict": str(verdict.kind), "step": verdict.step,
               "evidence": dict(verdict.evidence),
               "attempts": [dataclasses.asdict(a) for a in attempts]}
    if "replica" in verdict.evidence:
        details["replica"] = verdict.evidence["replica"]
    return details


def is_exhausted(code: str | None) -> bool:
    """True for a RescueExhaustedError code (GT5xx)."""
    return bool(code) and code.startswith("GT5")
