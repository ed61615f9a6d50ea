"""A Keras ``TensorBoard`` callback works in gt.fit, with the guard's figures as scalars."""

import glob

import keras
import pytest

import guardtrain as gt
from tests.helpers import blobs

pytestmark = pytest.mark.tf


def test_tensorboard_writes_keras_scalars_and_the_guards_beside_them(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = blobs(512, classes=4, features=8, scale=1.0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(4, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    gt.fit(model, x, y, epochs=2, verbose=0, run_dir=tmp_path / "run",
           callbacks=[keras.callbacks.TensorBoard(str(tmp_path / "tb"))])
    (train,) = glob.glob(str(tmp_path / "tb" / "train"))
    events = EventAccumulator(train)
    events.Reload()
    tags = set(events.Tags()["tensors"])
    assert {"epoch_loss", "epoch_update_ratio", "epoch_grad_norm"} <= tags
    assert len(events.Tensors("epoch_update_ratio")) == 2  # one per epoch
