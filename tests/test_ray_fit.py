"""``gt.fit(..., launch=LaunchConfig(workers=N))`` end to end on a real two-node Ray cluster.

Every run here goes to the session's two-node local cluster (``tests/ray_fixtures.py``,
1 CPU per node) by address, so each 2-worker run has one worker per node. A 2-worker fit
costs 20-35 s on 2 shared cores (most of it starting the worker group), so each run is
made once (module-scoped fixtures) and several tests read it. The runs:

- ``healthy``: a healthy run on 2 workers ends at the weights of an in-process run fed
  the same batches, with one worker per node, both ranks holding the same weights, and
  the driver's SIGINT handler as it was;
- ``rescued_and_killed``: the seed's stalled example (Adam at 1e-6) is rescued on 2
  workers, both ranks taking the same decisions; then the rank-1 worker process is
  killed by SIGKILL, and the group restarts from the last checkpoint (taken after the
  rescue, at an epoch's end) with the new rate, the checkpoint's weights, and every step
  in the history exactly once;
- with ``rescue=False`` the stall raises GT301 on the driver;
- an impossible GPU request fails in seconds;
- Parquet input, each worker reading its own files.

The whole module: ~2.5 minutes on 2 shared cores.

Test-module code runs on the workers (builders, callbacks): the module is pickled by
value, so the workers need only guardtrain on their path.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import guardtrain as gt
from guardtrain.data import ParquetSource
from guardtrain.records.events import load_events
from guardtrain.ray.checkpoint import STATE_FILE
from guardtrain.ray.worker import worker_context

pytestmark = pytest.mark.ray

STEP_TIMEOUT_S = 120     # a hang becomes a GT440/GT441 error in 2 minutes, not 10
FEATURES = 8
CLASSES = 4


def _by_value():
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _launch(address, workers, **kw):
    return gt.LaunchConfig(workers=workers, address=address, step_timeout_s=STEP_TIMEOUT_S,
                           **kw)


# -- data, models, records ----------------------------------------------------------------

def _blobs(n, *, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=scale, size=(CLASSES, FEATURES))
    y = rng.integers(0, CLASSES, size=n)
    x = centers[y] + rng.normal(size=(n, FEATURES))
    return x.astype("float32"), y.astype("int64")


def _sgd_mlp():
    """8-16-4 tanh MLP, SGD 0.05, weights drawn from a fixed NumPy seed (every call the
    same weights, whatever Keras's random state)."""
    model = keras.Sequential([keras.Input((FEATURES,)),
                              keras.layers.Dense(16, activation="tanh"),
                              keras.layers.Dense(CLASSES)])
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32")
                       for w in model.get_weights()])
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _stalled_adam():
    """The seed's second example: MLP 8-32-32-4 under Adam at learning rate 1e-6."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((FEATURES,)),
                              keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(CLASSES)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-6),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _events(result_or_dir, name=None):
    run_dir = getattr(result_or_dir, "run_dir", result_or_dir)
    return [e for e in load_events(run_dir) if name is None or e["event"] == name]


def _one(result, name):
    found = _events(result, name)
    assert len(found) == 1, f"expected one {name!r} event, found {found}"
    return found[0]


def _column(history, name):
    return history.column(name).to_numpy(zero_copy_only=False)


def _assert_each_step_once(history, steps):
    """(attempt, step) is a key, and each attempt's steps run 1..steps without a gap."""
    attempts, step = _column(history, "attempt"), _column(history, "step")
    keys = list(zip(attempts.tolist(), step.tolist()))
    assert len(set(keys)) == len(keys), "a step is recorded twice"
    assert sorted(set(attempts.tolist())) == [1]
    assert step.tolist() == list(range(1, steps + 1))


def _max_diff(a_weights, b_weights) -> float:
    return max(float(np.max(np.abs(a - b))) for a, b in zip(a_weights, b_weights))


# -- callbacks and sources that run on the workers ------------------------------------------

class _RecordWorker(keras.callbacks.Callback):
    """Writes this worker's rank, world size, Ray node and PID into ``directory``, and
    its weights when training ends (``weights-rank-R.npz``)."""

    def __init__(self, directory):
        super().__init__()
        self.directory = str(directory)

    def on_train_begin(self, logs=None):
        import ray

        ctx = worker_context()
        Path(self.directory, f"rank-{ctx.rank}.json").write_text(json.dumps(
            {"rank": ctx.rank, "world": ctx.world_size, "pid": os.getpid(),
             "node": ray.get_runtime_context().get_node_id()}))

    def on_train_end(self, logs=None):
        np.savez(Path(self.directory, f"weights-rank-{worker_context().rank}.npz"),
                 *self.model.get_weights())


