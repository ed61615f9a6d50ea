"""One way to validate a config or a call's arguments: collect every problem, then raise once.

Every ``*Config.__post_init__`` and the JOB reader use it, so a user who got three fields
wrong reads three lines, each with what was expected, what was found and a Fix, in one
``ConfigError`` (docs/architecture.md, "Errors").

Pure module: no TensorFlow, no Ray.

Example:

>>> v = Validator("LaunchConfig", code="GT101")
>>> v.need(is_int(2) and 2 >= 0, "workers", 2, "an int >= 0", "use workers=2")
True
>>> v.raise_if_any()      # nothing wrong: returns
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Iterable

from guardtrain.core.errors import ConfigError, Problem

__all__ = ["Validator", "is_int", "is_number", "is_fraction", "suggest"]


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool`` (``True`` is an int to Python, never to a user)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite ``int`` or ``float`` that is not a ``bool``."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def is_fraction(value: Any) -> bool:
    """A number in (0, 1]."""
    return is_number(value) and 0 < value <= 1


def suggest(key: str, known: Iterable[str]) -> str:
    """``did you mean 'epochs'?`` for a near miss, else the list of known names."""
    known = sorted(str(k) for k in known)
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"use one of: {', '.join(known)}"


class Validator:
    """Collects the problems of one call, then raises one ``ConfigError`` listing them all.

    Args:
        call: how the call is written in messages, e.g. ``"GuardConfig"`` or ``"fit"``;
            a problem about field ``f`` reads ``GuardConfig(f=...)``.
        code: the code of every problem (and of the error).
    """

    def __init__(self, call: str, *, code: str):
        self.call = call
        self.code = code
        self.problems: list[Problem] = []

    def need(self, ok: bool, field: str, found: Any, expected: str, fix: str, *,
             code: str | None = None) -> bool:
        """Records a problem unless ``ok``; returns ``ok`` (to skip dependent checks)."""
        if not ok:
            self.problems.append(Problem(code=code or self.code,
                                         where=f"{self.call}({field}=...)",
                                         expected=expected, found=repr(found), fix=fix))
        return bool(ok)

    def add(self, problem: Problem) -> None:
        """Records a problem built elsewhere (e.g. an unknown key with a suggestion)."""
        self.problems.append(problem)

    def raise_if_any(self, source: str | None = None) -> None:
        """Raises ``ConfigError`` with every recorded problem; one problem's Fix is the
        error's own Fix line."""
        if not self.problems:
            return
        source = source or self.call
        if len(self.problems) == 1:
            p = self.problems[0]
            raise ConfigError(f"{p.where}: expected {p.expected}, found {p.found}",
                              code=p.code, fix=p.fix, details={"problems": self.problems})
        n = len(self.problems)
        lines = "\n".join(p.render() for p in self.problems)
        raise ConfigError(f"{n} problems in {source}:\n{lines}", code=self.problems[0].code,
                          fix="see each problem above", details={"problems": self.problems})
