"""Whether a Ray cluster can hold a run: the request against the cluster, as problems.

Pure (no Ray): the caller reads the cluster (``ray.nodes()``) and hands its resources in,
so the comparison is tested without a cluster. Ray Train, asked for resources a cluster
does not have (``use_gpu=True`` on a CPU cluster), retries its start-up forever; this
comparison runs once on the driver before dispatch and turns that into an error that
names what was asked and what exists (docs/architecture.md, "Launch").

One code per fault:

- GT420: the cluster has fewer CPUs than the workers ask for in all;
- GT421: fewer GPUs;
- GT422: enough in all, but no node holds one worker (a worker cannot span nodes).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from guardtrain.core.errors import LaunchError, Problem
from guardtrain.core.launch_config import LaunchConfig

__all__ = ["check_resources", "resource_error", "CODE_CPU", "CODE_GPU", "CODE_NODE"]

CODE_CPU = "GT420"
CODE_GPU = "GT421"
CODE_NODE = "GT422"

# Rounding slack for fractional requests (cpus_per_worker=0.1 times 10 workers).
_EPS = 1e-6


def check_resources(launch: LaunchConfig,
                    resources: Mapping[str, float] | Sequence[Mapping[str, float]],
                    ) -> list[Problem]:
    """What is missing for ``launch`` on a cluster with ``resources``.

    Each worker needs ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs on a single
    node.

    Args:
        launch: the request (``workers`` x ``cpus_per_worker`` / ``gpus_per_worker``).
        resources: either the cluster's totals (``ray.cluster_resources()``), read as one
            node holding everything, or one mapping per node (``ray.nodes()``'s
            ``"Resources"``), which also catches a worker that fits no single node.

    Returns:
        The problems, empty when the request fits (and always for ``workers=0``). Each
        names what was expected, what the cluster has, and a fix.

    Example:

    >>> [p.code for p in check_resources(LaunchConfig(workers=2, gpus_per_worker=1),
    ...                                  {"CPU": 2.0})]
    ['GT421']
    """
    nodes = [resources] if isinstance(resources, Mapping) else list(resources)
    n, cpw, gpw = launch.workers, launch.cpus_per_worker, launch.gpus_per_worker
    if n == 0:
        return []
    have_cpu = sum(float(r.get("CPU", 0)) for r in nodes)
    have_gpu = sum(float(r.get("GPU", 0)) for r in nodes)
    call = f"LaunchConfig(workers={n}, cpus_per_worker={cpw:g}, gpus_per_worker={gpw:g})"
    problems = []
    if n * gpw > have_gpu + _EPS:
        problems.append(Problem(
            code=CODE_GPU, where=call,
            expected=f"{n * gpw:g} GPUs ({n} workers x {gpw:g})",
            found=f"{have_gpu:g} GPUs in the Ray cluster",
            fix=("use gpus_per_worker=0 to train on CPU workers" if have_gpu == 0 else
                 f"use at most workers={int((have_gpu + _EPS) // gpw)} with "
                 f"gpus_per_worker={gpw:g}, or a cluster with more GPUs")))
    if n * cpw > have_cpu + _EPS:
        problems.append(Problem(
            code=CODE_CPU, where=call,
            expected=f"{n * cpw:g} CPUs ({n} workers x {cpw:g})",
            found=f"{have_cpu:g} CPUs in the Ray cluster",
            fix=(f"use fewer workers, or a fraction of a CPU each "
                 f"(cpus_per_worker={max(have_cpu, _EPS) / n:.2g}), or a larger cluster")))
    if not problems and len(nodes) > 1:
        fits = sum(_workers_fitting(r, cpw, gpw) for r in nodes)
        if fits < n:
            problems.append(Problem(
                code=CODE_NODE, where=call,
                expected=f"{n} workers, each on one node with {cpw:g} CPUs and {gpw:g} GPUs",
                found=(f"room for {fits} on nodes with " + ", ".join(
                    f"{float(r.get('CPU', 0)):g} CPU/{float(r.get('GPU', 0)):g} GPU"
                    for r in nodes)),
                fix="ask for less per worker (a worker cannot span nodes), or bigger nodes"))
    return problems


def resource_error(problems: Sequence[Problem]) -> LaunchError:
    """The ``LaunchError`` for ``problems`` (non-empty): every problem in its message, the
    first one's code, and all of them in ``details["problems"]``."""
    first = problems[0]
    return LaunchError(
        "the Ray cluster cannot hold this run:\n" + "\n".join(
            f"  {p.where}: expected {p.expected}; found {p.found}   [{p.code}]"
            for p in problems),
        code=first.code, fix="; ".join(p.fix for p in problems),
        details={"problems": list(problems), "expected": first.expected,
                 "found": first.found})


def _workers_fitting(node: Mapping[str, float], cpw: float, gpw: float) -> int:
    limits = [float(node.get("CPU", 0)) / cpw if cpw else math.inf,
              float(node.get("GPU", 0)) / gpw if gpw else math.inf]
    fit = min(limits)
    return 10**9 if fit == math.inf else int(fit + _EPS)
