"""How long ``guardtrain.check`` takes on big inputs (target: under 1 s each).

Two inputs, each with a small MLP:

- a generated 1,000,000-row x 100-column Parquet file (written to a temp dir);
- a 1,000,000 x 784 float32 NumPy array (about 3.1 GB in memory).

``check`` reads bounded samples only, so its time should not grow with the data. When
``guardtrain.fit`` is there, the time ``fit`` takes to reach its first training step
(a callback's ``on_train_batch_begin``) is printed beside it, for scale.

Usage:

    python scripts/bench_check.py [--rows 1000000] [--repeats 3] [--no-fit]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np


def _mlp(features: int):
    import keras

    model = keras.Sequential([keras.Input((features,)),
                              keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def _timed(fn, repeats: int) -> tuple[float, float]:
    """(first call, median of the next ``repeats``) in seconds."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:]) if repeats else times[0]


def _time_to_first_step(model, x, y) -> float | None:
    import keras

    import guardtrain

    if not hasattr(guardtrain, "fit"):
        return None

    class FirstStep(keras.callbacks.Callback):
        at = None

        def on_train_batch_begin(self, batch, logs=None):
            if FirstStep.at is None:
                FirstStep.at = time.perf_counter()

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        guardtrain.fit(model, x, y, epochs=1, steps_per_epoch=1, callbacks=[FirstStep()],
                       verbose=0, run_dir=run_dir)
    return FirstStep.at - start if FirstStep.at else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-fit", action="store_true", help="skip timing gt.fit")
    args = parser.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq

    from guardtrain.checking import check
    from guardtrain.data import parquet

    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        columns = {f"f{i}": rng.standard_normal(args.rows, dtype=np.float32) for i in range(100)}
        columns["y"] = rng.integers(0, 10, args.rows)
        pq.write_table(pa.table(columns), f"{tmp}/train.parquet")
        del columns
        made = time.perf_counter() - start
        source = parquet(f"{tmp}/train.parquet", features=[f"f{i}" for i in range(100)],
                         label="y")
        model = _mlp(100)
        first, median = _timed(lambda: check(model, source, batch_size=256), args.repeats)
        fit_s = None if args.no_fit else _time_to_first_step(_mlp(100), source, None)
        rows.append((f"Parquet {args.rows:,} x 100", made, first, median, fit_s))

    start = time.perf_counter()
    x = rng.random((args.rows, 784), dtype=np.float32)
    y = rng.integers(0, 10, args.rows)
    made = time.perf_counter() - start
    model = _mlp(784)
    first, median = _timed(lambda: check(model, x, y, batch_size=256), args.repeats)
    fit_s = None if args.no_fit else _time_to_first_step(_mlp(784), x, y)
    rows.append((f"NumPy {args.rows:,} x 784 float32", made, first, median, fit_s))

    print(f"{'input':<32} {'make data':>10} {'check 1st':>10} {'check med':>10} "
          f"{'fit->step 1':>12}")
    for name, made, first, median, fit_s in rows:
        fit_text = f"{fit_s:11.2f}s" if fit_s is not None else f"{'n/a':>12}"
        print(f"{name:<32} {made:9.2f}s {first:9.3f}s {median:9.3f}s {fit_text}")


if __name__ == "__main__":
    main()
