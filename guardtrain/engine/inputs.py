"""Turns what ``fit`` was given into a distributed iterator and a step count per epoch.

Accepted, like ``model.fit``: NumPy arrays or dicts of them (``x``, ``y``), a batched
``tf.data.Dataset`` of ``(x, y)`` or ``(x, y, sample_weight)``, a function
``dataset_fn(input_context) -> tf.data.Dataset`` (batched per replica by the function,
from ``input_context.get_per_replica_batch_size(batch_size)``), or a Parquet source
(``gt.data.parquet``), read with pyarrow.

Every dataset is repeated: an epoch is ``steps_per_epoch`` steps, and a rollback does not
rewind the data — the next attempt simply goes on with fresh batches.

On Ray workers the same path is used with ``presharded=True``: each worker first takes
its own rows (``shard_inputs``), and the driver fixes ``steps_per_epoch`` from the whole
data, so every rank runs the same number of steps (docs/architecture.md, "The data path").

Array inputs also take ``model.fit``'s row-wise arguments, with its meaning:
``split_validation`` (``validation_split``: the last rows, before any shuffling),
``sample_weights`` (``sample_weight``, and ``class_weight`` turned into it as Keras does);
the weights then travel with their rows as the third element of every batch.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

from guardtrain.core.errors import ConfigError, InputSpecError, Problem

__all__ = ["TrainData", "make_train_data", "num_samples", "shard_inputs", "shard_rows",
           "split_validation", "sample_weights"]


@dataclasses.dataclass
class TrainData:
    """A distributed iterator and how many steps make an epoch."""

    iterator: object
    steps_per_epoch: int
    num_samples: int | None


def _options(dataset: tf.data.Dataset, *, autoshard: bool = True) -> tf.data.Dataset:
    options = tf.data.Options()
    # Autotune made the end of a run stall for seconds to minutes on small CPUs; a fixed
    # prefetch is enough for a loop that runs many steps per call.
    options.autotune.enabled = False
    if not autoshard:
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options)


def num_samples(x) -> int | None:
    """Rows in ``x``: NumPy arrays, a dict of them, or a Parquet source (from its
    metadata, nothing read); ``None`` for a dataset or a dataset function."""
    if hasattr(x, "read_numpy"):         # gt.data.parquet(...)
        return int(x.num_rows())
    if isinstance(x, tf.data.Dataset) or callable(x):
        return None
    first = next(iter(x.values())) if isinstance(x, dict) else x
    return int(len(first))


def _take(value, rows):
    """``value``'s rows ``rows`` (a slice or indices): arrays, dicts of them, a pandas
    object by position, a list of rows; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: _take(v, rows) for k, v in value.items()}
    if hasattr(value, "iloc"):
        return value.iloc[rows]
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    return value[rows]


def shard_rows(value, index: int, count: int):
    """Rows of shard ``index`` of ``count`` of arrays (or a dict of them): contiguous, as
    ``np.array_split`` cuts them, so x, y and the sample weights stay row-aligned."""
    if value is None:
        return None
    return _take(value, np.array_split(np.arange(num_samples(value)), count)[index])


def shard_inputs(x, y, index: int, count: int):
    """Shard ``index`` of ``count`` of ``(x, y)``: a Parquet source reads its own files
    (every ``count``-th), arrays give contiguous rows (``np.array_split``); a dataset
    function is returned as is (it shards itself from its ``InputContext``)."""
    if hasattr(x, "read_numpy"):
        return x.read_numpy(index, count)
    if callable(x) and not isinstance(x, tf.data.Dataset):
        return x, y
    rows = np.array_split(np.arange(num_samples(x)), count)[index]
    return _take(x, rows), _take(y, rows)


def _refuse(where: str, expected: str, found: str, fix: str) -> ConfigError:
    # model.fit raises a bare ValueError for each of these (GT114: it refuses them too).
    return ConfigError(f"{where}: expected {expected}, found {found}", code="GT114", fix=fix)


