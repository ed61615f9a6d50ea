"""Values: NaN/Inf, constant inputs and columns, unscaled features.

All on the bounded sample (``Sample.describe()`` says how much was read), so a clean
result means "none seen", not "none at all": the loop's guard still watches ``finite``.
"""

from __future__ import annotations

import warnings

import numpy as np

from guardtrain.checking import codes
from guardtrain.checking.shapes import var_name
from guardtrain.checking.specs import Sample
from guardtrain.core.errors import Problem

__all__ = ["check_finite", "check_constant", "check_scale", "SCALE_LIMIT"]

#: Features whose largest magnitude is above this are reported as unscaled.
SCALE_LIMIT = 100.0


def check_finite(sample: Sample, *, labels: bool = False) -> list[Problem]:
    """NaN or Inf in features (GT230) or labels (GT231): count and first rows."""
    rows = sample.rows
    if rows.dtype.kind not in "fc":
        return []
    bad = ~np.isfinite(rows)
    if not bad.any():
        return []
    n_nan = int(np.isnan(rows).sum())
    n_inf = int(bad.sum()) - n_nan
    bad_rows = np.nonzero(bad.reshape(len(rows), -1).any(axis=1))[0]
    first = ", ".join(str(int(i)) for i in sample.row_index(bad_rows[:5]))
    found = (f"{n_nan:,} NaN and {n_inf:,} Inf in {len(bad_rows):,} rows of "
             f"{sample.describe()} (first rows: {first})")
    name = var_name(sample.where)
    if labels:
        return [Problem(codes.LABEL_NONFINITE, sample.where, "finite labels", found,
                        f"drop those rows: keep = np.isfinite({name}).reshape(len({name}), -1)"
                        ".all(1); x, y = x[keep], y[keep]")]
    return [Problem(codes.FEATURE_NONFINITE, sample.where, "finite features", found,
                    f"impute or drop: keep = np.isfinite({name}).reshape(len({name}), -1)"
                    ".all(1); x, y = x[keep], y[keep] (or fill with the column mean)")]


def check_constant(sample: Sample) -> list[Problem]:
    """An all-constant input (GT232, error) and constant columns of a table (GT233, warning)."""
    rows = sample.rows
    if rows.dtype.kind not in "biuf" or len(rows) < 2:
        return []
    flat = rows.reshape(len(rows), -1)
    lo, hi = _finite_min_max(flat, axis=None)
    if lo == hi:
        return [Problem(codes.ALL_CONSTANT, sample.where, "features that vary between samples",
                        f"every value is {lo:g} in {sample.describe()}",
                        "check the loading: an unfilled buffer, a wrong column, or a "
                        "normalisation that divided by 0")]
    if rows.ndim != 2 or rows.shape[1] < 2:
        return []  # images and sequences: constant pixels (borders) are normal
    col_lo, col_hi = _finite_min_max(flat, axis=0)
    constant = np.nonzero(col_lo == col_hi)[0]
    if not len(constant):
        return []
    shown = ", ".join(sample.column_name(j) for j in constant[:5])
    more = f" and {len(constant) - 5} more" if len(constant) > 5 else ""
    name = var_name(sample.where)
    return [Problem(codes.CONSTANT_COLUMNS, sample.where, "columns that vary",
                    f"{len(constant)} of {rows.shape[1]} columns constant in "
                    f"{sample.describe()}: {shown}{more}",
                    f"they carry no information: drop them ({name} = {name}[:, "
                    f"{name}.std(axis=0) > 0])", severity="warning")]


def check_scale(sample: Sample) -> list[Problem]:
    """Features far from unit scale (GT234, warning), with the usual remedy."""
    rows = sample.rows
    if rows.dtype.kind not in "iuf":
        return []
    lo, hi = _finite_min_max(rows.reshape(len(rows), -1), axis=None)
    peak = max(abs(lo), abs(hi))
    if not np.isfinite(peak) or peak <= SCALE_LIMIT:
        return []
    name = var_name(sample.where)
    pixels = lo >= 0 and hi <= 255 and _integral(rows)
    fix = (f"these look like 8-bit pixels: {name} = {name}.astype('float32') / 255.0"
           if pixels else
           f"standardise: {name} = ({name} - {name}.mean(axis=0)) / ({name}.std(axis=0) + "
           "1e-7), or put keras.layers.Normalization() (adapted on the data) first")
    return [Problem(codes.UNSCALED, sample.where, f"features roughly in [-{SCALE_LIMIT:g}, "
                    f"{SCALE_LIMIT:g}] (ideally unit scale)",
                    f"values from {lo:g} to {hi:g} in {sample.describe()}", fix,
                    severity="warning")]


def _finite_min_max(flat: np.ndarray, axis):
    values = flat.astype(np.float64, copy=False) if flat.dtype.kind == "b" else flat
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        values = np.where(np.isfinite(values), values, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN, fine
            return np.nanmin(values, axis=axis), np.nanmax(values, axis=axis)
    return values.min(axis=axis), values.max(axis=axis)


def _integral(rows: np.ndarray) -> bool:
    if rows.dtype.kind in "iu":
        return True
    sample = rows.reshape(-1)[:100_000]
    return bool(np.all(sample == np.round(sample)))
