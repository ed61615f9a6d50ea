"""``StepRunner``: the statistics of real steps equal a hand-computed NumPy reference.

The models are linear (``Dense`` layers, no activation) trained with MSE and plain SGD, so
every gradient has a closed form. The reference runs in float64 from the model's initial
weights; the step runs in float32, hence ``rtol=1e-5``.

On 2 replicas (``MirroredStrategy`` over the 2 logical CPUs from ``conftest.py``) a global
batch of B rows is split evenly: replica r gets rows ``[r*B/2, (r+1)*B/2)``. Each replica's
gradient norm is of its LOCAL mean loss; SGD applies the mean of the replicas' gradients.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from guardtrain.core.launch_config import LaunchConfig
from guardtrain.engine.devices import pick_strategy
from guardtrain.core.stats import REPLICA_NORMS, STAT_COLUMNS, summarise_chunk
from guardtrain.engine.step import StepRunner, var_layout
from tests import reference_stats as reference
from tests.helpers import regression_data

pytestmark = pytest.mark.tf

RTOL = 1e-5     # float32 step against a float64 reference
ATOL = 1e-7


def _strategy(replicas):
    if replicas == 1:
        return tf.distribute.get_strategy()
    strategy = pick_strategy(LaunchConfig(cpu_replicas=replicas))
    assert strategy.num_replicas_in_sync == replicas
    return strategy


def _linear_model(strategy, *, widths=(1,), use_bias=True, lr=0.1, seed=0):
    """Dense layers without activation on 3 features, MSE, plain SGD; random non-zero
    weights (biases too), optimizer built in the strategy's scope."""
    rng = np.random.default_rng(seed)
    with strategy.scope():
        layers = [keras.layers.Dense(w, use_bias=use_bias) for w in widths]
        model = keras.Sequential([keras.Input((3,))] + layers)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")
        model.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32")
                           for w in model.get_weights()])
        model.optimizer.build(model.trainable_variables)
    return model


def _iterator(strategy, x, y, batch):
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat()
    return iter(strategy.experimental_distribute_dataset(ds))


# -- the NumPy reference ------------------------------------------------------------------
def _split(weights, use_bias):
    """Flat weight list -> [(W, b or None)] per layer, in Keras's variable order."""
    if use_bias:
        return [(weights[i], weights[i + 1]) for i in range(0, len(weights), 2)]
    return [(w, None) for w in weights]


def _loss_and_grads(weights, use_bias, x, y):
    """MSE of a chain of linear layers and its gradient, by hand (flat, Keras's order)."""
    layers = _split(weights, use_bias)
    acts = [x]
    for w, b in layers:
        acts.append(acts[-1] @ w + (0.0 if b is None else b))
    err = acts[-1] - y
    loss = np.mean(err ** 2)
    delta = 2.0 * err / err.size                 # d loss / d output
    grads = []
    for k in reversed(range(len(layers))):
        w, b = layers[k]
        layer_grads = [acts[k].T @ delta] + ([] if b is None else [delta.sum(axis=0)])
        grads = layer_grads + grads
        delta = delta @ w.T
    return loss, grads


