"""What the per-step statistics cost: guardtrain's loop beside model.fit, in one run.

For an MLP (10→128→10) and a small CNN (28×28×1), at global batch 64 and 256, on 1 and 2
replicas (2 logical CPUs), times:

  fit1     model.fit, steps_per_execution=1 (Keras's default)
  fitK     model.fit, steps_per_execution=K (K = guardtrain's steps_per_loop; fails on 2
           replicas in Keras 3.15, keras-team/keras#19246, shown as "n/a")
  bare     guardtrain's chunked step, statistics off (the same loop, nothing measured)
  bare'    a second, identical bare loop: bare/bare' is the noise floor of every ratio
  st1      guardtrain's chunked step with the norms measured on every step
  st10     the same with the norms on one step in 10 (the first tenth of each chunk), the
           loss on all (the default, GuardConfig.stats_every)
  gt.fit   the whole loop (TrainLoop, default stats_every, no guard): host summary,
           history, callbacks
  +guard   the same with the guard judging every chunk and a snapshot after each healthy
           one (what gt.fit does by default); each round is one more epoch of one run

Every one of them is built and warmed up once, then all are timed in turn, in a shuffled
order, --rounds times (--mlp-rounds for the MLP); a ratio is the median of the rounds' ratios, so it compares
timings seconds apart (the machine is shared and noisy: read the ratios, not the absolute
steps/s). A fit-level timing runs from the first batch of an epoch to its end (Keras's
per-epoch iterator set-up is left out; guardtrain's end-of-epoch history write too).
The same ratios in CPU time (process time, all threads) are printed below the table.

    .venv/bin/python scripts/bench_overhead.py [--rounds 15] [--mlp-rounds 40] [--only mlp]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KEYS = ("fit1", "fitK", "bare", "bare'", "st1", "st10", "gt.fit", "+guard")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000,
                        help="steps per timing for the MLP (the CNN times a tenth, "
                             "model.fit's default a quarter)")
    parser.add_argument("--rounds", type=int, default=15,
                        help="interleaved timings of each, for the CNN")
    parser.add_argument("--mlp-rounds", type=int, default=40,
                        help="the same for the MLP: its timings are short, and a few "
                             "percent is what is measured there")
    parser.add_argument("--steps-per-loop", type=int, default=50)
    parser.add_argument("--only", default="", help="e.g. mlp or cnn")
    parser.add_argument("--seed", type=int, default=0, help="of the timing order")
    args = parser.parse_args()

    import guardtrain as gt

    gt.split_cpu(2)
    import keras
    import numpy as np
    import tensorflow as tf

    from guardtrain.core.launch_config import LaunchConfig
    from guardtrain.engine.devices import pick_strategy
    from guardtrain.core.guard import GuardConfig
    from guardtrain.records.events import EventLog
    from guardtrain.records.history import HistoryWriter
    from guardtrain.engine.inputs import make_train_data
    from guardtrain.engine.loop import Position, TrainLoop
    from guardtrain.engine.step import StepRunner
    from guardtrain.engine.supervisor import GuardSupervisor

    K = args.steps_per_loop
    EVERY = GuardConfig().measure_every
    order = random.Random(args.seed)
    strategies = {1: tf.distribute.get_strategy(),
                  2: pick_strategy(LaunchConfig(cpu_replicas=2))}

    def mlp():
        m = keras.Sequential([keras.Input((10,)), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(10)])
        return m, (10,)

    def cnn():
        m = keras.Sequential([
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
            keras.layers.Flatten(), keras.layers.Dense(10)])
        return m, (28, 28, 1)

    def compiled(builder, strategy, spe=1):
        with strategy.scope():
            m, shape = builder()
            m.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      steps_per_execution=spe)
            m.optimizer.build(m.trainable_variables)
        return m, shape

    class Clock(keras.callbacks.Callback):
        """From the first batch of an epoch to its end (batch-begin hooks are called
        synchronously by Keras and do not turn off its asynchronous batch-end dispatch)."""

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = self.elapsed = None

        def on_train_batch_begin(self, batch, logs=None):
            if self.t0 is None:
                self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.elapsed = time.perf_counter() - self.t0
            self.cpu = time.process_time() - self.c0

    def data(shape, n):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(n,) + shape).astype("float32")
        y = rng.integers(0, 10, size=n).astype("int64")
        return x, y

    def fit_timer(builder, strategy, batch, steps, spe):
        m, shape = compiled(builder, strategy, spe)
        x, y = data(shape, batch * steps)
        clock = Clock()
        m.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)      # trace
        def timed():
            m.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=[clock],
                  shuffle=False)
            return steps, clock.elapsed, clock.cpu
        return timed

    def runner_timer(builder, strategy, batch, steps, collect, every):
        m, shape = compiled(builder, strategy)
        x, y = data(shape, batch * 8)
        it = make_train_data(x, y, batch_size=batch, steps_per_epoch=None, shuffle=False,
                             strategy=strategy).iterator
        runner = StepRunner(m, strategy, collect_stats=collect, stats_every=every)
        runner.run(it, K)                                                       # trace
        chunks = max(1, steps // K)
        def timed():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(chunks):
                runner.run(it, K)
            return chunks * K, time.perf_counter() - t0, time.process_time() - c0
        return timed

    def loop_timer(builder, strategy, batch, steps, tmp, guarded):
        m, shape = compiled(builder, strategy)
        x, y = data(shape, batch * steps)
        clock = Clock()
        full = make_train_data(x, y, batch_size=batch, steps_per_epoch=None, shuffle=False,
                               strategy=strategy)
        events = EventLog(tmp, enabled=False)
        supervisor = GuardSupervisor(events=events, verbose=0) if guarded else None
        loop = TrainLoop(model=m, strategy=strategy, data=full, epochs=1, steps_per_loop=K,
                         verbose=0, callbacks=[clock], history=HistoryWriter(tmp, "bench"),
                         events=events, supervisor=supervisor, stats_every=EVERY)
        loop.run()                                                              # trace
        def timed():
            # One more epoch of the same run: the guard keeps its window (a fresh guard
            # would spend a CNN round of 100 steps in its warm-up, judging nothing).
            loop.pos = Position()
            loop.run()
            if guarded:
                timed.attempts = len(supervisor.rstate.attempts)
            if clock.elapsed is None:
                raise RuntimeError("the timed epoch did not end where it began (a rollback)")
            return steps, clock.elapsed, clock.cpu
        timed.attempts = 1
        return timed

    def time_config(builder, strategy, replicas, batch, steps, tmp, rounds):
        timers = {
            "fit1": fit_timer(builder, strategy, batch, max(K, steps // 4), 1),
            "bare": runner_timer(builder, strategy, batch, steps, False, 1),
            "bare'": runner_timer(builder, strategy, batch, steps, False, 1),
            "st1": runner_timer(builder, strategy, batch, steps, True, 1),
            "st10": runner_timer(builder, strategy, batch, steps, True, EVERY),
            "gt.fit": loop_timer(builder, strategy, batch, steps, tmp, False),
            "+guard": loop_timer(builder, strategy, batch, steps, tmp, True),
        }
        if replicas == 1:
            timers["fitK"] = fit_timer(builder, strategy, batch, steps, K)
        speed = {k: [] for k in timers}
        cpu = {k: [] for k in timers}
        for _ in range(rounds):
            keys = list(timers)
            order.shuffle(keys)
            for key in keys:
                n, wall, cpu_s = timers[key]()
                speed[key].append(n / wall)
                cpu[key].append(n / cpu_s)
        attempts = timers["+guard"].attempts   # > 1: the guard acted (the row says so)
        return speed, cpu, attempts

    def ratio(runs, a, b):
        """Median over rounds of speed[a] / speed[b]: > 1 means b is slower."""
        if not runs.get(a) or not runs.get(b):
            return float("nan")
        return statistics.median(x / y for x, y in zip(runs[a], runs[b]))

    tmp = tempfile.mkdtemp()
    rows = []
    for name, builder in (("mlp", mlp), ("cnn", cnn)):
        if args.only and args.only != name:
            continue
        # A CNN step costs ~10x an MLP step: time ~10x fewer of them.
        steps = args.steps if name == "mlp" else max(K, args.steps // 10)
        steps = max(K, steps // K * K)
        for replicas in (1, 2):
            for batch in (64, 256):
                rounds = args.mlp_rounds if name == "mlp" else args.rounds
                speed, cpu, attempts = time_config(builder, strategies[replicas], replicas,
                                                   batch, steps, tmp, rounds)
                rows.append((name, replicas, batch, speed, cpu, attempts))
                keras.backend.clear_session()

    fmt = lambda v: f"{v:6.0f}" if v == v else f"{'n/a':>6}"  # noqa: E731
    rfmt = lambda v: f"{v:.3f}" if v == v else "n/a"  # noqa: E731
    pairs = (("bare", "bare'"), ("bare", "st1"), ("bare", "st10"), ("gt.fit", "+guard"),
             ("fitK", "gt.fit"), ("fitK", "+guard"), ("fit1", "+guard"))
    head = (f"{'model':>5} {'rep':>3} {'batch':>5} | "
            + " ".join(f"{k:>6}" for k in KEYS) + " | "
            + " ".join(f"{a + '/' + b:>{max(8, len(a + b) + 1)}}" for a, b in pairs))
    print(f"steps/s (median of {args.mlp_rounds} (MLP) or {args.rounds} (CNN) interleaved "
          f"rounds); ratios (median of the "
          f"rounds' ratios) > 1 mean the right-hand side is slower; steps_per_loop={K}, "
          f"norms on 1 step in {EVERY}")
    print(head)
    print("-" * len(head))
    for name, replicas, batch, speed, cpu, attempts in rows:
        med = {k: statistics.median(speed[k]) if speed.get(k) else float("nan") for k in KEYS}
        print(f"{name:>5} {replicas:>3} {batch:>5} | " + " ".join(fmt(med[k]) for k in KEYS)
              + " | " + " ".join(f"{rfmt(ratio(speed, a, b)):>{max(8, len(a + b) + 1)}}"
                                 for a, b in pairs)
              + ("" if attempts == 1 else f"   (guard: {attempts} attempts)"))
    print("\nThe same ratios in CPU time (process time: what the work costs, which other "
          "processes' load inflates less than wall time):")
    for name, replicas, batch, speed, cpu, attempts in rows:
        print(f"{name:>5} {replicas:>3} {batch:>5} | " + " " * (7 * len(KEYS) - 1) + " | "
              + " ".join(f"{rfmt(ratio(cpu, a, b)):>{max(8, len(a + b) + 1)}}"
                         for a, b in pairs))


if __name__ == "__main__":
    main()
