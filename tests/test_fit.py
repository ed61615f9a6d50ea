"""``gt.fit`` in-process: the same training as ``model.fit``, on 1 and on 2 replicas.

References are ``model.fit`` itself and a hand-computed NumPy SGD on a linear model (MSE,
plain SGD, ``shuffle=False``), run in float64 from the model's initial weights. The guard
is off (``guard=False``) wherever the numbers must be those of plain training.
"""

import re

import keras
import numpy as np
import pytest

import guardtrain as gt
from guardtrain.core.launch_config import LaunchConfig

pytestmark = pytest.mark.tf

ATOL = 1e-5     # float32 training against model.fit / a float64 reference, a few steps
RTOL = 1e-5


def _data(n, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x @ np.array([[1.5], [-2.0], [0.7]]) + 0.3).astype("float32")
    return x, y


def _model(lr=0.05, seed=0, metrics=None):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse",
                  metrics=metrics)
    # a non-zero bias, so the bias gradient matters from the first step
    model.set_weights([w + 0.1 for w in model.get_weights()])
    return model


def _twin(model, lr):
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    twin.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")
    return twin


def _sgd_reference(weights, x, y, *, batch, epochs, lr, replicas=1):
    """Plain SGD on Dense(1) with MSE, by hand: batches in order, a partial last batch,
    each replica's norm of its local mean loss. Returns per-step rows and final weights."""
    w, b = (np.asarray(a, np.float64) for a in weights)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    rows = {"loss": [], "norms": [], "update_norm": [], "weight_norm": []}

    def grads(xs, ys):
        err = xs @ w + b - ys
        d = 2.0 * err / err.size
        return np.mean(err ** 2), xs.T @ d, d.sum(axis=0)

    for _ in range(epochs):
        for start in range(0, len(x), batch):
            xb, yb = x[start:start + batch], y[start:start + batch]
            loss, gw, gb = grads(xb, yb)
            half = len(xb) // replicas
            norms = [np.sqrt(np.sum(g[0] ** 2) + np.sum(g[1] ** 2)) for g in
                     (grads(xb[r * half:(r + 1) * half], yb[r * half:(r + 1) * half])[1:]
                      for r in range(replicas))]
            rows["loss"].append(loss)
            rows["norms"].append(norms)
            rows["weight_norm"].append(np.sqrt(np.sum(w ** 2) + np.sum(b ** 2)))
            rows["update_norm"].append(lr * np.sqrt(np.sum(gw ** 2) + np.sum(gb ** 2)))
            w, b = w - lr * gw, b - lr * gb
    return {k: np.array(v) for k, v in rows.items()}, [w, b]


def test_fit_ends_at_the_weights_of_model_fit(tmp_path):
    """One replica, plain SGD, shuffle=False, 20 samples in batches of 8 (a partial last
    batch), 3 epochs: tolerance atol 1e-5 on the weights, rtol 1e-5 on the losses."""
    x, y = _data(20)
    lr, epochs, batch = 0.05, 3, 8
    ours = _model(lr)
    theirs = _twin(ours, lr)
    initial = ours.get_weights()

    result = gt.fit(ours, x, y, batch_size=batch, epochs=epochs, shuffle=False, guard=False,
                    verbose=0, run_dir=tmp_path)
    keras_history = theirs.fit(x, y, batch_size=batch, epochs=epochs, shuffle=False,
                               verbose=0).history

    assert result.model is ours
    for mine, ref in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, ref, atol=ATOL)
    assert not np.allclose(ours.get_weights()[0], initial[0], atol=1e-3)   # it trained
    assert result.logs["loss"] == pytest.approx(keras_history["loss"][-1], rel=RTOL)

    want, final = _sgd_reference(initial, x, y, batch=batch, epochs=epochs, lr=lr)
    assert result.history.num_rows == epochs * 3
    np.testing.assert_allclose(result.history.column("loss").to_numpy(), want["loss"],
                               rtol=RTOL)
    # The norms are measured on one step in 10: the first ceil(n / 10) steps of each
    # n-step chunk (one 3-step chunk per epoch here: its first step); the others are null.
    measured = result.history.column("measured").to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(measured, [True, False, False] * epochs)
    norms = result.history.column("grad_norm_mean").to_numpy(zero_copy_only=False)
    np.testing.assert_allclose(norms[measured], want["norms"][measured, 0], rtol=RTOL)
    assert result.history.column("grad_norm_mean").null_count == 2 * epochs
    for mine, ref in zip(ours.get_weights(), final):
        np.testing.assert_allclose(mine, ref, atol=ATOL)


