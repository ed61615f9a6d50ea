"""Data and model builders shared by the test modules.

Plain functions rather than fixtures: the parametrized catalogues build their cases at
collection time, and a function is what a ``lambda`` case can call. Keras is imported
inside the model builders, so a pure-tier module can import this one without loading
TensorFlow.
"""

from __future__ import annotations

import numpy as np

from guardtrain.checking.specs import Sample

#: The weights of the linear target of ``regression_data`` (and its bias, 0.3).
TRUE_WEIGHTS = np.array([[1.5], [-2.0], [0.7]])


# -- data ---------------------------------------------------------------------------------
def class_data(n: int = 64, *, features: int = 4, classes: int = 3, seed: int = 0):
    """Uniform float32 features and class ids ``0, 1, ..., classes-1, 0, 1, ...``: every
    class present, in a fixed order, so a label check's message is predictable."""
    rng = np.random.default_rng(seed)
    return rng.random((n, features), dtype=np.float32), np.arange(n) % classes


def regression_data(n: int, *, seed: int = 1, noise: float = 0.1):
    """3 standard-normal features and ``x @ TRUE_WEIGHTS + 0.3`` plus Gaussian noise, both
    float32, shape ``(n, 3)`` and ``(n, 1)``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x @ TRUE_WEIGHTS + 0.3 + rng.normal(scale=noise, size=(n, 1))).astype("float32")
    return x, y


def blobs(n: int, *, classes: int = 4, features: int = 8, scale: float = 3.0, seed: int = 0):
    """``classes`` Gaussian blobs of unit spread around centres drawn at ``scale``:
    float32 features ``(n, features)`` and int64 class ids ``(n,)``. Separable at the
    default scale, so a healthy run's loss falls well below the reference."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=scale, size=(classes, features))
    y = rng.integers(0, classes, size=n)
    x = centres[y] + rng.normal(size=(n, features))
    return x.astype("float32"), y.astype("int64")


def sample(values, where: str = "x", **fields) -> Sample:
    """A ``Sample`` of ``values`` named ``where``; by default the whole data
    (``n_total = len(values)``), so a check reads it as complete."""
    values = np.asarray(values)
    fields.setdefault("n_total", len(values))
    return Sample(where, values, **fields)


# -- models -------------------------------------------------------------------------------
def _sequential(inputs, layers, units, activation, optimizer, loss, compile):
    import keras

    model = keras.Sequential([keras.Input(tuple(inputs)), *layers,
                              keras.layers.Dense(units, activation=activation)])
    if compile:
        model.compile(optimizer, loss)
    return model


def classifier(inputs=(4,), units: int = 3, *, activation="softmax",
               loss="sparse_categorical_crossentropy", compile: bool = True, layers=()):
    """``layers`` then one ``Dense(units, activation)`` on ``keras.Input(inputs)``,
    compiled with Adam and ``loss`` unless ``compile=False``."""
    return _sequential(inputs, layers, units, activation, "adam", loss, compile)


def regressor(inputs=(4,), units: int = 1, *, compile: bool = True):
    """One linear ``Dense(units)`` on ``keras.Input(inputs)``, SGD and MSE."""
    return _sequential(inputs, (), units, None, "sgd", "mse", compile)


def conv_classifier():
    """A 28x28x1 image classifier (Conv2D, Flatten, 10-way softmax): the model that flat
    MNIST-like rows of 784 do not fit."""
    import keras

    return classifier((28, 28, 1), 10, layers=(keras.layers.Conv2D(2, 3),
                                               keras.layers.Flatten()))
