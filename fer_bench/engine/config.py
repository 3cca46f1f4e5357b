"""RunConfig: the six benchmark axes plus the training settings, frozen and validated once."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from fer_bench.errors import FerBenchError

AXES = ("model", "device", "batch_size", "num_workers", "precision", "num_gpus")
PRECISIONS = ("fp32", "amp_fp16", "amp_bf16", "bf16")
OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "adamw", "rmsprop")
_DEVICE_RE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def parse_device_name(text: str) -> str:
    """Validate a device string (cpu, cuda, cuda:N, mps) without touching the hardware."""
    name = text.strip().lower()
    if not _DEVICE_RE.match(name):
        raise FerBenchError(f"device {text!r} is not one of cpu, cuda, cuda:N, mps")
    return name


@dataclass(frozen=True)
class RunConfig:
    """One benchmark case: the six axes plus what shapes a training step.

    ``tf32`` and ``cudnn_benchmark`` are explicit so that a result records them instead of inheriting whatever a
    previous case left in ``torch.backends``.
    """

    model: str
    device: str = "cpu"
    batch_size: int = 64
    num_workers: int = 0
    precision: str = "fp32"
    num_gpus: int = 1
    optimizer: str = "adam"
    lr: float = 1e-3
    channels_last: bool = False
    seed: int = 0
    tf32: bool = False
    cudnn_benchmark: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", parse_device_name(self.device))
        for name in ("batch_size", "num_gpus"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise FerBenchError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise FerBenchError(f"num_workers must be an integer >= 0, got {self.num_workers!r}")
        if self.precision not in PRECISIONS:
            raise FerBenchError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.optimizer not in OPTIMIZERS:
            raise FerBenchError(f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if not self.lr > 0:
            raise FerBenchError(f"lr must be positive, got {self.lr!r}")

    def axes(self) -> dict:
        """The six axes, under the names used by fixtures, JSON params and extra_info."""
        return {axis: getattr(self, axis) for axis in AXES}

    def as_dict(self) -> dict:
        return asdict(self)

    def case_id(self) -> str:
        """A readable id such as ``efficientnet_b0-cpu-bs64-w2-fp32-g1``."""
        return (f"{self.model}-{self.device}-bs{self.batch_size}-w{self.num_workers}"
                f"-{self.precision}-g{self.num_gpus}")
