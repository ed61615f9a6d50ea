"""``gt.report`` and ``gt.plot`` on run directories written here, step by step.

The runs are made with the history and events writers the loop uses (no TensorFlow): a
stall on 2 replicas rescued by a probe and a rate change, a run that failed, one still
running, and one with nothing recorded yet. The PNG is opened and its pixels checked:
size, not blank, the rescue marker, the healthy band.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from guardtrain.core.errors import ConfigError
from guardtrain.interface.plotting import plot
from guardtrain.interface.text_report import report
from guardtrain.records.events import EventLog, load_events
from guardtrain.records.history import HistoryWriter, load_history
from guardtrain.records.run_record import load_run
from guardtrain.core.stats import STAT_COLUMNS

pytestmark = pytest.mark.pure

STALL = {"kind": "STALLED", "step": 60, "first_step": 31,
         "reason": "STALLED at step 60: update_ratio median 4.0e-06 over 30 steps, "
                   "loss 2.301 -> 2.300",
         "evidence": {"steps": 30, "loss_early": 2.301, "loss_late": 2.3,
                      "update_ratio": 4.0e-06}, "settled": True, "snapshot_ok": False}


def _stats(n, *, loss, ratio, grad, spread=1.2, rng):
    stats = {name: np.zeros(n) for name in STAT_COLUMNS}
    stats["loss"] = np.asarray(loss, float) + rng.normal(scale=0.02, size=n)
    stats["update_ratio"] = np.full(n, ratio) * rng.uniform(0.8, 1.2, size=n)
    stats["grad_norm_mean"] = np.full(n, grad)
    stats["grad_norm_min"] = np.full(n, grad / spread)
    stats["grad_norm_max"] = np.full(n, grad * spread)
    stats["grad_norm_argmin"] = np.zeros(n, int)
    stats["finite"] = np.ones(n, bool)
    stats["measured"] = np.ones(n, bool)
    return stats


def _write_chunks(history, *, attempt, first, last, lr, optimizer, loss_fn, ratio, grad,
                  verdict, rng, chunk=10, epoch_steps=40):
    for start in range(first, last + 1, chunk):
        steps = np.arange(start, min(start + chunk, last + 1))
        history.append(attempt=attempt, steps=steps, epoch=(steps[0] - 1) // epoch_steps,
                       stats=_stats(len(steps), loss=loss_fn(steps), ratio=ratio, grad=grad,
                                    rng=rng),
                       learning_rate=lr, optimizer=optimizer, verdict=verdict)


def make_run(folder: Path, *, outcome: str = "rescued") -> Path:
    """A 2-replica run: SGD at 1e-6 stalls (steps 1-60), a probe, then lr 1e-2 from the
    snapshot at step 30 (steps 31-120). ``outcome``: rescued, failed, running."""
    rng = np.random.default_rng(0)
    run_id = folder.name
    history, events = HistoryWriter(folder, run_id), EventLog(folder)
    events.add("start", run_id=run_id, replicas=2, strategy="MirroredStrategy",
               steps_per_epoch=40, epochs=3)
    _write_chunks(history, attempt=1, first=1, last=60, lr=1e-6, optimizer="sgd",
                  loss_fn=lambda s: np.full(len(s), 2.3), ratio=4e-6, grad=0.5,
                  verdict="STALLED", rng=rng)
    events.add("epoch", epoch=0, step=40, attempt=1, logs={"loss": 2.3, "val_loss": 2.31})
    events.add("verdict", **STALL)
    events.add("decision", action="PROBE", step=60, attempt=1, max_attempts=4,
               reason=STALL["reason"], verdict=STALL, from_step=30,
               learning_rates=[1e-5, 1e-4, 1e-3, 1e-2], steps=20, optimizer=None,
               summary="probe learning_rate 1e-5, 1e-4, 1e-3, 1e-2 for 20 steps each "
                       "(now 1.0e-06, sgd)")
    events.add("probe", step=60, results=[
        {"learning_rate": lr, "loss_start": 2.3, "loss_end": end, "finite": True}
        for lr, end in ((1e-5, 2.299), (1e-4, 2.29), (1e-3, 2.1), (1e-2, 1.2))])
    events.add("decision", action="ADJUST", step=60, attempt=2, max_attempts=4,
               reason=STALL["reason"], verdict=STALL, from_step=30,
               optimizer_from="sgd", optimizer_to="sgd", learning_rate_from=1e-6,
               learning_rate_to=1e-2, fresh_optimizer_state=False,
               summary="learning_rate 1.0e-06 -> 1.0e-02 (probe: 1e-5 -0.04%, 1e-4 -0.4%, "
                       "1e-3 -8.7%, 1e-2 -48%)")
    last = 120 if outcome != "running" else 80
    _write_chunks(history, attempt=2, first=31, last=last, lr=1e-2, optimizer="sgd",
                  loss_fn=lambda s: 2.3 * np.exp(-(s - 30) / 30) + 0.2, ratio=1e-3, grad=0.3,
                  verdict="HEALTHY", rng=rng)
    for epoch, step, val in ((0, 40, 1.9), (1, 80, 0.5)):
        events.add("epoch", epoch=epoch, step=step, attempt=2,
                   logs={"loss": val - 0.05, "accuracy": 0.8, "val_loss": val})
    if outcome == "failed":
        events.add("error", code="GT501", message="4 of 4 attempts spent")
    elif outcome == "rescued":
        events.add("epoch", epoch=2, step=120, attempt=2, logs={"loss": 0.3, "val_loss": 0.35})
        events.add("end", verdict="rescued", step=120)
    history.flush()
    return folder


def test_report_tells_attempts_decisions_evidence_verdict_and_files(tmp_path):
    text = report(make_run(tmp_path / "run-a"))
    assert text.splitlines()[0] == "guardtrain run run-a: RESCUED (healthy after 1 rescue)"
    assert "MirroredStrategy, 2 replicas" in text
    assert "planned:  3 epochs x 40 steps = 120 steps" in text
    lines = text.splitlines()
    attempt_1 = next(line for line in lines if line.strip().startswith("1  sgd"))
    assert "1.0e-06" in attempt_1 and "1-60" in attempt_1
    assert "rolled back at step 60: STALLED" in attempt_1
    attempt_2 = next(line for line in lines if line.strip().startswith("2  sgd"))
    assert "31-120" in attempt_2 and "completed" in attempt_2
    assert "from step 30: learning_rate 1.0e-06 -> 1.0e-02" in text
    assert "[rescue] PROBE  attempt 1 of 4" in text and "[rescue] ADJUST  attempt 2 of 4" in text
    assert "evidence (steps 31-60): steps=30, loss_early=2.301" in text
    assert "update_ratio=4.00e-06" in text
    assert "probe:  1.0e-05 loss 2.3 -> 2.299" in text
    assert "epoch   3  step    120" in text and "val_loss 0.35" in text
    assert "events.jsonl  " in text and "history/  2 files, 150 rows" in text
    assert "guardtrain report" in text                   # how to draw it


def test_report_of_a_failed_and_of_a_running_run(tmp_path):
    failed = report(make_run(tmp_path / "failed", outcome="failed"))
    assert "FAILED" in failed.splitlines()[0]
    assert "stopped: [GT501]" in failed and "4 of 4 attempts spent" in failed
    running = report(make_run(tmp_path / "running", outcome="running"))
    assert "RUNNING (no end record yet" in running.splitlines()[0]
    assert "31-80" in running and "running" in running


def test_report_accepts_a_result_like_object(tmp_path):
    class Result:      # gt.Result's run_dir is all report reads
        run_dir = make_run(tmp_path / "r")

    assert "RESCUED" in report(Result())


def test_a_folder_without_records_is_not_a_run(tmp_path):
    with pytest.raises(ConfigError, match=r"\[GT140\]"):
        load_run(tmp_path)
    with pytest.raises(ConfigError, match=r"\[GT140\]"):
        report(tmp_path / "missing")


def _pixels(path):
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size, np.asarray(image.convert("RGB"), dtype=np.int32)


def test_plot_draws_every_panel_and_marks_the_rescue(tmp_path):
    import matplotlib

    backend = matplotlib.get_backend()
    out = plot(make_run(tmp_path / "run"), tmp_path / "out" / "run.png")
    assert out == tmp_path / "out" / "run.png"
    assert matplotlib.get_backend() == backend              # the caller's pyplot untouched
    size, px = _pixels(out)
    assert size == (1100, 1050)
    drawn = (px < 245).any(axis=2).mean()
    assert 0.05 < drawn < 0.8, drawn
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    red = (r > 200) & (g < 60) & (b < 60)
    assert red.sum() > 500                                  # the decision line and label
    columns = np.nonzero(red.sum(axis=0) > 300)[0]           # a line through the panels
    assert columns.size >= 1
    band = (g > r + 10) & (g > b + 10) & (r > 180)           # the light green healthy band
    assert band.sum() > 5000
    blue, orange = ((r < 80) & (g > 90) & (g < 150) & (b > 150)), ((r > 230) & (g > 100) & (g < 150) & (b < 60))
    assert blue.sum() > 300 and orange.sum() > 300           # attempt 1 and attempt 2
    assert not list((tmp_path / "out").glob(".*"))           # no temp file left behind


def test_plot_of_a_run_with_no_steps_yet(tmp_path):
    EventLog(tmp_path / "new").add("start", run_id="new", replicas=1)
    size, px = _pixels(plot(tmp_path / "new", tmp_path / "new.png"))
    assert size == (1100, 1050)
    assert (px < 245).any(axis=2).mean() < 0.2
    assert "RUNNING" in report(tmp_path / "new")


@pytest.mark.pure
def test_plot_limits_come_from_the_runs_own_guard_config(tmp_path):
    from guardtrain.records.run_record import RunRecord

    run = RunRecord(run_dir=tmp_path, columns={}, events=[
        {"event": "guard", "config": {"stall_update_ratio": 3e-6, "thrown_update_ratio": 0.5}}])
    assert run.guard_limit("stall_update_ratio", 1e-5) == 3e-6
    assert run.guard_limit("thrown_update_ratio", 1e-1) == 0.5
    bare = RunRecord(run_dir=tmp_path, columns={}, events=[])
    assert bare.guard_limit("stall_update_ratio", 1e-5) == 1e-5


# -- decisions read as fields ---------------------------------------------------------------

def test_change_labels_are_built_from_the_decision_fields_not_its_summary():
    from guardtrain.interface.labels import change_label, decision_label

    switch = {"action": "ADJUST", "optimizer_from": "sgd", "optimizer_to": "adam",
              "learning_rate_from": 1e-6, "learning_rate_to": 1e-3,
              "fresh_optimizer_state": True, "summary": "learning_rate 5 -> 7 (prose only)"}
    assert decision_label(switch) == "sgd -> adam, lr 1e-06 -> 1e-03"
    assert decision_label({**switch, "optimizer_to": "sgd"}) == "lr 1e-06 -> 1e-03"
    assert decision_label({**switch, "learning_rate_to": 1e-6}) == "sgd -> adam"
    assert decision_label({"action": "ABORT", "code": "GT302", "summary": "stop"}) == \
        "stopped [GT302]"
    assert change_label("sgd", "adam", 1e-6, 2.5e-4, fresh_optimizer_state=True) == \
        "optimizer sgd -> adam, learning_rate 1.0e-06 -> 2.5e-04, fresh optimizer state"


def test_report_shows_the_change_from_fields_and_the_summary_as_the_sentence(tmp_path):
    run = make_run(tmp_path / "run")
    events = (run / "events.jsonl").read_text().replace(
        '"summary": "learning_rate 1.0e-06 -> 1.0e-02 (probe:', '"summary": "(probe:')
    (run / "events.jsonl").write_text(events)
    text = report(run)
    assert "from step 30: learning_rate 1.0e-06 -> 1.0e-02" in text     # the fields
    assert "change: (probe: 1e-5 -0.04%" in text                         # the sentence


def test_runs_written_before_the_decision_fields_still_report(tmp_path):
    """An ADJUST event of an older run: ``learning_rate``/``optimizer`` are the new values,
    the previous ones come from the previous attempt, ``change`` is the sentence."""
    from guardtrain.records.run_record import RunRecord

    columns = {"attempt": np.array([1, 1, 2, 2]), "step": np.array([1, 2, 2, 3]),
               "optimizer": np.array(["sgd", "sgd", "adam", "adam"], object),
               "learning_rate": np.array([1e-6, 1e-6, 1e-3, 1e-3])}
    old = {"event": "decision", "action": "ADJUST", "step": 2, "attempt": 2,
           "max_attempts": 4, "reason": "VANISHING", "from_step": 1, "optimizer": "adam",
           "learning_rate": 1e-3, "reset_optimizer": True, "verdict": {"kind": "VANISHING"},
           "change": "optimizer sgd -> adam, learning_rate 1.0e-06 -> 1.0e-03, fresh "
                     "optimizer state"}
    first, second = RunRecord(run_dir=tmp_path, columns=columns, events=[old]).attempts()
    assert (first.outcome, first.end_step, first.end_verdict) == ("rescued", 2, "VANISHING")
    assert (second.optimizer_from, second.learning_rate_from) == ("sgd", 1e-6)
    assert second.fresh_optimizer_state and second.summary.startswith("optimizer sgd")
    assert first.rolled_back_from == 1 and second.outcome == "running"


def test_attempts_are_read_from_attempts_json_when_the_run_wrote_it(tmp_path):
    import json

    pytest.importorskip("guardtrain.records.attempts_file")
    run = make_run(tmp_path / "run")
    stored = [
        {"number": 1, "optimizer": "sgd", "learning_rate": 1e-6, "from_step": 0,
         "end_step": 60, "outcome": "rescued", "end_verdict": "OSCILLATING", "reason": "",
         "optimizer_from": None, "learning_rate_from": None, "summary": "start"},
        {"number": 2, "optimizer": "sgd", "learning_rate": 1e-2, "from_step": 30,
         "end_step": 120, "outcome": "completed", "end_verdict": None,
         "reason": STALL["reason"], "optimizer_from": "sgd", "learning_rate_from": 1e-6,
         "summary": "learning_rate 1.0e-06 -> 1.0e-02"},
    ]
    (run / "attempts.json").write_text(json.dumps(stored))
    text = report(run)
    # OSCILLATING is only in attempts.json (the events say STALLED): the file was read.
    assert "rolled back at step 60: OSCILLATING" in text
    assert "from step 30: learning_rate 1.0e-06 -> 1.0e-02" in text
    (run / "attempts.json").unlink()
    assert "rolled back at step 60: STALLED" in report(run)


def _add_run(folder: Path, run_id: str, *, attempt_base: int, end: dict | None):
    """A second run appended to ``folder`` as ``gt.fit(resume=True)`` writes it: 10 steps
    of its attempt 1, numbered ``attempt_base + 1`` on disk."""
    history = HistoryWriter(folder, run_id, attempt_base=attempt_base)
    events = EventLog(folder, prior=load_events(folder))
    events.add("start", run_id=run_id, replicas=1, strategy="OneDeviceStrategy",
               steps_per_epoch=10, epochs=1, attempt_base=attempt_base)
    _write_chunks(history, attempt=1, first=1, last=10, lr=1e-3, optimizer="adam",
                  loss_fn=lambda s: 1.0 - s / 100, ratio=1e-3, grad=0.3, verdict="unjudged",
                  rng=np.random.default_rng(1))
    history.flush()
    if end is not None:
        events.add("end", step=10, **end)
    return folder


def test_report_of_a_resumed_folder_shows_the_last_run_and_names_the_others(tmp_path):
    folder = _add_run(make_run(tmp_path / "run-a"), "second", attempt_base=2, end={
        "status": "interrupted", "verdict": "healthy",
        "error": {"type": "KeyboardInterrupt", "code": None, "message": "KeyboardInterrupt"}})
    text = report(folder)
    assert text.splitlines()[0] == ("guardtrain run second: INTERRUPTED (Ctrl-C at step 10: "
                                    "KeyboardInterrupt)")
    assert "this folder holds 2 runs (resumed); shown: second; others: run-a RESCUED" in text
    assert "at step 10, 10 steps recorded" in text
    assert "\ninterrupted\n  KeyboardInterrupt: KeyboardInterrupt" in text
    run = load_run(folder)
    assert [(a.number, a.optimizer, a.outcome) for a in run.attempts()] == [
        (3, "adam", "interrupted")]
    assert load_run(folder, run_id="run-a").status == "rescued"
    assert load_history(folder).num_rows == 150 + 10          # every run's rows


@pytest.mark.parametrize("end, headline", [
    ({"status": "terminated", "verdict": "healthy",
      "error": {"type": "Terminated", "code": None, "message": "received SIGTERM"}},
     "TERMINATED (SIGTERM at step 10"),
    ({"status": "failed", "verdict": "failed",
      "error": {"type": "ValueError", "code": None, "message": "no layer"}},
     "FAILED (stopped at step 10 after 1 attempt: ValueError)"),
    ({"status": "completed", "verdict": "failed",
      "nonfinite": {"steps": 4, "first_step": 7, "final_weights_finite": False,
                    "guard": False}},
     "FAILED (4 non-finite steps, the first at step 7; non-finite final weights)"),
    (None, "RUNNING (no end record yet"),
])
def test_the_headline_says_how_the_run_ended(tmp_path, end, headline):
    folder = tmp_path / "run"
    folder.mkdir()
    text = report(_add_run(folder, "only", attempt_base=0, end=end))
    assert text.splitlines()[0].startswith(f"guardtrain run only: {headline}"), text
    assert "holds" not in text.splitlines()[1]
