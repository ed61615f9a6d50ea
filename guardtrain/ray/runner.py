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

import contextlib
import logging
import math
import os
import signal
from pathlib import Path

import numpy as np

from guardtrain.core.errors import (ConfigError, GuardtrainError, RescueExhaustedError,
                                    UnhealthyTrainingError)
from guardtrain.core.launch_config import LaunchConfig

__all__ = ["fit_on_ray"]

logger = logging.getLogger(__name__)


def fit_on_ray(model, x, y, *, batch_size, epochs, steps_per_epoch, steps_per_loop,
               validation_data, callbacks, shuffle, guard, rescue, launch: LaunchConfig,
               run_dir, verbose, resume: bool = False, reference=None,
               sample_weight=None, initial_epoch: int = 0, validation_batch_size=None,
               validation_steps=None, validation_freq=1):
    """Runs the guarded loop on ``launch.workers`` Ray Train workers (see the module doc).

    The driver writes the run's final records, on every way the run ends: the workers'
    history, events and attempts when rank 0 returned them, and an ``end`` event with
    the status and reason (``guardtrain.records.run_end``). A Ctrl-C, which Ray Train
    turns into an aborted run, comes back as ``KeyboardInterrupt``. ``sample_weight``
    (class weights already turned into it) travels like ``x`` and is sharded with its
    rows; the other ``model.fit`` arguments go to every worker's session as they are.
    """
    import keras

    from guardtrain.engine.inputs import num_samples
    from guardtrain.engine.shipping import as_plain_model
    from guardtrain.ray.cluster import attach
    from guardtrain.ray.launch import run_on_workers, unique_run_name
    from guardtrain.records.run_dir import open_run_dir
    from guardtrain.records.run_end import Terminated, sigterm_raises

    run = open_run_dir(run_dir, resume=resume)    # refused here, before anything starts
    path, run_id = run.path, run.run_id
    # Once per run, before anything is shipped: a request the cluster cannot hold fails
    # here, in seconds.
    cluster = attach(launch)
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
        "x": _put(x), "y": _put(y), "sample_weight": _put(sample_weight),
        "validation": None if validation_data is None else tuple(
            _put(v) for v in validation_data),
        "batch_size": batch_size, "epochs": epochs, "steps_per_epoch": steps_per_epoch,
        "steps_per_loop": steps_per_loop, "callbacks": callbacks, "shuffle": shuffle,
        "guard": guard, "rescue": rescue, "launch": launch, "run_dir": str(path),
        "run_id": run_id, "verbose": verbose, "attempt_base": run.attempt_base,
        "prior_events": list(run.prior_events), "reference": reference,
        "initial_epoch": initial_epoch, "validation_batch_size": validation_batch_size,
        "validation_steps": validation_steps, "validation_freq": validation_freq,
    }
    storage = launch.storage_path or str(path / "ray")
    with sigterm_raises():
        try:
            with _sigint_seen() as seen:
                try:
                    out = run_on_workers(_train_on_worker, config, launch,
                                         storage_path=storage,
                                         run_name=unique_run_name(run_id), cluster=cluster)
                except BaseException as err:
                    # During fit, Ray Train's own SIGINT handler takes a Ctrl-C: it aborts
                    # the run and leaves a SystemExit, a dead controller's error or the
                    # aborted workers' error. Each is the user's interrupt, and must read
                    # as one (exit 130).
                    if isinstance(err, SystemExit) and not seen:
                        # ray.init replaced the SIGTERM handler with one that exits (and,
                        # for an embedded head, stops its Ray first): a scheduler's SIGTERM.
                        raise Terminated(signal.SIGTERM) from err
                    if isinstance(err, SystemExit) or (
                            seen and not isinstance(err, KeyboardInterrupt)):
                        raise KeyboardInterrupt("Ray Train aborted the run (Ctrl-C)") from err
                    raise
            if out is None:     # an aborted run has no return value from rank 0
                raise KeyboardInterrupt("Ray Train aborted the run before it returned")
        except BaseException as err:
            _record_lost_run(run, err)
            raise
        return _finish_on_driver(model, run, out)


@contextlib.contextmanager
def _sigint_seen():
    """Yields a list that is not empty once Ray Train's SIGINT handler has run.

    The handler replaces any of ours for the duration of ``fit`` and says what it does
    only in its log (``Received SIGINT. Gracefully aborting ...``); that line is the one
    sign a Ctrl-C arrived, so it is watched here (and shown: it is worth reading).
    """
    seen: list[str] = []
    watched = logging.getLogger("ray.train.v2.api.data_parallel_trainer")

    class _Watch(logging.Handler):
        def emit(self, record):
            if "SIGINT" in record.getMessage():
                seen.append(record.getMessage())

    handler, level = _Watch(logging.INFO), watched.level
    watched.addHandler(handler)
    if watched.getEffectiveLevel() > logging.INFO:
        watched.setLevel(logging.INFO)
    try:
        yield seen
    finally:
        watched.removeHandler(handler)
        watched.setLevel(level)


