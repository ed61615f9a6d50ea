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
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

from guardtrain.core.errors import ConfigError, InputSpecError, Problem

__all__ = ["TrainData", "make_train_data", "num_samples", "shard_inputs"]


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


def shard_inputs(x, y, index: int, count: int):
    """Shard ``index`` of ``count`` of ``(x, y)``: a Parquet source reads its own files
    (every ``count``-th), arrays give contiguous rows (``np.array_split``); a dataset
    function is returned as is (it shards itself from its ``InputContext``)."""
    if hasattr(x, "read_numpy"):
        return x.read_numpy(index, count)
    if callable(x) and not isinstance(x, tf.data.Dataset):
        return x, y
    rows = np.array_split(np.arange(num_samples(x)), count)[index]
    x = {k: v[rows] for k, v in x.items()} if isinstance(x, dict) else x[rows]
    return x, None if y is None else y[rows]


def make_train_data(x, y, *, batch_size: int, steps_per_epoch: int | None, shuffle: bool,
                    strategy, seed: int | None = None, presharded: bool = False) -> TrainData:
    """Builds the training iterator on ``strategy``.

    Args:
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
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(
                order, seed=tf.stack([tf.cast(seed, tf.int64), e]))
        batches = tf.data.Dataset.from_tensor_slices(
            tf.reshape(order[:full], [-1, batch_size]))
        if full < total:    # the last, partial batch, as model.fit gives it
            batches = batches.concatenate(tf.data.Dataset.from_tensors(order[full:]))
        return batches

    indices = tf.data.Dataset.range(2**62).flat_map(epoch)
    data = tf.data.Dataset.from_tensors(arrays).repeat()
    # Two gathers at once: the next batch is ready while the step runs (fixed, not
    # autotuned; see _options).
    return tf.data.Dataset.zip((indices, data)).map(
        lambda i, d: tf.nest.map_structure(lambda a: tf.gather(a, i), d),
        num_parallel_calls=2)
