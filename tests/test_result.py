"""``Result.summary()``: the few lines ``guardtrain fit`` prints at the end of a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardtrain.records.history import HISTORY_SCHEMA
from guardtrain.records.result import Result

pytestmark = pytest.mark.pure


def _attempt(number, optimizer, learning_rate, from_step, outcome, end_verdict=None):
    # The fields every attempt dict of Result.attempts has (dataclasses.asdict(Attempt)).
    return {"number": number, "optimizer": optimizer, "learning_rate": learning_rate,
            "from_step": from_step, "reason": "", "outcome": outcome,
            "end_step": None, "end_verdict": end_verdict}


def test_summary_prints_one_line_per_attempt():
    result = Result(model=None, history=HISTORY_SCHEMA.empty_table(), verdict="rescued",
                    run_dir=Path("runs/a"),
                    attempts=[_attempt(1, "sgd", 1e-6, 0, "rescued", "STALLED"),
                              _attempt(2, "adam", 1e-3, 200, "completed")])
    lines = result.summary().splitlines()
    assert lines[0] == "guardtrain run: rescued"
    assert "  attempt 1: sgd lr 1.0e-06 from step 0 -> rescued (STALLED)" in lines
    assert "  attempt 2: adam lr 1.0e-03 from step 200 -> completed" in lines
    assert lines[-1] == "  run dir: runs/a"


def test_summary_of_a_run_without_attempts_has_no_attempt_line():
    result = Result(model=None, history=HISTORY_SCHEMA.empty_table(), verdict="healthy",
                    run_dir=Path("runs/b"), attempts=[])
    assert not [line for line in result.summary().splitlines() if "attempt " in line]


def test_summary_says_plainly_when_a_value_was_not_finite():
    result = Result(model=None, history=HISTORY_SCHEMA.empty_table(), verdict="failed",
                    run_dir=Path("runs/c"), attempts=[], run_id="20261129-101500-ab12",
                    nonfinite={"steps": 12, "first_step": 4, "final_weights_finite": False})
    lines = result.summary().splitlines()
    assert lines[0] == "guardtrain run: failed"
    assert ("  NON-FINITE: 12 non-finite steps, the first at step 4; non-finite final "
            "weights") in lines
    assert lines[-1] == "  run dir: runs/c  (run 20261129-101500-ab12)"


@pytest.mark.pure
def test_default_run_folders_are_claimed_so_runs_started_together_never_share_one(
        tmp_path, monkeypatch):
    import re

    from guardtrain.records.run_dir import new_run_id, open_run_dir

    monkeypatch.chdir(tmp_path)
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{8}", new_run_id())
    runs = [open_run_dir(None) for _ in range(20)]    # within the same second or two
    assert len({r.path for r in runs}) == 20
    assert all(r.path.parent.name == "guardtrain_runs" for r in runs)