def split_validation(x, y, sample_weight, fraction: float):
    """``model.fit(validation_split=fraction)`` on arrays: the last ``fraction`` of the
    rows, taken before any shuffling, become the validation data (Keras's
    ``train_validation_split``: the split point is ``floor(n * (1 - fraction))``).

    Returns:
        ``((x, y, sample_weight), validation_data)``: the training rows, and
        ``(x_val, y_val)`` or ``(x_val, y_val, sample_weight_val)`` with weights.

    Raises:
        ConfigError: GT114 when one side would be empty, as model.fit refuses it.
    """
    n = num_samples(x)
    # model.fit refuses ambiguous cardinality before it splits: cut first, and extra or
    # missing label rows would shift every label silently.
    counts = {where: _rows(value) for where, value in
              (("y", y), ("sample_weight", sample_weight)) if value is not None}
    wrong = {where: c for where, c in counts.items() if c is not None and c != n}
    if wrong:
        raise _refuse("fit(validation_split=...)", f"x, y and sample_weight with {n} rows each",
                      ", ".join(f"{w} has {c}" for w, c in wrong.items()),
                      "give every array one row per sample before splitting")
    split_at = int(math.floor(n * (1.0 - fraction)))
    if split_at == 0 or split_at == n:
        raise _refuse("fit(validation_split=...)", "a split that leaves rows on both sides",
                      f"{n} rows: {fraction!r} of them is {n - split_at}",
                      "give more rows or another validation_split")
    head, tail = slice(0, split_at), slice(split_at, n)
    train = (_take(x, head), _take(y, head), _take(sample_weight, head))
    val = (_take(x, tail), _take(y, tail))
    return train, val if sample_weight is None else (*val, _take(sample_weight, tail))


def _rows(value) -> int | None:
    """Rows of an array, or of each array of a dict/list of them (None if they differ)."""
    leaves = list(value.values()) if isinstance(value, dict) else (
        list(value) if _nested(value) else [value])
    counts = {len(leaf) for leaf in leaves if hasattr(leaf, "__len__")}
    return counts.pop() if len(counts) == 1 else None


def _nested(y) -> bool:
    # Several outputs: a dict by name, or a list/tuple of per-output arrays (a list of
    # plain numbers is one output's labels).
    return isinstance(y, dict) or (isinstance(y, (list, tuple)) and len(y) > 0
                                   and hasattr(y[0], "shape") and np.ndim(y[0]) > 0)


def _class_weights(y, class_weight) -> np.ndarray:
    """Keras's ``class_weight_to_sample_weights``, vectorised: one-hot labels by argmax,
    ``(n, 1)`` squeezed, rounded to class ids; a class without a key weighs 1.0."""
    import keras

    ids = np.asarray(y)
    if ids.ndim > 1:
        ids = np.argmax(ids, axis=-1) if ids.shape[-1] != 1 else np.squeeze(ids, axis=-1)
    ids = np.round(ids).astype("int32")
    classes, where = np.unique(ids, return_inverse=True)
    table = np.array([class_weight.get(int(c), 1.0) for c in classes],
                     dtype=keras.backend.floatx())
    return table[where.reshape(-1)]