def _reference(weights, use_bias, batches, lrs, replicas):
    """Runs SGD by hand over ``batches`` (lr per step); returns the §3 columns per step
    (from ``tests/reference_stats.py``), the per-replica norms and the final weights."""
    weights = [np.asarray(w, np.float64) for w in weights]
    per_layer = 2 if use_bias else 1
    layer_of = [i // per_layer for i in range(len(weights))]
    rows = []
    for (x, y), lr in zip(batches, lrs):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        half = len(x) // replicas
        local = [_loss_and_grads(weights, use_bias, x[r * half:(r + 1) * half],
                                 y[r * half:(r + 1) * half])[1] for r in range(replicas)]
        applied = [np.mean([g[i] for g in local], axis=0) for i in range(len(weights))]
        new = [w - lr * g for w, g in zip(weights, applied)]
        # the mean of the global batch, computed directly (not from the replicas)
        loss = _loss_and_grads(weights, use_bias, x, y)[0]
        rows.append(reference.step_row(local, weights, new, layer_of, loss=loss))
        weights = new
    return reference.stack(rows), weights


def _assert_stats_equal(got, want):
    reference.assert_stats_equal(got, want, rtol=RTOL, atol=ATOL, columns=STAT_COLUMNS)


def _batches(x, y, batch, steps):
    n = len(x)
    starts = [(s * batch) % n for s in range(steps)]
    return [(x[a:a + batch], y[a:a + batch]) for a in starts]


# -- tests --------------------------------------------------------------------------------
@pytest.mark.parametrize("widths", [(1,), (2, 1)], ids=["dense1", "dense2-dense1"])
@pytest.mark.parametrize("replicas", [1, 2])
def test_step_statistics_equal_numpy(replicas, widths):
    """Two chunks (3 then 2 steps): every step starts from the previous step's weights."""
    strategy = _strategy(replicas)
    model = _linear_model(strategy, widths=widths, lr=0.1)
    x, y = regression_data(24)
    batch = 8
    runner = StepRunner(model, strategy)
    it = _iterator(strategy, x, y, batch)
    initial = model.get_weights()

    chunks = [runner.run(it, 3), runner.run(it, 2)]
    got = {k: np.concatenate([summarise_chunk(c.replica, c.shared, runner.layout)[k]
                              for c in chunks])
           for k in list(STAT_COLUMNS) + [REPLICA_NORMS]}
    want, final = _reference(initial, True, _batches(x, y, batch, 5), [0.1] * 5, replicas)

    assert chunks[0].replica.shape == (3, replicas, 1 + 2 * len(model.trainable_variables))
    assert chunks[1].shared.shape == (2, 2 * len(model.trainable_variables))
    _assert_stats_equal(got, want)
    if len(widths) == 2:   # the two layers really differ
        assert not np.allclose(got["grad_first"], got["grad_last"], rtol=1e-3)
        assert not np.allclose(got["layer_ratio_min"], got["layer_ratio_max"], rtol=1e-3)
    for w, ref in zip(model.get_weights(), final):
        np.testing.assert_allclose(w, ref, rtol=RTOL, atol=1e-6)
    assert runner.trace_count == 1


def test_replica_with_zero_inputs_reports_its_own_smaller_norm():
    """Rows of replica 1 are all zero and the model has no bias: its gradient is exactly 0,
    while replica 0's is not; argmin names replica 1 and half the entries are zero."""
    strategy = _strategy(2)
    model = _linear_model(strategy, widths=(1,), use_bias=False, lr=0.05)
    x, y = regression_data(16)
    batch = 8
    for start in range(0, len(x), batch):          # replica 1's half of every batch
        x[start + batch // 2:start + batch] = 0.0
    runner = StepRunner(model, strategy)
    initial = model.get_weights()
    out = runner.run(_iterator(strategy, x, y, batch), 2)
    got = summarise_chunk(out.replica, out.shared, runner.layout)
    want, _ = _reference(initial, False, _batches(x, y, batch, 2), [0.05] * 2, 2)

    np.testing.assert_array_equal(got[REPLICA_NORMS][:, 1], [0.0, 0.0])
    assert np.all(got[REPLICA_NORMS][:, 0] > 0.1)
    np.testing.assert_array_equal(got["grad_norm_argmin"], [1, 1])
    np.testing.assert_array_equal(got["grad_norm_min"], [0.0, 0.0])
    np.testing.assert_allclose(got["zero_grad_fraction"], [0.5, 0.5])
    _assert_stats_equal(got, want)


@pytest.mark.parametrize("replicas", [1, 2])
def test_learning_rate_change_between_chunks_takes_effect_without_retrace(replicas):
    strategy = _strategy(replicas)
    model = _linear_model(strategy, widths=(1,), lr=0.1)
    x, y = regression_data(24)
    batch = 8
    runner = StepRunner(model, strategy)
    it = _iterator(strategy, x, y, batch)
    initial = model.get_weights()

    out1 = runner.run(it, 2)
    model.optimizer.learning_rate = 0.02          # what TrainLoop.set_learning_rate does
    out2 = runner.run(it, 3)
    first = summarise_chunk(out1.replica, out1.shared, runner.layout)
    second = summarise_chunk(out2.replica, out2.shared, runner.layout)

    assert runner.trace_count == 1
    lrs = [0.1, 0.1, 0.02, 0.02, 0.02]
    np.testing.assert_allclose(np.concatenate([out1.learning_rate, out2.learning_rate]), lrs,
                               rtol=1e-6)
    want, _ = _reference(initial, True, _batches(x, y, batch, 5), lrs, replicas)
    got = {k: np.concatenate([first[k], second[k]]) for k in first}
    _assert_stats_equal(got, want)
    # SGD: the step is lr times the applied gradient. On one replica that gradient's norm
    # is the recorded grad norm; the ratio therefore reads the rate each step ran with.
    if replicas == 1:
        np.testing.assert_allclose(got["update_norm"] / got["grad_norm_mean"], lrs, rtol=RTOL)


@pytest.mark.parametrize("replicas", [1, 2])
def test_a_schedule_is_recorded_step_by_step_and_drives_the_steps(replicas):
    # A rate held in a variable is read once per chunk; a schedule must still be read on
    # every step: rate_t = 0.1 * 0.5**t, computed here by hand.
    strategy = _strategy(replicas)
    model = _linear_model(strategy, widths=(1,), lr=0.1)
    with strategy.scope():
        model.compile(optimizer=keras.optimizers.SGD(
            keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)),
            loss="mse")
        model.optimizer.build(model.trainable_variables)
    x, y = regression_data(24)
    batch = 8
    runner = StepRunner(model, strategy)
    it = _iterator(strategy, x, y, batch)
    initial = model.get_weights()
    out1, out2 = runner.run(it, 2), runner.run(it, 3)
    lrs = [0.1 * 0.5 ** t for t in range(5)]
    np.testing.assert_allclose(np.concatenate([out1.learning_rate, out2.learning_rate]), lrs,
                               rtol=1e-6)
    want, _ = _reference(initial, True, _batches(x, y, batch, 5), lrs, replicas)
    first = summarise_chunk(out1.replica, out1.shared, runner.layout)
    second = summarise_chunk(out2.replica, out2.shared, runner.layout)
    _assert_stats_equal({k: np.concatenate([first[k], second[k]]) for k in first}, want)


def test_a_loss_scale_optimizer_records_the_inner_rate():
    # The wrapper keeps a rate of its own (0.0); the steps run at the inner optimizer's.
    strategy = _strategy(1)
    model = _linear_model(strategy, widths=(1,), lr=0.1)
    model.compile(optimizer=keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(learning_rate=0.05)), loss="mse")
    model.optimizer.build(model.trainable_variables)
    x, y = regression_data(16)
    out = StepRunner(model, strategy).run(_iterator(strategy, x, y, 8), 2)
    np.testing.assert_allclose(out.learning_rate, [0.05, 0.05], rtol=1e-6)


