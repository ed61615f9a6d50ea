"""The run directory: where one run's history, events and model go (docs/architecture.md, "Files on disk")."""

from __future__ import annotations

import datetime
import os
import secrets
from pathlib import Path

__all__ = ["new_run_dir"]


def new_run_dir(run_dir: str | os.PathLike | None) -> tuple[Path, str]:
    """The run directory and the run id (its name), created."""
    if run_dir is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_id = f"{stamp}-{secrets.token_hex(2)}"
        path = Path("guardtrain_runs") / run_id
    else:
        path = Path(run_dir)
        run_id = path.name
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve(), run_id
