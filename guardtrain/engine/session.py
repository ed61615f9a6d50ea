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
import numpy as np

from guardtrain.core.errors import ConfigError, GuardtrainError
from guardtrain.engine.shipping import PlainModel, as_plain_model, lives_in
from guardtrain.records.atomic import write_atomic
from guardtrain.records.attempts_file import stamp_attempts, write_attempts
from guardtrain.records.events import EventLog
from guardtrain.records.history import HistoryWriter, load_history
from guardtrain.records.result import Result
from guardtrain.records.run_dir import open_run_dir
from guardtrain.records.run_end import (describe_nonfinite, end_fields, sigterm_raises,
                                        write_best_effort)

__all__ = ["Session", "open_session", "place_model", "run_in_process", "make_supervisor",
           "stats_every_of", "settle_weights", "record_end",
           "DEFAULT_STEPS_PER_LOOP"]

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
        run_dir, run_id: where the records go; attempt_base: attempts of earlier runs
            in the folder (a resumed run directory).
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
    attempt_base: int = 0


def open_session(model, x, y, *, strategy, run_dir: Path, run_id: str, batch_size: int,
                 epochs: int, steps_per_epoch: int | None, steps_per_loop: int | None,
                 validation_data, callbacks, shuffle: bool, guard, rescue, verbose: int,
                 writes: bool = True, presharded: bool = False, start: bool = True,
                 start_fields: Mapping[str, Any] | None = None,
                 chunk_hooks: Sequence = (), attempt_base: int = 0,
                 prior_events: Sequence[Mapping[str, Any]] = (),
                 reference=None, sample_weight=None, initial_epoch: int = 0,
                 validation_batch_size: int | None = None,
                 validation_steps: int | None = None, validation_freq=1) -> Session:
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
        attempt_base, prior_events: what earlier runs left in a resumed run directory
            (``guardtrain.records.run_dir.RunDir``).
        reference: the constant-prediction ``Reference`` from ``gt.check``, for the guard.
        sample_weight: per-row weights of array inputs (``inputs.sample_weights``: class
            weights already turned into them), this worker's rows with ``presharded``.
        initial_epoch: the epoch the run starts at, numbered as ``model.fit`` numbers it.
        The others: as ``gt.fit``'s arguments.
    """
    from guardtrain.engine.inputs import make_train_data
    from guardtrain.engine.loop import Position, TrainLoop

    model = place_model(model, strategy)
    data = make_train_data(x, y, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
                           shuffle=shuffle, strategy=strategy, presharded=presharded,
                           sample_weight=sample_weight)
    events = EventLog(run_dir, enabled=writes, prior=prior_events)
    history = HistoryWriter(run_dir, run_id, attempt_base=attempt_base)
    supervisor = make_supervisor(guard, rescue, events, verbose, reference=reference)
    loop = TrainLoop(model=model, strategy=strategy, data=data, epochs=epochs,
                     steps_per_loop=steps_per_loop or min(DEFAULT_STEPS_PER_LOOP,
                                                          data.steps_per_epoch),
                     callbacks=callbacks, verbose=verbose, validation_data=validation_data,
                     validation_batch_size=validation_batch_size or batch_size,
                     validation_steps=validation_steps, validation_freq=validation_freq,
                     history=history, events=events, supervisor=supervisor,
                     is_chief=writes, chunk_hooks=chunk_hooks,
                     stats_every=stats_every_of(guard),
                     # Epochs numbered as model.fit numbers them: from initial_epoch.
                     position=Position(epoch=int(initial_epoch)))
    # The start event comes last: from here on, every way the run ends writes an ``end``
    # event (run_in_process; the Ray runner), so a start never stays without its end.
    if start:
        events.add("start", run_id=run_id, replicas=strategy.num_replicas_in_sync,
                   strategy=type(strategy).__name__, **dict(start_fields or {}),
                   steps_per_epoch=data.steps_per_epoch, epochs=epochs,
                   attempt_base=attempt_base)
    return Session(model=model, strategy=strategy, data=data, history=history,
                   events=events, supervisor=supervisor, loop=loop, run_dir=run_dir,
                   run_id=run_id, attempt_base=attempt_base)


def run_in_process(model, x, y, *, batch_size, epochs, steps_per_epoch, steps_per_loop,
                   validation_data, callbacks, shuffle, guard, rescue, launch, run_dir,
                   verbose, resume: bool = False, reference=None,
                   **fit_extras) -> Result:
    """The guarded run on this process's strategy (``gt.fit`` with ``workers=0``).

    Whatever ends the run — the loop finishing, a verdict, a Keras or callback error,
    Ctrl-C, SIGTERM, a failed write — the history so far and an ``end`` event with the
    reason are written before the error goes on (``guardtrain.records.run_end``).
    ``fit_extras``: ``open_session``'s ``sample_weight``, ``initial_epoch`` and
    ``validation_*`` arguments.
    """
    from guardtrain.engine.devices import pick_strategy

    user_model = model if isinstance(model, keras.Model) else None
    run = open_run_dir(run_dir, resume=resume)    # refused here, before anything starts
    strategy = pick_strategy(launch)
    with sigterm_raises():
        session = open_session(
            model, x, y, strategy=strategy, run_dir=run.path, run_id=run.run_id,
            batch_size=batch_size, epochs=epochs, steps_per_epoch=steps_per_epoch,
            steps_per_loop=steps_per_loop, validation_data=validation_data,
            callbacks=callbacks, shuffle=shuffle, guard=guard, rescue=rescue,
            verbose=verbose, attempt_base=run.attempt_base, prior_events=run.prior_events,
            reference=reference, **fit_extras)
        model, loop, supervisor = session.model, session.loop, session.supervisor
        # model.fit trains the user's model: the final (or, after an abort, the last
        # healthy) weights go back to the instance the user holds, also on error.
        hand_back = (lambda: user_model.set_weights(model.get_weights())) if (
            user_model is not None and user_model is not model) else (lambda: None)
        try:
            logs = loop.run()
            nonfinite = settle_weights(session)
            hand_back()
            final = user_model if user_model is not None else model
            write_atomic(run.path / "model.keras", final.save)
            session.events.add("end", **end_fields(None), verdict=supervisor.verdict,
                               step=loop.pos.step, **nonfinite)
        except BaseException as err:
            write_best_effort("weights handed back to the model", hand_back, err)
            record_end(session, err)
            raise
    return Result(model=final, history=load_history(run.path, run.run_id),
                  attempts=stamp_attempts(supervisor.attempts, run_id=run.run_id,
                                          attempt_base=run.attempt_base),
                  verdict=supervisor.verdict, run_dir=run.path, logs=logs,
                  run_id=run.run_id, nonfinite=nonfinite.get("nonfinite", {}))


def settle_weights(session: Session) -> dict[str, Any]:
    """Checks the run ended on finite weights; returns the ``end`` event's ``nonfinite``
    fields (empty when all is finite).

    With the guard off, a non-finite step or non-finite final weights marks the run
    ``failed``. With the guard on, rescued non-finite steps are the guard's business,
    but the weights returned are finite, always: non-finite ones are rolled back to the
    last snapshot and the run is marked ``failed``. The same on every Ray rank: the
    weights are replicated and the history rows are the same everywhere.
    """
    from guardtrain.engine.loop import Unsupervised

    loop, supervisor = session.loop, session.supervisor
    guarded = not isinstance(supervisor, Unsupervised)
    # Under loss scaling (mixed_float16) an overflowing scaled gradient is a step the
    # optimizer skips by design, not a failure: only a non-finite loss counts there.
    scaled = isinstance(session.model.optimizer, keras.optimizers.LossScaleOptimizer)
    steps = session.history.nonfinite_steps(loss_only=scaled)
    weights_finite = all(np.isfinite(w).all() for w in session.model.get_weights()
                         if np.issubdtype(np.asarray(w).dtype, np.floating))
    if weights_finite and (guarded or not len(steps)):
        return {}
    info: dict[str, Any] = {"steps": int(len(steps)),
                            "first_step": int(steps[0]) if len(steps) else None,
                            "final_weights_finite": bool(weights_finite), "guard": guarded}
    if not weights_finite and guarded:
        loop.rewind()
        info["rolled_back_to"] = int(loop.snapshot_step)
    supervisor.verdict = "failed"
    session.events.add("nonfinite", step=loop.pos.step, **info)
    logger.warning("[guard] run marked failed: %s", describe_nonfinite(info))
    return {"nonfinite": info}


def record_end(session: Session, err: BaseException) -> None:
    """The record of a run an error ended: the history so far, the running attempt closed
    with the status, the ``error`` event of a guardtrain error and the ``end`` event.

    Best effort (``write_best_effort``): a write that fails is said on stderr and in
    ``err``'s notes, and ``err`` stays the error raised. Events are added on every rank
    (only the chief writes them), as everything the loop records.
    """
    events, supervisor, loop = session.events, session.supervisor, session.loop
    status = end_fields(err)["status"]
    if loop.is_chief:
        write_best_effort("history", session.history.flush, err)
        attempts = [{**a, "outcome": status} if a.get("outcome") == "running" else a
                    for a in supervisor.attempts]
        if attempts and events.enabled:
            write_best_effort("attempts.json",
                              lambda: write_attempts(session.run_dir, attempts), err)
    if isinstance(err, GuardtrainError) and not any(
            e.get("event") == "error" for e in events.events):
        write_best_effort("error event", lambda: events.add(
            "error", code=err.code, message=err.message), err)
    write_best_effort("end event", lambda: events.add(
        "end", **end_fields(err), verdict="failed" if status == "failed" else
        supervisor.verdict, step=loop.pos.step), err)


def stats_every_of(guard) -> int:
    """How often the norms are measured: the guard's setting, or its default."""
    from guardtrain.core.guard import GuardConfig

    return (guard if isinstance(guard, GuardConfig) else GuardConfig()).measure_every


def make_supervisor(guard, rescue, events, verbose=1, reference=None):
    """The guard/rescue hook; ``Unsupervised`` when the guard is off."""
    from guardtrain.engine.loop import Unsupervised
    from guardtrain.engine.supervisor import GuardSupervisor

    if guard is False:
        return Unsupervised()
    return GuardSupervisor(guard=guard, rescue=rescue, events=events, verbose=verbose,
                           reference=reference)
