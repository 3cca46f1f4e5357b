"""The one training engine: RunConfig, devices, precisions, the timed step and the epoch loop.

Never imports pytest: the benchmarks, the CLI and a user's own script all drive it the same way. Importing it
registers the engine's availability checks with the axis registry (fer_bench.engine.availability).
"""

from fer_bench.engine import availability  # noqa: F401  (registers the checks)
from fer_bench.engine.build import Training, create_train_step, unavailable_reason
from fer_bench.engine.config import CONFIG_AXES, MEMORY_FORMATS, OPTIMIZERS, PRECISIONS, RunConfig
from fer_bench.engine.device import ResolvedDevice, resolve_device, synchronize
from fer_bench.engine.loop import EpochStats, evaluate, train_epoch
from fer_bench.engine.metrics import ClassificationReport, confusion_matrix
from fer_bench.engine.optim import create_optimizer
from fer_bench.engine.precision import PrecisionPolicy, apply_backend_settings, resolve_precision
from fer_bench.engine.step import TrainStep

__all__ = [
    "CONFIG_AXES", "MEMORY_FORMATS", "OPTIMIZERS", "PRECISIONS", "ClassificationReport", "EpochStats",
    "PrecisionPolicy", "ResolvedDevice", "RunConfig", "TrainStep", "Training", "apply_backend_settings",
    "confusion_matrix", "create_optimizer", "create_train_step", "evaluate", "resolve_device", "resolve_precision",
    "synchronize", "train_epoch", "unavailable_reason",
]
