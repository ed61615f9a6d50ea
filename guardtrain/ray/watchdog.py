"""``Watchdog``: a rank that makes no progress becomes a ``LaunchError`` naming it (GT440).

The collective timeout of ``make_worker_strategy`` catches a rank waiting for a stalled
peer; the watchdog catches the stalled rank itself (docs/architecture.md, "Launch").
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import traceback
from typing import Callable

from guardtrain.core.errors import ConfigError, LaunchError
from guardtrain.ray.worker import worker_context

__all__ = ["Watchdog"]

logger = logging.getLogger(__name__)


class Watchdog:
    """Turns "no progress for ``timeout_s``" on this rank into a ``LaunchError`` (GT440).

    Catches a step, an input pipeline or a report that never returns. Call ``beat()``
    after each chunk; a background thread checks the time since the last beat.

    How the error is delivered, since a thread stuck in a C++ op cannot be interrupted:

    - on a Ray Train worker it is handed to Ray Train the way Ray's own background
      threads report errors (the training thread's exception queue). The controller sees
      it at its next poll, fails the worker group and kills the worker processes, so
      even a step blocked inside TensorFlow ends. The driver receives the GT440 error
      with its rank, and the watched thread's stack in ``details["stack"]``. Like any
      worker error it counts against ``max_failures``.
    - in-process, the watched thread gets a ``KeyboardInterrupt`` (``SIGINT`` for the main
      thread, which also wakes a blocking system call; an asynchronous exception for
      others), which ``__exit__`` turns into the GT440 error. This needs the thread to
      come back to Python: a C++ op that never returns cannot be interrupted in-process.

    Args:
        timeout_s: seconds without a beat that count as a hang; ``None`` disables it.
        rank: named in the error; defaults to ``worker_context().rank``.
        on_timeout: called with the error instead of the delivery above (tests).

    Example:

    >>> with Watchdog(timeout_s=600) as dog:      # doctest: +SKIP
    ...     for chunk in range(chunks):
    ...         run_chunk()
    ...         dog.beat(step=(chunk + 1) * steps_per_chunk)
    """

    def __init__(self, timeout_s: float | None, *, rank: int | None = None,
                 on_timeout: Callable[[LaunchError], None] | None = None):
        if timeout_s is not None and timeout_s <= 0:
            raise ConfigError(f"Watchdog(timeout_s=...): expected None or > 0, found {timeout_s!r}",
                              code="GT101", fix="use timeout_s=600, or None to disable")
        self.timeout_s = timeout_s
        self.rank = worker_context().rank if rank is None else rank
        self.error: LaunchError | None = None
        self._on_timeout = on_timeout
        self._thread_id = threading.get_ident()
        self._last = time.monotonic()
        self._step: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Watchdog":
        """Starts watching the calling thread (no-op when disabled or started)."""
        if self.timeout_s is None or self._thread is not None:
            return self
        self._thread_id = threading.get_ident()
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._watch, daemon=True,
                                        name=f"guardtrain-watchdog-rank{self.rank}")
        self._thread.start()
        return self

    def beat(self, step: int | None = None) -> None:
        """Records progress (cheap: two assignments, no lock)."""
        self._last = time.monotonic()
        self._step = step

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> "Watchdog":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.stop()
        if self.error is not None and isinstance(exc, KeyboardInterrupt):
            raise self.error from exc
        return False

    def _watch(self) -> None:
        poll_s = min(1.0, self.timeout_s / 10)
        while not self._stop.wait(poll_s):
            idle = time.monotonic() - self._last
            if idle >= self.timeout_s:
                self.error = self._make_error(idle)
                logger.error("%s", self.error)
                (self._on_timeout or self._deliver)(self.error)
                return

    def _make_error(self, idle: float) -> LaunchError:
        frame = sys._current_frames().get(self._thread_id)
        stack = "".join(traceback.format_stack(frame)[-12:]) if frame is not None else ""
        where = stack.strip().splitlines()[-2].strip() if stack else "unknown"
        since = "the start" if self._step is None else f"step {self._step}"
        return LaunchError(
            f"rank {self.rank}: no progress for {idle:.0f} s (step_timeout_s="
            f"{self.timeout_s:g}); last progress at {since}; stuck in {where}",
            code="GT440",
            fix=("a stalled rank holds up every other rank: check its input pipeline and the "
                 "stack in details['stack']; raise LaunchConfig(step_timeout_s) if a chunk is "
                 "legitimately this slow"),
            details={"rank": self.rank, "step": self._step, "idle_s": round(idle, 1),
                     "timeout_s": self.timeout_s, "stack": stack})

    def _deliver(self, error: LaunchError) -> None:
        if _hand_to_ray_train(error):
            return
        if self._thread_id == threading.main_thread().ident \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.pthread_kill(self._thread_id, signal.SIGINT)
            return
        import ctypes

        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread_id),
                                                   ctypes.py_object(KeyboardInterrupt))


def _hand_to_ray_train(error: LaunchError) -> bool:
    """Puts ``error`` in Ray Train's exception queue of this worker's training thread."""
    if "ray" not in sys.modules:
        return False
    try:
        # Private Ray Train API (2.60): the same queue its checkpoint-upload thread uses
        # to fail the run eagerly from a background thread.
        from ray.train.v2._internal.exceptions import UserExceptionWithTraceback
        from ray.train.v2._internal.execution.context import get_train_context

        runner = get_train_context().execution_context.training_thread_runner
        runner.get_exception_queue().put(
            UserExceptionWithTraceback(error, traceback_str=f"{error}\n{error.details['stack']}"))
        return True
    except Exception:  # not in a Ray Train worker, or Ray's internals moved
        return False
