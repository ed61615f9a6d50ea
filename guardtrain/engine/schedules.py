"""A rescue scales a learning-rate schedule instead of replacing it: ``ScaledSchedule``.

A Keras optimizer built with a ``LearningRateSchedule`` has no rate to assign (its setter
raises). The loop wraps such a schedule, once, before the first step, in
``ScaledSchedule(schedule)``: the user's schedule times a multiplier held in a variable,
1.0 until a rescue moves it, so the rates are the user's to the bit. A rescue's "rate r"
then sets the multiplier to r / schedule(now): no retrace, the warm-up and decay keep
their shape, and the report shows the multiplier (docs/architecture.md, "Rescue"). At the
end of the run an unchanged wrapper is taken off again, so the model saves as the user
built it.
"""

from __future__ import annotations

import keras

__all__ = ["ScaledSchedule", "wrap_schedule", "unwrap_schedule", "scaled_schedule_of",
           "inner_optimizer"]


def inner_optimizer(optimizer):
    """The optimizer that holds the rate: the one a ``LossScaleOptimizer`` wraps (mixed
    precision), or ``optimizer`` itself."""
    return getattr(optimizer, "inner_optimizer", optimizer)


@keras.saving.register_keras_serializable(package="guardtrain")
class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``schedule(step) * multiplier``; the multiplier is a non-trainable variable.

    Args:
        schedule: the user's ``LearningRateSchedule``.
        multiplier: the starting multiplier (1.0: the user's rates exactly).
    """

    def __init__(self, schedule, multiplier: float = 1.0):
        self.schedule = schedule
        self.multiplier = keras.Variable(float(multiplier), trainable=False,
                                         dtype="float32", name="lr_multiplier")

    def __call__(self, step):
        return keras.ops.multiply(keras.ops.cast(self.schedule(step), "float32"),
                                  self.multiplier)

    @property
    def factor(self) -> float:
        return float(keras.ops.convert_to_numpy(self.multiplier))

    def set_rate(self, rate: float, step) -> float:
        """Sets the multiplier so that the rate at ``step`` is ``rate``; returns it."""
        base = float(keras.ops.convert_to_numpy(self.schedule(step)))
        factor = float(rate) / base if base > 0 else 1.0
        self.multiplier.assign(factor)
        return factor

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule),
                "multiplier": self.factor}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)


def scaled_schedule_of(optimizer) -> ScaledSchedule | None:
    """The optimizer's ``ScaledSchedule`` (inside a LossScaleOptimizer too), or None."""
    rate = getattr(inner_optimizer(optimizer), "_learning_rate", None)
    return rate if isinstance(rate, ScaledSchedule) else None


def wrap_schedule(optimizer) -> ScaledSchedule | None:
    """Wraps a schedule the optimizer runs on (call in the strategy's scope, before the
    first step is traced); returns the wrapper, or None for a constant rate."""
    inner = inner_optimizer(optimizer)
    rate = getattr(inner, "_learning_rate", None)
    if isinstance(rate, ScaledSchedule) or not isinstance(
            rate, keras.optimizers.schedules.LearningRateSchedule):
        return scaled_schedule_of(optimizer)
    wrapped = ScaledSchedule(rate)
    inner.learning_rate = wrapped
    return wrapped


def unwrap_schedule(optimizer) -> None:
    """Gives the user's schedule back when no rescue moved the multiplier."""
    wrapped = scaled_schedule_of(optimizer)
    if wrapped is not None and wrapped.factor == 1.0:
        inner_optimizer(optimizer).learning_rate = wrapped.schedule
