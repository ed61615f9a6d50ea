"""The rescue end to end: ``gt.fit`` on small real models whose trouble is known, 1 and 2 replicas.

Each case trains a small Keras model on generated Gaussian blobs in 8-D (3,072 training
samples, batch 32: 96 steps an epoch) and asserts what the run did, read from the
``Result``, ``history/*.parquet`` and ``events.jsonl``: which decisions were taken, in which
order, from which snapshot, and what the user gets back. Assertions are about behaviour
(a higher rate, a lower rate, another optimizer, finite weights, contiguous steps), never
about a step number or a threshold, so the guard's defaults can be tuned under them.

Guard settings: the guard judges an attempt only after ``warmup_steps + window_steps``
steps (150 by default), so the cases that test the defaults give it 384-768 steps and
use ``GuardConfig()`` as shipped. The few cases about a mechanism rather than the defaults
pin a ``GuardConfig`` and say so in their docstring.

Two-replica runs use ``LaunchConfig(cpu_replicas=2)``: ``MirroredStrategy`` over the two
logical CPUs made at session start (conftest), which gives replica 0 the first half of
every global batch and replica 1 the second half.
"""

import keras
import numpy as np
import pytest

import guardtrain as gt
from guardtrain.records.events import load_events
from guardtrain.records.attempts_file import load_attempts

pytestmark = pytest.mark.tf

REPLICAS = (1, 2)
BATCH = 32
N_TRAIN = 3072          # 96 steps an epoch at batch 32
SETTLED = ("HEALTHY", "CONVERGED")   # settled verdict labels of a healthy chunk in history


def _ids(replicas):
    return f"{replicas}replica" + ("s" if replicas > 1 else "")


# -- data, models, records ----------------------------------------------------------------

