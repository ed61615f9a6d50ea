"""The outer loop: epochs of chunks, Keras callbacks, history, and the supervisor's hook.

Reads top to bottom like ``model.fit``::

    on_train_begin
    for each epoch:                       on_epoch_begin
        while steps remain in the epoch:  on_train_batch_begin(first step of the chunk)
            run one chunk (StepRunner)    <- one host sync
            summarise its statistics      (NumPy)
            record the rows               (history)
            supervisor.after_chunk(...)   <- the guard judges, the rescue acts
                                          on_train_batch_end(last step, logs)
        validation (model.evaluate)       on_test_*  (Keras's own)
                                          on_epoch_end(epoch, logs)
    on_train_end

The supervisor owns attempts: it may roll the loop back to a snapshot (``rewind``), which
moves ``step``, ``epoch`` and the position in the epoch back with the weights.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Protocol

import keras
import numpy as np

from guardtrain.records.events import EventLog
from guardtrain.records.history import HistoryWriter
from guardtrain.engine.snapshot import Snapshot
from guardtrain.core.rates import round_rate
from guardtrain.core.stats import median_last, summarise_chunk
from guardtrain.engine.schedules import (inner_optimizer, scaled_schedule_of, unwrap_schedule,
                                         wrap_schedule)
from guardtrain.engine.step import StepRunner

__all__ = ["TrainLoop", "Supervisor", "Unsupervised"]

logger = logging.getLogger(__name__)


class Supervisor(Protocol):
    """Whoever steers the loop (the guard and rescue plug in here). The loop calls these
    and reads these, and nothing else: every supervisor implements all of it
    (docs/architecture.md, "Layout").

    Attributes:
        verdict: the run's verdict so far (``"healthy"``, ``"rescued"``, ``"failed"``, ...).
        attempts: every attempt so far, as dicts (``Result.attempts``).
        attempt: the running attempt's number (the key of the history rows).
        last_label: the verdict label of the last chunk judged, also when judging it
            raised (the rows of that chunk are labelled with it).
    """

    verdict: str
    attempts: list[dict]
    last_label: str | None

    @property
    def attempt(self) -> int: ...

    def begin(self, loop: "TrainLoop") -> None:
        """Before the first chunk (also on a resumed run)."""

    def after_chunk(self, loop: "TrainLoop", stats: dict[str, np.ndarray]) -> str:
        """Judges the chunk, may act on the loop; returns the verdict label for its rows."""

    def end(self, loop: "TrainLoop") -> None:
        """After the last chunk of a run that was not stopped by an error."""

    def state(self) -> dict:
        """What a crash-recovery checkpoint keeps (picklable)."""

    def restore(self, state: dict) -> None:
        """Takes over what ``state()`` returned, on a resumed run."""


class Unsupervised:
    """No guard: every chunk is recorded as ``unjudged``; one attempt, never touched."""

    def __init__(self):
        self.verdict = "healthy"
        self.attempts: list[dict] = []
        self.attempt = 1
        self.last_label: str | None = None

    def begin(self, loop) -> None:
        pass

    def after_chunk(self, loop, stats) -> str:
        self.last_label = "unjudged"
        return self.last_label

    def end(self, loop) -> None:
        pass

    def state(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        pass


@dataclasses.dataclass
class Position:
    """Where the run is: the optimizer step the weights are at, and the epoch."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0


