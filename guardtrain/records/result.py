"""What ``gt.fit`` returns."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa

from guardtrain.records.run_end import describe_nonfinite

__all__ = ["Result"]


@dataclasses.dataclass
class Result:
    """The outcome of a guarded run.

    Args:
        model: the trained Keras model, holding the final (last healthy) weights.
        history: every step of every attempt of this run (``HISTORY_SCHEMA``), sorted by
            attempt, step; a resumed run directory's earlier runs are not in it
            (``gt.load_history(run_dir)`` reads them all).
        attempts: one record per attempt: what changed, why, from which step, how it ended.
        verdict: ``"healthy"`` (never touched), ``"rescued"`` (healthy after a rescue) or
            ``"failed"`` (also a run with the guard off that met a non-finite value, or
            whose final weights had to be rolled back: see ``nonfinite``).
        run_dir: the run directory (history, events, model).
        logs: the last epoch's Keras logs (loss, metrics, ``val_*``).
        run_id: this run's id (the ``run_id`` of its history rows).
        nonfinite: empty when every recorded step and the final weights were finite; else
            ``steps`` (how many were not), ``first_step``, ``final_weights_finite``, and
            ``rolled_back_to`` when the guard rolled non-finite final weights back.
    """

    model: Any
    history: pa.Table
    attempts: list
    verdict: str
    run_dir: Path
    logs: dict = dataclasses.field(default_factory=dict)
    run_id: str = ""
    nonfinite: dict = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        """A few lines: verdict, steps, final loss, one line per attempt, where the files are.

        Example:

        >>> print(result.summary())          # doctest: +SKIP
        guardtrain run: rescued
          steps recorded: 150 in 2 attempt(s)
          ...
          attempt 1: sgd lr 1.0e-06 from step 0 -> rescued (STALLED)
          attempt 2: sgd lr 1.0e-02 from step 30 -> completed
          run dir: guardtrain_runs/20261129-101500-ab12
        """
        steps = self.history.num_rows
        lines = [f"guardtrain run: {self.verdict}",
                 f"  steps recorded: {steps} in {max(1, len(self.attempts))} attempt(s)"]
        if self.nonfinite:
            lines.append(f"  NON-FINITE: {describe_nonfinite(self.nonfinite)}")
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
            lines.append("  " + _attempt_line(attempt))
        why = _last(self.attempts, "end_reason") if self.verdict == "failed" else None
        if why:
            lines.append(f"  why: {why}")
        lines.append(f"  run dir: {self.run_dir}"
                     + (f"  (run {self.run_id})" if self.run_id else ""))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Result(verdict={self.verdict!r}, steps={self.history.num_rows}, "
                f"attempts={len(self.attempts)}, run_dir={str(self.run_dir)!r})")


def _last(attempts, field: str):
    """``field`` of the last attempt (a dict or an ``Attempt``), or None."""
    if not attempts:
        return None
    a = attempts[-1]
    return a.get(field) if isinstance(a, Mapping) else getattr(a, field, None)


def _attempt_line(attempt: Any) -> str:
    """``attempt 2: sgd lr 1.0e-02 from step 30 -> rescued (STALLED)`` from an attempt's
    fields (a dict as in ``Result.attempts``, or an ``Attempt``)."""
    a: Mapping[str, Any] = (dataclasses.asdict(attempt) if dataclasses.is_dataclass(attempt)
                            else attempt)
    lr = a.get("learning_rate")
    rate = (f"{lr:.1e}" if isinstance(lr, (int, float)) and math.isfinite(lr) else "?")
    ended = a.get("outcome") or "?"
    if a.get("end_verdict"):
        ended += f" ({a['end_verdict']})"
    return (f"attempt {a.get('number', '?')}: {a.get('optimizer', '?')} lr {rate} "
            f"from step {a.get('from_step', '?')} -> {ended}")


