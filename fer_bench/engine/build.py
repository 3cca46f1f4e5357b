"""create_train_step: everything a benchmark case or a user's script needs, built from one RunConfig."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from fer_bench.engine.config import RunConfig
from fer_bench.engine.device import resolve_device
from fer_bench.engine.optim import create_optimizer
from fer_bench.engine.precision import apply_backend_settings, resolve_precision
from fer_bench.engine.step import TrainStep
from fer_bench.errors import FerBenchError


@dataclass
class Training:
    """A ready TrainStep plus the facts about how it was built (for a result's extra_info)."""

    config: RunConfig
    step: TrainStep
    input_size: int
    in_chans: int
    settings: dict = field(default_factory=dict)

    def example_batch(self, batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A random batch of the model's declared input shape, already on the device and in its dtype; by default
        the step's global batch (nn.DataParallel splits it over its devices)."""
        n = batch_size or self.config.global_batch_size
        g = torch.Generator().manual_seed(self.config.seed)
        x = torch.randn(n, self.in_chans, self.input_size, self.input_size, generator=g)
        y = torch.randint(0, 7, (n,), generator=g)
        return self.step.prepare_input(x), y.to(self.step.device)


def data_parallel(model: nn.Module, device: torch.device, num_gpus: int) -> nn.Module:
    """``model`` replicated by nn.DataParallel over ``num_gpus`` consecutive devices from ``device``."""
    first = device.index or 0
    return nn.DataParallel(model, device_ids=list(range(first, first + num_gpus)))


def unavailable_reason(config: RunConfig) -> str | None:
    """Why this machine cannot run ``config`` (device, GPU count or precision), or None."""
    from fer_bench.engine.precision import precision_unavailable_reason

    resolved = resolve_device(config.device, config.devices_needed)
    if not resolved.available:
        return resolved.reason
    return precision_unavailable_reason(config.precision, resolved.device)


def create_train_step(config: RunConfig, *, num_classes: int = 7) -> Training:
    """Build model, optimizer and precision policy for ``config`` on its device.

    ``num_gpus > 1`` with parallel ``none`` or ``dp`` wraps the model in nn.DataParallel over ``num_gpus``
    consecutive devices, which splits each input batch across them: the batch to feed is
    ``config.global_batch_size`` (batch_size per device under weak scaling, batch_size in all under strong).
    DistributedDataParallel is not built here: its workers (fer_bench.engine.distributed) each build a one-device
    step and wrap it. ``config.compile`` other than eager makes ``step.model`` the torch.compile of
    ``step.eager_model`` (fer_bench.engine.compile.compile_train_step; not with nn.DataParallel); it compiles on
    its first call.
    """
    from fer_bench.models import create_model, get_model_info

    if config.parallel_mode == "ddp":
        raise FerBenchError("parallel=ddp: DistributedDataParallel steps are built by fer_bench.engine.distributed's "
                            "workers, one device each")
    if config.compile != "eager" and config.parallel_mode == "dp":
        raise FerBenchError("torch.compile with nn.DataParallel is not supported: use parallel=ddp")
    resolved = resolve_device(config.device, config.num_gpus)
    if not resolved.available:
        raise FerBenchError(f"device {config.device}: {resolved.reason}")
    device = resolved.device
    policy = resolve_precision(config.precision, device)
    backend = apply_backend_settings(tf32=config.tf32, cudnn_benchmark=config.cudnn_benchmark)
    torch.manual_seed(config.seed)
    info = get_model_info(config.model)
    model: nn.Module = create_model(config.model, num_classes=num_classes)
    model = model.to(device=device, dtype=policy.param_dtype)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.parallel_mode == "dp":
        model = data_parallel(model, device, config.num_gpus)
    optimizer = create_optimizer(config.optimizer, model.parameters(), config.lr)
    step = TrainStep(model, optimizer, policy, device, channels_last=config.channels_last)
    if config.compile != "eager":  # nothing compiles yet: the first call does (engine.compile.warm_compile)
        from fer_bench.engine.compile import compile_train_step

        compile_train_step(step, config.compile)
    settings = {
        **policy.settings(),
        **backend,
        "channels_last": config.channels_last,
        "compile": config.compile,
        "optimizer": config.optimizer,
        "lr": config.lr,
        **config.batch_info(),
        "torch_num_threads": torch.get_num_threads(),
        "input_size": info.input_size,
        "in_chans": info.in_chans,
    }
    return Training(config, step, info.input_size, info.in_chans, settings)
