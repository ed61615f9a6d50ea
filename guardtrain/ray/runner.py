"""``gt.fit`` on Ray Train workers: the same guarded loop under ``MultiWorkerMirroredStrategy``.

Driver                                     each worker (rank r of N)
------                                     -------------------------
check (already done by fit)                MultiWorkerMirroredStrategy   <- first TF op
resources vs request                       model built in its scope (builder called, or
NumPy -> Ray object store                    config + weights + compile config)
run_on_workers(...)  ───────────────────►  resume from the last checkpoint, if any
                                           rows r/N of the data, per-replica batches
                                           the guarded loop (guard + rescue unchanged)
                                           every K chunks: checkpoint (all ranks report)
Result  ◄─────────────────────────────────  rank 0 returns weights, history, events

Every figure a decision reads is gathered across workers inside the chunk, so every rank
takes the same decision at the same step; a collective that hangs times out
(``step_timeout_s``) and a rank that makes no progress is named by the watchdog.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from guardtrain.core.launch_config import LaunchConfig
from guardtrain.core.errors import (ConfigError, GuardtrainError, RescueExhaustedError,
                               UnhealthyTrainingError)

__all__ = ["fit_on_ray"]

logger = logging.getLogger(__name__)

_STATE_PICKLE = "loop_state.pkl"


def _ship_model(model) -> dict:
    """A model as plain data (a builder function travels as itself, by cloudpickle)."""
    import keras

    if isinstance(model, keras.Model):
        return {"kind": "instance", "config": keras.saving.serialize_keras_object(model),
                "weights": model.get_weights(), "compile": model.get_compile_config()}
    return {"kind": "builder", "builder": model}


def _ship_array(value):
    import ray

    if value is None:
        return None
    if isinstance(value, dict):
        return {k: ray.put(np.asarray(v)) for k, v in value.items()}
    return ray.put(np.asarray(value))


def fit_on_ray(model, x, y, *, batch_size, epochs, steps_per_epoch, steps_per_loop,
               validation_data, callbacks, shuffle, guard, rescue, launch: LaunchConfig,
               run_dir, verbose):
    """Runs the guarded loop on ``launch.workers`` Ray Train workers (see the module doc)."""
    import ray  # noqa: F401 - the object store needs a connection first

    from guardtrain.records.history import EventLog, HistoryWriter, load_history, write_atomic
    from guardtrain.ray.cluster import connect, require_resources
    from guardtrain.ray.launch import run_on_workers, unique_run_name
    from guardtrain.records.result import Result
    from guardtrain.records.run_dir import new_run_dir

    path, run_id = new_run_dir(run_dir)
    connect(launch)
    require_resources(launch)
    if hasattr(x, "read_numpy"):                # Parquet: every worker reads its own files
        data = {"kind": "parquet", "source": x}
        total = x.num_rows()
    elif callable(x):
        data = {"kind": "fn", "fn": x}
        total = None
    else:
        data = {"kind": "arrays", "x": _ship_array(x), "y": _ship_array(y)}
        first = next(iter(x.values())) if isinstance(x, dict) else x
        total = len(first)
    if steps_per_epoch is None:
        if total is None:
            raise ConfigError("fit(x=dataset_fn, launch=workers): expected steps_per_epoch, "
                              "found None", code="GT102", fix="pass steps_per_epoch=N")
        steps_per_epoch = max(1, math.ceil(total / batch_size))
    val = None
    if validation_data is not None:
        val = tuple(_ship_array(v) for v in validation_data)
    config = {
        "model": _ship_model(model), "data": data, "validation": val,
        "batch_size": batch_size, "epochs": epochs, "steps_per_epoch": steps_per_epoch,
        "steps_per_loop": steps_per_loop, "callbacks": callbacks, "shuffle": shuffle,
        "guard": guard, "rescue": rescue, "launch": launch, "run_dir": str(path),
        "run_id": run_id, "verbose": verbose,
    }
    storage = launch.storage_path or str(path / "ray")
    out = run_on_workers(_train_on_worker, config, launch, storage_path=storage,
                         run_name=unique_run_name(run_id))

    # Rank 0's records, written once, here: the driver may not share rank 0's disk.
    history = HistoryWriter(path, run_id)
    history.restore(out["history"])
    history.flush()
    events = EventLog(path)
    events.events = out["events"]
    events.write()
    import keras

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


# ------------------------------------------------------------------------------- worker

def _train_on_worker(config: dict) -> dict | None:
    """What every Ray Train worker runs; rank 0's return value goes back to the driver."""
    from guardtrain.ray.launch import make_worker_strategy, worker_context

    launch: LaunchConfig = config["launch"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ start-up chatter, per worker
    strategy = make_worker_strategy(launch.step_timeout_s)        # before any other TF op
    ctx = worker_context()

    import keras
    import tensorflow as tf

    tf.get_logger().setLevel("WARNING")  # one INFO line per collective, per worker

    from guardtrain.records.history import EventLog, HistoryWriter
    from guardtrain.engine.loop import Position, TrainLoop
    from guardtrain.ray.launch import Watchdog, load_state
    from guardtrain.engine.session import DEFAULT_STEPS_PER_LOOP, make_supervisor, place_model, \
        stats_every_of

    model = place_model(_unship_model(config["model"]), strategy)
    data = _worker_data(config, strategy, ctx)
    is_chief = ctx.rank == 0
    run_dir = Path(config["run_dir"])
    history = HistoryWriter(run_dir, config["run_id"])
    # Rank 0 also writes into the run directory as it goes, for a person watching a run on
    # one machine; the driver writes the final records from what rank 0 returns.
    events = EventLog(run_dir, enabled=is_chief and _writable(run_dir))
    verbose = config["verbose"] if is_chief else 0
    supervisor = make_supervisor(config["guard"], config["rescue"], events, verbose)
    saved = {}
    state = load_state(read_fn=lambda d: saved.update(_read_pickle(d)))
    if state is None:
        events.add("start", run_id=config["run_id"], replicas=strategy.num_replicas_in_sync,
                   strategy=type(strategy).__name__, workers=ctx.world_size,
                   steps_per_epoch=data.steps_per_epoch, epochs=config["epochs"])
    else:
        _switch_if_needed(model, strategy, saved)
    checkpoint = _Checkpointer(launch.checkpoint_every_chunks, history, events, supervisor)
    dog = Watchdog(launch.step_timeout_s, rank=ctx.rank)
    loop = TrainLoop(
        model=model, strategy=strategy, data=data, epochs=config["epochs"],
        steps_per_loop=config["steps_per_loop"] or min(DEFAULT_STEPS_PER_LOOP,
                                                       data.steps_per_epoch),
        callbacks=config["callbacks"], verbose=verbose,
        validation_data=_unship_validation(config["validation"]),
        validation_batch_size=config["batch_size"], history=history, events=events,
        supervisor=supervisor, is_chief=is_chief and events.enabled,
        chunk_hooks=[lambda lp: dog.beat(lp.pos.step), checkpoint],
        stats_every=stats_every_of(config["guard"]))
    if state is not None:
        checkpoint.restore(loop, saved, state)
        events.add("restart", step=loop.pos.step, attempt=loop.attempt, rank=ctx.rank)
    failure = None
    with dog:
        try:
            logs = loop.run()
        except GuardtrainError as err:
            # As in-process: the error in the events, the chunk that ended the run in the
            # history.
            events.add("error", code=err.code, message=err.message)
            if is_chief and events.enabled:
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
        return {"error": failure, "weights": model.get_weights(),
                "history": history.state(), "events": events.events}
    digests = _decision_digests(strategy, events.events)
    events.add("end", verdict=supervisor.verdict, step=loop.pos.step,
               decision_digests=digests, same_decisions=len(set(digests)) == 1)
    if not is_chief:
        return None
    return {"weights": model.get_weights(), "history": history.state(),
            "events": events.events, "attempts": list(getattr(supervisor, "attempts", [])),
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

    decisions = [{k: e.get(k) for k in ("action", "step", "attempt", "learning_rate",
                                        "optimizer", "from_step")}
                 for e in events if e.get("event") == "decision"]
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


def _unship_model(shipped: dict):
    import keras

    if shipped["kind"] == "builder":
        return shipped["builder"]

    def rebuild():
        model = keras.saving.deserialize_keras_object(shipped["config"])
        model.set_weights(shipped["weights"])
        if shipped["compile"]:
            model.compile_from_config(shipped["compile"])
        return model

    return rebuild  # called inside the strategy's scope by place_model


def _get(ref):
    import ray

    if ref is None:
        return None
    if isinstance(ref, dict):
        return {k: ray.get(v) for k, v in ref.items()}
    return ray.get(ref)


def _unship_validation(val):
    return None if val is None else tuple(_get(v) for v in val)


def _worker_data(config, strategy, ctx):
    """This worker's shard, batched per replica; every rank runs the same steps."""
    import tensorflow as tf

    from guardtrain.engine.inputs import TrainData, _array_dataset, _options

    data, batch = config["data"], config["batch_size"]
    spe = config["steps_per_epoch"]
    if data["kind"] == "fn":
        dist = strategy.distribute_datasets_from_function(
            lambda ictx: _options(data["fn"](ictx).repeat()))
        return TrainData(iter(dist), spe, None)
    if data["kind"] == "parquet":
        x, y = data["source"].read_numpy(ctx.rank, ctx.world_size)
    else:
        x, y = _get(data["x"]), _get(data["y"])
        rows = np.array_split(np.arange(_len(x)), ctx.world_size)[ctx.rank]
        x = {k: v[rows] for k, v in x.items()} if isinstance(x, dict) else x[rows]
        y = None if y is None else y[rows]

    def dataset_fn(ictx: tf.distribute.InputContext):
        per_replica = ictx.get_per_replica_batch_size(batch)
        arrays = (x, y) if y is not None else (x,)
        return _options(_array_dataset(arrays, _len(x), per_replica, config["shuffle"], None)
                        .prefetch(2), autoshard=False)

    # The function form: each worker already holds only its rows, batched per replica,
    # and tf.distribute neither shards nor re-batches them again.
    return TrainData(iter(strategy.distribute_datasets_from_function(dataset_fn)), spe,
                     _len(x))


def _len(x) -> int:
    first = next(iter(x.values())) if isinstance(x, dict) else x
    return int(len(first))


def _read_pickle(directory) -> dict:
    # Written by _Checkpointer below from guardtrain's own state, never from user input.
    with open(os.path.join(directory, _STATE_PICKLE), "rb") as f:
        return pickle.load(f)


def _switch_if_needed(model, strategy, saved) -> None:
    """A rescue may have switched optimizer before the crash: install that one again."""
    from guardtrain.engine.supervisor import make_optimizer

    name = saved["optimizer_name"]
    if type(model.optimizer).__name__.lower() != name:
        previous = model.optimizer
        with strategy.scope():
            model.optimizer = make_optimizer(name, saved["learning_rate"], previous)
            model.optimizer.build(model.trainable_variables)


class _Checkpointer:
    """Every K chunks, on every rank: the loop's whole state into a Ray Train checkpoint.

    The checkpoint holds weights, optimizer variables, the last healthy snapshot, the
    guard and rescue state, the position, and the history rows so far — so after a
    worker-group restart every step appears in the history exactly once.
    """

    def __init__(self, every_chunks: int, history, events, supervisor):
        self.every = every_chunks
        self.history, self.events, self.supervisor = history, events, supervisor
        self.chunks = 0

    def __call__(self, loop) -> None:
        self.chunks += 1
        if self.chunks % self.every:
            return
        from guardtrain.ray.launch import save_state

        state = {"step": loop.pos.step, "epoch": loop.pos.epoch, "attempt": loop.attempt}
        blob = {
            "weights": loop.model.get_weights(),
            "optimizer": [v.numpy() for v in loop.model.optimizer.variables],
            "optimizer_name": loop.optimizer_name, "learning_rate": loop.learning_rate,
            "snapshot": loop.snapshot.to_numpy(), "position": loop.pos,
            "attempt": loop.attempt, "supervisor": _supervisor_state(self.supervisor),
            "history": self.history.state(), "events": self.events.events,
            "logs": dict(loop.logs),
        }

        def write(directory):
            with open(os.path.join(directory, _STATE_PICKLE), "wb") as f:
                pickle.dump(blob, f)

        save_state(state, write, metrics={"step": loop.pos.step, "loss": loop.logs.get("loss")})

    def restore(self, loop, saved: dict, state: dict) -> None:
        from guardtrain.engine.loop import Position

        loop.model.set_weights(saved["weights"])
        for v, value in zip(loop.model.optimizer.variables, saved["optimizer"]):
            v.assign(value)
        loop.snapshot.from_numpy(saved["snapshot"])
        pos: Position = saved["position"]
        loop.pos = Position(pos.step, pos.epoch, pos.step_in_epoch)
        loop.attempt = saved["attempt"]
        if hasattr(self.supervisor, "restore"):
            self.supervisor.restore(saved["supervisor"])
        self.history.restore(saved["history"])
        self.events.events = list(saved["events"])
        # The logs of the last chunk: a checkpoint at the end of an epoch resumes straight
        # into that epoch's end, whose logs (and callbacks) would otherwise get {}.
        loop.logs = dict(saved.get("logs", {}))


def _supervisor_state(supervisor):
    return supervisor.state() if hasattr(supervisor, "state") else None
