"""Applies the guard's verdicts and the rescue's decisions to a running ``TrainLoop``.

The policy is pure (``guard.observe``, ``rescue.decide``); this module is where it meets
the weights. After every chunk:

```
verdict  = observe(window + chunk)          every figure already gathered across replicas
decision = decide(verdict, rescue state,    so every worker takes the same branch; the
                  snapshot step, rate now)  rate and the snapshot step are the loop's
  Snapshot  keep the weights and optimizer state on the device as the last healthy ones
  Probe     from the snapshot, a few steps at each larger rate; restore; after_probe
  Adjust    restore the snapshot, new rate or new optimizer, attempt += 1
  Abort     restore the last healthy weights, raise the diagnosis
```

Probe steps are never recorded and never reach the run's weights: each candidate starts
from the snapshot, and the snapshot is restored after the last one. Every PROBE, ADJUST
and ABORT becomes one ``decision`` event (``Decision.record()``), and the attempt list is
rewritten to ``attempts.json`` whenever it changes (docs/architecture.md, "Rescue").
"""

from __future__ import annotations

import dataclasses
import logging

import keras
import numpy as np

from guardtrain.core import guard as guard_mod
from guardtrain.core import rescue as rescue_mod
from guardtrain.core.attempts import CODE_INPUT, close
from guardtrain.core.errors import UnhealthyTrainingError
from guardtrain.core.fit_args import as_config
from guardtrain.core.guard import Baseline, GuardConfig, GuardState
from guardtrain.core.guard_rules import relative_to
from guardtrain.core.verdicts import NO_PROGRESS, Verdict
from guardtrain.core.rates import round_rate
from guardtrain.core.rescue import RescueConfig
from guardtrain.engine.forward_probe import probe_forward
from guardtrain.engine.schedules import ScaledSchedule, inner_optimizer, scaled_schedule_of
from guardtrain.records.attempts_file import write_attempts

__all__ = ["GuardSupervisor", "make_optimizer"]

logger = logging.getLogger(__name__)

# The forward pass overflows on finite inputs (a layer named by the forward probe).
CODE_FORWARD = "GT310"
# Activations that overflow by themselves on large inputs; for any other the cause is the
# scale of what reaches the layer.
_UNBOUNDED = ("exponential", "exp")

# Options of the user's optimizer that a switch keeps: they are about the problem
# (clipping against exploding gradients), not about the optimizer.
_KEPT_OPTIONS = ("clipnorm", "clipvalue", "global_clipnorm")


def make_optimizer(name: str, learning_rate: float, previous=None) -> keras.optimizers.Optimizer:
    """A fresh Keras optimizer ``name`` at a constant ``learning_rate``; wrapped in a
    ``LossScaleOptimizer`` when ``previous`` was (mixed precision: float16 gradients
    underflow without loss scaling)."""
    cls = type(keras.optimizers.get(name))
    kept = {}
    scaled = isinstance(previous, keras.optimizers.LossScaleOptimizer)
    inner = inner_optimizer(previous) if previous is not None else None
    if inner is not None:
        config = inner.get_config()
        kept = {k: config[k] for k in _KEPT_OPTIONS if config.get(k) is not None}
    rate = float(learning_rate)
    schedule = scaled_schedule_of(previous) if previous is not None else None
    if schedule is not None:
        # The user's schedule, scaled to give ``learning_rate`` now (engine/schedules).
        rate = ScaledSchedule(schedule.schedule)
        rate.set_rate(float(learning_rate), inner.iterations)
    optimizer = cls(learning_rate=rate, **kept)
    if not scaled:
        return optimizer
    # The scale the previous one had found, and the user's growth setting: a fresh 2**15
    # would spend the new attempt's first steps on skips again.
    found = (float(keras.ops.convert_to_numpy(previous.dynamic_scale))
             if getattr(previous, "built", False) else previous.initial_scale)
    return keras.optimizers.LossScaleOptimizer(
        optimizer, initial_scale=found, dynamic_growth_steps=previous.dynamic_growth_steps)


