"""``events.jsonl``: what happened in a run, one JSON object a line.

Checks, guard verdicts that matter, rescue decisions, probes, epochs, infrastructure
retries and the end of the run (docs/architecture.md, "Files on disk"). ``gt.report`` and
``gt.plot`` read it back with ``load_events``, also while the run is still writing it.

Example:

>>> log = EventLog("guardtrain_runs/demo")                        # doctest: +SKIP
>>> log.add("start", run_id="demo", replicas=2)                   # doctest: +SKIP
>>> load_events("guardtrain_runs/demo")[0]["replicas"]            # doctest: +SKIP
2
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from guardtrain.records.atomic import write_atomic

__all__ = ["EventLog", "load_events"]


class EventLog:
    """``events.jsonl``: one JSON object a line, rewritten atomically on each event.

    The log is small (checks, verdicts that matter, decisions), so a whole rewrite costs
    less than a reader having to cope with a half-written last line.

    Args:
        run_dir: the run directory.
        enabled: ``False`` keeps the events in memory only (workers other than the chief,
            benchmarks).
        prior: the earlier runs' events of a resumed run directory: written first, kept
            out of ``events`` (this run's own).
    """

    def __init__(self, run_dir: str | os.PathLike, *, enabled: bool = True,
                 prior: Sequence[dict[str, Any]] = ()):
        self.path = Path(run_dir) / "events.jsonl"
        self.enabled = enabled
        self.prior: list[dict[str, Any]] = list(prior)
        self.events: list[dict[str, Any]] = []

    def add(self, event_name: str, /, **fields: Any) -> dict[str, Any]:
        """Appends ``{"event": event_name, **fields}`` and writes the log; returns it."""
        event = {"event": event_name, **fields}
        self.events.append(event)
        if self.enabled:
            try:
                self.write()
            except BaseException:
                # Not on disk, so not in the log: a caller that records the failure next
                # (an end event) must not leave this one behind it as well.
                self.events.remove(event)
                raise
        return event

    def write(self) -> None:
        text = "".join(json.dumps(e, default=_jsonable) + "\n"
                       for e in [*self.prior, *self.events])
        write_atomic(self.path, lambda tmp: Path(tmp).write_text(text))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "_asdict"):
        return value._asdict()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return str(value)


def load_events(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads ``events.jsonl`` of a run; ``[]`` when there is none yet."""
    path = Path(run_dir) / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
