"""The main job: a guarded training of a small classifier on data generated here.

Runs in this process on 2 replicas (``MirroredStrategy`` over 2 logical CPUs), or on Ray
workers with ``--workers N``. Prints Keras's progress with the guard's figures, the
statistics of the last steps, and where the run directory is.
"""

from __future__ import annotations

import argparse

import numpy as np


def blobs(n: int = 4096, classes: int = 4, features: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(classes, features))
    y = rng.integers(0, classes, size=n)
    x = centers[y] + rng.normal(size=(n, features))
    return x.astype("float32"), y.astype("int64")


def build_model():
    import keras

    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(4),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=0, help="Ray workers (0 = in-process)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--run-dir", default=None)
    args = parser.parse_args()

    import guardtrain as gt

    launch = (gt.LaunchConfig(workers=args.workers) if args.workers
              else gt.LaunchConfig(cpu_replicas=2))
    x, y = blobs()
    result = gt.fit(build_model, x[:3584], y[:3584], batch_size=64, epochs=args.epochs,
                    validation_data=(x[3584:], y[3584:]), launch=launch, run_dir=args.run_dir)
    table = result.history
    cols = ["step", "loss", "grad_norm_min", "grad_norm_max", "update_ratio", "grad_first",
            "grad_last", "zero_grad_fraction"]
    # The norms are measured on one step in 10 (GuardConfig.stats_every): show those.
    measured = table.filter(table.column("measured"))
    print("\nguard statistics, last 5 measured steps:")
    print("  ".join(f"{c:>18}" for c in cols))
    for row in measured.slice(max(0, measured.num_rows - 5)).select(cols).to_pylist():
        print("  ".join(f"{row[c]:>18.4g}" if isinstance(row[c], float) else f"{row[c]:>18}"
                        for c in cols))
    print()
    print(result.summary())


if __name__ == "__main__":
    main()
