"""Where a run happens: ``LaunchConfig``.

Frozen, keyword-only dataclasses validated in ``__post_init__``; a value is changed with
``dataclasses.replace``, never by mutation. Pure module: no TensorFlow, no Ray.
"""

from __future__ import annotations

import dataclasses

from guardtrain.core.errors import ConfigError

__all__ = ["LaunchConfig"]


def _require(ok: bool, call: str, expected: str, found, fix: str, code: str = "GT101") -> None:
    if not ok:
        raise ConfigError(f"{call}: expected {expected}, found {found!r}", code=code, fix=fix)


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
        _require(isinstance(self.workers, int) and self.workers >= 0,
                 "LaunchConfig(workers=...)", "an int >= 0", self.workers,
                 "use workers=0 to run in this process, or workers=N for N Ray workers")
        _require(self.cpu_replicas is None
                 or (isinstance(self.cpu_replicas, int) and self.cpu_replicas >= 1),
                 "LaunchConfig(cpu_replicas=...)", "None or an int >= 1", self.cpu_replicas,
                 "use cpu_replicas=2 to run MirroredStrategy over 2 logical CPUs")
        _require(not (self.cpu_replicas and self.workers),
                 "LaunchConfig(cpu_replicas=..., workers=...)",
                 "cpu_replicas only with workers=0", (self.cpu_replicas, self.workers),
                 "drop cpu_replicas: each Ray worker runs one replica per device it has")
        _require(self.gpus_per_worker >= 0, "LaunchConfig(gpus_per_worker=...)", ">= 0",
                 self.gpus_per_worker, "use gpus_per_worker=0 for CPU workers")
        _require(self.cpus_per_worker > 0, "LaunchConfig(cpus_per_worker=...)", "> 0",
                 self.cpus_per_worker, "give each worker at least a fraction of a CPU")
        _require(isinstance(self.max_failures, int) and self.max_failures >= -1,
                 "LaunchConfig(max_failures=...)", "an int >= -1 (-1 = unlimited)",
                 self.max_failures, "use max_failures=2 to allow two restarts")
        _require(isinstance(self.checkpoint_every_chunks, int)
                 and self.checkpoint_every_chunks >= 1,
                 "LaunchConfig(checkpoint_every_chunks=...)", "an int >= 1",
                 self.checkpoint_every_chunks, "use checkpoint_every_chunks=10")
        _require(self.step_timeout_s is None or self.step_timeout_s > 0,
                 "LaunchConfig(step_timeout_s=...)", "None or > 0", self.step_timeout_s,
                 "use step_timeout_s=600, or None to wait forever")

    @property
    def distributed(self) -> bool:
        """True when the run goes to Ray workers."""
        return self.workers > 0
