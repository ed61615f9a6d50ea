"""Parquet training data: ``parquet(path_or_glob, features=..., label=...)``.

A ``ParquetSource`` is a small, picklable description (paths and column names), so it
can be sent to Ray workers and read there, each worker its own shard. Reading goes
through pyarrow; this module imports neither TensorFlow nor Ray.

Features are either a list of scalar numeric columns, stacked into an ``[n, F]`` float
array, or one list column (fixed-size, or equal-length lists) read as ``[n, width]``.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
from typing import Sequence

import numpy as np

__all__ = ["ParquetSource", "parquet"]

logger = logging.getLogger(__name__)

_GLOB_CHARS = set("*?[")


@dataclasses.dataclass(frozen=True)
class ParquetSource:
    """Parquet files read as ``(x, y)`` NumPy arrays.

    Build it with ``parquet(...)``; the fields are what it was given and the files it
    resolved to on the machine that built it.

    Args:
        path: the path, directory or glob as the user gave it.
        files: the files it resolved to, sorted.
        features: the feature columns.
        label: the label column, or ``None`` for inputs without labels.
        feature_dtype: the NumPy dtype features are read as.

    Example:

    >>> src = parquet("/data/train-*.parquet", features=["a", "b"], label="y")
    >>> x, y = src.read_numpy(shard_index=0, num_shards=2)   # this worker's half
    """

    path: str
    files: tuple[str, ...]
    features: tuple[str, ...]
    label: str | None = None
    feature_dtype: str = "float32"

    @property
    def columns(self) -> list[str]:
        """Every column the source reads: features, then the label."""
        return list(self.features) + ([self.label] if self.label else [])

    def schema(self):
        """The ``pyarrow.Schema`` of the first file (footer only, no data read)."""
        import pyarrow.parquet as pq

        return pq.read_schema(self.files[0])

    def num_rows(self) -> int:
        """Rows in all files, from the footers (no data read)."""
        return sum(_open(f).metadata.num_rows for f in self.files)

    def sample(self, max_rows: int = 10_000, *, spread: int = 8):
        """A bounded read of at most ``max_rows`` rows, as a ``pyarrow.Table``.

        Reads the head of up to ``spread`` row groups chosen evenly over all files, so a
        file sorted by label does not show one class only; the data itself is never read
        in full. Within one row group only its first rows are read.
        """
        import pyarrow as pa

        groups = [(f, g) for f in self.files for g in range(_open(f).metadata.num_row_groups)]
        if not groups:
            return pa.Table.from_batches([], schema=self.schema().select(self.columns))
        picks = np.unique(np.linspace(0, len(groups) - 1, min(spread, len(groups))).astype(int))
        per_group = max(1, -(-max_rows // len(picks)))
        batches = []
        for i in picks:
            path, group = groups[i]
            # A buffered stream without pre-buffering reads only the pages the first batch
            # needs; unbuffered, pyarrow reads each whole column chunk (the whole file).
            reader = _open(path, stream=True).iter_batches(
                batch_size=per_group, row_groups=[group], columns=self.columns)
            batch = next(reader, None)
            if batch is not None:
                batches.append(batch)
        return pa.Table.from_batches(batches).slice(0, max_rows)

    def to_numpy(self, table) -> tuple[np.ndarray, np.ndarray | None]:
        """Converts a table read from this source into ``(x, y)``."""
        if len(self.features) == 1 and _is_list(table.schema.field(self.features[0]).type):
            x = _list_column(table.column(self.features[0])).astype(self.feature_dtype)
        else:
            x = np.empty((table.num_rows, len(self.features)), dtype=self.feature_dtype)
            for j, name in enumerate(self.features):
                x[:, j] = table.column(name).to_numpy()
        y = None
        if self.label:
            column = table.column(self.label)
            y = _list_column(column) if _is_list(column.type) else column.to_numpy()
        return x, y

    def read_numpy(self, shard_index: int = 0, num_shards: int = 1):
        """Reads one shard as ``(x, y)``.

        Shards by file when there are at least ``num_shards`` files, else by row group,
        else (fewer row groups than shards) by contiguous row ranges.

        Args:
            shard_index: this reader's index, in ``[0, num_shards)``.
            num_shards: how many readers share the data (e.g. the worker count).
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not 0 <= shard_index < num_shards:
            raise ValueError(f"shard_index={shard_index} is not in [0, {num_shards})")
        if len(self.files) >= num_shards:
            tables = [pq.read_table(f, columns=self.columns)
                      for f in self.files[shard_index::num_shards]]
            return self.to_numpy(pa.concat_tables(tables))
        groups = [(f, g) for f in self.files for g in range(_open(f).metadata.num_row_groups)]
        if len(groups) >= num_shards:
            tables = [_open(f).read_row_group(g, columns=self.columns)
                      for f, g in groups[shard_index::num_shards]]
            return self.to_numpy(pa.concat_tables(tables))
        table = pa.concat_tables(pq.read_table(f, columns=self.columns) for f in self.files)
        bounds = np.linspace(0, table.num_rows, num_shards + 1).astype(int)
        start, stop = bounds[shard_index], bounds[shard_index + 1]
        return self.to_numpy(table.slice(start, stop - start))


def parquet(path_or_glob: str | os.PathLike, *, features: str | Sequence[str],
            label: str | None = None, feature_dtype: str = "float32") -> ParquetSource:
    """Describes Parquet training data.

    Args:
        path_or_glob: a file, a directory (its ``*.parquet`` files) or a glob
            (``"data/part-*.parquet"``). Workers on other machines must see the same
            path: prefer an absolute path on shared storage.
        features: the scalar feature columns (stacked into ``[n, F]``), or the name of
            one list column holding each row's feature vector.
        label: the label column (integer ids, floats, or a fixed-size list for one-hot).
        feature_dtype: the dtype features are read as.

    Returns:
        A ``ParquetSource``. Files are resolved now; a path that matches nothing gives a
        source with no files, which ``guardtrain.check`` reports.

    Example:

    >>> src = parquet("train.parquet", features=["age", "income"], label="churned")
    >>> src.schema()            # doctest: +SKIP
    """
    path = os.fspath(path_or_glob)
    if isinstance(features, str):
        features = [features]
    return ParquetSource(path=path, files=tuple(_resolve(path)), features=tuple(features),
                         label=label, feature_dtype=feature_dtype)


def _resolve(path: str) -> list[str]:
    if os.path.isdir(path):
        return sorted(glob.glob(os.path.join(path, "*.parquet")))
    if _GLOB_CHARS & set(path):
        return sorted(glob.glob(path))
    return [path] if os.path.isfile(path) else []


def _open(path: str, stream: bool = False):
    import pyarrow.parquet as pq

    if stream:
        return pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 16)
    return pq.ParquetFile(path)


def _is_list(arrow_type) -> bool:
    import pyarrow as pa

    return (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)
            or pa.types.is_fixed_size_list(arrow_type))


def _list_column(column) -> np.ndarray:
    """A list column as ``[n, width]``; raises ``ValueError`` when rows differ in length."""
    import pyarrow as pa

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(column)
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
    else:
        lengths = column.value_lengths().to_numpy(zero_copy_only=False)
        if n and (lengths.min() != lengths.max()):
            raise ValueError(f"list column rows differ in length ({lengths.min()}.."
                             f"{lengths.max()}); every row needs the same width")
        width = int(lengths[0]) if n else 0
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(n, width)
