"""Telemetry: the readings that drift (load, free memory, CPU clock, GPU clocks, temperatures, power, throttling).

`collect_telemetry()` reads no py-cpuinfo and keeps NVML initialised, so it is cheap enough to call per benchmark
result.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from fer_bench.machine import host
from fer_bench.machine._collect import read_text, sanitize, try_call, utc_now
from fer_bench.machine.nvml import GuardedNvml, open_nvml, watts

# NVML's clocks-event (formerly throttle) reason bits, fixed by nvml.h; a table, so old bindings decode the same.
CLOCK_EVENT_REASONS = (
    (0x1, "gpu_idle"), (0x2, "applications_clocks_setting"), (0x4, "sw_power_cap"), (0x8, "hw_slowdown"),
    (0x10, "sync_boost"), (0x20, "sw_thermal_slowdown"), (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"), (0x100, "display_clock_setting"),
)


def decode_clock_event_reasons(mask: int) -> list[str]:
    """Names of the bits set in an NVML clocks-event (throttle) reason mask; [] means running unthrottled."""
    names = [name for bit, name in CLOCK_EVENT_REASONS if mask & bit]
    known = sum(bit for bit, _ in CLOCK_EVENT_REASONS)
    names += [f"unknown_{1 << b:#x}" for b in range(64) if mask & ~known & (1 << b)]
    return names


def _collect_gpu_telemetry(nvml: GuardedNvml, index: int, handle: Any) -> dict:
    mem = nvml("nvmlDeviceGetMemoryInfo", handle)
    util = nvml("nvmlDeviceGetUtilizationRates", handle)
    reasons = nvml("nvmlDeviceGetCurrentClocksEventReasons", handle)
    if reasons is None:  # drivers before 535 know only the older name
        reasons = nvml("nvmlDeviceGetCurrentClocksThrottleReasons", handle)
    processes = nvml("nvmlDeviceGetComputeRunningProcesses", handle)
    return {
        "index": index,
        "sm_clock_mhz": nvml("nvmlDeviceGetClockInfo", handle, nvml.const("NVML_CLOCK_SM", 1)),
        "memory_clock_mhz": nvml("nvmlDeviceGetClockInfo", handle, nvml.const("NVML_CLOCK_MEM", 2)),
        "temperature_c": nvml("nvmlDeviceGetTemperature", handle, nvml.const("NVML_TEMPERATURE_GPU", 0)),
        "power_w": watts(nvml("nvmlDeviceGetPowerUsage", handle)),
        "utilization_gpu_pct": getattr(util, "gpu", None),
        "utilization_memory_pct": getattr(util, "memory", None),
        "memory_used_bytes": getattr(mem, "used", None),
        "clocks_event_reasons": decode_clock_event_reasons(reasons) if isinstance(reasons, int) else None,
        "process_count": len(processes) if processes is not None else None,
    }


def _cpu_mhz() -> float | None:
    """Mean current clock of the usable CPUs (cpufreq, else /proc/cpuinfo), at most 64 files read."""
    cpus = sorted(try_call(lambda: os.sched_getaffinity(0)) or range(os.cpu_count() or 1))[:64]
    khz = [try_call(lambda c=c: int(read_text(host.SYS_ROOT / f"devices/system/cpu/cpu{c}/cpufreq/scaling_cur_freq")))
           for c in cpus]
    khz = [k for k in khz if k]
    if khz:
        return round(sum(khz) / len(khz) / 1000, 1)
    return host.parse_proc_cpuinfo(read_text(host.PROC_ROOT / "cpuinfo") or "")["mhz"]


def collect_telemetry() -> dict:
    """Volatile readings (load, free memory, CPU MHz, GPU clocks, temperature, power, throttling) right now."""
    telemetry: dict[str, Any] = {"collected_at": utc_now()}
    telemetry["load_avg"] = try_call(lambda: [round(x, 2) for x in os.getloadavg()])
    meminfo = host.parse_meminfo(read_text(host.PROC_ROOT / "meminfo") or "")
    telemetry["memory_available_bytes"] = meminfo.get("memavailable")
    telemetry["cpu_mhz"] = try_call(_cpu_mhz)
    torch = sys.modules.get("torch")  # only when already imported: telemetry must stay cheap
    telemetry["torch_num_threads"] = try_call(torch.get_num_threads) if torch is not None else None
    nvml, handles = try_call(open_nvml) or (None, [])
    telemetry["gpus"] = [_collect_gpu_telemetry(nvml, i, h) for i, h in handles] if nvml else []
    return sanitize(telemetry)
