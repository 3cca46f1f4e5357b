"""This machine's fingerprint: a hardware identity that says which machine it is, the software stack it runs,
and telemetry that drifts.

`collect_fingerprint()` composes small ``collect_*_info(info)`` functions (pyperf's habit); each mutates one dict
and tolerates a missing library, an unreadable /proc or /sys file or a missing NVIDIA driver: it records what it
could and never raises.

* ``identity`` (hardware): CPU model, flags and cores, cgroup CPU quota, memory (GiB), the visible GPUs' models,
  memory, compute capability and MIG mode. No hostname, no GPU UUIDs (sibling nodes of one model must match), no
  clocks, temperatures or free memory. ``identity_hash`` (the first 16 hex digits of the sha256 of its canonical
  JSON) decides "same machine" for the gates and keys the storage folder.
* ``stack`` (software): OS, kernel and distro, Python, the NVIDIA driver, torch / CUDA / cuDNN, and the malloc in
  use (``fer_bench.machine.allocator``); ``stack_hash`` likewise. The gates compare runs of the same hardware across
  stacks and name what changed, so a torch or driver upgrade that slows training shows as a regression.
* ``slug``: a readable folder name of the hardware such as ``epyc-7763-16c__h100-80gb-x1``. Two different
  identities can share a slug: results are stored under the slug and the identity hash is the arbiter.
* ``telemetry``: clocks, temperatures, power, throttle reasons, load, free memory. `collect_telemetry()` reads
  no py-cpuinfo and keeps NVML initialised, so it is cheap enough to call per benchmark result.

Identity, stack, hashes, slug and the sidecar's name are built by the torch-free ``fer_bench.machine.identity``,
which the results readers share.

GPU facts come from NVML (nvidia-ml-py), not from CUDA, so fingerprinting creates no CUDA context (the one CUDA
call, torch.cuda.device_count(), initialises the driver but makes no context). GPUs hidden by
CUDA_VISIBLE_DEVICES (read once, when NVML is first opened) are left out: the fingerprint describes what a
benchmark in this process can use.
"""

from __future__ import annotations

import atexit
import copy
import datetime as _dt
import math
import os
import platform
import re
import socket
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from fer_bench import __version__
from fer_bench.machine.identity import (
    SCHEMA,
    collect_isa_cap,
    create_hardware_identity,
    create_stack,
    hash_identity,
    make_slug,
    sidecar_path,
)

# Module attributes rather than constants inside functions so tests can point them at a fake tree.
PROC_ROOT = Path("/proc")
SYS_ROOT = Path("/sys")
CGROUP_ROOT = Path("/sys/fs/cgroup")
OS_RELEASE = Path("/etc/os-release")

CPU_FLAGS = ("sse4_2", "fma", "avx", "avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
ENV_VARS = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
    "OMP_PROC_BIND", "OMP_PLACES", "KMP_AFFINITY", "KMP_BLOCKTIME", "GOMP_CPU_AFFINITY",
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "CUDA_LAUNCH_BLOCKING", "CUBLAS_WORKSPACE_CONFIG",
    "PYTORCH_CUDA_ALLOC_CONF", "NCCL_P2P_DISABLE", "NCCL_IB_DISABLE", "NCCL_ALGO", "NCCL_PROTO",
)
_DISTRIBUTIONS = {"torch": "torch", "torchvision": "torchvision", "timm": "timm", "numpy": "numpy",
                  "pytest_benchmark": "pytest-benchmark", "nvidia_ml_py": "nvidia-ml-py"}
# NVML's clocks-event (formerly throttle) reason bits, fixed by nvml.h; a table, so old bindings decode the same.
CLOCK_EVENT_REASONS = (
    (0x1, "gpu_idle"), (0x2, "applications_clocks_setting"), (0x4, "sw_power_cap"), (0x8, "hw_slowdown"),
    (0x10, "sync_boost"), (0x20, "sw_thermal_slowdown"), (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"), (0x100, "display_clock_setting"),
)
_GIB = 2**30

_CPUINFO_CACHE: dict | None = None
_FINGERPRINT: dict | None = None
_NVML: dict[str, Any] = {}
_ATEXIT_REGISTERED = False


# ----------------------------------------------------------------------------------------------------- helpers
def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError):
        return None


