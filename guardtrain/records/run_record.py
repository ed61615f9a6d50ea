"""A run directory read back: ``load_run`` -> ``RunRecord``, with one ``AttemptRecord`` each.

``gt.report`` and ``gt.plot`` read a run only through this module, so they work on a
finished run, on one still being written (history files are replaced atomically, a
reader never sees half of one) and on a run written by an older guardtrain.

The attempts come from ``attempts.json`` (written at the start and at every change of
attempt); otherwise they are rebuilt from the history rows and the ``decision`` events
(a run written before the file existed, or by a Ray rank 0 the driver cannot read). Both paths read fields, never a sentence: a
decision's ``summary`` is prose for people only (docs/architecture.md, "Rescue").

Example:

>>> run = load_run("guardtrain_runs/20261129-101500-ab12")       # doctest: +SKIP
>>> [(a.number, a.optimizer, a.outcome) for a in run.attempts()]  # doctest: +SKIP
[(1, 'sgd', 'rescued'), (2, 'sgd', 'completed')]
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from guardtrain.core.errors import ConfigError

__all__ = ["AttemptRecord", "RunRecord", "load_run", "CODE_NOT_A_RUN"]

CODE_NOT_A_RUN = "GT140"


@dataclasses.dataclass
class AttemptRecord:
    """One attempt as the run directory tells it.

    Args:
        number: 1 for the run as configured, then one more per ADJUST.
        optimizer: the optimizer it ran (``"?"`` when nothing says).
        learning_rate: the rate it ran with (NaN when nothing says).
        first_step, last_step: its first and last recorded steps (``None`` before any).
        rows: history rows recorded for it.
        from_step: the snapshot step it started from.
        optimizer_from, learning_rate_from: what the previous attempt ran (``None`` for
            the first attempt, or when nothing says).
        fresh_optimizer_state: it started with a new optimizer state, not the snapshot's.
        reason: why it started (the verdict that ended the previous one).
        summary: the decision that started it, as a sentence (display only).
        outcome: ``running``, ``completed``, ``rescued`` (a later attempt took over),
            ``aborted`` or ``exhausted``.
        end_step: the step it ended at.
        end_verdict: the verdict kind that ended it.
        end_code: the error code that stopped the run, on the last attempt of a failed run.
        rolled_back_from: the step the next attempt restarted from (steps after it were
            undone), ``None`` for the last attempt.
    """

    number: int
    optimizer: str = "?"
    learning_rate: float = float("nan")
    first_step: int | None = None
    last_step: int | None = None
    rows: int = 0
    from_step: int = 0
    optimizer_from: str | None = None
    learning_rate_from: float | None = None
    fresh_optimizer_state: bool = False
    reason: str = ""
    summary: str = ""
    outcome: str = "running"
    end_step: int | None = None
    end_verdict: str | None = None
    end_code: str | None = None
    rolled_back_from: int | None = None


@dataclasses.dataclass
class RunRecord:
    """Everything ``report`` and ``plot`` read from a run directory.

    Args:
        run_dir: the run directory.
        columns: the history as ``{column: np.ndarray}``, sorted by attempt then step.
        events: ``events.jsonl``, one dict per event.
        stored_attempts: ``attempts.json`` as written at the run's end, or ``None``
            when the run has not written it.
        other_runs: the other runs of a resumed run directory, each ``{"run_id",
            "status"}``, in order (the record holds one run: the last, or the one asked).
    """

    run_dir: Path
    columns: dict[str, np.ndarray]
    events: list[dict[str, Any]]
    stored_attempts: list[dict[str, Any]] | None = None
    other_runs: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.columns.get("step", ()))

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The events named ``kind``, in order."""
        return [e for e in self.events if e.get("event") == kind]

    def guard_limit(self, name: str, default: float) -> float:
        """A ``GuardConfig`` field as the run used it (its ``guard`` event), else ``default``."""
        for event in self.of("guard"):
            value = (event.get("config") or {}).get(name)
            if isinstance(value, (int, float)):
                return float(value)
        return default

    @property
    def start(self) -> dict[str, Any]:
        found = self.of("start")
        return found[0] if found else {}

    @property
    def run_id(self) -> str:
        return str(self.start.get("run_id") or self.run_dir.name)

    @property
    def attempt_base(self) -> int:
        """Attempts of earlier runs in the folder: this run's attempt k is ``base + k``
        on disk, while its decision events count from 1."""
        return int(self.start.get("attempt_base") or 0)

    @property
    def end(self) -> dict[str, Any]:
        """The run's ``end`` event (the last one), ``{}`` before it."""
        found = self.of("end")
        return found[-1] if found else {}

    @property
    def status(self) -> str:
        """``healthy``, ``rescued``, ``failed``, ``interrupted``, ``terminated``, or
        ``running`` (no end record yet: still going, or killed without a chance to say)."""
        end = self.end
        if end.get("status") in ("failed", "interrupted", "terminated"):
            return str(end["status"])
        if self.of("error"):
            return "failed"
        if end:
            return str(end.get("verdict", "healthy"))
        return "running"

    @property
    def end_reason(self) -> dict[str, Any]:
        """What ended a run that did not complete: ``type``, ``code``, ``message``."""
        reason = dict(self.end.get("error") or {})
        errors = self.of("error")
        if errors:     # a guardtrain error's own event holds its code and message
            reason["code"] = reason.get("code") or errors[-1].get("code")
            reason.setdefault("message", errors[-1].get("message"))
        return reason

    def loss_ends(self) -> tuple[float, float] | None:
        """The median loss of the first 10 and last 10 finite steps (one step is noise);
        ``None`` before any finite step."""
        loss = self.columns.get("loss", np.array([])).astype(float)
        finite = loss[np.isfinite(loss)]
        if not finite.size:
            return None
        return float(np.median(finite[:10])), float(np.median(finite[-10:]))

    @property
    def error_code(self) -> str | None:
        """The code of the error that ended the run, ``None`` when none did."""
        errors = self.of("error")
        if errors:
            return str(errors[-1].get("code", "?"))
        code = (self.end.get("error") or {}).get("code")
        return str(code) if code else None

    def attempts(self) -> list[AttemptRecord]:
        """One record per attempt, from ``attempts.json`` when the run wrote it, else
        rebuilt from the history and the ``decision`` events."""
        if self.stored_attempts:
            out = [self._from_stored(a) for a in self.stored_attempts]
        else:
            out = self._from_events()
        for rec, nxt in zip(out, out[1:]):
            rec.rolled_back_from = nxt.from_step
        if out[-1].outcome in ("aborted", "exhausted") or self.of("error"):
            out[-1].end_code = self.error_code
        if out[-1].outcome == "running" and self.status in ("failed", "interrupted",
                                                             "terminated"):
            out[-1].outcome = self.status   # a run that ended without closing its attempt
        return out

    # -- attempts.json ------------------------------------------------------------------
    def _from_stored(self, stored: dict[str, Any]) -> AttemptRecord:
        rec = AttemptRecord(number=int(stored["number"]))
        self._fill_from_rows(rec)
        rec.optimizer = str(stored.get("optimizer") or rec.optimizer)
        rec.learning_rate = _float(stored.get("learning_rate"), rec.learning_rate)
        rec.from_step = int(stored.get("from_step") or 0)
        rec.optimizer_from = stored.get("optimizer_from")
        rec.learning_rate_from = _float(stored.get("learning_rate_from"), None)
        adjust = self._adjusts().get(rec.number, {})
        rec.fresh_optimizer_state = bool(adjust.get(
            "fresh_optimizer_state",
            rec.optimizer_from is not None and rec.optimizer_from != rec.optimizer))
        rec.reason = str(stored.get("reason") or "")
        rec.summary = str(stored.get("summary") or "")
        rec.outcome = str(stored.get("outcome") or "running")
        rec.end_step = stored.get("end_step")
        rec.end_verdict = stored.get("end_verdict")
        return rec

    # -- rebuilt from the history and the events ----------------------------------------
    def _adjusts(self) -> dict[int, dict[str, Any]]:
        return {int(d["attempt"]) + self.attempt_base: d for d in self.of("decision")
                if d.get("action") == "ADJUST"}

    def _fill_from_rows(self, rec: AttemptRecord) -> bool:
        numbers = self.columns.get("attempt", np.array([], int))
        mask = numbers == rec.number
        if not mask.any():
            return False
        steps = self.columns["step"][mask]
        rec.rows = int(mask.sum())
        rec.first_step, rec.last_step = int(steps.min()), int(steps.max())
        rec.optimizer = str(self.columns["optimizer"][mask][0])
        rec.learning_rate = float(self.columns["learning_rate"][mask][0])
        rec.from_step = rec.first_step - 1
        return True

    def _from_events(self) -> list[AttemptRecord]:
        numbers = self.columns.get("attempt", np.array([], int))
        adjusts = self._adjusts()
        out = []
        for n in sorted(set(int(a) for a in numbers) | set(adjusts)
                        | {self.attempt_base + 1}):
            rec = AttemptRecord(number=n)
            recorded = self._fill_from_rows(rec)
            d = adjusts.get(n)
            if d is not None:
                rec.from_step = int(d.get("from_step") or 0)
                if not recorded:
                    rec.optimizer = str(_first(d, "optimizer_to", "optimizer") or "?")
                    rec.learning_rate = _float(_first(d, "learning_rate_to", "learning_rate"),
                                               float("nan"))
                previous = out[-1] if out else None
                rec.optimizer_from = d.get("optimizer_from") or (
                    previous.optimizer if previous else None)
                rec.learning_rate_from = _float(
                    d.get("learning_rate_from"),
                    previous.learning_rate if previous else None)
                rec.fresh_optimizer_state = bool(_first(d, "fresh_optimizer_state",
                                                        "reset_optimizer"))
                rec.reason = str(d.get("reason") or "")
                rec.summary = str(_first(d, "summary", "change") or "")
            out.append(rec)
        for rec, nxt in zip(out, out[1:]):
            d = adjusts.get(nxt.number, {})
            rec.outcome = "rescued"
            rec.end_step = d.get("step")
            rec.end_verdict = (d.get("verdict") or {}).get("kind")
        last = out[-1]
        if self.of("error"):
            last.outcome = "exhausted" if str(self.error_code).startswith("GT5") else "aborted"
            last.end_verdict = self._stopping_verdict()
        elif self.of("end"):
            status = self.status
            last.outcome = (status if status in ("failed", "interrupted", "terminated")
                            else "completed")
        return out

    def _stopping_verdict(self) -> str | None:
        """The verdict that stopped a failed run: the ABORT's, else (rescue off) the last
        verdict within the last attempt."""
        aborts = [d for d in self.of("decision") if d.get("action") == "ABORT"]
        if aborts:
            return (aborts[-1].get("verdict") or {}).get("kind")
        started = max((i for i, e in enumerate(self.events)
                       if e.get("event") == "decision" and e.get("action") == "ADJUST"),
                      default=-1)
        own = [e for e in self.events[started + 1:] if e.get("event") == "verdict"]
        return own[-1].get("kind") if own else None