def test_collect_stats_false_returns_only_the_loss():
    strategy = _strategy(2)
    model = _linear_model(strategy, widths=(1,), lr=0.1)
    x, y = regression_data(16)
    initial = model.get_weights()
    runner = StepRunner(model, strategy, collect_stats=False)
    out = runner.run(_iterator(strategy, x, y, 8), 2)
    want, _ = _reference(initial, True, _batches(x, y, 8, 2), [0.1] * 2, 2)
    assert out.replica.shape == (2, 2, 1) and out.shared.shape == (2, 0)
    # Each replica ships its local mean loss divided by the replica count.
    np.testing.assert_allclose(out.replica[:, :, 0].sum(axis=1), want["loss"], rtol=RTOL)
    # The metrics come back with the chunk: the mean loss over the chunk's samples.
    assert out.metrics["loss"] == pytest.approx(np.mean(want["loss"]), rel=RTOL)


def test_var_layout_groups_variables_by_layer_in_order():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="first"),
                              keras.layers.Activation("relu"),
                              keras.layers.Dense(4, use_bias=False, name="middle"),
                              keras.layers.Dense(1, name="last")])
    layout = var_layout(model)
    assert layout.layer_of_var == (0, 0, 1, 2, 2)
    assert layout.var_sizes == (6, 2, 8, 4, 1)
    assert layout.layer_names == ("first", "middle", "last")
    assert layout.num_vars == len(model.trainable_variables)


