"""``gt.fit``: validate on the driver, place the model on a strategy, run the guarded loop.

Order matters and is the point of the design:

1. split the CPU if asked (before TensorFlow initialises; a builder function makes this
   possible because no model exists yet);
2. ``check`` the inputs on the driver — nothing built, nothing launched;
3. hand over to Ray workers (``workers >= 1``) or stay in this process;
4. build the strategy, place the model in its scope, run the loop, write the records.
"""

from __future__ import annotations

import datetime
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Callable

import keras

from guardtrain.config import LaunchConfig
from guardtrain.errors import ConfigError, GuardtrainError
from guardtrain.history import EventLog, HistoryWriter, load_history, write_atomic
from guardtrain.result import Result

__all__ = ["fit", "new_run_dir"]

logger = logging.getLogger(__name__)

DEFAULT_STEPS_PER_LOOP = 50


def new_run_dir(run_dir: str | os.PathLike | None) -> tuple[Path, str]:
    """The run directory and the run id (its name), created."""
    if run_dir is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_id = f"{stamp}-{secrets.token_hex(2)}"
        path = Path("guardtrain_runs") / run_id
    else:
        path = Path(run_dir)
        run_id = path.name
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve(), run_id


def _resolve_verbose(verbose) -> int:
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2):
        raise ConfigError(f"fit(verbose=...): expected 'auto', 0, 1 or 2, found {verbose!r}",
                          code="GT103", fix="use verbose=0 (silent), 1 (bar) or 2 (a line per epoch)")
    return int(verbose)


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


def fit(model: keras.Model | Callable[[], keras.Model], x: Any = None, y: Any = None, *,
        batch_size: int = 32, epochs: int = 1, steps_per_epoch: int | None = None,
        steps_per_loop: int | None = None, validation_data=None, callbacks=None,
        shuffle: bool = True, guard=None, rescue=None, launch: LaunchConfig | None = None,
        run_dir: str | os.PathLike | None = None, verbose="auto") -> Result:
    """Trains ``model`` like ``model.fit``, watching that the weights really move.

    Args:
        model: a compiled ``keras.Model``, or a zero-argument function returning one (it
            is then built inside the strategy's scope, and on each Ray worker).
        x, y: NumPy arrays or dicts of them, a batched ``tf.data.Dataset`` (``y`` None), a
            ``dataset_fn(input_context)``, or ``gt.data.parquet(...)``.
        batch_size: the global batch size (split across replicas).
        epochs: number of epochs.
        steps_per_epoch: steps per epoch; default: one pass over the data.
        steps_per_loop: steps per ``tf.function`` call, i.e. per host sync and per guard
            verdict; default 50 (or the epoch, when shorter).
        validation_data: ``(x_val, y_val)``, evaluated at each epoch end.
        callbacks: Keras callbacks; they receive the hooks in Keras's order.
        shuffle: reshuffle NumPy inputs every epoch, as ``model.fit`` does.
        guard: a ``GuardConfig``, or ``False`` to record statistics without judging.
        rescue: a ``RescueConfig``, or ``False`` to raise instead of acting.
        launch: a ``LaunchConfig``: in-process (default) or Ray workers.
        run_dir: where history, events and the final model go; default
            ``guardtrain_runs/<time>-<id>``.
        verbose: "auto", 0, 1 or 2, as in Keras.

    Returns:
        A ``gt.Result``.

    Example:

    >>> import numpy as np, keras, guardtrain as gt
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> x = np.random.rand(64, 4).astype("float32"); y = x.sum(1, keepdims=True)
    >>> gt.fit(model, x, y, epochs=2, verbose=0).verdict   # doctest: +SKIP
    'healthy'
    """
    launch = launch or LaunchConfig()
    verbose = _resolve_verbose(verbose)
    if launch.cpu_replicas and launch.cpu_replicas > 1:
        from guardtrain.devices import split_cpu

        split_cpu(launch.cpu_replicas)  # before anything below touches TensorFlow
    if launch.workers and "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            # The cluster is known already: a request it cannot hold is a launch error,
            # the same one fit_on_ray raises when it connects itself.
            from guardtrain.ray_cluster import require_resources

            require_resources(launch)
    from guardtrain.checking import check

    report = check(model, x, y, batch_size=batch_size, validation_data=validation_data,
                   launch=launch)
    if verbose and report.warnings:
        print(report)
    if launch.workers:
        from guardtrain.ray_fit import fit_on_ray

        return fit_on_ray(model, x, y, batch_size=batch_size, epochs=epochs,
                          steps_per_epoch=steps_per_epoch, steps_per_loop=steps_per_loop,
                          validation_data=validation_data, callbacks=callbacks,
                          shuffle=shuffle, guard=guard, rescue=rescue, launch=launch,
                          run_dir=run_dir, verbose=verbose)
    return run_in_process(model, x, y, batch_size=batch_size, epochs=epochs,
                          steps_per_epoch=steps_per_epoch, steps_per_loop=steps_per_loop,
                          validation_data=validation_data, callbacks=callbacks,
                          shuffle=shuffle, guard=guard, rescue=rescue, launch=launch,
                          run_dir=run_dir, verbose=verbose)


def run_in_process(model, x, y, *, batch_size, epochs, steps_per_epoch, steps_per_loop,
                   validation_data, callbacks, shuffle, guard, rescue, launch, run_dir,
                   verbose, strategy=None, is_chief=True) -> Result:
    """The guarded run on this process's strategy (also what each Ray worker runs)."""
    from guardtrain.devices import pick_strategy
    from guardtrain.inputs import make_train_data
    from guardtrain.loop import TrainLoop

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
    from guardtrain.guard import GuardConfig

    return (guard if isinstance(guard, GuardConfig) else GuardConfig()).measure_every


def make_supervisor(guard, rescue, events, verbose=1):
    """The guard/rescue hook; ``Unsupervised`` when the guard is off."""
    from guardtrain.loop import Unsupervised
    from guardtrain.supervisor import GuardSupervisor

    if guard is False:
        return Unsupervised()
    return GuardSupervisor(guard=guard, rescue=rescue, events=events, verbose=verbose)