def _finish_on_driver(model, run, out: dict):
    """Rank 0's records, written once, here (the driver may not share rank 0's disk);
    the error a verdict ended the run with is raised after them."""
    import keras

    from guardtrain.records.atomic import write_atomic
    from guardtrain.records.attempts_file import stamp_attempts, write_attempts
    from guardtrain.records.events import EventLog
    from guardtrain.records.history import HistoryWriter, load_history
    from guardtrain.records.result import Result
    from guardtrain.records.run_end import end_fields, write_best_effort

    path, run_id = run.path, run.run_id
    history = HistoryWriter(path, run_id, attempt_base=run.attempt_base)
    history.restore(out["history"])
    events = EventLog(path, prior=run.prior_events)
    # Rank 0's end event is written last, after model.keras (as in-process), and replaced
    # by a failure's if anything here fails: one end event per run.
    worker_end = [e for e in out["events"] if e.get("event") == "end"]
    events.events = [e for e in out["events"] if e.get("event") != "end"]
    error = out.get("error")
    try:
        history.flush()
        if error is not None:
            events.events.append({"event": "end", **end_fields(error), "verdict": "failed",
                                  "step": _last_step(events.events)})
        events.write()      # before attempts.json: it reads this run's start event
        if out.get("attempts"):
            write_attempts(path, out["attempts"])
        if error is not None:
            # As in-process: the user's model holds the last healthy weights after an abort.
            if isinstance(model, keras.Model):
                model.set_weights(out["weights"])
            raise error
        final = model if isinstance(model, keras.Model) else model()
        final.set_weights(out["weights"])
        write_atomic(path / "model.keras", final.save)
        events.events += worker_end[-1:]
        events.write()
    except BaseException as err:
        if err is not error:
            events.events = [e for e in events.events if e.get("event") != "end"]
            write_best_effort("end event", lambda: events.add(
                "end", **end_fields(err), verdict="failed",
                step=_last_step(events.events)), err)
        raise
    end = next((e for e in reversed(events.events) if e.get("event") == "end"), {})
    return Result(model=final, history=load_history(path, run_id),
                  attempts=stamp_attempts(out["attempts"], run_id=run_id,
                                          attempt_base=run.attempt_base),
                  verdict=out["verdict"], run_dir=path, logs=out["logs"], run_id=run_id,
                  nonfinite=end.get("nonfinite") or {})


def _record_lost_run(run, err: BaseException) -> None:
    """The ``end`` event of a run that returned nothing (a launch failure, a crash Ray
    gave up on, Ctrl-C): added to what rank 0 wrote as it went, when the driver shares
    its disk, else to the earlier runs' events."""
    from guardtrain.records.events import EventLog, load_events
    from guardtrain.records.run_end import end_fields, write_best_effort

    def write():
        on_disk = load_events(run.path)
        # Rank 0's own events follow this run's start event, when it wrote any.
        mine = next((i for i, e in enumerate(on_disk) if e.get("event") == "start"
                     and e.get("run_id") == run.run_id), None)
        events = EventLog(run.path, prior=on_disk if mine is not None else run.prior_events)
        if mine is None:
            events.events.append({"event": "start", "run_id": run.run_id,
                                  "attempt_base": run.attempt_base})
        events.add("end", **end_fields(err), verdict="failed",
                   step=_last_step(on_disk[mine:] if mine is not None else []))

    write_best_effort("end event", write, err)


def _last_step(events: list) -> int | None:
    steps = [e["step"] for e in events if isinstance(e.get("step"), int)]
    return steps[-1] if steps else None


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

    from guardtrain.engine.inputs import shard_inputs, shard_rows
    from guardtrain.engine.session import open_session, settle_weights
    from guardtrain.records.run_end import end_fields, write_best_effort
    from guardtrain.ray.checkpoint import LoopCheckpoint, load_state, restore_loop
    from guardtrain.ray.watchdog import Watchdog

    is_chief = ctx.rank == 0
    run_dir = Path(config["run_dir"])
    # Rank 0 also writes into the run directory as it goes, for a person watching a run on
    # one machine; the driver writes the final records from what rank 0 returns.
    writes = is_chief and _writable(run_dir)
    state = load_state()
    x, y = shard_inputs(_get(config["x"]), _get(config["y"]), ctx.rank, ctx.world_size)
    # The same contiguous rows as x and y (arrays only: fit refuses weights otherwise).
    sample_weight = shard_rows(_get(config.get("sample_weight")), ctx.rank, ctx.world_size)
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
                     LoopCheckpoint(launch.checkpoint_every_chunks)],
        attempt_base=config.get("attempt_base", 0),
        prior_events=config.get("prior_events", ()), reference=config.get("reference"),
        sample_weight=sample_weight, initial_epoch=config.get("initial_epoch", 0),
        validation_batch_size=config.get("validation_batch_size"),
        validation_steps=config.get("validation_steps"),
        validation_freq=config.get("validation_freq", 1))
    loop, events, history = session.loop, session.events, session.history
    if state is not None:
        restore_loop(loop, state)
        events.add("restart", step=loop.pos.step, attempt=loop.attempt, rank=ctx.rank)
    failure = None
    with dog:
        try:
            logs = loop.run()
            nonfinite = settle_weights(session)
        except BaseException as err:
            # As in-process: the error in the events, the chunk that ended the run in the
            # history (best effort: a failed write must not replace the error). The
            # driver writes the ``end`` event, also when Ray Train gives up on the group.
            if isinstance(err, GuardtrainError):
                write_best_effort("error event", lambda: events.add(
                    "error", code=err.code, message=err.message), err)
            if writes:
                write_best_effort("history", history.flush, err)
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
    events.add("end", **end_fields(None), verdict=supervisor.verdict, step=loop.pos.step,
               decision_digests=digests, same_decisions=len(set(digests)) == 1, **nonfinite)
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
