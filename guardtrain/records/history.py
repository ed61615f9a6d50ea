"""The per-step history of a run, in Parquet: ``HISTORY_SCHEMA``, its writer and reader.

```
run_dir/history/attempt-NNNN.parquet   one row per step of that attempt (HISTORY_SCHEMA)
```

Files are written with ``write_atomic`` (``guardtrain.records.atomic``), so a reader never
sees half of one; the events log is ``guardtrain.records.events`` (docs/architecture.md,
"Files on disk").
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from guardtrain.core.stats import NORM_COLUMNS, STAT_COLUMNS
from guardtrain.records.atomic import write_atomic

__all__ = ["HISTORY_SCHEMA", "HistoryWriter", "load_history"]

_F64 = {name: pa.float64() for name in STAT_COLUMNS}
_F64["grad_norm_argmin"] = pa.int32()
_F64["finite"] = pa.bool_()
_F64["measured"] = pa.bool_()

#: The schema of every history file, declared once. ``(attempt, step)`` is a row's key.
HISTORY_SCHEMA = pa.schema(
    [pa.field("run_id", pa.string(), nullable=False),
     pa.field("attempt", pa.int32(), nullable=False),
     pa.field("step", pa.int64(), nullable=False),
     pa.field("epoch", pa.int32(), nullable=False)]
    + [pa.field(name, _F64[name]) for name in STAT_COLUMNS]
    + [pa.field("learning_rate", pa.float64()),
       pa.field("optimizer", pa.string()),
       pa.field("verdict", pa.string())]
)


class HistoryWriter:
    """Collects the rows of every step and writes them per attempt.

    Rows are kept as the chunks' NumPy arrays and become one Arrow table per attempt
    only when written: a chunk of tiny steps takes a few milliseconds, and turning 20
    columns into Python lists on every chunk cost ~2 % of it.

    Args:
        run_dir: the run directory.
        run_id: written in every row.
        attempt_base: the attempts already on disk from earlier runs in the folder (a
            resumed run directory): attempt k of this run is written as
            ``attempt_base + k``, in its own file, so no earlier file is overwritten.
    """

    #: The most of the run's wall time ``flush_if_due`` lets file writes take.
    FLUSH_BUDGET = 0.05

    def __init__(self, run_dir: str | os.PathLike, run_id: str, *, attempt_base: int = 0,
                 clock: Callable[[], float] = time.monotonic):
        self.dir = Path(run_dir) / "history"
        self.run_id = run_id
        self.attempt_base = int(attempt_base)
        self._chunks: dict[int, list[dict[str, Any]]] = {}
        self._dirty: set[int] = set()
        self._clock = clock
        self._last_flush_end = -math.inf
        self._last_flush_cost = 0.0

    def append(self, *, attempt: int, steps: np.ndarray, epoch: np.ndarray | int,
               stats: Mapping[str, np.ndarray], learning_rate, optimizer: str,
               verdict: str) -> None:
        """Adds the rows of one chunk (the arrays are kept, not copied)."""
        n = len(steps)
        chunk: dict[str, Any] = {name: np.asarray(stats[name]) for name in STAT_COLUMNS
                                 if name != "measured"}
        chunk["measured"] = np.asarray(stats.get("measured", np.ones(n, bool)), bool)
        chunk.update(
            step=np.asarray(steps, np.int64),
            epoch=np.broadcast_to(np.asarray(epoch, np.int64), (n,)),
            learning_rate=np.broadcast_to(np.asarray(learning_rate, np.float64), (n,)),
            optimizer=optimizer, verdict=np.full(n, verdict, dtype=object))
        self._chunks.setdefault(attempt, []).append(chunk)
        self._dirty.add(attempt)

    def epoch_of(self, attempt: int, step: int) -> int | None:
        """The epoch of ``attempt``'s row at ``step``, or None when there is none."""
        for chunk in self._chunks.get(attempt, []):
            hit = np.flatnonzero(chunk["step"] == step)
            if hit.size:
                return int(chunk["epoch"][hit[0]])
        return None

    def relabel_last(self, attempt: int, n: int, verdict: str) -> None:
        """Sets the verdict of the last ``n`` rows of ``attempt`` (judged after append)."""
        for chunk in reversed(self._chunks[attempt]):
            if n <= 0:
                break
            rows = chunk["verdict"]
            rows[max(0, len(rows) - n):] = verdict
            n -= len(rows)
        self._dirty.add(attempt)

    def table(self, attempt: int) -> pa.Table:
        chunks = self._chunks.get(attempt, [])
        if not chunks:
            return HISTORY_SCHEMA.empty_table()
        join = lambda name: np.concatenate([c[name] for c in chunks])  # noqa: E731
        lengths = [len(c["step"]) for c in chunks]
        unmeasured = ~join("measured")
        columns = {
            "run_id": pa.array([self.run_id] * sum(lengths), pa.string()),
            "attempt": pa.array(np.full(sum(lengths), self.attempt_base + attempt, np.int32)),
            "step": join("step"), "epoch": join("epoch").astype(np.int32),
        }
        for name in STAT_COLUMNS:
            kind = HISTORY_SCHEMA.field(name).type
            # Null, not NaN, where a norm was not measured: a NaN norm is a measured
            # non-finite one.
            mask = unmeasured if name in NORM_COLUMNS and unmeasured.any() else None
            columns[name] = pa.array(join(name).astype(kind.to_pandas_dtype()), kind,
                                     mask=mask)
        columns["learning_rate"] = join("learning_rate")
        columns["optimizer"] = pa.array(np.repeat([c["optimizer"] for c in chunks], lengths)
                                        .tolist(), pa.string())
        columns["verdict"] = pa.array(join("verdict").tolist(), pa.string())
        return pa.table(columns, schema=HISTORY_SCHEMA)

    def flush(self) -> None:
        """Writes every attempt file that changed since the last flush."""
        start = self._clock()
        for attempt in sorted(self._dirty):
            table = self.table(attempt)
            write_atomic(self.dir / f"attempt-{self.attempt_base + attempt:04d}.parquet",
                         lambda tmp, t=table: pq.write_table(t, tmp))
        self._dirty.clear()
        self._last_flush_end = self._clock()
        self._last_flush_cost = self._last_flush_end - start

    def flush_if_due(self) -> None:
        """Flushes unless the last flush was too recent for its cost.

        A flush rewrites each changed attempt's whole file (a Parquet file cannot be
        appended to), so its cost grows with the run: 0.15 s at 300,000 rows. Flushing
        at every end of a 0.3-s epoch would then take a third of the run; this waits
        until the time since the last flush is 1 / FLUSH_BUDGET times what it cost.
        """
        if self._clock() - self._last_flush_end >= self._last_flush_cost / self.FLUSH_BUDGET:
            self.flush()

    def nonfinite_steps(self, *, loss_only: bool = False) -> np.ndarray:
        """The steps whose loss, gradients or weights were not finite, in order; with
        ``loss_only``, the steps whose loss was not finite."""
        found = [c["step"][~np.isfinite(np.asarray(c["loss"], np.float64)) if loss_only
                           else ~np.asarray(c["finite"], bool)]
                 for chunks in self._chunks.values() for c in chunks]
        return np.sort(np.concatenate(found)) if found else np.array([], np.int64)

    def all_rows(self) -> pa.Table:
        tables = [self.table(a) for a in sorted(self._chunks)]
        return pa.concat_tables(tables) if tables else HISTORY_SCHEMA.empty_table()

    def state(self) -> dict[int, list[dict[str, Any]]]:
        """The rows so far (to carry across a worker restart; picklable)."""
        return self._chunks

    def restore(self, rows: dict[int, list[dict[str, Any]]]) -> None:
        """Takes over the rows of a checkpoint or of a worker; the next flush writes them."""
        self._chunks = {int(k): v for k, v in rows.items()}
        self._dirty = set(self._chunks)


def load_history(run_dir: str | os.PathLike, run_id: str | None = None) -> pa.Table:
    """Reads every row of a run directory, sorted by attempt then step.

    Args:
        run_dir: the run directory; a resumed one holds several runs, all read.
        run_id: only the rows of this run (a ``gt.Result``'s own history).

    Example:

    >>> table = gt.load_history("guardtrain_runs/20261129-101500-ab12")  # doctest: +SKIP
    >>> table.column("update_ratio")                                       # doctest: +SKIP
    """
    folder = Path(run_dir) / "history"
    files = sorted(p for p in folder.glob("attempt-*.parquet")) if folder.is_dir() else []
    if not files:
        return HISTORY_SCHEMA.empty_table()
    table = pa.concat_tables([pq.read_table(p, schema=HISTORY_SCHEMA) for p in files])
    if run_id is not None:
        table = table.filter(pc.equal(table["run_id"], run_id))
    return table.sort_by([("attempt", "ascending"), ("step", "ascending")])
