"""The problems of a JOB file: their codes, and the one ``ConfigError`` that lists them.

Every reader of the file (the schema checks, the import of the builder, the data) adds
``guardtrain.core.errors.Problem``s to one list and raises once, so a user who got three
keys wrong reads three lines (docs/architecture.md, "Errors").

Codes (``ConfigError``, exit code 2):

  GT130  the JOB file cannot be read: missing, not YAML, a duplicate key, not a mapping
  GT131  an unknown key (with the nearest known key)
  GT132  a value of the wrong type or out of range
  GT133  a required key is missing (``model``, ``data``, a data source)
  GT134  an import path that is malformed, or whose module or attribute is not found
  GT135  a ``--set key=value`` that is malformed or goes through a non-mapping
  GT136  a data file or an array in it is missing or unreadable

and, with the code ``gt.fit`` gives the same mistake:

  GT101/GT110/GT120  a launch/guard/rescue field the config itself refuses
  GT102  a ``dataset_fn`` without ``steps_per_epoch``
  GT122  an optimizer on ``rescue.optimizer_ladder`` that Keras does not know

Pure module: no TensorFlow, no Ray.
"""

from __future__ import annotations

import traceback
from typing import Any, Iterable, Mapping, Sequence

from guardtrain.core.errors import ConfigError, Problem
from guardtrain.core.validation import suggest

__all__ = ["CODE_UNREADABLE", "CODE_UNKNOWN_KEY", "CODE_BAD_VALUE", "CODE_MISSING",
           "CODE_IMPORT", "CODE_OVERRIDE", "CODE_DATA", "CODE_NO_LENGTH", "expected", "stated",
           "unknown_keys", "join", "raise_problems", "first_line"]

CODE_UNREADABLE = "GT130"
CODE_UNKNOWN_KEY = "GT131"
CODE_BAD_VALUE = "GT132"
CODE_MISSING = "GT133"
CODE_IMPORT = "GT134"
CODE_OVERRIDE = "GT135"
CODE_DATA = "GT136"
CODE_NO_LENGTH = "GT102"


def expected(code: str, where: str, what: str, found: Any, fix: str) -> Problem:
    """``where: expected <what>, found <found repr>``."""
    return Problem(code=code, where=where, expected=what, found=repr(found), fix=fix)


def stated(code: str, where: str, statement: str, fix: str) -> Problem:
    """A problem said in one phrase (``unknown key``, ``no file 'd.npz'``): it has no
    ``expected`` side, and ``found`` holds the phrase."""
    return Problem(code=code, where=where, expected="", found=statement, fix=fix)


def unknown_keys(mapping: Mapping, known: Iterable[str], where: str) -> list[Problem]:
    """One GT131 per key of ``mapping`` not in ``known``, with the nearest known key."""
    known = list(known)
    return [stated(CODE_UNKNOWN_KEY, join(where, key), "unknown key", suggest(key, known))
            for key in mapping if key not in known]


def join(where: str, key) -> str:
    """``data`` + ``x`` -> ``data.x``: where a key sits in the file."""
    return f"{where}.{key}" if where else str(key)


def _line(p: Problem) -> str:
    said = f"expected {p.expected}, found {p.found}" if p.expected else p.found
    return f"  {p.where}: {said}   [{p.code}]"


def raise_problems(problems: Sequence[Problem], source: str) -> None:
    """Raises one ``ConfigError`` listing every problem; returns when there is none.

    The error's code is the first problem's; with one problem, its Fix is the error's.
    """
    if not problems:
        return
    n = len(problems)
    if n == 1:
        p = problems[0]
        raise ConfigError(f"1 problem in {source}:\n{_line(p)}", code=p.code, fix=p.fix)
    lines = "\n".join(f"{_line(p)}\n    Fix: {p.fix}" for p in problems)
    raise ConfigError(f"{n} problems in {source}:\n{lines}", code=problems[0].code)


def first_line(err: BaseException) -> str:
    """``ValueError: bad thing``: an exception in one line, for a problem's message."""
    lines = traceback.format_exception_only(type(err), err)
    return " ".join(lines[-1].split()) if lines else type(err).__name__
