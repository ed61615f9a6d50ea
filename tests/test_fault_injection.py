"""Every way a run ends leaves a run directory that reads cleanly and says why it ended.

Out of process: ``guardtrain fit`` (through a small driver that pauses the process just
before one kind of file is renamed into place) is killed with SIGKILL at a history write,
an events write and the model write, and stopped with SIGTERM and SIGINT mid-run. The
processes start together, so the whole set costs about one TensorFlow start-up.

In process: a Keras error from a callback, ``KeyboardInterrupt`` from a callback, a write
that fails (also the record's own write), a reused run directory, ``resume=True``, and
non-finite weights with the guard off and on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pyarrow.parquet as pq
import pytest

import guardtrain as gt
from guardtrain.core.errors import ConfigError
from guardtrain.interface import cli
from guardtrain.records.events import load_events

pytestmark = pytest.mark.tf

# -- out of process ------------------------------------------------------------------------

_DRIVER = '''
import os, signal, sys, time
# A background shell starts children with SIGINT ignored, and Python then installs no
# KeyboardInterrupt handler: this process takes Ctrl-C as a terminal would deliver it.
signal.signal(signal.SIGINT, signal.default_int_handler)
kind, _, nth = os.environ.get("GT_PAUSE_AT", "").partition(":")
if kind:
    _replace, seen = os.replace, [0]
    def replace(src, dst, *args, **kwargs):
        name = os.path.basename(os.fspath(dst))
        if name == kind or (kind == "history" and name.startswith("attempt-")):
            seen[0] += 1
            if seen[0] == int(nth):
                with open(os.environ["GT_PAUSED_FILE"], "w") as f:
                    f.write(name)
                while True:          # the test signals or kills the process here
                    time.sleep(0.02)
        return _replace(src, dst, *args, **kwargs)
    os.replace = replace
from guardtrain.interface import cli
sys.exit(cli.main(sys.argv[1:]))
'''

_MODEL = '''
import keras

def build():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
'''

# name: (where the driver pauses, the signal then sent; None = SIGKILL)
_CASES = {
    "history": ("history:2", None),          # the second history write (a file exists)
    "events": ("events.jsonl:4", None),       # start, guard, epoch 1, epoch 2 <- here
    "model": ("model.keras:1", None),
    "sigterm": ("history:1", signal.SIGTERM),  # mid-run, after the first epoch
    "sigint": ("history:1", signal.SIGINT),
}


@dataclasses.dataclass
class Stopped:
    run: Path
    code: int | None
    out: str
    err: str
    paused: bool


def _write_job(root: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(192, 4)).astype("float32")
    np.savez(root / "data.npz", x=x, y=(np.arange(192) % 3).astype("int64"))
    (root / "tiny.py").write_text(_MODEL)
    (root / "driver.py").write_text(_DRIVER)
    job = root / "job.yaml"
    job.write_text("model: tiny:build\ndata: {npz: data.npz, x: x, y: y}\nbatch_size: 32\n"
                   "epochs: 4\nsteps_per_loop: 3\nlaunch: {workers: 0}\n")
    return job


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> dict[str, Stopped]:
    root = tmp_path_factory.mktemp("faults")
    job = _write_job(root)
    procs = {}
    for name, (pause, _) in _CASES.items():
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", GT_PAUSE_AT=pause,
                   GT_PAUSED_FILE=str(root / f"paused-{name}"))
        with open(root / f"{name}.out", "w") as out, open(root / f"{name}.err", "w") as err:
            procs[name] = subprocess.Popen(
                [sys.executable, str(root / "driver.py"), "fit", str(job), "--run-dir",
                 str(root / f"run-{name}"), "--verbose", "0"],
                cwd=root, env=env, stdout=out, stderr=err)
    pending, deadline = set(procs), time.monotonic() + 240
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            if (root / f"paused-{name}").exists():
                procs[name].send_signal(_CASES[name][1] or signal.SIGKILL)
                pending.discard(name)
            elif procs[name].poll() is not None:
                pending.discard(name)          # ended without pausing: the test says so
        time.sleep(0.05)
    found = {}
    for name, proc in procs.items():
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        found[name] = Stopped(run=root / f"run-{name}", code=proc.returncode,
                              out=(root / f"{name}.out").read_text(),
                              err=(root / f"{name}.err").read_text(),
                              paused=(root / f"paused-{name}").exists())
    return found


def _report(capsys, run: Path) -> str:
    code = cli.main(["report", str(run)])
    text = capsys.readouterr().out
    assert code == 0, text
    return text


@pytest.mark.parametrize("name", ["history", "events", "model"])
def test_a_killed_run_reads_cleanly_and_reports_running(stopped, name, capsys):
    s = stopped[name]
    assert s.paused, s.err[-2000:]
    assert s.code == -signal.SIGKILL
    table = pq.read_table(s.run / "history")     # skips the half-written dot file
    assert table.num_rows >= 6
    assert table.num_rows == gt.load_history(s.run).num_rows
    events = load_events(s.run)
    assert events[0]["event"] == "start" and not [e for e in events if e["event"] == "end"]
    text = _report(capsys, s.run)
    assert ": RUNNING (no end record yet" in text


@pytest.mark.parametrize("name, status, exit_code", [("sigterm", "terminated", 143),
                                                     ("sigint", "interrupted", 130)])
def test_a_signalled_run_writes_its_end_and_exits_with_its_code(stopped, name, status,
                                                                exit_code, capsys):
    s = stopped[name]
    assert s.paused, s.err[-2000:]
    assert s.code == exit_code, s.err[-2000:]
    assert f"guardtrain fit: {status}" in s.err and "Traceback" not in s.err
    table = pq.read_table(s.run / "history")
    assert table.num_rows >= 6                       # the rows so far, written on the way out
    end = load_events(s.run)[-1]
    assert end["event"] == "end" and end["status"] == status
    assert end["error"]["type"] == ("Terminated" if name == "sigterm" else "KeyboardInterrupt")
    text = _report(capsys, s.run)
    assert f": {status.upper()} (" in text
    assert not (s.run / "model.keras").exists()


# -- in process ----------------------------------------------------------------------------

ROWS, BATCH, LOOP = 96, 16, 3            # 6 steps an epoch, 2 chunks


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS, 4)).astype("float32")
    return x, (2 * x[:, :1] - x[:, 1:2]).astype("float32")


def _model(lr: float = 0.05):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    return model


def _fit(run, model=None, **kwargs):
    x, y = _data()
    kwargs = {"batch_size": BATCH, "epochs": 3, "steps_per_loop": LOOP, "verbose": 0,
              "shuffle": False, **kwargs}
    return gt.fit(model or _model(), x, y, run_dir=run, **kwargs)


class _At(keras.callbacks.Callback):
    """Calls ``action(self)`` at the ``at``-th batch end (one per chunk), or at train end."""

    def __init__(self, action, at: int | None = None):
        super().__init__()
        self.action, self.at, self.seen = action, at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at:
            self.action(self)

    def on_train_end(self, logs=None):
        if self.at is None:
            self.action(self)


def _end(run) -> dict:
    ends = [e for e in load_events(run) if e["event"] == "end"]
    assert len(ends) == 1, ends
    return ends[0]


def _keyboard_interrupt(cb):
    raise KeyboardInterrupt


@pytest.mark.parametrize("action, error, status", [
    (lambda cb: cb.model.get_layer("no_such_layer"), ValueError, "failed"),
    (_keyboard_interrupt, KeyboardInterrupt, "interrupted"),
])
def test_an_exception_from_a_callback_writes_the_history_and_the_end(tmp_path, action, error,
                                                                    status, capsys):
    run = tmp_path / "run"
    with pytest.raises(error):
        _fit(run, callbacks=[_At(action, at=3)])          # after step 9, in epoch 2
    assert gt.load_history(run).column("step").to_pylist() == list(range(1, 10))
    end = _end(run)
    assert (end["status"], end["step"], end["error"]["type"]) == (status, 9, error.__name__)
    attempts = json.loads((run / "attempts.json").read_text())
    assert attempts[-1]["outcome"] == status
    text = _report(capsys, run)
    assert f": {status.upper()} (" in text and error.__name__ in text


def test_a_failed_model_write_ends_the_run_failed(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(IsADirectoryError):
        _fit(run, callbacks=[_At(lambda cb: (run / "model.keras").mkdir())])
    assert gt.load_history(run).num_rows == 18
    end = _end(run)
    assert (end["status"], end["error"]["type"]) == ("failed", "IsADirectoryError")


def test_a_record_that_cannot_be_written_does_not_hide_the_error(tmp_path, capsys):
    run = tmp_path / "run"

    def block_history(cb):        # the run's last history write now fails, twice
        path = run / "history" / "attempt-0001.parquet"
        path.unlink()
        path.mkdir()

    with pytest.raises(IsADirectoryError) as info:
        _fit(run, callbacks=[_At(block_history)])
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "could not write the history of this run" in notes
    assert "could not write the history" in capsys.readouterr().err
    end = _end(run)                                     # the events still say why
    assert (end["status"], end["error"]["type"]) == ("failed", "IsADirectoryError")


def test_a_reused_run_directory_is_refused_before_anything_starts(tmp_path):
    run = tmp_path / "run"
    _fit(run, epochs=1, guard=False)
    before = (run / "events.jsonl").read_text()
    model = _model()
    weights = model.get_weights()
    with pytest.raises(ConfigError) as info:
        _fit(run, model=model, epochs=1)
    text = str(info.value)
    assert info.value.code == "GT152" and "history/ (1 file)" in text
    assert "Fix:" in text and "resume=True" in text
    assert (run / "events.jsonl").read_text() == before
    for mine, start in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(mine, start)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ConfigError) as info:
        _fit(tmp_path / "a-file", epochs=1)
    assert info.value.code == "GT150"


def test_resume_appends_a_run_with_its_own_id_and_attempt_numbers(tmp_path, capsys):
    run = tmp_path / "run"
    first = _fit(run, epochs=2, guard=False)
    first_file = pq.read_table(run / "history" / "attempt-0001.parquet")
    second = _fit(run, epochs=1, resume=True)

    assert first.run_id != second.run_id
    assert second.history.num_rows == 6
    assert set(second.history.column("run_id").to_pylist()) == {second.run_id}
    assert set(second.history.column("attempt").to_pylist()) == {2}
    assert "steps recorded: 6 in 1 attempt(s)" in second.summary()
    assert [a["number"] for a in second.attempts] == [2]
    assert pq.read_table(run / "history" / "attempt-0001.parquet").equals(first_file)
    assert gt.load_history(run).num_rows == 12 + 6
    starts = [e["run_id"] for e in load_events(run) if e["event"] == "start"]
    assert starts == [first.run_id, second.run_id]
    text = _report(capsys, run)
    assert f"guardtrain run {second.run_id}: HEALTHY" in text
    assert "this folder holds 2 runs" in text and first.run_id in text
    assert "6 steps recorded" in text


def test_nan_with_the_guard_off_is_marked_failed(tmp_path, capsys):
    run = tmp_path / "run"
    result = _fit(run, model=_model(1e6), guard=False)
    assert result.verdict == "failed"
    assert result.nonfinite["steps"] > 0 and result.nonfinite["first_step"] >= 1
    assert "NON-FINITE" in result.summary()
    assert [e for e in load_events(run) if e["event"] == "nonfinite"]
    text = _report(capsys, run)
    assert ": FAILED (" in text and "non-finite" in text and "HEALTHY" not in text


def test_loss_scale_skips_with_the_guard_off_are_not_a_failure(tmp_path):
    # mixed_float16: the first steps' scaled gradients overflow float16 and the
    # LossScaleOptimizer skips them by design (the loss stays finite). Not a failure.
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(1e-6), loss="mse")
        x, y = _data()
        result = gt.fit(model, 300 * x, 300 * y, run_dir=tmp_path / "run", guard=False,
                        batch_size=BATCH, epochs=1, steps_per_loop=LOOP, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    skips = [e for e in load_events(tmp_path / "run") if e["event"] == "loss_scale_skips"]
    assert skips and sum(e["skipped"] for e in skips) >= 1   # skips happened, and counted
    # A skipped step is a finite step whose norms were not measured, not a failure.
    assert np.asarray(result.history.column("finite").to_pylist()).all()
    assert np.isfinite(result.history.column("loss").to_numpy()).all()
    assert result.verdict != "failed" and not result.nonfinite


def test_the_guard_never_returns_non_finite_weights(tmp_path):
    model = _model(1e6)
    result = _fit(tmp_path / "run", model=model,
                  guard=gt.GuardConfig(max_nonfinite_steps=1000))   # the guard lets it go
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert result.verdict == "failed"
    assert result.nonfinite["final_weights_finite"] is False
    assert result.nonfinite["rolled_back_to"] is not None