class _KillRank1Once(keras.callbacks.Callback):
    """SIGKILLs the rank-1 worker process at the start of chunk ``at_chunk``, once.

    ``on_train_batch_begin`` is called once per chunk. The marker file stops the
    restarted worker (a fresh copy of this callback) from killing itself again.
    """

    def __init__(self, marker, at_chunk):
        super().__init__()
        self.marker, self.at_chunk, self.chunks = str(marker), at_chunk, 0

    def on_train_batch_begin(self, batch, logs=None):
        self.chunks += 1
        if (self.chunks == self.at_chunk and worker_context().rank == 1
                and not os.path.exists(self.marker)):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


class _RecordProcess(keras.callbacks.Callback):
    """What each worker process saw itself, written as it goes (a killed process never
    reaches its end), as ``{generation}-rank{R}-{pid}.{what}`` in ``directory``, where
    ``generation`` is ``first``, or ``restarted`` once the kill ``marker`` exists:

    - ``decisions.jsonl``: the rescue decisions this process announced (the supervisor's
      ``[rescue]`` log blocks). A process restarted from a checkpoint gets the decisions
      taken before it from rank 0's checkpoint, silently: only this file shows that rank 1
      itself took the same ones.
    - ``begin.npz``: its weights when training began (after a restart: as restored);
    - ``chunk{K}.npz``: its weights after chunk ``weights_at`` (the chunk a checkpoint
      follows, with nothing in between);
    - ``times.json``: the wall-clock times of both.
    """

    def __init__(self, directory, marker, weights_at):
        super().__init__()
        self.directory, self.marker, self.weights_at = str(directory), str(marker), weights_at
        self.chunks, self.handler, self.prefix = 0, None, None

    def _path(self, what):
        return Path(self.directory, f"{self.prefix}.{what}")

    def on_train_begin(self, logs=None):
        from guardtrain.engine import supervisor

        generation = "restarted" if os.path.exists(self.marker) else "first"
        self.prefix = f"{generation}-rank{worker_context().rank}-{os.getpid()}"
        np.savez(self._path("begin.npz"), *self.model.get_weights())
        self.times = {"begin": time.time()}
        self._path("times.json").write_text(json.dumps(self.times))
        path = self._path("decisions.jsonl")
        path.touch()

        class _Decisions(logging.Handler):
            def emit(self, record):
                message = record.getMessage()
                if message.startswith("[rescue]"):
                    with open(path, "a") as f:
                        f.write(json.dumps(message) + "\n")

        self.handler, self.logger = _Decisions(logging.INFO), supervisor.logger
        self.level = self.logger.level
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)

    def on_train_batch_end(self, batch, logs=None):
        self.chunks += 1
        if self.chunks == self.weights_at:
            np.savez(self._path(f"chunk{self.weights_at}.npz"), *self.model.get_weights())
            self.times["chunk"] = time.time()
            self._path("times.json").write_text(json.dumps(self.times))

    def on_train_end(self, logs=None):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)


@dataclasses.dataclass(frozen=True)
class _RecordingParquet(ParquetSource):
    """A Parquet source that notes, per shard read, which files it read and how many rows."""

    log_dir: str = ""

    def read_numpy(self, shard_index: int = 0, num_shards: int = 1):
        x, y = ParquetSource.read_numpy(self, shard_index, num_shards)
        files = list(self.files[shard_index::num_shards]) \
            if len(self.files) >= num_shards else None
        Path(self.log_dir, f"read-{shard_index}-of-{num_shards}-{os.getpid()}.json").write_text(
            json.dumps({"shard": shard_index, "of": num_shards, "files": files,
                        "rows": int(len(y)), "rank": worker_context().rank}))
        return x, y


# -- 1 and 6: a healthy run ends where the in-process run ends ------------------------------

HEALTHY_ROWS, HEALTHY_BATCH, HEALTHY_EPOCHS = 512, 64, 2     # 8 steps an epoch
HEALTHY_WORKERS = 2
WEIGHT_ATOL = 2e-6      # max |w_ray - w_in_process| after 16 SGD steps on 2 workers


