"""The rescue policy on scripted verdicts: each ladder step, the probe, the budget, the log."""

import dataclasses
import json
import math
import pickle

import numpy as np
import pytest

from guardtrain.core import guard as g
from guardtrain.core import rescue as r
from guardtrain.core.errors import ConfigError, RescueExhaustedError, UnhealthyTrainingError

pytestmark = pytest.mark.pure

CFG = r.RescueConfig()
STALL_REASON = ("STALLED at step 400: update_ratio median 3.1e-07 over 200 steps, "
                "loss 2.302 -> 2.301")


def verdict(kind, step=400, reason=None, snapshot_ok=False, settled=True, **evidence):
    return g.Verdict(kind=kind, step=step, first_step=step - 199, settled=settled,
                     snapshot_ok=snapshot_ok, evidence=evidence,
                     reason=reason or f"{kind} at step {step}: scripted")


def start(optimizer="sgd", lr=1e-6):
    return r.initial_state(optimizer=optimizer, learning_rate=lr, step=0)


def probe(lr, change, steps=20, start_loss=2.302, diverged=False):
    """A probe whose loss moves linearly, so that its last-quarter mean has moved by
    `change` (a fraction of the start)."""
    tail = np.linspace(0, 1, steps)[-(steps // 4):].mean()
    losses = start_loss * (1 + change / tail * np.linspace(0, 1, steps))
    finite = np.ones(steps, bool)
    if diverged:
        losses[steps // 2:] = np.nan
        finite[steps // 2:] = False
    return r.ProbeResult(learning_rate=lr, losses=losses, finite=finite)


def decide(v, state, config=CFG, snapshot_step=0):
    """decide with the engine's facts of a scripted run: the snapshot at
    ``snapshot_step`` and the optimizer at the rate the rescue last set."""
    return r.decide(v, state, config, snapshot_step=snapshot_step,
                    learning_rate=state.learning_rate)


def decide_apply(v, state, config=CFG, snapshot_step=0):
    d = decide(v, state, config, snapshot_step)
    return d, r.apply(d, state)


def switched(v, state, config=CFG, results=None):
    """decide -> the switch PROBE -> after_probe -> ADJUST, applied. Default results: the
    usual rate lowers the loss by 20 %, the others by 10 % (so the usual rate is kept)."""
    p, state = decide_apply(v, state, config)
    if p.action != r.PROBE:
        return p, p, state
    assert p.optimizer is not None and p.fresh_optimizer_state
    results = results or [probe(lr, -0.2 if i == 0 else -0.1)
                          for i, lr in enumerate(p.learning_rates)]
    d = r.after_probe(results, state, config)
    return p, d, r.apply(d, state)


def stalled_then_probed(results, state=None, config=CFG, snapshot_step=0):
    state = state or start()
    d, state = decide_apply(verdict(g.STALLED, reason=STALL_REASON), state, config,
                            snapshot_step)
    assert d.action == r.PROBE
    d = r.after_probe(results, state, config)
    return d, r.apply(d, state)


# -- healthy verdicts -----------------------------------------------------------------------

def test_healthy_settled_snapshots_and_warmup_continues():
    state = start()
    d = decide(verdict(g.HEALTHY, step=300, snapshot_ok=True), state)
    # The engine keeps the weights at the decision's step; the policy's state is unchanged.
    assert d.action == r.SNAPSHOT and d.step == 300 and r.apply(d, state) == state
    d = decide(verdict(g.HEALTHY, step=40, settled=False), state)
    assert d.action == r.CONTINUE and r.apply(d, state) == state


@pytest.mark.parametrize("lr_moves,attempt", [(0, 1), (5, 4), (2, 3)])
def test_converged_is_never_rescued(lr_moves, attempt):
    # Whatever the state, even with the budget spent, CONVERGED only snapshots.
    state = start()._replace(lr_moves=lr_moves, attempt=attempt)
    d = decide(verdict(g.CONVERGED, snapshot_ok=True), state)
    assert d.action == r.SNAPSHOT
    d = decide(verdict(g.CONVERGED, snapshot_ok=False), state)
    assert d.action == r.CONTINUE


# -- STALLED: the probe ---------------------------------------------------------------------

def test_stalled_probes_larger_rates_from_the_snapshot():
    d = decide(verdict(g.STALLED, reason=STALL_REASON), start(), snapshot_step=200)
    assert d.action == r.PROBE and d.from_step == 200 and d.steps == 20
    assert d.learning_rates == (1e-5, 1e-4, 1e-3, 1e-2)
    assert d.attempt == 1  # a probe is not an attempt


def test_probe_keeps_the_best_rate_and_logs_the_brief_block():
    results = [probe(1e-2, 0.0, diverged=True), probe(1e-5, -0.001),
               probe(1e-4, -0.02), probe(1e-3, -0.19)]  # any order
    d, after = stalled_then_probed(results, start(), snapshot_step=200)
    assert d.action == r.ADJUST and d.learning_rate_to == 1e-3 and d.optimizer_to == "sgd"
    assert not d.fresh_optimizer_state and d.from_step == 200 and d.attempt == 2
    assert r.format_decision(d) == (
        "[rescue] ADJUST  attempt 2 of 4\n"
        "  reason: STALLED at step 400: update_ratio median 3.1e-07 over 200 steps, "
        "loss 2.302 -> 2.301\n"
        "  change: learning_rate 1.0e-06 -> 1.0e-03 (probe: 1e-5 -0.1%, 1e-4 -2%, "
        "1e-3 -19%, 1e-2 diverged)\n"
        "  from:   snapshot at step 200")
    assert after.attempt == 2 and after.learning_rate == 1e-3 and after.lr_moves == 1
    assert after.pending is None
    first, second = after.attempts
    assert (first.outcome, first.end_step, first.end_verdict) == ("rescued", 400, g.STALLED)
    assert (second.number, second.from_step, second.reason) == (2, 200, STALL_REASON)


def test_probe_ignores_noise_level_gains_and_a_doubling():
    results = [probe(1e-5, -0.005), probe(1e-4, -0.004), probe(1e-3, 1.5),
               probe(1e-2, 0.0, diverged=True)]
    d, _ = stalled_then_probed(results)
    # Nothing lowered the loss by 1%: escalate to the next optimizer, probing it first.
    assert d.action == r.PROBE and d.optimizer == "adam" and d.fresh_optimizer_state
    assert d.learning_rates == (1e-3, 1e-2)
    assert "1e-3 diverged" in d.summary() and "none lowered the loss by 1%" in d.summary()


def test_probe_ties_go_to_the_smaller_rate():
    d, _ = stalled_then_probed([probe(1e-4, -0.2), probe(1e-3, -0.2)])
    assert d.learning_rate_to == 1e-4


def test_probe_rates_capped_by_max_learning_rate():
    config = r.RescueConfig(max_learning_rate=0.05)
    d = decide(verdict(g.STALLED), start(lr=1e-3), config)
    assert d.learning_rates == (1e-2,)
    d = decide(verdict(g.STALLED), start(lr=0.05), config)
    # No larger rate allowed: switch, probing Adam (its 1e-3 and 1e-2 are under the cap).
    assert d.action == r.PROBE and d.optimizer == "adam"
    assert d.learning_rates == (1e-3, 1e-2)
    d = decide(verdict(g.VANISHING), start(lr=1e-2), r.RescueConfig(max_learning_rate=5e-3))
    assert d.learning_rates == (1e-3,)


def test_a_rate_read_back_from_float32_is_the_rate_the_user_set():
    # Adadelta's 1e-3 reads back from its float32 variable as 0.0010000000474974513: x1000
    # must still be 1.0, within max_learning_rate=1.0, so the probe tries it.
    state = start(optimizer="adadelta", lr=float(np.float32(1e-3)))
    assert state.learning_rate == 1e-3
    d = decide(verdict(g.STALLED), state)
    assert d.learning_rates == (1e-2, 1e-1, 1.0)


def test_after_probe_needs_a_pending_probe_and_decide_refuses_one():
    with pytest.raises(ConfigError, match=r"\[GT121\] after_probe\(state=...\)"):
        r.after_probe([probe(1e-3, -0.2)], start(), CFG)
    _, state = decide_apply(verdict(g.STALLED), start())
    with pytest.raises(ConfigError, match="GT121"):
        decide(verdict(g.HEALTHY), state)
    with pytest.raises(ConfigError, match="GT121"):
        r.after_probe([], state, CFG)


def test_probe_result_from_chunk():
    res = r.ProbeResult.from_chunk(1e-3, {"loss": np.array([2.0, 1.8, 1.6, 1.4]),
                                          "finite": np.array([True] * 4)})
    assert res.loss_start == 2.0 and res.loss_end == 1.4 and res.all_finite


# -- DIVERGED / OSCILLATING: lower the rate ---------------------------------------------

@pytest.mark.parametrize("kind", [g.DIVERGED, g.OSCILLATING])
def test_too_high_rate_rolls_back_and_divides(kind):
    d = decide(verdict(kind), start(lr=0.1), snapshot_step=600)
    assert d.action == r.ADJUST and d.learning_rate_to == pytest.approx(1e-2)
    assert d.optimizer_to == "sgd" and not d.fresh_optimizer_state and d.from_step == 600
    assert d.summary() == "learning_rate 1.0e-01 -> 1.0e-02"


def test_lr_moves_that_did_not_help_switch_optimizer():
    state = start(lr=1.0)
    for expected in (0.1, 0.01):
        d, state = decide_apply(verdict(g.DIVERGED), state)
        assert d.learning_rate_to == pytest.approx(expected) and d.optimizer_to == "sgd"
    p, d, state = switched(verdict(g.DIVERGED), state)
    assert "2 learning-rate moves on sgd did not help" in p.summary()
    assert d.optimizer_to == "adam" and d.learning_rate_to == 1e-3 and d.fresh_optimizer_state
    assert state.lr_moves == 0 and state.tried_optimizers == ("sgd", "adam")


# -- VANISHING / DEAD_UNITS: the optimizer ladder ---------------------------------------

def test_each_ladder_step_then_ladder_spent():
    config = r.RescueConfig(max_attempts=10)
    state = start("sgd", 1e-2)
    p, d, state = switched(verdict(g.VANISHING), state, config)
    assert p.summary() == ("probe adam (fresh state) at learning_rate 1e-3, 1e-2 for 20 "
                           "steps each, instead of sgd at 1.0e-02")
    assert (d.optimizer_to, d.learning_rate_to, d.fresh_optimizer_state) == ("adam", 1e-3, True)
    assert d.summary().startswith("optimizer sgd -> adam, learning_rate 1.0e-02 -> 1.0e-03, "
                                  "fresh optimizer state (probe: 1e-3 -20%, 1e-2 -10%)")
    p, d, state = switched(verdict(g.DEAD_UNITS), state, config)
    assert (d.optimizer_to, d.learning_rate_to) == ("rmsprop", 1e-3)
    d, state = decide_apply(verdict(g.VANISHING), state, config)
    assert d.action == r.ABORT and d.code == "GT502"
    err = r.error_for(d, state)
    assert isinstance(err, RescueExhaustedError) and "[GT502]" in str(err)
    assert [a["optimizer"] for a in err.details["attempts"]] == ["sgd", "adam", "rmsprop"]


def test_optimizer_off_the_ladder_starts_at_the_bottom():
    d = decide(verdict(g.VANISHING), start("adamw", 1e-3))
    assert d.optimizer == "sgd" and d.learning_rates == (1e-2, 1e-1)


def test_switch_probe_keeps_the_best_rate_of_the_new_optimizer():
    state = start("sgd", 1e-2)
    # Inputs at 255x their scale: Adam 1e-2 gains much more than 1e-3 in the probe.
    p, d, state = switched(verdict(g.DEAD_UNITS), state, CFG,
                           [probe(1e-3, -0.05), probe(1e-2, -0.4)])
    assert p.action == r.PROBE and p.attempt == 1      # a probe spends no attempt
    assert d.action == r.ADJUST and (d.optimizer_to, d.learning_rate_to) == ("adam", 1e-2)
    assert state.attempt == 2 and state.optimizer == "adam" and state.learning_rate == 1e-2
    # About as good (-33 % against -34 %): the larger rate.
    _, d, _ = switched(verdict(g.VANISHING), start("sgd", 1e-2), CFG,
                       [probe(1e-3, -0.34), probe(1e-2, -0.33)])
    assert d.learning_rate_to == 1e-2
    # Clearly worse: the better one.
    _, d, _ = switched(verdict(g.VANISHING), start("sgd", 1e-2), CFG,
                       [probe(1e-3, -0.34), probe(1e-2, -0.2)])
    assert d.learning_rate_to == 1e-3
    # None lowers the loss, both flat (a plateau a few steps cannot leave): the larger ...
    _, d, _ = switched(verdict(g.VANISHING), start("sgd", 1e-2), CFG,
                       [probe(1e-3, 0.003), probe(1e-2, 0.015)])
    assert (d.optimizer_to, d.learning_rate_to) == ("adam", 1e-2)
    # ... one blowing up: the other ...
    _, d, _ = switched(verdict(g.VANISHING), start("sgd", 1e-2), CFG,
                       [probe(1e-3, 0.0), probe(1e-2, 1.5)])
    assert (d.optimizer_to, d.learning_rate_to) == ("adam", 1e-3)
    assert "1e-2 diverged" in d.summary()
    # ... and the usual rate when every loss rose (batch-1 noise) or blew up.
    for results in ([probe(1e-3, 0.25), probe(1e-2, 0.4)],
                    [probe(1e-3, 0.0, diverged=True), probe(1e-2, 1.5)]):
        _, d, _ = switched(verdict(g.DEAD_UNITS), start("sgd", 1e-2), CFG, results)
        assert (d.optimizer_to, d.learning_rate_to) == ("adam", 1e-3)


def test_no_switch_probe_when_asked_for_none():
    config = r.RescueConfig(switch_probe_multipliers=())
    d = decide(verdict(g.VANISHING), start("sgd", 1e-2), config)
    assert d.action == r.ADJUST and (d.optimizer_to, d.learning_rate_to) == ("adam", 1e-3)


def test_ladder_is_climbed_not_descended():
    d = decide(verdict(g.VANISHING), start("adam", 1e-3))
    assert d.optimizer == "rmsprop"


# -- ABORT: no hyperparameter fixes it ----------------------------------------------------

def test_replica_imbalance_aborts_naming_the_replica():
    v = verdict(g.REPLICA_IMBALANCE, replica=3,
                reason="REPLICA_IMBALANCE at step 400: replica 3 gradient norm 0.0e+00 vs "
                       "1.2e+00 on the others in 200 of 200 steps")
    d, state = decide_apply(v, start())
    assert d.action == r.ABORT and d.code == "GT306"
    err = r.error_for(d, state)
    assert isinstance(err, UnhealthyTrainingError) and err.code == "GT306"
    assert "replica 3" in str(err) and "Fix: replica 3:" in str(err)
    assert err.replica == 3 and err.details["attempts"][0]["outcome"] == "aborted"
    assert "[rescue] ABORT  attempt 1 of 4" in r.format_decision(d)


def test_nonfinite_first_step_is_a_data_problem():
    # Through the guard: NaN loss at step 1, the starting weights.
    cols = {"step": np.arange(1, 21), "loss": np.r_[np.nan, np.full(19, 2.3)],
            "finite": np.r_[False, np.ones(19, bool)], "update_ratio": np.full(20, 1e-3),
            "grad_first": np.ones(20), "grad_last": np.ones(20),
            "zero_grad_fraction": np.zeros(20), "grad_norm_min": np.ones(20),
            "grad_norm_max": np.ones(20), "grad_norm_argmin": np.zeros(20, int)}
    _, v = g.observe(g.GuardState(), cols, g.GuardConfig())
    d = decide(v, start())
    assert d.action == r.ABORT and d.code == "GT307"
    assert "NaN/inf in x and y" in str(r.error_for(d, start()))


def test_zero_gradients_from_the_start_abort():
    d = decide(verdict(g.DEAD_UNITS, cause="zero_gradients"), start())
    assert d.action == r.ABORT and d.code == "GT308"


# -- the budget ---------------------------------------------------------------------------

def test_budget_spent_raises_with_every_attempt():
    state = start(lr=1e-6)
    # attempt 1 stalls -> probe -> attempt 2; 2 diverges -> 3; 3 diverges -> 4 (switch).
    d, state = stalled_then_probed([probe(1e-3, -0.2)], state)
    d, state = decide_apply(verdict(g.DIVERGED, step=700), state)
    _, d, state = switched(verdict(g.OSCILLATING, step=900), state)
    assert state.attempt == 4 and state.optimizer == "adam"
    d, state = decide_apply(verdict(g.DIVERGED, step=1100), state)
    assert d.action == r.ABORT and d.code == "GT501" and "4 of 4 attempts spent" in d.summary()
    err = r.error_for(d, state)
    assert isinstance(err, RescueExhaustedError) and err.code == "GT501"
    attempts = err.details["attempts"]
    assert [a["number"] for a in attempts] == [1, 2, 3, 4]
    assert [a["outcome"] for a in attempts] == ["rescued"] * 3 + ["exhausted"]
    assert "attempt 4: adam, learning_rate 1.0e-03, from step 0" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert again.code == "GT501" and again.details["attempts"] == attempts


def test_no_probe_when_no_attempt_is_left():
    d = decide(verdict(g.STALLED), start(), r.RescueConfig(max_attempts=1))
    assert d.action == r.ABORT and d.code == "GT501"


# -- rescue off, errors, records ------------------------------------------------------------

@pytest.mark.parametrize("kind,code", [(g.STALLED, "GT301"), (g.DIVERGED, "GT302"),
                                       (g.OSCILLATING, "GT303"), (g.VANISHING, "GT304"),
                                       (g.DEAD_UNITS, "GT305"),
                                       (g.REPLICA_IMBALANCE, "GT306")])
def test_unhealthy_error_when_rescue_is_off(kind, code):
    err = r.unhealthy_error(verdict(kind, replica=1))
    assert isinstance(err, UnhealthyTrainingError) and err.code == code
    text = str(err)
    assert text.startswith(f"[{code}] {kind} at step 400") and "expected" in text
    assert "\n  Fix: " in text
    assert pickle.loads(pickle.dumps(err)).details == err.details


def test_public_names_are_pinned():
    assert set(r.__all__) == {
        "CONTINUE", "SNAPSHOT", "PROBE", "ADJUST", "ABORT", "Action", "RescueConfig",
        "RescueState", "Decision", "Continue", "Snapshot", "Probe", "Adjust", "Abort",
        "ProbeOutcome", "Attempt", "ProbeResult", "initial_state", "decide", "after_probe",
        "apply", "finish", "format_decision", "error_for", "unhealthy_error"}
    assert set(g.__all__) == {
        "HEALTHY", "CONVERGED", "STALLED", "DIVERGED", "OSCILLATING", "VANISHING",
        "DEAD_UNITS", "REPLICA_IMBALANCE", "NO_PROGRESS", "VERDICT_KINDS", "VerdictKind",
        "REQUIRED_COLUMNS", "GuardConfig", "Verdict", "Baseline", "GuardState", "judge", "observe", "new_attempt"}
    assert all(hasattr(r, n) for n in r.__all__) and all(hasattr(g, n) for n in g.__all__)


def test_finish_marks_the_last_attempt_completed():
    state = r.finish(start(), step=1000)
    assert state.attempts[-1].outcome == "completed" and state.attempts[-1].end_step == 1000


def test_decisions_and_attempts_are_json_serialisable():
    gv = g.judge({"step": np.arange(1, 201), "loss": np.full(200, 2.3),
                  "finite": np.ones(200, bool), "update_ratio": np.full(200, 1e-7),
                  "grad_first": np.ones(200), "grad_last": np.ones(200),
                  "zero_grad_fraction": np.zeros(200), "grad_norm_min": np.ones(200),
                  "grad_norm_max": np.ones(200), "grad_norm_argmin": np.zeros(200, int)},
                 g.GuardConfig(), baseline=g.Baseline(loss=2.3))
    assert gv.kind == g.STALLED
    state = start()
    d1, state = decide_apply(gv, state)
    d2 = r.after_probe([probe(1e-4, -0.2), probe(1e-3, 0.0, diverged=True)], state, CFG)
    state = r.apply(d2, state)
    for d in (d1, d2):
        json.loads(json.dumps(dataclasses.asdict(d), allow_nan=False))
    json.dumps([dataclasses.asdict(a) for a in state.attempts], allow_nan=False)


def test_deterministic():
    def scenario():
        state = start()
        out = []
        d, state = stalled_then_probed([probe(1e-4, -0.1), probe(1e-3, -0.3)], state)
        out.append(d)
        d, state = decide_apply(verdict(g.VANISHING, step=800), state)
        out.append(d)
        return out, state
    assert scenario() == scenario()


def test_format_other_actions():
    d = decide(verdict(g.STALLED, reason=STALL_REASON), start())
    assert r.format_decision(d) == (
        "[rescue] PROBE  attempt 1 of 4\n"
        f"  reason: {STALL_REASON}\n"
        "  change: probe learning_rate 1e-5, 1e-4, 1e-3, 1e-2 for 20 steps each "
        "(now 1.0e-06, sgd)\n"
        "  from:   snapshot at step 0")
    d = decide(verdict(g.HEALTHY, step=40, settled=False), start())
    assert r.format_decision(d).splitlines()[2] == "  change: none"


def test_rescue_config_validation():
    with pytest.raises(ConfigError, match=r"\[GT120\] RescueConfig\(max_attempts=...\)"):
        r.RescueConfig(max_attempts=0)
    with pytest.raises(ConfigError, match="a rate > 0 for every optimizer"):
        r.RescueConfig(optimizer_ladder=("sgd", "nadam"))
    with pytest.raises(ConfigError, match="lr_down_factor"):
        r.RescueConfig(lr_down_factor=1.0)
    with pytest.raises(ConfigError, match="probe_multipliers"):
        r.RescueConfig(probe_multipliers=(0.5,))
    with pytest.raises(TypeError):
        r.RescueConfig(4)  # keyword-only
    c = r.RescueConfig(probe_multipliers=(100, 10), optimizer_ladder=("Adam", "SGD"),
                       optimizer_learning_rates={"ADAM": 1e-3, "sgd": 0.1})
    assert c.probe_multipliers == (10.0, 100.0) and c.optimizer_ladder == ("adam", "sgd")
    assert c.optimizer_learning_rates == {"adam": 1e-3, "sgd": 0.1}


# -- the protocol end to end, on a toy run ------------------------------------------------

def toy_chunk(first_step, n, lr, loss0):
    """A scripted model whose loss falls only at rates in [1e-4, 2e-2] and blows up above."""
    steps = np.arange(first_step, first_step + n)
    if lr > 2e-2:
        loss = loss0 * 1.5 ** np.arange(1, n + 1)
        loss[loss > 1e6] = np.inf
    else:
        loss = loss0 * np.exp(-min(lr, 2e-2) * 5 * np.arange(1, n + 1))
    finite = np.isfinite(loss)
    return {"step": steps, "loss": loss, "finite": finite,
            "update_ratio": np.full(n, lr * 0.1), "grad_first": np.ones(n),
            "grad_last": np.ones(n), "zero_grad_fraction": np.zeros(n),
            "grad_norm_min": np.ones(n), "grad_norm_max": np.ones(n),
            "grad_norm_argmin": np.zeros(n, int)}


def test_protocol_rescues_a_stall_on_a_toy_run():
    gcfg = g.GuardConfig(warmup_steps=20, window_steps=40)
    gstate, rstate = g.GuardState(), start(lr=1e-6)
    snapshot = {"step": 0, "loss": 2.3}
    step, loss, log = 0, 2.3, []
    for _ in range(40):
        chunk = toy_chunk(step + 1, 10, rstate.learning_rate, loss)
        gstate, v = g.observe(gstate, chunk, gcfg)
        step, loss = int(chunk["step"][-1]), float(chunk["loss"][-1])
        d = r.decide(v, rstate, CFG, snapshot_step=snapshot["step"],
                     learning_rate=rstate.learning_rate)
        if d.action == r.PROBE:
            rstate = r.apply(d, rstate)
            results = [r.ProbeResult.from_chunk(lr, toy_chunk(
                snapshot["step"] + 1, d.steps, lr, snapshot["loss"]))
                for lr in d.learning_rates]
            d = r.after_probe(results, rstate, CFG)
        rstate = r.apply(d, rstate)
        log.append(d.action)
        if d.action == r.SNAPSHOT:
            snapshot = {"step": step, "loss": loss}
        elif d.action == r.ADJUST:
            step, loss = snapshot["step"], snapshot["loss"]
            gstate = g.new_attempt(gstate)
        assert d.action != r.ABORT
    assert log.count(r.ADJUST) == 1 and r.SNAPSHOT in log
    # The toy learns fastest at 1e-2 and blows up above 2e-2: the probe finds 1e-2.
    assert rstate.learning_rate == 1e-2 and rstate.attempt == 2
    assert rstate.attempts[0].end_verdict == g.STALLED
    assert math.isfinite(loss) and loss < 0.5
