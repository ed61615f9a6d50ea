"""``attempts.json``: every attempt of a run, as structured records, in the run directory.

One JSON list of ``Attempt`` dicts (``dataclasses.asdict``): what each attempt ran with,
what changed from the one before, why, from which step and how it ended. The supervisor
rewrites it whole whenever the list changes (start, each ADJUST, an abort, the end), with
``write_atomic``: a reader sees the old list or the new one, never half of either
(docs/architecture.md, "Files on disk").

Example:

>>> write_attempts("guardtrain_runs/demo", [{"number": 1, "outcome": "running"}])  # doctest: +SKIP
>>> load_attempts("guardtrain_runs/demo")[0]["outcome"]                          # doctest: +SKIP
'running'
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from guardtrain.records.atomic import write_atomic

__all__ = ["ATTEMPTS_FILE", "write_attempts", "load_attempts", "stamp_attempts"]

ATTEMPTS_FILE = "attempts.json"


def write_attempts(run_dir: str | os.PathLike, attempts: list[dict[str, Any]]) -> None:
    """Writes the running run's ``attempts`` to ``run_dir/attempts.json`` (temp file, then
    ``os.replace``).

    In a resumed run directory the file also holds the earlier runs' attempts: they are
    kept, and this run's are numbered after them (``stamp_attempts``), as its history
    files are. Which run is running, and how many attempts came before it, is read from
    the last ``start`` event, which every run writes before its first attempt.
    """
    run_id, base = _running(Path(run_dir))
    earlier = ([a for a in load_attempts(run_dir) or () if int(a.get("number", 0)) <= base]
               if base else [])
    rows = earlier + stamp_attempts(attempts, run_id=run_id, attempt_base=base)
    text = json.dumps(rows, indent=1, allow_nan=False, default=str) + "\n"
    write_atomic(Path(run_dir) / ATTEMPTS_FILE, lambda tmp: Path(tmp).write_text(text))


def load_attempts(run_dir: str | os.PathLike) -> list[dict[str, Any]] | None:
    """The attempts of a run; ``None`` when the run has no ``attempts.json``."""
    path = Path(run_dir) / ATTEMPTS_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


def stamp_attempts(attempts: list[dict[str, Any]], *, run_id: str | None,
                   attempt_base: int = 0) -> list[dict[str, Any]]:
    """A run's attempts as the run directory numbers them: ``number`` after the
    ``attempt_base`` attempts of earlier runs, and the ``run_id`` they belong to."""
    out = []
    for a in attempts:
        row = {**a, "number": int(a.get("number", 0)) + attempt_base}
        if run_id is not None:
            row["run_id"] = run_id
        out.append(row)
    return out


def _running(run_dir: Path) -> tuple[str | None, int]:
    """The run id and attempt base of the folder's last ``start`` event."""
    from guardtrain.records.events import load_events

    try:
        starts = [e for e in load_events(run_dir) if e.get("event") == "start"]
    except ValueError:
        return None, 0
    if not starts:
        return None, 0
    return starts[-1].get("run_id"), int(starts[-1].get("attempt_base") or 0)
