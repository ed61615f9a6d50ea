"""``CheckReport``: what ``check`` found when nothing blocks training."""

from __future__ import annotations

import dataclasses

from guardtrain.core.errors import Problem
from guardtrain.core.reference import Reference

__all__ = ["CheckReport"]


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """The result of a ``check`` that found no blocking problem.

    Args:
        warnings: the non-blocking problems, in the order found.
        replicas: the replica count the run is planned with.
        samples: samples in the training data, ``None`` when unknown (a dataset).
        batch_size: the global batch.
        sampled_rows: rows read for the value checks.
        input_kind: ``"arrays"``, ``"dataset"``, ``"dataset_fn"`` or ``"parquet"``.
        elapsed_s: how long the check took.
        notes: what could not be checked, and why.
        reference: the loss of the best constant prediction (``core.reference``), from
            the labels; ``None`` when it cannot be computed (the notes say why). The
            guard's NO_PROGRESS and CONVERGED rules compare the loss with it.

    Example:

    >>> report = gt.check(model, x, y, batch_size=64)   # doctest: +SKIP
    >>> print(report)                                    # doctest: +SKIP
    [check] OK  60,000 samples (arrays), batch 64 = 2 replicas x 32, 0 warnings, 0.08 s
    """

    warnings: tuple[Problem, ...] = ()
    replicas: int = 1
    samples: int | None = None
    batch_size: int | None = None
    sampled_rows: int = 0
    input_kind: str = ""
    elapsed_s: float = 0.0
    notes: tuple[str, ...] = ()
    reference: Reference | None = None

    @property
    def per_replica_batch(self) -> int | None:
        if not self.batch_size:
            return None
        return self.batch_size // self.replicas

    @property
    def codes(self) -> list[str]:
        """The codes of the warnings, in order."""
        return [w.code for w in self.warnings]

    def __str__(self) -> str:
        samples = f"{self.samples:,} samples" if self.samples is not None else "samples unknown"
        batch = (f"batch {self.batch_size} = {self.replicas} replica"
                 f"{'s' if self.replicas != 1 else ''} x {self.per_replica_batch}"
                 if self.batch_size else f"{self.replicas} replicas")
        n = len(self.warnings)
        lines = [f"[check] OK  {samples} ({self.input_kind}), {batch}, "
                 f"{n} warning{'s' if n != 1 else ''}, {self.sampled_rows:,} rows sampled, "
                 f"{self.elapsed_s:.2f} s"]
        if self.reference is not None:
            lines.append(f"  reference loss {self.reference.loss:.4g}: "
                         f"{self.reference.detail}")
        lines += [w.render() for w in self.warnings]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)
