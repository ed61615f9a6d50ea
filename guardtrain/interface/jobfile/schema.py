"""What a JOB file may hold, checked key by key without importing or reading anything.

The top-level keys (``TOP_KEYS``), the ``fit`` arguments, the ``guard``/``rescue``/
``launch`` sections (the config dataclasses' own checks, collected), the model entry and
the data sources (npz, Parquet, ``dataset_fn``) with their shapes. Every problem is
collected; ``guardtrain.interface.jobfile.spec.parse_job`` raises them together.

Pure module: no TensorFlow, no Ray; Keras is imported only to ask whether the optimizers
of a ``rescue.optimizer_ladder`` the file sets exist.

Example:

>>> fit_args, configs, run_dir, problems = check_job({"model": "m:f", "data": {"npz": "d.npz"}})
>>> fit_args["batch_size"], problems
(32, [])
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from guardtrain.core.errors import ConfigError, Problem
from guardtrain.core.fit_args import (FIT_ARGS, fit_arg_defaults, fit_arg_problems,
                                     input_kind_problems)
from guardtrain.core.guard import GuardConfig
from guardtrain.core.launch_config import LaunchConfig
from guardtrain.core.rescue import RescueConfig
from guardtrain.core.validation import suggest
from guardtrain.interface.jobfile.problems import (CODE_BAD_VALUE, CODE_IMPORT, CODE_MISSING,
                                                   CODE_NO_LENGTH, expected, join, stated,
                                                   unknown_keys)

__all__ = ["TOP_KEYS", "IMPORT_PATH", "DATA_KINDS", "check_job"]

#: Top-level keys and what each holds (also the ``--help`` text of the format).
TOP_KEYS = {
    "model": "import path 'module:function' of a function returning a compiled keras.Model, "
             "or {builder: ..., args: {...}}",
    "data": "the training data: {npz: ..., x: ..., y: ...}, {parquet: ..., features: [...], "
            "label: ...} or {dataset_fn: 'module:function', args: {...}}",
    "validation": "optional validation data: {npz: ...} or {parquet: ...}",
    "batch_size": "global batch size (32)",
    "epochs": "epochs (1)",
    "steps_per_epoch": "steps per epoch (one pass over the data; required with dataset_fn)",
    "steps_per_loop": "steps per tf.function call and per guard verdict (50)",
    "shuffle": "reshuffle array data every epoch (true), or 'batch' (within each batch)",
    "validation_split": "npz data: the last fraction of the rows validates (0.0)",
    "validation_batch_size": "batch size of validation (batch_size)",
    "validation_steps": "validation batches per evaluation (all)",
    "validation_freq": "validate after every N-th epoch, or after a list of epochs (1)",
    "initial_epoch": "the epoch to start at, as model.fit numbers them (0)",
    "class_weight": "npz data: {class id: weight}, each row's loss weighed by its class",
    "run_dir": "where the run's files go (guardtrain_runs/<time>-<id> in the current folder)",
    "guard": "GuardConfig fields, or false to record statistics without judging",
    "rescue": "RescueConfig fields, or false to stop at the first unhealthy verdict",
    "launch": "LaunchConfig fields (workers, cpu_replicas, gpus_per_worker, address, ...)",
    "description": "free text, for people",
}
#: ``module.sub:function.attr``, checked before anything is imported.
IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
#: The data sources, in the order a ``data`` mapping is searched for one.
DATA_KINDS = ("npz", "parquet", "dataset_fn")

_REQUIRED = ("model", "data")
_DATA_KEYS = {
    "npz": ("npz", "x", "y"),
    "parquet": ("parquet", "features", "label", "feature_dtype"),
    "dataset_fn": ("dataset_fn", "args"),
}
_MODEL_KEYS = ("builder", "args")
_SECTIONS = {"guard": GuardConfig, "rescue": RescueConfig, "launch": LaunchConfig}
# The fit arguments: the rules of gt.fit's own arguments, one table for both
# (guardtrain.core.fit_args); a JOB file reports them as GT132.
_FIT_ARG_NAMES = tuple(arg.name for arg in FIT_ARGS)


def check_job(raw: Mapping[str, Any]
              ) -> tuple[dict[str, Any], dict[str, Any], str | None, list[Problem]]:
    """Checks every key and value of a JOB file's mapping.

    Args:
        raw: the file's content, overrides applied.

    Returns:
        ``(fit_args, configs, run_dir, problems)``: the ``fit`` arguments with their
        defaults, ``{"guard": ..., "rescue": ..., "launch": ...}`` (``False`` for a
        section set to false; the default config where a section is wrong), the
        ``run_dir`` text or ``None``, and every problem found.
    """
    # sample_weight is model.fit's, but a JOB file has no way to name the weights yet:
    # refused with gt.fit's code for an unsupported argument, not as a misspelling.
    problems = unknown_keys({k: v for k, v in raw.items() if k != "sample_weight"},
                            TOP_KEYS, "")
    if "sample_weight" in raw:
        problems.append(stated("GT113", "sample_weight", "not supported in a JOB file yet "
                               "(training without it would differ from model.fit)",
                               "use class_weight: {...}, or call gt.fit(..., "
                               "sample_weight=w) from Python"))
    problems += [stated(CODE_MISSING, key, "required key missing",
                        f"add {key}: " + TOP_KEYS[key].split(",")[0])
                 for key in _REQUIRED if key not in raw]
    fit_args = _fit_args(raw, problems)
    if "model" in raw:
        _check_callable_entry(raw["model"], "model", _MODEL_KEYS, "builder", problems)
    if "data" in raw:
        _check_data(raw["data"], "data", problems, training=True)
    if raw.get("validation") is not None:
        _check_data(raw["validation"], "validation", problems, training=False)
    if raw.get("description") is not None and not isinstance(raw["description"], str):
        problems.append(expected(CODE_BAD_VALUE, "description", "text", raw["description"],
                                 "quote it: description: '...'"))
    _needs_steps(raw, fit_args, problems)
    _fits_the_data(raw, fit_args, problems)
    configs = {name: _section(raw, name, cls, problems) for name, cls in _SECTIONS.items()}
    _known_optimizers(raw, configs, problems)
    run_dir = raw.get("run_dir")
    if run_dir is not None and not isinstance(run_dir, str):
        problems.append(expected(CODE_BAD_VALUE, "run_dir", "a path", run_dir,
                                 "run_dir: runs/tiny"))
        run_dir = None
    return fit_args, configs, run_dir, problems


def _fit_args(raw, problems) -> dict:
    out = {**fit_arg_defaults(), **{k: raw[k] for k in _FIT_ARG_NAMES if k in raw}}
    problems += fit_arg_problems(out, code=CODE_BAD_VALUE, style="yaml")
    return out


def _fits_the_data(raw, fit_args, problems) -> None:
    """validation_split and class_weight take npz data only: the refusals gt.fit gives
    (GT113/GT114, ``core.fit_args.input_kind_problems``), at parse time."""
    data = raw.get("data")
    kinds = {"npz": "arrays", "parquet": "parquet", "dataset_fn": "dataset_fn"}
    found = [kinds[k] for k in DATA_KINDS if isinstance(data, dict) and k in data]
    if len(found) != 1:
        return      # the data's own problem is reported by _check_data
    problems += input_kind_problems(
        found[0], validation_split=fit_args.get("validation_split"),
        validation_data=raw.get("validation") is not None,
        class_weight=fit_args.get("class_weight") is not None,
        labels=data.get("y", "y") is not None, style="yaml")


def _needs_steps(raw, fit_args, problems) -> None:
    """A dataset function has no length: without steps_per_epoch the run would stop at
    its start (GT102, the code ``gt.fit`` and ``gt.check`` give it too)."""
    data = raw.get("data")
    if isinstance(data, dict) and "dataset_fn" in data and fit_args["steps_per_epoch"] is None:
        problems.append(stated(CODE_NO_LENGTH, "steps_per_epoch",
                               "missing: data.dataset_fn has no length, so an epoch needs "
                               "a step count", "add steps_per_epoch: N (samples per epoch "
                               "/ batch_size)"))


def _known_optimizers(raw, configs, problems) -> None:
    """Each optimizer on the ladder resolves in Keras (GT122). Only a ladder the file
    sets is asked about: the default one is Keras's own names, and asking imports Keras."""
    rescue = raw.get("rescue")
    if (isinstance(rescue, dict) and "optimizer_ladder" in rescue
            and configs["rescue"] is not False):
        from guardtrain.checking.optimizers import ladder_problems

        problems += ladder_problems(configs["rescue"].optimizer_ladder,
                                    where="rescue.optimizer_ladder")


