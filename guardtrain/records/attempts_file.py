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

__all__ = ["ATTEMPTS_FILE", "write_attempts", "load_attempts"]

ATTEMPTS_FILE = "attempts.json"


def write_attempts(run_dir: str | os.PathLike, attempts: list[dict[str, Any]]) -> None:
    """Writes ``attempts`` to ``run_dir/attempts.json`` (temp file, then ``os.replace``)."""
    text = json.dumps(list(attempts), indent=1, allow_nan=False, default=str) + "\n"
    write_atomic(Path(run_dir) / ATTEMPTS_FILE, lambda tmp: Path(tmp).write_text(text))


def load_attempts(run_dir: str | os.PathLike) -> list[dict[str, Any]] | None:
    """The attempts of a run; ``None`` when the run has no ``attempts.json``."""
    path = Path(run_dir) / ATTEMPTS_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())
