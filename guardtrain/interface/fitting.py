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

from guardtrain.core.errors import ConfigError, Problem
from guardtrain.core.fit_args import (KERAS_FIT_KEYWORDS, UNSUPPORTED, as_config,
                                     fit_arg_problems, input_kind_problems,
                                     unknown_keyword_error)
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


def _labels_by_output(model, y):
    """``[y_a, y_b]`` for a model with outputs ``a``, ``b``: ``{"a": y_a, "b": y_b}``, the
    pairing model.fit makes by position; anything else as it is."""
    if not (isinstance(model, keras.Model) and isinstance(y, (list, tuple)) and len(y) > 1
            and all(hasattr(v, "shape") and len(getattr(v, "shape", ())) > 0 for v in y)):
        return y
    try:
        names = list(model.output_names)
    except (AttributeError, ValueError):  # a subclassed model not built yet: no names
        return y
    if len(names) != len(y) or len(set(names)) != len(names):
        return y
    return dict(zip(names, y))


def _check_fit_args(**values) -> None:
    """The rules a JOB file's keys follow too (``guardtrain.core.fit_args``), as GT108."""
    v = Validator("fit", code="GT108")
    for problem in fit_arg_problems(values, code="GT108"):
        v.add(problem)
    v.raise_if_any()


# guardtrain's own keywords, after model.fit's (KERAS_FIT_KEYWORDS).
_OWN_KEYWORDS = ("steps_per_loop", "guard", "rescue", "launch", "run_dir", "resume")


def _input_kind(x) -> str:
    """What ``x`` is, in the words of ``core.fit_args.INPUT_KINDS``. A dataset can only
    exist once TensorFlow is imported, so this looks without importing it."""
    import sys

    if hasattr(x, "read_numpy"):
        return "parquet"
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(x, tf.data.Dataset):
        return "dataset"
    return "dataset_fn" if callable(x) else "arrays"


def _refuse_by_input(kind, launch, *, y, validation_split, validation_data, class_weight,
                     sample_weight) -> None:
    """GT113/GT114 for what model.fit would do with these inputs and guardtrain does not,
    or what model.fit refuses too; all at once, before anything is read or started."""
    v = Validator("fit", code=UNSUPPORTED)
    for problem in input_kind_problems(
            kind, validation_split=validation_split,
            validation_data=validation_data is not None,
            class_weight=class_weight is not None, sample_weight=sample_weight is not None,
            labels=y is not None):
        v.add(problem)
    if launch.workers and isinstance(sample_weight, (list, tuple)):
        # The object store takes arrays or dicts of them; a list would be stacked into
        # one array and cut across outputs instead of across rows.
        v.add(Problem(code=UNSUPPORTED, where="fit(sample_weight=...)",
                      expected="one array, or a dict by output name, on Ray workers",
                      found=f"a {type(sample_weight).__name__} of {len(sample_weight)}",
                      fix="pass sample_weight={output_name: weights, ...}"))
    v.raise_if_any()


