"""What the per-step statistics cost: guardtrain's loop beside model.fit, in one run.

For an MLP (10→128→10) and a small CNN (28×28×1), at global batch 64 and 256, on 1 and 2
replicas (2 logical CPUs), prints steps/s of:

  fit1     model.fit, steps_per_execution=1 (Keras's default)
  fitK     model.fit, steps_per_execution=K (K = guardtrain's steps_per_loop; fails on 2
           replicas in Keras 3.15, keras-team/keras#19246, shown as "n/a")
  bare     guardtrain's chunked step, statistics off (the same loop, nothing measured)
  st1      guardtrain's chunked step with the norms measured on every step
  st10     the same with the norms on one step in 10 (the first tenth of each chunk), the
           loss on all (the default, GuardConfig.stats_every)
  gt.fit   the whole gt.fit loop (default stats_every): host summary, history, callbacks
  +guard   the same with the guard judging every chunk (and snapshots when healthy)

and the ratios that matter: st1/bare and st10/bare (the statistics' overhead), guard/gt
(the guard's), gt.fit/fitK, gt.fit/fit1.
Each fit figure is the median of --repeats timings of --steps steps after a warm-up. bare,
st1 and st10 are built once and timed in turn --rounds times (--repeats x --steps steps in
all); their ratios are the median of each round's ratio, which compares timings seconds
apart (the machine is shared and noisy: read the ratios, not the absolute times).

    .venv/bin/python scripts/bench_overhead.py [--steps 3000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000,
                        help="steps per timing for the MLP (the CNN times a tenth)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timings of each model.fit / gt.fit figure (median)")
    parser.add_argument("--rounds", type=int, default=15,
                        help="interleaved timings of bare, st1 and st10 (median of ratios)")
    parser.add_argument("--steps-per-loop", type=int, default=50)
    parser.add_argument("--only", default="", help="e.g. mlp or cnn")
    args = parser.parse_args()

    import guardtrain as gt

    gt.split_cpu(2)
    import keras
    import numpy as np
    import tensorflow as tf

    from guardtrain.config import LaunchConfig
    from guardtrain.guard import GuardConfig
    from guardtrain.devices import pick_strategy
    from guardtrain.history import EventLog, HistoryWriter
    from guardtrain.inputs import make_train_data
    from guardtrain.loop import TrainLoop
    from guardtrain.step import StepRunner
    from guardtrain.supervisor import GuardSupervisor

    K = args.steps_per_loop
    EVERY = GuardConfig().measure_every
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
        """Times the second epoch: the first one traces and warms up."""

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.t1 = time.perf_counter()

    def data(shape, n):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(n,) + shape).astype("float32")
        y = rng.integers(0, 10, size=n).astype("int64")
        return x, y

    def time_fit(builder, strategy, batch, steps, spe):
        m, shape = compiled(builder, strategy, spe)
        x, y = data(shape, batch * steps)
        clock = Clock()
        m.fit(x, y, batch_size=batch, epochs=2, verbose=0, callbacks=[clock], shuffle=False)
        return steps / (clock.t1 - clock.t0)

    def time_runners(builder, strategy, batch, steps, rounds):
        """bare, st1 and st10 built once, then timed in turn ``rounds`` times: each
        round's ratios compare timings seconds apart (the machine's load drifts)."""
        runners = {}
        for key, collect, every in (("bare", False, 1), ("st1", True, 1),
                                    ("st10", True, EVERY)):
            m, shape = compiled(builder, strategy)
            x, y = data(shape, batch * 8)
            it = make_train_data(x, y, batch_size=batch, steps_per_epoch=None, shuffle=False,
                                 strategy=strategy).iterator
            runner = StepRunner(m, strategy, collect_stats=collect, stats_every=every)
            runner.run(it, K)                                             # warm-up, trace
            runners[key] = (runner, it)
        chunks = max(1, steps // K // rounds)
        speed = {k: [] for k in runners}
        for _ in range(rounds):
            for key, (runner, it) in runners.items():
                t0 = time.perf_counter()
                for _ in range(chunks):
                    runner.run(it, K)
                speed[key].append(chunks * K / (time.perf_counter() - t0))
        out = {k: statistics.median(v) for k, v in speed.items()}
        for key in ("st1", "st10"):
            out["r_" + key] = statistics.median(b / s for b, s in zip(speed["bare"], speed[key]))
        return out

    def time_gt(builder, strategy, batch, steps, tmp, guarded=False):
        m, shape = compiled(builder, strategy)
        x, y = data(shape, batch * steps)
        clock = Clock()
        full = make_train_data(x, y, batch_size=batch, steps_per_epoch=None, shuffle=False,
                               strategy=strategy)
        events = EventLog(tmp, enabled=False)
        supervisor = GuardSupervisor(events=events, verbose=0) if guarded else None
        TrainLoop(model=m, strategy=strategy, data=full, epochs=2, steps_per_loop=K, verbose=0,
                  callbacks=[clock], history=HistoryWriter(tmp, "bench"), events=events,
                  supervisor=supervisor, stats_every=EVERY).run()
        return steps / (clock.t1 - clock.t0)

    import tempfile

    tmp = tempfile.mkdtemp()
    rows = []
    for name, builder in (("mlp", mlp), ("cnn", cnn)):
        if args.only and args.only != name:
            continue
        # A CNN step costs ~10x an MLP step: time ~10x fewer of them.
        steps = args.steps if name == "mlp" else max(K, args.steps // 10)
        steps = max(K, steps // K * K)
        for replicas in (1, 2):
            strategy = strategies[replicas]
            for batch in (64, 256):
                runs = {k: [] for k in ("fit1", "fitK", "gt.fit", "guard")}
                for _ in range(args.repeats):
                    runs["fit1"].append(time_fit(builder, strategy, batch, steps, 1))
                    if replicas == 1:
                        runs["fitK"].append(time_fit(builder, strategy, batch, steps, K))
                    runs["gt.fit"].append(time_gt(builder, strategy, batch, steps, tmp))
                    runs["guard"].append(time_gt(builder, strategy, batch, steps, tmp, True))
                med = {k: statistics.median(v) if v else float("nan") for k, v in runs.items()}
                med.update(time_runners(builder, strategy, batch, steps * args.repeats,
                                        args.rounds))
                rows.append((name, replicas, batch, med))
                keras.backend.clear_session()

    head = (f"{'model':>5} {'rep':>3} {'batch':>5} | {'fit1':>6} {'fitK':>6} {'bare':>6} "
            f"{'st1':>6} {'st10':>6} {'gt.fit':>6} {'+guard':>6} | {'bare/st1':>8} "
            f"{'bare/st10':>9} {'gt/guard':>8} {'fitK/gt':>8} {'fit1/gt':>8}")
    print(f"steps/s (median of {args.repeats}); ratios > 1 mean guardtrain's side is slower "
          f"by that factor; steps_per_loop={K}")
    print(head)
    print("-" * len(head))
    for name, replicas, batch, m in rows:
        fmt = lambda v: f"{v:6.0f}" if v == v else f"{'n/a':>6}"  # noqa: E731
        r = lambda a, b: f"{m[a] / m[b]:.3f}" if m[a] == m[a] else "n/a"  # noqa: E731
        print(f"{name:>5} {replicas:>3} {batch:>5} | {fmt(m['fit1'])} {fmt(m['fitK'])} "
              f"{fmt(m['bare'])} {fmt(m['st1'])} {fmt(m['st10'])} {fmt(m['gt.fit'])} "
              f"{fmt(m['guard'])} | {m['r_st1']:>8.3f} {m['r_st10']:>9.3f} "
              f"{r('gt.fit', 'guard'):>8} {r('fitK', 'gt.fit'):>8} {r('fit1', 'gt.fit'):>8}")


if __name__ == "__main__":
    main()
