"""One session for both runners: the model on its strategy, the records, the guarded loop.

The in-process runner (``gt.fit`` with ``workers=0``, ``run_in_process`` below) and each
Ray worker (``guardtrain.ray.runner``) set their run up through ``open_session``, so model
placement, the input pipeline, the supervisor, the start event and the loop are built in
one place (docs/architecture.md, "The data path"). Each runner adds only its own part:
the Ray worker its checkpoint hook, watchdog and rank handling; the in-process runner the
hand-back of the final weights to the user's model.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras

from guardtrain.core.errors import ConfigError, GuardtrainError
from guardtrain.engine.shipping import PlainModel, as_plain_model, lives_in
from guardtrain.records.atomic import write_atomic
from guardtrain.records.events import EventLog
from guardtrain.records.history import HistoryWriter, load_history
from guardtrain.records.result import Result
from guardtrain.records.run_dir import new_run_dir

__all__ = ["Session", "open_session", "place_model", "run_in_process", "make_supervisor",
           "stats_every_of", "DEFAULT_STEPS_PER_LOOP"]

logger = logging.getLogger(__name__)

DEFAULT_STEPS_PER_LOOP = 50


def place_model(model, strategy) -> keras.Model:
    """Returns a model whose variables live in ``strategy``'s scope, optimizer built.

    Args:
        model: a compiled ``keras.Model``, a ``PlainModel`` (rebuilt inside the scope), or
            a zero-argument builder (called inside the scope). An instance made outside a
            multi-replica scope is rebuilt there from its config, weights and compile
            config (``guardtrain.engine.shipping``).

    Raises:
        ConfigError: GT104 a builder that returns no model, GT105 a model without an
            optimizer, GT106 an unbuilt model.
    """
    import tensorflow as tf

    if isinstance(model, keras.Model) and not lives_in(model, strategy) and (
            strategy is not tf.distribute.get_strategy()
            or strategy.num_replicas_in_sync > 1):
        model = as_plain_model(model)   # read outside the new scope
    with strategy.scope():
        if isinstance(model, PlainModel):
            model = model.build()
        elif callable(model) and not isinstance(model, keras.Model):
            model = model()
            if not isinstance(model, keras.Model):
                raise ConfigError(
                    f"fit(model=fn): expected fn() to return a keras.Model, found "
                    f"{type(model).__name__}", code="GT104",
                    fix="make the builder return the compiled model")
        if model.optimizer is None:
            raise ConfigError("fit(model): expected a compiled model, found no optimizer",
                              code="GT105", fix="call model.compile(optimizer=..., loss=...) first")
        if not model.built:
            raise ConfigError("fit(model): expected a built model, found an unbuilt one",
                              code="GT106", fix="give the model an Input layer or call model.build(shape)")
        # Built now, inside the scope: with 2+ replicas, an optimizer left to build lazily
        # in the first traced step fails.
        model.optimizer.build(model.trainable_variables)
    return model


@dataclasses.dataclass
class Session:
    """A run set up and ready to ``loop.run()``.

    Args:
        model: the model placed in ``strategy``'s scope (not the user's instance).
        strategy: the ``tf.distribute`` strategy the run uses.
        data: the ``TrainData`` (iterator, steps per epoch, samples).
        history: the step rows; events: the events log; supervisor: the guard/rescue hook.
        loop: the ``TrainLoop`` over all of them.
        run_dir, run_id: where the records go.
    """

    model: keras.Model
    strategy: Any
    data: Any
    history: HistoryWriter
    events: EventLog
    supervisor: Any
    loop: Any
    run_dir: Path
    run_id: str


def open_session(model, x, y, *, strategy, run_dir: Path, run_id: str, batch_size: int,
                 epochs: int, steps_per_epoch: int | None, steps_per_loop: int | None,
                 validation_data, callbacks, shuffle: bool, guard, rescue, verbose: int,
                 writes: bool = True, presharded: bool = False, start: bool = True,
                 start_fields: Mapping[str, Any] | None = None,
                 chunk_hooks: Sequence = ()) -> Session:
    """Places the model, builds the input pipeline, the records, the supervisor and the
    loop, and emits the ``start`` event.

    Args:
        model: what ``place_model`` takes.
        x, y: the training inputs (``make_train_data``); with ``presharded``, this
            worker's shard only.
        strategy: the strategy to run on (already built: on a Ray worker it must come
            before any other TensorFlow op).
        run_dir, run_id: the run directory (created by the caller) and the run's id.
        writes: this process writes the run directory (rank 0 on Ray, when it can).
        presharded: ``x``/``y`` are already this worker's rows (see ``make_train_data``).
        start: emit the ``start`` event; ``False`` when resuming a run that has one.
        start_fields: more fields for the ``start`` event (e.g. the worker count).
        chunk_hooks: called with the loop after every chunk, on every rank.
        The others: as ``gt.fit``'s arguments.
    """
    from guardtrain.engine.inputs import make_train_data
    from guardtrain.engine.loop import TrainLoop

    model = place_model(model, strategy)
    data = make_train_data(x, y, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
                           shuffle=shuffle, strategy=strategy, presharded=presharded)
    events = EventLog(run_dir, enabled=writes)
    history = HistoryWriter(run_dir, run_id)
    supervisor = make_supervisor(guard, rescue, events, verbose)
    if start:
        events.add("start", run_id=run_id, replicas=strategy.num_replicas_in_sync,
                   strategy=type(strategy).__name__, **dict(start_fields or {}),
                   steps_per_epoch=data.steps_per_epoch, epochs=epochs)
    loop = TrainLoop(model=model, strategy=strategy, data=data, epochs=epochs,
                     steps_per_loop=steps_per_loop or min(DEFAULT_STEPS_PER_LOOP,
                                                          data.steps_per_epoch),
                     callbacks=callbacks, verbose=verbose, validation_data=validation_data,
                     validation_batch_size=batch_size, history=history, events=events,
                     supervisor=supervisor, is_chief=writes, chunk_hooks=chunk_hooks,
                     stats_every=stats_every_of(guard))
    return Session(model=model, strategy=strategy, data=data, history=history,
                   events=events, supervisor=supervisor, loop=loop, run_dir=run_dir,
                   run_id=run_id)


def run_in_process(model, x, y, *, batch_size, epochs, steps_per_epoch, steps_per_loop,
                   validation_data, callbacks, shuffle, guard, rescue, launch, run_dir,
                   verbose) -> Result:
    """The guarded run on this process's strategy (``gt.fit`` with ``workers=0``)."""
    from guardtrain.engine.devices import pick_strategy

    user_model = model if isinstance(model, keras.Model) else None
    strategy = pick_strategy(launch)
    path, run_id = new_run_dir(run_dir)
    session = open_session(
        model, x, y, strategy=strategy, run_dir=path, run_id=run_id, batch_size=batch_size,
        epochs=epochs, steps_per_epoch=steps_per_epoch, steps_per_loop=steps_per_loop,
        validation_data=validation_data, callbacks=callbacks, shuffle=shuffle, guard=guard,
        rescue=rescue, verbose=verbose)
    model, loop = session.model, session.loop
    try:
        logs = loop.run()
    except GuardtrainError as err:
        session.events.add("error", code=err.code, message=err.message)
        session.history.flush()
        raise
    finally:
        # model.fit trains the user's model: hand the final (or, after an abort, the last
        # healthy) weights back to the instance the user holds, also on error.
        if user_model is not None and user_model is not model:
            user_model.set_weights(model.get_weights())
    model = user_model if user_model is not None else model
    supervisor = session.supervisor
    session.events.add("end", verdict=supervisor.verdict, step=loop.pos.step)
    write_atomic(path / "model.keras", model.save)
    return Result(model=model, history=load_history(path), attempts=list(supervisor.attempts),
                  verdict=supervisor.verdict, run_dir=path, logs=logs)


def stats_every_of(guard) -> int:
    """How often the norms are measured: the guard's setting, or its default."""
    from guardtrain.core.guard import GuardConfig

    return (guard if isinstance(guard, GuardConfig) else GuardConfig()).measure_every


def make_supervisor(guard, rescue, events, verbose=1):
    """The guard/rescue hook; ``Unsupervised`` when the guard is off."""
    from guardtrain.engine.loop import Unsupervised
    from guardtrain.engine.supervisor import GuardSupervisor

    if guard is False:
        return Unsupervised()
    return GuardSupervisor(guard=guard, rescue=rescue, events=events, verbose=verbose)
