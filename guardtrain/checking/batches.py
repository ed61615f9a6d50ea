"""Batches and replicas: the global batch splits evenly and every replica gets samples.

``batch_size`` is the global batch, as in ``model.fit``; each of the ``R`` replicas gets
``batch_size / R``. A replica with an empty batch computes a zero gradient, which the
guard would read as ``REPLICA_IMBALANCE``.
"""

from __future__ import annotations

from guardtrain.checking import codes
from guardtrain.core.errors import Problem

__all__ = ["check_batches"]


def check_batches(batch_size, replicas: int, n_rows: int | None = None, *,
                  from_dataset: bool = False) -> list[Problem]:
    """Checks the global batch against the replica count and the sample count.

    Args:
        batch_size: the global batch (for a dataset: the size of its first batch).
        replicas: how many replicas the run will have.
        n_rows: samples in the data, ``None`` when unknown.
        from_dataset: the batch is the dataset's own, so fixes name ``dataset.batch``.
    """
    where = "dataset batch" if from_dataset else "batch_size"
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        return [Problem(codes.BAD_BATCH_SIZE, where, "an int >= 1 (the global batch)",
                        repr(batch_size), "batch_size=32")]
    up = -(-batch_size // replicas) * replicas
    fix_batch = (lambda b: f"dataset.batch({b})") if from_dataset else (
        lambda b: f"batch_size={b}")
    if batch_size < replicas:
        return [Problem(codes.ZERO_PER_REPLICA, where,
                        f"at least 1 sample per replica ({replicas} replicas)",
                        f"{batch_size} // {replicas} = 0 samples per replica",
                        f"{fix_batch(up)} (a multiple of {replicas})")]
    problems = []
    if batch_size % replicas:
        down = batch_size // replicas * replicas
        problems.append(Problem(
            codes.BATCH_NOT_DIVISIBLE, where, f"a multiple of the replica count {replicas}",
            f"{batch_size} = {replicas} x {batch_size / replicas:g}",
            f"{fix_batch(down)} or {fix_batch(up)}"))
    if n_rows is None:
        return problems
    if n_rows < batch_size:
        # One partial batch trains (as in model.fit) as long as every replica gets a
        # sample; with fewer samples than replicas some replica computes nothing.
        best = n_rows // replicas * replicas
        multiple = f", a multiple of {replicas}" if replicas > 1 else ""
        fix = (f"{fix_batch(best)} (the most that fits{multiple})" if best
               else f"at least {replicas} samples are needed for {replicas} replicas")
        problems.append(Problem(codes.FEWER_THAN_BATCH, where,
                                f"at least one global batch of {batch_size} samples",
                                f"{n_rows} samples: every step sees the same partial batch",
                                fix, severity="error" if n_rows < replicas else "warning"))
    elif 0 < n_rows % batch_size < replicas:
        rest = n_rows % batch_size
        problems.append(Problem(
            codes.EMPTY_REPLICA, where,
            f"a last batch with a sample for each of the {replicas} replicas",
            f"{n_rows} samples leave a last batch of {rest}: {replicas - rest} replica"
            f"{'s' if replicas - rest != 1 else ''} get an empty batch",
            f"use {n_rows - rest} samples (x[:{n_rows - rest}], y[:{n_rows - rest}]) or a "
            f"batch_size that divides {n_rows}", severity="warning"))
    return problems
