"""A Keras model as plain data, and back: to move it into another strategy's scope or to
another process.

A model's variables belong to the strategy they were made under. To train a model the
user built outside the run's strategy (several replicas in this process, or a Ray worker
whose ``MultiWorkerMirroredStrategy`` must be created before any other TensorFlow op), it
is taken apart into its config, weights and compile config — read outside the new
strategy's scope — and rebuilt inside it (docs/architecture.md, "The data path"). A
zero-argument builder function needs none of this: it is called inside the scope.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np

__all__ = ["PlainModel", "as_plain_model", "lives_in"]


@dataclasses.dataclass(frozen=True)
class PlainModel:
    """A model's config, weights and compile config: picklable, no TensorFlow object.

    Args:
        config: ``keras.saving.serialize_keras_object(model)`` (architecture, no weights).
        weights: ``model.get_weights()``.
        compile_config: ``model.get_compile_config()`` (``None`` when not compiled).

    Example:

    >>> plain = as_plain_model(model)                  # doctest: +SKIP
    >>> with strategy.scope():                         # doctest: +SKIP
    ...     copy = plain.build()
    """

    config: dict[str, Any]
    weights: list[np.ndarray]
    compile_config: dict[str, Any] | None

    def build(self) -> keras.Model:
        """A new model with these weights, compiled as the original; call it inside the
        scope the model must live in. Custom layers must be registered
        (``keras.saving.register_keras_serializable``) where this runs."""
        model = keras.saving.deserialize_keras_object(self.config)
        model.set_weights(self.weights)
        if self.compile_config:
            model.compile_from_config(self.compile_config)
        return model


def as_plain_model(model: keras.Model) -> PlainModel:
    """``model`` as plain data. Call it outside any other strategy's scope: a model made
    under one strategy cannot be read inside another's."""
    return PlainModel(config=keras.saving.serialize_keras_object(model),
                      weights=model.get_weights(),
                      compile_config=model.get_compile_config())


def lives_in(model: keras.Model, strategy) -> bool:
    """True when ``model``'s variables were created in ``strategy``'s scope."""
    first = model.variables[0] if model.variables else None
    value = getattr(first, "value", None)
    return value is not None and strategy.extended.variable_created_in_scope(value)
