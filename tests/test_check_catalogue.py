"""A catalogue of bad inputs: each ends in a ``GuardtrainError`` with a ``[GT...]`` code
and a ``Fix:`` line, through ``guardtrain.checking.check`` and through ``guardtrain.fit``
(which calls ``check`` first) — never in a raw TensorFlow or NumPy exception.
"""

import re

import numpy as np
import pytest

from guardtrain.core.launch_config import LaunchConfig
from guardtrain.core.errors import GuardtrainError
from tests.helpers import class_data, classifier, conv_classifier

pytestmark = pytest.mark.tf

N = 64
X, Y3 = class_data(N)           # 4 features, classes 0, 1, 2 in turn
RNG = np.random.default_rng(0)  # the other draws of the cases


def _two_inputs():
    import keras

    a, b = keras.Input((4,), name="a"), keras.Input((2,), name="b")
    out = keras.layers.Dense(1)(keras.layers.Concatenate()([a, b]))
    model = keras.Model({"a": a, "b": b}, out)
    model.compile("sgd", "mse")
    return model


def _frozen():
    model = classifier(compile=False)
    model.trainable = False
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def _no_loss():
    model = classifier(compile=False)
    model.compile("adam")
    return model


def _ds(x=X, y=Y3, batch=16):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y) if y is not None else x)
    return ds.batch(batch) if batch else ds


def _parquet(tmp_path, **kw):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from guardtrain.data import parquet

    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "d": X[:, 3],
                             "name": ["n"] * N, "y": Y3}), tmp_path / "t.parquet")
    return parquet(tmp_path, **kw)


def _raise(ctx):
    raise RuntimeError("bucket not found")


