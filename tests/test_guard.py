"""The guard's verdicts on scripted statistics: each kind, warm-up, and no false alarms."""

import dataclasses
import json
import pickle

import numpy as np
import pytest

from guardtrain.core import guard as g
from guardtrain.core.errors import ConfigError
from guardtrain.core.stats import NORM_COLUMNS, REPLICA_NORMS, STAT_COLUMNS

pytestmark = pytest.mark.pure

# Small windows keep each scripted run short; the defaults are exercised separately.
CFG = g.GuardConfig(warmup_steps=40, window_steps=80)
CHUNK_STEPS = 20


def stream(n, *, seed=0, loss=None, noise=0.02, ratio=1e-3, grad_first=0.5, grad_last=1.0,
           zero=0.2, finite=None, replicas=2, silent_replica=None, lr=None):
    """A run of n steps as the loop would report it, one array per column."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    if loss is None:  # healthy: a falling curve towards 0.3
        loss = 0.3 + 2.0 * np.exp(-t / 300.0)
    loss = np.asarray(loss, np.float64) * (1 + noise * rng.standard_normal(n))
    reps = np.abs(1.0 + 0.2 * rng.standard_normal((n, replicas)))
    if silent_replica is not None:
        reps[:, silent_replica] = 0.0
    cols = {
        "step": np.arange(1, n + 1),
        "loss": loss,
        "grad_norm_min": reps.min(1), "grad_norm_mean": reps.mean(1),
        "grad_norm_max": reps.max(1), "grad_norm_argmin": reps.argmin(1),
        "update_norm": np.full(n, 1.0),
        "weight_norm": np.full(n, 1.0),
        "update_ratio": np.broadcast_to(ratio, (n,)) * np.exp(0.3 * rng.standard_normal(n)),
        "layer_ratio_min": np.full(n, 1e-4), "layer_ratio_median": np.full(n, 1e-3),
        "layer_ratio_max": np.full(n, 1e-2),
        "grad_first": np.broadcast_to(grad_first, (n,)) * np.exp(0.2 * rng.standard_normal(n)),
        "grad_last": np.broadcast_to(grad_last, (n,)) * np.exp(0.2 * rng.standard_normal(n)),
        "zero_grad_fraction": np.broadcast_to(zero, (n,)).astype(np.float64),
        "finite": np.ones(n, bool) if finite is None else np.asarray(finite, bool),
        "measured": np.ones(n, bool),
        REPLICA_NORMS: reps,
    }
    if lr is not None:
        cols["learning_rate"] = np.broadcast_to(lr, (n,)).astype(np.float64)
    return cols


def run(cols, config=CFG, chunk=CHUNK_STEPS):
    """Feeds the run chunk by chunk; returns every verdict."""
    state, verdicts = g.GuardState(), []
    n = len(cols["loss"])
    for i in range(0, n, chunk):
        state, v = g.observe(state, {k: v[i:i + chunk] for k, v in cols.items()}, config)
        verdicts.append(v)
    return verdicts


def kinds(verdicts):
    return {v.kind for v in verdicts}


def first(verdicts, kind):
    return next(v for v in verdicts if v.kind == kind)


def test_stream_has_every_stat_column():
    assert set(STAT_COLUMNS) <= set(stream(10))


def test_healthy_run_is_healthy_and_snapshots():
    verdicts = run(stream(400))
    assert kinds(verdicts) == {g.HEALTHY}
    settled = [v for v in verdicts if v.settled]
    assert settled and all(v.snapshot_ok for v in settled)
    assert settled[0].step == CFG.warmup_steps + CFG.window_steps
    assert "loss" in settled[-1].reason and "update_ratio median" in settled[-1].reason


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("noise", [0.05, 0.3])
def test_no_false_alarm_on_noisy_healthy_runs(seed, noise):
    # Falling then plateauing loss, batch noise up to 30%, ratios scattered around 1e-3.
    t = np.arange(1500.0)
    loss = 0.5 + 1.8 * np.exp(-t / 200.0)
    assert not any(v.unhealthy for v in run(stream(1500, seed=seed, noise=noise, loss=loss)))


@pytest.mark.parametrize("seed", range(4))
def test_no_false_alarm_with_default_config(seed):
    t = np.arange(2000.0)
    verdicts = run(stream(2000, seed=seed, noise=0.2, loss=0.6 + 1.7 * np.exp(-t / 500.0)),
                   g.GuardConfig(), chunk=50)
    assert not any(v.unhealthy for v in verdicts)
    d = g.GuardConfig()
    first_settled = (d.warmup_steps + d.window_steps) // 50 - 1   # 50 steps per chunk
    assert [v.settled for v in verdicts].index(True) == first_settled


def test_no_false_alarm_when_schedule_decays_learning_rate():
    # Cosine decay to 0: at the end updates are tiny and the loss is flat, by design.
    n = 1200
    t = np.arange(n, dtype=np.float64)
    lr = 1e-2 * 0.5 * (1 + np.cos(np.pi * t / n))
    ratio = np.maximum(lr * 0.1, 1e-9)
    loss = 1.0 + 1.3 * np.exp(-t / 150.0)
    verdicts = run(stream(n, loss=loss, ratio=ratio, lr=lr))
    assert not any(v.unhealthy for v in verdicts)
    # Without the rate, the same figures do look like a stall: the column matters.
    no_lr = stream(n, loss=loss, ratio=ratio)
    assert g.STALLED in kinds(run(no_lr))


def test_no_oscillation_for_interleaved_data_with_healthy_updates():
    # Two data sources taking turns make the loss alternate; the updates are healthy.
    n = 400
    loss = 1.0 + 0.4 * (np.arange(n) % 2)
    assert not any(v.unhealthy for v in run(stream(n, loss=loss, noise=0.01)))


def test_falling_loss_is_never_touched_even_with_odd_gradients():
    # Vanishing-looking first layer, but the loss falls: no verdict.
    verdicts = run(stream(400, grad_first=1e-7, grad_last=1e-2, ratio=1e-7))
    assert kinds(verdicts) == {g.HEALTHY}


def test_stalled():
    n = 300
    verdicts = run(stream(n, loss=np.full(n, 2.302), noise=0.003, ratio=1e-7))
    v = first(verdicts, g.STALLED)
    assert v.step == CFG.warmup_steps + CFG.window_steps
    assert (v.first_step, v.step) == (v.step - CFG.window_steps + 1, v.step)
    assert v.reason.startswith(f"STALLED at step {v.step}: update_ratio median ")
    assert f"over {CFG.window_steps} steps, loss 2.3" in v.reason
    assert v.evidence["update_ratio"] < 1e-6


def test_stalled_under_adam_small_rate():
    # Adam at lr 1e-6 moves each weight ~1e-6: ratio ~5e-6 measured on an MLP.
    n = 300
    verdicts = run(stream(n, loss=np.full(n, 2.9), noise=0.03, ratio=5e-6))
    assert g.STALLED in kinds(verdicts)


def test_no_verdict_during_warmup():
    # Stalled, dead and vanishing from step 1, but within warm-up + window: unsettled.
    n = CFG.warmup_steps + CFG.window_steps - CHUNK_STEPS
    verdicts = run(stream(n, loss=np.full(n, 2.3), ratio=0.0, zero=0.99, grad_first=0.0))
    assert kinds(verdicts) == {g.HEALTHY}
    assert not any(v.settled or v.snapshot_ok for v in verdicts)
    assert "warming up" in verdicts[0].reason and "filling the window" in verdicts[-1].reason


def test_nan_is_diverged_even_during_warmup():
    n = 60
    cols = stream(n)
    cols["loss"][25] = np.nan
    cols["finite"][25:] = False
    verdicts = run(cols)
    v = first(verdicts, g.DIVERGED)
    assert v.step == 40 and not v.settled
    assert v.evidence["first_nonfinite_step"] == 26
    assert "loss nan at step 26" in v.reason
    assert "cause" not in v.evidence  # not the first step: the rate, not the data


def test_nonfinite_update_with_finite_loss_is_diverged():
    cols = stream(60)
    cols["finite"][30:] = False
    v = first(run(cols), g.DIVERGED)
    assert "update or weights non-finite at step 31" in v.reason


def test_nan_loss_at_first_step_blames_the_input():
    cols = stream(40)
    cols["loss"][0] = np.nan
    cols["finite"][0] = False
    v = first(run(cols), g.DIVERGED)
    assert v.evidence["cause"] == "input" and v.evidence["first_nonfinite_step"] == 1


def test_tolerated_nonfinite_steps():
    cols = stream(400)
    cols["finite"][[150, 260]] = False
    assert g.DIVERGED in kinds(run(cols))
    tolerant = dataclasses.replace(CFG, max_nonfinite_steps=2)
    assert not any(v.unhealthy for v in run(cols, tolerant))


def test_exploding_loss_is_diverged():
    n = 400
    t = np.arange(n, dtype=np.float64)
    loss = np.where(t < 150, 2.3 - 0.004 * t, 1.7 * 1.03 ** np.maximum(t - 150, 0))
    verdicts = run(stream(n, loss=loss, noise=0.02))
    v = first(verdicts, g.DIVERGED)
    assert v.settled and "loss rose to" in v.reason and "run started at 2.25" in v.reason


def test_oscillating_loss():
    n = 300
    loss = 2.3 + 0.5 * (-1.0) ** np.arange(n)
    v = first(run(stream(n, loss=loss, noise=0.01, ratio=3e-2)), g.OSCILLATING)
    assert v.evidence["flip_fraction"] > 0.9 and "flips direction" in v.reason


def test_weights_thrown_around_is_oscillating():
    n = 300
    v = first(run(stream(n, loss=np.full(n, 2.3), noise=0.1, ratio=0.3)), g.OSCILLATING)
    assert v.evidence["update_ratio"] > 0.1


def vanishing_stream(n, first_layer_ratio):
    # 8 sigmoid layers: first-layer gradient ~5e-5 of the last; loss flat at ln(10).
    cols = stream(n, loss=np.full(n, 2.3041), noise=0.01, grad_first=4e-7, grad_last=1e-2,
                  ratio=3e-4)
    cols["layer_ratio_min"] = np.full(n, first_layer_ratio)
    return cols


def test_vanishing():
    # Under SGD the first layer moves lr x 4e-7 of its weights: it stands still.
    v = first(run(vanishing_stream(300, 1e-9)), g.VANISHING)
    assert v.evidence["grad_first"] < 1e-4 and v.evidence["grad_first_over_last"] < 1e-3
    assert v.evidence["slowest_layer_ratio"] < 1e-5
    assert "first-layer gradient" in v.reason and "slowest layer" in v.reason


def test_tiny_gradient_that_still_moves_every_layer_is_not_vanishing():
    # Under Adam the same gradients move every layer ~1e-3 per step: not the cause.
    assert g.VANISHING not in kinds(run(vanishing_stream(300, 1e-3)))


def test_dead_units():
    n = 300
    verdicts = run(stream(n, loss=np.full(n, 2.3), noise=0.01, zero=0.98, ratio=0.0))
    v = first(verdicts, g.DEAD_UNITS)
    assert "98% of gradient entries exactly 0" in v.reason


def test_units_that_die_later_are_not_dead_from_start():
    n = 400
    zero = np.where(np.arange(n) < 100, 0.2, 0.99)
    ratio = np.where(np.arange(n) < 100, 1e-3, 0.0)
    loss = np.where(np.arange(n) < 100, 2.3 - 0.005 * np.arange(n), 1.8)
    v = first(run(stream(n, loss=loss, zero=zero, ratio=ratio)), g.DEAD_UNITS)
    assert "cause" not in v.evidence


def test_dead_from_start_is_flagged():
    n = 300
    v = first(run(stream(n, loss=np.full(n, 2.3), zero=1.0, ratio=0.0)), g.DEAD_UNITS)
    assert v.evidence["cause"] == "zero_gradients"


def test_units_dying_under_momentum_are_dead_though_the_model_still_moves():
    # SGD with momentum 0.99 at batch 1: every ReLU died, the output bias and the momentum
    # still move the weights (update_ratio 1e-3), but the first layer gets exactly 0.
    n = 400
    zero = np.where(np.arange(n) < 60, 0.2, 1.0)
    grad_first = np.where(np.arange(n) < 60, 0.3, 0.0)
    loss = np.where(np.arange(n) < 60, 0.69 - 0.002 * np.arange(n), 0.69)
    v = first(run(stream(n, loss=loss, zero=zero, grad_first=grad_first, ratio=1e-3)),
              g.DEAD_UNITS)
    assert "cause" not in v.evidence


def test_dead_units_far_below_an_absurd_start_are_not_converged():
    # Inputs 255x off scale: the loss starts near 37, one SGD step kills every ReLU and
    # the loss sits at ln 2 - "90% below the start", yet nothing reaches the first layer.
    n = 120
    cols = stream(n, loss=np.full(n, 0.6932), noise=0.001, zero=1.0, grad_first=0.0,
                  grad_last=0.1, ratio=3e-6)
    v = g.judge(cols, CFG, baseline=g.Baseline(loss=37.0, zero_grad_fraction=0.15))
    assert v.kind == g.DEAD_UNITS and "no gradient reaches the first layer" in v.reason
    # The same flat loss with live units is CONVERGED, as before.
    live = stream(n, loss=np.full(n, 0.6932), noise=0.001, ratio=3e-6)
    assert g.judge(live, CFG, baseline=g.Baseline(loss=37.0)).kind == g.CONVERGED


def test_most_units_dying_is_dead_though_a_few_live_ones_still_move():
    # Inputs 255x off scale: one SGD step kills 96% of the ReLU paths; the 4% left keep the
    # weights moving (update_ratio 2e-4) while the loss sits at ln 2.
    n = 400
    zero = np.where(np.arange(n) < 2, 0.18, 0.96)
    v = first(run(stream(n, loss=np.full(n, 0.686), noise=0.01, zero=zero, ratio=2.4e-4)),
              g.DEAD_UNITS)
    assert "cause" not in v.evidence
    # Batch 1 sparsens a healthy net from ~75% to ~93% exact zeros: not a death.
    zero = np.where(np.arange(n) < 2, 0.75, 0.93)
    assert g.DEAD_UNITS not in kinds(run(stream(n, loss=np.full(n, 0.686), noise=0.01,
                                                zero=zero, ratio=1e-3)))


def test_units_that_die_in_a_falling_window_are_never_the_snapshot():
    n = 300
    t = np.arange(n, dtype=np.float64)
    zero = np.where(t < 250, 0.2, 0.99)
    verdicts = run(stream(n, zero=zero))
    settled = [v for v in verdicts if v.settled]
    assert all(v.kind == g.HEALTHY for v in settled)
    assert settled[0].snapshot_ok and not settled[-1].snapshot_ok


def test_a_dip_within_batch_noise_is_not_a_falling_loss():
    # Weights that stand still (a stall) under heavy batch noise: the second half-window's
    # median is 5% lower by chance, well within the noise: still STALLED, never a snapshot.
    n = 120
    rng = np.random.default_rng(0)
    loss = 4.0 + rng.normal(0, 1.0, n)
    loss[60:] -= 0.2
    cols = stream(n, loss=loss, noise=0.0, ratio=1e-9)
    v = g.judge(cols, CFG, baseline=g.Baseline(loss=4.0))
    assert v.kind == g.STALLED and not v.snapshot_ok
    assert v.evidence["progress"] > CFG.flat_loss_fraction
    assert v.evidence["progress"] < 3 * v.evidence["noise"]


def test_a_new_attempt_falling_from_high_above_the_run_start_is_left_alone():
    # Rolled back to the initial weights under a new optimizer: the loss starts at 120
    # (inputs far off scale) and falls; the run started at 0.69 under the old one.
    n = 120
    loss = 6.0 + 114.0 * np.exp(-np.arange(n) / 30.0)
    v = g.judge(stream(n, loss=loss, noise=0.02), CFG, baseline=g.Baseline(loss=0.69))
    assert v.kind == g.HEALTHY and not v.snapshot_ok


def test_replica_imbalance_names_the_replica():
    verdicts = run(stream(300, replicas=4, silent_replica=2))
    v = first(verdicts, g.REPLICA_IMBALANCE)
    assert v.evidence["replica"] == 2 and "replica 2 gradient norm 0.0e+00" in v.reason


def test_replica_imbalance_from_summary_columns_alone():
    cols = stream(300, replicas=3, silent_replica=1)
    del cols[REPLICA_NORMS]
    assert first(run(cols), g.REPLICA_IMBALANCE).evidence["replica"] == 1


def test_one_replica_is_never_imbalanced():
    assert not any(v.unhealthy for v in run(stream(300, replicas=1)))


def test_brief_silence_is_not_imbalance():
    cols = stream(300, replicas=2)
    cols[REPLICA_NORMS][200:220, 1] = 0.0  # 20 of 80 steps: not sustained
    cols["grad_norm_min"] = cols[REPLICA_NORMS].min(1)
    assert not any(v.unhealthy for v in run(cols))


def test_converged_is_flat_and_low():
    n = 400
    t = np.arange(n, dtype=np.float64)
    loss = 2.3 * np.exp(-t / 20.0) + 0.01
    ratio = np.where(t < 100, 1e-3, 1e-8)
    verdicts = run(stream(n, loss=loss, ratio=ratio))
    assert g.CONVERGED in kinds(verdicts) and not any(v.unhealthy for v in verdicts)
    v = first(verdicts, g.CONVERGED)
    # The starting loss is the median of the first 20 steps: 1.4 on this steep curve.
    assert v.snapshot_ok and "down from 1.4" in v.reason


def test_converged_negative_loss():
    # Cosine-similarity-like loss: starts near 0, ends near -1, flat.
    n = 400
    t = np.arange(n, dtype=np.float64)
    loss = -0.95 * (1 - np.exp(-t / 20.0)) - 0.001
    verdicts = run(stream(n, loss=loss, noise=0.0, ratio=1e-8))
    assert g.CONVERGED in kinds(verdicts) and not any(v.unhealthy for v in verdicts)


def test_new_attempt_keeps_run_start_loss_and_restarts_warmup():
    state = g.GuardState()
    cols = stream(200)
    state, _ = g.observe(state, cols, CFG)
    fresh = g.new_attempt(state)
    assert fresh.baseline.loss == pytest.approx(state.baseline.loss)
    assert fresh.attempt_steps == 0 and fresh.window is None
    _, v = g.observe(fresh, {k: v[:20] for k, v in stream(20, loss=np.full(20, 0.5)).items()},
                     CFG)
    assert not v.settled


def test_new_attempt_from_the_initial_weights_measures_the_start_again():
    # SGD at 100 threw the first losses into the thousands before they went non-finite.
    state, _ = g.observe(g.GuardState(), stream(20, loss=np.full(20, 5000.0)), CFG)
    assert state.baseline.loss > 1000
    fresh = g.new_attempt(state, from_start=True)
    assert fresh.baseline.loss is None and fresh.first_losses == ()
    state, _ = g.observe(fresh, stream(20, loss=np.full(20, 0.7), noise=0.0), CFG)
    assert state.baseline.loss == pytest.approx(0.7)


def test_judge_without_baseline_and_short_window():
    cols = stream(50)
    assert not g.judge(cols, CFG).settled
    n = 80
    v = g.judge(stream(n, loss=np.full(n, 2.3), ratio=1e-7, noise=0.0), CFG)
    assert v.kind == g.STALLED


def test_deterministic():
    cols = stream(300, seed=3, loss=np.full(300, 2.3), ratio=1e-7)
    a, b = run(cols), run({k: v.copy() for k, v in cols.items()})
    assert a == b


def test_observe_does_not_mutate_state():
    state, _ = g.observe(g.GuardState(), stream(100), CFG)
    snapshot = pickle.dumps(state)
    g.observe(state, stream(20), CFG)
    assert pickle.dumps(state) == snapshot


def test_verdicts_are_json_serialisable():
    cols = stream(100)
    cols["loss"][50] = np.inf
    cols["finite"][50] = False
    verdicts = run(cols) + run(stream(300, replicas=4, silent_replica=0))
    for v in verdicts:
        json.dumps(dataclasses.asdict(v), allow_nan=False)


def test_missing_column_is_a_config_error():
    cols = stream(10)
    del cols["update_ratio"]
    with pytest.raises(ConfigError, match=r"\[GT111\].*update_ratio"):
        g.observe(g.GuardState(), cols, CFG)


def test_guard_config_validation_collects_every_problem():
    with pytest.raises(ConfigError) as info:
        g.GuardConfig(window_steps=0, flat_loss_fraction=2.0)
    text = str(info.value)
    assert "[GT110]" in text and "GuardConfig(window_steps=0)" in text
    assert "GuardConfig(flat_loss_fraction=2.0)" in text and "Fix:" in text
    with pytest.raises(ConfigError, match="stall < oscillation"):
        g.GuardConfig(stall_update_ratio=0.5)
    with pytest.raises(TypeError):
        g.GuardConfig(100)  # keyword-only
    with pytest.raises(dataclasses.FrozenInstanceError):
        CFG.window_steps = 3


def _sampled(cols, every):
    """What the loop records with stats_every=every: norms on the first ceil(n / every)
    steps of each n-step chunk, NaN (grad_norm_argmin -1) on the others, the loss and the
    finite flag on all."""
    n = len(cols["loss"])
    measured = np.arange(n) % CHUNK_STEPS < -(-CHUNK_STEPS // every)
    out = dict(cols, measured=measured)
    for name in NORM_COLUMNS:
        if name in out:
            fill = -1 if name == "grad_norm_argmin" else np.nan
            out[name] = np.where(measured, out[name], fill)
    out[REPLICA_NORMS] = np.where(measured[:, None], cols[REPLICA_NORMS], np.nan)
    return out


@pytest.mark.parametrize("make, kind", [
    (lambda: stream(400), g.HEALTHY),
    (lambda: stream(300, loss=np.full(300, 2.302), noise=0.003, ratio=1e-7), g.STALLED),
    (lambda: vanishing_stream(300, 1e-9), g.VANISHING),
    (lambda: stream(300, loss=np.full(300, 2.3), noise=0.01, zero=0.98, ratio=0.0),
     g.DEAD_UNITS),
    (lambda: stream(300, replicas=4, silent_replica=2), g.REPLICA_IMBALANCE),
])
def test_norms_on_every_tenth_step_give_the_verdicts_of_every_step(make, kind):
    full, sampled = run(make()), run(_sampled(make(), 10))
    assert kind in kinds(full)
    assert [v.kind for v in sampled] == [v.kind for v in full]
    assert [v.step for v in sampled] == [v.step for v in full]


def test_sampled_norms_leave_the_non_finite_check_to_the_loss():
    cols = _sampled(stream(120), 10)
    cols["loss"] = cols["loss"].copy()
    cols["loss"][63] = np.nan                 # an unmeasured step
    cols["finite"] = np.isfinite(cols["loss"])
    v = first(run(cols), g.DIVERGED)
    assert v.evidence["first_nonfinite_step"] == 64 and "loss nan" in v.reason