def _worker_batch_order(n, batch, workers):
    """Row order under which ONE in-process replica sees, at step k, exactly the rows the
    ``workers`` Ray workers see together at step k.

    Worker r holds rows ``np.array_split(range(n), workers)[r]`` and takes per-replica
    batches of ``batch / workers`` of them in order (``shuffle=False``). Global batch k is
    the union of every worker's batch k, and its mean loss is the mean over those rows
    (equal per-replica sizes), so the in-process run fed that union in one batch takes the
    same gradient step up to float32 summation order.
    """
    shards = np.array_split(np.arange(n), workers)
    per = batch // workers
    steps = math.ceil(len(shards[0]) / per)
    return np.concatenate([s[k * per:(k + 1) * per] for k in range(steps) for s in shards])


@pytest.fixture(scope="module")
def healthy(ray_cluster, tmp_path_factory):  # noqa: F811
    """A healthy run on 2 Ray workers and two in-process runs (workers=0, the default
    strategy, one replica, same global batch, ``shuffle=False``, the same initial weights):

    - ``matched``: rows reordered by ``_worker_batch_order``, so each global batch is made
      of the same rows as the 2 workers' batch (the honest reference);
    - ``plain``: rows in their own order, so each global batch is 64 consecutive rows,
      while the workers' batch k is rows 32k.. of [0, 256) plus rows 256 + 32k.. of
      [256, 512). It must NOT match: the tolerance is tight enough to see a different
      batch composition.

    Only 2 workers: a 1-worker run (one replica, rows in their own order) proves nothing
    the 2-worker run does not; the 2-worker run also proves the all-reduce (the gradient
    of a global batch split over two nodes) and the batch composition.
    """
    _by_value()
    x, y = _blobs(HEALTHY_ROWS)
    order = _worker_batch_order(HEALTHY_ROWS, HEALTHY_BATCH, HEALTHY_WORKERS)
    tmp = tmp_path_factory.mktemp("healthy")
    common = dict(batch_size=HEALTHY_BATCH, epochs=HEALTHY_EPOCHS, shuffle=False, verbose=0)
    matched = gt.fit(_sgd_mlp, x[order], y[order], run_dir=tmp / "matched", **common)
    plain = gt.fit(_sgd_mlp, x, y, run_dir=tmp / "plain", **common)
    (tmp / "workers").mkdir()
    sigint = signal.getsignal(signal.SIGINT)
    ray = gt.fit(_sgd_mlp, x, y, run_dir=tmp / "ray",
                 launch=_launch(ray_cluster, HEALTHY_WORKERS),
                 callbacks=[_RecordWorker(tmp / "workers")], **common)
    return {"ray": ray, "matched": matched, "plain": plain, "records": tmp / "workers",
            "sigint_kept": signal.getsignal(signal.SIGINT) is sigint}


def test_final_weights_match_the_in_process_run_fed_the_same_batches(healthy):
    """Tolerance: max |difference| <= 2e-6 over every weight after 16 SGD steps (float32
    weights of magnitude ~0.3; the only difference left is the order of float32 sums: the
    all-reduce adds two half-batch means). Measured here: 6e-8."""
    ray, matched = healthy["ray"], healthy["matched"]
    assert ray.verdict == matched.verdict == "healthy"
    diff = _max_diff(ray.model.get_weights(), matched.model.get_weights())
    assert diff <= WEIGHT_ATOL, f"max |dw| = {diff:.3g}"
    initial = _sgd_mlp().get_weights()
    assert _max_diff(ray.model.get_weights(), initial) > 1e-2  # it did train


def test_per_step_loss_matches_too(healthy):
    ray, matched = healthy["ray"].history, healthy["matched"].history
    steps = HEALTHY_EPOCHS * HEALTHY_ROWS // HEALTHY_BATCH
    _assert_each_step_once(ray, steps)
    np.testing.assert_allclose(_column(ray, "loss"), _column(matched, "loss"), rtol=1e-5)


def test_a_different_batch_composition_is_visible(healthy):
    diff = _max_diff(healthy["ray"].model.get_weights(), healthy["plain"].model.get_weights())
    assert diff > 50 * WEIGHT_ATOL, f"plain order differs by only {diff:.3g}"


