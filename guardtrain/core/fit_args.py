"""The rules of ``fit``'s own arguments, in one table for the Python API and JOB files.

``gt.fit(epochs=...)`` and a JOB file's ``epochs:`` mean the same thing, so they are
checked by the same rule: ``fit_arg_problems`` returns one ``Problem`` per wrong value,
and each caller gives it its own code and its own way of naming the place (``fit``:
``fit(epochs=...)``, GT108; a JOB file: ``epochs``, GT132). ``batch_size`` is also
checked by ``gt.check`` against the replicas (GT244, GT241, ...); its type and range are
checked here first, so a wrong value stops before anything is sampled. ``as_config``
turns ``fit(launch=/guard=/rescue=...)`` into its config, or says which types it takes.

``gt.fit`` takes every keyword of Keras 3's ``model.fit`` (``KERAS_FIT_KEYWORDS``) with its
meaning, or refuses it before anything starts: a keyword it does not know is GT112
(``unknown_keyword_error``, with the nearest known one); an argument that depends on what
``x`` is (``input_kind_problems``) is GT113 where guardtrain does not support it yet with
that input, GT114 where ``model.fit`` refuses it too. Never a silent difference.

Pure module: no TensorFlow, no Ray.

Example:

>>> [p.where for p in fit_arg_problems({"epochs": 0, "batch_size": "32"}, code="GT108")]
['fit(batch_size=...)', 'fit(epochs=...)']
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Callable, Mapping

import numpy as np

from guardtrain.core.errors import ConfigError, Problem
from guardtrain.core.validation import is_int, suggest

__all__ = ["FitArg", "FIT_ARGS", "KERAS_FIT_KEYWORDS", "INPUT_KINDS", "fit_arg_defaults",
           "fit_arg_problems", "unknown_keyword_error", "input_kind_problems", "as_config"]


@dataclasses.dataclass(frozen=True)
class FitArg:
    """The rule of one argument.

    Args:
        name: the argument (and the JOB key).
        default: its value when not given.
        ok: whether a value is allowed.
        expected: what is allowed, for messages.
        python: an example of a right call, for a Fix line of the Python API.
        yaml: the same in a JOB file.
    """

    name: str
    default: Any
    ok: Callable[[Any], bool]
    expected: str
    python: str
    yaml: str


def _count(value) -> bool:
    # NumPy's integers count too (an epoch count computed from an array is an np.int64),
    # as they do in model.fit; a bool never does.
    integral = is_int(value) or (isinstance(value, numbers.Integral)
                                 and not isinstance(value, (bool, np.bool_)))
    return integral and value >= 1


def _count_or_none(value) -> bool:
    return value is None or _count(value)


def _integral(value) -> bool:
    return is_int(value) or (isinstance(value, numbers.Integral)
                             and not isinstance(value, (bool, np.bool_)))


def _epoch_index(value) -> bool:
    return _integral(value) and value >= 0


def _split(value) -> bool:
    # model.fit takes the last fraction of the rows; 1.0 would leave none to train on.
    return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
            and 0 <= value < 1)


def _freq(value) -> bool:
    # Keras 3: an int N (validate after every N-th epoch) or a list of 1-based epochs.
    if isinstance(value, (list, tuple)):
        return len(value) > 0 and all(_count(v) for v in value)
    return _count(value)


def _class_weight(value) -> bool:
    # Keras looks each label up as class_weight.get(int(label), 1.0): a key "1" (a str)
    # would never match and weigh nothing, silently; refused here instead.
    return value is None or (isinstance(value, Mapping) and all(
        _integral(k) and k >= 0 for k in value) and all(
        isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
        and np.isfinite(v) for v in value.values()))


# In the order of ``gt.fit``'s signature. A bool is never a count (True == 1 to Python),
# and neither is 2.0 or "2": a count that is not an integer is a slip worth naming.
FIT_ARGS: tuple[FitArg, ...] = (
    FitArg("batch_size", 32, _count, "an int >= 1", "batch_size=64",
           "batch_size: 64"),
    FitArg("epochs", 1, _count, "an int >= 1", "epochs=3", "epochs: 3"),
    FitArg("steps_per_epoch", None, _count_or_none, "None or an int >= 1",
           "steps_per_epoch=100", "steps_per_epoch: 100"),
    FitArg("steps_per_loop", None, _count_or_none, "None or an int >= 1",
           "steps_per_loop=50", "steps_per_loop: 50"),
    # "batch": model.fit's shuffle within each batch (the batches keep their order).
    FitArg("shuffle", True, lambda v: isinstance(v, bool) or v == "batch",
           "True, False or 'batch'", "shuffle=True", "shuffle: true"),
    # model.fit's own, with its meaning (README, "Use": which ones, and what is refused).
    FitArg("validation_split", 0.0, _split, "a number in [0, 1)", "validation_split=0.2",
           "validation_split: 0.2"),
    FitArg("validation_batch_size", None, _count_or_none, "None or an int >= 1",
           "validation_batch_size=256", "validation_batch_size: 256"),
    FitArg("validation_steps", None, _count_or_none, "None or an int >= 1",
           "validation_steps=10", "validation_steps: 10"),
    FitArg("validation_freq", 1, _freq, "an int >= 1 or a list of epochs (1-based)",
           "validation_freq=2", "validation_freq: 2"),
    FitArg("initial_epoch", 0, _epoch_index, "an int >= 0", "initial_epoch=3",
           "initial_epoch: 3"),
    FitArg("class_weight", None, _class_weight,
           "None or a mapping of class ids (ints >= 0) to numbers",
           "class_weight={0: 1.0, 1: 5.0}", "class_weight: {0: 1.0, 1: 5.0}"),
)

#: ``model.fit``'s keywords after ``x`` and ``y``, in its positional order: ``gt.fit``
#: takes each (positionally too), with ``model.fit``'s meaning or a coded refusal.
KERAS_FIT_KEYWORDS: tuple[str, ...] = (
    "batch_size", "epochs", "verbose", "callbacks", "validation_split", "validation_data",
    "shuffle", "class_weight", "sample_weight", "initial_epoch", "steps_per_epoch",
    "validation_steps", "validation_batch_size", "validation_freq")

#: The kinds of ``x`` the combination rules tell apart (``input_kind_problems``).
INPUT_KINDS = ("arrays", "dataset", "dataset_fn", "parquet")


def fit_arg_defaults() -> dict[str, Any]:
    """``{"batch_size": 32, "epochs": 1, ...}``: every argument's default."""
    return {arg.name: arg.default for arg in FIT_ARGS}