def _try(fn: Callable[[], Any]) -> Any:
    """``fn()``, or None when it raises: one missing fact must not cost the others."""
    try:
        return fn()
    except Exception:
        return None


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _sanitize(obj: Any) -> Any:
    """Make ``obj`` strict JSON: str keys, lists for tuples, no NaN, no newline inside a string."""
    if isinstance(obj, dict):
        return {str(k): _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    if isinstance(obj, bytes):
        obj = obj.decode("utf-8", errors="replace")
    if isinstance(obj, str):
        return " ".join(obj.split()) if ("\n" in obj or "\r" in obj) else obj
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    return str(obj)


# --------------------------------------------------------------------------------------------------------- CPU
def _get_cpuinfo() -> dict:
    """py-cpuinfo's dict, computed once per process: it takes up to a second and may spawn a subprocess."""
    global _CPUINFO_CACHE
    if _CPUINFO_CACHE is None:
        try:
            import cpuinfo

            _CPUINFO_CACHE = dict(cpuinfo.get_cpu_info())
        except Exception as exc:
            _CPUINFO_CACHE = {"error": f"{type(exc).__name__}: {exc}"}
    return _CPUINFO_CACHE


def parse_proc_cpuinfo(text: str) -> dict:
    """Physical cores, sockets, model name, flags and mean MHz from /proc/cpuinfo text (None where absent)."""
    pairs: set[tuple[str, str]] = set()
    sockets: set[str] = set()
    mhz: list[float] = []
    first: dict[str, str] = {}
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip().lower()] = value.strip()
        first = first or fields
        if "physical id" in fields and "core id" in fields:
            pairs.add((fields["physical id"], fields["core id"]))
            sockets.add(fields["physical id"])
        mhz_value = _try(lambda: float(fields["cpu mhz"]))
        if mhz_value is not None:
            mhz.append(mhz_value)
    return {"physical_cores": len(pairs) or None, "sockets": len(sockets) or None,
            "model_name": first.get("model name"), "flags": (first.get("flags") or "").split(),
            "mhz": round(sum(mhz) / len(mhz), 1) if mhz else None}


def _sysfs_topology() -> tuple[int | None, int | None]:
    """(physical cores, sockets) from /sys topology, for kernels whose /proc/cpuinfo lacks core ids (ARM)."""
    pairs, packages = set(), set()
    for topo in (SYS_ROOT / "devices/system/cpu").glob("cpu[0-9]*/topology"):
        package, core = _read_text(topo / "physical_package_id"), _read_text(topo / "core_id")
        if package is not None and core is not None:
            pairs.add((package.strip(), core.strip()))
            packages.add(package.strip())
    return len(pairs) or None, len(packages) or None


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line ("150000 100000" -> 1.5); None for "max" or bad text."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    return _quota_ratio(parts[0], parts[1])


def _quota_ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return round(q / p, 3) if q > 0 and p > 0 else None


def collect_cgroup_cpu_quota() -> float | None:
    """The tightest cgroup CPU quota (in CPUs) on this process's cgroup path, v2 or v1; None when unlimited."""
    v2_rel, v1_rel = "/", "/"
    for line in (_read_text(PROC_ROOT / "self/cgroup") or "").splitlines():
        _, controllers, rel = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":
            v2_rel = rel or "/"
        elif "cpu" in controllers.split(","):
            v1_rel = rel or "/"

    def chain(base: Path, rel: str) -> list[Path]:
        # The effective limit is the smallest along the path; without a cgroup namespace the path may not exist
        # under the mount, so the mount root itself (the container's own cgroup) is always read too.
        node, out = base / rel.strip("/"), [base]
        while node != base and base in node.parents:
            out.append(node)
            node = node.parent
        return out

    quotas: list[float | None] = []
    for d in chain(CGROUP_ROOT, v2_rel):
        text = _read_text(d / "cpu.max")
        quotas.append(parse_cpu_max(text) if text else None)
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for d in chain(CGROUP_ROOT / mount, v1_rel):
            quota, period = _read_text(d / "cpu.cfs_quota_us"), _read_text(d / "cpu.cfs_period_us")
            quotas.append(_quota_ratio(quota.strip(), period.strip()) if quota and period else None)
    found = [q for q in quotas if q is not None]
    return min(found) if found else None


def resolve_effective_cpus(usable: int | None, quota: float | None) -> int | None:
    """CPUs a benchmark can keep busy: the affinity mask, capped by the cgroup quota (rounded up)."""
    if quota is None:
        return usable
    capped = max(1, math.ceil(quota))
    return min(usable, capped) if usable else capped


