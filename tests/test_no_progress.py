"""NO_PROGRESS and CONVERGED against the reference loss, on scripted statistics.

The guard is fed chunk by chunk as the loop feeds it (``tests/test_guard.py``'s ``stream``);
the reference is the loss of a constant prediction (``core.reference``).
"""

import math

import numpy as np
import pytest

from guardtrain.core import guard as g
from guardtrain.core import rescue as r
from tests.test_guard import CFG, CHUNK_STEPS, stream

pytestmark = pytest.mark.pure

LN4 = math.log(4)


def run(cols, reference, config=CFG):
    state, verdicts = g.GuardState(baseline=g.Baseline(reference=reference)), []
    for i in range(0, len(cols["loss"]), CHUNK_STEPS):
        state, v = g.observe(state, {k: v[i:i + CHUNK_STEPS] for k, v in cols.items()}, config)
        verdicts.append(v)
    return verdicts, state


def patience(config=CFG):
    return config.no_progress_after


def test_a_flat_loss_at_chance_with_moving_weights_is_no_progress_after_its_patience():
    # Random labels: loss 0.6% under ln 4, Adam moving every weight (ratio 1e-3).
    n = patience() + 2 * CHUNK_STEPS
    verdicts, _ = run(stream(n, loss=np.full(n, LN4 * 0.994), noise=0.01), LN4)
    steps = {v.step: v for v in verdicts}
    before = [v for s, v in steps.items() if s < patience()]
    assert all(v.kind == g.HEALTHY for v in before)
    hit = next(v for v in verdicts if v.kind == g.NO_PROGRESS)
    assert hit.step >= patience() and hit.settled and not hit.snapshot_ok
    assert hit.evidence["reference_loss"] == pytest.approx(LN4)
    assert -0.02 < hit.evidence["reference_gap"] < 0
    assert "constant prediction" in hit.reason


def test_without_a_reference_the_same_run_stays_healthy():
    n = patience() + 2 * CHUNK_STEPS
    verdicts, _ = run(stream(n, loss=np.full(n, LN4 * 0.994), noise=0.01), None)
    assert {v.kind for v in verdicts} == {g.HEALTHY}


def test_a_slow_healthy_start_is_not_no_progress():
    # At the reference for two windows (a plateau), then falling slowly: never fires.
    n = patience() + 8 * CHUNK_STEPS
    t = np.arange(n, dtype=float)
    plateau = 40 + 2 * CFG.window_steps
    loss = np.where(t < plateau, LN4, LN4 * np.exp(-(t - plateau) / 400.0))
    verdicts, _ = run(stream(n, loss=loss, noise=0.01), LN4)
    assert g.NO_PROGRESS not in {v.kind for v in verdicts}


def test_a_loss_clearly_below_the_reference_is_not_no_progress():
    n = patience() + 4 * CHUNK_STEPS
    verdicts, _ = run(stream(n, loss=np.full(n, LN4 * 0.9), noise=0.01), LN4)
    assert g.NO_PROGRESS not in {v.kind for v in verdicts}


def test_a_rate_still_warming_up_explains_a_loss_at_the_reference():
    n = patience() + 2 * CHUNK_STEPS
    lr = np.linspace(1e-5, 1e-3, n)
    verdicts, _ = run(stream(n, loss=np.full(n, LN4), noise=0.01, lr=lr), LN4)
    assert g.NO_PROGRESS not in {v.kind for v in verdicts}


def test_converged_needs_the_loss_far_below_the_reference_not_only_the_start():
    # Raw-scale inputs: a first loss of 5e4, then flat at the class prior's loss.
    n = patience() + 2 * CHUNK_STEPS
    loss = np.full(n, math.log(10))
    loss[:20] = 5e4
    cfg = CFG
    verdicts, _ = run(stream(n, loss=loss, noise=0.01), math.log(10), cfg)
    kinds = {v.kind for v in verdicts}
    assert g.CONVERGED not in kinds and g.NO_PROGRESS in kinds
    # Far below both: CONVERGED, as before.
    low = np.full(n, 0.05 * math.log(10))
    low[:20] = 5e4
    verdicts, _ = run(stream(n, loss=low, noise=0.01), math.log(10), cfg)
    assert g.CONVERGED in {v.kind for v in verdicts}


def test_the_reference_survives_a_new_attempt_from_the_start_and_from_a_snapshot():
    n = 60
    _, state = run(stream(n), 1.5)
    for from_start in (True, False):
        assert g.new_attempt(state, from_start=from_start).baseline.reference == 1.5


def test_the_rescue_probes_a_smaller_and_a_larger_rate_on_no_progress():
    v = g.Verdict(kind=g.NO_PROGRESS, step=400, reason="NO_PROGRESS at step 400: ...")
    state = r.initial_state(optimizer="adam", learning_rate=1e-3)
    d = r.decide(v, state, r.RescueConfig(), snapshot_step=0, learning_rate=1e-3)
    assert d.action == r.PROBE and d.learning_rates == (1e-4, 1e-2)
    # Nothing helped: after the rate moves, the ladder; then the run ends failed (GT5xx).
    error = r.error_for(r.decide(v, state._replace(attempt=4), r.RescueConfig(),
                                 snapshot_step=0, learning_rate=1e-3), state)
    assert error.code == "GT501" and error.details["verdict"] == "NO_PROGRESS"


def test_no_progress_with_the_rescue_off_is_gt309_with_a_fix():
    v = g.Verdict(kind=g.NO_PROGRESS, step=400, reason="NO_PROGRESS at step 400: ...")
    err = r.unhealthy_error(v)
    assert err.code == "GT309" and "label" in err.fix