def test_instance_built_outside_the_scope_trains_on_two_replicas(tmp_path):
    """The user's instance is rebuilt in the MirroredStrategy's scope, trained there, and
    ends holding the trained weights; each replica's own norm reaches the history."""
    x, y = _data(24)
    lr, epochs, batch = 0.05, 2, 8
    user_model = _model(lr)
    initial = user_model.get_weights()

    # Norms on every step (6 steps: far inside the guard's warm-up, nothing is judged).
    result = gt.fit(user_model, x, y, batch_size=batch, epochs=epochs, shuffle=False,
                    guard=gt.GuardConfig(stats_every=1), verbose=0, run_dir=tmp_path,
                    launch=LaunchConfig(cpu_replicas=2))

    want, final = _sgd_reference(initial, x, y, batch=batch, epochs=epochs, lr=lr, replicas=2)
    assert result.model is user_model
    for mine, ref in zip(user_model.get_weights(), final):
        np.testing.assert_allclose(mine, ref, atol=ATOL)
    hist = result.history
    assert hist.num_rows == epochs * 3
    norms = want["norms"]
    np.testing.assert_allclose(hist.column("loss").to_numpy(), want["loss"], rtol=RTOL)
    np.testing.assert_allclose(hist.column("grad_norm_min").to_numpy(), norms.min(1), rtol=RTOL)
    np.testing.assert_allclose(hist.column("grad_norm_max").to_numpy(), norms.max(1), rtol=RTOL)
    np.testing.assert_array_equal(hist.column("grad_norm_argmin").to_numpy(), norms.argmin(1))
    np.testing.assert_allclose(hist.column("update_norm").to_numpy(), want["update_norm"],
                               rtol=RTOL)
    np.testing.assert_allclose(hist.column("weight_norm").to_numpy(), want["weight_norm"],
                               rtol=RTOL)


def test_instance_built_under_another_strategy_is_rebuilt(tmp_path):
    """A model made in some other MirroredStrategy's scope cannot be read inside
    guardtrain's: it is read outside, rebuilt inside, trained, and handed back trained."""
    import tensorflow as tf

    x, y = _data(24)
    lr, epochs, batch = 0.05, 1, 8
    other = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                           cross_device_ops=tf.distribute.ReductionToOneDevice())
    with other.scope():
        user_model = _model(lr)
    initial = user_model.get_weights()

    result = gt.fit(user_model, x, y, batch_size=batch, epochs=epochs, shuffle=False,
                    guard=False, verbose=0, run_dir=tmp_path,
                    launch=LaunchConfig(cpu_replicas=2))

    _, final = _sgd_reference(initial, x, y, batch=batch, epochs=epochs, lr=lr, replicas=2)
    assert result.model is user_model
    for mine, ref in zip(user_model.get_weights(), final):
        np.testing.assert_allclose(mine, ref, atol=ATOL)


def test_builder_function_trains_on_two_replicas(tmp_path):
    x, y = _data(16)
    lr, epochs, batch = 0.1, 2, 8
    kernel = np.array([[0.2], [-0.4], [0.6]], np.float32)
    bias = np.array([0.3], np.float32)
    calls = []

    def build():
        calls.append(1)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(
            1, kernel_initializer=keras.initializers.Constant(kernel),
            bias_initializer=keras.initializers.Constant(bias))])
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")
        return model

    result = gt.fit(build, x, y, batch_size=batch, epochs=epochs, shuffle=False,
                    guard=gt.GuardConfig(stats_every=1), verbose=0, run_dir=tmp_path,
                    launch=LaunchConfig(cpu_replicas=2))

    want, final = _sgd_reference([kernel, bias], x, y, batch=batch, epochs=epochs, lr=lr,
                                 replicas=2)
    assert len(calls) >= 1
    assert isinstance(result.model, keras.Model)
    for mine, ref in zip(result.model.get_weights(), final):
        np.testing.assert_allclose(mine, ref, atol=ATOL)
    np.testing.assert_allclose(result.history.column("grad_norm_max").to_numpy(),
                               want["norms"].max(1), rtol=RTOL)


_EPOCH_LINE = re.compile(r"^\s*\d+/\d+ - .*loss: ", re.MULTILINE)


@pytest.mark.parametrize("verbose", [0, 1, 2])
def test_verbose_levels(verbose, tmp_path, capsys):
    x, y = _data(20)
    epochs = 2
    capsys.readouterr()
    result = gt.fit(_model(), x, y, batch_size=8, epochs=epochs, guard=False,
                    verbose=verbose, run_dir=tmp_path)
    out = capsys.readouterr().out
    assert result.history.num_rows == epochs * 3
    if verbose == 0:
        assert "loss" not in out and "/step" not in out and "Epoch" not in out, out
    elif verbose == 1:
        assert "3/3" in out and "loss" in out, out
    else:
        assert len(_EPOCH_LINE.findall(out)) == epochs, out
        assert "━" not in out, out        # no progress bar, only the epoch lines
