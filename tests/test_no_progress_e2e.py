"""A run that learns nothing from its inputs is never called healthy (real training).

Labels drawn independently of the inputs carry no signal: the best any model can do is
the constant prediction, whose loss is the entropy of the class frequencies. The same
model on separable blobs learns, and is left alone.
"""

import json
import math

import keras
import numpy as np
import pytest

import guardtrain as gt
from tests.helpers import blobs

pytestmark = pytest.mark.tf

N, FEATURES, CLASSES = 1024, 8, 4


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(CLASSES, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def _shuffled_labels():
    x, _ = blobs(N, classes=CLASSES, features=FEATURES)
    y = np.random.default_rng(1).integers(0, CLASSES, size=N)  # independent of x
    return x, y


def _events(run_dir, kind):
    with open(run_dir / "events.jsonl") as f:
        return [e for e in map(json.loads, f) if e.get("event") == kind]


def test_the_check_reports_the_entropy_of_the_labels_as_the_reference():
    x, y = _shuffled_labels()
    report = gt.check(_model(), x, y)
    p = np.bincount(y, minlength=CLASSES) / N
    assert report.reference.loss == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-9)
    assert report.reference.how == "constant" and "all 1,024 labels" in report.reference.detail
    assert "reference loss" in str(report)


def test_a_short_run_that_ends_at_the_reference_is_failed_not_healthy(tmp_path):
    x, y = _shuffled_labels()
    result = gt.fit(_model(), x, y, epochs=2, verbose=0, run_dir=tmp_path)
    assert result.verdict == "failed"
    (verdict,) = _events(tmp_path, "verdict")
    assert verdict["kind"] == "NO_PROGRESS" and verdict["evidence"]["reference_loss"] > 1.3
    assert result.attempts[-1]["end_verdict"] == "NO_PROGRESS"
    assert "why: NO_PROGRESS at the end" in result.summary()
    assert "only 64 steps ran, fewer than the 350" in verdict["reason"]  # said plainly
    (guard,) = _events(tmp_path, "guard")
    assert guard["reference"]["how"] == "constant"


def test_the_same_model_on_separable_data_is_healthy(tmp_path):
    x, y = blobs(N, classes=CLASSES, features=FEATURES)
    result = gt.fit(_model(), x, y, epochs=2, verbose=0, run_dir=tmp_path)
    assert result.verdict == "healthy"
    assert not _events(tmp_path, "verdict")
    assert result.history.column("loss").to_pylist()[-1] < 0.75 * math.log(CLASSES)


def test_unlearnable_labels_are_judged_no_progress_and_end_failed_never_rescued(tmp_path):
    """With validation data the end is certain: a model can memorise labels without
    signal (its training loss falls below the reference), never predict new ones."""
    x, y = _shuffled_labels()
    x_val, _ = blobs(256, classes=CLASSES, features=FEATURES, seed=5)
    y_val = np.random.default_rng(2).integers(0, CLASSES, size=256)
    guard = gt.GuardConfig(warmup_steps=10, window_steps=20)
    result = gt.fit(_model(), x, y, epochs=4, verbose=0, run_dir=tmp_path, guard=guard,
                    validation_data=(x_val, y_val))
    verdicts = _events(tmp_path, "verdict")
    assert verdicts and all(e["kind"] == "NO_PROGRESS" for e in verdicts)
    assert result.verdict == "failed"
    assert result.attempts[-1]["end_verdict"] == "NO_PROGRESS"


def test_a_validation_loss_below_the_reference_vouches_for_a_run_whose_training_loss_is_at_it(
        tmp_path):
    """Heavy dropout or regularisation can hold the training loss at the reference while
    the model learns: the end-of-run judgement then reads the validation loss too."""
    from guardtrain.core.guard import Baseline, GuardState
    from guardtrain.core.reference import Reference
    from guardtrain.engine.supervisor import GuardSupervisor
    from guardtrain.records.events import EventLog

    ref = Reference(loss=math.log(4), how="constant", detail="test", rows=100)
    sup = GuardSupervisor(events=EventLog(tmp_path, enabled=False), reference=ref, verbose=0)
    sup.gstate = GuardState(window={"loss": np.full(40, 0.995 * ref.loss)},
                            baseline=Baseline(reference=ref.loss))
    assert sup._ended_at_reference(100, {}).kind == "NO_PROGRESS"
    assert sup._ended_at_reference(100, {"val_loss": 0.999 * ref.loss}).kind == "NO_PROGRESS"
    assert sup._ended_at_reference(100, {"val_loss": 0.7 * ref.loss}) is None
    sup.gstate = GuardState(window={"loss": np.full(40, 0.9 * ref.loss)},
                            baseline=Baseline(reference=ref.loss))
    assert sup._ended_at_reference(100, {}) is None


@pytest.mark.parametrize("case", ["sum-reduction", "masked", "many-classes-sampled"])
def test_no_reference_where_a_constant_model_could_not_reach_it(case):
    """A reference too low would call healthy runs NO_PROGRESS: none is computed, and the
    check's notes say why."""
    if case == "sum-reduction":
        x, y = _shuffled_labels()
        model = _model()
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(reduction="sum"))
        want = "reduction='sum'"
    elif case == "masked":
        x = np.random.default_rng(0).integers(0, 50, size=(256, 12))
        y = np.random.default_rng(1).integers(0, 50, size=(256, 12))
        model = keras.Sequential([keras.Input((12,)),
                                  keras.layers.Embedding(50, 8, mask_zero=True),
                                  keras.layers.Dense(50, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        want = "masks positions"
    else:
        # One-hot labels 1000 wide: the check reads 10,000 of their 12,000 rows.
        n, k = 12_000, 1000
        x = np.random.default_rng(0).normal(size=(n, 30)).astype("float32")
        y = np.eye(k, dtype="uint8")[np.random.default_rng(1).integers(0, k, size=n)]
        model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(k, activation="softmax")])
        model.compile("adam", "categorical_crossentropy")
        want = "1000 classes and a sample"
    report = gt.check(model, x, y)
    assert report.reference is None
    assert any(want in note for note in report.notes), report.notes


def test_validation_split_refuses_labels_of_another_length(tmp_path):
    x, y = _shuffled_labels()
    with pytest.raises(gt.ConfigError) as info:
        gt.fit(_model(), x, np.concatenate([y, y[:10]]), validation_split=0.2, verbose=0,
               run_dir=tmp_path / "run")
    assert info.value.code == "GT114" and "y has 1034" in str(info.value)
    assert not (tmp_path / "run").exists()