def collect_cpu_info(info: dict) -> None:
    """CPU model, flags, cores, cgroup quota, governor and turbo into ``info["cpu"]``."""
    cpu = info.setdefault("cpu", {})
    ci = _get_cpuinfo()
    proc = parse_proc_cpuinfo(_read_text(PROC_ROOT / "cpuinfo") or "")
    cpu["brand"] = ci.get("brand_raw") or proc["model_name"] or platform.processor() or None
    cpu["arch"] = platform.machine() or ci.get("arch_string_raw")
    cpu["vendor"] = ci.get("vendor_id_raw")
    for key in ("family", "model", "stepping"):
        cpu[key] = ci.get(key)
    hz = ci.get("hz_advertised")
    cpu["hz_advertised"] = hz[0] if isinstance(hz, (list, tuple)) and hz and hz[0] else None
    for key in ("l1_data_cache_size", "l1_instruction_cache_size", "l2_cache_size", "l3_cache_size"):
        cpu[key] = ci.get(key)
    flags = set(ci.get("flags") or ()) | set(proc["flags"])
    cpu["flags"] = [f for f in CPU_FLAGS if f in flags]
    cpu["logical_cores"] = os.cpu_count()
    physical, sockets = proc["physical_cores"], proc["sockets"]
    if physical is None:
        physical, sockets = _sysfs_topology()
    cpu["physical_cores"], cpu["sockets"] = physical, sockets
    usable = _try(lambda: len(os.sched_getaffinity(0))) or os.cpu_count()
    cpu["usable_cpus"] = usable
    cpu["cgroup_cpu_quota"] = collect_cgroup_cpu_quota()
    cpu["effective_cpus"] = resolve_effective_cpus(usable, cpu["cgroup_cpu_quota"])
    cpufreq = SYS_ROOT / "devices/system/cpu/cpu0/cpufreq"
    cpu["governor"] = (_read_text(cpufreq / "scaling_governor") or "").strip() or None
    cpu["scaling_driver"] = (_read_text(cpufreq / "scaling_driver") or "").strip() or None
    no_turbo = _read_text(SYS_ROOT / "devices/system/cpu/intel_pstate/no_turbo")
    boost = _read_text(SYS_ROOT / "devices/system/cpu/cpufreq/boost")
    cpu["turbo"] = (no_turbo.strip() == "0") if no_turbo else (boost.strip() == "1") if boost else None
    cap = collect_isa_cap()
    if cap:
        cpu["isa_cap"] = cap
    cpu["cpuinfo_version"] = ci.get("cpuinfo_version_string")
    if "error" in ci:
        cpu["cpuinfo_error"] = ci["error"]


# ----------------------------------------------------------------------------------------- memory and system
def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as {lowercased field: bytes}."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"(\w+):\s+(\d+)\s*(kB)?", line)
        if m:
            out[m.group(1).lower()] = int(m.group(2)) * (1024 if m.group(3) else 1)
    return out