def test_the_workers_ran_one_per_node_of_the_cluster(healthy):
    import tensorflow as tf

    workers = HEALTHY_WORKERS
    start = _one(healthy["ray"], "start")
    assert start["workers"] == workers and start["replicas"] == workers
    # tf.distribute.MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy
    assert start["strategy"] == tf.distribute.MultiWorkerMirroredStrategy.__name__
    records = [json.loads(p.read_text()) for p in sorted(healthy["records"].glob("rank-*"))]
    assert [r["rank"] for r in records] == list(range(workers))
    assert {r["world"] for r in records} == {workers}
    assert len({r["node"] for r in records}) == workers  # 1 CPU per node: one worker each
    assert all(r["pid"] != os.getpid() for r in records)
    end = _one(healthy["ray"], "end")
    assert end["same_decisions"] is True and len(end["decision_digests"]) == workers


def test_both_ranks_end_with_the_same_weights_and_the_sigint_handler_is_restored(healthy):
    """The all-reduce keeps the replicas in step: every rank ends holding the weights rank
    0 returned, bit for bit. Ray Train installs its own SIGINT handler during a run; the
    driver's comes back after it."""
    ranks = []
    for rank in range(HEALTHY_WORKERS):
        with np.load(healthy["records"] / f"weights-rank-{rank}.npz") as saved:
            ranks.append([saved[f"arr_{i}"] for i in range(len(saved.files))])
    returned = healthy["ray"].model.get_weights()
    for weights in ranks:
        assert len(weights) == len(returned)
        assert all(np.array_equal(a, b) for a, b in zip(weights, returned))
    assert healthy["sigint_kept"], "Ray's SIGINT handler was left installed after fit"


# -- 2 and 3: the stalled Adam is rescued on 2 workers, then a worker is killed -----------

# The guard judges after warm-up 10 + window 40 steps (as ``examples/tiny-job.yaml`` does,
# near enough): the stall is called at step 50, and the attempt after the rescue is judged
# at its step 50. The defaults (50 + 100) prove nothing more here and cost ~3x the steps.
STALL_GUARD = dict(warmup_steps=10, window_steps=40)
STALL_ROWS, STALL_BATCH, STALL_LOOP, STALL_EPOCHS = 2560, 64, 10, 2   # 40 steps an epoch
STEPS_PER_EPOCH = STALL_ROWS // STALL_BATCH
STALLED_AT = 50                         # warm-up 10 + window 40 steps: the end of chunk 5
# Chunks as the callbacks count them (one on_train_batch_begin/_end each; probe steps are
# outside the record and not counted):
#   1-5    attempt 1, steps 1-50 (its epoch 1 is cut short). STALLED at step 50: PROBE,
#          then ADJUST back to the snapshot at step 0 with a new rate (attempt 2).
#   6-9    attempt 2, steps 1-40 = its epoch 0. The run's one checkpoint (every 9 chunks)
#          follows chunk 9: after the rescue, before attempt 2 is first judged (so the
#          restored run must still know it is a rescue in progress), and at the end of an
#          epoch, before that epoch's end (its event, its callbacks) has run.
#   10     attempt 2, steps 41-50: recorded after the checkpoint; the kill loses it.
#   11     begins: rank 1's worker process SIGKILLs itself. The group restarts from the
#          checkpoint (attempt 2, step 40), goes straight into epoch 0's end, then runs
#          steps 41-80 (judged healthy at 50: rescued).
CHECKPOINT_CHUNK = KILL_CHECKPOINT_EVERY = 9
CHECKPOINT_STEP = 40                    # attempt 2's step after chunk 9
KILL_AT_CHUNK = 11


@pytest.fixture(scope="module")
def rescued_and_killed(ray_cluster, tmp_path_factory):  # noqa: F811
    """One run carries the rescue on 2 workers and the crash recovery, the rescue's state
    included: it replaces a rescue-only run, a rescue-then-kill run and a healthy
    kill run. ``_RecordProcess`` keeps what each worker process saw itself, since after the
    restart every rank holds rank 0's checkpoint (decisions, weights) and the end event's
    decision digests no longer tell the ranks' own decisions apart."""
    _by_value()
    tmp = tmp_path_factory.mktemp("rescued-killed")
    (tmp / "processes").mkdir()
    x, y = _blobs(STALL_ROWS, scale=1.2)
    marker = tmp / "killed-pid"
    result = gt.fit(_stalled_adam, x, y, batch_size=STALL_BATCH, epochs=STALL_EPOCHS,
                    steps_per_loop=STALL_LOOP, guard=gt.GuardConfig(**STALL_GUARD),
                    callbacks=[_KillRank1Once(marker, KILL_AT_CHUNK),
                               _RecordProcess(tmp / "processes", marker, CHECKPOINT_CHUNK)],
                    launch=_launch(ray_cluster, 2, max_failures=1,
                                   checkpoint_every_chunks=KILL_CHECKPOINT_EVERY),
                    verbose=0, run_dir=tmp / "run")
    return {"result": result, "marker": marker, "processes": tmp / "processes"}


