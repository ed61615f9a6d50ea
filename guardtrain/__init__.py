"""guardtrain: guarded Keras training on ``tf.distribute``, in-process or on Ray workers.

``import guardtrain as gt``. The pure parts (errors, configs) import no TensorFlow; the
verbs that train import it when first used, so ``guardtrain.core.errors`` stays cheap to load.
"""

from guardtrain import data
from guardtrain.core.launch_config import LaunchConfig
from guardtrain.core.errors import (
    ConfigError,
    GuardtrainError,
    InputSpecError,
    LaunchError,
    Problem,
    RescueExhaustedError,
    UnhealthyTrainingError,
)
from guardtrain.core.guard import GuardConfig
from guardtrain.core.rescue import RescueConfig

__version__ = "0.1.0"

# Public names that need TensorFlow, pyarrow or Ray, loaded on first use.
_LAZY = {
    "fit": "guardtrain.interface.fitting",
    "check": "guardtrain.checking",
    "CheckReport": "guardtrain.checking",
    "Result": "guardtrain.records.result",
    "load_history": "guardtrain.records.history",
    "report": "guardtrain.interface.text_report",
    "plot": "guardtrain.interface.plotting",
    "split_cpu": "guardtrain.engine.devices",
}

__all__ = [
    "ConfigError",
    "GuardConfig",
    "GuardtrainError",
    "InputSpecError",
    "LaunchConfig",
    "LaunchError",
    "Problem",
    "RescueConfig",
    "RescueExhaustedError",
    "UnhealthyTrainingError",
    "data",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'guardtrain' has no attribute {name!r}")
