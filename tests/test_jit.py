"""``compile(jit_compile=True)`` is honoured: the step is compiled with XLA, as model.fit's.

XLA cannot place a step over several logical CPU devices (model.fit fails there too, with a
raw InvalidArgumentError): that combination is refused before anything starts (GT256).
"""

import numpy as np
import keras
import pytest

import guardtrain as gt
from guardtrain.engine.step import StepRunner

pytestmark = pytest.mark.tf

RNG = np.random.default_rng(0)
X = RNG.normal(size=(256, 8)).astype("float32")
Y = (X @ RNG.normal(size=(8, 1))).astype("float32")


def _model(jit):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(1e-2), "mse", jit_compile=jit, steps_per_execution=8)
    return model


def test_an_xla_model_trains_as_model_fit_trains_it(tmp_path):
    plain = _model(True)
    history = plain.fit(X, Y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    guarded = _model(True)
    result = gt.fit(guarded, X, Y, batch_size=32, epochs=2, shuffle=False, verbose=0,
                    run_dir=tmp_path)
    assert result.logs["loss"] == pytest.approx(history.history["loss"][-1], abs=1e-6)
    for a, b in zip(plain.get_weights(), guarded.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_the_step_is_compiled_with_xla_only_when_the_model_asks():
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    assert StepRunner(_model(True), strategy).jit_compile is True
    assert StepRunner(_model(False), strategy).jit_compile is False
    assert StepRunner(_model("auto"), strategy).jit_compile is False  # auto: no XLA on CPU


def test_xla_over_logical_cpu_replicas_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(gt.InputSpecError) as info:
        gt.fit(_model(True), X, Y, batch_size=32, verbose=0, run_dir=tmp_path / "run",
               launch=gt.LaunchConfig(cpu_replicas=2))
    (problem,) = [p for p in info.value.problems if p.code == "GT256"]
    assert "jit_compile=False" in problem.fix
    assert not (tmp_path / "run").exists()