def collect_memory_info(info: dict) -> None:
    """Total memory (bytes and rounded GiB) and swap into ``info["memory"]``; free memory is telemetry."""
    mem = info.setdefault("memory", {})
    fields = parse_meminfo(_read_text(PROC_ROOT / "meminfo") or "")
    total = fields.get("memtotal") or _try(lambda: os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    mem["total_bytes"] = total
    mem["total_gib"] = round(total / _GIB) if total else None
    mem["swap_total_bytes"] = fields.get("swaptotal")


def parse_os_release(text: str) -> dict[str, str]:
    """/etc/os-release as {lowercased key: unquoted value}."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            out[key.strip().lower()] = value.strip().strip("\"'")
    return out


def collect_system_info(info: dict) -> None:
    """OS, kernel, distro, Python and the hostname (recorded, never part of the identity)."""
    system = info.setdefault("system", {})
    system["os"] = platform.system() or None
    system["kernel"] = platform.release() or None
    distro = parse_os_release(_read_text(OS_RELEASE) or "").get("pretty_name")
    if not distro and platform.system() == "Darwin":
        distro = f"macOS {platform.mac_ver()[0]}"
    system["distro"] = distro or None
    system["machine"] = platform.machine() or None
    system["python_version"] = platform.python_version()
    system["python_implementation"] = platform.python_implementation()
    info["hostname"] = _try(socket.gethostname) or platform.node() or None


# ---------------------------------------------------------------------------------------------------- software
def _format_cudnn(version: int | None) -> str | None:
    if not version:
        return None
    # cuDNN 9 packs major*10000 + minor*100 + patch; earlier releases major*1000 + minor*100 + patch.
    major, rest = divmod(version, 10000) if version >= 90000 else divmod(version, 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def collect_software_info(info: dict) -> None:
    """Package versions, torch's CUDA / cuDNN / NCCL and threads, and the thread / device env vars.

    torch is imported here, never at module level; nothing below creates a CUDA context.
    """
    from fer_bench.machine.allocator import describe_malloc

    sw = info.setdefault("software", {})
    sw["fer_bench"] = __version__
    sw["malloc"] = _try(describe_malloc)
    for key, dist in _DISTRIBUTIONS.items():
        sw[key] = _try(lambda: metadata.version(dist))
    try:
        import torch
    except Exception as exc:
        sw["torch"] = None
        sw["torch_error"] = f"{type(exc).__name__}: {exc}"
    else:
        sw["torch"] = _try(lambda: str(torch.__version__))
        sw["torch_cuda"] = _try(lambda: torch.version.cuda)
        sw["torch_hip"] = _try(lambda: torch.version.hip)
        sw["cudnn"] = _format_cudnn(_try(torch.backends.cudnn.version)) if sw["torch_cuda"] else None
        nccl = _try(torch.cuda.nccl.version) if sw["torch_cuda"] else None
        sw["nccl"] = ".".join(map(str, nccl)) if isinstance(nccl, (tuple, list)) else (str(nccl) if nccl else None)
        sw["cuda_device_count"] = _try(torch.cuda.device_count)
        sw["torch_num_threads"] = _try(torch.get_num_threads)
        sw["torch_num_interop_threads"] = _try(torch.get_num_interop_threads)
        for name in ("mkldnn", "mkl", "openmp"):
            sw[f"{name}_available"] = _try(lambda: bool(getattr(torch.backends, name).is_available()))
    sw["env"] = {name.lower(): os.environ[name] for name in ENV_VARS if name in os.environ}


# -------------------------------------------------------------------------------------------------------- NVML
class _Nvml:
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


def _close_nvml() -> None:
    # A forked child inherits the parent's state but must not shut down the parent's NVML session.
    if _NVML.get("initialised") and _NVML.get("pid") == os.getpid():
        _try(lambda: _NVML["module"].nvmlShutdown())
    _NVML.clear()


def _open_nvml() -> tuple[_Nvml | None, list[tuple[int, Any]]]:
    """NVML, initialised once per process (and per pynvml module, so tests can swap in a fake).

    Returns the guarded module and the (NVML index, handle) pairs of the visible GPUs. Failures are kept in
    ``_NVML["error"]`` and are not retried: a machine without a driver pays for the attempt once.
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
    _close_nvml()
    _NVML.update(key=key, pid=os.getpid(), module=pynvml, nvml=None, handles=[], error=error, count=None)
    if pynvml is None:
        return None, []
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        _NVML["error"] = f"nvmlInit failed: {_try(exc.__str__) or type(exc).__name__}"  # NVMLError.__str__ calls NVML
        return None, []
    if not _ATEXIT_REGISTERED:
        atexit.register(_close_nvml)
        _ATEXIT_REGISTERED = True
    _NVML.update(initialised=True, nvml=_Nvml(pynvml))
    nvml = _NVML["nvml"]
    count = nvml("nvmlDeviceGetCount") or 0
    handles = [nvml("nvmlDeviceGetHandleByIndex", i) for i in range(count)]
    uuids = [nvml("nvmlDeviceGetUUID", h) if h is not None else None for h in handles]
    visible = resolve_visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), uuids)
    _NVML.update(count=count, handles=[(i, handles[i]) for i in visible if handles[i] is not None])
    return nvml, _NVML["handles"]


def _watts(milliwatts: Any) -> float | None:
    return round(milliwatts / 1000, 1) if isinstance(milliwatts, (int, float)) else None


