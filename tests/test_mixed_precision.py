"""Mixed precision (``mixed_float16``): loss-scale overflow skips are expected, not a
divergence; statistics are in unscaled units; a switch keeps loss scaling.

A ``LossScaleOptimizer`` multiplies the loss by its scale and skips a step whose scaled
gradient overflows float16 (halving the scale): a burst while it finds its scale, one now
and then later. Only skips that fill most of a window mean the weights no longer move.
"""

import numpy as np
import pytest

from guardtrain.core import guard as g
from tests.test_guard import CFG, CHUNK_STEPS, stream


def _with_skips(n, every):
    cols = stream(n)
    skipped = np.zeros(n, bool)
    skipped[::every] = True
    cols["skipped"] = skipped
    cols["measured"] = ~skipped
    for name in ("grad_norm_min", "grad_norm_max", "grad_norm_mean", "update_ratio"):
        cols[name] = np.where(skipped, np.nan, cols[name])
    return cols


def _run(cols):
    state, verdicts = g.GuardState(), []
    for i in range(0, len(cols["loss"]), CHUNK_STEPS):
        state, v = g.observe(state, {k: v[i:i + CHUNK_STEPS] for k, v in cols.items()}, CFG)
        verdicts.append(v)
    return verdicts


@pytest.mark.pure
def test_occasional_loss_scale_skips_are_not_a_divergence():
    verdicts = _run(_with_skips(400, every=7))
    assert {v.kind for v in verdicts} == {g.HEALTHY}


@pytest.mark.pure
def test_skips_in_most_measured_steps_are_diverged_with_their_count():
    cols = _with_skips(400, every=1)
    cols["skipped"][1::3] = False  # two in three steps skipped
    cols["measured"] = ~cols["skipped"]
    hit = next(v for v in _run(cols) if v.kind == g.DIVERGED)
    assert hit.evidence["loss_scale_skips"] >= 0.5 * hit.evidence["steps"]
    assert "loss-scale" in hit.reason


@pytest.mark.tf
def test_a_switch_keeps_loss_scaling_and_its_options():
    import keras

    from guardtrain.engine.supervisor import make_optimizer

    previous = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3, clipnorm=1.0))
    new = make_optimizer("sgd", 1e-2, previous)
    assert isinstance(new, keras.optimizers.LossScaleOptimizer)
    assert type(new.inner_optimizer).__name__ == "SGD"
    assert new.inner_optimizer.get_config()["clipnorm"] == 1.0
    assert not isinstance(make_optimizer("sgd", 1e-2, keras.optimizers.Adam()),
                          keras.optimizers.LossScaleOptimizer)


@pytest.mark.tf
def test_a_mixed_precision_run_with_overflow_skips_is_left_alone_in_true_units(tmp_path):
    """model.fit trains this; so does gt.fit, untouched: the skips while the loss scale is
    found are counted, and the gradient norm is the true one, not times the scale."""
    import json

    import keras

    import guardtrain as gt
    from tests.helpers import blobs

    x, y = blobs(2048, classes=4, features=8)

    def build():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"),
                                  keras.layers.Dense(4),
                                  keras.layers.Activation("softmax", dtype="float32")])
        # A scale far too large to start with: the first steps overflow and are skipped.
        model.compile(keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3),
                                                          initial_scale=2.0 ** 40),
                      "sparse_categorical_crossentropy")
        return model

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        result = gt.fit(build(), x, y, epochs=3, verbose=0, run_dir=tmp_path / "mp",
                        guard=gt.GuardConfig(warmup_steps=10, window_steps=40))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    plain = gt.fit(build(), x, y, epochs=1, verbose=0, run_dir=tmp_path / "fp32")
    with open(tmp_path / "mp" / "events.jsonl") as f:
        events = [json.loads(line) for line in f]
    assert result.verdict == "healthy"
    assert not [e for e in events if e["event"] in ("verdict", "decision", "probe")]
    assert sum(e["skipped"] for e in events if e["event"] == "loss_scale_skips") >= 3
    norm = np.nanmedian(np.array(result.history.column("grad_norm_mean").to_pylist(), float))
    ref = np.nanmedian(np.array(plain.history.column("grad_norm_mean").to_pylist(), float))
    assert 0.1 < norm / ref < 10  # the same order as float32's, not 2**k times it
