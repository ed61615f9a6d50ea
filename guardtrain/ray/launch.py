"""Running a training function on Ray Train workers, from the driver.

``run_on_workers(train_fn, config, launch, ...)`` runs ``train_fn(config)`` on
``launch.workers`` Ray Train workers and returns what rank 0 returned. A guardtrain error
raised on a worker arrives as itself; anything else becomes a ``LaunchError`` naming the
rank (``unwrap_error``). The worker's side — its strategy, its rank, the wrapper that
sends errors back — is ``guardtrain.ray.worker``; the watchdog ``guardtrain.ray.watchdog``;
checkpoints ``guardtrain.ray.checkpoint`` (docs/architecture.md, "Launch").

```python
# make_worker_strategy, worker_context: ray.worker; Watchdog: ray.watchdog;
# load_state, save_state: ray.checkpoint
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

Codes: GT403 not a Ray launch, GT404 the run name exists, GT423 workers could not be
placed, GT430 a worker raised, GT431 a worker died, GT432 Ray Train's controller failed,
GT441 a collective timed out, GT442 ranks reported unequally.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import secrets
import signal
import threading
from typing import TYPE_CHECKING, Any, Callable, Mapping

from guardtrain.core.errors import GuardtrainError, LaunchError
from guardtrain.core.launch_config import LaunchConfig
from guardtrain.ray.worker import describe as _describe
from guardtrain.ray.worker import first_lines as _first_lines
from guardtrain.ray.worker import on_worker

if TYPE_CHECKING:
    from guardtrain.ray.cluster import RayConnection

__all__ = ["run_on_workers", "unwrap_error", "unique_run_name", "train_env"]

logger = logging.getLogger(__name__)

# Ray Train's controller polls the workers every 2 s by default, and `ray.train.report`
# waits for that poll: ~2 s per report. At 0.2 s a report costs ~0.2 s (measured).
_HEALTH_CHECK_INTERVAL_S = 0.2
# Worker-group start-up failures (resources vanished, placement timed out) are retried
# forever by default; after this many the run fails with GT423.
_START_RETRIES = 2


def run_on_workers(train_fn: Callable[[dict], Any], config: Mapping[str, Any] | None,
                   launch: LaunchConfig, *, storage_path: str | os.PathLike,
                   run_name: str | None = None, resume: bool = False,
                   cluster: RayConnection | None = None) -> Any:
    """Runs ``train_fn(config)`` on ``launch.workers`` Ray Train workers.

    Attaches to (or starts) Ray and checks the cluster can hold the run
    (``guardtrain.ray.cluster.attach``; skipped when ``cluster`` says it was done), then
    runs a ``TensorflowTrainer``: each worker gets ``TF_CONFIG`` (index = world rank)
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
        cluster: the connection ``attach(launch)`` returned, when the caller attached and
            checked the resources itself (once per run, before shipping data).

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

    from guardtrain.ray.cluster import attach

    if cluster is None:
        attach(launch)
    resources = {"CPU": launch.cpus_per_worker}
    if launch.gpus_per_worker:
        resources["GPU"] = launch.gpus_per_worker
    trainer = TensorflowTrainer(
        train_loop_per_worker=on_worker(train_fn),
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
