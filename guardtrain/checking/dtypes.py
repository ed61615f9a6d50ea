"""Dtypes: features and labels must be numbers the model can take.

Strings, objects and datetimes stop ``tf.convert_to_tensor`` with an error that does not
name the column; booleans and integers are cast to float by Keras, which is fine for
flags and counts and wrong for category ids (those belong in an ``Embedding``).
"""

from __future__ import annotations

import numpy as np

from guardtrain.checking import codes
from guardtrain.checking.shapes import var_name
from guardtrain.checking.specs import InputSpec, Sample
from guardtrain.core.errors import Problem

__all__ = ["check_feature_dtype", "check_label_dtype", "is_numeric"]


def is_numeric(sample: Sample) -> bool:
    """Whether the value checks can read the sample (bool, int, unsigned or float)."""
    return sample.rows.dtype.kind in "biuf"


def check_feature_dtype(sample: Sample, spec: InputSpec | None = None) -> list[Problem]:
    """Strings/objects (GT220), booleans (GT221), integers into a float input (GT222)."""
    dtype, name = sample.rows.dtype, var_name(sample.where)
    if dtype.kind in "OSUVMmc":
        example = _first_non_number(sample.rows)
        convertible = dtype.kind == "O" and example is None
        found = f"dtype {dtype}" + ("" if example is None else f", e.g. {example!r}")
        fix = (f"{name}.astype('float32') (the objects are numbers)" if convertible else
               "encode text as numbers first (a category -> integer id map, or "
               "keras.layers.StringLookup in the model) or drop that column")
        return [Problem(codes.FEATURE_TEXT, sample.where, "numbers (float32)", found, fix)]
    if spec is not None and spec.takes_integers:
        return []
    if dtype.kind == "b":
        return [Problem(codes.FEATURE_BOOL, sample.where, "numbers (float32)", "dtype bool",
                        f"Keras casts booleans to 0.0/1.0; if that is meant, say so with "
                        f"{name}.astype('float32')", severity="warning")]
    if dtype.kind in "iu":
        return [Problem(codes.FEATURE_INT, sample.where, "float features", f"dtype {dtype}",
                        f"{name}.astype('float32') for counts or pixels; category ids belong "
                        "in an Embedding (keras.Input(dtype='int32') -> keras.layers.Embedding)",
                        severity="warning")]
    return []


def check_label_dtype(sample: Sample) -> list[Problem]:
    """Labels that are not numbers: strings, objects, datetimes (GT223)."""
    dtype, name = sample.rows.dtype, var_name(sample.where)
    if dtype.kind not in "OSUVMmc":
        return []
    example = _first_non_number(sample.rows)
    if dtype.kind == "O" and example is None:
        fix = f"{name}.astype('int64') for class ids, or .astype('float32') for targets"
    else:
        fix = (f"turn class names into ids: classes, {name} = np.unique({name}, "
               "return_inverse=True)")
    found = f"dtype {dtype}" + ("" if example is None else f", e.g. {example!r}")
    return [Problem(codes.LABEL_DTYPE, sample.where, "numeric labels (class ids or targets)",
                    found, fix)]


def _first_non_number(rows: np.ndarray):
    """The first value of ``rows`` that is not a number, or ``None`` when all are."""
    for value in rows.reshape(-1)[:10_000]:
        if not isinstance(value, (int, float, np.number, bool, np.bool_)):
            return value
    return None