def _found(value) -> str:
    # '2' (a str) reads as a number in a message unless its type is said.
    if isinstance(value, (str, bool, float)):
        return f"{value!r} ({type(value).__name__})"
    return repr(value)


def fit_arg_problems(values: Mapping[str, Any], *, code: str,
                     style: str = "python") -> list[Problem]:
    """One ``Problem`` per argument of ``values`` its rule refuses.

    Args:
        values: argument name -> value; names without a rule are not looked at.
        code: the code of every problem (GT108 for ``fit``, GT132 for a JOB file).
        style: ``"python"`` names the place ``fit(epochs=...)`` and writes the Fix as a
            call; ``"yaml"`` names it ``epochs`` and writes the Fix as a JOB line.
    """
    if style not in ("python", "yaml"):
        raise ValueError(f"fit_arg_problems(style={style!r}): expected 'python' or 'yaml'")
    problems = []
    for arg in FIT_ARGS:
        if arg.name not in values or arg.ok(values[arg.name]):
            continue
        python = style == "python"
        # The same rule in each language's words: None/True in Python, null/true in YAML.
        said = arg.expected if python else (arg.expected.replace("None", "null")
                                            .replace("True, False", "true, false"))
        problems.append(Problem(
            code=code, where=f"fit({arg.name}=...)" if python else arg.name,
            expected=said, found=_found(values[arg.name]),
            fix=f"use {arg.python if python else arg.yaml}"))
    return problems


