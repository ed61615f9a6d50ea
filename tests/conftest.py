"""Test tiers: ``pure`` (milliseconds), ``tf`` (2 logical CPUs), ``ray`` (a local cluster).

The CPU is split into 2 logical devices before TensorFlow initialises, so
``MirroredStrategy`` runs 2 replicas on any machine (``LaunchConfig(cpu_replicas=2)``).

Builders shared by several modules live beside this file: ``tests/helpers.py`` (data and
small models) and ``tests/reference_stats.py`` (the per-step statistics in NumPy).
"""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The shared helpers import as ``tests.helpers``, ``tests.reference_stats``: from the
# repository root, also when pytest is started as ``pytest`` rather than ``python -m pytest``
# (which alone puts the working directory on the path).
_ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

# One Ray cluster for the whole session: a session fixture imported into several test
# modules would be one fixture per module, and a second cluster in one process fails.
from tests.ray_fixtures import ray_cluster  # noqa: E402,F401


def pytest_configure(config):
    try:
        from guardtrain.engine.devices import split_cpu
    except ImportError:
        return
    split_cpu(2)
