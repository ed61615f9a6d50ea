"""The session both runners build, and the Ray checkpoint's state carried through the
codec into a fresh session, in-process (no Ray): what a restarted worker does."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from guardtrain.engine.session import open_session
from guardtrain.ray.checkpoint import loop_state, restore_loop
from guardtrain.records.events import load_events
from guardtrain.records.state_codec import decode, encode

pytestmark = pytest.mark.tf

ROWS, BATCH, LOOP, EPOCHS = 96, 16, 2, 2      # 6 steps an epoch, 3 chunks


def _model(optimizer):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _session(tmp_path, optimizer, **kw):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, 3)).astype("float32")
    y = x.sum(1, keepdims=True)
    return open_session(lambda: _model(optimizer), x, y,
                        strategy=tf.distribute.get_strategy(), run_dir=tmp_path,
                        run_id=tmp_path.name, batch_size=BATCH, epochs=EPOCHS,
                        steps_per_epoch=None, steps_per_loop=LOOP, validation_data=None,
                        callbacks=None, shuffle=False, guard=None, rescue=None, verbose=0,
                        **kw)


def test_open_session_emits_start_and_runs(tmp_path):
    session = _session(tmp_path, keras.optimizers.SGD(0.05),
                       start_fields={"workers": 1})
    [start] = load_events(tmp_path)
    assert (start["event"], start["workers"], start["steps_per_epoch"]) == ("start", 1, 6)
    session.loop.run()
    assert session.loop.pos.step == EPOCHS * ROWS // BATCH


def test_checkpointed_state_resumes_a_fresh_session_once_per_step(tmp_path):
    saved = []

    def capture(loop):       # after chunk 4: epoch 1, step 8 (as LoopCheckpoint does)
        if loop.pos.step == 8:
            saved.append(encode(loop_state(loop)))

    first = _session(tmp_path / "a", keras.optimizers.Adam(0.01), chunk_hooks=[capture])
    first.loop.run()
    [(tree, arrays)] = saved

    # The restarted worker's model is compiled with SGD: the checkpoint's Adam comes back.
    second = _session(tmp_path / "b", keras.optimizers.SGD(0.05), start=False)
    restore_loop(second.loop, decode(tree, arrays))
    assert second.loop.optimizer_name == "adam"
    assert (second.loop.pos.step, second.loop.pos.epoch) == (8, 1)
    assert second.loop.learning_rate == pytest.approx(0.01)
    events = [e["event"] for e in second.events.events]
    assert events.count("start") == 1
    second.loop.run()
    steps = second.history.all_rows().column("step").to_pylist()
    assert steps == list(range(1, EPOCHS * ROWS // BATCH + 1))
