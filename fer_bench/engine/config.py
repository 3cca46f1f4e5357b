"""RunConfig: one benchmark case (its axes, declared in fer_bench.axes) plus the training settings, frozen and
validated once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from fer_bench.axes import AXES as AXIS_REGISTRY, MEMORY_FORMATS, OPTIMIZERS, PRECISIONS
from fer_bench.errors import FerBenchError

__all__ = ["AXES", "MEMORY_FORMATS", "OPTIMIZERS", "PRECISIONS", "RunConfig"]


@dataclass(frozen=True)
class RunConfig:
    """One benchmark case: every axis of the registry that shapes a training step, plus the settings.

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
    memory_format: str = "contiguous"
    lr: float = 1e-3
    seed: int = 0
    tf32: bool = False
    cudnn_benchmark: bool = True

    def __post_init__(self) -> None:
        for name in AXES:
            if name == "model":
                continue  # a name the registry may not know yet (a user's model registered later)
            try:
                object.__setattr__(self, name, AXIS_REGISTRY[name].parse(getattr(self, name)))
            except ValueError as exc:
                raise FerBenchError(f"{name}: {exc}") from None
        if not self.lr > 0:
            raise FerBenchError(f"lr must be positive, got {self.lr!r}")

    @property
    def channels_last(self) -> bool:
        return self.memory_format == "channels_last"

    def axes(self) -> dict:
        """The axes, under the names used by fixtures, JSON params and extra_info."""
        return {axis: getattr(self, axis) for axis in AXES}

    def as_dict(self) -> dict:
        return asdict(self)


#: The registry's axes that are RunConfig fields, in registry order.
AXES: tuple[str, ...] = tuple(name for name in AXIS_REGISTRY if name in {f.name for f in fields(RunConfig)})
