"""guardtrain's errors: one shallow tree, a stable code and a ``Fix:`` line each.

```
GuardtrainError                 GT000  base; never raised itself
├── ConfigError                 GT1xx  a config value or a call is wrong
├── InputSpecError              GT2xx  the data does not fit the model (carries .problems)
├── UnhealthyTrainingError      GT3xx  training is unhealthy and rescue is off or cannot help
├── LaunchError                 GT4xx  where it runs: devices, Ray, workers, hangs
└── RescueExhaustedError        GT5xx  every attempt the budget allowed was spent
```

Every error is picklable (``__reduce__``): it crosses back from a Ray worker as itself,
with its code and fields, instead of turning into an unrelated health-check error.

Pure module: no TensorFlow, no Ray.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

__all__ = [
    "GuardtrainError",
    "ConfigError",
    "InputSpecError",
    "UnhealthyTrainingError",
    "LaunchError",
    "RescueExhaustedError",
    "Problem",
]


class GuardtrainError(Exception):
    """Base of every guardtrain error.

    Args:
        message: what was expected and what was found.
        code: stable code, e.g. ``"GT101"``; defaults to the class's ``default_code``.
        fix: one line telling the user what to do.
        details: extra fields kept on the error (e.g. ``rank``, ``verdict``); they must be
            picklable.
    """

    default_code = "GT000"
    exit_code = 1

    def __init__(self, message: str, *, code: str | None = None, fix: str | None = None,
                 details: Mapping[str, Any] | None = None):
        self.message = message
        self.code = code or self.default_code
        self.fix = fix
        self.details = dict(details or {})
        super().__init__(self._render())

    def _render(self) -> str:
        text = f"[{self.code}] {self.message}"
        if self.fix:
            text += f"\n  Fix: {self.fix}"
        return text

    def __getattr__(self, name: str) -> Any:
        # details read as attributes (err.rank, err.verdict) without a class per field.
        details = self.__dict__.get("details", {})
        if name in details:
            return details[name]
        raise AttributeError(name)

    def __reduce__(self):
        return (_rebuild, (type(self), self.message, self.code, self.fix, self.details))


def _rebuild(cls, message, code, fix, details):
    return cls(message, code=code, fix=fix, details=details)


class ConfigError(GuardtrainError, ValueError):
    """A configuration value or an argument of a call is wrong (GT1xx)."""

    default_code = "GT100"
    exit_code = 2


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem found in the inputs.

    Args:
        code: stable code, e.g. ``"GT201"``.
        where: what it is about: ``"x"``, ``"x['image']"``, ``"y"``, ``"model"``, ``"batch_size"``.
        expected: what the model, the loss or the launch needs.
        found: what the data has.
        fix: what to do about it.
        severity: ``"error"`` blocks training; ``"warning"`` is reported and training goes on.
    """

    code: str
    where: str
    expected: str
    found: str
    fix: str
    severity: str = "error"

    def render(self) -> str:
        return (f"  {self.where}: expected {self.expected}; found {self.found}   [{self.code}]\n"
                f"    Fix: {self.fix}")


class InputSpecError(GuardtrainError, ValueError):
    """The training inputs do not fit the model, the loss or the launch (GT2xx).

    ``problems`` lists every blocking problem found, not only the first.
    """

    default_code = "GT200"
    exit_code = 3

    def __init__(self, message: str | None = None, *, problems: Sequence[Problem] = (),
                 code: str | None = None, fix: str | None = None,
                 details: Mapping[str, Any] | None = None):
        self.problems = list(problems)
        if message is None:
            n = len(self.problems)
            message = f"{n} problem{'s' if n != 1 else ''} with the training inputs:\n" + "\n".join(
                p.render() for p in self.problems)
        super().__init__(message, code=code, fix=fix, details=details)

    def __reduce__(self):
        return (_rebuild_input_spec,
                (type(self), self.message, self.problems, self.code, self.fix, self.details))


def _rebuild_input_spec(cls, message, problems, code, fix, details):
    return cls(message, problems=problems, code=code, fix=fix, details=details)


class UnhealthyTrainingError(GuardtrainError, RuntimeError):
    """Training is unhealthy and rescue is off, or the cause is not a hyperparameter (GT3xx)."""

    default_code = "GT300"
    exit_code = 4


class LaunchError(GuardtrainError, RuntimeError):
    """The run could not be placed or kept running: devices, Ray, workers, hangs (GT4xx)."""

    default_code = "GT400"
    exit_code = 5


class RescueExhaustedError(GuardtrainError, RuntimeError):
    """Every attempt the rescue budget allowed was spent (GT5xx).

    ``details["attempts"]`` holds the whole attempt history.
    """

    default_code = "GT500"
    exit_code = 6
