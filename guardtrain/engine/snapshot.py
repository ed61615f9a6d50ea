"""The last healthy state, kept on the device, and the way back to it.

A snapshot is a shadow copy of every model variable (trainable or not: batch-norm
statistics must roll back too) and of the optimizer's variables, held in variables made
in the strategy's scope, so saving and restoring are traced assignments that never leave
the device (against 3–5 ms for ``get_weights``/``set_weights``). The optimizer part is
optional: an optimizer switch restores the weights and starts the new optimizer fresh.

Saving is deferred: ``save`` marks the current state, and the copy runs at the start of
the next chunk, inside its call (``StepRunner`` asks ``take_pending``). A call of its own
cost ~0.1-0.3 ms, 2-6 % of a chunk of small MLP steps, on every healthy chunk. Nothing
changes the weights between chunks but what a snapshot read flushes first (``restore``,
``to_numpy``, an optimizer switch), or a Keras callback — and the state a callback leaves
is the one the next chunk starts from, so that is the one to keep.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["Snapshot"]


def _values(variables):
    return [v.value if hasattr(v, "value") and not isinstance(v, tf.Variable) else v
            for v in variables]


class Snapshot:
    """Shadow copies of a model's and its optimizer's variables.

    Args:
        model: the Keras model (built, with a built optimizer).
        strategy: the strategy whose scope holds the model.
    """

    def __init__(self, model, strategy):
        self.model = model
        self.strategy = strategy
        self.step = None          # optimizer step the snapshot holds
        self.epoch = None
        self.step_in_epoch = None
        self._weights = self._shadow(model.variables)
        self._bind_optimizer()

    def _shadow(self, variables):
        with self.strategy.scope():
            return [tf.Variable(v.value, trainable=False) for v in variables]

    def _bind_optimizer(self) -> None:
        """(Re)creates the optimizer shadows; call after an optimizer switch."""
        opt_vars = list(self.model.optimizer.variables)
        self._opt = self._shadow(opt_vars)
        self._src = _values(self.model.variables)
        self._osrc = _values(opt_vars)

        @tf.function
        def restore(with_optimizer):
            for s, v in zip(self._weights, self._src):
                v.assign(s)
            if with_optimizer:
                for s, v in zip(self._opt, self._osrc):
                    v.assign(s)

        self._save = tf.function(self.copy)
        self._restore_fn = restore
        self._has_data = False
        self._pending = False

    def copy(self) -> None:
        """The saving assignments, traced into whichever function calls this."""
        for s, v in zip(self._weights + self._opt, self._src + self._osrc):
            s.assign(v)

    def rebind_optimizer(self) -> None:
        """Follows a new optimizer (its state is fresh; weights shadows are kept)."""
        self.flush()
        weights_saved = self._has_data
        self._bind_optimizer()
        self._has_data = weights_saved

    def save(self, *, step: int, epoch: int, step_in_epoch: int) -> None:
        """Marks the current state as the last healthy one (copied before it can change)."""
        self._pending = True
        self._has_data = True
        self.step, self.epoch, self.step_in_epoch = step, epoch, step_in_epoch

    def take_pending(self) -> bool:
        """True once after ``save``: the caller's next call copies (``copy``) first."""
        pending, self._pending = self._pending, False
        return pending

    def flush(self) -> None:
        """Makes a deferred save now (before the snapshot is read or restored)."""
        if self.take_pending():
            self._save()

    @property
    def ready(self) -> bool:
        return self._has_data

    def to_numpy(self) -> dict:
        """The saved values and where they were taken (for a crash-recovery checkpoint)."""
        self.flush()
        return {"weights": [v.numpy() for v in self._weights],
                "optimizer": [v.numpy() for v in self._opt],
                "where": (self.step, self.epoch, self.step_in_epoch), "ready": self._has_data}

    def from_numpy(self, saved: dict) -> None:
        self._pending = False
        for v, value in zip(self._weights, saved["weights"]):
            v.assign(value)
        for v, value in zip(self._opt, saved["optimizer"]):
            v.assign(value)
        self.step, self.epoch, self.step_in_epoch = saved["where"]
        self._has_data = saved["ready"]

    def restore(self, *, with_optimizer: bool = True) -> None:
        """Puts the saved weights back (and the optimizer state, unless switching)."""
        self.flush()
        self._restore_fn(tf.constant(with_optimizer))
