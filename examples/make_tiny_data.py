"""Writes the data of ``tiny-job.yaml``: 4 overlapping Gaussian blobs in 8 dimensions.

    python examples/make_tiny_data.py            # -> examples/data/tiny.npz
    python examples/make_tiny_data.py --parquet  # and examples/data/tiny-*.parquet

``tiny.npz`` holds ``x_train``, ``y_train``, ``x_val``, ``y_val`` (float32 features,
int64 class ids); the Parquet files hold columns ``f0``..``f7`` and ``label``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def blobs(n: int = 2560, classes: int = 4, features: int = 8, seed: int = 0):
    """Overlapping blobs: learnable (about 90% accuracy), never trivially (loss stays > 0)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=1.2, size=(classes, features))
    y = rng.integers(0, classes, size=n)
    x = centers[y] + rng.normal(size=(n, features))
    return x.astype("float32"), y.astype("int64")


def write(out: Path, *, parquet: bool = False, n: int = 2560, val: int = 512) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    x, y = blobs(n + val)
    path = out / "tiny.npz"
    np.savez(path, x_train=x[:n], y_train=y[:n], x_val=x[n:], y_val=y[n:])
    if parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        for part, rows in enumerate(np.array_split(np.arange(n), 2)):
            table = pa.table({**{f"f{j}": x[rows, j] for j in range(x.shape[1])},
                              "label": y[rows]})
            pq.write_table(table, out / f"tiny-{part}.parquet")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE / "data")
    parser.add_argument("--parquet", action="store_true", help="also write Parquet files")
    args = parser.parse_args()
    print(write(args.out, parquet=args.parquet))


if __name__ == "__main__":
    main()