def _count_nvlinks(nvml: _Nvml, handle: Any) -> int | None:
    """Active NVLink links; None when NVML answers no link at all (PCIe boards, old drivers)."""
    active, answered = 0, False
    for link in range(nvml.const("NVML_NVLINK_MAX_LINKS", 18)):
        state = nvml("nvmlDeviceGetNvLinkState", handle, link)
        if state is not None:
            answered = True
            active += state == nvml.const("NVML_FEATURE_ENABLED", 1)
    return active if answered else None


def _collect_gpu(nvml: _Nvml, index: int, handle: Any) -> dict:
    mem = nvml("nvmlDeviceGetMemoryInfo", handle)
    cc = nvml("nvmlDeviceGetCudaComputeCapability", handle)
    mig = nvml("nvmlDeviceGetMigMode", handle)
    total = getattr(mem, "total", None)
    return {
        "index": index,
        "name": nvml("nvmlDeviceGetName", handle),
        "uuid": nvml("nvmlDeviceGetUUID", handle),
        "memory_total_bytes": total,
        "memory_total_gib": round(total / _GIB) if total else None,
        "compute_capability": f"{cc[0]}.{cc[1]}" if isinstance(cc, (tuple, list)) and len(cc) == 2 else None,
        "max_sm_clock_mhz": nvml("nvmlDeviceGetMaxClockInfo", handle, nvml.const("NVML_CLOCK_SM", 1)),
        "max_memory_clock_mhz": nvml("nvmlDeviceGetMaxClockInfo", handle, nvml.const("NVML_CLOCK_MEM", 2)),
        "power_limit_w": _watts(nvml("nvmlDeviceGetPowerManagementLimit", handle)),
        "enforced_power_limit_w": _watts(nvml("nvmlDeviceGetEnforcedPowerLimit", handle)),
        "pcie_max_generation": nvml("nvmlDeviceGetMaxPcieLinkGeneration", handle),
        "pcie_max_width": nvml("nvmlDeviceGetMaxPcieLinkWidth", handle),
        "mig_mode": None if not mig else
        ("enabled" if mig[0] == nvml.const("NVML_DEVICE_MIG_ENABLE", 1) else "disabled"),
        "nvlink_active_links": _count_nvlinks(nvml, handle),
    }


def decode_clock_event_reasons(mask: int) -> list[str]:
    """Names of the bits set in an NVML clocks-event (throttle) reason mask; [] means running unthrottled."""
    names = [name for bit, name in CLOCK_EVENT_REASONS if mask & bit]
    known = sum(bit for bit, _ in CLOCK_EVENT_REASONS)
    names += [f"unknown_{1 << b:#x}" for b in range(64) if mask & ~known & (1 << b)]
    return names


def _collect_gpu_telemetry(nvml: _Nvml, index: int, handle: Any) -> dict:
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
        "power_w": _watts(nvml("nvmlDeviceGetPowerUsage", handle)),
        "utilization_gpu_pct": getattr(util, "gpu", None),
        "utilization_memory_pct": getattr(util, "memory", None),
        "memory_used_bytes": getattr(mem, "used", None),
        "clocks_event_reasons": decode_clock_event_reasons(reasons) if isinstance(reasons, int) else None,
        "process_count": len(processes) if processes is not None else None,
    }


def collect_gpu_info(info: dict) -> None:
    """Visible NVIDIA GPUs into ``info["gpus"]`` and driver facts into ``info["software"]``; [] without NVML."""
    sw = info.setdefault("software", {})
    nvml, handles = _open_nvml()
    info["gpus"] = [_collect_gpu(nvml, i, h) for i, h in handles] if nvml else []
    cuda = nvml("nvmlSystemGetCudaDriverVersion_v2") or nvml("nvmlSystemGetCudaDriverVersion") if nvml else None
    sw["nvidia_driver_version"] = nvml("nvmlSystemGetDriverVersion") if nvml else None
    sw["cuda_driver_version"] = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else None
    sw["nvml_version"] = nvml("nvmlSystemGetNVMLVersion") if nvml else None
    sw["nvml_gpu_count"] = _NVML.get("count")
    sw["nvml_error"] = _NVML.get("error")


# --------------------------------------------------------------------------------------------------- telemetry
def _cpu_mhz() -> float | None:
    """Mean current clock of the usable CPUs (cpufreq, else /proc/cpuinfo), at most 64 files read."""
    cpus = sorted(_try(lambda: os.sched_getaffinity(0)) or range(os.cpu_count() or 1))[:64]
    khz = [_try(lambda c=c: int(_read_text(SYS_ROOT / f"devices/system/cpu/cpu{c}/cpufreq/scaling_cur_freq")))
           for c in cpus]
    khz = [k for k in khz if k]
    if khz:
        return round(sum(khz) / len(khz) / 1000, 1)
    return parse_proc_cpuinfo(_read_text(PROC_ROOT / "cpuinfo") or "")["mhz"]