class GuardSupervisor:
    """The guard and the rescue, plugged into ``TrainLoop`` (see the module doc).

    Implements the loop's ``Supervisor`` protocol: ``begin``, ``after_chunk``, ``end``,
    ``state``/``restore``, and ``verdict``, ``attempts``, ``attempt``, ``last_label``.

    Args:
        guard: a ``GuardConfig`` (``None`` = defaults).
        rescue: a ``RescueConfig``, or ``False``: unhealthy verdicts then raise
            ``UnhealthyTrainingError`` instead of being acted on.
        events: the run's ``EventLog``; ``attempts.json`` is written beside it when it
            writes (rank 0).
        verbose: print one block per decision (also logged).
        reference: the loss of the best constant prediction (``core.reference.Reference``,
            from ``gt.check``): NO_PROGRESS and CONVERGED are judged against it, and a run
            that ends at it is not called healthy (``end``). ``None``: unknown.

    Example:

    >>> supervisor = GuardSupervisor(events=EventLog(run_dir))           # doctest: +SKIP
    >>> TrainLoop(..., supervisor=supervisor).run()                      # doctest: +SKIP
    >>> supervisor.verdict, supervisor.attempts[-1]["outcome"]           # doctest: +SKIP
    ('healthy', 'completed')
    """

    def __init__(self, *, guard=None, rescue=None, events, verbose: int = 1, reference=None):
        self.guard_config = as_config(guard, GuardConfig, "guard", "GT107", off=False)
        self.rescue_enabled = rescue is not False
        self.rescue_config = as_config(None if rescue is False else rescue, RescueConfig,
                                       "rescue", "GT107", off=False)
        self.events = events
        self.verbose = verbose
        self.reference = reference
        self.gstate = GuardState(baseline=Baseline(
            reference=None if reference is None else float(reference.loss)))
        self.rstate = None
        self.verdict = "healthy"
        self.attempts: list[dict] = []
        self.last_label: str | None = None
        self._adjusted = False  # an ADJUST waits for a healthy verdict to count as rescued
        self._probed = None     # the optimizer a switch probe installed, until the ADJUST

    @property
    def attempt(self) -> int:
        """The running attempt's number: the rescue state owns it."""
        return self.rstate.attempt if self.rstate is not None else 1

    # -- the hook ------------------------------------------------------------------------
    def begin(self, loop) -> None:
        if self.rstate is None:  # a resumed run brings its state and its snapshot
            self.rstate = rescue_mod.initial_state(
                optimizer=loop.optimizer_name, learning_rate=loop.learning_rate,
                step=loop.pos.step)
            loop.save_snapshot()
            self.events.add("guard", config=dataclasses.asdict(self.guard_config),
                            rescue=dataclasses.asdict(self.rescue_config)
                            if self.rescue_enabled else False,
                            reference=None if self.reference is None
                            else self.reference.record())
        self._record_attempts(self.rstate.attempts)

    def after_chunk(self, loop, stats: dict[str, np.ndarray]) -> str:
        val = (getattr(loop, "logs", None) or {}).get("val_loss")
        if val is not None and val != self.gstate.baseline.validation:
            self.gstate = self.gstate._replace(
                baseline=self.gstate.baseline._replace(validation=float(val)))
        self.gstate, verdict = guard_mod.observe(self.gstate, stats, self.guard_config)
        kind = str(verdict.kind)
        label = kind if verdict.settled else f"{kind} (warm-up)"
        self.last_label = label
        if self._adjusted and verdict.settled and not verdict.unhealthy:
            self.verdict = "rescued"
        if verdict.unhealthy:
            self.events.add("verdict", **dataclasses.asdict(verdict))
            logger.warning("[guard] %s", verdict.reason)
            if not self.rescue_enabled:
                self.last_label = kind
                loop.rewind()
                self.verdict = "failed"
                self._record_attempts(close(self.rstate.attempts, step=verdict.step,
                                            outcome="aborted", verdict=verdict))
                raise self._diagnosed(
                    rescue_mod.unhealthy_error(verdict, attempts=self.rstate.attempts), loop)
        # The rate and the snapshot step come from the engine, where they live: a
        # callback (ReduceLROnPlateau, a scheduler) may have moved the rate since the
        # rescue last set it, and the engine's snapshot holds the weights of its step.
        # The rate is the one the chunk ran at, read inside its call: reading the
        # optimizer's variable again here would be one more device read per chunk.
        decision = rescue_mod.decide(verdict, self.rstate, self.rescue_config,
                                     snapshot_step=loop.snapshot_step,
                                     learning_rate=_chunk_rate(stats, loop))
        # A rate probe may end in a switch, which probes the next optimizer in turn.
        while decision.action == rescue_mod.PROBE:
            self._say(decision)
            self.rstate = rescue_mod.apply(decision, self.rstate)
            results = self._probe(loop, decision)
            decision = rescue_mod.after_probe(results, self.rstate, self.rescue_config)
        self._act(loop, decision)
        return label

    def end(self, loop) -> None:
        if self.verdict == "adjusted":
            # The run ended before the new attempt filled a window: call it rescued only
            # if its loss is clearly falling.
            self.verdict = "rescued" if _falling(self.gstate.window,
                                                 self.guard_config.flat_loss_fraction) else "failed"
        at_reference = self._ended_at_reference(loop.pos.step, getattr(loop, "logs", {}))
        if at_reference is not None:
            # However the guard judged the windows, a run whose loss ends where a constant
            # prediction's is learned nothing from its inputs: never "healthy".
            self.events.add("verdict", **dataclasses.asdict(at_reference))
            logger.warning("[guard] %s", at_reference.reason)
            if self.verbose:
                print(f"[guard] {at_reference.reason}", flush=True)
            self.verdict = "failed"
            self.last_label = str(NO_PROGRESS)
            self.rstate = self.rstate._replace(attempts=close(
                self.rstate.attempts, step=loop.pos.step, outcome="completed",
                verdict=at_reference))
        self.rstate = rescue_mod.finish(self.rstate, step=loop.pos.step)
        self._record_attempts(self.rstate.attempts)

    def _ended_at_reference(self, step: int, logs) -> Verdict | None:
        """A NO_PROGRESS verdict when the run's last losses sit at the reference, else None.

        A validation loss clearly below the reference vouches for the model: heavy
        dropout or regularisation can hold a training loss up while it learns."""
        reference = self.gstate.baseline.reference
        window = self.gstate.window
        if self.verdict == "failed" or reference is None or not reference > 0 or not window:
            return None
        loss = np.asarray(window["loss"], dtype=float)
        loss = loss[np.isfinite(loss)]
        if loss.size == 0:
            return None
        tail = loss[-max(1, loss.size // 4):]
        final = float(np.median(tail))
        floor = (1 - self.guard_config.no_progress_fraction) * reference
        val = (logs or {}).get("val_loss")
        val = float(val) if val is not None and np.isfinite(val) else None
        if val is not None and val < floor:
            return None  # new data confirms something was learned
        if final < floor and val is None:
            return None
        # Below the reference on the training rows but not on new data: memorised, not
        # learned (labels without signal can be memorised by a large enough model).
        memorised = final < floor
        gap = (final - reference) / reference
        patience = self.guard_config.no_progress_after
        ran = self.gstate.attempt_steps
        short = (f"; only {ran} steps ran, fewer than the {patience} the guard gives a slow "
                 f"start: train longer if this is one" if ran < patience else "")
        if memorised:
            vgap = (val - reference) / reference
            what = (f"the validation loss {val:.4g} is {relative_to(vgap, reference)}, the "
                    f"loss of a constant prediction, while the training loss fell to "
                    f"{final:.4g}: what was learned does not carry to new data (memorised "
                    f"rows, or labels without signal)")
        else:
            what = (f"loss {final:.4g} (median of the last {tail.size} steps) is "
                    f"{relative_to(gap, reference)}, the loss of a constant prediction: the "
                    f"model learned nothing from its inputs{short}")
        evidence = {"loss_end": final, "reference_loss": reference, "reference_gap": gap,
                    "steps": int(tail.size)}
        if val is not None:
            evidence["val_loss"] = val
        return Verdict(kind=NO_PROGRESS, step=int(step), settled=False,
                       reason=f"NO_PROGRESS at the end (step {step}): {what}",
                       evidence=evidence)

    # -- carrying out a decision ------------------------------------------------------------
    def _act(self, loop, decision) -> None:
        action = decision.action
        if action == rescue_mod.CONTINUE:
            return
        if action == rescue_mod.SNAPSHOT:
            loop.save_snapshot()
            self.rstate = rescue_mod.apply(decision, self.rstate)
            return
        self._say(decision)
        if action == rescue_mod.ABORT:
            loop.rewind()  # the user gets the last healthy weights, not the broken ones
            self.verdict = "failed"
            self._record_attempts(rescue_mod.apply(decision, self.rstate).attempts)
            raise self._diagnosed(rescue_mod.error_for(decision, self.rstate), loop)
        # ADJUST: back to the snapshot, then the new rate or the new optimizer.
        fresh = decision.fresh_optimizer_state or _has_schedule(loop.model.optimizer)
        if fresh and self._probed == decision.optimizer_to:
            # A switch probe installed this optimizer fresh and rebound the snapshot to
            # that fresh state: restoring it is a fresh start without a second retrace.
            loop.rewind()
            loop.set_learning_rate(decision.learning_rate_to)
            fresh = False
        else:
            loop.rewind(with_optimizer=not fresh)
        self._probed = None
        if fresh:
            previous = loop.model.optimizer
            loop.switch_optimizer(lambda: make_optimizer(
                decision.optimizer_to, decision.learning_rate_to, previous))
        else:
            loop.set_learning_rate(decision.learning_rate_to)
        from_start = decision.from_step == self.rstate.attempts[0].from_step
        self.rstate = rescue_mod.apply(decision, self.rstate)   # attempt += 1
        self.gstate = guard_mod.new_attempt(self.gstate, from_start=from_start)
        self._adjusted = True
        self.verdict = "adjusted"  # until the new attempt is judged healthy
        self._record_attempts(self.rstate.attempts)

    def _probe(self, loop, decision) -> list:
        """A short range test from the snapshot; leaves the loop at the snapshot.

        A switch probe first installs the new optimizer, fresh (one retrace); the snapshot
        then holds its fresh state, so each candidate starts from the same point."""
        results = []
        if decision.optimizer is not None and decision.optimizer != loop.optimizer_name:
            loop.rewind(with_optimizer=False)
            previous = loop.model.optimizer
            loop.switch_optimizer(lambda: make_optimizer(
                decision.optimizer, decision.learning_rates[0], previous))
            self._probed = decision.optimizer
        for lr in decision.learning_rates:
            loop.rewind()
            loop.set_learning_rate(lr)
            stats = loop.run_steps(decision.steps)
            results.append(rescue_mod.ProbeResult.from_chunk(lr, stats))
        loop.rewind()
        if not self._probed:  # after a switch probe, the ADJUST that follows sets the rate
            loop.set_learning_rate(decision.learning_rate_from)
        self.events.add("probe", step=decision.step, optimizer=loop.optimizer_name, results=[
            {"learning_rate": r.learning_rate, "loss_start": r.loss_start,
             "loss_end": r.loss_end, "finite": r.all_finite} for r in results])
        return results

    def _diagnosed(self, error, loop):
        """A non-finite loss at an attempt's first step (GT307) comes from the data or from
        the forward pass: one batch through the model, layer by layer, says which."""
        if getattr(error, "code", None) != CODE_INPUT:
            return error
        bad_step = error.details.get("evidence", {}).get("nonfinite_inputs_step")
        if bad_step is not None:
            epoch = loop.history.epoch_of(self.attempt, bad_step)
            during = f" (epoch {epoch + 1})" if epoch is not None else ""
            return UnhealthyTrainingError(
                f"{error.message}; the batch of step {bad_step}{during} held NaN/inf in its "
                f"inputs, labels or sample weights: the data is not finite where gt.check's "
                f"sample did not look",
                code=error.code, details=error.details,
                fix="find the rows with np.isfinite (x and y, every row), then drop or "
                    "impute them; a learning rate cannot fix data")
        try:
            local = loop.strategy.experimental_local_results(next(loop.data.iterator))[0]
            x, _, _ = keras.utils.unpack_x_y_sample_weight(local)
            found = probe_forward(loop.model, x)
        except Exception as err:  # the diagnosis must never hide the error it explains
            logger.debug("forward probe failed: %s", err)
            found = None
        if found is None:
            return error
        details = {**error.details, "forward_probe": found}
        if found["where"] == "layer":
            act = found["activation"]
            what = f"layer {found['layer']!r} ({found['layer_class']}" + (
                f", activation {act})" if act else ")")
            size = ("non-finite values" if found["nonfinite_values"]
                    else f"values up to {found['max_abs']:.3g}")
            return UnhealthyTrainingError(
                f"{error.message}; the forward pass overflows on finite inputs: {what} "
                f"gives {size} on a batch whose inputs are all finite",
                code=CODE_FORWARD, details=details,
                fix=(f"{what.split(' (')[0]}: use a bounded or ReLU-family activation "
                     f"(relu, tanh) instead of {act}" if act in _UNBOUNDED
                     else "scale the inputs ((x - mean) / std, or a keras.layers."
                          "Normalization adapted on them) and check the initialisers")
                     + "; a lower learning rate cannot help: no update ran yet")
        where = ("the next batch's inputs hold "
                 f"{found['nonfinite_values']} NaN/inf values: the data is not finite"
                 if found["where"] == "inputs" else
                 "the next batch ran finite through every layer: look for NaN/inf rows "
                 "the check's sample did not read, and labels the loss cannot take")
        return UnhealthyTrainingError(f"{error.message}; {where}", code=error.code,
                                      fix=error.fix, details=details)

    def _say(self, decision) -> None:
        block = rescue_mod.format_decision(decision)
        self.events.add("decision", **decision.record())
        logger.info("%s", block)
        if self.verbose:
            print(block, flush=True)

    def _record_attempts(self, attempts) -> None:
        """The attempt list as dicts (``Result.attempts``), and in ``attempts.json``."""
        self.attempts = [dataclasses.asdict(a) for a in attempts]
        if self.events.enabled:
            write_attempts(self.events.path.parent, self.attempts)

    # -- crash recovery ----------------------------------------------------------------------
    def state(self) -> dict:
        return {"gstate": self.gstate, "rstate": self.rstate, "verdict": self.verdict,
                "adjusted": self._adjusted, "last_label": self.last_label}

    def restore(self, state: dict) -> None:
        """Takes over a checkpoint's state: the attempt number comes back with it."""
        self.gstate, self.rstate, self.verdict = state["gstate"], state["rstate"], state["verdict"]
        self._adjusted = state.get("adjusted", False)
        self.last_label = state.get("last_label")
        if self.rstate is not None:
            self.attempts = [dataclasses.asdict(a) for a in self.rstate.attempts]


def _falling(window, fraction: float) -> bool:
    """The attempt's loss: last quarter's median below the first quarter's by ``fraction``."""
    if not window or len(window.get("loss", ())) < 8:
        return False
    loss = np.asarray(window["loss"], dtype=float)
    q = len(loss) // 4
    first, last = np.median(loss[:q]), np.median(loss[-q:])
    return bool(np.isfinite(last) and last < first - fraction * abs(first))


def _has_schedule(optimizer) -> bool:
    # Assigning a rate to an optimizer built with a schedule raises (Keras 3); the loop
    # wraps it in a ScaledSchedule, which is set through its multiplier. Any other
    # schedule (put in by a callback during the run) is rebuilt at a constant rate.
    rate = getattr(inner_optimizer(optimizer), "_learning_rate", None)
    return (isinstance(rate, keras.optimizers.schedules.LearningRateSchedule)
            and not isinstance(rate, ScaledSchedule))


def _chunk_rate(stats, loop) -> float:
    """The rate of the chunk's last step, as the chunk read it from the optimizer."""
    rates = np.asarray(stats.get("learning_rate", ()), dtype=np.float64).reshape(-1)
    if rates.size and np.isfinite(rates[-1]):
        return round_rate(float(rates[-1]))
    return loop.learning_rate
