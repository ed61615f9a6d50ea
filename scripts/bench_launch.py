"""Launch cost: time to the first step and steps/s for workers=0, 1 and 2, side by side.

For each worker count, one ``gt.fit`` of the same small MLP (32 -> 64 -> 64 -> 10, SGD,
guard on, as shipped) on the same generated data, and a Keras callback that records, on
the process that trains (rank 0 on Ray):

  first step   wall time from the ``gt.fit`` call to the first ``on_train_batch_begin``
               (check, Ray Train start-up, worker start, TensorFlow import, strategy,
               model placement, data: everything before the first chunk runs)
  steps/s      steps of the second epoch over its wall time (``on_epoch_begin`` ->
               ``on_epoch_end``); the first epoch holds tracing and warm-up
  fit total    wall time of the whole ``gt.fit`` call, on the driver

The callback runs on the workers and compares its clock with the driver's start time, so
this needs driver and workers on one host (it writes its figures to a local temp file).

Where Ray runs (``--cluster``):

  embedded  (default) ``gt.fit``'s own embedded Ray for this process (``address=None``),
            holding every CPU of this machine; started BEFORE the timed runs, and its
            start-up is printed on its own line, not counted in "first step".
  local     ``cluster/local-cluster.sh``: a real two-node cluster on this machine (1 CPU a
            node), attached by address; started before and stopped after the runs (by
            PID, by the script itself).

On a 2-core machine the two workers of ``workers=2`` share the two cores with each other
(and with the driver): expect 2 workers to be slower than 1 here, not faster. The figures
are one run each, on a shared machine: read them as orders of magnitude.

    .venv/bin/python scripts/bench_launch.py                       # embedded Ray
    .venv/bin/python scripts/bench_launch.py --cluster local
    .venv/bin/python scripts/bench_launch.py --workers 0,2 --rows 32768 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
FEATURES, CLASSES = 32, 10


def _data(rows: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=2.0, size=(CLASSES, FEATURES))
    y = rng.integers(0, CLASSES, size=rows)
    x = centers[y] + rng.normal(size=(rows, FEATURES))
    return x.astype("float32"), y.astype("int64")


def _build():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((FEATURES,)),
                              keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(CLASSES)])
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _timing_callback(out_path: str, t0: float, timed_epoch: int):
    """A Keras callback writing first-step and epoch times to ``out_path`` (rank 0 only).

    Made in a function so it is pickled by value to the workers with the rest of this
    script (``__main__``), which they cannot import.
    """
    import keras

    class Timing(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.first = None
            self.epoch_start = {}
            self.epoch_s = {}

        def on_train_batch_begin(self, batch, logs=None):
            if self.first is None:
                self.first = time.time() - t0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start[epoch] = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_s[epoch] = time.perf_counter() - self.epoch_start[epoch]

        def on_train_end(self, logs=None):
            from guardtrain.ray.worker import worker_context

            if worker_context().rank != 0:
                return
            Path(out_path).write_text(json.dumps({
                "first_step_s": self.first, "epoch_s": self.epoch_s.get(timed_epoch),
                "pid": os.getpid()}))

    return Timing()


def _start_local_cluster(state_dir: str, port: int) -> tuple[str, dict]:
    env = dict(os.environ, GT_RAY_PORT=str(port), GT_RAY_DIR=state_dir)
    done = subprocess.run([str(ROOT / "cluster" / "local-cluster.sh"), "start"], env=env,
                          capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        sys.exit(f"local cluster did not start:\n{done.stderr[-2000:]}")
    # What a driver attaching to it needs: token auth and the file the script wrote the
    # cluster's token to (a RAY_AUTH_TOKEN in the environment would win over the file).
    os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ.update(RAY_AUTH_MODE="token",
                      RAY_AUTH_TOKEN_PATH=os.path.join(state_dir, "auth_token"))
    return done.stdout.strip().splitlines()[-1], env


def _free_port() -> int:
    import socket

    for port in range(7400 + os.getpid() % 2000, 9990, 7):
        ok = True
        for p in (port, port + 1):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no free port pair")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="0,1,2", help="comma-separated worker counts")
    parser.add_argument("--cluster", choices=("embedded", "local"), default="embedded")
    parser.add_argument("--rows", type=int, default=16384)
    parser.add_argument("--batch", type=int, default=64, help="global batch size")
    parser.add_argument("--epochs", type=int, default=2, help="the last one is timed (>= 2)")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    if args.epochs < 2:
        parser.error("--epochs must be >= 2: the first epoch holds tracing")

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    import guardtrain as gt

    x, y = _data(args.rows)
    steps_per_epoch = -(-args.rows // args.batch)
    timed_epoch = args.epochs - 1
    tmp = Path(tempfile.mkdtemp(prefix="gt-bench-launch-"))
    address, cluster_env, ray_start_s = None, None, None
    where = {0: "in-process, default strategy"}
    try:
        if any(counts):
            t = time.perf_counter()
            if args.cluster == "local":
                address, cluster_env = _start_local_cluster(str(tmp / "ray"), _free_port())
                what = f"local two-node cluster {address}, 1 CPU a node"
            else:
                what = "embedded Ray"
            from guardtrain.ray.cluster import connect

            connect(gt.LaunchConfig(workers=1, address=address))
            ray_start_s = time.perf_counter() - t
            import ray

            cpus = ray.cluster_resources().get("CPU", 0)
            for n in counts:
                if n:
                    where[n] = f"{what} ({cpus:g} CPUs), {n} x 1 CPU"
        rows = []
        for n in counts:
            out = tmp / f"timing-{n}.json"
            launch = gt.LaunchConfig(workers=n, address=address) if n else None
            t0 = time.time()
            cb = _timing_callback(str(out), t0, timed_epoch)
            result = gt.fit(_build, x, y, batch_size=args.batch, epochs=args.epochs,
                            callbacks=[cb], launch=launch, verbose=0, run_dir=tmp / f"run-{n}")
            total = time.time() - t0
            figures = json.loads(out.read_text())
            rows.append((n, where[n], figures["first_step_s"],
                         steps_per_epoch / figures["epoch_s"], total, result.verdict))
    finally:
        if cluster_env is not None:
            import ray

            if ray.is_initialized():
                ray.shutdown()
            subprocess.run([str(ROOT / "cluster" / "local-cluster.sh"), "stop"],
                           env=cluster_env, capture_output=True, timeout=180)
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"gt.fit, MLP {FEATURES}-64-64-{CLASSES}, {args.rows} rows, global batch {args.batch} "
          f"({steps_per_epoch} steps an epoch), {args.epochs} epochs, epoch {args.epochs} "
          f"timed; {os.cpu_count()} CPU cores")
    if ray_start_s is not None:
        print(f"Ray start/attach before the runs ({args.cluster}): {ray_start_s:.1f} s "
              "(not in the figures)")
    header = f"{'workers':>7}  {'first step (s)':>14}  {'steps/s':>8}  {'fit total (s)':>13}  " \
             f"{'verdict':<8}  where"
    print(header)
    print("-" * len(header))
    for n, place, first, rate, total, verdict in rows:
        print(f"{n:>7}  {first:>14.1f}  {rate:>8.0f}  {total:>13.1f}  {verdict:<8}  {place}")


if __name__ == "__main__":
    main()