def fit(model: keras.Model | Callable[[], keras.Model], x: Any = None, y: Any = None,
        *args, batch_size: int | None = None, epochs: int = 1, verbose="auto",
        callbacks=None, validation_split: float = 0.0, validation_data=None,
        shuffle: bool | str = True, class_weight=None, sample_weight=None,
        initial_epoch: int = 0, steps_per_epoch: int | None = None,
        validation_steps: int | None = None, validation_batch_size: int | None = None,
        validation_freq=1, steps_per_loop: int | None = None, guard=None, rescue=None,
        launch: LaunchConfig | None = None, run_dir: str | os.PathLike | None = None,
        resume: bool = False, **unknown) -> Result:
    """Trains ``model`` like ``model.fit``, watching that the weights really move.

    Takes every argument of Keras 3's ``model.fit`` (by keyword or in its positional
    order after ``y``) with ``model.fit``'s meaning, or refuses it with a coded error
    before anything starts (README, "Use"); then guardtrain's own.

    Args:
        model: a compiled ``keras.Model``, or a zero-argument function returning one (it
            is then built inside the strategy's scope, and on each Ray worker).
        x, y: NumPy arrays or dicts of them, a batched ``tf.data.Dataset`` (``y`` None), a
            ``dataset_fn(input_context)``, or ``gt.data.parquet(...)``.
        batch_size: the global batch size (split across replicas); ``None``: 32.
        epochs: the epoch to end at (epochs run from ``initial_epoch`` to ``epochs``).
        verbose: "auto", 0, 1 or 2, as in Keras.
        callbacks: Keras callbacks; they receive the hooks in Keras's order.
        validation_split: arrays only: the last fraction of the rows (before any
            shuffling) becomes the validation data; ignored with ``validation_data``.
        validation_data: ``(x_val, y_val)`` or ``(x_val, y_val, sample_weight_val)`` (a
            list too, as in Keras), or a dataset/Parquet source.
        shuffle: ``True`` reshuffles array rows every epoch, ``"batch"`` the rows within
            each batch, ``False`` keeps their order, as ``model.fit``.
        class_weight: ``{class id: weight}``, for array inputs and a single output:
            each row's loss weighed by its class's weight (training only).
        sample_weight: one weight per row (or ``{output: weights}``), array inputs only.
        initial_epoch: the epoch to start at (callbacks and the history number epochs
            from it, as in Keras).
        steps_per_epoch: steps per epoch; default: one pass over the data.
        validation_steps, validation_batch_size: ``model.evaluate``'s ``steps`` and
            ``batch_size`` at each validation (default: all of it, ``batch_size``).
        validation_freq: validate after every N-th epoch, or after the (1-based) epochs
            of a list.
        steps_per_loop: steps per ``tf.function`` call, i.e. per host sync and per guard
            verdict; default 50 (or the epoch, when shorter).
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

    Returns:
        A ``gt.Result``.

    Raises:
        ConfigError: before anything starts, with every problem of a call: a keyword fit
            does not know, or one given twice (GT112, with the nearest known one); a fit
            argument of the wrong type or out of range (GT108: the rules of a JOB file's
            keys); a model.fit argument guardtrain does not support with these inputs
            (GT113) or that model.fit refuses too (GT114); a config of the wrong type
            (GT107, GT109) or with wrong fields (GT101, GT110, GT120), an optimizer Keras
            does not know (GT122), a dataset function without ``steps_per_epoch``
            (GT102).
        InputSpecError: the data does not fit the model (``gt.check``).

    Example:

    >>> import numpy as np, keras, guardtrain as gt
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> x = np.random.rand(64, 4).astype("float32"); y = x.sum(1, keepdims=True)
    >>> gt.fit(model, x, y, epochs=2, verbose=0).verdict   # doctest: +SKIP
    'healthy'
    """
    # Exactly the parameters, read before anything else is bound in this frame.
    given = {k: v for k, v in locals().items() if k not in ("args", "unknown")}
    # A misspelt keyword first: before the check, before anything is read or started.
    if unknown:
        raise unknown_keyword_error(unknown, ("model", "x", "y", *KERAS_FIT_KEYWORDS,
                                              *_OWN_KEYWORDS))
    if args:
        given.update(_positional(args, given))
    return _fit(**given)


def _positional(args: tuple, given: dict) -> dict:
    """``model.fit(x, y, 64, 3)``: positional arguments after ``y`` in ``model.fit``'s
    order (``KERAS_FIT_KEYWORDS``). One also given by keyword is refused (GT112), as
    Python refuses it: which one was meant cannot be told."""
    import inspect

    if len(args) > len(KERAS_FIT_KEYWORDS):
        raise ConfigError(
            f"fit(): expected at most {3 + len(KERAS_FIT_KEYWORDS)} positional arguments "
            f"(model, x, y, then model.fit's order), found {3 + len(args)}", code="GT112",
            fix="pass the arguments after y by keyword")
    defaults = inspect.signature(fit).parameters
    out = {}
    for name, value in zip(KERAS_FIT_KEYWORDS, args):
        default, current = defaults[name].default, given[name]
        if not (current is default or (isinstance(current, (int, float, str))
                                       and current == default)):
            raise ConfigError(f"fit(): expected {name} once, found it both in position "
                              f"{3 + KERAS_FIT_KEYWORDS.index(name) + 1} and by keyword",
                              code="GT112", fix=f"pass {name} by keyword only")
        out[name] = value
    return out


