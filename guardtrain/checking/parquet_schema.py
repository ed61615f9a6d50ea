"""Parquet columns against what ``ParquetSource`` will read: present, and numbers.

Read from the schema in the file footer: no data is read. Runs for every Parquet input,
in-process or distributed, because a missing column fails either way.
"""

from __future__ import annotations

import difflib

from guardtrain.checking import codes
from guardtrain.core.errors import Problem

__all__ = ["check_columns"]


def check_columns(schema, features, label, *, where: str = "x") -> list[Problem]:
    """Checks that the feature and label columns exist and hold numbers.

    Args:
        schema: the ``pyarrow.Schema`` of the data.
        features: the feature column names.
        label: the label column name, or ``None``.
        where: how messages name the input.
    """
    import pyarrow as pa

    problems = []
    names = list(schema.names)
    wanted = [(c, f"{where} feature column {c!r}") for c in features]
    if label:
        wanted.append((label, f"{where} label column {label!r}"))
    for column, place in wanted:
        if column not in names:
            close = difflib.get_close_matches(column, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(Problem(
                codes.PARQUET_MISSING, place, f"a column {column!r}",
                f"no such column; the files have {_listing(names)}",
                f"{hint}name an existing column in gt.data.parquet(..., features=[...], "
                "label=...)"))
    present = [c for c in features if c in names]
    for column in present:
        kind = schema.field(column).type
        is_list = (pa.types.is_list(kind) or pa.types.is_large_list(kind)
                   or pa.types.is_fixed_size_list(kind))
        if is_list and len(features) > 1:
            problems.append(Problem(
                codes.PARQUET_TYPE, f"{where} feature column {column!r}",
                "scalar number columns, or one list column as the only feature",
                f"a list column ({kind}) among {len(features)} feature columns",
                f"use features={column!r} alone, or split it into scalar columns"))
        elif not _numeric(kind.value_type if is_list else kind):
            problems.append(Problem(
                codes.PARQUET_TYPE, f"{where} feature column {column!r}",
                "numbers (int, float or bool)", f"type {kind}",
                "encode it as numbers before writing the Parquet (e.g. category -> integer "
                "id, then an Embedding), or drop it from features"))
    if label and label in names:
        kind = schema.field(label).type
        is_list = pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind)
        if not _numeric(kind.value_type if is_list else kind):
            problems.append(Problem(
                codes.PARQUET_TYPE, f"{where} label column {label!r}",
                "integer class ids, floats, or a list of numbers (one-hot)", f"type {kind}",
                "write labels as integer ids: ids = {name: i for i, name in "
                "enumerate(sorted(set(labels)))}"))
    return problems


def _numeric(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def _listing(names) -> str:
    shown = ", ".join(repr(n) for n in names[:8])
    return shown + (f" and {len(names) - 8} more" if len(names) > 8 else "")