def _process_files(run, generation, rank, what):
    found = sorted(run["processes"].glob(f"{generation}-rank{rank}-*.{what}"))
    assert len(found) == 1, f"expected one {generation} rank-{rank} process, found {found}"
    return found[0]


def _announced(run, generation, rank):
    path = _process_files(run, generation, rank, "decisions.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def _saved_weights(run, generation, rank, what):
    with np.load(_process_files(run, generation, rank, what)) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def test_stalled_adam_is_rescued_on_two_workers(rescued_and_killed):
    result = rescued_and_killed["result"]
    assert result.verdict == "rescued"       # also after the kill and the restart
    actions = [e["action"] for e in _events(result, "decision")]
    assert "PROBE" in actions and "ADJUST" in actions
    assert actions.index("PROBE") < actions.index("ADJUST")
    [adjust] = [e for e in _events(result, "decision") if e["action"] == "ADJUST"]
    assert adjust["learning_rate_to"] > 1e-6 * 10
    assert adjust["step"] == STALLED_AT
    assert set(_column(result.history, "attempt").tolist()) == {1, 2}


def test_both_ranks_took_the_same_decisions(rescued_and_killed):
    """Each rank's own decisions, as it announced them before the kill, are the same, and
    are the run's decision events; after the restart no decision is taken again, and the
    ranks' decision digests at the end agree.

    The time bound (4 x STEP_TIMEOUT_S, as the rescue-only run had on its whole run) is on
    each rank's training up to the checkpoint: the stall, the probe, the adjust and 4 more
    chunks. Not on the whole run, which also holds a kill and a worker-group restart, and
    takes several times longer on a slow CI machine."""
    run = rescued_and_killed
    result = run["result"]
    events = _events(result, "decision")
    first = [_announced(run, "first", rank) for rank in (0, 1)]
    assert first[0] == first[1], "the ranks took different decisions"
    assert [block.split()[1] for block in first[1]] == [e["action"] for e in events]
    for block, event in zip(first[1], events):
        assert f"reason: {event['reason']}" in block and f"change: {event['summary']}" in block
    assert [_announced(run, "restarted", rank) for rank in (0, 1)] == [[], []]
    end = _one(result, "end")
    assert end["verdict"] == "rescued"
    digests = end["decision_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert end["same_decisions"] is True
    for rank in (0, 1):
        times = json.loads(_process_files(run, "first", rank, "times.json").read_text())
        # no rank waited out a collective timeout
        assert times["chunk"] - times["begin"] < 4 * STEP_TIMEOUT_S, (rank, times)


def test_restart_after_the_rescue_keeps_the_new_rate_and_records_each_step_once(
        rescued_and_killed):
    result = rescued_and_killed["result"]
    [adjust] = [e for e in _events(result, "decision") if e["action"] == "ADJUST"]
    history = result.history
    attempts, steps = _column(history, "attempt"), _column(history, "step")
    keys = list(zip(attempts.tolist(), steps.tolist()))
    assert len(set(keys)) == len(keys), "a step is recorded twice"
    assert steps[attempts == 1].tolist() == list(range(1, STALLED_AT + 1))
    assert steps[attempts == 2].tolist() == list(range(1, STALL_EPOCHS * STEPS_PER_EPOCH + 1))
    epochs = _column(history, "epoch")
    assert np.bincount(epochs[attempts == 2]).tolist() == [STEPS_PER_EPOCH] * STALL_EPOCHS
    # after the restart the run goes on at the adjusted rate, not the compiled 1e-6
    rates = _column(history, "learning_rate")[attempts == 2]
    np.testing.assert_allclose(rates, adjust["learning_rate_to"], rtol=1e-6)


def test_restart_is_recorded_and_resumes_from_the_checkpoint(rescued_and_killed):
    run = rescued_and_killed
    result = run["result"]
    assert run["marker"].exists(), "the rank-1 worker was never killed"
    assert int(run["marker"].read_text()) != os.getpid()
    [restart] = [e for e in _events(result, "restart") if e["rank"] == 0]
    assert (restart["attempt"], restart["step"]) == (2, CHECKPOINT_STEP)
    # Every epoch of each attempt ended once (attempt 1's last was cut short by the rescue),
    # epoch 0 of attempt 2 too, which the checkpoint was taken just before, with its logs.
    ended = [(e["attempt"], e["epoch"]) for e in _events(result, "epoch")]
    assert ended == [(1, e) for e in range(STALLED_AT // STEPS_PER_EPOCH)] + \
        [(2, e) for e in range(STALL_EPOCHS)], "an epoch ended twice, or never"
    assert all("loss" in e["logs"] for e in _events(result, "epoch")), _events(result, "epoch")
    assert len(_events(result, "start")) == 1
    assert _one(result, "end")["same_decisions"] is True
    # The ranks were in step at the checkpoint, and both restarted processes began from
    # exactly the weights it holds.
    at_checkpoint = _saved_weights(run, "first", 0, f"chunk{CHECKPOINT_CHUNK}.npz")
    initial = _saved_weights(run, "first", 0, "begin.npz")
    assert _max_diff(at_checkpoint, initial) > 1e-3
    for generation, rank, what in (("first", 1, f"chunk{CHECKPOINT_CHUNK}.npz"),
                                   ("restarted", 0, "begin.npz"),
                                   ("restarted", 1, "begin.npz")):
        weights = _saved_weights(run, generation, rank, what)
        assert all(np.array_equal(a, b) for a, b in zip(weights, at_checkpoint)), \
            f"{generation} rank {rank}: {what} is not the checkpoint's weights"


# -- 4: with rescue off, the verdict arrives on the driver as itself ------------------------

def test_unrescued_stall_raises_gt301_with_its_rank(ray_cluster, tmp_path):  # noqa: F811
    """``rescue=False``: every rank raises GT301 at the same step; the driver gets it as
    itself. ``max_failures=1``: a verdict is not a crash, so no restart may repeat it (a
    restart would resume from a checkpoint and raise again, at -1 forever). Checkpoints
    every 2 chunks (steps 20 and 40), before the verdict at step 50: a restart would
    resume from one and write a ``restart`` event."""
    _by_value()
    x, y = _blobs(STALL_ROWS, scale=1.2)
    start = time.monotonic()
    with pytest.raises(gt.UnhealthyTrainingError) as info:
        gt.fit(_stalled_adam, x, y, batch_size=STALL_BATCH, epochs=STALL_EPOCHS,
               steps_per_loop=STALL_LOOP, guard=gt.GuardConfig(**STALL_GUARD), rescue=False,
               launch=_launch(ray_cluster, 2, max_failures=1, checkpoint_every_chunks=2),
               verbose=0, run_dir=tmp_path)
    err = info.value
    assert type(err) is gt.UnhealthyTrainingError
    assert err.code == "GT301" and str(err).startswith("[GT301]")
    assert err.details["verdict"] == "STALLED"
    assert err.details["rank"] in (0, 1)
    assert "Fix:" in str(err)
    assert time.monotonic() - start < 4 * STEP_TIMEOUT_S
    assert not _events(tmp_path, "restart"), "the verdict was retried as if it were a crash"
    # ... though it had a checkpoint to resume from
    assert list((tmp_path / "ray").rglob(STATE_FILE)), "no checkpoint before the verdict"
    # As in-process: the error is in the events, the chunk that ended the run in the history.
    [error] = _events(tmp_path, "error")
    assert error["code"] == "GT301"
    history = gt.load_history(tmp_path)
    assert _column(history, "step").max() >= err.details["step"]
    assert _column(history, "verdict")[-1] == "STALLED"


# -- 5: an impossible request fails in seconds ----------------------------------------------

def test_gpu_request_on_a_cpu_cluster_fails_in_seconds(ray_cluster, tmp_path):  # noqa: F811
    """``gt.fit`` checks first: with Ray attached, ``check`` compares the request with the
    cluster; without it, ``fit_on_ray`` does after connecting. Either way: a guardtrain
    error with a code and a Fix line, in seconds, and no worker started."""
    import ray

    x, y = _blobs(256)
    launch = _launch(ray_cluster, 2, gpus_per_worker=1)
    seen = {}
    for attached in (True, False):
        if attached:
            from guardtrain.ray.cluster import connect

            connect(launch)            # as after any earlier run in this session
        elif ray.is_initialized():
            ray.shutdown()
        start = time.monotonic()
        with pytest.raises(gt.GuardtrainError) as info:
            gt.fit(_sgd_mlp, x, y, launch=launch, verbose=0, run_dir=tmp_path / str(attached))
        elapsed = time.monotonic() - start
        err = info.value
        seen[attached] = err
        assert elapsed < 30, f"attached={attached}: {elapsed:.1f} s"
        codes = {err.code} | {p.code for p in getattr(err, "problems", ())}
        assert codes & {"GT421", "GT261"} and "Fix:" in str(err), str(err)
        assert "GPU" in str(err)
    assert isinstance(seen[False], gt.LaunchError) and seen[False].code == "GT421"


def test_gpu_request_is_a_launch_error_also_when_ray_attached(ray_cluster,  # noqa: F811
                                                              tmp_path):
    from guardtrain.ray.cluster import connect

    launch = _launch(ray_cluster, 2, gpus_per_worker=1)
    connect(launch)
    x, y = _blobs(256)
    with pytest.raises(gt.LaunchError) as info:
        gt.fit(_sgd_mlp, x, y, launch=launch, verbose=0, run_dir=tmp_path)
    assert info.value.code == "GT421"


# -- 7: Parquet input, each worker reading its own files ------------------------------------

PARQUET_ROWS = (200, 136, 184)            # 520 rows in 3 files
PARQUET_BATCH, PARQUET_EPOCHS = 32, 2     # ceil(520 / 32) = 17 steps an epoch


@pytest.fixture(scope="module")
def parquet_run(ray_cluster, tmp_path_factory):  # noqa: F811
    import pyarrow as pa
    import pyarrow.parquet as pq

    _by_value()
    tmp = tmp_path_factory.mktemp("parquet")
    (tmp / "data").mkdir()
    (tmp / "reads").mkdir()
    x, y = _blobs(sum(PARQUET_ROWS))
    bounds = np.cumsum((0,) + PARQUET_ROWS)
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        table = pa.table({**{f"f{j}": x[a:b, j] for j in range(FEATURES)}, "y": y[a:b]})
        pq.write_table(table, tmp / "data" / f"part-{i}.parquet")
    source = gt.data.parquet(str(tmp / "data" / "part-*.parquet"),
                             features=[f"f{j}" for j in range(FEATURES)], label="y")
    source = _RecordingParquet(**dataclasses.asdict(source), log_dir=str(tmp / "reads"))
    result = gt.fit(_sgd_mlp, source, batch_size=PARQUET_BATCH, epochs=PARQUET_EPOCHS,
                    launch=_launch(ray_cluster, 2), verbose=0, run_dir=tmp / "run")
    reads = [json.loads(p.read_text()) for p in (tmp / "reads").glob("read-*-of-2-*.json")]
    return result, source, sorted(reads, key=lambda r: r["shard"])


def test_parquet_on_two_workers_has_the_expected_steps_per_epoch(parquet_run):
    result, _, _ = parquet_run
    per_epoch = math.ceil(sum(PARQUET_ROWS) / PARQUET_BATCH)
    assert result.verdict == "healthy"
    assert _one(result, "start")["steps_per_epoch"] == per_epoch
    _assert_each_step_once(result.history, per_epoch * PARQUET_EPOCHS)
    assert np.bincount(_column(result.history, "epoch")).tolist() == [per_epoch] * PARQUET_EPOCHS


def test_each_worker_read_its_own_files(parquet_run):
    _, source, reads = parquet_run
    assert [(r["shard"], r["rank"]) for r in reads] == [(0, 0), (1, 1)]
    files = [f for r in reads for f in r["files"]]
    assert sorted(files) == sorted(source.files) and len(set(files)) == len(files)
    assert [r["files"] for r in reads] == [list(source.files[0::2]), list(source.files[1::2])]
    assert [r["rows"] for r in reads] == [PARQUET_ROWS[0] + PARQUET_ROWS[2], PARQUET_ROWS[1]]
