"""Rescue benchmark: seeded faults that stop a Keras model from learning, and what fixes them.

Every case is generated here (no downloads). A task is a small classification problem with
its healthy configuration (the control: Adam at 1e-3); a fault is one way a user breaks that
configuration. Each faulty case runs three ways, in this process, one after the other:

  gt       gt.fit with the guard and rescue on, as shipped (the defaults)
  plain    model.fit
  rlrop    model.fit with ReduceLROnPlateau + TerminateOnNaN (what Keras offers today)

Accuracy is measured on a held-out split. A case is *rescued* when gt.fit reaches >= 90 %
of its control's accuracy within the same epoch budget (gt.fit's epochs, whatever its
attempts did inside them). ``time×`` is the faulty gt.fit's wall time over the mean of the
control's gt.fit runs just before and just after it (same task and seed: the machine is
shared, and runs last seconds); ``cpu×`` is the same ratio in this process's CPU time.
Every gt.fit of a control counts towards "interventions on healthy controls" (target 0).

Faults (one builder each, ``FAULTS``; the tasks each runs on, ``FAULT_TASKS``):

  lr_low_sgd    SGD at 1e-5                         lr_low_adam   Adam at 1e-6
  lr_high_sgd   SGD at 100: non-finite in steps     lr_high_adam  Adam at 1.0
  adadelta      Adadelta at Keras's default 1e-3: an optimizer unsuited to a short budget
  vanishing     5 sigmoid layers under SGD 1e-2     dying_relu    SGD at 5: the ReLUs die
  oscillation   batch 1, SGD 1e-2 with momentum 0.99 (as many steps per epoch as the control)
  unscaled      inputs x 255 (raw 8-bit scale) under SGD 1e-2

    .venv/bin/python scripts/rescue_bench.py                 # the full suite (~20 min)
    .venv/bin/python scripts/rescue_bench.py --quick         # one seed, one task
    .venv/bin/python scripts/rescue_bench.py --replicas 2    # MirroredStrategy, 2 logical CPUs
    .venv/bin/python scripts/rescue_bench.py --faults lr_low_sgd,vanishing --tasks circles

Tuning notes (how the shipped defaults of GuardConfig and RescueConfig were chosen here):

  GuardConfig.warmup_steps 50, window_steps 100 (were 100 and 200): with the batch-noise
      test on a falling loss, no healthy control was judged unhealthy at 50 + 100, and every
      rescue pays warm-up + window once per attempt.
  GuardConfig.diverged_rise_fraction 2.0: at 1.0, heavy-tailed batch noise on a noisy
      starting loss gave false alarms.
  GuardConfig.stall_update_ratio 1e-5: Adam at lr 1e-6 measures ~5e-6 on a small MLP.
  GuardConfig.vanishing_layer_ratio 1e-2, vanishing_grad_norm 1e-2 (the usual rule is 1e-3
      and 1e-4): a 5-layer sigmoid MLP under SGD sits at chance with a first-layer gradient
      of 3e-5..3e-4 (circles) or 1e-3..1.5e-3 (blobs), 3e-4..4e-3 of the last layer's, and
      Adam trains it; the flat loss and the still layer keep a healthy run out.
  GuardConfig.stats_every None (10): measuring every step costs 10-30 % on a 0.1-0.3 ms step
      (an MLP), CNN-sized steps 2-4 %; a window of 100 steps still holds 10 measured steps
      (scripts/bench_overhead.py).
  RescueConfig.switch_probe_multipliers (1, 10): on inputs left at 255x their scale Adam
      needed 1e-2 where 1e-3 stayed below target; a 5-layer sigmoid MLP learnt faster at
      1e-2.
  The rate a switch probe keeps (the largest of those about as good): a 5-layer sigmoid
      MLP probed Adam 1e-3 -34 % and 1e-2 -33 %, and only 1e-2 reached the target in the
      budget; on a plateau (+0.3 %, +1.5 %) likewise; batch-1 noise (+25 %, +40 %) is no
      plateau, and the usual rate did better there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402  (TF logging must be set before TensorFlow loads)

RESCUED_FRACTION = 0.9      # of the control's accuracy
STEPS_PER_EXECUTION = 50    # model.fit comparison runs on 1 replica
VAL_FRACTION = 0.25


# -- tasks ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Task:
    """A generated classification problem and its healthy configuration."""

    name: str
    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: int
    body: Callable[..., list]     # body(keras, activation, depth) -> hidden layers
    epochs: int
    batch_size: int = 32

    @property
    def input_shape(self):
        return self.x.shape[1:]

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.x) // self.batch_size)


def _split(x, y, rng):
    order = rng.permutation(len(x))
    x, y = x[order].astype("float32"), y[order].astype("int64")
    cut = int(len(x) * (1 - VAL_FRACTION))
    return x[:cut], y[:cut], x[cut:], y[cut:]


def _mlp_body(width):
    def body(keras, activation="relu", depth=2):
        # He initialisation for ReLU; Keras's default (Glorot) for sigmoid, as a user has.
        init = "he_uniform" if activation == "relu" else "glorot_uniform"
        return [keras.layers.Dense(width, activation=activation, kernel_initializer=init)
                for _ in range(depth)]
    return body


def _cnn_body(keras, activation="relu", depth=2):
    return [keras.layers.Conv2D(8, 3, activation=activation),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, activation=activation),
            keras.layers.GlobalMaxPooling2D(),
            keras.layers.Dense(16, activation=activation)]


def circles(seed: int, n: int = 4000) -> Task:
    """Two noisy concentric rings in 2-D: a boundary only a non-linear model draws."""
    rng = np.random.default_rng(1000 + seed)
    y = rng.integers(0, 2, n)
    radius = np.where(y == 1, 1.0, 2.0) + rng.normal(0, 0.25, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1)
    return Task("circles", *_split(x, y, rng), classes=2, body=_mlp_body(32), epochs=24)


def blobs(seed: int, n: int = 4000, dims: int = 10, classes: int = 5) -> Task:
    """Overlapping Gaussian blobs in 10-D, 5 classes."""
    rng = np.random.default_rng(2000 + seed)
    centres = rng.normal(0, 1.0, (classes, dims))
    y = rng.integers(0, classes, n)
    x = centres[y] + rng.normal(0, 1.0, (n, dims))
    return Task("blobs", *_split(x, y, rng), classes=classes, body=_mlp_body(32), epochs=24)


def image(seed: int, n: int = 4000, size: int = 12) -> Task:
    """12x12 grey images of four shapes (bar, column, diagonal, box) at random places."""
    rng = np.random.default_rng(3000 + seed)
    y = rng.integers(0, 4, n)
    x = rng.normal(0, 0.3, (n, size, size, 1))
    for i, label in enumerate(y):
        r, c = rng.integers(1, size - 6, 2)
        k = rng.integers(4, 6)
        if label == 0:
            x[i, r + 2, c:c + k] += 1.0
        elif label == 1:
            x[i, r:r + k, c + 2] += 1.0
        elif label == 2:
            x[i, r + np.arange(k), c + np.arange(k)] += 1.0
        else:
            x[i, r, c:c + k] += 1.0
            x[i, r + k - 1, c:c + k] += 1.0
            x[i, r:r + k, c] += 1.0
            x[i, r:r + k, c + k - 1] += 1.0
    x = x.reshape(n, size, size, 1)
    return Task("image", *_split(x, y, rng), classes=4, body=_cnn_body, epochs=16)


TASKS = {"circles": circles, "blobs": blobs, "image": image}


# -- configurations: the control and the faults ------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Setup:
    """One configuration of a task: how to build the compiled model, and the data it sees."""

    build: Callable[[], object]
    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    batch_size: int
    steps_per_epoch: int | None = None


def _model(task: Task, optimizer, *, activation="relu", depth=2):
    import keras

    def build():
        layers = [keras.Input(task.input_shape)]
        layers += task.body(keras, activation=activation, depth=depth)
        layers.append(keras.layers.Dense(task.classes))
        model = keras.Sequential(layers)
        model.compile(optimizer=optimizer(),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model
    return build


def _setup(task: Task, optimizer, **model_kw) -> Setup:
    return Setup(_model(task, optimizer, **model_kw), task.x, task.y, task.x_val,
                 task.batch_size)


def _opt(name, learning_rate, **kw):
    """A zero-argument maker of the Keras optimizer ``name`` (built fresh in each scope)."""
    import keras
    return lambda: type(keras.optimizers.get(name))(learning_rate=float(learning_rate), **kw)


def control(task: Task) -> Setup:
    """The healthy configuration: Adam at its usual rate."""
    return _setup(task, _opt("adam", learning_rate=1e-3))


def lr_low_sgd(task: Task) -> Setup:
    return _setup(task, _opt("sgd", learning_rate=1e-5))


def lr_low_adam(task: Task) -> Setup:
    return _setup(task, _opt("adam", learning_rate=1e-6))


def lr_high_sgd(task: Task) -> Setup:
    return _setup(task, _opt("sgd", learning_rate=100.0))


def lr_high_adam(task: Task) -> Setup:
    return _setup(task, _opt("adam", learning_rate=1.0))


def adadelta(task: Task) -> Setup:
    """Adadelta at Keras's default rate (1e-3): it barely moves in a short budget."""
    return _setup(task, _opt("adadelta", learning_rate=1e-3))