def _blobs(n=N_TRAIN + 1024, *, classes=4, seed=0):
    """``classes`` Gaussian blobs in 8-D; the first N_TRAIN rows train, the rest are held out."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(classes, 8))
    y = rng.integers(0, classes, size=n)
    x = centers[y] + rng.normal(size=(n, 8))
    x, y = x.astype("float32"), y.astype("int64")
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


def _builder(optimizer, *, classes=4, hidden=(32,), activation="relu", use_bias=True,
             seed=0):
    """A function building the compiled classifier (seeded: every call, the same weights).

    ``optimizer`` is a zero-argument function: each model gets its own optimizer.
    """
    def build():
        keras.utils.set_random_seed(seed)
        layers = [keras.layers.Dense(h, activation=activation, use_bias=use_bias)
                  for h in hidden]
        model = keras.Sequential([keras.Input((8,)), *layers,
                                  keras.layers.Dense(classes, use_bias=use_bias)])
        model.compile(optimizer=optimizer(),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model
    return build


def _launch(replicas):
    return gt.LaunchConfig(cpu_replicas=2) if replicas == 2 else None


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=256, verbose=0), -1) == y))


def _decisions(run_dir, *actions):
    """The decision events of a run, in order; only ``actions`` when given."""
    return [e for e in load_events(run_dir)
            if e["event"] == "decision" and (not actions or e["action"] in actions)]


def _columns(history, *names):
    return [history.column(n).to_numpy(zero_copy_only=False) for n in names]


def _attempt_rows(history, attempt):
    attempts, = _columns(history, "attempt")
    return history.filter(attempts == attempt)


def _assert_keys_unique_and_steps_contiguous(history):
    attempts, steps = _columns(history, "attempt", "step")
    keys = list(zip(attempts.tolist(), steps.tolist()))
    assert len(set(keys)) == len(keys), "(attempt, step) must be a row's key"
    for a in np.unique(attempts):
        s = steps[attempts == a]
        assert np.all(np.diff(s) == 1), f"attempt {a}: steps not contiguous: {s}"


def _all_finite(weights):
    return all(np.isfinite(w).all() for w in weights)


# -- 1 and 7: Adam at 1e-6 is rescued by a probed, larger rate ------------------------------

@pytest.fixture(scope="module", params=REPLICAS, ids=_ids)
def stalled_adam(request, tmp_path_factory):
    """The seed's second example, with the guard's defaults: Adam at lr 1e-6, 8 epochs."""
    replicas = request.param
    (x, y), held_out = _blobs()
    run_dir = tmp_path_factory.mktemp(f"stalled-adam-{replicas}")
    result = gt.fit(_builder(lambda: keras.optimizers.Adam(1e-6)), x, y, batch_size=BATCH,
                    epochs=8, verbose=0, run_dir=run_dir, launch=_launch(replicas))
    return result, held_out


def test_stalled_adam_is_rescued_by_a_larger_rate(stalled_adam):
    result, (x_val, y_val) = stalled_adam
    history = result.history

    assert result.verdict == "rescued"
    lr_last = history.column("learning_rate")[-1].as_py()
    assert lr_last > 2e-6, f"final learning rate {lr_last} is not above 1e-6"
    assert result.attempts[-1]["learning_rate"] > 2e-6
    assert result.attempts[-1]["outcome"] == "completed"
    assert result.attempts[0]["end_verdict"] == "STALLED"
    assert _accuracy(result.model, x_val, y_val) > 0.6          # chance is 0.25

    events = load_events(result.run_dir)
    kinds = [e.get("action", e["event"]) for e in events if e["event"] in ("decision", "probe")]
    assert kinds[:3] == ["PROBE", "probe", "ADJUST"], kinds
    probe = _decisions(result.run_dir, "PROBE")[0]
    adjust = _decisions(result.run_dir, "ADJUST")[0]
    assert probe["verdict"]["kind"] == "STALLED"
    assert min(probe["learning_rates"]) > 1e-6
    assert adjust["optimizer_to"] == "adam" and adjust["learning_rate_to"] > 2e-6
    assert adjust["attempt"] == 2 and adjust["from_step"] == probe["from_step"]
    # The attempts, as fields, in the run directory too.
    assert load_attempts(result.run_dir) == result.attempts
    second = result.attempts[1]
    assert (second["optimizer_from"], second["optimizer"]) == ("adam", "adam")
    assert second["learning_rate_from"] == pytest.approx(1e-6)
    assert second["learning_rate"] == adjust["learning_rate_to"]

    attempts, steps = _columns(history, "attempt", "step")
    assert len(set(attempts.tolist())) >= 2
    _assert_keys_unique_and_steps_contiguous(history)
    assert steps[attempts == 2][0] == adjust["from_step"] + 1


def test_probe_steps_never_reach_the_history_or_the_weights(stalled_adam):
    """The probe ran ``probe_steps`` steps at each candidate rate from the snapshot: none of
    them is a history row, and the weights attempt 2 starts from are the snapshot's."""
    result, _ = stalled_adam
    history = result.history
    probe = _decisions(result.run_dir, "PROBE")[0]
    adjust = _decisions(result.run_dir, "ADJUST")[0]
    snap = adjust["from_step"]

    _assert_keys_unique_and_steps_contiguous(history)
    first = _attempt_rows(history, 1)
    second = _attempt_rows(history, 2)
    steps1, = _columns(first, "step")
    steps2, = _columns(second, "step")
    # Attempt 1 ends at the step judged STALLED, attempt 2 begins right after the snapshot:
    # nothing of the probe sits between them or inside either.
    assert steps1[0] == 1 and steps1[-1] == probe["step"]
    assert steps2[0] == snap + 1
    # weight_norm is the norm before the step: attempt 2's first row measures the weights
    # it started from, which must be the snapshot's, as recorded by attempt 1.
    at_snap = first.filter(steps1 == snap + 1).column("weight_norm")[0].as_py()
    assert second.column("weight_norm")[0].as_py() == pytest.approx(at_snap, rel=1e-6)


# -- 2: SGD at a rate far too high goes non-finite and is rolled back ----------------------

@pytest.mark.parametrize("replicas", REPLICAS, ids=_ids)
def test_nonfinite_sgd_is_rolled_back_to_a_lower_rate(replicas, tmp_path):
    (x, y), (x_val, y_val) = _blobs()
    result = gt.fit(_builder(lambda: keras.optimizers.SGD(10.0)), x, y, batch_size=BATCH,
                    epochs=4, verbose=0, run_dir=tmp_path, launch=_launch(replicas))

    assert result.verdict == "rescued"
    verdicts = [e for e in load_events(tmp_path) if e["event"] == "verdict"]
    assert verdicts and verdicts[0]["kind"] == "DIVERGED"
    adjusts = _decisions(tmp_path, "ADJUST")
    assert adjusts and adjusts[0]["learning_rate_to"] < 10.0
    assert result.history.column("learning_rate")[-1].as_py() < 10.0
    assert _all_finite(result.model.get_weights())

    last = _attempt_rows(result.history, max(_columns(result.history, "attempt")[0]))
    finite, loss = _columns(last, "finite", "loss")
    assert finite[-50:].all() and np.isfinite(loss[-50:]).all()
    _assert_keys_unique_and_steps_contiguous(result.history)
    assert _accuracy(result.model, x_val, y_val) > 0.6