def collect_telemetry() -> dict:
    """Volatile readings (load, free memory, CPU MHz, GPU clocks, temperature, power, throttling) right now."""
    telemetry: dict[str, Any] = {"collected_at": _utc_now()}
    telemetry["load_avg"] = _try(lambda: [round(x, 2) for x in os.getloadavg()])
    telemetry["memory_available_bytes"] = parse_meminfo(_read_text(PROC_ROOT / "meminfo") or "").get("memavailable")
    telemetry["cpu_mhz"] = _try(_cpu_mhz)
    torch = sys.modules.get("torch")  # only when already imported: telemetry must stay cheap
    telemetry["torch_num_threads"] = _try(torch.get_num_threads) if torch is not None else None
    nvml, handles = _try(_open_nvml) or (None, [])
    telemetry["gpus"] = [_collect_gpu_telemetry(nvml, i, h) for i, h in handles] if nvml else []
    return _sanitize(telemetry)


# ---------------------------------------------------------------------------------------------------- identity
def _diff(path: str, a: Any, b: Any, out: list[tuple[str, Any, Any]]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            _diff(f"{path}.{key}" if path else key, a.get(key), b.get(key), out)
    elif (isinstance(a, list) and isinstance(b, list)
          and any(isinstance(v, dict) for v in a + b)):
        for i in range(max(len(a), len(b))):
            _diff(f"{path}.{i}", a[i] if i < len(a) else None, b[i] if i < len(b) else None, out)
    elif a != b:
        out.append((path, a, b))


def identity_diff(a_fp: dict, b_fp: dict) -> list[tuple[str, Any, Any]]:
    """Hardware identity fields that differ, as (dotted path, a's value, b's value); fingerprints or identities.

    The software stack's changes: ``identity.stack_changes``."""
    out: list[tuple[str, Any, Any]] = []
    _diff("", a_fp.get("identity", a_fp), b_fp.get("identity", b_fp), out)
    return out


# ------------------------------------------------------------------------------------------------ fingerprint
def collect_fingerprint(*, refresh: bool = False) -> dict:
    """This machine's fingerprint, collected once per process (``refresh=True`` collects again); a copy."""
    global _FINGERPRINT, _CPUINFO_CACHE
    if refresh:
        _FINGERPRINT, _CPUINFO_CACHE = None, None
        _close_nvml()
    if _FINGERPRINT is None:
        info: dict[str, Any] = {"errors": []}
        for collect in (collect_cpu_info, collect_memory_info, collect_system_info, collect_software_info,
                        collect_gpu_info):
            try:
                collect(info)
            except Exception as exc:  # a bug in one collector must not cost the others
                info["errors"].append(f"{collect.__name__}: {type(exc).__name__}: {exc}")
        info = _sanitize(info)
        identity, stack = create_hardware_identity(info), create_stack(info)
        _FINGERPRINT = {
            "schema": SCHEMA, "fer_bench_version": __version__, "identity_hash": hash_identity(identity),
            "slug": make_slug(identity), "stack_hash": hash_identity(stack), "hostname": info.get("hostname"),
            "collected_at": _utc_now(), "identity": identity, "stack": stack,
            **{k: info.get(k, {}) for k in ("cpu", "memory", "system", "software")},
            "gpus": info.get("gpus", []), "telemetry": collect_telemetry(), "errors": info["errors"],
        }
    return copy.deepcopy(_FINGERPRINT)


def write_sidecar(results_path: str | os.PathLike, fp: dict | None = None) -> Path:
    """Write the fingerprint beside a results file (``NAME.fingerprint``, see ``identity.sidecar_path``),
    atomically; returns the sidecar's path."""
    from fer_bench._atomic import write_json_atomic

    return write_json_atomic(sidecar_path(results_path), collect_fingerprint() if fp is None else fp)


# Reports of a fingerprint live in their own module; re-exported for `fer_bench.machine.fingerprint.format_fingerprint`.
from fer_bench.machine.report import format_fingerprint, to_mlperf  # noqa: E402,F401