# 5: the depth where the gradient has vanished (first layer 3e-5..3e-4, 3e-4..2e-3 of the
# last layer's; the loss sits at chance under SGD 1e-2, which 0.1 and 1 do not change) and
# another optimizer still trains it (Adam 1e-3: 0.98 on circles, 0.88 on blobs in the budget).
# At 8 layers nothing trains it: the forward signal shrinks ~16x per sigmoid layer (Glorot)
# to below float32's resolution; Adam at 1e-3, 3e-3 and 1e-2 and RMSprop at 3e-3 all stayed
# at chance for 24 epochs. That is a model to change, not a hyperparameter to rescue.
VANISHING_DEPTH = 5


def vanishing(task: Task) -> Setup:
    """A deep sigmoid MLP: the first layers' gradients vanish under SGD."""
    return _setup(task, _opt("sgd", learning_rate=1e-2), activation="sigmoid",
                  depth=VANISHING_DEPTH)


def dying_relu(task: Task) -> Setup:
    """SGD at 5: within a few steps every ReLU is inactive on every input and the loss
    stays finite at chance (at 100 it goes non-finite instead: lr_high_sgd)."""
    return _setup(task, _opt("sgd", learning_rate=5.0))


def oscillation(task: Task) -> Setup:
    """Batch 1 with momentum 0.99 (an effective step of 100 x the rate); as many optimizer
    steps per epoch as the control. Measured: the loss swings, then the momentum carries
    the ReLUs past the point of return (DEAD_UNITS), rarely a clean OSCILLATING."""
    s = _setup(task, _opt("sgd", learning_rate=0.01, momentum=0.99))
    return dataclasses.replace(s, batch_size=1, steps_per_epoch=task.steps_per_epoch)