# -- 3: vanishing gradients in a deep sigmoid net: switch optimizer -------------------------

@pytest.mark.parametrize("replicas", REPLICAS, ids=_ids)
def test_deep_sigmoid_net_is_rescued_by_an_optimizer_switch(replicas, tmp_path):
    """8 Dense(32, sigmoid) layers under SGD on 2 blobs: the first layer's gradient is
    ~1e-5 and the loss sits at ln 2. (On 4 blobs, Adam plateaus too, the guard moves on to
    RMSprop and, given the steps, ends in GT502: the 2-class problem is the one an
    optimizer switch really rescues.)"""
    (x, y), (x_val, y_val) = _blobs(classes=2)
    build = _builder(lambda: keras.optimizers.SGD(1e-2), classes=2, hidden=(32,) * 8,
                     activation="sigmoid")
    result = gt.fit(build, x, y, batch_size=BATCH, epochs=6, verbose=0, run_dir=tmp_path,
                    launch=_launch(replicas))

    adjusts = _decisions(tmp_path, "ADJUST")
    switches = [d for d in adjusts if d["optimizer_to"] != "sgd"]
    assert switches, [d["summary"] for d in adjusts]
    switch = switches[0]
    assert switch["verdict"]["kind"] == "VANISHING"
    assert switch["fresh_optimizer_state"] is True
    # The switch probed the new optimizer, fresh, at its usual rate and 10x, and kept one.
    probes = [e for e in load_events(tmp_path) if e["event"] == "probe"
              and e.get("optimizer") == switch["optimizer_to"]]
    assert probes, [e for e in load_events(tmp_path) if e["event"] == "probe"]
    rates = [p["learning_rate"] for p in probes[0]["results"]]
    assert len(rates) == 2 and rates[1] == pytest.approx(10 * rates[0])
    assert switch["learning_rate_to"] in rates

    assert result.verdict == "rescued"
    final = adjusts[-1]["optimizer_to"]
    assert isinstance(result.model.optimizer, type(keras.optimizers.get(final)))
    assert not isinstance(result.model.optimizer, keras.optimizers.SGD)
    last = _attempt_rows(result.history, adjusts[-1]["attempt"])
    assert set(last.column("optimizer").to_pylist()) == {final}
    assert set(last.column("verdict").to_pylist()) & set(SETTLED)   # judged healthy
    assert _accuracy(result.model, x_val, y_val) > 0.75          # chance is 0.5


# -- 4: a replica fed zeros ---------------------------------------------------------------

