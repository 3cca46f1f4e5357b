"""resolve_precision: one place that turns fp32 / amp_fp16 / amp_bf16 / bf16 into autocast, dtype and scaler.

Also the explicit backend settings (TF32, cudnn.benchmark) that change what a precision means on NVIDIA GPUs:
they are set for every case, never inherited, and returned so results record them. And whether the hardware runs a
precision natively (resolve_precision_native): bf16 on a CPU without avx512_bf16 or amx_bf16 is emulated, and
slower than fp32 there.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import ContextManager, Iterable, Mapping

import torch

from fer_bench.axes import PRECISIONS
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


#: CPU flags (as the fingerprint names them) of native bfloat16 and float16 arithmetic.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
FP16_CPU_FLAGS = ("avx512_fp16", "amx_fp16")
#: oneDNN ISA caps that keep bf16 instructions (ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA values, upper case).
_ONEDNN_BF16_ISAS = ("ALL", "DEFAULT", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX",
                     "AVX512_CORE_AMX_FP16", "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16")


def find_isa_cap(env: Mapping[str, str]) -> str | None:
    """The environment variable that keeps torch off native bf16 on the CPU, as ``NAME=value``, or None.

    ``ATEN_CPU_CAPABILITY`` below avx512 (default, avx2) caps ATen's vectorised kernels; ``ONEDNN_MAX_CPU_ISA``
    (older name ``DNNL_MAX_CPU_ISA``) below AVX512_CORE_BF16 caps oneDNN's convolutions and matmuls, which then
    convert bf16 to fp32 and back around fp32 arithmetic.
    """
    aten = (env.get("ATEN_CPU_CAPABILITY") or "").strip()
    if aten and not aten.lower().startswith("avx512"):
        return f"ATEN_CPU_CAPABILITY={aten}"
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        isa = (env.get(var) or "").strip()
        if isa and isa.upper() not in _ONEDNN_BF16_ISAS:
            return f"{var}={isa}"
    return None


def resolve_precision_native(name: str, device_type: str, *, cpu_flags: Iterable[str] = (),
                             env: Mapping[str, str] | None = None,
                             cuda_capability: tuple[int, int] | None = None) -> tuple[bool, str | None]:
    """Whether the hardware runs ``name`` natively, and when not, a note that says why a slow result is expected.

    bf16 (amp_bf16, bf16) is native on a CPU with avx512_bf16 or amx_bf16, unless an environment variable caps
    torch's ISA below them (find_isa_cap); fp16 on a CPU needs avx512_fp16 or amx_fp16. On CUDA, bf16 is native
    from compute capability 8.0 and fp16 everywhere; on mps, fp16. fp32 is always native.

    Args:
        cpu_flags: the fingerprint's CPU flags (``fingerprint["cpu"]["flags"]``).
        env: the environment (os.environ when None).
        cuda_capability: the GPU's (major, minor), where known.
    """
    if name == "fp32" or name not in PRECISIONS:
        return True, None
    bf16 = name in ("amp_bf16", "bf16")
    expected = "slower than fp32 here is expected, not a bug"
    if device_type == "cpu":
        wanted = BF16_CPU_FLAGS if bf16 else FP16_CPU_FLAGS
        have = [f for f in wanted if f in set(cpu_flags)]
        if not have:
            return False, f"{name} is emulated on this CPU (no {'/'.join(wanted)}): {expected}"
        cap = find_isa_cap(os.environ if env is None else env) if bf16 else None
        if cap:
            return False, f"{name} is emulated on this CPU ({cap} keeps torch off {have[0]}): {expected}"
        return True, None
    if device_type == "cuda":
        if bf16 and cuda_capability is not None and tuple(cuda_capability) < (8, 0):
            major, minor = cuda_capability
            return False, f"{name} is emulated on this GPU (compute capability {major}.{minor}, below 8.0): {expected}"
        return True, None
    if device_type == "mps" and bf16:
        return False, f"{name} is emulated on mps: {expected}"
    return True, None


def describe_precision_native(name: str, device: torch.device | str, cpu_flags: Iterable[str] = ()) -> dict:
    """extra_info's ``precision_native`` (and ``precision_note`` when emulated) for ``name`` on ``device``."""
    device = torch.device(device)
    capability = None
    if device.type == "cuda" and torch.cuda.is_available():
        capability = torch.cuda.get_device_capability(device)
    native, note = resolve_precision_native(name, device.type, cpu_flags=cpu_flags, cuda_capability=capability)
    return {"precision_native": native, **({"precision_note": note} if note else {})}


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