def _first(event: dict[str, Any], *names: str) -> Any:
    """The first of ``names`` the event has (a field's name in older runs comes second)."""
    for name in names:
        if event.get(name) is not None:
            return event[name]
    return None


def _float(value: Any, default):
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _load_stored_attempts(run_dir: Path) -> list[dict[str, Any]] | None:
    # attempts.json is written by the run's supervisor; a reader must also take run
    # directories from before it existed, hence the optional import.
    try:
        from guardtrain.records.attempts_file import load_attempts
    except ImportError:
        return None
    return load_attempts(run_dir)


def load_run(result_or_run_dir, run_id: str | None = None) -> RunRecord:
    """Reads a run directory (or a ``gt.Result``'s) into a ``RunRecord``.

    A resumed run directory holds several runs (one ``start`` event each, the rows told
    apart by ``run_id``): the record is the last run's, or the one ``run_id`` (or the
    ``gt.Result``) names; ``other_runs`` lists the rest.

    Args:
        result_or_run_dir: a ``gt.Result``, or a run directory (finished or running).
        run_id: which run of the folder; default the Result's, else the last.

    Raises:
        ConfigError: GT140 when the folder holds neither history nor events.
    """
    from guardtrain.records.events import load_events
    from guardtrain.records.history import load_history

    run_dir = Path(getattr(result_or_run_dir, "run_dir", result_or_run_dir))
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {str(run_dir)!r}: expected a folder, found "
                          f"{'a file' if run_dir.exists() else 'nothing'}",
                          code=CODE_NOT_A_RUN,
                          fix="give a folder under guardtrain_runs/ (gt.fit prints it)")
    table = load_history(run_dir)
    if table.num_rows == 0 and hasattr(result_or_run_dir, "history"):
        table = result_or_run_dir.history   # a worker-side Result: rows but no files
    events = load_events(run_dir)
    if table.num_rows == 0 and not events:
        raise ConfigError(f"run directory {str(run_dir)!r}: expected history/ or "
                          "events.jsonl, found neither", code=CODE_NOT_A_RUN,
                          fix="give a folder under guardtrain_runs/ (gt.fit prints it), or "
                              "wait until the run has written its first records")
    columns = {name: table.column(name).to_numpy(zero_copy_only=False)
               for name in table.column_names}
    stored = _load_stored_attempts(run_dir)
    runs = _split_runs(events)
    others: list[dict[str, Any]] = []
    if len(runs) > 1:
        wanted = run_id or getattr(result_or_run_dir, "run_id", None)
        ids = [next((e.get("run_id") for e in r if e.get("event") == "start"), None)
               for r in runs]
        chosen = ids.index(wanted) if wanted in ids else len(runs) - 1
        for i, run_events in enumerate(runs):
            if i != chosen:
                other = RunRecord(run_dir=run_dir, columns={}, events=run_events)
                others.append({"run_id": ids[i], "status": other.status})
        mine = ids[chosen]
        events = runs[chosen]
        if "run_id" in columns:
            keep = columns["run_id"] == mine
            columns = {name: values[keep] for name, values in columns.items()}
        if stored:
            stored = [a for a in stored if a.get("run_id") == mine] or None
    return RunRecord(run_dir=run_dir.resolve(), columns=columns, events=events,
                     stored_attempts=stored, other_runs=others)


def _split_runs(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The events of each run: a ``start`` event opens a run (events before the first
    one belong to it)."""
    runs: list[list[dict[str, Any]]] = []
    for event in events:
        opens = event.get("event") == "start"
        if not runs or (opens and any(e.get("event") == "start" for e in runs[-1])):
            runs.append([])
        runs[-1].append(event)
    return runs
