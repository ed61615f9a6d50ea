"""What gt.fit cannot do exactly as model.fit does is refused before anything starts:
positional multi-inputs (GT276) and a model's own train_step (GT255)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import guardtrain as gt
from guardtrain.core.errors import InputSpecError

pytestmark = pytest.mark.tf


def _two_inputs():
    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    model = keras.Model([a, b], keras.layers.Dense(1)(keras.layers.Concatenate()([a, b])))
    model.compile(optimizer="sgd", loss="mse")
    return model


def _data(rows=64):
    rng = np.random.default_rng(0)
    return (rng.normal(size=(rows, 4)).astype("float32"),
            rng.normal(size=(rows, 3)).astype("float32"),
            rng.normal(size=(rows, 1)).astype("float32"))


@pytest.mark.parametrize("pack", [tuple, list])
def test_positional_multi_inputs_are_refused_before_anything_starts(pack, tmp_path):
    xa, xb, y = _data()
    with pytest.raises(InputSpecError) as info:
        gt.fit(_two_inputs(), pack((xa, xb)), y, verbose=0, run_dir=tmp_path / "run")
    assert [p.code for p in info.value.problems] == ["GT276"]
    assert "'a': x[0]" in info.value.problems[0].fix
    assert not (tmp_path / "run").exists()


def test_the_dict_the_refusal_names_trains(tmp_path):
    xa, xb, y = _data()
    result = gt.fit(_two_inputs(), {"a": xa, "b": xb}, y, batch_size=16, verbose=0,
                    run_dir=tmp_path / "run")
    assert result.history.num_rows == 4           # 64 rows / 16: every row read


class _OwnStep(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)

    def call(self, x):
        return self.dense(x)

    def train_step(self, data):
        return super().train_step(data)


class _NoOwnStep(keras.Model):     # subclassed, Keras's own train_step
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)

    def call(self, x):
        return self.dense(x)


def test_a_model_with_its_own_train_step_is_refused(tmp_path):
    model = _OwnStep()
    model.build((None, 4))
    model.compile(optimizer="sgd", loss="mse")
    xa, _, y = _data()
    with pytest.raises(InputSpecError) as info:
        gt.fit(model, xa, y, verbose=0, run_dir=tmp_path / "run")
    assert [p.code for p in info.value.problems] == ["GT255"]
    assert "_OwnStep overrides train_step" in info.value.problems[0].found


def test_a_subclassed_model_without_its_own_train_step_trains(tmp_path):
    model = _NoOwnStep()
    model.build((None, 4))
    model.compile(optimizer="sgd", loss="mse")
    xa, _, y = _data()
    result = gt.fit(model, xa, y, batch_size=16, verbose=0, run_dir=tmp_path / "run")
    assert result.history.num_rows == 4