def _check_import_path(value, where, problems) -> bool:
    if isinstance(value, str) and IMPORT_PATH.match(value.strip()):
        return True
    problems.append(expected(
        CODE_IMPORT, where, "an import path 'package.module:function'", value,
        "name the module and the function with a colon, e.g. 'tiny_model:build_model' (a "
        "module beside the JOB file) or 'mypackage.models:build'"))
    return False


def _check_callable_entry(value, where, keys, path_key, problems) -> None:
    """``"mod:fn"`` or ``{<path_key>: "mod:fn", args: {...}}``."""
    if isinstance(value, dict):
        problems += unknown_keys(value, keys, where)
        if path_key not in value:
            problems.append(stated(CODE_MISSING, join(where, path_key),
                                   "required key missing", f"add {path_key}: 'module:function'"))
        else:
            _check_import_path(value[path_key], join(where, path_key), problems)
        _check_args(value.get("args"), join(where, "args"), problems)
    else:
        _check_import_path(value, where, problems)


def _check_args(args, where, problems) -> None:
    if args is not None and not (isinstance(args, dict)
                                 and all(isinstance(k, str) for k in args)):
        problems.append(expected(CODE_BAD_VALUE, where, "a mapping of keyword arguments",
                                 args, "args: {units: 64}"))


