"""NVML, opened once per process: the guarded pynvml module and the handles of the GPUs CUDA_VISIBLE_DEVICES
exposes, for the GPU facts, the telemetry and the energy meter alike.

GPU facts come from NVML (nvidia-ml-py), not from CUDA, so reading them creates no CUDA context. The GPUs hidden by
CUDA_VISIBLE_DEVICES (read once, when NVML is first opened) are left out: what is read describes what a benchmark
in this process can use.
"""

from __future__ import annotations

import atexit
import os
import re
from typing import Any

from fer_bench.machine._collect import try_call

_NVML: dict[str, Any] = {}
_ATEXIT_REGISTERED = False


class GuardedNvml:
    """A pynvml module whose every call is guarded: an error or a function missing from an old binding -> None."""

    def __init__(self, module: Any):
        self.module = module

    def __call__(self, name: str, *args: Any) -> Any:
        fn = getattr(self.module, name, None)
        if fn is None:
            return None
        try:
            value = fn(*args)
        except Exception:
            return None
        return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value

    def const(self, name: str, default: int) -> int:
        return getattr(self.module, name, default)


def resolve_visible_gpus(cuda_visible_devices: str | None, uuids: list[str | None]) -> list[int]:
    """NVML indices of the GPUs CUDA_VISIBLE_DEVICES exposes (indices or GPU-UUID prefixes, CUDA's rules).

    CUDA stops at the first entry it cannot resolve; a MIG entry cannot be mapped here, so it keeps every GPU.
    """
    if cuda_visible_devices is None:
        return list(range(len(uuids)))
    out: list[int] = []
    for token in (t.strip() for t in cuda_visible_devices.split(",")):
        if token.startswith("MIG-"):
            return list(range(len(uuids)))
        if re.fullmatch(r"\d+", token):
            index = int(token)
            if index >= len(uuids):
                break
        else:
            matches = [i for i, u in enumerate(uuids) if token.startswith("GPU-") and u and u.startswith(token)]
            if len(matches) != 1:
                break
            index = matches[0]
        if index not in out:
            out.append(index)
    return out


def close_nvml() -> None:
    """Shut NVML down (when this process opened it) and forget its state, so the next ``open_nvml()`` opens it anew."""
    # A forked child inherits the parent's state but must not shut down the parent's NVML session.
    if _NVML.get("initialised") and _NVML.get("pid") == os.getpid():
        try_call(lambda: _NVML["module"].nvmlShutdown())
    _NVML.clear()


def open_nvml() -> tuple[GuardedNvml | None, list[tuple[int, Any]]]:
    """NVML, initialised once per process (and per pynvml module, so tests can swap in a fake).

    Returns the guarded module and the (NVML index, handle) pairs of the visible GPUs. Failures are kept (see
    ``nvml_error()``) and are not retried: a machine without a driver pays for the attempt once.
    """
    global _ATEXIT_REGISTERED
    try:
        import pynvml
    except Exception as exc:
        pynvml, error = None, f"pynvml not importable: {type(exc).__name__}: {exc}"
    else:
        error = None
    key = (id(pynvml), os.getpid())
    if _NVML.get("key") == key:
        return _NVML["nvml"], _NVML["handles"]
    close_nvml()
    _NVML.update(key=key, pid=os.getpid(), module=pynvml, nvml=None, handles=[], error=error, count=None)
    if pynvml is None:
        return None, []
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        # NVMLError.__str__ calls into NVML, so it may itself fail
        _NVML["error"] = f"nvmlInit failed: {try_call(exc.__str__) or type(exc).__name__}"
        return None, []
    if not _ATEXIT_REGISTERED:
        atexit.register(close_nvml)
        _ATEXIT_REGISTERED = True
    _NVML.update(initialised=True, nvml=GuardedNvml(pynvml))
    nvml = _NVML["nvml"]
    count = nvml("nvmlDeviceGetCount") or 0
    handles = [nvml("nvmlDeviceGetHandleByIndex", i) for i in range(count)]
    uuids = [nvml("nvmlDeviceGetUUID", h) if h is not None else None for h in handles]
    visible = resolve_visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), uuids)
    _NVML.update(count=count, handles=[(i, handles[i]) for i in visible if handles[i] is not None])
    return nvml, _NVML["handles"]


def nvml_error() -> str | None:
    """Why NVML could not be opened (pynvml missing, nvmlInit failed), or None."""
    return _NVML.get("error")


def nvml_gpu_count() -> int | None:
    """How many GPUs NVML sees, CUDA_VISIBLE_DEVICES aside; None before NVML is opened or when it failed."""
    return _NVML.get("count")


def watts(milliwatts: Any) -> float | None:
    """An NVML power reading (milliwatts) in watts, to 0.1 W; None for anything but a number."""
    return round(milliwatts / 1000, 1) if isinstance(milliwatts, (int, float)) else None
