"""One session for both runners: place the model on a strategy, build the loop, run it.

The in-process runner (``gt.fit`` with ``workers=0``) and each Ray worker build their run
through this module, so the model placement, the supervisor and the loop are set up once
(docs/architecture.md, "The data path").
"""

from __future__ import annotations

import logging

import keras

from guardtrain.core.errors import ConfigError, GuardtrainError
from guardtrain.records.history import EventLog, HistoryWriter, load_history, write_atomic
from guardtrain.records.result import Result
from guardtrain.records.run_dir import new_run_dir

__all__ = ["place_model", "run_in_process", "make_supervisor", "stats_every_of",
           "DEFAULT_STEPS_PER_LOOP"]

logger = logging.getLogger(__name__)

DEFAULT_STEPS_PER_LOOP = 50


def place_model(model, strategy):
    """Returns a model whose variables live in ``strategy``'s scope, optimizer built.

    A builder function is called inside the scope. An instance made outside a
    multi-replica scope is rebuilt there from its config, weights and compile config.
    """
    import tensorflow as tf

    shipped = None
    if isinstance(model, keras.Model) and (strategy is not tf.distribute.get_strategy()
                                           or strategy.num_replicas_in_sync > 1):
        shipped = _as_plain_model(model, strategy)
    with strategy.scope():
        if shipped is not None:
            model = _from_plain_model(shipped)
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
        model.optimizer.build(model.trainable_variables)  # eager build (PITFALLS 18c)
    return model


def _as_plain_model(model, strategy):
    """The model as config, weights and compile config — read OUTSIDE ``strategy``'s scope,
    since a model made under another strategy cannot be read inside this one. ``None``
    when its variables already live in ``strategy``."""
    first = model.variables[0] if model.variables else None
    value = getattr(first, "value", None)
    if value is not None and strategy.extended.variable_created_in_scope(value):
        return None
    return (keras.saving.serialize_keras_object(model), model.get_weights(),
            model.get_compile_config())


def _from_plain_model(shipped):
    config, weights, compile_config = shipped
    clone = keras.saving.deserialize_keras_object(config)
    clone.set_weights(weights)
    if compile_config:
        clone.compile_from_config(compile_config)
    return clone


def run_in_process(model, x, y, *, batch_size, epochs, steps_per_epoch, steps_per_loop,
                   validation_data, callbacks, shuffle, guard, rescue, launch, run_dir,
                   verbose, strategy=None, is_chief=True) -> Result:
    """The guarded run on this process's strategy (also what each Ray worker runs)."""
    from guardtrain.engine.devices import pick_strategy
    from guardtrain.engine.inputs import make_train_data
    from guardtrain.engine.loop import TrainLoop

    user_model = model if isinstance(model, keras.Model) else None
    strategy = strategy or pick_strategy(launch)
    model = place_model(model, strategy)
    path, run_id = new_run_dir(run_dir)
    data = make_train_data(x, y, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
                           shuffle=shuffle, strategy=strategy)
    events = EventLog(path, enabled=is_chief)
    history = HistoryWriter(path, run_id)
    supervisor = make_supervisor(guard, rescue, events, verbose)
    events.add("start", run_id=run_id, replicas=strategy.num_replicas_in_sync,
               strategy=type(strategy).__name__, steps_per_epoch=data.steps_per_epoch,
               epochs=epochs)
    loop = TrainLoop(model=model, strategy=strategy, data=data, epochs=epochs,
                     steps_per_loop=steps_per_loop or min(DEFAULT_STEPS_PER_LOOP,
                                                          data.steps_per_epoch),
                     callbacks=callbacks, verbose=verbose, validation_data=validation_data,
                     validation_batch_size=batch_size, history=history, events=events,
                     supervisor=supervisor, is_chief=is_chief,
                     stats_every=stats_every_of(guard))
    try:
        logs = loop.run()
    except GuardtrainError as err:
        events.add("error", code=err.code, message=err.message)
        history.flush() if is_chief else None
        raise
    finally:
        # model.fit trains the user's model: hand the final (or, after an abort, the last
        # healthy) weights back to the instance the user holds, also on error.
        if user_model is not None and user_model is not model:
            user_model.set_weights(model.get_weights())
    model = user_model if user_model is not None else model
    events.add("end", verdict=supervisor.verdict, step=loop.pos.step)
    if is_chief:
        write_atomic(path / "model.keras", model.save)
    return Result(model=model, history=load_history(path) if is_chief else history.all_rows(),
                  attempts=list(getattr(supervisor, "attempts", [])),
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
