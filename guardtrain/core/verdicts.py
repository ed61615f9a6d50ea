"""What the guard can conclude: ``VerdictKind`` and the ``Verdict`` that carries its evidence.

```
kind               means                                             rescued by
HEALTHY            the loss falls, or nothing is wrong               - (snapshot)
CONVERGED          flat because it is low: far below the start and   never rescued
                   the constant-prediction loss
STALLED            weights barely move and the loss does not fall    a larger rate
DIVERGED           non-finite, or the loss blowing up                a smaller rate
OSCILLATING        the loss flips direction, weights thrown around   a smaller rate
VANISHING          no gradient reaches the first layers              the next optimizer
DEAD_UNITS         most gradient entries exactly 0                   the next optimizer
REPLICA_IMBALANCE  one replica's gradient ~0 while the others' not   none: a data error
NO_PROGRESS        the loss stays at the constant-prediction loss:   other rates, then the
                   nothing learned from the inputs                   next optimizer
```

The rules that pick a kind are in ``guard_rules`` (docs/architecture.md, "Guard verdicts").

Pure module: no TensorFlow, no Ray.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from guardtrain.core.str_enum import ValueEnum

__all__ = ["VerdictKind", "HEALTHY", "CONVERGED", "STALLED", "DIVERGED", "OSCILLATING",
           "VANISHING", "DEAD_UNITS", "REPLICA_IMBALANCE", "NO_PROGRESS", "VERDICT_KINDS",
           "Verdict"]


class VerdictKind(ValueEnum):
    """The kinds of verdict; each reads as its bare name (``str(STALLED) == "STALLED"``)."""

    HEALTHY = "HEALTHY"
    CONVERGED = "CONVERGED"
    STALLED = "STALLED"
    DIVERGED = "DIVERGED"
    OSCILLATING = "OSCILLATING"
    VANISHING = "VANISHING"
    DEAD_UNITS = "DEAD_UNITS"
    REPLICA_IMBALANCE = "REPLICA_IMBALANCE"
    NO_PROGRESS = "NO_PROGRESS"


# Module-level names, as the members: ``guard.STALLED is VerdictKind.STALLED``.
HEALTHY = VerdictKind.HEALTHY
CONVERGED = VerdictKind.CONVERGED
STALLED = VerdictKind.STALLED
DIVERGED = VerdictKind.DIVERGED
OSCILLATING = VerdictKind.OSCILLATING
VANISHING = VerdictKind.VANISHING
DEAD_UNITS = VerdictKind.DEAD_UNITS
REPLICA_IMBALANCE = VerdictKind.REPLICA_IMBALANCE
NO_PROGRESS = VerdictKind.NO_PROGRESS
VERDICT_KINDS = tuple(VerdictKind)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Verdict:
    """What the guard concluded about the latest window, and the evidence for it.

    Args:
        kind: a ``VerdictKind`` (its name as a string is accepted and converted).
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

    Example:

    >>> v = Verdict(kind="STALLED", step=300, reason="STALLED at step 300: ...")
    >>> v.kind is VerdictKind.STALLED, v.unhealthy
    (True, True)
    """

    kind: VerdictKind
    step: int
    reason: str
    first_step: int | None = None
    evidence: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    settled: bool = True
    snapshot_ok: bool = False

    def __post_init__(self):
        object.__setattr__(self, "kind", VerdictKind(self.kind))

    @property
    def unhealthy(self) -> bool:
        """True for every kind but HEALTHY and CONVERGED."""
        return self.kind not in (HEALTHY, CONVERGED)