def unscaled(task: Task) -> Setup:
    """Inputs left at 255 x their scale (raw 8-bit units, the forgotten ``/ 255``)."""
    s = _setup(task, _opt("sgd", learning_rate=1e-2))
    return dataclasses.replace(s, x=task.x * 255.0, x_val=task.x_val * 255.0)


FAULTS = {f.__name__: f for f in (lr_low_sgd, lr_low_adam, lr_high_sgd, lr_high_adam, adadelta,
                                   vanishing, dying_relu, oscillation, unscaled)}

#: The tasks each fault can run on: the deep sigmoid MLP and the batch-1 MLP are MLPs.
APPLIES = {name: tuple(TASKS) for name in FAULTS}
APPLIES["vanishing"] = APPLIES["oscillation"] = ("circles", "blobs")

#: The tasks each fault runs on by default: two each, the MLP-only faults on the two MLP
#: tasks, the others in a fixed rotation over the three task pairs (in list order), so the
#: suite fits ~20 minutes on two shared cores.
#: ``--all-tasks`` runs every fault on every task it applies to.
FAULT_TASKS = {
    "lr_low_sgd": ("circles", "blobs"),
    "lr_low_adam": ("blobs", "image"),
    "lr_high_sgd": ("image", "circles"),
    "lr_high_adam": ("circles", "blobs"),
    "adadelta": ("blobs", "image"),
    "vanishing": ("circles", "blobs"),
    "dying_relu": ("image", "circles"),
    "oscillation": ("circles", "blobs"),
    "unscaled": ("circles", "blobs"),
}


