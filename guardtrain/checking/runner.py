"""``check``: run every input check, collect every problem, raise once or report.

Order: the call's own arguments (``launch``, and ``steps_per_epoch`` for data without a
length: a ``ConfigError`` at once), the model (called if it is a function), then the data
sampled once, then the checks, each a function returning ``Problem``s. Nothing here builds a strategy, starts
Ray, or reads more than a bounded sample.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from guardtrain.checking import (batches, dispatch, dtypes, labels, model_checks, shapes,
                                 sources, values)
from guardtrain.checking import codes
from guardtrain.checking.model_spec import describe, loss_spec
from guardtrain.checking.reference_loss import reference_for
from guardtrain.checking.report import CheckReport
from guardtrain.checking.specs import Inputs, ModelSpec, OutputSpec
from guardtrain.core.fit_args import as_config
from guardtrain.core.launch_config import LaunchConfig
from guardtrain.engine.devices import planned_replicas
from guardtrain.core.errors import ConfigError, InputSpecError, Problem
from guardtrain.data import ParquetSource

__all__ = ["check", "require_steps"]

logger = logging.getLogger(__name__)


class _NotGiven:
    """The default of ``check(steps_per_epoch=...)``: the caller did not say, so a
    dataset function is not refused for lacking it (``None`` means "none")."""

    def __repr__(self) -> str:
        return "<not given>"


NOT_GIVEN = _NotGiven()


def check(model, x=None, y=None, *, batch_size=32, steps_per_epoch=NOT_GIVEN,
          validation_data=None, launch: LaunchConfig | None = None) -> CheckReport:
    """Checks that the data fits the model, the loss and the launch, before training.

    Reads only bounded samples (up to 10,000 rows for the value checks), so it takes
    about a second even on millions of rows. Every problem is collected before raising.

    Args:
        model: a compiled ``keras.Model``, or a zero-argument function returning one
            (it is called once here).
        x: features: NumPy arrays (a dict by input name, or a list, for several inputs),
            a ``tf.data.Dataset`` of ``(x, y)`` batches, a function
            ``fn(input_context) -> tf.data.Dataset``, or ``gt.data.parquet(...)``.
        y: labels, for array inputs.
        batch_size: the global batch, split over the replicas.
        steps_per_epoch: the steps per epoch the run will use, when known (``gt.fit``
            always passes it). A dataset function, or a dataset of unknown length, has
            no epoch of its own: given as ``None``, the run could not start, and
            ``check`` says so (``ConfigError`` GT102) before reading any data.
        validation_data: ``(x_val, y_val)`` or ``[x_val, y_val]``, or a
            dataset/function/Parquet source.
        launch: where the run will go (a ``LaunchConfig`` or a dict of its fields);
            decides the replica count and the dispatch checks.

    Returns:
        A ``CheckReport`` with the warnings.

    Raises:
        InputSpecError: with ``.problems``, every blocking problem (warnings are in the
            message and in ``.warnings``).
        ConfigError: GT102, a dataset function or a dataset of unknown length without
            ``steps_per_epoch``; GT109 (or the config's own code), a ``launch`` that is
            not a ``LaunchConfig`` or whose fields are wrong.

    Example:

    >>> report = gt.check(model, x_train, y_train, batch_size=64)   # doctest: +SKIP
    >>> print(report)                                                # doctest: +SKIP
    """
    start = time.perf_counter()
    launch = as_config(launch, LaunchConfig, "launch", "GT109", off=False, call="check")
    require_steps(x, steps_per_epoch)
    replicas = planned_replicas(launch)
    problems: list[Problem] = []
    notes: list[str] = []

    built, found = _resolve_model(model, launch)
    problems += found
    spec = describe(built) if built is not None else None
    positional = shapes.check_positional_inputs(x, spec)
    # Positional inputs are refused before they are read: read as rows, they would give
    # a row count and shapes that mean nothing.
    inputs, found = (None, positional) if positional else sources.load(x, y, model=spec)
    problems += found
    if built is not None and inputs:
        spec, found = _complete(built, spec, inputs)
        problems += found
    if spec is not None:
        problems += _model_problems(spec, notes)
        problems += model_checks.check_jit(spec, None if launch.workers else launch.cpu_replicas)
    if inputs is not None:
        problems += _data_problems(spec, inputs, notes)
        problems += _batch_problems(inputs, batch_size, replicas)
        problems += dispatch.check_dispatch(inputs, launch)
    if validation_data is not None:
        problems += _validation_problems(spec, validation_data, launch, notes)

    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity != "error"]
    # INFO, not WARNING: the warnings reach the user in the report (gt.fit prints it);
    # with no handler configured, WARNING records would be printed a second time.
    for w in warnings:
        logger.info("[check] %s: %s [%s]", w.where, w.found, w.code)
    if errors:
        raise InputSpecError(_message(errors, warnings), problems=errors,
                             details={"warnings": warnings})
    reference, why_none = reference_for(spec, inputs)
    if why_none:
        notes.append(why_none)
    return CheckReport(
        warnings=tuple(warnings), replicas=replicas,
        samples=inputs.n_rows if inputs else None,
        batch_size=(inputs.batch if inputs and inputs.batch else batch_size),
        sampled_rows=max((len(s.rows) for _, s in inputs.x), default=0) if inputs else 0,
        input_kind=inputs.kind if inputs else "", elapsed_s=time.perf_counter() - start,
        notes=tuple(notes), reference=reference)


def require_steps(x, steps_per_epoch) -> None:
    """Raises ``ConfigError`` GT102 when ``x`` has no length and no ``steps_per_epoch``
    says how long an epoch is: the same refusal the run itself would make, only before
    anything is built (``guardtrain.engine.inputs.make_train_data``)."""
    if (steps_per_epoch is NOT_GIVEN or steps_per_epoch is not None or x is None
            or isinstance(x, ParquetSource)):
        return
    if sources.is_dataset(x):
        cardinality = int(x.cardinality().numpy())  # metadata: reads no element
        if cardinality >= 0:
            return
        raise ConfigError(
            "fit(x=dataset): expected a dataset of known length or steps_per_epoch, found "
            f"cardinality {cardinality} ({'infinite' if cardinality == -1 else 'unknown'}, "
            "e.g. after repeat() or filter())", code="GT102",
            fix="pass steps_per_epoch=N (samples per epoch / global batch size)")
    if sources.is_dataset_fn(x):
        raise ConfigError(
            "fit(x=dataset_fn): expected steps_per_epoch, found None: a dataset function "
            "has no length", code="GT102",
            fix="pass steps_per_epoch=N (samples per epoch / global batch size)")


def _resolve_model(model, launch):
    import keras

    if isinstance(model, keras.Model):
        return model, []
    if not callable(model):
        return None, [Problem(codes.NOT_A_MODEL, "model", "a compiled keras.Model, or a "
                              "function returning one", f"{type(model).__name__}",
                              "pass the model, or def build(): ...; return model")]
    if launch.cpu_replicas and launch.cpu_replicas > 1:
        # Building a model fixes TensorFlow's devices: split the CPU first, or the run's
        # MirroredStrategy over logical CPUs could not be made afterwards.
        from guardtrain.engine.devices import split_cpu

        split_cpu(launch.cpu_replicas)
    try:
        built = model()
    except Exception as err:  # the user's builder: report it as a problem, not a crash
        return None, [Problem(codes.NOT_A_MODEL, "model", "a function that returns a "
                              "compiled keras.Model", f"it raised {type(err).__name__}: {err}",
                              "call the function alone to see the failure")]
    if not isinstance(built, keras.Model):
        return None, [Problem(codes.NOT_A_MODEL, "model", "a function that returns a "
                              "compiled keras.Model", f"it returned {type(built).__name__}",
                              "return the model from the function, after model.compile(...)")]
    return built, []


def _complete(model, spec: ModelSpec, inputs: Inputs):
    """Builds an unbuilt model on the data, and reads a subclassed model's output width.

    As ``model.fit`` would on its first batch: a ``Sequential`` is built on the data's
    shape; any other model is called once, on 2 sampled rows, in inference mode.
    """
    import keras

    if (spec.built and spec.outputs) or len(inputs.x) != 1:
        return spec, []
    sample = inputs.x[0][1]
    if not dtypes.is_numeric(sample):
        return spec, []  # reported by the dtype check; calling would only fail
    shape = (None,) + tuple(sample.rows.shape[1:])
    prediction = None
    try:
        if isinstance(model, keras.Sequential):
            model.build(shape)
        else:
            rows = sample.rows[:2]
            prediction = model(rows.astype("float32") if rows.dtype.kind == "f" else rows,
                               training=False)
    except Exception as err:  # Keras says why in its own words; we add where and a fix
        text = str(err).strip()
        first = text.splitlines()[0] if text else type(err).__name__
        return spec, [Problem(
            codes.SHAPE, sample.where, "data the model's first layer accepts",
            f"shape {shape}: building the model on it raised {type(err).__name__}: {first}",
            "start the model with keras.Input(shape=...) of one sample's shape, and feed "
            "that shape")]
    spec = describe(model)
    if not spec.outputs and hasattr(prediction, "shape"):
        loss = loss_spec(getattr(model, "loss", None)) if spec.compiled else None
        output = OutputSpec("output", (None,) + tuple(prediction.shape[1:]), None, loss)
        spec = dataclasses.replace(spec, outputs=(output,))
    return spec, []


def _model_problems(spec: ModelSpec, notes) -> list[Problem]:
    problems = (model_checks.check_compiled(spec) + model_checks.check_trainable(spec)
                + model_checks.check_train_step(spec))
    for output in spec.outputs:
        problems += labels.check_output(output)
    if not spec.outputs:
        notes.append("model outputs unknown (a subclassed model with several inputs or "
                     "outputs): label checks skipped")
    elif any(o.loss is not None and o.loss.kind == "unknown" for o in spec.outputs):
        notes.append("custom loss: labels checked for dtype and values only")
    return problems


def _data_problems(spec: ModelSpec | None, inputs: Inputs, notes) -> list[Problem]:
    problems = []
    input_specs = spec.inputs if spec else ()
    output_specs = spec.outputs if spec else ()
    where_x = inputs.x[0][1].where.split("[")[0] if inputs.x else "x"
    where_y = inputs.y[0][1].where.split("[")[0] if inputs.y else "y"
    x_pairs, found = shapes.pair(input_specs, inputs.x, inputs.structure, where_x)
    problems += found
    for input_spec, sample in x_pairs:
        if input_spec is not None:
            problems += shapes.check_input_shape(input_spec, sample,
                                                 named=len(input_specs) > 1)
        problems += dtypes.check_feature_dtype(sample, input_spec)
        if dtypes.is_numeric(sample):
            problems += values.check_finite(sample)
            problems += values.check_constant(sample)
            if not (input_spec and input_spec.takes_integers):
                problems += values.check_scale(sample)
    if inputs.kind == "arrays":
        problems += shapes.check_sample_counts([s for _, s in inputs.x + inputs.y])
    if not inputs.y:
        return problems
    y_pairs, found = shapes.pair(output_specs, inputs.y, inputs.y_structure, where_y,
                                 what="output")
    problems += found
    for output_spec, sample in y_pairs:
        problems += dtypes.check_label_dtype(sample)
        if not dtypes.is_numeric(sample):
            continue
        problems += values.check_finite(sample, labels=True)
        if output_spec is not None:
            problems += labels.check_labels(output_spec, sample)
    return problems


def _batch_problems(inputs: Inputs, batch_size, replicas) -> list[Problem]:
    if inputs.kind == "dataset":
        # A Dataset's own batch is the global batch; batch_size is ignored, as in Keras.
        return batches.check_batches(inputs.batch, replicas, from_dataset=True)
    if inputs.kind == "dataset_fn":
        # The function batches per replica (input_context.get_per_replica_batch_size).
        return batches.check_batches(batch_size, replicas)
    return batches.check_batches(batch_size, replicas, inputs.n_rows)


def _validation_problems(spec, validation_data, launch, notes) -> list[Problem]:
    if isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
        vx, vy = validation_data[0], validation_data[1]
    else:
        vx, vy = validation_data, None
    inputs, problems = sources.load(vx, vy, model=spec, prefix="validation_data ")
    if inputs is not None:
        problems += _data_problems(spec, inputs, notes)
        problems += dispatch.check_dispatch(inputs, launch, where="validation_data")
    return problems


def _message(errors, warnings) -> str:
    n = len(errors)
    text = f"{n} problem{'s' if n != 1 else ''} with the training inputs:\n"
    text += "\n".join(p.render() for p in errors)
    if warnings:
        m = len(warnings)
        text += f"\n  and {m} warning{'s' if m != 1 else ''}:\n"
        text += "\n".join(p.render() for p in warnings)
    return text
