"""Distributed dispatch (``launch.workers > 0``): what can be sent to the workers.

- a ``tf.data.Dataset`` object is bound to this process's graph and cannot be pickled
  to workers: a dataset function builds it there instead (GT260);
- a relative Parquet path is read from each worker's own working directory (GT264).

Whether the cluster can hold the workers is not an input problem: the Ray runner compares
the request with the cluster once, when it attaches, before anything is shipped, and
raises a ``LaunchError`` (GT420-GT422, ``guardtrain.core.resources``).
"""

from __future__ import annotations

import os

from guardtrain.checking import codes
from guardtrain.checking.specs import Inputs
from guardtrain.core.launch_config import LaunchConfig
from guardtrain.data import ParquetSource
from guardtrain.core.errors import Problem

__all__ = ["check_dispatch"]


def check_dispatch(inputs: Inputs, launch: LaunchConfig, *, where: str = "x") -> list[Problem]:
    """What the workers receive: no Dataset objects (GT260), no relative paths (GT264)."""
    if not launch.workers:
        return []
    if inputs.kind == "dataset":
        return [Problem(codes.DATASET_OBJECT, where,
                        "a dataset function fn(input_context) -> tf.data.Dataset, which each "
                        "worker calls", "a tf.data.Dataset object, which cannot be sent to "
                        f"{launch.workers} Ray workers",
                        "wrap the pipeline in a function: def dataset_fn(ctx): return "
                        "make_dataset().shard(ctx.num_input_pipelines, ctx.input_pipeline_id)"
                        ".batch(ctx.get_per_replica_batch_size(64)); gt.fit(model, dataset_fn)")]
    source = inputs.source
    if isinstance(source, ParquetSource) and not _absolute(source.path):
        return [Problem(codes.RELATIVE_PATH, where, "a path every worker resolves the same",
                        f"the relative path {source.path!r}: each worker reads it from its own "
                        "working directory, on its own node",
                        f"gt.data.parquet({os.path.abspath(source.path)!r}, ...) on storage "
                        "every node mounts (or an object-store URI)", severity="warning")]
    return []


def _absolute(path: str) -> bool:
    return os.path.isabs(path) or "://" in path
