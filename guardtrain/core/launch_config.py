"""Where a run happens: ``LaunchConfig``.

A frozen, keyword-only dataclass validated in ``__post_init__`` by the one ``Validator``
(every wrong field reported at once; docs/architecture.md, "Errors"); a value is changed
with ``dataclasses.replace``, never by mutation. Pure module: no TensorFlow, no Ray.
"""

from __future__ import annotations

import dataclasses
import os

from guardtrain.core.validation import Validator, is_int

__all__ = ["LaunchConfig"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class LaunchConfig:
    """Where and on what a run happens.

    Args:
        workers: 0 runs in this process on the best local strategy (``MirroredStrategy``
            over the local GPUs, or over ``cpu_replicas`` logical CPUs, else the default
            strategy). N >= 1 runs N Ray Train workers under
            ``MultiWorkerMirroredStrategy``.
        cpu_replicas: in-process only: split the CPU into this many logical devices and
            run ``MirroredStrategy`` over them (for tests and laptops). ``None`` = no split.
        gpus_per_worker: GPUs each Ray worker asks for (0 = CPU workers).
        cpus_per_worker: CPUs each Ray worker asks for.
        address: an existing Ray cluster to attach to (``"auto"``, ``"ray://host:10001"``,
            ``"127.0.0.1:6379"``); ``None`` starts an embedded local Ray.
        storage_path: where Ray Train keeps checkpoints; ``None`` = under the run directory.
        max_failures: how many worker-group restarts Ray Train may do after a crash.
        checkpoint_every_chunks: persist loop state for crash recovery every K chunks.
        step_timeout_s: a chunk that makes no progress for this long is a hang: it is
            turned into a ``LaunchError`` naming the rank. ``None`` = wait forever.

    Example:

    >>> LaunchConfig(workers=2, cpus_per_worker=1).workers
    2
    """

    workers: int = 0
    cpu_replicas: int | None = None
    gpus_per_worker: float = 0
    cpus_per_worker: float = 1
    address: str | None = None
    storage_path: str | None = None
    max_failures: int = 0
    checkpoint_every_chunks: int = 10
    step_timeout_s: float | None = 600.0

    def __post_init__(self):
        # Every field's type is checked here, so a "1" from a form or an env var is one
        # line of a ConfigError, never a TypeError deep in Ray or TensorFlow.
        v = Validator("LaunchConfig", code="GT101")
        workers_ok = v.need(is_int(self.workers) and self.workers >= 0, "workers",
                            self.workers, "an int >= 0",
                            "use workers=0 to run in this process, or workers=N for N Ray "
                            "workers")
        replicas_ok = v.need(self.cpu_replicas is None
                             or (is_int(self.cpu_replicas) and self.cpu_replicas >= 1),
                             "cpu_replicas", self.cpu_replicas, "None or an int >= 1",
                             "use cpu_replicas=2 to run MirroredStrategy over 2 logical CPUs")
        if workers_ok and replicas_ok:
            v.need(not (self.cpu_replicas and self.workers), "cpu_replicas=..., workers",
                   (self.cpu_replicas, self.workers), "cpu_replicas only with workers=0",
                   "drop cpu_replicas: each Ray worker runs one replica per device it has")
        v.need(_is_real(self.gpus_per_worker) and self.gpus_per_worker >= 0,
               "gpus_per_worker", self.gpus_per_worker, "a number >= 0 (int or float)",
               "use gpus_per_worker=0 for CPU workers, gpus_per_worker=1 for one GPU each")
        v.need(_is_real(self.cpus_per_worker) and self.cpus_per_worker > 0,
               "cpus_per_worker", self.cpus_per_worker, "a number > 0 (int or float)",
               "give each worker at least a fraction of a CPU: cpus_per_worker=1")
        v.need(self.address is None or (isinstance(self.address, str)
                                        and self.address.strip() != ""),
               "address", self.address, "None or a non-empty str",
               'use address="auto", address="127.0.0.1:6379", or None for a local Ray')
        v.need(self.storage_path is None or (isinstance(self.storage_path, (str, os.PathLike))
                                             and os.fspath(self.storage_path) != ""),
               "storage_path", self.storage_path, "None or a path (str or os.PathLike)",
               'use storage_path="/shared/ray_results", or None for the run directory')
        v.need(is_int(self.max_failures) and self.max_failures >= -1, "max_failures",
               self.max_failures, "an int >= -1 (-1 = unlimited)",
               "use max_failures=2 to allow two restarts")
        v.need(is_int(self.checkpoint_every_chunks) and self.checkpoint_every_chunks >= 1,
               "checkpoint_every_chunks", self.checkpoint_every_chunks, "an int >= 1",
               "use checkpoint_every_chunks=10")
        v.need(self.step_timeout_s is None
               or (_is_real(self.step_timeout_s) and self.step_timeout_s > 0),
               "step_timeout_s", self.step_timeout_s, "None or a number > 0 (seconds)",
               "use step_timeout_s=600, or None to wait forever")
        v.raise_if_any()

    @property
    def distributed(self) -> bool:
        """True when the run goes to Ray workers."""
        return self.workers > 0


def _is_real(value) -> bool:
    # A number, infinity included (step_timeout_s=float("inf") waits forever, as None).
    return isinstance(value, (int, float)) and not isinstance(value, bool)