class TrainLoop:
    """Runs epochs of guarded chunks on a model already placed in its strategy's scope.

    Args:
        model: compiled, built, optimizer built, in ``strategy.scope()``.
        strategy: the ``tf.distribute`` strategy.
        data: a ``TrainData`` (iterator and steps per epoch).
        epochs: number of epochs.
        steps_per_loop: steps per ``tf.function`` call (one host sync each).
        callbacks: Keras callbacks.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        validation_data: passed to ``model.evaluate`` at the end of each epoch that
            ``validation_freq`` picks.
        validation_batch_size, validation_steps: ``model.evaluate``'s ``batch_size`` and
            ``steps``, as ``model.fit`` passes them.
        validation_freq: as ``model.fit``: an int N validates after epochs N, 2N, ...
            (1-based), a list after the epochs it names.
        history: where step rows go; events: the events log.
        supervisor: the guard/rescue hook (``Unsupervised`` when the guard is off).
        is_chief: writes files only when True (rank 0 on Ray).
        position: where a resumed run starts (crash recovery; the attempt number comes
            back through ``supervisor.restore``).
        chunk_hooks: called with the loop after every chunk, on every rank (checkpoints,
            the watchdog's beat).
        stats_every: measure the norms on one step in k (the loss on all; see StepRunner).
    """

    def __init__(self, *, model, strategy, data, epochs: int, steps_per_loop: int,
                 callbacks=None, verbose: int = 1, validation_data=None,
                 validation_batch_size: int | None = None,
                 validation_steps: int | None = None, validation_freq=1,
                 history: HistoryWriter, events: EventLog, supervisor: Supervisor | None = None,
                 is_chief: bool = True, position: Position | None = None,
                 chunk_hooks=(), stats_every: int = 1):
        self.model = model
        self.strategy = strategy
        self.data = data
        self.epochs = epochs
        self.steps_per_loop = max(1, int(steps_per_loop))
        self.validation_data = validation_data
        self.validation_batch_size = validation_batch_size
        self.validation_steps = validation_steps
        self.validation_freq = validation_freq
        self.history = history
        self.events = events
        self.supervisor = supervisor or Unsupervised()
        self.is_chief = is_chief
        self.pos = position or Position()
        self.chunk_hooks = list(chunk_hooks)
        with strategy.scope():
            # A schedule's rate cannot be assigned: a rescue scales it (engine/schedules).
            wrap_schedule(model.optimizer)
        self.snapshot = Snapshot(model, strategy)
        self.runner = StepRunner(model, strategy, stats_every=stats_every,
                                 snapshot=self.snapshot)
        self.logs: dict[str, float] = {}
        self.callbacks = keras.callbacks.CallbackList(
            callbacks, add_history=True, add_progbar=verbose != 0, model=model,
            verbose=verbose, epochs=epochs, steps=data.steps_per_epoch)

    # -- what the supervisor may read and change -----------------------------------------
    @property
    def attempt(self) -> int:
        """The running attempt's number; the supervisor's rescue state owns it."""
        return self.supervisor.attempt

    @property
    def learning_rate(self) -> float:
        """The optimizer's rate now (a callback or a schedule may have moved it)."""
        # float() on a distributed variable raises under a strategy: read it through
        # NumPy. The variable is float32 (1e-6 reads back as 9.99999997e-07): round_rate
        # gives the rate back as typed, the same rounding the rescue uses.
        return round_rate(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    @property
    def snapshot_step(self) -> int:
        """The step of the last healthy snapshot: the engine keeps the weights, so it
        keeps their step, and the rescue reads it here."""
        return self.snapshot.step

    def set_learning_rate(self, value: float) -> None:
        """Assigns the rate held in the optimizer's variable, or scales its schedule so
        that it gives ``value`` now: no retrace either way."""
        optimizer = self.model.optimizer
        scaled = scaled_schedule_of(optimizer)
        if scaled is not None:
            scaled.set_rate(float(value), optimizer.iterations)
        else:
            optimizer.learning_rate = float(value)

    @property
    def optimizer_name(self) -> str:
        # Under mixed precision the optimizer is a LossScaleOptimizer around the real one.
        return type(inner_optimizer(self.model.optimizer)).__name__.lower()

    def switch_optimizer(self, make_optimizer) -> None:
        """Installs ``make_optimizer()``, created and built in the strategy's scope (an
        optimizer remembers the strategy it was made under); retraces the step once."""
        previous = self.model.optimizer
        with self.strategy.scope():
            optimizer = make_optimizer()
            optimizer.build(self.model.trainable_variables)
            if scaled_schedule_of(optimizer) is not None:
                # The scaled schedule goes on where it was, not from its warm-up.
                optimizer.iterations.assign(previous.iterations)
        self.model.optimizer = optimizer
        self.snapshot.rebind_optimizer()     # the traced chunk copies into its shadows
        self.runner.rebuild()

    def save_snapshot(self) -> None:
        pos = self.pos
        if pos.step_in_epoch >= self.data.steps_per_epoch:
            # At an epoch's end, the snapshot belongs to the start of the next one: a
            # rewind there must not end (and log) the finished epoch a second time.
            pos = Position(pos.step, pos.epoch + 1, 0)
        self.snapshot.save(step=pos.step, epoch=pos.epoch, step_in_epoch=pos.step_in_epoch)

    def rewind(self, *, with_optimizer: bool = True) -> None:
        """Restores the snapshot and moves the position back to it."""
        self.snapshot.restore(with_optimizer=with_optimizer)
        self.pos = Position(self.snapshot.step, self.snapshot.epoch, self.snapshot.step_in_epoch)

    def run_steps(self, n: int) -> dict[str, np.ndarray]:
        """Runs ``n`` steps outside the record (a probe); returns their statistics."""
        return self._summarise(self.runner.run(self.data.iterator, n))

    def _summarise(self, out) -> dict[str, np.ndarray]:
        """The chunk's columns, with the steps a loss-scale optimizer skipped and whether
        each step's batch was finite: what the guard reads besides the statistics."""
        stats = summarise_chunk(out.replica, out.shared, self.runner.layout, out.measured)
        if out.skipped is not None:
            stats["skipped"] = out.skipped
        if out.inputs_finite is not None:
            stats["inputs_finite"] = out.inputs_finite
        return stats

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> dict[str, float]:
        model, cbs = self.model, self.callbacks
        model.stop_training = False
        cbs.on_train_begin()
        restored = getattr(model, "_initial_epoch", None)
        if restored and self.pos.step == 0:
            # keras.callbacks.BackupAndRestore, in on_train_begin, loaded the weights of
            # its last epoch and set model._initial_epoch: model.fit starts there (its
            # ``self._initial_epoch or initial_epoch``); before the supervisor's first
            # snapshot, which must hold those weights.
            self.pos = Position(0, int(restored), 0)
        self.supervisor.begin(self)
        while self.pos.epoch < self.epochs and not model.stop_training:
            self._run_epoch()
        self.supervisor.end(self)
        unwrap_schedule(model.optimizer)  # unchanged by a rescue: the user's, as given
        if self.epochs > 0 and isinstance(model.optimizer, keras.optimizers.Optimizer):
            # model.fit's last act before on_train_end: an optimizer built with
            # use_ema=True puts its moving averages into the weights (else a no-op).
            with self.strategy.scope():
                model.optimizer.finalize_variable_values(model.trainable_weights)
        cbs.on_train_end(self.logs)
        if self.is_chief:
            self.history.flush()
        return self.logs

    def _run_epoch(self) -> None:
        model, cbs, pos = self.model, self.callbacks, self.pos
        epoch = pos.epoch
        model.reset_metrics()
        cbs.on_epoch_begin(epoch)
        spe = self.data.steps_per_epoch
        while self.pos.step_in_epoch < spe and not model.stop_training:
            self._run_chunk(min(self.steps_per_loop, spe - self.pos.step_in_epoch))
            if self.pos.epoch != epoch:      # a rewind crossed back into an earlier epoch
                return
        logs = dict(self.logs)
        if self.validation_data is not None and self._validates_after(epoch):
            logs.update(self._validate())
        cbs.on_epoch_end(epoch, logs)
        self.logs = logs
        self.events.add("epoch", epoch=epoch, step=self.pos.step, attempt=self.attempt,
                        logs=logs)
        if self.is_chief:
            self.history.flush_if_due()   # run end and errors always flush
        self.pos = dataclasses.replace(self.pos, epoch=epoch + 1, step_in_epoch=0)

    def _run_chunk(self, n: int) -> None:
        pos, cbs = self.pos, self.callbacks
        cbs.on_train_batch_begin(pos.step_in_epoch)
        out = self.runner.run(self.data.iterator, n)   # the host sync
        stats = self._summarise(out)
        steps = np.arange(pos.step + 1, pos.step + n + 1)
        if "skipped" in stats and stats["skipped"].any():
            # Expected under mixed precision, and counted: the optimizer skipped these
            # overflowing steps and lowered its loss scale.
            self.events.add("loss_scale_skips", step=int(steps[-1]), attempt=self.attempt,
                            skipped=int(stats["skipped"].sum()),
                            steps=[int(t) for t in steps[stats["skipped"]]])
        opt, attempt = self.optimizer_name, self.attempt
        self.pos = Position(pos.step + n, pos.epoch, pos.step_in_epoch + n)
        # The metrics were read inside the chunk, on every rank: a sync-on-read variable
        # read outside it would be a collective only some ranks join.
        logs = dict(out.metrics)
        measured = stats["measured"]
        logs["update_ratio"] = float(median_last(stats["update_ratio"][measured]))
        logs["grad_norm"] = float(median_last(stats["grad_norm_mean"][measured]))
        stats["step"] = steps
        stats["learning_rate"] = out.learning_rate
        # Rows first, so that the chunk a verdict is about is in the history even when the
        # verdict ends the run; labelled once judged.
        self.history.append(attempt=attempt, steps=steps, epoch=pos.epoch, stats=stats,
                            learning_rate=out.learning_rate, optimizer=opt, verdict="unjudged")
        verdict = "unjudged"
        try:
            verdict = self.supervisor.after_chunk(self, stats)
        finally:
            self.history.relabel_last(attempt, n, self.supervisor.last_label or verdict)
        self.logs = logs
        cbs.on_train_batch_end(pos.step_in_epoch + n - 1, logs)
        for hook in self.chunk_hooks:
            hook(self)

    def _validates_after(self, epoch: int) -> bool:
        """Keras's ``_should_eval``: ``validation_freq`` counts epochs from 1."""
        freq = self.validation_freq
        if isinstance(freq, (list, tuple)):
            return epoch + 1 in {int(f) for f in freq}
        return (epoch + 1) % int(freq) == 0

    def _validate(self) -> dict[str, float]:
        val = self.validation_data
        if isinstance(val, tuple):
            x, y = val[0], val[1]
            sw = val[2] if len(val) > 2 else None
        else:
            x, y, sw = val, None, None
        if getattr(self.strategy.extended, "_num_workers", 1) > 1:
            out = self._validate_locally(x, y, sw)
        else:
            out = self.model.evaluate(x, y, sample_weight=sw,
                                      batch_size=self.validation_batch_size,
                                      steps=self.validation_steps,
                                      callbacks=self.callbacks, verbose=0, return_dict=True)
        return {f"val_{k}": float(v) for k, v in out.items()}

    def _validate_locally(self, x, y, sw) -> dict:
        """Validation on several workers: every rank evaluates the whole set on a local copy.

        Keras 3's ``evaluate`` under ``MultiWorkerMirroredStrategy`` hands a PerReplica
        batch to the model and fails; a copy outside the strategy, with the current
        weights, gives every rank the same exact figures and needs no collective.
        """
        if getattr(self, "_val_model", None) is None:
            self._val_model = keras.models.clone_model(self.model)
            self._val_model.compile_from_config(self.model.get_compile_config())
        self._val_model.set_weights(self.model.get_weights())
        return self._val_model.evaluate(x, y, sample_weight=sw,
                                        batch_size=self.validation_batch_size,
                                        steps=self.validation_steps, verbose=0,
                                        return_dict=True)

