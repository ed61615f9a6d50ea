"""``gt.fit`` takes every argument of Keras 3's ``model.fit`` with its meaning, or refuses it
with a coded error before anything starts.

Each implemented argument is checked against ``model.fit`` itself on a twin model (same
seed, same initial weights, ``shuffle=False``, guard off): the same per-epoch logs (loss,
val_loss) and the same final weights, within 1e-6. Each refusal is checked for its code
and for an untouched ``run_dir``.
"""

import inspect

import keras
import numpy as np
import pytest

import guardtrain as gt
from guardtrain.core.errors import ConfigError
from guardtrain.core.launch_config import LaunchConfig

pytestmark = pytest.mark.tf

TOL = 1e-6
BATCH = 20
ROWS = 200


def _regression(n=ROWS, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x @ np.array([[1.5], [-2.0], [0.7]]) + 0.3
         + rng.normal(scale=0.1, size=(n, 1))).astype("float32")
    return x, y


def _regressor():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    return model


def _classes(n=ROWS, seed=2):
    # Unbalanced classes (60/30/10 %), so class weights change the training.
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.6, 0.3, 0.1]).astype("int64")
    x = (rng.normal(size=(n, 4)) + y[:, None]).astype("float32")
    return x, y


def _classifier():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _both(build, x, y, tmp_path, *, epochs=3, launch=None, callbacks_extra=(None, None),
          **kwargs):
    """The same call through ``gt.fit`` and ``model.fit`` on twin models; returns the two
    per-epoch logs, the two models and the epochs each callback saw. ``callbacks_extra``:
    one more callback for each (ours, theirs)."""
    kwargs.setdefault("shuffle", False)
    ours, theirs = build(), build()
    theirs.set_weights(ours.get_weights())
    seen_ours, seen_theirs = [], []
    history = keras.callbacks.History()
    extra_ours, extra_theirs = ([c] if c is not None else [] for c in callbacks_extra)
    gt.fit(ours, x, y, batch_size=BATCH, epochs=epochs, verbose=0, guard=False,
           run_dir=tmp_path / "run", launch=launch,
           callbacks=[*extra_ours, history, keras.callbacks.LambdaCallback(
               on_epoch_end=lambda e, logs: seen_ours.append(e))], **kwargs)
    ref = theirs.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0,
                     callbacks=[*extra_theirs, keras.callbacks.LambdaCallback(
                         on_epoch_end=lambda e, logs: seen_theirs.append(e))], **kwargs)
    return history.history, ref.history, ours, theirs, (seen_ours, seen_theirs)


def _assert_same(mine, ref, ours, theirs, tol=TOL):
    assert set(ref) <= set(mine), (sorted(ref), sorted(mine))
    for key, values in ref.items():
        assert len(mine[key]) == len(values), key
        np.testing.assert_allclose(mine[key], values, rtol=0, atol=tol, err_msg=key)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol)


# -- the signature ------------------------------------------------------------------------
def test_every_model_fit_keyword_is_a_fit_keyword_in_its_order():
    keras_params = [p for p in inspect.signature(keras.Model.fit).parameters if p != "self"]
    ours = [p for p in inspect.signature(gt.fit).parameters if p != "args"]
    assert ours[:3] == ["model", "x", "y"]
    assert ours[3:3 + len(keras_params) - 2] == keras_params[2:]
    from guardtrain.core.fit_args import KERAS_FIT_KEYWORDS

    assert list(KERAS_FIT_KEYWORDS) == keras_params[2:]   # model.fit's positional order


def test_an_unknown_keyword_names_the_nearest_one_before_anything_starts(tmp_path):
    x, y = _regression(20)
    # Not even the model is looked at: None would fail the check.
    with pytest.raises(ConfigError) as info:
        gt.fit(None, x, y, validaton_split=0.2, run_dir=tmp_path / "run")
    err = info.value
    assert err.code == "GT112" and "validaton_split" in err.message
    assert "did you mean 'validation_split'?" in err.fix
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError) as info:
        gt.fit(None, x, y, sample_weights=np.ones(20), epoch=2, run_dir=tmp_path / "run")
    assert info.value.code == "GT112"
    assert "'sample_weight'" in info.value.fix and "'epochs'" in info.value.fix


def test_positional_arguments_follow_model_fit_and_are_not_given_twice(tmp_path):
    x, y = _regression(40)
    ours, theirs = _regressor(), _regressor()
    gt.fit(ours, x, y, 20, 2, 0, guard=False, shuffle=False, run_dir=tmp_path / "a")
    theirs.fit(x, y, 20, 2, 0, shuffle=False)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL)
    with pytest.raises(ConfigError) as info:
        gt.fit(ours, x, y, 20, batch_size=10, run_dir=tmp_path / "b")
    assert info.value.code == "GT112" and "batch_size" in info.value.message
    assert not (tmp_path / "b").exists()


