"""``gt.fit`` on Ray Train workers: the same guarded loop under ``MultiWorkerMirroredStrategy``.

Driver                                     each worker (rank r of N)
------                                     -------------------------
check (already done by fit)                MultiWorkerMirroredStrategy   <- first TF op
attach: connect, resources vs request      the latest checkpoint, if any
NumPy -> Ray object store                  its rows of the data (shard_inputs)
run_on_workers(...)  ───────────────────►  open_session: the model (builder called, or
                                             rebuilt from a PlainModel), per-replica
                                             batches, supervisor, start event, loop
                                           resumed into the checkpoint's state
                                           the guarded loop (guard + rescue unchanged)
                                           every K chunks: checkpoint (all ranks report)
Result  ◄─────────────────────────────────  rank 0 returns weights, history, events

Every figure a decision reads is gathered across workers inside the chunk, so every rank
takes the same decision at the same step; a collective that hangs times out
(``step_timeout_s``) and a rank that makes no progress is named by the watchdog
(docs/architecture.md, "Launch").
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from guardtrain.core.errors import (ConfigError, GuardtrainError, RescueExhaustedError,
                                    UnhealthyTrainingError)
from guardtrain.core.launch_config import LaunchConfig

__all__ = ["fit_on_ray"]

logger = logging.getLogger(__name__)


def fit_on_ray(model, x, y, *, batch_size, epochs, steps_per_epoch, steps_per_loop,
               validation_data, callbacks, shuffle, guard, rescue, launch: LaunchConfig,
               run_dir, verbose):
    """Runs the guarded loop on ``launch.workers`` Ray Train workers (see the module doc)."""
    import keras

    from guardtrain.engine.inputs import num_samples
    from guardtrain.engine.shipping import as_plain_model
    from guardtrain.ray.cluster import attach
    from guardtrain.ray.launch import run_on_workers, unique_run_name
    from guardtrain.records.atomic import write_atomic
    from guardtrain.records.attempts_file import write_attempts
    from guardtrain.records.events import EventLog
    from guardtrain.records.history import HistoryWriter, load_history
    from guardtrain.records.result import Result
    from guardtrain.records.run_dir import new_run_dir

    # Once per run, before anything is shipped: a request the cluster cannot hold fails
    # here, in seconds.
    cluster = attach(launch)
    path, run_id = new_run_dir(run_dir)
    if steps_per_epoch is None:
        total = num_samples(x)
        if total is None:
            raise ConfigError("fit(x=dataset_fn, launch=workers): expected steps_per_epoch, "
                              "found None", code="GT102", fix="pass steps_per_epoch=N")
        # From the whole data: every rank runs the same steps, whatever its shard holds.
        steps_per_epoch = max(1, math.ceil(total / batch_size))
    config = {
        # A builder function travels as itself (cloudpickle), an instance as plain data.
        "model": as_plain_model(model) if isinstance(model, keras.Model) else model,
        "x": _put(x), "y": _put(y),
        "validation": None if validation_data is None else tuple(
            _put(v) for v in validation_data),
        "batch_size": batch_size, "epochs": epochs, "steps_per_epoch": steps_per_epoch,
        "steps_per_loop": steps_per_loop, "callbacks": callbacks, "shuffle": shuffle,
        "guard": guard, "rescue": rescue, "launch": launch, "run_dir": str(path),
        "run_id": run_id, "verbose": verbose,
    }
    storage = launch.storage_path or str(path / "ray")
    out = run_on_workers(_train_on_worker, config, launch, storage_path=storage,
                         run_name=unique_run_name(run_id), cluster=cluster)

    # Rank 0's records, written once, here: the driver may not share rank 0's disk.
    history = HistoryWriter(path, run_id)
    history.restore(out["history"])
    history.flush()
    events = EventLog(path)
    events.events = out["events"]
    events.write()
    if out.get("attempts"):
        write_attempts(path, out["attempts"])
    if out.get("error") is not None:
        # As in-process: the user's model holds the last healthy weights after an abort.
        if isinstance(model, keras.Model):
            model.set_weights(out["weights"])
        raise out["error"]
    final = model if isinstance(model, keras.Model) else model()
    final.set_weights(out["weights"])
    write_atomic(path / "model.keras", final.save)
    return Result(model=final, history=load_history(path), attempts=out["attempts"],
                  verdict=out["verdict"], run_dir=path, logs=out["logs"])


def _put(value):
    """NumPy arrays (or a dict of them) into the Ray object store, by reference; anything
    else (a Parquet source, a dataset function, None) travels as itself."""
    import ray

    if isinstance(value, dict):
        return {k: _Ref(ray.put(np.asarray(v))) for k, v in value.items()}
    if value is None or hasattr(value, "read_numpy") or callable(value):
        return value
    return _Ref(ray.put(np.asarray(value)))


class _Ref:
    """An array in the object store (marks what ``_get`` fetches on the worker)."""

    def __init__(self, ref):
        self.ref = ref


def _get(value):
    import ray

    if isinstance(value, dict):
        return {k: _get(v) for k, v in value.items()}
    return ray.get(value.ref) if isinstance(value, _Ref) else value


# ------------------------------------------------------------------------------- worker

def _train_on_worker(config: dict) -> dict | None:
    """What every Ray Train worker runs; rank 0's return value goes back to the driver."""
    from guardtrain.ray.worker import make_worker_strategy, worker_context

    launch: LaunchConfig = config["launch"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ start-up chatter, per worker
    strategy = make_worker_strategy(launch.step_timeout_s)        # before any other TF op
    ctx = worker_context()

    import tensorflow as tf

    tf.get_logger().setLevel("WARNING")  # one INFO line per collective, per worker

    from guardtrain.engine.inputs import shard_inputs
    from guardtrain.engine.session import open_session
    from guardtrain.ray.checkpoint import LoopCheckpoint, load_state, restore_loop
    from guardtrain.ray.watchdog import Watchdog

    is_chief = ctx.rank == 0
    run_dir = Path(config["run_dir"])
    # Rank 0 also writes into the run directory as it goes, for a person watching a run on
    # one machine; the driver writes the final records from what rank 0 returns.
    writes = is_chief and _writable(run_dir)
    state = load_state()
    x, y = shard_inputs(_get(config["x"]), _get(config["y"]), ctx.rank, ctx.world_size)
    validation = config["validation"]
    dog = Watchdog(launch.step_timeout_s, rank=ctx.rank)
    session = open_session(
        config["model"], x, y, strategy=strategy, run_dir=run_dir, run_id=config["run_id"],
        batch_size=config["batch_size"], epochs=config["epochs"],
        steps_per_epoch=config["steps_per_epoch"], steps_per_loop=config["steps_per_loop"],
        validation_data=None if validation is None else tuple(_get(v) for v in validation),
        callbacks=config["callbacks"], shuffle=config["shuffle"], guard=config["guard"],
        rescue=config["rescue"], verbose=config["verbose"] if is_chief else 0,
        writes=writes, presharded=True, start=state is None,
        start_fields={"workers": ctx.world_size},
        chunk_hooks=[lambda lp: dog.beat(lp.pos.step),
                     LoopCheckpoint(launch.checkpoint_every_chunks)])
    loop, events, history = session.loop, session.events, session.history
    if state is not None:
        restore_loop(loop, state)
        events.add("restart", step=loop.pos.step, attempt=loop.attempt, rank=ctx.rank)
    failure = None
    with dog:
        try:
            logs = loop.run()
        except GuardtrainError as err:
            # As in-process: the error in the events, the chunk that ended the run in the
            # history.
            events.add("error", code=err.code, message=err.message)
            if writes:
                history.flush()
            if not isinstance(err, _DECIDED):
                raise
            failure = err
    if failure is not None:
        # A verdict, taken by every rank at the same step from gathered figures: returned,
        # not raised. Ray Train counts an exception as a crash and would restart the group
        # from its last checkpoint to meet the same verdict again (forever at
        # max_failures=-1). The driver raises it.
        failure.details.setdefault("rank", ctx.rank)
        if not is_chief:
            return None
        return {"error": failure, "weights": session.model.get_weights(),
                "history": history.state(), "events": events.events,
                "attempts": list(session.supervisor.attempts)}
    supervisor = session.supervisor
    digests = _decision_digests(strategy, events.events)
    events.add("end", verdict=supervisor.verdict, step=loop.pos.step,
               decision_digests=digests, same_decisions=len(set(digests)) == 1)
    if not is_chief:
        return None
    return {"weights": session.model.get_weights(), "history": history.state(),
            "events": events.events, "attempts": list(supervisor.attempts),
            "verdict": supervisor.verdict, "logs": logs}


# Errors that come from the guard's and the rescue's decisions: every rank raises them at
# the same step, so the run can end on all ranks without Ray Train seeing a failure.
_DECIDED = (UnhealthyTrainingError, RescueExhaustedError)


def _decision_digests(strategy, events: list) -> list[int]:
    """Each rank's digest of the decisions it took, gathered: equal digests = same branches.

    Every rank keeps its own events in memory (only rank 0 writes them); one all-gather at
    the end lets rank 0 record that all ranks rolled back and adjusted alike.
    """
    import hashlib
    import json

    import tensorflow as tf

    # The whole decision record: whatever fields a decision kind carries, two ranks that
    # took different branches differ in at least one of them.
    decisions = [e for e in events if e.get("event") == "decision"]
    text = json.dumps(decisions, sort_keys=True, default=str).encode()
    digest = int.from_bytes(hashlib.sha256(text).digest()[:7], "big")
    local = strategy.experimental_distribute_values_from_function(
        lambda _ctx: tf.constant([digest], tf.int64))
    return [int(d) for d in strategy.gather(local, axis=0).numpy()]


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        return os.access(path, os.W_OK)
    except OSError:
        return False