def sample_weights(x, y, sample_weight=None, class_weight=None):
    """The per-row weights the loss gets, as ``model.fit`` makes them from its arguments,
    or ``None``.

    ``class_weight`` becomes one weight per row (single-output models only); a single
    ``sample_weight`` array for several outputs is given to each, as Keras does. Float
    weights are cast to Keras's ``floatx`` (Keras casts every float input).

    Raises:
        ConfigError: GT114 for what model.fit refuses: class weights for several
            outputs, weights of another row count, per-output weights whose structure
            is not ``y``'s.
    """
    import keras

    if class_weight is not None:
        if _nested(y):
            raise _refuse("fit(class_weight=...)", "a model with a single output",
                          f"y with {len(y)} outputs",
                          "pass sample_weight={output: weights, ...} instead")
        sample_weight = _class_weights(y, class_weight)
    if sample_weight is None:
        return None
    if _nested(y):
        if isinstance(sample_weight, (dict, list, tuple)):
            same = (sorted(sample_weight) == sorted(y) if isinstance(y, dict)
                    else isinstance(sample_weight, (list, tuple))
                    and len(sample_weight) == len(y))
            if not same:
                raise _refuse("fit(sample_weight=...)", "one weight array per output of y",
                              f"{_describe(sample_weight)} for y of {_describe(y)}",
                              "give sample_weight the structure of y, or one array of "
                              "shape (n,) for all outputs")
        else:
            sample_weight = np.asarray(sample_weight)
            if not (sample_weight.ndim == 1 or (sample_weight.ndim == 2
                                                and sample_weight.shape[1] == 1)):
                raise _refuse("fit(sample_weight=...)", "one weight per sample, shape (n,), "
                              "for a model with several outputs",
                              f"shape {sample_weight.shape}",
                              "pass one array per output instead")
            sample_weight = ({k: sample_weight for k in y} if isinstance(y, dict)
                             else type(y)(sample_weight for _ in y))
    floatx = keras.backend.floatx()

    def prepared(w):
        w = np.asarray(w)
        if not (np.issubdtype(w.dtype, np.number) or w.dtype == np.bool_):
            raise _refuse("fit(sample_weight=...)", "numbers", f"dtype {w.dtype}",
                          "pass float weights, one per row")
        return w.astype(floatx) if np.issubdtype(w.dtype, np.floating) else w

    sample_weight = (tf.nest.map_structure(prepared, sample_weight)
                     if isinstance(sample_weight, (dict, list, tuple)) else prepared(sample_weight))
    n = num_samples(x)
    for w in tf.nest.flatten(sample_weight):
        if np.ndim(w) == 0 or len(w) != n:
            raise _refuse("fit(sample_weight=...)", f"one weight per row of x ({n} rows)",
                          f"shape {np.shape(w)}", "give sample_weight the rows of x, in "
                                                  "the same order")
    return sample_weight


def _describe(value) -> str:
    if isinstance(value, dict):
        return "keys " + ", ".join(repr(k) for k in sorted(value))
    return f"{len(value)} arrays"


def make_train_data(x, y, *, batch_size: int, steps_per_epoch: int | None, shuffle,
                    strategy, seed: int | None = None, presharded: bool = False,
                    sample_weight=None) -> TrainData:
    """Builds the training iterator on ``strategy``.

    Args:
        shuffle: ``True`` (a fresh order of all rows each epoch), ``False``, or
            ``"batch"`` (the batches in order, the rows within each shuffled), as
            ``model.fit``; for array inputs only.
        sample_weight: per-row weights for array inputs (``sample_weights``), carried
            as the third element of every batch, cut and sharded with their rows.
        presharded: the arrays are already this worker's shard (``shard_inputs``, on Ray
            workers): each replica takes its own batches of them in order
            (``batch_size / replicas`` rows), and ``tf.data`` neither shards nor re-batches
            them. Give ``steps_per_epoch`` from the whole data: shards may differ in length
            by a row, and every rank must run the same steps.
    """
    if hasattr(x, "read_numpy"):          # gt.data.parquet(...): read with pyarrow here
        x, y = x.read_numpy()
    if callable(x) and not isinstance(x, tf.data.Dataset):
        if steps_per_epoch is None:
            raise ConfigError(
                "fit(x=dataset_fn): expected steps_per_epoch, found None: a dataset function "
                "has no length", code="GT102",
                fix="pass steps_per_epoch=N (samples per epoch / global batch size)")
        dist = strategy.distribute_datasets_from_function(
            lambda ctx: _options(x(ctx).repeat()))
        return TrainData(iter(dist), int(steps_per_epoch), None)
    if isinstance(x, tf.data.Dataset):
        n = steps_per_epoch
        if n is None:
            card = int(x.cardinality().numpy())
            if card < 0:
                raise ConfigError(
                    "fit(x=dataset): expected a dataset of known length or steps_per_epoch, "
                    f"found cardinality {card} (infinite or unknown)", code="GT102",
                    fix="pass steps_per_epoch=N")
            n = card
        dist = strategy.experimental_distribute_dataset(_options(x.repeat().prefetch(2)))
        return TrainData(iter(dist), int(n), None)
    # NumPy arrays or dicts of arrays.
    total = num_samples(x)
    arrays = (x, y) if y is not None else (x,)
    if sample_weight is not None:
        arrays = (x, y, sample_weight)
    n = steps_per_epoch or max(1, math.ceil(total / batch_size))
    if presharded:
        def dataset_fn(ctx: tf.distribute.InputContext):
            per_replica = ctx.get_per_replica_batch_size(batch_size)
            return _options(_array_dataset(arrays, total, per_replica, shuffle, seed)
                            .prefetch(2), autoshard=False)

        dist = strategy.distribute_datasets_from_function(dataset_fn)
        return TrainData(iter(dist), int(n), total)
    ds = _options(_array_dataset(arrays, total, batch_size, shuffle, seed).prefetch(2))
    return TrainData(iter(strategy.experimental_distribute_dataset(ds)), int(n), total)


