"""The visible NVIDIA GPUs' static facts (model, memory, compute capability, clocks, power limits, PCIe, MIG,
NVLink) and the driver's versions, from NVML."""

from __future__ import annotations

from typing import Any

from fer_bench.machine._collect import GIB
from fer_bench.machine.nvml import GuardedNvml, nvml_error, nvml_gpu_count, open_nvml, watts


def _count_nvlinks(nvml: GuardedNvml, handle: Any) -> int | None:
    """Active NVLink links; None when NVML answers no link at all (PCIe boards, old drivers)."""
    active, answered = 0, False
    for link in range(nvml.const("NVML_NVLINK_MAX_LINKS", 18)):
        state = nvml("nvmlDeviceGetNvLinkState", handle, link)
        if state is not None:
            answered = True
            active += state == nvml.const("NVML_FEATURE_ENABLED", 1)
    return active if answered else None


def _collect_gpu(nvml: GuardedNvml, index: int, handle: Any) -> dict:
    mem = nvml("nvmlDeviceGetMemoryInfo", handle)
    cc = nvml("nvmlDeviceGetCudaComputeCapability", handle)
    mig = nvml("nvmlDeviceGetMigMode", handle)
    total = getattr(mem, "total", None)
    return {
        "index": index,
        "name": nvml("nvmlDeviceGetName", handle),
        "uuid": nvml("nvmlDeviceGetUUID", handle),
        "memory_total_bytes": total,
        "memory_total_gib": round(total / GIB) if total else None,
        "compute_capability": f"{cc[0]}.{cc[1]}" if isinstance(cc, (tuple, list)) and len(cc) == 2 else None,
        "max_sm_clock_mhz": nvml("nvmlDeviceGetMaxClockInfo", handle, nvml.const("NVML_CLOCK_SM", 1)),
        "max_memory_clock_mhz": nvml("nvmlDeviceGetMaxClockInfo", handle, nvml.const("NVML_CLOCK_MEM", 2)),
        "power_limit_w": watts(nvml("nvmlDeviceGetPowerManagementLimit", handle)),
        "enforced_power_limit_w": watts(nvml("nvmlDeviceGetEnforcedPowerLimit", handle)),
        "pcie_max_generation": nvml("nvmlDeviceGetMaxPcieLinkGeneration", handle),
        "pcie_max_width": nvml("nvmlDeviceGetMaxPcieLinkWidth", handle),
        "mig_mode": None if not mig else
        ("enabled" if mig[0] == nvml.const("NVML_DEVICE_MIG_ENABLE", 1) else "disabled"),
        "nvlink_active_links": _count_nvlinks(nvml, handle),
    }


def collect_gpu_info(info: dict) -> None:
    """Visible NVIDIA GPUs into ``info["gpus"]`` and driver facts into ``info["software"]``; [] without NVML."""
    sw = info.setdefault("software", {})
    nvml, handles = open_nvml()
    info["gpus"] = [_collect_gpu(nvml, i, h) for i, h in handles] if nvml else []
    cuda = nvml("nvmlSystemGetCudaDriverVersion_v2") or nvml("nvmlSystemGetCudaDriverVersion") if nvml else None
    sw["nvidia_driver_version"] = nvml("nvmlSystemGetDriverVersion") if nvml else None
    sw["cuda_driver_version"] = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else None
    sw["nvml_version"] = nvml("nvmlSystemGetNVMLVersion") if nvml else None
    sw["nvml_gpu_count"] = nvml_gpu_count()
    sw["nvml_error"] = nvml_error()
