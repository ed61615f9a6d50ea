"""``gt.fit``: validate on the driver, place the model on a strategy, run the guarded loop.

Order matters and is the point of the design:

1. split the CPU if asked (before TensorFlow initialises; a builder function makes this
   possible because no model exists yet);
2. ``check`` the inputs on the driver — nothing built, nothing launched;
3. hand over to Ray workers (``workers >= 1``: the runner attaches to the cluster and
   compares its resources with the request once, before anything is shipped) or stay in
   this process;
4. build the strategy, place the model in its scope, run the loop, write the records
   (``guardtrain.engine.session``, docs/architecture.md, "The data path").
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

import keras

from guardtrain.core.errors import ConfigError
from guardtrain.core.fit_args import as_config, fit_arg_problems
from guardtrain.core.guard_config import GuardConfig
from guardtrain.core.launch_config import LaunchConfig
from guardtrain.core.rescue_config import RescueConfig
from guardtrain.core.validation import Validator
from guardtrain.records.result import Result

__all__ = ["fit"]

logger = logging.getLogger(__name__)


def _resolve_verbose(verbose) -> int:
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ConfigError(f"fit(verbose=...): expected 'auto', 0, 1 or 2, found {verbose!r}",
                          code="GT103",
                          fix="use verbose=0 (silent), 1 (bar) or 2 (a line per epoch)")
    return int(verbose)


def _check_fit_args(**values) -> None:
    """The rules a JOB file's keys follow too (``guardtrain.core.fit_args``), as GT108."""
    v = Validator("fit", code="GT108")
    for problem in fit_arg_problems(values, code="GT108"):
        v.add(problem)
    v.raise_if_any()


def fit(model: keras.Model | Callable[[], keras.Model], x: Any = None, y: Any = None, *,
        batch_size: int = 32, epochs: int = 1, steps_per_epoch: int | None = None,
        steps_per_loop: int | None = None, validation_data=None, callbacks=None,
        shuffle: bool = True, guard=None, rescue=None, launch: LaunchConfig | None = None,
        run_dir: str | os.PathLike | None = None, resume: bool = False,
        verbose="auto") -> Result:
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
        validation_data: ``(x_val, y_val)`` (or the list ``[x_val, y_val]``, as in
            Keras), evaluated at each epoch end.
        callbacks: Keras callbacks; they receive the hooks in Keras's order.
        shuffle: reshuffle NumPy inputs every epoch, as ``model.fit`` does.
        guard: a ``GuardConfig`` (or a dict of its fields, as in a JOB file), or
            ``False`` to record statistics without judging.
        rescue: a ``RescueConfig`` (or a dict of its fields), or ``False`` to raise
            instead of acting. Every optimizer on its ladder must be one Keras knows.
        launch: a ``LaunchConfig`` (or a dict of its fields): in-process (default) or Ray
            workers.
        run_dir: where history, events and the final model go; default
            ``guardtrain_runs/<time>-<id>``. A folder that is not empty is refused
            (GT152) unless ``resume``.
        resume: add this run to a ``run_dir`` that holds earlier runs: its own run id,
            attempts numbered after those on disk (README, "The run directory").
        verbose: "auto", 0, 1 or 2, as in Keras.

    Returns:
        A ``gt.Result``.

    Raises:
        ConfigError: before anything starts, with every problem of a call: a fit argument
            of the wrong type or out of range (GT108: the rules of a JOB file's keys), a
            config of the wrong type (GT107, GT109) or with wrong fields (GT101, GT110,
            GT120), an optimizer Keras does not know (GT122), a dataset function without
            ``steps_per_epoch`` (GT102).
        InputSpecError: the data does not fit the model (``gt.check``).

    Example:

    >>> import numpy as np, keras, guardtrain as gt
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> x = np.random.rand(64, 4).astype("float32"); y = x.sum(1, keepdims=True)
    >>> gt.fit(model, x, y, epochs=2, verbose=0).verdict   # doctest: +SKIP
    'healthy'
    """
    # The arguments first: each rule is cheap and none needs the data or TensorFlow.
    _check_fit_args(batch_size=batch_size, epochs=epochs, steps_per_epoch=steps_per_epoch,
                    steps_per_loop=steps_per_loop, shuffle=shuffle)
    # np.int64 passes the rules; the loop and the Ray config want plain ints.
    batch_size, epochs = int(batch_size), int(epochs)
    steps_per_epoch = None if steps_per_epoch is None else int(steps_per_epoch)
    steps_per_loop = None if steps_per_loop is None else int(steps_per_loop)
    verbose = _resolve_verbose(verbose)
    launch = as_config(launch, LaunchConfig, "launch", "GT109", off=False)
    guard = as_config(guard, GuardConfig, "guard", "GT107", off=True)
    rescue = as_config(rescue, RescueConfig, "rescue", "GT107", off=True)
    if isinstance(validation_data, list):
        # Keras reads [x_val, y_val] as (x_val, y_val); the loop reads tuples only.
        validation_data = tuple(validation_data)
    if launch.cpu_replicas and launch.cpu_replicas > 1:
        from guardtrain.engine.devices import split_cpu

        split_cpu(launch.cpu_replicas)  # before anything below touches TensorFlow
    from guardtrain.checking import check
    from guardtrain.checking.optimizers import check_ladder

    check_ladder(rescue)
    report = check(model, x, y, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
                   validation_data=validation_data, launch=launch)
    if verbose and report.warnings:
        print(report)
    if launch.workers:
        from guardtrain.ray.runner import fit_on_ray

        return fit_on_ray(model, x, y, batch_size=batch_size, epochs=epochs,
                          steps_per_epoch=steps_per_epoch, steps_per_loop=steps_per_loop,
                          validation_data=validation_data, callbacks=callbacks,
                          shuffle=shuffle, guard=guard, rescue=rescue, launch=launch,
                          run_dir=run_dir, resume=resume, verbose=verbose,
                          reference=report.reference)
    from guardtrain.engine.session import run_in_process

    return run_in_process(model, x, y, batch_size=batch_size, epochs=epochs,
                          steps_per_epoch=steps_per_epoch, steps_per_loop=steps_per_loop,
                          validation_data=validation_data, callbacks=callbacks,
                          shuffle=shuffle, guard=guard, rescue=rescue, launch=launch,
                          run_dir=run_dir, resume=resume, verbose=verbose,
                          reference=report.reference)
