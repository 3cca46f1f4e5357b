"""RunConfig: one benchmark case (its axes, declared in fer_bench.axes) plus the training settings, frozen and
validated once.

RunConfig's axis fields and their defaults come from the registry (every axis with ``config_default``, and the
required ``model``), built when this module is imported: an axis registered before then (fer_bench.axes.register_axis)
is a field too. The training settings after them (lr, seed, tf32, cudnn_benchmark) are the engine's own.
"""

from __future__ import annotations

from dataclasses import asdict, field, fields, make_dataclass

from fer_bench.axes import AXES, MEMORY_FORMATS, OPTIMIZERS, PRECISIONS, devices_needed, list_axes
from fer_bench.errors import FerBenchError

__all__ = ["CONFIG_AXES", "MEMORY_FORMATS", "OPTIMIZERS", "PRECISIONS", "RunConfig"]

#: The settings after the axes: (name, type, default).
SETTINGS = (("lr", float, 1e-3), ("seed", int, 0), ("tf32", bool, False), ("cudnn_benchmark", bool, True))


class _RunConfigMethods:
    """RunConfig's behaviour; its fields are made from the registry below."""

    def __post_init__(self) -> None:
        for name in CONFIG_AXES:
            if name == "model":
                continue  # a name the registry may not know yet (a user's model registered later)
            try:
                object.__setattr__(self, name, AXES[name].parse(getattr(self, name)))
            except ValueError as exc:
                raise FerBenchError(f"{name}: {exc}") from None
        if not self.lr > 0:
            raise FerBenchError(f"lr must be positive, got {self.lr!r}")
        if self.scaling == "strong" and self.batch_size % self.world_size:
            raise FerBenchError(f"strong scaling splits the global batch {self.batch_size} over {self.world_size}: "
                                f"not a whole batch each")

    @property
    def parallel_mode(self) -> str:
        """none, dp or ddp; a step benchmark without the parallel axis and num_gpus above 1 is DataParallel."""
        if self.parallel == "none" and self.num_gpus > 1:
            return "dp"
        return self.parallel

    @property
    def world_size(self) -> int:
        """Devices (dp) or processes (ddp) sharing one step; 1 on one device."""
        return self.num_gpus if self.parallel_mode != "none" else 1

    @property
    def global_batch_size(self) -> int:
        """Images per step over all devices: batch_size x world size (weak), batch_size (strong)."""
        return self.batch_size * self.world_size if self.scaling == "weak" else self.batch_size

    @property
    def per_device_batch_size(self) -> int:
        return self.global_batch_size // self.world_size

    @property
    def devices_needed(self) -> int:
        return devices_needed(self.axes())

    def batch_info(self) -> dict:
        """The batch semantics every step and epoch result records."""
        return {"parallel": self.parallel_mode, "world_size": self.world_size, "scaling_mode": self.scaling,
                "per_device_batch_size": self.per_device_batch_size, "global_batch_size": self.global_batch_size}

    @property
    def channels_last(self) -> bool:
        return self.memory_format == "channels_last"

    def axes(self) -> dict:
        """The axes, under the names used by fixtures, JSON params and extra_info."""
        return {axis: getattr(self, axis) for axis in CONFIG_AXES}

    def as_dict(self) -> dict:
        return asdict(self)


def _fields() -> list:
    out: list = [("model", str)]
    for axis in list_axes():
        if axis.in_config and axis.name != "model":
            out.append((axis.name, type(axis.config_default), field(default=axis.config_default)))
    out += [(name, kind, field(default=default)) for name, kind, default in SETTINGS]
    return out


RunConfig = make_dataclass("RunConfig", _fields(), bases=(_RunConfigMethods,), frozen=True)
RunConfig.__module__ = __name__  # pickled by name (spawned DDP workers receive their case)
RunConfig.__doc__ = """One benchmark case: every axis of the registry that shapes a training step, plus the settings.

    ``tf32`` and ``cudnn_benchmark`` are explicit so that a result records them instead of inheriting whatever a
    previous case left in ``torch.backends``.
    """

#: The registry's axes that are RunConfig fields, in registry order.
CONFIG_AXES: tuple[str, ...] = tuple(name for name in AXES if name in {f.name for f in fields(RunConfig)})