# -- running one configuration ------------------------------------------------------------------

@dataclasses.dataclass
class Outcome:
    acc: float
    wall_s: float
    cpu_s: float = 0.0          # this process's CPU time (less sensitive to other load)
    verdict: str = ""           # gt: healthy / rescued / failed
    story: str = ""             # gt: the verdicts and what was done
    interventions: int = 0      # gt: unhealthy verdicts acted on
    unguarded_s: float = 0.0    # control: the same gt.fit with guard=False


class Runner:
    """Runs one configuration under gt.fit or model.fit, from a fresh Keras session, seeded.

    Args:
        replicas: 1 (the default strategy) or N (MirroredStrategy over N logical CPUs).
        tmp: where the run directories go.
        guard: a ``GuardConfig`` for every gt.fit, or None for the shipped defaults.
    """

    def __init__(self, *, replicas: int, tmp: Path, guard=None):
        import keras

        import guardtrain as gt
        from guardtrain.engine.devices import pick_strategy

        self.keras, self.gt = keras, gt
        self.replicas = replicas
        self.launch = gt.LaunchConfig(cpu_replicas=replicas if replicas > 1 else None)
        self.strategy = pick_strategy(self.launch)
        self.tmp = tmp
        self.guard = guard      # None: GuardConfig's defaults
        self.count = 0

    def _fresh(self, seed: int):
        self.keras.backend.clear_session()
        self.keras.utils.set_random_seed(seed)

    def _accuracy(self, model, setup: Setup, task: Task) -> float:
        if model is None:
            return float("nan")
        logits = model.predict(setup.x_val, batch_size=256, verbose=0)
        # A run that ended with non-finite weights predicts NaN: count it as class 0.
        return float(np.mean(np.nan_to_num(logits, nan=0.0).argmax(1) == task.y_val))

    def gt_fit(self, setup: Setup, task: Task, seed: int, guard=None) -> Outcome:
        gt = self.gt
        guard = self.guard if guard is None else guard
        self._fresh(seed)
        self.count += 1
        run_dir = self.tmp / f"run-{self.count:04d}"
        built = []

        def build():
            # gt.fit calls this inside its strategy's scope; keeping the model lets a run
            # that ends in an error still be evaluated (it holds the last healthy weights).
            built.append(setup.build())
            return built[-1]

        t0, c0 = time.perf_counter(), time.process_time()
        try:
            result = gt.fit(build, setup.x, setup.y, batch_size=setup.batch_size,
                            epochs=task.epochs, steps_per_epoch=setup.steps_per_epoch,
                            guard=guard, launch=self.launch, run_dir=run_dir,
                            verbose=0)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            model, verdict, attempts = result.model, result.verdict, result.attempts
        except gt.GuardtrainError as err:
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            model = built[-1] if built else None
            verdict = "failed"
            attempts = (err.details or {}).get("attempts", [])
            story_end = f" {err.code}"
        else:
            story_end = ""
        events = _events(run_dir)
        story = _story(attempts) + story_end
        interventions = sum(1 for e in events if e.get("event") == "verdict")
        return Outcome(acc=self._accuracy(model, setup, task), wall_s=wall, cpu_s=cpu,
                       verdict=verdict, story=story, interventions=interventions)

    def keras_fit(self, setup: Setup, task: Task, seed: int, *, callbacks=()) -> Outcome:
        self._fresh(seed)
        with self.strategy.scope():
            model = setup.build()
        if self.replicas == 1:
            # The same numbers, fewer Python round trips: 50 steps per call, like gt.fit's
            # chunks (batch callbacks then see every 50th step). Not on 2 replicas, where
            # Keras 3.15 fails with it (keras-team/keras#19246).
            model.steps_per_execution = STEPS_PER_EXECUTION
        t0 = time.perf_counter()
        model.fit(setup.x, setup.y, batch_size=setup.batch_size, epochs=task.epochs,
                  steps_per_epoch=setup.steps_per_epoch, callbacks=list(callbacks), verbose=0)
        wall = time.perf_counter() - t0
        return Outcome(acc=self._accuracy(model, setup, task), wall_s=wall)

    def rlrop_fit(self, setup: Setup, task: Task, seed: int) -> Outcome:
        cb = self.keras.callbacks
        return self.keras_fit(setup, task, seed, callbacks=[
            cb.ReduceLROnPlateau(monitor="loss", factor=0.2, patience=2, min_lr=1e-7),
            cb.TerminateOnNaN()])


