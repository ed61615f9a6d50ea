"""Running a training function on Ray Train workers, and the worker-side helpers it needs.

Driver side:

- ``run_on_workers(train_fn, config, launch, ...)`` runs ``train_fn(config)`` on
  ``launch.workers`` Ray Train workers and returns what rank 0 returned. A guardtrain
  error raised on a worker arrives as itself; anything else becomes a ``LaunchError``
  naming the rank (``unwrap_error``).

Worker side, in this order inside ``train_fn``:

```python
def train_fn(config):
    strategy = make_worker_strategy(timeout_s=config["step_timeout_s"])  # first TF op
    ctx = worker_context()                        # rank, world size
    with strategy.scope():
        model = ...
    state = load_state(read_fn=lambda d: model.load_weights(f"{d}/model.weights.h5"))
    with Watchdog(config["step_timeout_s"], rank=ctx.rank) as dog:
        for chunk in ...:
            ...                                   # one chunk of steps
            dog.beat(step)
            if every_k_chunks:                    # on every rank, same chunks
                save_state({"step": step}, write_fn=lambda d: model.save_weights(
                    f"{d}/model.weights.h5"), metrics={"loss": loss})
    return result_for_the_driver                  # rank 0's value is returned
```

Codes: GT402 strategy built too late, GT403 not a Ray launch, GT404 the run name exists,
GT423 workers could not be placed, GT430 a worker raised, GT431 a worker died, GT432
Ray Train's controller failed, GT440 a rank made no progress (watchdog), GT441 a
collective timed out, GT442 ranks reported unequally, GT450 checkpoint helper outside a
Ray Train worker.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import logging
import os
import pickle
import secrets
import signal
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Callable, Mapping, NamedTuple

from guardtrain.core.launch_config import LaunchConfig
from guardtrain.core.errors import ConfigError, GuardtrainError, LaunchError

__all__ = [
    "run_on_workers", "unwrap_error", "unique_run_name", "train_env",
    "make_worker_strategy", "worker_context", "WorkerContext", "Watchdog",
    "save_state", "load_state", "STATE_FILE",
]

logger = logging.getLogger(__name__)

#: The JSON file ``save_state`` writes into each checkpoint directory.
STATE_FILE = "guardtrain_state.json"

# Ray Train's controller polls the workers every 2 s by default, and `ray.train.report`
# waits for that poll: ~2 s per report. At 0.2 s a report costs ~0.2 s (measured).
_HEALTH_CHECK_INTERVAL_S = 0.2
# Worker-group start-up failures (resources vanished, placement timed out) are retried
# forever by default; after this many the run fails with GT423.
_START_RETRIES = 2
# How long save_state waits for Ray Train to register a checkpoint.
_COMMIT_TIMEOUT_S = 120.0


# ---------------------------------------------------------------------------- driver


def run_on_workers(train_fn: Callable[[dict], Any], config: Mapping[str, Any] | None,
                   launch: LaunchConfig, *, storage_path: str | os.PathLike,
                   run_name: str | None = None, resume: bool = False) -> Any:
    """Runs ``train_fn(config)`` on ``launch.workers`` Ray Train workers.

    Attaches to (or starts) Ray with ``connect``, checks the cluster can hold the run,
    then runs a ``TensorflowTrainer``: each worker gets ``TF_CONFIG`` (index = world rank)
    and calls ``train_fn(config)``. A crashed worker group is restarted from its latest
    checkpoint up to ``launch.max_failures`` times, with the same ``config``.

    Args:
        train_fn: the per-worker function. It must build ``MultiWorkerMirroredStrategy``
            before any other TensorFlow op (``make_worker_strategy``), so ``config``
            must not hold TensorFlow or Keras objects: pass model configs and weights as
            plain data. Pickled with cloudpickle; ``guardtrain`` must be importable on
            the workers.
        config: plain picklable data given to every worker.
        launch: where and with what (``workers``, ``cpus_per_worker``,
            ``gpus_per_worker``, ``address``, ``max_failures``, ``step_timeout_s``).
        storage_path: directory shared by all nodes (or a ``s3://``-style URI) where Ray
            Train keeps the run: ``storage_path/run_name/`` holds its checkpoints.
        run_name: the run's directory name; ``None`` makes a fresh one
            (``unique_run_name()``).
        resume: if ``storage_path/run_name`` exists, continue that run from its latest
            checkpoint. Without it an existing run name is an error, because Ray Train
            would resume it silently.

    Returns:
        What ``train_fn`` returned on rank 0 (must be picklable).

    Raises:
        GuardtrainError: the guardtrain error a worker raised, as itself, with
            ``details["rank"]`` set.
        LaunchError: the cluster cannot hold the run (GT42x), a worker raised something
            else or died (GT430/GT431), a collective or report timed out (GT441/GT442),
            Ray Train itself failed (GT432).
    """
    if launch.workers < 1:
        raise LaunchError(
            f"run_on_workers needs LaunchConfig(workers >= 1), got workers={launch.workers}",
            code="GT403", fix="use workers=N for N Ray workers; workers=0 runs in-process")
    name = run_name or unique_run_name()
    storage = os.fspath(storage_path)
    remote = "://" in storage  # s3://, gs://: Ray Train reads and writes it itself
    if not remote:
        storage = os.path.abspath(storage)
    run_dir = f"{storage.rstrip('/')}/{name}"
    if not remote and os.path.exists(run_dir) and not resume:
        raise LaunchError(
            f"a Ray Train run named {name!r} already exists in {storage}; starting it again "
            "would silently resume it from its last checkpoint",
            code="GT404", fix="use a fresh run_name (or None), or pass resume=True",
            details={"run_dir": run_dir})

    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer
    from ray.train.v2.api.exceptions import TrainingFailedError

    from guardtrain.ray.cluster import connect, require_resources

    connect(launch)
    require_resources(launch)
    resources = {"CPU": launch.cpus_per_worker}
    if launch.gpus_per_worker:
        resources["GPU"] = launch.gpus_per_worker
    trainer = TensorflowTrainer(
        train_loop_per_worker=_on_worker(train_fn),
        train_loop_config=dict(config or {}),
        scaling_config=ScalingConfig(num_workers=launch.workers,
                                     use_gpu=launch.gpus_per_worker > 0,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=name, storage_path=storage,
            failure_config=FailureConfig(max_failures=launch.max_failures,
                                         controller_failure_limit=_START_RETRIES),
            # Two are enough to resume: the latest, and the one before in case the latest
            # was being written when the node died.
            checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    logger.info("[launch] %d Ray workers, run %s in %s", launch.workers, name, storage)
    with _scoped_env(train_env(launch)), _restored_sigint_handler():
        try:
            result = trainer.fit()
        except TrainingFailedError as err:
            raise unwrap_error(err) from err
    return result.return_value


def train_env(launch: LaunchConfig) -> dict[str, str]:
    """The Ray Train settings ``run_on_workers`` applies during ``fit`` (set by the user wins).

    Ray Train reads them from the driver's environment when ``fit`` starts and passes
    them to its controller and workers.

    - ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=0.2``: a ``ray.train.report`` waits for the
      controller's next poll, every 2 s by default.
    - ``RAY_TRAIN_COLLECTIVE_TIMEOUT_S=step_timeout_s``: a rank that skips a report
      otherwise leaves the others waiting forever (GT442).
    """
    env = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": str(_HEALTH_CHECK_INTERVAL_S)}
    if launch.step_timeout_s:
        env["RAY_TRAIN_COLLECTIVE_TIMEOUT_S"] = str(float(launch.step_timeout_s))
    return {k: v for k, v in env.items() if k not in os.environ}


def unique_run_name(prefix: str = "gt") -> str:
    """A run name no earlier run has: ``gt-20250101-120000-a1b2c3``."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{prefix}-{stamp}-{secrets.token_hex(3)}"


# Error types by name, so that the mapping stays pure (no TensorFlow, no Ray import).
_DIED = {"WorkerHealthCheckFailedError", "WorkerHealthCheckTimeoutError", "RayActorError",
         "ActorDiedError", "ActorUnavailableError"}
_COLLECTIVE_TIMEOUT = {"DeadlineExceededError"}
_REPORT_TIMEOUT = {"BroadcastCollectiveTimeoutError", "CollectiveTimeoutError"}
# What the surviving ranks raise when a peer is gone: a consequence, not a cause.
_PEER_LOST = {"UnavailableError", "CancelledError", "AbortedError"}


def unwrap_error(error: BaseException) -> BaseException:
    """The error a user should see for a failed Ray Train run.

    Pure (types are matched by name). For a worker-group failure
    (``error.worker_failures``, rank -> exception), the most telling failure wins: a
    guardtrain error, then any other error raised by the training function, then a
    worker that died, then what the other ranks saw when a peer stalled or vanished
    (collective timeouts, lost connections). Lowest rank first among equals. Ray Train
    fails the group at the first poll that sees an error, so usually only the first rank
    to fail is in the mapping.

    Returns:
        A guardtrain error from a worker, as itself, with ``details["rank"]`` (and
        ``details["failed_ranks"]`` when several failed); otherwise a ``LaunchError``
        naming the rank, the original type and message.
    """
    failures = getattr(error, "worker_failures", None)
    if isinstance(failures, Mapping) and failures:
        return _worker_failure(failures)
    controller = getattr(error, "controller_failure", None)
    if controller is not None:
        cause = controller
        if _named(cause, {"WorkerGroupStartupTimeoutError", "WorkerGroupStartupFailedError"}):
            return LaunchError(
                f"the Ray workers could not be started: {_describe(cause)}",
                code="GT423",
                fix=("the cluster has the resources but could not place the workers "
                     "(busy with another job, or a node was lost): free them, or ask for "
                     "fewer workers or a fraction of a CPU each"),
                details={"error_type": type(cause).__name__})
    else:
        cause = error
    return LaunchError(
        f"Ray Train failed outside the training function: {_describe(cause)}",
        code="GT432", fix="see the Ray Train log lines above; this is not a training error",
        details={"error_type": type(cause).__name__})


def _worker_failure(failures: Mapping[int, BaseException]) -> BaseException:
    def rank_key(item):
        rank, exc = item
        if isinstance(exc, GuardtrainError):
            order = 0
        elif _named(exc, _DIED):
            order = 2
        elif _named(exc, _COLLECTIVE_TIMEOUT | _REPORT_TIMEOUT | _PEER_LOST):
            order = 3
        else:
            order = 1
        return order, rank

    rank, exc = min(failures.items(), key=rank_key)
    details = {"rank": rank}
    if len(failures) > 1:
        details["failed_ranks"] = sorted(failures)
        details["errors"] = {r: _describe(e) for r, e in sorted(failures.items())}
    if isinstance(exc, GuardtrainError):
        for key, value in details.items():
            exc.details.setdefault(key, value)
        return exc
    details.update(error_type=type(exc).__name__, error_message=_first_lines(str(exc)))
    if _named(exc, _DIED):
        return LaunchError(
            f"worker rank {rank} died: {_describe(exc)}",
            code="GT431",
            fix=("the worker process exited or was killed (out of memory? see that worker's "
                 "Ray log); LaunchConfig(max_failures=N) restarts the workers from the last "
                 "checkpoint"),
            details=details)
    if _named(exc, _REPORT_TIMEOUT):
        return LaunchError(
            f"rank {rank}: the ranks stopped reporting together: {_describe(exc)}",
            code="GT442",
            fix=("every rank must call ray.train.report (save_state) the same number of "
                 "times, at the same points"),
            details=details)
    if _named(exc, _COLLECTIVE_TIMEOUT | _PEER_LOST):
        return LaunchError(
            f"rank {rank}: a collective operation did not complete: {_describe(exc)}",
            code="GT441",
            fix=("another rank stalled or died before it: look at its error; if steps are "
                 "legitimately this slow, raise LaunchConfig(step_timeout_s)"),
            details=details)
    return LaunchError(
        f"worker rank {rank} failed: {_describe(exc)}",
        code="GT430",
        fix="the training function raised this on the worker; its traceback is logged above",
        details=details)


def _named(exc: BaseException, names: set[str]) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def _first_lines(text: str, limit: int = 500) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + " ..."


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_first_lines(str(exc))}"