def test_var_layout_follows_the_variables_into_a_nested_model():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="in1"),
                              keras.layers.Dense(2, name="in2")], name="inner")
    inputs = keras.Input((5,))
    outputs = keras.layers.Dense(1, name="post")(inner(keras.layers.Dense(4, name="pre")(inputs)))
    layout = var_layout(keras.Model(inputs, outputs))
    assert layout.layer_names == ("pre", "in1", "in2", "post")
    assert layout.layer_of_var == (0, 0, 1, 1, 2, 2, 3, 3)
    assert layout.var_sizes == (20, 4, 12, 3, 6, 2, 2, 1)


def test_var_layout_skips_frozen_layers():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="frozen"),
                              keras.layers.Dense(1, name="head")])
    model.get_layer("frozen").trainable = False
    layout = var_layout(model)
    assert layout.layer_names == ("head",)
    assert layout.layer_of_var == (0, 0)
    assert layout.var_sizes == (2, 1)


def test_norms_on_one_step_in_three_loss_on_every_step():
    """stats_every=3 over 7 steps on 2 replicas: the loss of every step and the norms of
    the first ceil(7 / 3) = 3 steps equal the NumPy reference; the others are NaN, marked
    unmeasured, and still count as finite (their loss is)."""
    strategy = _strategy(2)
    model = _linear_model(strategy, widths=(1,), lr=0.1)
    x, y = regression_data(56)
    initial = model.get_weights()
    runner = StepRunner(model, strategy, stats_every=3)
    out = runner.run(_iterator(strategy, x, y, 8), 7)
    got = summarise_chunk(out.replica, out.shared, runner.layout, out.measured)
    want, _ = _reference(initial, True, _batches(x, y, 8, 7), [0.1] * 7, 2)
    measured = np.array([True, True, True, False, False, False, False])
    np.testing.assert_array_equal(out.measured, measured)
    np.testing.assert_array_equal(got["measured"], measured)
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=RTOL)
    for key in ("grad_norm_mean", "update_norm", "weight_norm", "zero_grad_fraction"):
        np.testing.assert_allclose(got[key][measured], want[key][measured], rtol=RTOL,
                                   atol=ATOL, err_msg=key)
        assert np.isnan(got[key][~measured]).all(), key
    assert got["finite"].all()
    assert (got["grad_norm_argmin"][~measured] == -1).all()
    assert runner.trace_count == 1


@pytest.mark.parametrize("replicas", [1, 2])
def test_a_deferred_snapshot_is_taken_at_the_start_of_the_next_chunk(replicas):
    # save() only marks the state; the next chunk copies it before its first step, in the
    # same call, so a restore after that chunk gives the weights from before it, and a
    # restore with no chunk in between gives the current ones.
    from guardtrain.engine.snapshot import Snapshot

    strategy = _strategy(replicas)
    model = _linear_model(strategy, widths=(2, 1), lr=0.1)
    x, y = regression_data(24)
    snapshot = Snapshot(model, strategy)
    runner = StepRunner(model, strategy, snapshot=snapshot)
    it = _iterator(strategy, x, y, 8)
    runner.run(it, 2)
    saved = model.get_weights()
    snapshot.save(step=2, epoch=0, step_in_epoch=2)
    runner.run(it, 3)                                 # copies, then trains
    runner.run(it, 1)                                 # nothing pending: no copy
    assert not np.allclose(model.get_weights()[0], saved[0])
    snapshot.restore()
    for got, want in zip(model.get_weights(), saved):
        np.testing.assert_array_equal(got, want)
    assert runner.trace_count == 1                    # the flag is a tensor: one trace

    runner.run(it, 2)
    current = model.get_weights()
    snapshot.save(step=4, epoch=0, step_in_epoch=4)
    snapshot.restore()                                # flushes the save first
    for got, want in zip(model.get_weights(), current):
        np.testing.assert_array_equal(got, want)
