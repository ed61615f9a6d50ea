"""The worker's side of a Ray Train run: where it sits, its strategy, and the wrapper that
sends what it raises back to the driver intact.

In this order inside a training function (``run_on_workers`` wraps it with
``on_worker``)::

    def train_fn(config):
        strategy = make_worker_strategy(timeout_s=600)   # the first TensorFlow op
        ctx = worker_context()                           # rank, world size
        ...

Codes: GT402 the strategy was built after another TensorFlow op, GT430 a worker raised
an error that would not reach the driver as itself (docs/architecture.md, "Launch").
"""

from __future__ import annotations

import functools
import pickle
import sys
import traceback
from typing import Any, Callable, NamedTuple

from guardtrain.core.errors import GuardtrainError, LaunchError

__all__ = ["WorkerContext", "worker_context", "make_worker_strategy", "on_worker",
           "describe", "first_lines"]


class WorkerContext(NamedTuple):
    """Where this process sits in the run (rank 0 of 1 outside Ray Train)."""

    rank: int
    world_size: int
    local_rank: int
    node_rank: int
    in_ray: bool


def worker_context() -> WorkerContext:
    """This worker's rank and world size, from ``ray.train.get_context()``.

    Outside a Ray Train worker (in-process runs, tests) it is rank 0 of 1.
    """
    if "ray" in sys.modules:  # never import Ray into an in-process run only for this
        try:
            import ray.train

            ctx = ray.train.get_context()
            return WorkerContext(ctx.get_world_rank(), ctx.get_world_size(),
                                 ctx.get_local_rank(), ctx.get_node_rank(), True)
        except Exception:  # not in a Ray Train worker: Ray raises RuntimeError here
            pass
    return WorkerContext(0, 1, 0, 0, False)


def make_worker_strategy(timeout_s: float | None = None):
    """Builds ``MultiWorkerMirroredStrategy`` for this Ray Train worker.

    Call it first in the training function, before any other TensorFlow op: collective
    ops can only be configured at program start-up. It reads ``TF_CONFIG``, which Ray
    Train sets on every worker.

    Args:
        timeout_s: how long one collective may wait for the other ranks before it raises
            ``DeadlineExceededError`` on this rank (GT441 on the driver). Without it, a
            stalled or dead peer blocks this rank forever. ``None`` = no timeout.

    Raises:
        LaunchError: GT402 when TensorFlow already ran an op in this process.
    """
    import tensorflow as tf

    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_s)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except (RuntimeError, ValueError) as err:
        raise LaunchError(
            f"MultiWorkerMirroredStrategy could not be built on rank "
            f"{worker_context().rank}: {describe(err)}",
            code="GT402",
            fix=("build the strategy before any other TensorFlow op in the worker: call "
                 "make_worker_strategy() first, and pass models as configs and weights, "
                 "not as Keras objects"),
        ) from err


def on_worker(train_fn: Callable[[dict], Any]) -> Callable[[dict], Any]:
    """``train_fn`` wrapped so that what it raises reaches the driver intact.

    A guardtrain error gets ``details["rank"]`` and passes as itself. Any other error
    that pickles passes untouched; one that does not (a custom ``__init__`` without
    ``__reduce__``) would be replaced on the driver by an unrelated health-check error,
    so its type, message and traceback are sent in a ``LaunchError`` (GT430) instead.
    """

    @functools.wraps(train_fn)
    def train_loop_per_worker(config: dict) -> Any:
        try:
            return train_fn(config)
        except GuardtrainError as err:
            err.details.setdefault("rank", worker_context().rank)
            raise
        except BaseException as err:
            if _picklable(err):
                raise
            rank = worker_context().rank
            raise LaunchError(
                f"worker rank {rank} failed: {describe(err)}",
                code="GT430",
                fix="the training function raised this on the worker; see details['traceback']",
                details={"rank": rank, "error_type": type(err).__name__,
                         "error_message": first_lines(str(err)),
                         "traceback": traceback.format_exc()}) from None

    return train_loop_per_worker


def _picklable(err: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(err))
        return True
    except Exception:
        return False


def first_lines(text: str, limit: int = 500) -> str:
    """``text`` cut to ``limit`` characters (an error message in a one-line report)."""
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + " ..."


def describe(exc: BaseException) -> str:
    """``"TypeName: message"``, the message cut by ``first_lines``."""
    return f"{type(exc).__name__}: {first_lines(str(exc))}"
