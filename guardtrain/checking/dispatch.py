"""Distributed dispatch (``launch.workers > 0``): what can be sent, and where it can run.

- a ``tf.data.Dataset`` object is bound to this process's graph and cannot be pickled
  to workers: a dataset function builds it there instead;
- Ray Train asking for resources the cluster lacks retries start-up forever, so the
  request is compared with ``ray.cluster_resources()``, only when Ray is already
  initialised (check never starts Ray);
- a relative Parquet path is read from each worker's own working directory.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping, Sequence

from guardtrain.checking import codes
from guardtrain.checking.specs import Inputs
from guardtrain.core.launch_config import LaunchConfig
from guardtrain.data import ParquetSource
from guardtrain.core.errors import Problem

__all__ = ["check_dispatch", "check_resources", "ray_resources"]


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


def check_resources(launch: LaunchConfig, total: Mapping[str, float],
                    nodes: Sequence[Mapping[str, float]] | None = None) -> list[Problem]:
    """Compares what the workers ask for with what the Ray cluster has (GT261).

    Pure: ``total`` is ``ray.cluster_resources()``; ``nodes`` the per-node resources of
    the alive nodes, when known (one worker must fit on one node).
    """
    if not launch.workers:
        return []
    ask = {"CPU": launch.cpus_per_worker, "GPU": launch.gpus_per_worker}
    problems = []
    for name, each in ask.items():
        if not each:
            continue
        need, have = each * launch.workers, float(total.get(name, 0))
        fits = int(have // each) if each else launch.workers
        if need > have:
            problems.append(Problem(
                codes.RESOURCES, f"LaunchConfig({name.lower()}s_per_worker={each:g})",
                f"{launch.workers} workers x {each:g} {name} = {need:g} {name}",
                f"the Ray cluster has {have:g} {name}: Ray Train would wait for them forever",
                f"LaunchConfig(workers={fits}, ...) or a smaller {name.lower()}s_per_worker, "
                f"or add nodes with {name}" if fits else
                f"run on a cluster with {name} nodes, or {name.lower()}s_per_worker=0"))
        elif nodes and not any(float(n.get(name, 0)) >= each for n in nodes):
            biggest = max(float(n.get(name, 0)) for n in nodes)
            problems.append(Problem(
                codes.RESOURCES, f"LaunchConfig({name.lower()}s_per_worker={each:g})",
                f"a node with {each:g} {name} for one worker",
                f"the largest node has {biggest:g} {name}",
                f"{name.lower()}s_per_worker={biggest:g} or less"))
    return problems


def ray_resources():
    """``(total, nodes)`` of the Ray cluster this process is attached to, else ``None``.

    Never starts Ray and never imports it: if ``ray`` was not imported, it is not running.
    """
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    return dict(ray.cluster_resources()), nodes


def _absolute(path: str) -> bool:
    return os.path.isabs(path) or "://" in path