# -- implemented: the same training as model.fit -----------------------------------------
def test_validation_split_takes_the_last_rows_before_shuffling(tmp_path):
    x, y = _regression()
    mine, ref, ours, theirs, _ = _both(_regressor, x, y, tmp_path, validation_split=0.25)
    assert "val_loss" in ref
    _assert_same(mine, ref, ours, theirs)


def test_validation_split_is_ignored_with_validation_data(tmp_path):
    x, y = _regression()
    val = _regression(30, seed=5)
    mine, ref, ours, theirs, _ = _both(_regressor, x, y, tmp_path, epochs=2,
                                       validation_split=0.5, validation_data=val)
    _assert_same(mine, ref, ours, theirs)


def test_validation_batch_size_steps_and_freq(tmp_path):
    x, y = _regression()
    mine, ref, ours, theirs, _ = _both(_regressor, x, y, tmp_path, epochs=4,
                                       validation_split=0.25, validation_batch_size=7,
                                       validation_steps=3, validation_freq=2)
    assert len(ref["val_loss"]) == 2            # after epochs 2 and 4 (1-based)
    _assert_same(mine, ref, ours, theirs)


def test_validation_freq_as_a_list_of_epochs(tmp_path):
    x, y = _regression(100)
    val = _regression(30, seed=5)
    mine, ref, ours, theirs, _ = _both(_regressor, x, y, tmp_path, epochs=3,
                                       validation_data=val, validation_freq=[1, 3])
    assert len(ref["val_loss"]) == 2
    _assert_same(mine, ref, ours, theirs)


def test_initial_epoch_numbers_the_epochs_as_model_fit_does(tmp_path):
    x, y = _regression()
    mine, ref, ours, theirs, (seen, want) = _both(_regressor, x, y, tmp_path, epochs=4,
                                                  initial_epoch=2)
    assert seen == want == [2, 3]
    _assert_same(mine, ref, ours, theirs)
    epochs = gt.load_history(tmp_path / "run").column("epoch").to_pylist()
    assert sorted(set(epochs)) == [2, 3]


def test_sample_weight(tmp_path):
    x, y = _regression()
    weights = np.linspace(0.1, 2.0, ROWS)          # float64: cast to floatx, as Keras does
    mine, ref, ours, theirs, _ = _both(_regressor, x, y, tmp_path, epochs=2,
                                       sample_weight=weights, validation_split=0.2)
    _assert_same(mine, ref, ours, theirs)


def test_sample_weight_on_two_replicas_stays_with_its_rows(tmp_path):
    """Each replica gets its half of the batch with its half of the weights: the same
    mean as one replica (model.fit on one replica is the reference; float32 sums in
    another order)."""
    x, y = _regression()
    weights = np.where(np.arange(ROWS) % 2 == 0, 0.0, 3.0)   # half the rows weigh 0
    mine, ref, ours, theirs, _ = _both(_regressor, x, y, tmp_path, epochs=2,
                                       sample_weight=weights,
                                       launch=LaunchConfig(cpu_replicas=2))
    _assert_same(mine, ref, ours, theirs, tol=1e-5)


def test_class_weight(tmp_path):
    x, y = _classes()
    # The accuracy is weighted too (compute_metrics gets the weights, as in Keras).
    mine, ref, ours, theirs, _ = _both(_classifier, x, y, tmp_path, epochs=2,
                                       class_weight={0: 0.5, 2: 4.0})
    assert "accuracy" in ref
    _assert_same(mine, ref, ours, theirs)


def test_class_weight_of_one_hot_labels(tmp_path):
    x, y = _classes(100)
    onehot = np.eye(3, dtype="float32")[y]

    def build():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                      loss=keras.losses.CategoricalCrossentropy(from_logits=True))
        return model

    mine, ref, ours, theirs, _ = _both(build, x, onehot, tmp_path, epochs=2,
                                       class_weight={1: 3.0})
    _assert_same(mine, ref, ours, theirs)


def test_shuffle_batch_permutes_rows_within_each_batch_only(tmp_path):
    """The mean over a batch does not depend on its order: the training is model.fit's
    up to float32 summation order, and every batch holds the rows it holds in order."""
    import tensorflow as tf

    from guardtrain.engine.inputs import make_train_data

    x = np.arange(10, dtype=np.float32)[:, None]
    data = make_train_data(x, np.arange(10), batch_size=4, steps_per_epoch=None,
                           shuffle="batch", strategy=tf.distribute.get_strategy(), seed=3)
    batches = [next(data.iterator)[1].numpy().tolist() for _ in range(9)]
    assert [sorted(b) for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]] * 3
    assert any(b != sorted(b) for b in batches)      # and they are shuffled
    x, y = _regression()
    mine, ref, ours, theirs, _ = _both(_regressor, x, y, tmp_path, epochs=2,
                                       shuffle="batch")
    _assert_same(mine, ref, ours, theirs, tol=1e-5)