def unknown_keyword_error(unknown, known, *, call: str = "fit") -> ConfigError:
    """The ``ConfigError`` (GT112) for keywords ``call`` does not take, each with the
    nearest known one: a misspelt ``validaton_split`` must not end in a bare TypeError.

    Args:
        unknown: the keywords given that ``call`` does not know.
        known: every keyword it takes.
    """
    unknown = sorted(unknown)
    fixes = [f"{k}: {suggest(k, known)}" for k in unknown]
    return ConfigError(
        f"{call}() got the unknown keyword{'s' if len(unknown) > 1 else ''} "
        f"{', '.join(repr(k) for k in unknown)}: expected one of model.fit's arguments or "
        f"guardtrain's own ({', '.join(sorted(known))})", code="GT112",
        fix="; ".join(fixes), details={"unknown": unknown})


# What each refused pairing of an argument with an input kind says: (code, why, fix).
# ConfigError codes (a Problem is only the list's line): model.fit refuses it too, or
# model.fit takes it and guardtrain does not yet.
REFUSED_BY_KERAS = "GT114"
UNSUPPORTED = "GT113"
_WEIGHTS_IN_DATA = ("yield (x, y, sample_weight) batches from the {what}: the loop "
                    "passes the third element to the loss and the metrics as model.fit does")
_READ_ARRAYS = ("read the Parquet data into arrays (x, y = source.read_numpy()) and pass "
                "them as x and y")
_KIND_RULES = {
    ("validation_split", "dataset"): (
        REFUSED_BY_KERAS, "model.fit splits only arrays",
        "pass validation_data=... (e.g. ds.take(k) for validation and ds.skip(k) to train)"),
    ("validation_split", "dataset_fn"): (
        UNSUPPORTED, "a dataset function has no rows to split",
        "pass validation_data=(x_val, y_val) or a Parquet source"),
    ("validation_split", "parquet"): (
        UNSUPPORTED, "a Parquet source is not split yet",
        "pass validation_data=gt.data.parquet(<validation files>, ...), or " + _READ_ARRAYS),
    ("sample_weight", "dataset"): (
        REFUSED_BY_KERAS, "model.fit takes no sample_weight with a dataset",
        _WEIGHTS_IN_DATA.format(what="dataset")),
    ("sample_weight", "dataset_fn"): (
        UNSUPPORTED, "a dataset function's weights are not read from an argument",
        _WEIGHTS_IN_DATA.format(what="function's dataset")),
    ("sample_weight", "parquet"): (UNSUPPORTED, "Parquet sources carry no weights yet",
                                   _READ_ARRAYS),
    ("class_weight", "dataset"): (
        UNSUPPORTED, "class weights are applied to arrays only, so far",
        "map the dataset to (x, y, sample_weight): w = tf.constant([w0, w1, ...]); "
        "ds.map(lambda x, y: (x, y, tf.gather(w, y)))"),
    ("class_weight", "dataset_fn"): (
        UNSUPPORTED, "class weights are applied to arrays only, so far",
        "map the function's dataset to (x, y, sample_weight): "
        "ds.map(lambda x, y: (x, y, tf.gather(w, y)))"),
    ("class_weight", "parquet"): (UNSUPPORTED, "class weights are applied to arrays only, so far",
                                  _READ_ARRAYS),
}


