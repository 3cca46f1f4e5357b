"""The host's CPU, memory and system facts, from py-cpuinfo, /proc, /sys, the cgroup tree and /etc/os-release.

Each ``collect_*_info(info)`` fills one section of the fingerprint's dict and tolerates an unreadable file or a
missing py-cpuinfo: it records what it could and never raises. The roots below are module attributes so that tests
(and fer_bench.machine.telemetry, which reads them as ``host.PROC_ROOT``) can point them at a fake tree.
"""

from __future__ import annotations

import math
import os
import platform
import re
import socket
from pathlib import Path

from fer_bench.machine._collect import GIB, read_text, try_call
from fer_bench.machine.identity import collect_isa_cap

PROC_ROOT = Path("/proc")
SYS_ROOT = Path("/sys")
CGROUP_ROOT = Path("/sys/fs/cgroup")
OS_RELEASE = Path("/etc/os-release")

CPU_FLAGS = ("sse4_2", "fma", "avx", "avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")

_CPUINFO_CACHE: dict | None = None


# --------------------------------------------------------------------------------------------------------- CPU
def get_cpuinfo() -> dict:
    """py-cpuinfo's dict, computed once per process: it takes up to a second and may spawn a subprocess."""
    global _CPUINFO_CACHE
    if _CPUINFO_CACHE is None:
        try:
            import cpuinfo

            _CPUINFO_CACHE = dict(cpuinfo.get_cpu_info())
        except Exception as exc:
            _CPUINFO_CACHE = {"error": f"{type(exc).__name__}: {exc}"}
    return _CPUINFO_CACHE


def forget_cpuinfo() -> None:
    """Drop py-cpuinfo's cached dict, so the next ``get_cpuinfo()`` asks it again."""
    global _CPUINFO_CACHE
    _CPUINFO_CACHE = None


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
        mhz_value = try_call(lambda: float(fields["cpu mhz"]))
        if mhz_value is not None:
            mhz.append(mhz_value)
    return {"physical_cores": len(pairs) or None, "sockets": len(sockets) or None,
            "model_name": first.get("model name"), "flags": (first.get("flags") or "").split(),
            "mhz": round(sum(mhz) / len(mhz), 1) if mhz else None}


def _sysfs_topology() -> tuple[int | None, int | None]:
    """(physical cores, sockets) from /sys topology, for kernels whose /proc/cpuinfo lacks core ids (ARM)."""
    pairs, packages = set(), set()
    for topo in (SYS_ROOT / "devices/system/cpu").glob("cpu[0-9]*/topology"):
        package, core = read_text(topo / "physical_package_id"), read_text(topo / "core_id")
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
    for line in (read_text(PROC_ROOT / "self/cgroup") or "").splitlines():
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
        text = read_text(d / "cpu.max")
        quotas.append(parse_cpu_max(text) if text else None)
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for d in chain(CGROUP_ROOT / mount, v1_rel):
            quota, period = read_text(d / "cpu.cfs_quota_us"), read_text(d / "cpu.cfs_period_us")
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
    ci = get_cpuinfo()
    proc = parse_proc_cpuinfo(read_text(PROC_ROOT / "cpuinfo") or "")
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
    usable = try_call(lambda: len(os.sched_getaffinity(0))) or os.cpu_count()
    cpu["usable_cpus"] = usable
    cpu["cgroup_cpu_quota"] = collect_cgroup_cpu_quota()
    cpu["effective_cpus"] = resolve_effective_cpus(usable, cpu["cgroup_cpu_quota"])
    cpufreq = SYS_ROOT / "devices/system/cpu/cpu0/cpufreq"
    cpu["governor"] = (read_text(cpufreq / "scaling_governor") or "").strip() or None
    cpu["scaling_driver"] = (read_text(cpufreq / "scaling_driver") or "").strip() or None
    no_turbo = read_text(SYS_ROOT / "devices/system/cpu/intel_pstate/no_turbo")
    boost = read_text(SYS_ROOT / "devices/system/cpu/cpufreq/boost")
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
    fields = parse_meminfo(read_text(PROC_ROOT / "meminfo") or "")
    total = fields.get("memtotal") or try_call(lambda: os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    mem["total_bytes"] = total
    mem["total_gib"] = round(total / GIB) if total else None
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
    distro = parse_os_release(read_text(OS_RELEASE) or "").get("pretty_name")
    if not distro and platform.system() == "Darwin":
        distro = f"macOS {platform.mac_ver()[0]}"
    system["distro"] = distro or None
    system["machine"] = platform.machine() or None
    system["python_version"] = platform.python_version()
    system["python_implementation"] = platform.python_implementation()
    info["hostname"] = try_call(socket.gethostname) or platform.node() or None
