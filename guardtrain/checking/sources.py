"""Turns what the user passed as ``x``/``y`` into bounded ``Sample``s.

Accepted: NumPy arrays (or array-likes, pandas frames), lists or dicts of them by input
name; a ``tf.data.Dataset`` (its ``element_spec`` and a few batches via ``take``); a
dataset function ``fn(input_context)`` (called once with a default
``tf.distribute.InputContext()``); a ``guardtrain.data.ParquetSource`` (footer schema,
then a bounded head read of a few row groups).

Never reads all the data: arrays are sampled at evenly spaced rows, at most
``max_rows`` rows or ``element_budget`` values, whichever allows more rows (so 1-D
labels are usually read whole, and a 1M x 784 array gives 10,000 rows).
"""

from __future__ import annotations

import logging
import sys

import numpy as np

from guardtrain.checking import codes
from guardtrain.checking.parquet_schema import check_columns
from guardtrain.checking.shapes import var_name
from guardtrain.checking.specs import Inputs, ModelSpec, Sample
from guardtrain.data import ParquetSource
from guardtrain.core.errors import Problem

__all__ = ["load", "is_dataset", "is_dataset_fn", "MAX_ROWS", "ELEMENT_BUDGET", "MAX_BATCHES"]

logger = logging.getLogger(__name__)

MAX_ROWS = 10_000
ELEMENT_BUDGET = 1_000_000
MAX_BATCHES = 16


def load(x, y=None, *, model: ModelSpec | None = None, prefix: str = "",
         max_rows: int = MAX_ROWS) -> tuple[Inputs | None, list[Problem]]:
    """Samples ``x`` and ``y``; returns the samples and the problems met reading them.

    Args:
        x: the features (or a source that yields features and labels).
        y: the labels, for array inputs.
        model: the model's description, to tell a batched dataset from an unbatched one.
        prefix: put before ``x``/``y`` in messages (``"validation_data "``).
        max_rows: the row cap of a sample.
    """
    wx, wy = f"{prefix}x", f"{prefix}y"
    if x is None:
        return None, [Problem(codes.UNREADABLE, wx, "training data", "x=None",
                              "pass x (and y), a tf.data.Dataset, a dataset function or "
                              "gt.data.parquet(...)")]
    if isinstance(x, ParquetSource):
        return _twice(_from_parquet(x, wx, wy, max_rows), y, wy, "a ParquetSource")
    if is_dataset(x):
        return _twice(_from_dataset(x, "dataset", model, wx, wy, max_rows), y, wy,
                      "a tf.data.Dataset")
    if is_dataset_fn(x):
        return _twice(_from_dataset_fn(x, model, wx, wy, max_rows), y, wy,
                      "a dataset function")
    return _from_arrays(x, y, wx, wy, max_rows)


def _twice(loaded, y, wy, what):
    inputs, problems = loaded
    if y is not None:
        problems.append(Problem(codes.LABELS_TWICE, wy, f"no y: {what} yields the labels",
                                f"y of type {type(y).__name__}",
                                "drop y, and yield (x, y) pairs from the source"))
    return inputs, problems


# -- arrays ------------------------------------------------------------------------------

def _from_arrays(x, y, wx, wy, max_rows):
    problems = []
    xs, structure = _leaves(x, wx, problems)
    ys, y_structure = ([], "single") if y is None else _leaves(y, wy, problems)
    if y is None:
        problems.append(Problem(codes.NO_LABELS, wy, "labels (y) for array inputs",
                                "y=None", "pass y=labels, or x as a dataset of (x, y) pairs"))
    xs = [(k, _sample_array(a, w, max_rows, problems)) for k, (a, w) in xs]
    ys = [(k, _sample_array(a, w, max_rows, problems)) for k, (a, w) in ys]
    xs = [(k, s) for k, s in xs if s is not None]
    ys = [(k, s) for k, s in ys if s is not None]
    counts = [s.n_total for _, s in xs]
    return Inputs(kind="arrays", x=xs, y=ys, structure=structure, y_structure=y_structure,
                  n_rows=counts[0] if counts else None, source=x), problems


def _leaves(data, where, problems):
    """``[(key, (array, where))]`` and the structure of ``data``."""
    if isinstance(data, dict):
        return [(k, (v, f"{where}[{k!r}]")) for k, v in data.items()], "dict"
    if isinstance(data, (list, tuple)) and data and all(
            hasattr(v, "shape") or hasattr(v, "iloc") for v in data):
        if len(data) == 1:
            return [(None, (data[0], where))], "single"
        return [(i, (v, f"{where}[{i}]")) for i, v in enumerate(data)], "list"
    return [(None, (data, where))], "single"