def _data_kind(value, where, problems, training: bool) -> str | None:
    kinds = DATA_KINDS if training else ("npz", "parquet")
    if not isinstance(value, dict):
        problems.append(expected(CODE_BAD_VALUE, where, "a mapping", value,
                                 f"{where}: {{npz: data.npz, x: x, y: y}}"))
        return None
    present = [k for k in kinds if k in value]
    if len(present) == 1:
        return present[0]
    if not present:
        unknown = [k for k in value if k not in {k2 for ks in _DATA_KEYS.values() for k2 in ks}]
        if not training and "dataset_fn" in value:
            problems.append(stated(CODE_BAD_VALUE, join(where, "dataset_fn"),
                                   "not supported for validation data",
                                   "give validation data as npz or parquet"))
            return None
        hint = suggest(unknown[0], kinds) if unknown else f"add one of: {', '.join(kinds)}"
        problems.append(Problem(code=CODE_MISSING, where=where,
                                expected=f"one data source ({', '.join(kinds)})",
                                found="none", fix=hint))
        return None
    problems.append(Problem(code=CODE_BAD_VALUE, where=where, expected="one data source",
                            found=", ".join(present), fix=f"keep one of {', '.join(present)}"))
    return None


def _names_ok(xs) -> bool:
    """An array name, a list of names, or ``{input: name}``."""
    if isinstance(xs, str):
        return True
    if isinstance(xs, list):
        return bool(xs) and all(isinstance(k, str) for k in xs)
    if isinstance(xs, dict):
        return bool(xs) and all(isinstance(k, str) for k in xs.values())
    return False


def _check_data(value, where, problems, training: bool) -> None:
    kind = _data_kind(value, where, problems, training)
    if kind is None:
        return
    problems += unknown_keys(value, _DATA_KEYS[kind], where)
    if kind == "dataset_fn":
        _check_import_path(value["dataset_fn"], join(where, "dataset_fn"), problems)
        _check_args(value.get("args"), join(where, "args"), problems)
        return
    source = value[kind]
    if not isinstance(source, str) or not source:
        problems.append(expected(CODE_BAD_VALUE, join(where, kind), "a path", source,
                                 f"{kind}: data/train.{kind}"))
    if kind == "npz":
        xs = value.get("x", "x")
        if not _names_ok(xs):
            problems.append(expected(CODE_BAD_VALUE, join(where, "x"),
                                     "an array name, a list of names or {input: name}", xs,
                                     "x: x_train"))
        ys = value.get("y", "y")
        if ys is not None and not isinstance(ys, str):
            problems.append(expected(CODE_BAD_VALUE, join(where, "y"),
                                     "an array name or null", ys, "y: y_train"))
        return
    features = value.get("features")
    if features is None:
        problems.append(stated(CODE_MISSING, join(where, "features"), "required key missing",
                               "features: [a, b, c]  (or the name of one list column)"))
    elif not (isinstance(features, str) or (isinstance(features, list) and features
                                            and all(isinstance(f, str) for f in features))):
        problems.append(expected(CODE_BAD_VALUE, join(where, "features"),
                                 "a column name or a list of them", features,
                                 "features: [a, b, c]"))
    label = value.get("label")
    if label is not None and not isinstance(label, str):
        problems.append(expected(CODE_BAD_VALUE, join(where, "label"), "a column name", label,
                                 "label: y"))


def _section(raw, name, cls, problems):
    """A config section -> the dataclass (``False`` for ``guard: false``/``rescue: false``)."""
    value = raw.get(name)
    if value is None or value is True:
        value = {}
    if value is False and name in ("guard", "rescue"):
        return False
    fields = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(value, dict):
        problems.append(expected(
            CODE_BAD_VALUE, name,
            f"a mapping of {cls.__name__} fields{' or false' if name != 'launch' else ''}",
            value, f"{name}: {{...}}  (fields: {', '.join(fields)})"))
        return cls()
    unknown = unknown_keys(value, fields, name)
    if unknown:
        problems += unknown
        return cls()
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    try:
        return cls(**kwargs)
    except ConfigError as err:   # the dataclass's own message, quoting the call
        problems.append(stated(err.code, name, err.message, err.fix or "see the message"))
    except (TypeError, ValueError) as err:
        problems.append(stated(CODE_BAD_VALUE, name, str(err), "see the message"))
    return cls()
