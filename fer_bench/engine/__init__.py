"""The one training engine: RunConfig, devices, precisions, the timed step and the epoch loop.

Never imports pytest: the benchmarks, the CLI and a user's own script all drive it the same way. Importing the
package imports no torch: its names load on first use, and importing it registers the engine's availability
checks with the axis registry (fer_bench.engine.availability).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from fer_bench.engine import availability  # noqa: F401  (registers the checks)

if TYPE_CHECKING:  # the names __getattr__ loads, for type checkers and import checks
    from fer_bench.engine.build import Training, create_train_step, unavailable_reason
    from fer_bench.engine.config import AXES, MEMORY_FORMATS, OPTIMIZERS, PRECISIONS, RunConfig
    from fer_bench.engine.device import ResolvedDevice, resolve_device, synchronize
    from fer_bench.engine.loop import EpochStats, evaluate, train_epoch
    from fer_bench.engine.metrics import ClassificationReport, confusion_matrix
    from fer_bench.engine.optim import create_optimizer
    from fer_bench.engine.precision import PrecisionPolicy, apply_backend_settings, resolve_precision
    from fer_bench.engine.step import TrainStep

#: Each public name and the module that defines it.
_WHERE = {
    "Training": "build", "create_train_step": "build", "unavailable_reason": "build",
    "AXES": "config", "MEMORY_FORMATS": "config", "OPTIMIZERS": "config", "PRECISIONS": "config",
    "RunConfig": "config",
    "ResolvedDevice": "device", "resolve_device": "device", "synchronize": "device",
    "EpochStats": "loop", "evaluate": "loop", "train_epoch": "loop",
    "ClassificationReport": "metrics", "confusion_matrix": "metrics",
    "create_optimizer": "optim",
    "PrecisionPolicy": "precision", "apply_backend_settings": "precision", "resolve_precision": "precision",
    "TrainStep": "step",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'fer_bench.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"fer_bench.engine.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