def input_kind_problems(kind: str, *, validation_split=0.0, validation_data: bool = False,
                        class_weight: bool = False, sample_weight: bool = False,
                        labels: bool = True, style: str = "python") -> list[Problem]:
    """The refusals of ``model.fit`` arguments that depend on what ``x`` is.

    Args:
        kind: one of ``INPUT_KINDS``.
        validation_split: the value given; it counts only without ``validation_data``
            (model.fit ignores it then).
        validation_data, class_weight, sample_weight, labels: whether each was given
            (``labels``: a ``y``, for array inputs).
        style: ``"python"`` (``fit(class_weight=...)``) or ``"yaml"`` (``class_weight``).

    Returns:
        One ``Problem`` per refusal: GT114 where ``model.fit`` refuses too, GT113 where it
        does not and training without the argument would differ from it.
    """
    if kind not in INPUT_KINDS:
        raise ValueError(f"input_kind_problems(kind={kind!r}): expected one of {INPUT_KINDS}")
    named = (lambda n: f"fit({n}=...)") if style == "python" else (lambda n: n)
    found = {"arrays": "arrays", "dataset": "a tf.data.Dataset",
             "dataset_fn": "a dataset function", "parquet": "a Parquet source"}[kind]
    given = {"validation_split": bool(validation_split) and not validation_data,
             "sample_weight": sample_weight, "class_weight": class_weight}
    problems = []
    for name in ("validation_split", "class_weight", "sample_weight"):
        rule = _KIND_RULES.get((name, kind))
        if given[name] and rule is not None:
            code, why, fix = rule
            problems.append(Problem(code=code, where=named(name),
                                    expected=f"array inputs ({why})", found=f"x is {found}",
                                    fix=fix))
    if class_weight and sample_weight:
        problems.append(Problem(
            code=REFUSED_BY_KERAS, where=named("class_weight"),
            expected="class_weight or sample_weight (model.fit refuses both at once)",
            found="both", fix="fold the class weights into the sample weights: "
                              "sample_weight * np.array([class_weight.get(int(c), 1.0) "
                              "for c in y])"))
    if kind == "arrays" and not labels and (class_weight or sample_weight):
        which = "class_weight" if class_weight else "sample_weight"
        problems.append(Problem(
            code=REFUSED_BY_KERAS, where=named(which), expected="labels y to weigh (model.fit "
                                                         "cannot weigh without them either)",
            found="y=None", fix=f"pass y, or train without {which}"))
    return problems


def as_config(value, cls, name: str, code: str, *, off: bool, call: str = "fit"):
    """``value`` as a ``cls``: an instance as is, a dict of its fields built into one
    (the form a JOB file gives), ``None``/``True`` the defaults; ``False`` kept when the
    section can be off (``guard``, ``rescue``).

    Args:
        value: what the caller passed as ``fit(<name>=...)``.
        cls: the config class (``LaunchConfig``, ``GuardConfig``, ``RescueConfig``).
        name: the argument's name, for messages.
        code: the code of a value of the wrong type or a dict with an unknown key; a
            wrong field value gets the config's own code from its ``__post_init__``.
        off: whether ``False`` turns the section off.
        call: the function named in messages (``fit``, ``check``).

    Raises:
        ConfigError: naming the types accepted, or the unknown keys with the nearest field.
    """
    if value is None or value is True:
        return cls()
    if value is False and off:
        return False
    if isinstance(value, cls):
        return value
    accepted = f"a {cls.__name__}, a dict of its fields" + (", True, None or False" if off
                                                            else " or None")
    if not isinstance(value, dict):
        raise ConfigError(f"{call}({name}=...): expected {accepted}, found "
                          f"{type(value).__name__} {value!r}", code=code,
                          fix=f"pass {name}={cls.__name__}(...)"
                              + (f" or {name}=False" if off else ""))
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in value if k not in fields]
    if unknown:
        raise ConfigError(f"{call}({name}={{...}}): expected {cls.__name__} fields, found "
                          f"the unknown key{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(repr(k) for k in unknown)}", code=code,
                          fix=suggest(unknown[0], fields))
    return cls(**value)  # the config's own checks: every wrong field in one ConfigError
