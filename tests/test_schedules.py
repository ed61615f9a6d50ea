"""A learning-rate schedule is scaled by a rescue, never replaced, and never crashes it.

Keras's optimizer refuses a rate assignment when it runs on a schedule; the loop wraps
the schedule in ``ScaledSchedule`` (a multiplier, 1.0 until a rescue moves it), so a
healthy run is model.fit's to the bit and a stalled one is rescued with its schedule's
shape kept.
"""

import json

import keras
import numpy as np
import pytest

import guardtrain as gt
from guardtrain.engine.schedules import ScaledSchedule
from tests.helpers import blobs

pytestmark = pytest.mark.tf

X, Y = blobs(2048, classes=4, features=8)


def _model(rate):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(4, activation="softmax")])
    schedule = keras.optimizers.schedules.ExponentialDecay(rate, decay_steps=100,
                                                           decay_rate=0.9)
    model.compile(keras.optimizers.SGD(schedule), "sparse_categorical_crossentropy")
    return model, schedule


def test_a_healthy_scheduled_run_is_model_fits_and_keeps_the_users_schedule(tmp_path):
    plain, _ = _model(0.1)
    history = plain.fit(X, Y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    model, schedule = _model(0.1)
    result = gt.fit(model, X, Y, batch_size=32, epochs=2, shuffle=False, verbose=0,
                    run_dir=tmp_path)
    assert result.verdict == "healthy"
    assert result.logs["loss"] == pytest.approx(history.history["loss"][-1], abs=1e-6)
    for a, b in zip(plain.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert model.optimizer._learning_rate is schedule  # unwrapped: the user's object


def test_a_stalled_schedule_is_rescued_by_scaling_it(tmp_path):
    model, schedule = _model(1e-6)
    result = gt.fit(model, X, Y, batch_size=32, epochs=6, verbose=0, run_dir=tmp_path,
                    guard=gt.GuardConfig(warmup_steps=10, window_steps=40))
    assert result.verdict == "rescued"
    scaled = model.optimizer._learning_rate
    assert isinstance(scaled, ScaledSchedule) and scaled.schedule is schedule
    assert scaled.factor > 100  # the rescue raised the rate, the decay shape is the user's
    with open(tmp_path / "events.jsonl") as f:
        adjusts = [e for e in map(json.loads, f)
                   if e["event"] == "decision" and e["action"] == "ADJUST"]
    assert adjusts and adjusts[0]["learning_rate_to"] > 1e-4