def _sample_array(a, where, max_rows, problems) -> Sample | None:
    if not hasattr(a, "shape") and not hasattr(a, "iloc") and not np.isscalar(a):
        # Python lists: small by nature, and they cannot be indexed by rows.
        a, ragged = _list_array(a)
        if ragged:
            problems.append(Problem(
                codes.RAGGED, where, "rows of one length (a rectangular array)",
                f"nested lists whose rows differ in length ({ragged})",
                "pad or trim every row to one length (e.g. keras.utils.pad_sequences"
                f"({var_name(where)}, maxlen=...)), or pass a NumPy array"))
            return None
    try:
        n = len(a)
    except TypeError:
        problems.append(Problem(codes.UNREADABLE, where, "an array with a sample axis",
                                f"{type(a).__name__} without a length",
                                "pass a NumPy array of shape (samples, ...)"))
        return None
    if n == 0:
        problems.append(Problem(codes.EMPTY, where, "at least one sample", "0 samples",
                                "check the data loading: the array is empty"))
        return None
    first = np.asarray(a.iloc[0] if hasattr(a, "iloc") else a[0])
    budget_rows = max(max_rows, ELEMENT_BUDGET // max(1, first.size))
    if n <= budget_rows:
        rows = np.asarray(a.to_numpy() if hasattr(a, "to_numpy") else a)
        return Sample(where, rows, n_total=n, columns=_frame_columns(a))
    # Evenly spaced rows: a file sorted by label or time still shows its whole range.
    idx = np.linspace(0, n - 1, budget_rows).round().astype(np.int64)
    if hasattr(a, "iloc"):
        rows = a.iloc[idx].to_numpy()
    elif isinstance(a, np.ndarray):
        rows = a[idx]
    else:
        rows = np.asarray(a)[idx]  # tensors, h5py datasets: no fancy indexing of their own
    return Sample(where, rows, n_total=n, indices=idx, columns=_frame_columns(a))


def _list_array(a):
    """``(array, None)``, or ``(None, "lengths 3..5")`` for nested lists of unequal rows
    (NumPy refuses them with a bare ValueError about an "inhomogeneous shape")."""
    try:
        array = np.asarray(a)
    except ValueError:
        array = None
    if array is not None and not (array.dtype == object and array.ndim >= 1
                                  and any(isinstance(r, (list, tuple)) for r in array.flat)):
        return array, None
    lengths = sorted({len(r) for r in a if isinstance(r, (list, tuple))}) if isinstance(
        a, (list, tuple)) else []
    found = (f"row lengths {lengths[0]}..{lengths[-1]}" if len(lengths) > 1
             else "rows nested to different depths")
    return None, found


def _frame_columns(a):
    columns = getattr(a, "columns", None)
    return tuple(str(c) for c in columns) if columns is not None else None


# -- Parquet -----------------------------------------------------------------------------

def _from_parquet(source: ParquetSource, wx, wy, max_rows):
    if not source.files:
        return None, [Problem(codes.UNREADABLE, wx, f"Parquet files at {source.path!r}",
                              "no file matches",
                              "check the path or glob, e.g. '/data/train/*.parquet'")]
    try:
        schema, n = source.schema(), source.num_rows()
    except Exception as err:  # pyarrow's own error for a file that is not Parquet
        return None, [Problem(codes.UNREADABLE, wx, f"Parquet files at {source.path!r}",
                              f"reading the footer raised {type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}",
                              "check that every matched file is a Parquet file (written "
                              "with pyarrow.parquet.write_table or DataFrame.to_parquet)")]
    problems = check_columns(schema, source.features, source.label, where=wx)
    if problems:
        return None, problems
    if n == 0:
        return None, [Problem(codes.EMPTY, wx, "at least one row",
                              f"{len(source.files)} Parquet file"
                              f"{'s' if len(source.files) != 1 else ''} holding no rows",
                              "check the job that wrote the files: it wrote the schema but "
                              "no data")]
    try:
        x, y = source.to_numpy(source.sample(max_rows))
    except ValueError as err:
        return None, [Problem(codes.PARQUET_TYPE, f"{wx} columns {list(source.columns)}",
                              "equal-length feature lists", str(err),
                              "pad or trim each row's list to one width before writing")]
    columns = source.features if x.shape[1] == len(source.features) else None
    inputs = Inputs(kind="parquet", x=[(None, Sample(wx, x, n_total=n, columns=columns))],
                    n_rows=n, source=source)
    if y is None:
        problems.append(Problem(codes.NO_LABELS, wy, "a label column",
                                "gt.data.parquet(..., label=None)",
                                "name the label column: gt.data.parquet(..., label='y')"))
    else:
        inputs.y = [(None, Sample(wy, y, n_total=n))]
    return inputs, problems


# -- tf.data -----------------------------------------------------------------------------

def is_dataset(x) -> bool:
    """A ``tf.data.Dataset``."""
    tf = sys.modules.get("tensorflow")  # no TensorFlow imported: x cannot be a Dataset
    return tf is not None and isinstance(x, tf.data.Dataset)


def is_dataset_fn(x) -> bool:
    """A function taking an input context (anything callable that is not array-like,
    a dataset or a Parquet source)."""
    return (callable(x) and not hasattr(x, "shape") and not hasattr(x, "iloc")
            and not is_dataset(x) and not isinstance(x, ParquetSource))


def _from_dataset_fn(fn, model, wx, wy, max_rows):
    import tensorflow as tf

    try:
        dataset = fn(tf.distribute.InputContext())
    except Exception as err:  # the user's function: report it, do not crash in check
        return None, [Problem(codes.UNREADABLE, f"{wx} (dataset function)",
                              "fn(input_context) -> tf.data.Dataset",
                              f"it raised {type(err).__name__}: {err}",
                              "make the function run on its own: fn(tf.distribute."
                              "InputContext()) must return a batched tf.data.Dataset")]
    if not isinstance(dataset, tf.data.Dataset):
        return None, [Problem(codes.UNREADABLE, f"{wx} (dataset function)",
                              "fn(input_context) -> tf.data.Dataset",
                              f"it returned {type(dataset).__name__}",
                              "return a tf.data.Dataset of (x, y) batches")]
    return _from_dataset(dataset, "dataset_fn", model, wx, wy, max_rows)


def _from_dataset(dataset, kind, model, wx, wy, max_rows):
    spec = dataset.element_spec
    parts = spec if isinstance(spec, tuple) else (spec,)
    problems = []
    unbatched = _unbatched(parts[0], model)
    if unbatched:
        problems.append(Problem(
            codes.UNBATCHED, wx, "a batched dataset (first axis = samples)",
            f"elements of one sample each, shape {unbatched}",
            "batch it: dataset.batch(batch_size) (batch after map/shuffle)"))
        dataset = dataset.batch(max(1, max_rows // MAX_BATCHES))
    try:
        batches = list(dataset.take(MAX_BATCHES).as_numpy_iterator())
    except Exception as err:  # reading the user's pipeline: report, do not crash
        return None, [Problem(codes.UNREADABLE, wx, "a dataset that yields (x, y) batches",
                              f"reading it raised {type(err).__name__}: {err}",
                              "run next(iter(dataset)) alone to see the failure")]
    if not batches:
        return None, [Problem(codes.EMPTY, wx, "at least one batch", "an empty dataset",
                              "check the pipeline: take/filter/shard left nothing")]
    batches = [b if isinstance(b, tuple) else (b,) for b in batches]
    # The sample count of a dataset is unknown without reading it all: n_rows stays None.
    x_leaves, structure = _dataset_leaves([b[0] for b in batches], wx, max_rows)
    inputs = Inputs(kind=kind, x=x_leaves, structure=structure, source=dataset,
                    batch=_first_len(batches[0][0]))
    if len(parts) == 1:
        problems.append(Problem(codes.NO_LABELS, wy, "elements (x, y)",
                                "elements with features only", "map it: dataset.map("
                                "lambda x: (x, label_of(x))), or zip features with labels"))
    else:
        inputs.y, inputs.y_structure = _dataset_leaves([b[1] for b in batches], wy, max_rows)
    return inputs, problems


def _dataset_leaves(values, where, max_rows):
    first = values[0]
    if isinstance(first, dict):
        keys, structure = list(first), "dict"
        named = [(k, f"{where}[{k!r}]", [v[k] for v in values]) for k in keys]
    elif isinstance(first, (tuple, list)):
        structure = "list" if len(first) > 1 else "single"
        named = [(i if len(first) > 1 else None, f"{where}[{i}]" if len(first) > 1 else where,
                  [v[i] for v in values]) for i in range(len(first))]
    else:
        structure, named = "single", [(None, where, values)]
    leaves = []
    for key, w, arrays in named:
        rows = np.concatenate([np.asarray(a) for a in arrays])[:max_rows]
        leaves.append((key, Sample(w, rows, n_total=None)))
    return leaves, structure


def _first_len(value) -> int:
    if isinstance(value, dict):
        value = next(iter(value.values()))
    elif isinstance(value, (tuple, list)):
        value = value[0]
    return int(np.shape(value)[0]) if np.ndim(value) else 1


def _unbatched(x_spec, model: ModelSpec | None):
    """The element shape when elements look like single samples of the model's input."""
    if model is None or not model.inputs:
        return None
    spec = x_spec
    if isinstance(spec, dict):
        spec = spec.get(model.inputs[0].name, next(iter(spec.values())))
    elif isinstance(spec, (tuple, list)):
        spec = spec[0]
    shape = getattr(spec, "shape", None)
    if shape is None or shape.rank is None:
        return None
    element = tuple(shape.as_list())
    return element if element == tuple(model.inputs[0].shape[1:]) else None
