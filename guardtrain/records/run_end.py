"""How a run ends, in its record: the ``end`` event's status and reason, written whatever
stopped the run.

A run ends ``completed`` (the loop finished), ``failed`` (an exception: a verdict, a
Keras error, a callback, a full disk), ``interrupted`` (Ctrl-C, ``KeyboardInterrupt``) or
``terminated`` (SIGTERM from a scheduler, turned into ``Terminated`` so that it unwinds
like Ctrl-C). Both runners write the history so far and the ``end`` event on every one
of these paths, best effort: a record that cannot be written (a full disk) is said on the
log and in the error's notes, and never replaces the error that ended the run
(docs/architecture.md, "Files on disk").

Example:

>>> with sigterm_raises():                       # doctest: +SKIP
...     try:
...         loop.run()
...     except BaseException as err:
...         end_fields(err)                      # {"status": "interrupted", ...}
...         raise
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from typing import Any, Callable, Iterator

__all__ = ["Terminated", "STATUSES", "status_of", "end_fields", "sigterm_raises",
           "write_best_effort", "describe_nonfinite"]

logger = logging.getLogger(__name__)

#: Every status an ``end`` event can carry.
STATUSES = ("completed", "failed", "interrupted", "terminated")


class Terminated(BaseException):
    """The process received SIGTERM (a scheduler's stop, ``kill``).

    A ``BaseException``, as ``KeyboardInterrupt`` is: ``except Exception`` in user code
    does not swallow it, and the run unwinds through its ``finally`` blocks.
    """

    def __init__(self, signum: int = signal.SIGTERM):
        self.signum = int(signum)
        super().__init__(f"received {signal.Signals(self.signum).name}")

    def __reduce__(self):
        return (Terminated, (self.signum,))


def status_of(err: BaseException | None) -> str:
    """``completed`` for no error, else ``interrupted``, ``terminated`` or ``failed``."""
    if err is None:
        return "completed"
    if isinstance(err, KeyboardInterrupt):
        return "interrupted"
    if isinstance(err, Terminated):
        return "terminated"
    return "failed"


def end_fields(err: BaseException | None) -> dict[str, Any]:
    """The ``end`` event's ``status`` and, for an error, its ``error``: type, code, message."""
    fields: dict[str, Any] = {"status": status_of(err)}
    if err is not None:
        message = getattr(err, "message", None) or str(err) or type(err).__name__
        fields["error"] = {"type": type(err).__name__, "code": getattr(err, "code", None),
                           "message": str(message)}
    return fields


def write_best_effort(what: str, write: Callable[[], Any],
                      err: BaseException | None = None) -> bool:
    """Runs ``write``; a failure is logged, printed to stderr and, when an error is
    ending the run, added to its notes, so that error is still the one raised.

    Returns:
        Whether the write succeeded.
    """
    try:
        write()
        return True
    except Exception as failure:   # noqa: BLE001 - the run's own error matters more
        note = (f"guardtrain could not write the {what} of this run: "
                f"{type(failure).__name__}: {failure}")
        logger.error("%s", note)
        print(note, file=sys.stderr, flush=True)
        if err is not None and hasattr(err, "add_note"):
            err.add_note(note)
        return False


@contextlib.contextmanager
def sigterm_raises(*, only_if_default: bool = True) -> Iterator[bool]:
    """For the block's duration, SIGTERM raises ``Terminated`` in the main thread.

    Args:
        only_if_default: leave a handler the process installed itself (a framework, a
            scheduler's wrapper) in place; take over only from the default one.

    Yields:
        Whether the handler was installed (not in another thread, nor over another one).
    """
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    saved = signal.getsignal(signal.SIGTERM)
    if only_if_default and saved is not signal.SIG_DFL:
        yield False
        return

    def _raise(signum, frame):
        raise Terminated(signum)

    signal.signal(signal.SIGTERM, _raise)
    try:
        yield True
    finally:
        signal.signal(signal.SIGTERM, saved if saved is not None else signal.SIG_DFL)


def describe_nonfinite(info: dict[str, Any]) -> str:
    """One phrase for the fields of a ``nonfinite`` record (the log, ``Result.summary``
    and the report all say it the same way)."""
    parts = []
    if info.get("steps"):
        parts.append(f"{info['steps']} non-finite step{'s' if info['steps'] != 1 else ''}, "
                     f"the first at step {info.get('first_step')}")
    if not info.get("final_weights_finite", True):
        back = info.get("rolled_back_to")
        parts.append("non-finite final weights" + (
            f", rolled back to the snapshot of step {back}" if back is not None else ""))
    return "; ".join(parts) or "a non-finite value"
