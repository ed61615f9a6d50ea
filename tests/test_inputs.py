"""The batches ``make_train_data`` gives NumPy inputs: every row once per epoch, in a fresh
order each epoch when shuffled, the last batch partial, as ``model.fit`` does."""

import numpy as np
import pytest
import tensorflow as tf

from guardtrain.engine.inputs import make_train_data

pytestmark = pytest.mark.tf


def _epochs(shuffle, seed, *, total=10, batch=4, epochs=3):
    x = np.arange(total, dtype=np.float32)[:, None]
    y = np.arange(total, dtype=np.int64)
    data = make_train_data(x, y, batch_size=batch, steps_per_epoch=None, shuffle=shuffle,
                           strategy=tf.distribute.get_strategy(), seed=seed)
    assert data.steps_per_epoch == -(-total // batch)
    out = []
    for _ in range(epochs):
        batches = [next(data.iterator) for _ in range(data.steps_per_epoch)]
        for bx, by in batches:
            np.testing.assert_array_equal(bx.numpy()[:, 0], by.numpy())  # rows stay paired
        out.append([b[1].numpy() for b in batches])
    return out


def test_unshuffled_batches_run_in_order_with_a_partial_last_batch():
    for epoch in _epochs(False, None):
        assert [b.tolist() for b in epoch] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_shuffled_epochs_hold_every_row_once_in_a_fresh_reproducible_order():
    epochs = _epochs(True, 7)
    orders = [np.concatenate(e) for e in epochs]
    for epoch, order in zip(epochs, orders):
        assert [len(b) for b in epoch] == [4, 4, 2]
        assert sorted(order.tolist()) == list(range(10))
    assert len({tuple(o) for o in orders}) == 3                 # a new order each epoch
    again = [np.concatenate(e) for e in _epochs(True, 7)]
    np.testing.assert_array_equal(orders, again)               # same seed, same orders


def test_without_a_seed_the_global_seed_makes_the_order_reproducible():
    import keras

    keras.utils.set_random_seed(11)
    first = np.concatenate(_epochs(True, None)[0])
    keras.utils.set_random_seed(11)
    again = np.concatenate(_epochs(True, None)[0])
    np.testing.assert_array_equal(first, again)
    assert first.tolist() != list(range(10))


def test_no_rows_is_a_clear_error_not_an_endless_search_for_a_batch():
    from guardtrain.core.errors import InputSpecError

    with pytest.raises(InputSpecError, match="at least one row on every worker") as err:
        make_train_data(np.zeros((0, 1), np.float32), np.zeros(0, np.int64), batch_size=4,
                        steps_per_epoch=None, shuffle=True,
                        strategy=tf.distribute.get_strategy())
    assert err.value.code == "GT274" and [p.code for p in err.value.problems] == ["GT274"]


def test_a_worker_shard_runs_per_replica_batches_of_its_own_rows_in_order():
    """The Ray worker's path: ``shard_inputs`` then ``presharded=True`` — each worker's
    rows, ``batch / replicas`` a step, and the step count fixed from the whole data."""
    from guardtrain.engine.inputs import num_samples, shard_inputs

    x = np.arange(10, dtype=np.float32)[:, None]
    y = np.arange(10, dtype=np.int64)
    assert num_samples(x) == num_samples({"a": x}) == 10
    sx, sy = shard_inputs(x, y, 1, 2)                   # rank 1 of 2: rows 5..9
    assert sy.tolist() == [5, 6, 7, 8, 9]
    sd, _ = shard_inputs({"a": x}, None, 0, 2)
    assert sd["a"][:, 0].tolist() == [0, 1, 2, 3, 4]
    data = make_train_data(sx, sy, batch_size=4, steps_per_epoch=3, shuffle=False,
                           strategy=tf.distribute.get_strategy(), presharded=True)
    assert (data.steps_per_epoch, data.num_samples) == (3, 5)
    seen = [next(data.iterator)[1].numpy().tolist() for _ in range(3)]
    assert seen == [[5, 6, 7, 8], [9], [5, 6, 7, 8]]    # one replica: the whole batch of 4
