"""The run directory: where a run's history, events and model go, and who may write there.

One fit call is one run, with its own id. A folder that already holds anything is
refused before anything starts, unless the caller asks to resume it: then the new run
appends — its history files continue the attempt numbering after the ones on disk, its
events follow the earlier runs' in ``events.jsonl``, and no file of an earlier run is
overwritten (docs/architecture.md, "Files on disk").

Example:

>>> run = open_run_dir("guardtrain_runs/demo")                  # doctest: +SKIP
>>> run.path, run.run_id, run.attempt_base                     # doctest: +SKIP
(PosixPath('/home/me/guardtrain_runs/demo'), '20261129-101500-ab12', 0)
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import secrets
from pathlib import Path
from typing import Any

from guardtrain.core.errors import ConfigError

__all__ = ["RunDir", "open_run_dir", "new_run_dir", "new_run_id", "CODE_NOT_A_FOLDER",
           "CODE_NOT_WRITABLE", "CODE_NOT_EMPTY"]

CODE_NOT_A_FOLDER = "GT150"
CODE_NOT_WRITABLE = "GT151"
CODE_NOT_EMPTY = "GT152"

_ATTEMPT_FILE = re.compile(r"attempt-(\d+)\.parquet$")


@dataclasses.dataclass(frozen=True)
class RunDir:
    """A run directory ready for one run.

    Args:
        path: the folder, resolved and created.
        run_id: this run's id, unique per fit call (written in every history row).
        attempt_base: the highest attempt number already on disk (0 in a new folder):
            this run's attempt k is written as attempt ``attempt_base + k``.
        prior_events: the events of the earlier runs in the folder (kept first in
            ``events.jsonl`` when this run rewrites it).
    """

    path: Path
    run_id: str
    attempt_base: int = 0
    prior_events: tuple[dict[str, Any], ...] = ()


def new_run_id() -> str:
    """``20261129-101500-ab12cd34``: the time of the call and a random suffix (32 bits:
    a sweep that starts hundreds of runs in one second does not collide)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(4)}"


def open_run_dir(run_dir: str | os.PathLike | None, *, resume: bool = False) -> RunDir:
    """Creates (or, with ``resume``, reopens) the run directory for one run.

    Args:
        run_dir: the folder; ``None`` gives ``guardtrain_runs/<run id>``.
        resume: append a run to a folder that holds earlier runs' records.

    Raises:
        ConfigError: GT150 ``run_dir`` is a file; GT151 it cannot be created or written;
            GT152 it is not empty and ``resume`` was not asked.
    """
    run_id = new_run_id()
    if run_dir is None:
        # The default folder is claimed by creating it: two runs started at once never
        # share one (an explicit folder is the caller's to keep apart).
        for _ in range(8):
            path = Path("guardtrain_runs") / run_id
            try:
                path.mkdir(parents=True, exist_ok=False)
                break
            except FileExistsError:
                run_id = new_run_id()
    else:
        path = Path(run_dir)
    where = f"fit(run_dir={str(path)!r})"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{where}: expected a folder, found a file",
                          code=CODE_NOT_A_FOLDER,
                          fix="give a folder for the run's files (a new one, or omit "
                              "run_dir for guardtrain_runs/<time>-<id>)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{where}: expected a folder that can be created, found "
                          f"{type(err).__name__}: {err.strerror or err}",
                          code=CODE_NOT_WRITABLE,
                          fix="choose a folder you can write to") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{where}: expected a folder this process can write, found one "
                          "it may not write to", code=CODE_NOT_WRITABLE,
                          fix="choose a folder you can write to")
    found = sorted(p.name for p in path.iterdir())
    if found and not resume:
        raise ConfigError(
            f"{where}: expected an empty or new folder, found {_describe(path, found)}; "
            "a second run there would read the first one's records as its own",
            code=CODE_NOT_EMPTY,
            fix="give a new run_dir, or add the run to this folder with "
                "gt.fit(..., resume=True) (guardtrain fit --resume)")
    from guardtrain.records.events import load_events

    prior = tuple(load_events(path)) if found else ()
    return RunDir(path=path.resolve(), run_id=run_id,
                  attempt_base=attempts_on_disk(path) if found else 0, prior_events=prior)


def new_run_dir(run_dir: str | os.PathLike | None, *,
                resume: bool = False) -> tuple[Path, str]:
    """The run directory (created) and a new run id: ``open_run_dir`` without the rest."""
    run = open_run_dir(run_dir, resume=resume)
    return run.path, run.run_id


def attempts_on_disk(path: str | os.PathLike) -> int:
    """The highest attempt number the folder's history files and ``attempts.json`` hold."""
    from guardtrain.records.attempts_file import load_attempts

    folder = Path(path) / "history"
    numbers = [int(m.group(1)) for p in (folder.iterdir() if folder.is_dir() else ())
               if (m := _ATTEMPT_FILE.fullmatch(p.name))]
    try:
        numbers += [int(a.get("number", 0)) for a in load_attempts(path) or ()]
    except (ValueError, TypeError, AttributeError):
        pass   # an unreadable attempts.json: the history files decide
    return max(numbers, default=0)


def _describe(path: Path, names: list[str]) -> str:
    shown = []
    for name in names[:4]:
        if (path / name).is_dir():
            count = sum(1 for _ in (path / name).iterdir())
            shown.append(f"{name}/ ({count} file{'s' if count != 1 else ''})")
        else:
            shown.append(name)
    more = f" and {len(names) - 4} more" if len(names) > 4 else ""
    return ", ".join(shown) + more