@contextlib.contextmanager
def _scoped_env(values: Mapping[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@contextlib.contextmanager
def _restored_sigint_handler():
    # During fit, Ray's SIGINT handler aborts the run gracefully; Ray leaves it installed
    # afterwards, where a later Ctrl-C would call into a controller that is gone.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, saved)


def _on_worker(train_fn: Callable[[dict], Any]) -> Callable[[dict], Any]:
    """``train_fn`` wrapped so that what it raises reaches the driver intact."""

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
            # An exception that does not unpickle on the driver is replaced there by an
            # unrelated health-check error: send its type, message and traceback instead.
            rank = worker_context().rank
            raise LaunchError(
                f"worker rank {rank} failed: {_describe(err)}",
                code="GT430",
                fix="the training function raised this on the worker; see details['traceback']",
                details={"rank": rank, "error_type": type(err).__name__,
                         "error_message": _first_lines(str(err)),
                         "traceback": traceback.format_exc()}) from None

    return train_loop_per_worker


def _picklable(err: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(err))
        return True
    except Exception:
        return False


# ---------------------------------------------------------------------------- worker


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
            f"{worker_context().rank}: {_describe(err)}",
            code="GT402",
            fix=("build the strategy before any other TensorFlow op in the worker: call "
                 "make_worker_strategy() first, and pass models as configs and weights, "
                 "not as Keras objects"),
        ) from err


class Watchdog:
    """Turns "no progress for ``timeout_s``" on this rank into a ``LaunchError`` (GT440).

    The collective timeout of ``make_worker_strategy`` catches a rank waiting for a
    stalled peer; this catches the stalled rank itself (a step, an input pipeline or a
    report that never returns). Call ``beat()`` after each chunk; a background thread
    checks the time since the last beat.

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


def save_state(state: Mapping[str, Any], write_fn: Callable[[str], None] | None = None, *,
               metrics: Mapping[str, Any] | None = None, wait_committed: bool = True) -> None:
    """Persists a checkpoint for crash recovery. Call it on every rank, at the same points.

    Every rank writes ``state`` (as JSON, ``STATE_FILE``) and calls ``write_fn(dir)``
    into a temporary directory, so any collective a save involves (reading
    sync-on-read variables) runs on all ranks; only rank 0's directory is reported as the
    ``ray.train.Checkpoint``. ``ray.train.report`` is a barrier that every rank must call
    the same number of times; with guardtrain's settings it costs ~0.1 s, so save once
    every few chunks, never per step.

    Args:
        state: JSON-serialisable loop state (step, attempt, learning rate, guard state).
        write_fn: writes model and optimizer into the given directory, e.g.
            ``lambda d: model.save_weights(f"{d}/model.weights.h5")``.
        metrics: reported with the checkpoint (rank 0's are kept).
        wait_committed: return only once Ray Train has registered the checkpoint as the
            one to restart from (at its next poll of every rank, ~0.2 s). Without it, a
            worker that dies right after ``save_state`` can lose that checkpoint: the
            restart then starts from the one before.

    Raises:
        LaunchError: GT450 outside a Ray Train worker.
    """
    ctx = _require_ray_worker("save_state")
    import ray.train

    payload = json.dumps(dict(state), sort_keys=True)
    with tempfile.TemporaryDirectory(prefix="gt-ckpt-") as directory:
        with open(os.path.join(directory, STATE_FILE), "w") as f:
            f.write(payload)
        if write_fn is not None:
            write_fn(directory)
        checkpoint = ray.train.Checkpoint.from_directory(directory) if ctx.rank == 0 else None
        ray.train.report(dict(metrics or {}), checkpoint=checkpoint)
    if wait_committed:
        # Not a barrier: each rank asks the controller, which answers once it has
        # collected this report from every rank.
        ray.train.get_all_reported_checkpoints(
            consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED,
            timeout_s=_COMMIT_TIMEOUT_S)


def load_state(read_fn: Callable[[str], None] | None = None) -> dict | None:
    """The state of the latest checkpoint of this run, or ``None`` on a fresh start.

    Call it on every rank after building the model (inside the strategy scope), before
    the first step: after a worker-group restart Ray Train hands every rank the latest
    checkpoint, and ``read_fn(dir)`` restores model and optimizer from it.

    Raises:
        LaunchError: GT450 outside a Ray Train worker.
    """
    _require_ray_worker("load_state")
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        with open(os.path.join(directory, STATE_FILE)) as f:
            state = json.load(f)
        if read_fn is not None:
            read_fn(directory)
    logger.info("[launch] rank %d resumed from checkpoint %s", worker_context().rank,
                checkpoint.path)
    return state


def _require_ray_worker(name: str) -> WorkerContext:
    ctx = worker_context()
    if not ctx.in_ray:
        raise LaunchError(
            f"{name}() persists through Ray Train and was called outside a Ray Train worker",
            code="GT450", fix="call it only in the function given to run_on_workers")
    return ctx
