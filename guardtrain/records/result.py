"""What ``gt.fit`` returns."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pyarrow as pa

__all__ = ["Result"]


@dataclasses.dataclass
class Result:
    """The outcome of a guarded run.

    Args:
        model: the trained Keras model, holding the final (last healthy) weights.
        history: every step of every attempt (``HISTORY_SCHEMA``), sorted by attempt, step.
        attempts: one record per attempt: what changed, why, from which step, how it ended.
        verdict: ``"healthy"`` (never touched), ``"rescued"`` (healthy after a rescue) or
            ``"failed"``.
        run_dir: the run directory (history, events, model).
        logs: the last epoch's Keras logs (loss, metrics, ``val_*``).
    """

    model: Any
    history: pa.Table
    attempts: list
    verdict: str
    run_dir: Path
    logs: dict = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        """A few lines: verdict, steps, attempts, final loss, where the files are."""
        steps = self.history.num_rows
        lines = [f"guardtrain run: {self.verdict}",
                 f"  steps recorded: {steps} in {max(1, len(self.attempts))} attempt(s)"]
        if steps:
            loss = self.history.column("loss").to_pylist()
            # The last measured one: the norms are null on the steps stats_every skips.
            ratio = [r for r in self.history.column("update_ratio").to_pylist() if r is not None]
            lines.append(f"  loss: {loss[0]:.4g} -> {loss[-1]:.4g}   "
                         f"last update_ratio: {ratio[-1] if ratio else float('nan'):.2e}")
        last = {k: v for k, v in self.logs.items() if not k.startswith("val_")
                and k not in ("update_ratio", "grad_norm")}
        val = {k: v for k, v in self.logs.items() if k.startswith("val_")}
        for name, part in (("last epoch", last), ("validation", val)):
            if part:
                lines.append(f"  {name}: " + "  ".join(f"{k} {v:.4g}" for k, v in part.items()))
        for attempt in self.attempts:
            text = attempt.get("summary") if isinstance(attempt, dict) else str(attempt)
            if text:
                lines.append(f"  attempt: {text}")
        lines.append(f"  run dir: {self.run_dir}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Result(verdict={self.verdict!r}, steps={self.history.num_rows}, "
                f"attempts={len(self.attempts)}, run_dir={str(self.run_dir)!r})")
