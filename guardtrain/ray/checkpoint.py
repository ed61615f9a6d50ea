"""Crash recovery on Ray Train: a checkpoint of the whole loop, and the way back into it.

Ray Train restarts a crashed worker group from its latest checkpoint with the same
``train_loop_config`` (docs/architecture.md, "Launch"), so everything the run has learnt
since it started — weights, optimizer state, the last healthy snapshot, the position, the
guard's and the rescue's state (the attempt number lives there), the history rows and the
events — is in the checkpoint. It is written in one format, JSON for the structure and
one ``.npz`` for the arrays (``guardtrain.records.state_codec``, no pickle), as
``STATE_NAME.json`` + ``STATE_NAME.npz``. The model's weights and optimizer variables are
kept as Keras gives them (``get_weights()``, ``optimizer.variables`` in order).

- ``save_state`` / ``load_state``: any state, on any training function run by
  ``run_on_workers``; every rank calls them at the same points.
- ``LoopCheckpoint``: the ``TrainLoop`` chunk hook that saves every K chunks, and
  ``restore_loop`` that puts a loaded state back into a fresh loop.

Code: GT450 a checkpoint helper called outside a Ray Train worker.
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any, Callable, Mapping

from guardtrain.core.errors import LaunchError
from guardtrain.ray.worker import WorkerContext, worker_context
from guardtrain.records.state_codec import read_state, write_state

__all__ = ["save_state", "load_state", "LoopCheckpoint", "loop_state", "restore_loop",
           "STATE_NAME", "STATE_FILE"]

logger = logging.getLogger(__name__)

#: The state's files in each checkpoint directory: ``STATE_NAME.json`` and ``.npz``.
STATE_NAME = "guardtrain_state"
#: The JSON file ``save_state`` writes into each checkpoint directory.
STATE_FILE = STATE_NAME + ".json"

# How long save_state waits for Ray Train to register a checkpoint.
_COMMIT_TIMEOUT_S = 120.0


def save_state(state: Any, write_fn: Callable[[str], None] | None = None, *,
               metrics: Mapping[str, Any] | None = None, wait_committed: bool = True) -> None:
    """Persists a checkpoint for crash recovery. Call it on every rank, at the same points.

    Every rank writes ``state`` and calls ``write_fn(dir)`` into a temporary directory,
    so any collective a save involves (reading sync-on-read variables) runs on all ranks;
    only rank 0's directory is reported as the ``ray.train.Checkpoint``.
    ``ray.train.report`` is a barrier that every rank must call the same number of times;
    with guardtrain's settings it costs ~0.1 s, so save once every few chunks, never per
    step.

    Args:
        state: what ``guardtrain.records.state_codec`` encodes: plain data, NumPy arrays,
            and dataclasses, NamedTuples and Enums from ``guardtrain.core``.
        write_fn: writes more files into the given directory, e.g.
            ``lambda d: model.save_weights(f"{d}/model.weights.h5")``.
        metrics: reported with the checkpoint (rank 0's are kept).
        wait_committed: return only once Ray Train has registered the checkpoint as the
            one to restart from (at its next poll of every rank, ~0.2 s). Without it, a
            worker that dies right after ``save_state`` can lose that checkpoint: the
            restart then starts from the one before.

    Raises:
        LaunchError: GT450 outside a Ray Train worker.
        TypeError: ``state`` holds a value the codec does not encode.
    """
    ctx = _require_ray_worker("save_state")
    import ray.train

    with tempfile.TemporaryDirectory(prefix="gt-ckpt-") as directory:
        write_state(directory, STATE_NAME, state)
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


def load_state(read_fn: Callable[[str], None] | None = None) -> Any | None:
    """The state of the latest checkpoint of this run, or ``None`` on a fresh start.

    Call it on every rank before the first step: after a worker-group restart Ray Train
    hands every rank the latest checkpoint (rank 0's), and ``read_fn(dir)`` reads what
    ``save_state``'s ``write_fn`` wrote.

    Raises:
        LaunchError: GT450 outside a Ray Train worker.
    """
    _require_ray_worker("load_state")
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        state = read_state(directory, STATE_NAME)
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


class LoopCheckpoint:
    """A ``TrainLoop`` chunk hook: every ``every_chunks`` chunks, on every rank, the loop's
    whole state (``loop_state``) into a Ray Train checkpoint.

    After a worker-group restart every step appears in the history exactly once: the
    rows up to the checkpoint come back with it, and the loop resumes after them.

    Args:
        every_chunks: chunks between two checkpoints (``LaunchConfig.checkpoint_every_chunks``).
    """

    def __init__(self, every_chunks: int):
        self.every = every_chunks
        self.chunks = 0

    def __call__(self, loop) -> None:
        self.chunks += 1
        if self.chunks % self.every:
            return
        save_state(loop_state(loop), metrics={"step": loop.pos.step,
                                              "loss": loop.logs.get("loss")})


def loop_state(loop) -> dict:
    """Everything a restarted worker needs to go on where ``loop`` is."""
    pos = loop.pos
    return {
        "position": {"step": pos.step, "epoch": pos.epoch, "step_in_epoch": pos.step_in_epoch},
        "weights": loop.model.get_weights(),
        "optimizer": {"name": loop.optimizer_name, "learning_rate": loop.learning_rate,
                      "variables": [v.numpy() for v in loop.model.optimizer.variables]},
        "snapshot": loop.snapshot.to_numpy(),
        "supervisor": loop.supervisor.state(),
        "history": loop.history.state(),
        "events": loop.events.events,
        # The logs of the last chunk: a checkpoint at the end of an epoch resumes straight
        # into that epoch's end, whose logs (and callbacks) would otherwise get {}.
        "logs": dict(loop.logs),
    }


def restore_loop(loop, state: Mapping[str, Any]) -> None:
    """Puts ``loop_state``'s ``state`` back into a loop built for the same run."""
    from guardtrain.engine.loop import Position
    from guardtrain.engine.supervisor import make_optimizer

    optimizer = state["optimizer"]
    if loop.optimizer_name != optimizer["name"]:
        # A rescue switched optimizer before the crash: install that one again (fresh;
        # its variables are assigned below).
        previous = loop.model.optimizer
        loop.switch_optimizer(lambda: make_optimizer(optimizer["name"],
                                                     optimizer["learning_rate"], previous))
    loop.model.set_weights(state["weights"])
    for variable, value in zip(loop.model.optimizer.variables, optimizer["variables"]):
        variable.assign(value)
    # A scaled schedule's multiplier is not an optimizer variable: the rate it gave at the
    # checkpoint sets it again (a constant rate came back with the variables, exactly).
    from guardtrain.engine.schedules import scaled_schedule_of

    if scaled_schedule_of(loop.model.optimizer) is not None:
        loop.set_learning_rate(optimizer["learning_rate"])
    loop.snapshot.from_numpy(state["snapshot"])
    loop.pos = Position(**state["position"])
    loop.supervisor.restore(state["supervisor"])
    loop.history.restore(state["history"])
    loop.events.events = list(state["events"])
    loop.logs = dict(state["logs"])
