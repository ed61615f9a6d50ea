"""Test tiers: ``pure`` (milliseconds), ``tf`` (2 logical CPUs), ``ray`` (a local cluster).

The CPU is split into 2 logical devices before TensorFlow initialises, so
``MirroredStrategy`` runs 2 replicas on any machine (``LaunchConfig(cpu_replicas=2)``).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# One Ray cluster for the whole session: a session fixture imported into several test
# modules would be one fixture per module, and a second cluster in one process fails.
from tests.ray_fixtures import ray_cluster  # noqa: E402,F401


def pytest_configure(config):
    try:
        from guardtrain.engine.devices import split_cpu
    except ImportError:
        return
    split_cpu(2)
