"""Turn a device string into a torch.device, or a reason it cannot be used here; synchronise devices."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fer_bench.axes import parse_device_name
from fer_bench.errors import FerBenchError


@dataclass(frozen=True)
class ResolvedDevice:
    """The outcome of resolve_device: a usable device, or the reason there is none."""

    name: str
    device: torch.device | None
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.device is not None


def cuda_device_count() -> int:
    """CUDA devices visible to this process (0 without a driver); never raises."""
    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken driver install must not crash collection
        return 0


def resolve_device(name: str, num_gpus: int = 1) -> ResolvedDevice:
    """Resolve ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Returns a ResolvedDevice whose ``reason`` says why the device cannot run here (no CUDA device, index out of
    range, fewer GPUs than ``num_gpus``); bad spellings raise FerBenchError.
    """
    try:
        name = parse_device_name(name)
    except ValueError as exc:
        raise FerBenchError(f"device: {exc}") from None
    if name == "cpu":
        if num_gpus > 1:
            return ResolvedDevice(name, None, f"num_gpus={num_gpus} needs a GPU device, not cpu")
        return ResolvedDevice(name, torch.device("cpu"))
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            return ResolvedDevice(name, None, "no MPS device (Apple GPU) on this machine")
        if num_gpus > 1:
            return ResolvedDevice(name, None, f"num_gpus={num_gpus}: MPS has one device")
        return ResolvedDevice(name, torch.device("mps"))
    count = cuda_device_count()
    if count == 0:
        return ResolvedDevice(name, None, "no CUDA device on this machine")
    index = int(name.split(":")[1]) if ":" in name else 0
    if index >= count:
        return ResolvedDevice(name, None, f"{name} requested but only {count} CUDA device(s) present")
    if index + num_gpus > count:
        return ResolvedDevice(name, None, f"num_gpus={num_gpus} requested but only {count - index} CUDA "
                                          f"device(s) present from {name}")
    return ResolvedDevice(name, torch.device("cuda", index))


def synchronize(device: torch.device | str | None) -> None:
    """Wait for queued work on ``device``: CUDA and MPS run asynchronously, the CPU does not."""
    if device is None:
        return
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