def _events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _short_change(attempt: dict) -> str:
    """'adam' when the attempt switched optimizer, else its new rate ('lr 1e-02')."""
    if attempt.get("optimizer_from") not in (None, attempt["optimizer"]):
        return attempt["optimizer"]
    return f"lr {attempt['learning_rate']:.0e}"


def _story(attempts: list) -> str:
    """'STALLED→lr 1e-01, DEAD_UNITS→adam' from the attempt records."""
    parts = []
    for prev, nxt in zip(attempts, attempts[1:]):
        parts.append(f"{prev.get('end_verdict')}→{_short_change(nxt)}")
    if attempts and attempts[-1].get("outcome") in ("aborted", "exhausted"):
        parts.append(f"{attempts[-1].get('end_verdict')}→stop")
    return ", ".join(parts) if parts else "—"


# -- the suite ----------------------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    """One faulty configuration on one task and seed, run three ways, with its control."""

    fault: str
    task: str
    seed: int
    gt: Outcome
    control: Outcome            # the task's healthy control (its accuracy is the reference)
    paired: Outcome             # the control's gt.fit timed around this run: time× denominator
    plain: Outcome | None = None
    rlrop: Outcome | None = None

    @property
    def target(self) -> float:
        return RESCUED_FRACTION * self.control.acc

    @property
    def rescued(self) -> bool:
        return self.gt.verdict != "failed" and self.gt.acc >= self.target

    @property
    def time_x(self) -> float:
        return self.gt.wall_s / self.paired.wall_s

    @property
    def cpu_x(self) -> float:
        return self.gt.cpu_s / max(self.paired.cpu_s, 1e-9)

    @property
    def missed(self) -> bool:
        return not self.rescued or self.time_x > MAX_TIME_X


MAX_TIME_X = 1.5


