"""Keras callbacks under ``gt.fit``: the hooks ``model.fit`` calls, in its order, with its logs.

The reference is the same callback class under ``model.fit`` on a twin model (same weights,
same compile, ``steps_per_execution`` = guardtrain's ``steps_per_loop``, ``shuffle=False``).
"""

import keras
import numpy as np
import pytest

import guardtrain as gt
from guardtrain.core.launch_config import LaunchConfig

pytestmark = pytest.mark.tf

STEPS_PER_LOOP = 2
BATCH = 4
STEPS_PER_EPOCH = 5      # 20 training rows in batches of 4: chunks of 2, 2, 1


class Recorder(keras.callbacks.Callback):
    """Records every hook: (name, index) in ``calls``, the logs beside them."""

    def __init__(self):
        super().__init__()
        self.calls, self.logs = [], []

    def _record(self, name, index=None, logs=None):
        self.calls.append((name, index))
        self.logs.append({k: float(np.asarray(v)) for k, v in (logs or {}).items()})

    def on_train_begin(self, logs=None):
        self._record("on_train_begin", None, logs)

    def on_train_end(self, logs=None):
        self._record("on_train_end", None, logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._record("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._record("on_epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._record("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._record("on_train_batch_end", batch, logs)

    def on_test_begin(self, logs=None):
        self._record("on_test_begin", None, logs)

    def on_test_end(self, logs=None):
        self._record("on_test_end", None, logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._record("on_test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        self._record("on_test_batch_end", batch, logs)

    def logs_of(self, name):
        return [logs for (n, _), logs in zip(self.calls, self.logs) if n == name]


class StopAtFirstBatchEnd(Recorder):
    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        self.model.stop_training = True


def _data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ np.array([[1.0], [-1.0], [0.5]])).astype("float32")


def _compile(model):
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse",
                  metrics=["mae"], steps_per_execution=STEPS_PER_LOOP)
    return model


def _twins():
    keras.utils.set_random_seed(0)
    ours = _compile(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]))
    theirs = _compile(keras.models.clone_model(ours))
    theirs.set_weights(ours.get_weights())
    return ours, theirs


def _keras_sequence(ref):
    """Keras's calls, with one Keras quirk undone: for a partial last execution
    ``model.fit`` reports ``on_train_batch_end(begin + steps_per_execution - 1)``, a batch
    index past the epoch (5 of 0..4); guardtrain reports the last batch that ran (4)."""
    return [(n, min(i, STEPS_PER_EPOCH - 1)) if n == "on_train_batch_end" else (n, i)
            for n, i in ref.calls]


def _run_both(callback_cls, tmp_path, *, epochs, replicas=1):
    x, y = _data(BATCH * STEPS_PER_EPOCH, seed=1)
    val = _data(12, seed=2)               # 3 test batches
    ours, theirs = _twins()
    mine, ref = callback_cls(), callback_cls()
    launch = LaunchConfig(cpu_replicas=replicas) if replicas > 1 else None
    result = gt.fit(ours, x, y, batch_size=BATCH, epochs=epochs, steps_per_loop=STEPS_PER_LOOP,
                    validation_data=val, callbacks=[mine], shuffle=False, guard=False,
                    verbose=0, run_dir=tmp_path, launch=launch)
    theirs.fit(x, y, batch_size=BATCH, epochs=epochs, validation_data=val, callbacks=[ref],
               shuffle=False, verbose=0)
    return result, mine, ref


def test_hooks_come_in_keras_order_with_keras_logs(tmp_path):
    epochs = 2
    result, mine, ref = _run_both(Recorder, tmp_path, epochs=epochs)

    # The whole sequence, batch indices included, is model.fit's.
    assert mine.calls == _keras_sequence(ref)
    names = [n for n, _ in mine.calls]
    assert names[0] == "on_train_begin" and names[-1] == "on_train_end"
    assert names.count("on_epoch_begin") == names.count("on_epoch_end") == epochs
    assert names.count("on_test_begin") == names.count("on_test_end") == epochs
    assert ("on_train_batch_end", 4) in mine.calls    # the partial last chunk ends at 4
    assert result.history.num_rows == epochs * STEPS_PER_EPOCH

    # Logs hold at least what Keras's hold (loss, the compiled metrics, val_*) and, the
    # training being the same, the same values.
    for name in ("on_train_batch_end", "on_test_batch_end", "on_test_end", "on_epoch_end",
                 "on_train_end"):
        for got, want in zip(mine.logs_of(name), ref.logs_of(name), strict=True):
            assert set(want) <= set(got), (name, set(want) - set(got))
            for key in want:
                assert got[key] == pytest.approx(want[key], rel=1e-5), (name, key)
    end = mine.logs_of("on_epoch_end")[-1]
    assert {"loss", "mae", "val_loss", "val_mae"} <= set(end)
    assert {"loss", "mae"} <= set(mine.logs_of("on_train_batch_end")[0])


@pytest.mark.parametrize("replicas", [1, 2])
def test_stop_training_in_batch_end_stops_the_loop(tmp_path, replicas):
    epochs = 3
    result, mine, ref = _run_both(StopAtFirstBatchEnd, tmp_path, epochs=epochs,
                                  replicas=replicas)
    planned = epochs * STEPS_PER_EPOCH
    assert result.history.num_rows == STEPS_PER_LOOP < planned
    assert result.history.column("step").to_pylist() == [1, 2]
    assert gt.load_history(tmp_path).num_rows == STEPS_PER_LOOP
    # Keras, stopped the same way, still validates and closes the epoch and the run.
    assert mine.calls == _keras_sequence(ref)
    assert [n for n, _ in mine.calls].count("on_train_batch_end") == 1