def test_sample_weights_are_sharded_with_their_rows():
    """The Ray worker's path without Ray: each worker's rows of x, y and the weights."""
    import tensorflow as tf

    from guardtrain.engine.inputs import make_train_data, shard_inputs, shard_rows

    x = np.arange(10, dtype=np.float32)[:, None]
    y = np.arange(10)
    w = np.arange(10, dtype=np.float32) / 10
    sx, sy = shard_inputs(x, {"out": y}, 1, 2)
    sw = shard_rows({"out": w}, 1, 2)
    assert sy["out"].tolist() == [5, 6, 7, 8, 9]
    np.testing.assert_allclose(sw["out"], [0.5, 0.6, 0.7, 0.8, 0.9])
    data = make_train_data(sx, sy["out"], batch_size=4, steps_per_epoch=2, shuffle=True,
                           strategy=tf.distribute.get_strategy(), presharded=True,
                           sample_weight=sw["out"], seed=1)
    for _ in range(2):
        bx, by, bw = (t.numpy() for t in next(data.iterator))
        np.testing.assert_allclose(bw * 10, by)
        np.testing.assert_allclose(bx[:, 0], by)


def test_batch_size_none_is_model_fit_default(tmp_path):
    x, y = _regression(100)
    ours, theirs = _regressor(), _regressor()
    result = gt.fit(ours, x, y, batch_size=None, guard=False, shuffle=False, verbose=0,
                    run_dir=tmp_path / "run")
    theirs.fit(x, y, batch_size=None, shuffle=False, verbose=0)
    assert result.history.num_rows == 4            # ceil(100 / 32)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL)


# -- refused: a code, and nothing started ------------------------------------------------
def _dataset(n=40):
    import tensorflow as tf

    x, y = _regression(n)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)


def _refusals():
    x, y = _regression(40)
    cx, cy = _classes(40)
    return [
        ("class_weight and sample_weight", "GT114", lambda: (
            (cx, cy), dict(class_weight={0: 2.0}, sample_weight=np.ones(40)))),
        ("validation_split on a dataset", "GT114", lambda: (
            (_dataset(), None), dict(validation_split=0.2))),
        ("sample_weight with a dataset", "GT114", lambda: (
            (_dataset(), None), dict(sample_weight=np.ones(40)))),
        ("class_weight with a dataset", "GT113", lambda: (
            (_dataset(), None), dict(class_weight={0: 2.0}))),
        ("validation_split with a dataset function", "GT113", lambda: (
            (lambda ctx: _dataset(), None), dict(validation_split=0.2, steps_per_epoch=2))),
        ("validation_split leaving no rows", "GT114", lambda: (
            (x[:3], y[:3]), dict(validation_split=0.7))),
        ("sample_weight of another length", "GT114", lambda: (
            (x, y), dict(sample_weight=np.ones(39)))),
        ("class_weight for several outputs", "GT114", lambda: (
            (x, {"a": y, "b": y}), dict(class_weight={0: 2.0}))),
        ("sample_weight as a list on Ray", "GT113", lambda: (
            (x, [y, y]), dict(sample_weight=[np.ones(40), np.ones(40)],
                              launch=LaunchConfig(workers=2)))),
        ("validation_split of 1", "GT108", lambda: ((x, y), dict(validation_split=1.0))),
        ("validation_freq of 0", "GT108", lambda: ((x, y), dict(validation_freq=0))),
        ("class_weight keyed by text", "GT108", lambda: ((cx, cy),
                                                         dict(class_weight={"0": 2.0}))),
        ("initial_epoch below 0", "GT108", lambda: ((x, y), dict(initial_epoch=-1))),
        ("shuffle of another kind", "GT108", lambda: ((x, y), dict(shuffle="rows"))),
    ]


@pytest.mark.parametrize("case", _refusals(), ids=lambda c: c[0])
def test_a_refused_argument_is_coded_and_starts_nothing(case, tmp_path):
    _, code, make = case
    (x, y), kwargs = make()
    with pytest.raises(ConfigError) as info:
        gt.fit(_regressor(), x, y, batch_size=BATCH, verbose=0, run_dir=tmp_path / "run",
               **kwargs)
    err = info.value
    assert err.code == code, err.message
    assert err.fix and "expected" in err.message
    assert not (tmp_path / "run").exists()