def _fit(*, model, x, y, batch_size, epochs, verbose, callbacks, validation_split,
         validation_data, shuffle, class_weight, sample_weight, initial_epoch,
         steps_per_epoch, validation_steps, validation_batch_size, validation_freq,
         steps_per_loop, guard, rescue, launch, run_dir, resume) -> Result:
    """``fit`` with its arguments named: the order of the design (module doc)."""
    if batch_size is None:
        batch_size = 32             # model.fit's default for arrays
    # The arguments first: each rule is cheap and none needs the data or TensorFlow.
    _check_fit_args(batch_size=batch_size, epochs=epochs, steps_per_epoch=steps_per_epoch,
                    steps_per_loop=steps_per_loop, shuffle=shuffle,
                    validation_split=validation_split,
                    validation_batch_size=validation_batch_size,
                    validation_steps=validation_steps, validation_freq=validation_freq,
                    initial_epoch=initial_epoch, class_weight=class_weight)
    # np.int64 passes the rules; the loop and the Ray config want plain ints.
    batch_size, epochs, initial_epoch = int(batch_size), int(epochs), int(initial_epoch)
    steps_per_epoch, steps_per_loop, validation_steps, validation_batch_size = (
        None if v is None else int(v) for v in (steps_per_epoch, steps_per_loop,
                                                validation_steps, validation_batch_size))
    validation_freq = ([int(f) for f in validation_freq]
                       if isinstance(validation_freq, (list, tuple)) else int(validation_freq))
    verbose = _resolve_verbose(verbose)
    launch = as_config(launch, LaunchConfig, "launch", "GT109", off=False)
    guard = as_config(guard, GuardConfig, "guard", "GT107", off=True)
    rescue = as_config(rescue, RescueConfig, "rescue", "GT107", off=True)
    if isinstance(validation_data, list):
        # Keras reads [x_val, y_val] as (x_val, y_val); the loop reads tuples only.
        validation_data = tuple(validation_data)
    # Several outputs' labels as a list or tuple: model.fit pairs them with model.outputs
    # by position; the pipeline and the check read them as a dict by output name.
    y = _labels_by_output(model, y)
    if isinstance(validation_data, tuple) and len(validation_data) >= 2:
        validation_data = (validation_data[0], _labels_by_output(model, validation_data[1]),
                           *validation_data[2:])
    _refuse_by_input(_input_kind(x), launch, y=y, validation_split=validation_split,
                     validation_data=validation_data, class_weight=class_weight,
                     sample_weight=sample_weight)
    from guardtrain.engine.inputs import sample_weights, split_validation

    # No x, or several inputs as a tuple/list, is the check's to refuse (GT270, GT276);
    # rows cut or weighed here would hide what it refuses.
    if x is not None and not (isinstance(x, (list, tuple)) and len(x)
                              and hasattr(x[0], "shape")):
        if validation_split and validation_data is None:
            # model.fit's order: split (the weights with their rows), then class weights.
            (x, y, sample_weight), validation_data = split_validation(
                x, y, sample_weight, validation_split)
        sample_weight = sample_weights(x, y, sample_weight, class_weight)
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
    reference = report.reference
    if sample_weight is not None and reference is not None:
        # The reference is the unweighted loss of a constant prediction; a weighted loss
        # is not comparable with it, and a NO_PROGRESS judged on it could be wrong.
        logger.info("[check] sample or class weights: no reference loss, NO_PROGRESS "
                    "is not judged")
        reference = None
    common = dict(batch_size=batch_size, epochs=epochs, steps_per_epoch=steps_per_epoch,
                  steps_per_loop=steps_per_loop, validation_data=validation_data,
                  callbacks=callbacks, shuffle=shuffle, guard=guard, rescue=rescue,
                  launch=launch, run_dir=run_dir, resume=resume, verbose=verbose,
                  reference=reference, sample_weight=sample_weight,
                  initial_epoch=initial_epoch, validation_batch_size=validation_batch_size,
                  validation_steps=validation_steps, validation_freq=validation_freq)
    if launch.workers:
        from guardtrain.ray.runner import fit_on_ray

        return fit_on_ray(model, x, y, **common)
    from guardtrain.engine.session import run_in_process

    return run_in_process(model, x, y, **common)