def _array_dataset(arrays, total: int, batch_size: int, shuffle: bool, seed):
    """Batches of ``arrays`` in a fresh order each epoch, as ``model.fit`` does.

    Shuffles the row indices and gathers each batch, instead of passing the rows through
    a shuffle buffer: a buffer as large as the data copies all of it before the first
    step (tens of seconds for 1 M x 784 floats); the indices are 8 bytes a row. An epoch's
    indices are cut into batches as one tensor (``Dataset.range(n).batch(b)`` assembles
    each batch an element at a time: 10-20 % of a 0.2-ms step at batch 256). Epoch ``e``
    is shuffled with the stateless seed ``(seed, e)``: different each epoch, the same for
    the same ``seed`` (or, without one, under the same global TF seed).
    """
    if total == 0:      # an empty shard would spin forever looking for a first batch
        problem = Problem(code="GT274", where="x", expected="at least one row on every worker",
                          found="0 rows on this worker, after sharding",
                          fix="give every worker some rows: fewer workers, or Parquet files "
                              "that are not empty")
        raise InputSpecError(problems=[problem], code="GT274", fix=problem.fix)
    if seed is None:
        # From TF's global seed when one is set (keras.utils.set_random_seed), and from it
        # alone: the order then does not depend on how many random ops the process made
        # before (Dataset.shuffle's per-op seed did). Else random.
        global_seed = tf.compat.v1.random.get_seed(None)[0]
        seed = (int(np.random.default_rng().integers(2**31)) if global_seed is None else
                int(np.random.SeedSequence([global_seed, 1]).generate_state(1)[0]))
    full = total // batch_size * batch_size

    def epoch(e):
        order = tf.range(total, dtype=tf.int64)
        key = tf.stack([tf.cast(seed, tf.int64), e])
        if shuffle is True:
            order = tf.random.experimental.stateless_shuffle(order, seed=key)
        rows = tf.reshape(order[:full], [-1, batch_size])
        rest = order[full:]
        if shuffle == "batch":
            # model.fit's shuffle="batch": each batch's rows in a random order, the
            # batches in theirs. Sorting random keys row by row permutes every batch at
            # once; the partial batch gets its own stateless shuffle.
            keys = tf.random.stateless_uniform(tf.shape(rows), seed=key)
            rows = tf.gather(rows, tf.argsort(keys, axis=1), batch_dims=1)
            rest = tf.random.experimental.stateless_shuffle(rest, seed=key + 1)
        batches = tf.data.Dataset.from_tensor_slices(rows)
        if full < total:    # the last, partial batch, as model.fit gives it
            batches = batches.concatenate(tf.data.Dataset.from_tensors(rest))
        return batches

    indices = tf.data.Dataset.range(2**62).flat_map(epoch)
    data = tf.data.Dataset.from_tensors(arrays).repeat()
    # Two gathers at once: the next batch is ready while the step runs (fixed, not
    # autotuned; see _options).
    return tf.data.Dataset.zip((indices, data)).map(
        lambda i, d: tf.nest.map_structure(lambda a: tf.gather(a, i), d),
        num_parallel_calls=2)