def run_suite(runner: Runner, tasks, faults, seeds, compare: bool, plan=FAULT_TASKS):
    """Every (task, seed): its control, then each fault ``plan`` puts on the task."""
    cases, controls = [], []
    for task_name in tasks:
        for seed in seeds:
            task = TASKS[task_name](seed)
            ctrl = runner.gt_fit(control(task), task, seed)
            ctrl_plain = runner.keras_fit(control(task), task, seed)
            # The guard's own cost on a healthy run: the same gt.fit with the guard off.
            ctrl.unguarded_s = runner.gt_fit(control(task), task, seed, guard=False).wall_s
            controls.append((task_name, seed, ctrl, ctrl_plain))
            _log(f"{'control':<12} {task_name:<8} {seed:>4}  acc gt.fit {ctrl.acc:.3f} "
                 f"model.fit {ctrl_plain.acc:.3f}, {ctrl.wall_s:.1f}s, "
                 f"{ctrl.interventions} interventions")
            for fault in faults:
                if task_name not in plan[fault]:
                    continue
                # The machine is shared and runs last seconds: the control is timed again
                # right before and right after each faulty run, and their mean is the
                # denominator of time×. Every control run also counts towards the
                # interventions on healthy runs.
                before = runner.gt_fit(control(task), task, seed)
                setup = FAULTS[fault](task)
                out = runner.gt_fit(setup, task, seed)
                after = runner.gt_fit(control(task), task, seed)
                controls += [(task_name, seed, before, None), (task_name, seed, after, None)]
                paired = Outcome(acc=before.acc, wall_s=(before.wall_s + after.wall_s) / 2,
                                 cpu_s=(before.cpu_s + after.cpu_s) / 2)
                case = Case(fault, task_name, seed, out, ctrl, paired)
                if compare:
                    case.plain = runner.keras_fit(setup, task, seed)
                    case.rlrop = runner.rlrop_fit(setup, task, seed)
                cases.append(case)
                _log(_format_case(case))
    return cases, controls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one seed, one task (circles)")
    parser.add_argument("--replicas", type=int, default=1,
                        help="2: MirroredStrategy over 2 logical CPUs")
    parser.add_argument("--tasks", default="", help="comma list; default all")
    parser.add_argument("--faults", default="", help="comma list; default all")
    parser.add_argument("--all-tasks", action="store_true",
                        help="every fault on every task it applies to (75 cases, ~30 min)")
    parser.add_argument("--no-compare", action="store_true",
                        help="skip the model.fit comparison columns")
    parser.add_argument("--warmup-steps", type=int, default=None,
                        help="GuardConfig(warmup_steps=...) for every gt.fit (tuning)")
    parser.add_argument("--window-steps", type=int, default=None,
                        help="GuardConfig(window_steps=...) for every gt.fit (tuning)")
    args = parser.parse_args()

    seeds = [0] if args.quick else list(range(args.seeds))
    tasks = args.tasks.split(",") if args.tasks else (["circles"] if args.quick else list(TASKS))
    faults = args.faults.split(",") if args.faults else list(FAULTS)

    if args.replicas > 1:
        import guardtrain as gt
        gt.split_cpu(args.replicas)   # before TensorFlow starts
    import logging
    logging.getLogger("guardtrain").setLevel(logging.ERROR)

    guard = None   # the shipped defaults
    if args.warmup_steps is not None or args.window_steps is not None:
        import guardtrain as gt
        given = {k: v for k, v in (("warmup_steps", args.warmup_steps),
                                   ("window_steps", args.window_steps)) if v is not None}
        guard = gt.GuardConfig(**given)
    runner = Runner(replicas=args.replicas, tmp=Path(tempfile.mkdtemp(prefix="rescue-bench-")),
                    guard=guard)
    t_start = time.perf_counter()
    # One untimed run of each kind first: the process's first fit pays one-time start-up
    # costs that would otherwise land on the first control's wall time.
    warm = TASKS[tasks[0]](seeds[0])
    runner.gt_fit(control(warm), warm, seeds[0])
    runner.keras_fit(control(warm), warm, seeds[0])
    plan = APPLIES if args.all_tasks or args.quick else FAULT_TASKS
    cases, controls = run_suite(runner, tasks, faults, seeds, compare=not args.no_compare,
                                plan=plan)
    print_report(cases, controls, time.perf_counter() - t_start, args.replicas)


# -- the report ---------------------------------------------------------------------------------

HEAD = (f"{'case':<12} {'task':<7} {'seed':>4}  {'gt verdicts → change':<46} {'gt acc':>6} "
        f"{'target':>6} {'rescued':>7} {'time×':>5} {'cpu×':>5} {'t/fit':>5} {'plain':>6} "
        f"{'rlrop':>6}")


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _acc(outcome: Outcome | None) -> str:
    return f"{outcome.acc:6.3f}" if outcome is not None else f"{'-':>6}"


def _format_case(c: Case) -> str:
    story = c.gt.story if len(c.gt.story) <= 46 else c.gt.story[:45] + "…"
    rescued = "yes" if c.rescued else "NO"
    if c.rescued and c.time_x > MAX_TIME_X:
        rescued = "slow"
    # gt.fit's time over plain model.fit's on the same faulty configuration: what the
    # rescue itself costs, without the faulty model's own cost (a deeper net is slower).
    vs_plain = f"{c.gt.wall_s / c.plain.wall_s:5.2f}" if c.plain is not None else f"{'-':>5}"
    return (f"{c.fault:<12} {c.task:<7} {c.seed:>4}  {story:<46} {c.gt.acc:6.3f} "
            f"{c.target:6.3f} {rescued:>7} {c.time_x:5.2f} {c.cpu_x:5.2f} {vs_plain} "
            f"{_acc(c.plain)} {_acc(c.rlrop)}")


