"""Typed decisions, enums, the event record, the engine's facts handed to the policy, the
attempts file, and the configs' one validator."""

import dataclasses
import json
import pickle

import numpy as np
import pytest

from guardtrain.core import guard as g
from guardtrain.core import rescue as r
from guardtrain.core.decisions import Action
from guardtrain.core.errors import ConfigError
from guardtrain.core.launch_config import LaunchConfig
from guardtrain.core.rates import round_rate
from guardtrain.core.verdicts import VerdictKind
from guardtrain.records.attempts_file import load_attempts, write_attempts

pytestmark = pytest.mark.pure

CFG = r.RescueConfig()
COMMON = {"action", "step", "attempt", "max_attempts", "reason", "verdict", "summary"}


def verdict(kind, step=400, **evidence):
    return g.Verdict(kind=kind, step=step, first_step=step - 199, evidence=evidence,
                     reason=f"{kind} at step {step}: scripted")


def start(optimizer="sgd", lr=1e-6):
    return r.initial_state(optimizer=optimizer, learning_rate=lr, step=0)


def probe(lr, change, steps=20):
    tail = np.linspace(0, 1, steps)[-(steps // 4):].mean()
    return r.ProbeResult(learning_rate=lr,
                         losses=2.3 * (1 + change / tail * np.linspace(0, 1, steps)))


# -- enums -----------------------------------------------------------------------------------

@pytest.mark.parametrize("member", [*VerdictKind, *Action])
def test_enums_read_as_their_bare_value(member):
    assert str(member) == member.value and f"{member}" == member.value
    assert f"{member:>20}" == f"{member.value:>20}"
    assert json.dumps({"k": member}) == json.dumps({"k": member.value})
    assert member == member.value and pickle.loads(pickle.dumps(member)) is member


def test_module_names_are_the_members():
    assert g.STALLED is VerdictKind.STALLED and r.ADJUST is Action.ADJUST
    assert g.VERDICT_KINDS == tuple(VerdictKind)
    assert g.Verdict(kind="DIVERGED", step=1, reason="x").kind is g.DIVERGED


# -- the engine's facts: the rate now, the snapshot step ---------------------------------------

def test_a_rate_moved_by_a_callback_is_the_rate_a_diverged_adjust_divides():
    # The rescue set 0.1; a ReduceLROnPlateau has since moved the optimizer to 0.02.
    state = start(lr=0.1)
    d = r.decide(verdict(g.DIVERGED), state, CFG, snapshot_step=300, learning_rate=0.02)
    assert d.action == r.ADJUST
    assert (d.learning_rate_from, d.learning_rate_to) == (0.02, 0.002)
    assert d.summary() == "learning_rate 2.0e-02 -> 2.0e-03"
    after = r.apply(d, state)
    assert after.learning_rate == 0.002 and after.attempts[-1].learning_rate_from == 0.02


def test_a_stall_probes_above_the_rate_the_optimizer_has_now():
    d = r.decide(verdict(g.STALLED), start(lr=1e-6), CFG, snapshot_step=0,
                 learning_rate=1e-4)
    assert d.learning_rates == (1e-3, 1e-2, 1e-1, 1.0)
    assert d.learning_rate_from == 1e-4 and "(now 1.0e-04, sgd)" in d.summary()


def test_the_rate_read_from_float32_is_rounded_once_the_same_way():
    assert round_rate(float(np.float32(1e-6))) == 1e-6
    d = r.decide(verdict(g.DIVERGED), start(lr=0.1), CFG, snapshot_step=0,
                 learning_rate=float(np.float32(0.1)))
    assert d.learning_rate_from == 0.1 and d.learning_rate_to == 0.01


def test_the_snapshot_step_comes_from_the_engine_and_follows_the_probe():
    state = start()
    p = r.decide(verdict(g.STALLED), state, CFG, snapshot_step=350, learning_rate=1e-6)
    assert p.from_step == 350
    state = r.apply(p, state)
    d = r.after_probe([probe(lr, -0.2) for lr in p.learning_rates], state, CFG)
    assert d.action == r.ADJUST and d.from_step == 350
    assert r.apply(d, state).attempts[-1].from_step == 350


# -- typed decisions and their record -----------------------------------------------------------

def test_each_kind_records_exactly_its_fields():
    state = start()
    p = r.decide(verdict(g.STALLED), state, CFG, snapshot_step=200, learning_rate=1e-6)
    rec = p.record()
    assert set(rec) == COMMON | {"from_step", "learning_rates", "steps", "optimizer"}
    assert rec["action"] == "PROBE" and type(rec["action"]) is str
    assert rec["learning_rates"] == [1e-5, 1e-4, 1e-3, 1e-2] and rec["optimizer"] is None
    assert rec["verdict"]["kind"] == "STALLED" and rec["summary"] == p.summary()

    d = r.after_probe([probe(1e-5, -0.001), probe(1e-3, -0.3)], r.apply(p, state), CFG)
    rec = d.record()
    assert set(rec) == COMMON | {"from_step", "optimizer_from", "optimizer_to",
                                 "learning_rate_from", "learning_rate_to",
                                 "fresh_optimizer_state"}
    assert (rec["optimizer_from"], rec["optimizer_to"]) == ("sgd", "sgd")
    assert (rec["learning_rate_from"], rec["learning_rate_to"]) == (1e-6, 1e-3)
    assert rec["fresh_optimizer_state"] is False and rec["from_step"] == 200

    a = r.decide(verdict(g.REPLICA_IMBALANCE, replica=1), state, CFG, snapshot_step=0,
                 learning_rate=1e-6)
    assert set(a.record()) == COMMON | {"code", "fix"} and a.record()["code"] == "GT306"
    for dec in (p, d, a):
        json.loads(json.dumps(dec.record(), allow_nan=False))


def test_a_switch_is_one_meaning_per_field():
    state = start("sgd", 1e-2)
    p = r.decide(verdict(g.VANISHING), state, CFG, snapshot_step=0, learning_rate=1e-2)
    assert isinstance(p, r.Probe) and p.optimizer == "adam" and p.fresh_optimizer_state
    d = r.after_probe([probe(1e-3, -0.2), probe(1e-2, -0.1)], r.apply(p, state), CFG)
    assert isinstance(d, r.Adjust)
    assert (d.optimizer_from, d.optimizer_to, d.fresh_optimizer_state) == ("sgd", "adam", True)
    assert [o.learning_rate for o in d.probe] == [1e-3, 1e-2] and d.why == ""
    attempt = r.apply(d, r.apply(p, state)).attempts[-1]
    assert (attempt.optimizer_from, attempt.optimizer, attempt.learning_rate_from,
            attempt.learning_rate) == ("sgd", "adam", 1e-2, 1e-3)
    assert attempt.summary == d.summary() and attempt.reason == d.reason


def test_decisions_are_frozen_and_keyword_only():
    d = r.Continue(step=1, attempt=1, max_attempts=4, reason="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.step = 2
    with pytest.raises(TypeError):
        r.Continue(1, 1, 4, "x")
    assert d.action is Action.CONTINUE and d.summary() == "none"


# -- the attempts file ---------------------------------------------------------------------------

def test_attempts_file_round_trips_and_is_absent_until_written(tmp_path):
    assert load_attempts(tmp_path) is None
    state = r.finish(start(), step=500)
    attempts = [dataclasses.asdict(a) for a in state.attempts]
    write_attempts(tmp_path, attempts)
    assert load_attempts(tmp_path) == attempts
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temp left


# -- configs through one validator ----------------------------------------------------------------

def test_every_config_reports_every_problem_at_once():
    with pytest.raises(ConfigError) as info:
        r.RescueConfig(max_attempts=0, lr_down_factor=1.0, probe_steps=1)
    text = str(info.value)
    assert "[GT120] 3 problems in RescueConfig" in text
    assert "RescueConfig(probe_steps=...)" in text and "found 1" in text
    with pytest.raises(ConfigError) as info:
        LaunchConfig(workers=-1, cpus_per_worker=0)
    assert "[GT101] 2 problems in LaunchConfig" in str(info.value)
    with pytest.raises(ConfigError, match=r"\[GT101\] LaunchConfig\(cpu_replicas=..., workers"):
        LaunchConfig(cpu_replicas=2, workers=1)
    with pytest.raises(ConfigError) as info:
        g.GuardConfig(warmup_steps=-1, window_steps=3)
    assert "[GT110] 2 problems in GuardConfig" in str(info.value)
    assert "Fix: use window_steps=100" in str(info.value)