# (id, code, build) where build(tmp_path) -> (model, x, y, kwargs)
CASES = [
    ("conv-fed-flat-images", "GT201",
     lambda t: (conv_classifier(), RNG.random((N, 784), dtype=np.float32), np.arange(N) % 10, {})),
    ("wrong-feature-count", "GT201", lambda t: (classifier(), X[:, :3], Y3, {})),
    ("channels-first-images", "GT202",
     lambda t: (conv_classifier(), RNG.random((N, 1, 28, 28), dtype=np.float32),
                np.arange(N) % 10, {})),
    ("x-y-count-mismatch", "GT203", lambda t: (classifier(), X, Y3[:50], {})),
    ("dict-missing-input", "GT204", lambda t: (_two_inputs(), {"a": X}, RNG.random(N), {})),
    ("one-array-for-two-inputs", "GT204", lambda t: (_two_inputs(), X, RNG.random(N), {})),
    ("one-based-labels", "GT205", lambda t: (classifier(units=10), X, np.arange(N) % 10 + 1, {})),
    ("labels-above-width", "GT205", lambda t: (classifier(), X, np.arange(N) % 7, {})),
    ("negative-labels", "GT205", lambda t: (classifier(), X, Y3 - 1, {})),
    ("one-hot-with-sparse-loss", "GT206", lambda t: (classifier(), X, np.eye(3)[Y3], {})),
    ("ids-with-categorical-loss", "GT207",
     lambda t: (classifier(loss="categorical_crossentropy"), X, Y3, {})),
    ("one-hot-width-mismatch", "GT208",
     lambda t: (classifier(loss="categorical_crossentropy"), X, np.eye(5)[np.arange(N) % 5], {})),
    ("binary-labels-0-1-2", "GT209",
     lambda t: (classifier(units=1, activation="sigmoid", loss="binary_crossentropy"), X, Y3, {})),
    ("binary-loss-wide-output", "GT210",
     lambda t: (classifier(units=10, activation="sigmoid", loss="binary_crossentropy"), X,
                np.arange(N) % 2, {})),
    ("one-unit-softmax", "GT211",
     lambda t: (classifier(units=1, activation="softmax", loss="binary_crossentropy"), X,
                np.arange(N) % 2, {})),
    ("softmax-with-from-logits", "GT212",
     lambda t: (classifier(loss=__import__("keras").losses.SparseCategoricalCrossentropy(
         from_logits=True)), X, Y3, {})),
    ("continuous-ids-sparse-loss", "GT214", lambda t: (classifier(), X, RNG.random(N) * 2, {})),
    ("single-class", "GT215", lambda t: (classifier(), X, np.ones(N, int), {})),
    ("regression-labels-broadcast", "GT216",
     lambda t: (classifier(units=1, activation="linear", loss="mse"), X, RNG.random((N, 3)), {})),
    ("string-features", "GT220",
     lambda t: (classifier(), np.array([["a", "b", "c", "d"]] * N), Y3, {})),
    ("object-number-features", "GT220", lambda t: (classifier(), X.astype(object), Y3, {})),
    ("string-labels", "GT223",
     lambda t: (classifier(), X, np.array(["cat", "dog", "eel"] * 21 + ["cat"]), {})),
    ("nan-features", "GT230", lambda t: (classifier(), np.where(X > 0.9, np.nan, X), Y3, {})),
    ("inf-labels", "GT231",
     lambda t: (classifier(units=1, activation="linear", loss="mse"), X,
                np.r_[RNG.random(N - 1), np.inf], {})),
    ("all-constant-features", "GT232", lambda t: (classifier(), np.zeros((N, 4)), Y3, {})),
    ("fewer-samples-than-replicas", "GT240",
     lambda t: (classifier(), X[:1], Y3[:1], {"launch": LaunchConfig(cpu_replicas=2)})),
    ("batch-not-divisible", "GT241",
     lambda t: (classifier(), X, Y3, {"batch_size": 15, "launch": LaunchConfig(cpu_replicas=2)})),
    ("zero-per-replica", "GT243",
     lambda t: (classifier(), X, Y3, {"batch_size": 1, "launch": LaunchConfig(cpu_replicas=2)})),
    ("batch-size-zero", "GT244", lambda t: (classifier(), X, Y3, {"batch_size": 0})),
    ("not-compiled", "GT250", lambda t: (classifier(compile=False), X, Y3, {})),
    ("all-frozen", "GT251", lambda t: (_frozen(), X, Y3, {})),
    ("builder-returns-none", "GT253", lambda t: (lambda: None, X, Y3, {})),
    ("model-is-a-path", "GT253", lambda t: ("model.keras", X, Y3, {})),
    ("compiled-without-loss", "GT254", lambda t: (_no_loss(), X, Y3, {})),
    ("dataset-object-to-workers", "GT260",
     lambda t: (classifier(), _ds(), None, {"launch": LaunchConfig(workers=2)})),
    ("parquet-missing-column", "GT262",
     lambda t: (classifier(), _parquet(t, features=["a", "b", "c", "e"], label="y"), None, {})),
    ("parquet-string-column", "GT263",
     lambda t: (classifier(), _parquet(t, features=["a", "b", "c", "name"], label="y"), None, {})),
    ("parquet-no-files", "GT270",
     lambda t: (classifier(), __import__("guardtrain.data").data.parquet(
         t / "missing-*.parquet", features=["a"], label="y"), None, {})),
    ("dataset-fn-raises", "GT270", lambda t: (classifier(), _raise, None, {})),
    ("unbatched-dataset", "GT271", lambda t: (classifier(), _ds(batch=None), None, {})),
    ("arrays-without-y", "GT272", lambda t: (classifier(), X, None, {})),
    ("y-with-dataset", "GT273", lambda t: (classifier(), _ds(), Y3, {})),
    ("empty-arrays", "GT274", lambda t: (classifier(), X[:0], Y3[:0], {})),
]


def _assert_guarded(err, code):
    text = str(err)
    assert isinstance(err, GuardtrainError), type(err)
    assert re.search(r"\[GT\d{3}\]", text) and "Fix:" in text, text
    assert f"[{code}]" in text, text


def test_catalogue_is_large_and_distinct():
    assert len(CASES) >= 30
    assert len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("name,code,build", CASES, ids=[c[0] for c in CASES])
def test_check_catalogue(name, code, build, tmp_path):
    from guardtrain.checking import check

    model, x, y, kwargs = build(tmp_path)
    with pytest.raises(Exception) as info:
        check(model, x, y, **kwargs)
    _assert_guarded(info.value, code)


@pytest.mark.parametrize("name,code,build", CASES, ids=[c[0] for c in CASES])
def test_fit_catalogue(name, code, build, tmp_path):
    import guardtrain

    if not hasattr(guardtrain, "fit"):
        pytest.skip("guardtrain.fit has not landed yet")
    model, x, y, kwargs = build(tmp_path)
    with pytest.raises(Exception) as info:
        guardtrain.fit(model, x, y, epochs=1, verbose=0, run_dir=tmp_path / "run", **kwargs)
    _assert_guarded(info.value, code)
