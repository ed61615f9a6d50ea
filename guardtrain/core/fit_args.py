"""The rules of ``fit``'s own arguments, in one table for the Python API and JOB files.

``gt.fit(epochs=...)`` and a JOB file's ``epochs:`` mean the same thing, so they are
checked by the same rule: ``fit_arg_problems`` returns one ``Problem`` per wrong value,
and each caller gives it its own code and its own way of naming the place (``fit``:
``fit(epochs=...)``, GT108; a JOB file: ``epochs``, GT132). ``batch_size`` is also
checked by ``gt.check`` against the replicas (GT244, GT241, ...); its type and range are
checked here first, so a wrong value stops before anything is sampled. ``as_config``
turns ``fit(launch=/guard=/rescue=...)`` into its config, or says which types it takes.

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

__all__ = ["FitArg", "FIT_ARGS", "fit_arg_defaults", "fit_arg_problems", "as_config"]


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
    FitArg("shuffle", True, lambda v: isinstance(v, bool), "True or False", "shuffle=True",
           "shuffle: true"),
)


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
                                            .replace("True or False", "true or false"))
        problems.append(Problem(
            code=code, where=f"fit({arg.name}=...)" if python else arg.name,
            expected=said, found=_found(values[arg.name]),
            fix=f"use {arg.python if python else arg.yaml}"))
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