# -- JOB files: the same rules -----------------------------------------------------------
@pytest.mark.pure
def test_a_job_file_takes_the_implemented_arguments_and_refuses_the_others():
    from guardtrain.interface.jobfile.schema import check_job

    job = {"model": "m:f", "data": {"npz": "d.npz"}}
    fit_args, _, _, problems = check_job({**job, "validation_split": 0.2,
                                          "validation_freq": [1, 3], "initial_epoch": 1,
                                          "validation_steps": 2, "validation_batch_size": 8,
                                          "class_weight": {0: 1.0, 1: 4.0},
                                          "shuffle": "batch"})
    assert problems == []
    assert fit_args["class_weight"] == {0: 1.0, 1: 4.0} and fit_args["initial_epoch"] == 1
    _, _, _, problems = check_job({**job, "sample_weight": "w"})
    assert [(p.code, p.where) for p in problems] == [("GT113", "sample_weight")]
    parquet = {"model": "m:f", "data": {"parquet": "d/*.parquet", "features": ["a"],
                                        "label": "y"}}
    _, _, _, problems = check_job({**parquet, "class_weight": {0: 2.0},
                                   "validation_split": 0.1})
    assert sorted((p.code, p.where) for p in problems) == [
        ("GT113", "class_weight"), ("GT113", "validation_split")]
    _, _, _, problems = check_job({**job, "validation_split": 1.5})
    assert [(p.code, p.where) for p in problems] == [("GT132", "validation_split")]


def test_backup_and_restore_resumes_at_its_epoch_as_model_fit_does(tmp_path):
    """BackupAndRestore loads its weights in on_train_begin and sets the epoch to start
    at; model.fit starts there, and so does gt.fit."""
    import shutil

    x, y = _regression(100)
    backup = tmp_path / "backup"
    backup.mkdir()
    model = _regressor()
    model.set_weights([w + 0.5 for w in model.get_weights()])
    model.save_weights(str(backup / "latest.weights.h5"))
    (backup / "training_metadata.json").write_text('{"epoch": 2, "batch": 0}')
    shutil.copytree(backup, tmp_path / "backup2")
    mine, ref, ours, theirs, (seen, want) = _both(
        _regressor, x, y, tmp_path, epochs=3,
        callbacks_extra=(keras.callbacks.BackupAndRestore(str(backup)),
                         keras.callbacks.BackupAndRestore(str(tmp_path / "backup2"))))
    assert seen == want == [2]
    _assert_same(mine, ref, ours, theirs)


@pytest.mark.parametrize("replicas", [1, 2])
def test_an_ema_optimizer_ends_on_its_averages_as_model_fit_does(tmp_path, replicas):
    def build():
        model = _regressor()
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05, use_ema=True,
                                                     ema_momentum=0.9), loss="mse")
        return model

    x, y = _regression(100)
    mine, ref, ours, theirs, _ = _both(build, x, y, tmp_path, epochs=2,
                                       launch=LaunchConfig(cpu_replicas=replicas))
    _assert_same(mine, ref, ours, theirs, tol=TOL if replicas == 1 else 1e-5)


def test_a_list_of_labels_for_several_outputs_is_paired_by_position_as_model_fit_does(
        tmp_path):
    """``y=[y_a, y_b]`` for outputs ``a``, ``b`` (per-output losses and loss_weights):
    trained as model.fit trains it, also with a validation split."""
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype("float32")
    y_a = (x[:, :1] * 2).astype("float32")
    y_b = (x[:, 1:2] > 0).astype("float32")

    def build():
        keras.utils.set_random_seed(0)
        inp = keras.Input((4,))
        h = keras.layers.Dense(8, activation="relu")(inp)
        model = keras.Model(inp, [keras.layers.Dense(1, name="a")(h),
                                  keras.layers.Dense(1, activation="sigmoid", name="b")(h)])
        model.compile("adam", ["mse", "binary_crossentropy"], loss_weights=[1.0, 0.5])
        return model

    plain = build()
    history = plain.fit(x, [y_a, y_b], batch_size=32, epochs=2, shuffle=False, verbose=0,
                        validation_split=0.25)
    guarded = build()
    result = gt.fit(guarded, x, [y_a, y_b], batch_size=32, epochs=2, shuffle=False,
                    verbose=0, validation_split=0.25, run_dir=tmp_path)
    for key in ("loss", "a_loss", "b_loss", "val_loss"):
        assert result.logs[key] == pytest.approx(history.history[key][-1], abs=1e-6), key
    for u, v in zip(plain.get_weights(), guarded.get_weights()):
        np.testing.assert_allclose(u, v, atol=1e-6)