def print_report(cases: list[Case], controls: list, total_s: float, replicas: int) -> None:
    n = len(cases)
    print(f"rescue benchmark: {n} faulty cases, {replicas} replica(s).\n"
          f"rescued = gt.fit reaches >= {RESCUED_FRACTION:.0%} of its healthy control's "
          f"held-out accuracy in the same epochs (target = that accuracy).\n"
          f"time× = faulty gt.fit wall time / mean of the control's gt.fit runs just before "
          f"and after it; cpu× = the same in process CPU time; t/fit = faulty gt.fit wall "
          f"time / plain model.fit's on the same faulty configuration.\n"
          f"plain = model.fit, rlrop = model.fit + ReduceLROnPlateau + TerminateOnNaN "
          f"(held-out accuracy).")
    print()
    print(f"{'control':<12} {'task':<7} {'seed':>4}  {'gt acc':>6} {'fit acc':>7} "
          f"{'gt wall':>7} {'unguarded':>9} {'fit wall':>8}")
    for task, seed, ctrl, plain in controls:
        if plain is not None:
            print(f"{'control':<12} {task:<7} {seed:>4}  {ctrl.acc:6.3f} {plain.acc:7.3f} "
                  f"{ctrl.wall_s:6.1f}s {ctrl.unguarded_s:8.1f}s {plain.wall_s:7.1f}s")
    print()
    print(HEAD)
    print("-" * len(HEAD))
    for c in cases:
        print(_format_case(c))
    print("-" * len(HEAD))
    rescued = [c for c in cases if c.rescued]
    in_time = [c for c in rescued if c.time_x <= MAX_TIME_X]
    alarms = sum(ctrl.interventions for *_, ctrl, _ in controls)
    touched = sum(1 for *_, ctrl, _ in controls if ctrl.interventions)
    print(f"rescued: {len(rescued)}/{n} ({100 * len(rescued) / max(n, 1):.0f}%); and within "
          f"{MAX_TIME_X}× the control's time: {len(in_time)}/{n} "
          f"({100 * len(in_time) / max(n, 1):.0f}%)   target >= 95%")
    print(f"interventions on healthy controls: {alarms} (in {touched} of {len(controls)} "
          f"control runs over {len({(t, s) for t, s, *_ in controls})} task/seed pairs)"
          f"   target 0")
    if cases:
        tx = [c.time_x for c in cases]
        rx = [c.time_x for c in rescued] or [float("nan")]
        print(f"time×: median {statistics.median(tx):.2f}, max {max(tx):.2f} (all cases); "
              f"rescued cases: median {statistics.median(rx):.2f}, max {max(rx):.2f}   "
              f"target <= {MAX_TIME_X}")
        print(f"cpu×:  median {statistics.median(c.cpu_x for c in cases):.2f}, max "
              f"{max(c.cpu_x for c in cases):.2f}")
    firsts = [(ctrl, plain) for *_, ctrl, plain in controls if plain is not None]
    if firsts:
        guard_x = [c.wall_s / c.unguarded_s for c, _ in firsts if c.unguarded_s]
        fit_x = [c.wall_s / p.wall_s for c, p in firsts]
        print(f"healthy controls, wall time: gt.fit guard on / guard off median "
              f"{statistics.median(guard_x):.2f} (max {max(guard_x):.2f}); gt.fit / model.fit "
              f"(steps_per_execution={STEPS_PER_EXECUTION if replicas == 1 else 1}) median "
              f"{statistics.median(fit_x):.2f}")
    if cases and cases[0].plain is not None:
        for name, pick in (("plain model.fit", lambda c: c.plain),
                           ("model.fit + ReduceLROnPlateau + TerminateOnNaN",
                            lambda c: c.rlrop)):
            hit = sum(1 for c in cases if pick(c).acc >= c.target)
            print(f"{name} reached {RESCUED_FRACTION:.0%} of the control: {hit}/{n}")
    for c in cases:
        if c.missed:
            why = (f"accuracy {c.gt.acc:.3f} < {c.target:.3f}" if not c.rescued
                   else f"time× {c.time_x:.2f} > {MAX_TIME_X}")
            print(f"missed: {c.fault}/{c.task}/seed {c.seed} ({c.gt.verdict}): {why}; "
                  f"{c.gt.story}")
    print(f"total wall time {total_s / 60:.1f} min")


if __name__ == "__main__":
    main()
