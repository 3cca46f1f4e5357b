"""resolve_precision: one place that turns fp32 / amp_fp16 / amp_bf16 / bf16 into autocast, dtype and scaler.

Also the explicit backend settings (TF32, cudnn.benchmark) that change what a precision means on NVIDIA GPUs:
they are set for every case, never inherited, and returned so results record them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager

import torch

from fer_bench.engine.config import PRECISIONS
from fer_bench.errors import FerBenchError


@dataclass(frozen=True)
class PrecisionPolicy:
    """How a precision runs on one device type."""

    name: str
    device_type: str
    autocast_dtype: torch.dtype | None
    param_dtype: torch.dtype
    grad_scaler: bool

    def autocast(self) -> ContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.autocast_dtype)

    def create_scaler(self) -> "torch.amp.GradScaler | None":
        """A GradScaler for fp16 autocast (fp16 gradients underflow without one), else None."""
        if not self.grad_scaler:
            return None
        return torch.amp.GradScaler(self.device_type)

    def settings(self) -> dict:
        """JSON-ready description for a result's extra_info."""
        return {
            "precision": self.name,
            "autocast_dtype": _dtype_name(self.autocast_dtype),
            "param_dtype": _dtype_name(self.param_dtype),
            "grad_scaler": self.grad_scaler,
        }


def _dtype_name(dtype: torch.dtype | None) -> str | None:
    return None if dtype is None else str(dtype).replace("torch.", "")


def _cuda_bf16_supported(device: torch.device) -> bool:
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8  # Ampere and newer have native bf16; older GPUs emulate it slowly or not at all


def precision_unavailable_reason(name: str, device: torch.device | str) -> str | None:
    """Why ``name`` cannot run on ``device``, or None when it can. The device must exist."""
    if name not in PRECISIONS:
        return f"precision {name!r} is not one of {', '.join(PRECISIONS)}"
    device = torch.device(device)
    if device.type == "cpu" and name == "amp_fp16":
        return "amp_fp16 is a GPU precision: fp16 autocast with GradScaler is not supported on cpu (use amp_bf16)"
    if device.type == "cuda" and name in ("amp_bf16", "bf16") and not _cuda_bf16_supported(device):
        return f"{name} needs a GPU with native bfloat16 (compute capability 8.0+)"
    if device.type == "mps" and name in ("amp_bf16", "bf16"):
        return f"{name} is not supported by fer_bench on mps"
    return None


def resolve_precision(name: str, device: torch.device | str) -> PrecisionPolicy:
    """The policy for ``name`` on ``device``; FerBenchError with the reason when the device cannot do it."""
    reason = precision_unavailable_reason(name, device)
    if reason:
        raise FerBenchError(reason)
    device_type = torch.device(device).type
    if name == "fp32":
        return PrecisionPolicy(name, device_type, None, torch.float32, False)
    if name == "amp_fp16":
        return PrecisionPolicy(name, device_type, torch.float16, torch.float32, True)
    if name == "amp_bf16":
        return PrecisionPolicy(name, device_type, torch.bfloat16, torch.float32, False)
    return PrecisionPolicy(name, device_type, None, torch.bfloat16, False)  # bf16: weights and inputs in bf16


def apply_backend_settings(*, tf32: bool, cudnn_benchmark: bool) -> dict:
    """Set TF32 and cudnn.benchmark explicitly and return the values in force, for extra_info.

    TF32 changes fp32 matmul and convolution results on Ampere and newer, so a run states it instead of taking
    PyTorch's default. torch >= 2.9 has the fp32_precision API; older releases the allow_tf32 flags.
    """
    matmul = torch.backends.cuda.matmul
    conv = getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and conv is not None and hasattr(conv, "fp32_precision"):
        value = "tf32" if tf32 else "ieee"
        matmul.fp32_precision = value
        conv.fp32_precision = value
    else:  # pragma: no cover - older torch
        matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = cudnn_benchmark
    return {"tf32": tf32, "cudnn_benchmark": cudnn_benchmark}
