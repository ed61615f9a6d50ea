"""Which devices a run uses in this process, and the ``tf.distribute`` strategy over them.

``pick_strategy`` builds the strategy of an in-process run:

- a Ray Train worker (``TF_CONFIG`` set)   -> ``MultiWorkerMirroredStrategy``, built not
  here but by ``guardtrain.ray.worker.make_worker_strategy``, before any other TensorFlow
  op of the worker;
- several local GPUs                        -> ``MirroredStrategy`` over them (NCCL);
- ``cpu_replicas=N`` asked                  -> ``MirroredStrategy`` over N logical CPUs;
- otherwise                                 -> the default strategy (one device).

Logical CPUs use ``ReductionToOneDevice``: several ``MirroredStrategy`` objects with
collective cross-device ops in one process break each other's collectives, and on CPU the
non-collective reduction was also faster (docs/architecture.md, "Devices").
"""

from __future__ import annotations

import logging

from guardtrain.core.launch_config import LaunchConfig
from guardtrain.core.errors import LaunchError

__all__ = ["split_cpu", "planned_replicas", "pick_strategy"]

logger = logging.getLogger(__name__)


def split_cpu(n: int) -> list:
    """Splits the CPU into ``n`` logical devices; returns the first ``n`` logical CPUs.

    Must run before TensorFlow initialises its devices (before any model, tensor or
    dataset is made). When a split already exists with at least ``n`` devices it is used.

    Raises:
        LaunchError: TensorFlow already initialised with fewer than ``n`` logical CPUs.
    """
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        if len(tf.config.get_logical_device_configuration(cpu) or []) < n:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError:
        pass  # already initialised: use what exists, checked below
    logical = tf.config.list_logical_devices("CPU")
    if len(logical) < n:
        raise LaunchError(
            f"cpu_replicas={n} needs {n} logical CPUs, but TensorFlow already started with "
            f"{len(logical)}: the CPU can only be split before the first model, tensor or "
            "dataset is made",
            code="GT401",
            fix=(f"pass the model as a function that builds it (gt.fit(build_model, ...)), "
                 f"or call guardtrain.split_cpu({n}) at the very start of the program"))
    return logical[:n]


def _local_gpus() -> int:
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def planned_replicas(launch: LaunchConfig | None) -> int:
    """The number of replicas a run will have, without building anything.

    Listing physical devices does not fix TensorFlow's logical devices, so this is safe
    to call before ``split_cpu``.
    """
    launch = launch or LaunchConfig()
    if launch.workers:
        return launch.workers * max(1, int(launch.gpus_per_worker))
    if launch.cpu_replicas:
        return launch.cpu_replicas
    return max(1, _local_gpus())


def pick_strategy(launch: LaunchConfig | None):
    """Builds the in-process strategy that ``launch`` asks for (see the module doc)."""
    import tensorflow as tf

    launch = launch or LaunchConfig()
    if launch.cpu_replicas and launch.cpu_replicas > 1:
        devices = [d.name for d in split_cpu(launch.cpu_replicas)]
        return tf.distribute.MirroredStrategy(
            devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    return tf.distribute.get_strategy()