def _half_zero_batches(x):
    """Rows [B/2, B) of every global batch of B are zeros: replica 1's share on 2 replicas."""
    x = x.reshape(-1, BATCH, x.shape[-1]).copy()
    x[:, BATCH // 2:] = 0.0
    return x.reshape(-1, x.shape[-1])


@pytest.mark.parametrize("replicas", REPLICAS, ids=_ids)
def test_a_replica_fed_zeros_ends_in_an_abort_naming_it(replicas, tmp_path):
    """No bias anywhere, so an all-zero input has a gradient of exactly 0. On 2 replicas
    replica 1 gets only zeros: GT306 naming it. On 1 replica the same batches are just
    data with some zero rows and a non-zero gradient: no replica to blame, the run trains."""
    (x, y), _ = _blobs()
    x = _half_zero_batches(x)
    build = _builder(lambda: keras.optimizers.Adam(1e-3), use_bias=False)
    kwargs = dict(batch_size=BATCH, epochs=8, shuffle=False, verbose=0, run_dir=tmp_path,
                  launch=_launch(replicas))

    if replicas == 1:
        result = gt.fit(build, x, y, **kwargs)
        assert result.verdict == "healthy"
        assert not _decisions(tmp_path, "PROBE", "ADJUST", "ABORT")
        return

    with pytest.raises(gt.UnhealthyTrainingError) as info:
        gt.fit(build, x, y, **kwargs)
    err = info.value
    assert err.code == "GT306"
    assert "[GT306]" in str(err) and "replica 1" in str(err)
    assert err.details["replica"] == 1
    assert err.details["verdict"] == "REPLICA_IMBALANCE"
    aborts = _decisions(tmp_path, "ABORT")
    assert len(aborts) == 1 and aborts[0]["code"] == "GT306"
    assert not _decisions(tmp_path, "PROBE", "ADJUST")      # no hyperparameter fixes data


@pytest.mark.parametrize("replicas", REPLICAS, ids=_ids)
def test_all_zero_inputs_are_refused_before_training(replicas, tmp_path):
    """Every replica fed zeros: ``check`` refuses the input on the driver (GT232) before
    anything is built, so no step runs."""
    (x, y), _ = _blobs()
    with pytest.raises(gt.InputSpecError) as info:
        gt.fit(_builder(lambda: keras.optimizers.Adam(1e-3), use_bias=False),
               np.zeros_like(x), y, batch_size=BATCH, epochs=1, verbose=0,
               run_dir=tmp_path, launch=_launch(replicas))
    assert "GT232" in str(info.value)
    assert gt.load_history(tmp_path).num_rows == 0


# -- 5: a healthy run is never touched ------------------------------------------------------

@pytest.mark.parametrize("replicas", REPLICAS, ids=_ids)
def test_a_healthy_run_is_untouched_and_bitwise_unguarded(replicas, tmp_path):
    (x, y), (x_val, y_val) = _blobs()
    build = _builder(lambda: keras.optimizers.Adam(1e-3))
    kwargs = dict(batch_size=BATCH, epochs=6, shuffle=False, verbose=0,
                  launch=_launch(replicas))
    guarded = gt.fit(build, x, y, run_dir=tmp_path / "guarded", **kwargs)
    plain = gt.fit(build, x, y, run_dir=tmp_path / "plain", guard=False, **kwargs)

    assert guarded.verdict == "healthy"
    assert len(guarded.attempts) == 1 and guarded.attempts[0]["outcome"] == "completed"
    assert set(_columns(guarded.history, "attempt")[0].tolist()) == {1}
    events = load_events(guarded.run_dir)
    assert not [e for e in events if e["event"] == "decision"
                and e["action"] not in ("SNAPSHOT", "CONTINUE")]
    assert not [e for e in events if e["event"] in ("verdict", "probe", "error")]
    labels = set(guarded.history.column("verdict").to_pylist())
    assert labels & set(SETTLED), "the guard never judged the run: nothing was tested"
    assert labels <= {*SETTLED, *(f"{k} (warm-up)" for k in SETTLED)}, labels

    assert guarded.history.num_rows == plain.history.num_rows
    for mine, ref in zip(guarded.model.get_weights(), plain.model.get_weights()):
        np.testing.assert_array_equal(mine, ref)
    assert _accuracy(guarded.model, x_val, y_val) > 0.9


# -- 6: rescue=False raises instead of acting ----------------------------------------------

@pytest.fixture(scope="module", params=REPLICAS, ids=_ids)
def unrescued_stall(request, tmp_path_factory):
    """Adam at 1e-6 with ``rescue=False`` and the guard's defaults; the model is an
    instance, so the caller can look at its weights after the error."""
    replicas = request.param
    (x, y), _ = _blobs()
    model = _builder(lambda: keras.optimizers.Adam(1e-6))()
    initial = model.get_weights()
    run_dir = tmp_path_factory.mktemp(f"unrescued-{replicas}")
    with pytest.raises(gt.UnhealthyTrainingError) as info:
        gt.fit(model, x, y, batch_size=BATCH, epochs=8, verbose=0, run_dir=run_dir,
               rescue=False, launch=_launch(replicas))
    return info.value, model, initial, run_dir


def test_rescue_off_raises_stalled_and_keeps_the_last_healthy_weights(unrescued_stall):
    """The run is never judged healthy before the stall, so the last healthy snapshot is
    the starting weights: that is what the model holds."""
    err, model, initial, run_dir = unrescued_stall
    assert err.code == "GT301" and "[GT301]" in str(err)
    assert err.details["verdict"] == "STALLED"
    assert not _decisions(run_dir, "PROBE", "ADJUST")
    assert set(_columns(gt.load_history(run_dir), "attempt")[0].tolist()) == {1}
    weights = model.get_weights()
    assert _all_finite(weights)
    for mine, start in zip(weights, initial):
        np.testing.assert_array_equal(mine, start)


def test_the_chunk_that_ends_a_run_is_in_the_history(unrescued_stall):
    err, _, _, run_dir = unrescued_stall
    steps, = _columns(gt.load_history(run_dir), "step")
    assert steps.max() >= err.details["step"]


@pytest.mark.parametrize("replicas", [
    pytest.param(1, id=_ids(1)),
    pytest.param(2, id=_ids(2))])
def test_rescue_off_after_a_healthy_stretch_hands_back_the_snapshot(replicas, tmp_path):
    """Mechanism, not the defaults: ``GuardConfig(warmup_steps=50, window_steps=100)`` so
    healthy snapshots are taken well before a callback throws the rate to 1e4 at epoch 4.
    The user's model must then hold the last healthy weights: finite, and trained (not
    the starting weights: the snapshot moved with every healthy chunk)."""
    (x, y), (x_val, y_val) = _blobs()
    model = _builder(lambda: keras.optimizers.SGD(1e-2))()
    initial = model.get_weights()

    class ThrowTheRate(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 4:
                self.model.optimizer.learning_rate = 1e4

    with pytest.raises(gt.UnhealthyTrainingError) as info:
        gt.fit(model, x, y, batch_size=BATCH, epochs=6, verbose=0, run_dir=tmp_path,
               rescue=False, guard=gt.GuardConfig(warmup_steps=50, window_steps=100),
               callbacks=[ThrowTheRate()], launch=_launch(replicas))
    assert info.value.code == "GT302"

    weights = model.get_weights()
    assert _all_finite(weights)
    assert not all(np.array_equal(w, w0) for w, w0 in zip(weights, initial))
    assert _accuracy(model, x_val, y_val) > 0.6                  # chance is 0.25


# -- 8: a budget of one attempt -------------------------------------------------------------

@pytest.mark.parametrize("replicas", REPLICAS, ids=_ids)
def test_a_budget_of_one_attempt_ends_exhausted(replicas, tmp_path):
    (x, y), _ = _blobs()
    with pytest.raises(gt.RescueExhaustedError) as info:
        gt.fit(_builder(lambda: keras.optimizers.Adam(1e-6)), x, y, batch_size=BATCH,
               epochs=8, verbose=0, run_dir=tmp_path, launch=_launch(replicas),
               rescue=gt.RescueConfig(max_attempts=1))
    err = info.value
    assert err.code.startswith("GT5") and f"[{err.code}]" in str(err)
    attempts = err.details["attempts"]
    assert [a["number"] for a in attempts] == [1]
    assert attempts[0]["optimizer"] == "adam"
    assert attempts[0]["outcome"] == "exhausted"
    assert attempts[0]["end_verdict"] == "STALLED"
    assert "attempt 1" in str(err)
    assert not _decisions(tmp_path, "PROBE", "ADJUST")       # no attempt left to probe for


# -- "rescued" must mean healthy after a rescue ----------------------------------------------

@pytest.mark.parametrize("replicas", REPLICAS, ids=_ids)
def test_rescued_is_claimed_only_after_the_new_attempt_is_judged(replicas, tmp_path):
    """Mechanism: ``GuardConfig(warmup_steps=100, window_steps=200)`` pinned, SGD at 10
    goes non-finite in the first chunk and is rolled back; 2 epochs (192 steps) leave the
    new attempt too few steps for any settled verdict. "rescued" then needs the new
    attempt's loss to be clearly falling (last quarter below the first), else "failed"."""
    (x, y), _ = _blobs()
    result = gt.fit(_builder(lambda: keras.optimizers.SGD(10.0)), x, y, batch_size=BATCH,
                    epochs=2, verbose=0, run_dir=tmp_path, launch=_launch(replicas),
                    guard=gt.GuardConfig(warmup_steps=100, window_steps=200))
    assert _decisions(tmp_path, "ADJUST")          # the premise: a rollback happened
    last = _attempt_rows(result.history, max(_columns(result.history, "attempt")[0]))
    judged_healthy = bool(set(last.column("verdict").to_pylist()) & set(SETTLED))
    loss = np.asarray(last.column("loss").to_pylist())
    q = len(loss) // 4
    falling = bool(q and np.median(loss[-q:]) < np.median(loss[:q]))
    assert result.verdict in ("rescued", "failed")
    assert result.verdict != "rescued" or judged_healthy or falling
    assert result.verdict != "failed" or not (judged_healthy or falling)
