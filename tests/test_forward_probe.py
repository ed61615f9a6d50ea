"""A non-finite first step is traced to its cause: the batch, or the layer that overflows.

Before any update no learning rate can be at fault, so the rescue never cuts the rate
for it: the run stops with the layer and its activation named (GT310), or with the data
(GT307).
"""

import numpy as np
import keras
import pytest

import guardtrain as gt
from guardtrain.engine.forward_probe import probe_forward
from tests.helpers import blobs

pytestmark = pytest.mark.tf


def _exponential_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(32, activation="exponential", name="blows"),
                              keras.layers.Dense(32, activation="relu", name="after"),
                              keras.layers.Dense(4, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def test_the_probe_names_the_first_overflowing_layer_and_its_activation():
    x, _ = blobs(64, classes=4, features=8, scale=30.0)
    found = probe_forward(_exponential_model(), x)
    assert found["where"] == "layer" and found["layer"] == "blows"
    assert found["activation"] == "exponential" and found["layer_index"] == 0


def test_the_probe_names_the_inputs_when_the_batch_is_not_finite():
    x, _ = blobs(64, classes=4, features=8)
    x[3, 2] = np.nan
    assert probe_forward(_exponential_model(), x) == {"where": "inputs",
                                                      "nonfinite_values": 1}


def test_a_finite_pass_says_so_and_a_subclassed_model_is_not_probed():
    x, _ = blobs(64, classes=4, features=8, scale=0.1)
    assert probe_forward(_exponential_model(), x) == {"where": "none"}

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    sub = Sub()
    sub(x)
    assert probe_forward(sub, x) is None


def test_an_overflowing_forward_pass_stops_with_the_layer_named_not_a_rate_cut(tmp_path):
    x, y = blobs(512, classes=4, features=8, scale=30.0)
    with pytest.raises(gt.UnhealthyTrainingError) as info:
        gt.fit(_exponential_model(), x, y, epochs=2, verbose=0, run_dir=tmp_path)
    err = info.value
    assert err.code == "GT310" and "'blows'" in str(err) and "exponential" in err.fix
    assert err.details["forward_probe"]["layer"] == "blows"
    assert len(err.details["attempts"]) == 1  # no learning-rate "rescue" was tried


def test_nan_rows_the_check_did_not_read_stop_the_run_as_a_data_error_naming_the_batch(
        tmp_path):
    """gt.check reads a sample (every second row here): NaN rows it skipped reach
    training. Each step reports whether its batch was finite, so the run stops with the
    batch named (GT307) instead of cutting a learning rate that is not at fault."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 100)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    x[1001, 5] = np.nan  # an odd row: not in the check's evenly spaced sample
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((100,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    assert gt.check(model, x, y, batch_size=256).sampled_rows < len(x)
    with pytest.raises(gt.UnhealthyTrainingError) as info:
        gt.fit(model, x, y, batch_size=256, epochs=1, shuffle=False, verbose=0,
               run_dir=tmp_path)
    err = info.value
    assert err.code == "GT307" and err.details["evidence"]["nonfinite_inputs_step"] == 4
    assert "the batch of step 4 (epoch 1)" in str(err) and "np.isfinite" in err.fix
    assert len(err.details["attempts"]) == 1  # no learning-rate "rescue" was tried
