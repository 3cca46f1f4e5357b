"""Tests for fer_bench.machine.fingerprint and the collectors it composes (host, software, gpus, telemetry, over
the one NVML session of fer_bench.machine.nvml), and the identity, slug and sidecar name it takes from
fer_bench.machine.identity: a fake py-cpuinfo, a fake /proc and /sys, a fake pynvml and a fake torch.

Run: python -m pytest tests/test_hardware.py -q
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import socket
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest

from fer_bench.machine import fingerprint as hardware
from fer_bench.machine import host, report, telemetry
from fer_bench.machine import identity as machine_identity
from fer_bench.machine import nvml as machine_nvml

ROOT = Path(__file__).resolve().parents[1]
UUID_A = "GPU-5a1e0d6c-3f0b-8c2e-11aa-0123456789ab"
UUID_B = "GPU-9b7c4e21-77d0-4c8e-a1b2-fedcba987654"
FAKE_CPUINFO = {
    "brand_raw": "AMD EPYC 7763 64-Core Processor", "arch_string_raw": "x86_64", "vendor_id_raw": "AuthenticAMD",
    "family": 25, "model": 1, "stepping": 1, "hz_advertised": [2450000000, 0],
    "flags": ["avx", "avx2", "fma", "sse4_2", "sha_ni"], "l2_cache_size": 524288, "l3_cache_size": 268435456,
    "cpuinfo_version_string": "fake",
}
# Two hyperthreaded cores on one socket: 4 logical CPUs, 2 physical cores.
PROC_CPUINFO = "\n\n".join(
    f"processor\t: {i}\nmodel name\t: AMD EPYC 7763 64-Core Processor\nphysical id\t: 0\ncore id\t\t: {i // 2}\n"
    f"cpu MHz\t\t: {2400 + i * 100}.000\nflags\t\t: fpu avx avx2 fma sse4_2" for i in range(4)) + "\n"
MEMINFO = "MemTotal:       263856124 kB\nMemFree:        1000 kB\nMemAvailable:   {avail} kB\nSwapTotal: 0 kB\n"
KEY = re.compile(r"^[a-z][a-z0-9_]*$")


def load_fake_pynvml(gpus: int = 2) -> types.ModuleType:
    """A fresh copy of tests/fake_pynvml.py, so no state leaks between tests."""
    spec = importlib.util.spec_from_file_location("fake_pynvml", Path(__file__).with_name("fake_pynvml.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is built
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    module.GPUS = [module.FakeGpu(uuid=u) for u in (UUID_A, UUID_B)[:gpus]]
    return module


def make_fake_torch(version: str = "2.14.1+cu130", cuda: str | None = "13.0") -> types.ModuleType:
    torch = types.ModuleType("torch")
    torch.__version__ = version
    torch.version = SimpleNamespace(cuda=cuda, hip=None)
    available = SimpleNamespace(is_available=lambda: True)
    torch.backends = SimpleNamespace(cudnn=SimpleNamespace(version=lambda: 92400), mkldnn=available, mkl=available,
                                     openmp=available)
    torch.cuda = SimpleNamespace(device_count=lambda: 2, nccl=SimpleNamespace(version=lambda: (2, 30, 7)))
    torch.get_num_threads = lambda: 4
    torch.get_num_interop_threads = lambda: 4
    return torch


@pytest.fixture(autouse=True)
def isolated_caches(monkeypatch):
    """Fakes must not leak into the process-wide caches other tests (and real runs) read."""
    monkeypatch.setattr(hardware, "_FINGERPRINT", None)
    monkeypatch.setattr(host, "_CPUINFO_CACHE", None)
    monkeypatch.setattr(machine_nvml, "_NVML", {})


class Machine(SimpleNamespace):
    def collect(self) -> dict:
        return hardware.collect_fingerprint(refresh=True)

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def machine(monkeypatch, tmp_path) -> Machine:
    """A fake EPYC host with two H100s: fake py-cpuinfo, /proc, /sys, cgroup tree, os-release, pynvml and torch."""
    import cpuinfo

    calls = []
    monkeypatch.setattr(cpuinfo, "get_cpu_info", lambda: calls.append(1) or dict(FAKE_CPUINFO))
    m = Machine(root=tmp_path, cpuinfo_calls=calls, nvml=load_fake_pynvml(), torch=make_fake_torch())
    m.write("proc/cpuinfo", PROC_CPUINFO)
    m.write("proc/meminfo", MEMINFO.format(avail=200000000))
    m.write("proc/self/cgroup", "0::/\n")
    m.write("cgroup/cpu.max", "max 100000\n")
    m.write("etc/os-release", 'NAME="Ubuntu"\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\n')
    m.write("sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "performance\n")
    m.write("sys/devices/system/cpu/intel_pstate/no_turbo", "1\n")
    monkeypatch.setattr(host, "PROC_ROOT", tmp_path / "proc")
    monkeypatch.setattr(host, "SYS_ROOT", tmp_path / "sys")
    monkeypatch.setattr(host, "CGROUP_ROOT", tmp_path / "cgroup")
    monkeypatch.setattr(host, "OS_RELEASE", tmp_path / "etc/os-release")
    monkeypatch.setattr(socket, "gethostname", lambda: "node-a")
    monkeypatch.setitem(sys.modules, "pynvml", m.nvml)
    monkeypatch.setitem(sys.modules, "torch", m.torch)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for var in machine_identity.ISA_ENV_VARS:  # the suite may itself run under an ISA cap
        monkeypatch.delenv(var, raising=False)
    return m


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# ------------------------------------------------------------------------------------------------------ GPUs
def test_two_gpus_with_their_static_facts(machine):
    machine.nvml.GPUS[1].not_supported = {"nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetMaxPcieLinkGeneration"}
    fp = machine.collect()

    gpus = fp["gpus"]
    assert [g["uuid"] for g in gpus] == [UUID_A, UUID_B]
    assert [g["index"] for g in gpus] == [0, 1]
    first = gpus[0]
    assert first["name"] == "NVIDIA H100 80GB HBM3"
    assert first["memory_total_bytes"] == 85520809984
    assert first["memory_total_gib"] == 80
    assert first["compute_capability"] == "9.0"
    assert (first["max_sm_clock_mhz"], first["max_memory_clock_mhz"]) == (1980, 2619)
    assert first["power_limit_w"] == 700.0 and first["enforced_power_limit_w"] == 700.0
    assert (first["pcie_max_generation"], first["pcie_max_width"]) == (5, 16)
    assert first["mig_mode"] == "disabled"
    assert first["nvlink_active_links"] == 18
    # NotSupported on one board leaves those fields None and nothing else.
    assert gpus[1]["enforced_power_limit_w"] is None and gpus[1]["pcie_max_generation"] is None
    assert gpus[1]["pcie_max_width"] == 16 and gpus[1]["name"] == first["name"]
    assert fp["software"]["nvidia_driver_version"] == "550.54.15"
    assert fp["software"]["cuda_driver_version"] == "12.4"
    assert fp["software"]["nvml_gpu_count"] == 2 and fp["software"]["nvml_error"] is None

    assert "h100-80gb-x2" in fp["slug"]
    ident = fp["identity"]
    assert ident["gpu_count"] == 2
    assert [g["name"] for g in ident["gpus"]] == ["NVIDIA H100 80GB HBM3"] * 2
    assert "uuid" not in ident["gpus"][0] and fp["stack"]["gpu_driver_version"] == "550.54.15"
    assert UUID_A not in json.dumps(ident) and UUID_B not in json.dumps(ident)


def test_gpu_telemetry_readings(machine):
    machine.nvml.GPUS[0].clocks_event_reasons = 0x4 | 0x40
    machine.nvml.GPUS[1].processes = 3
    tel = machine.collect()["telemetry"]
    first, second = tel["gpus"]
    assert first["index"] == 0 and first["temperature_c"] == 31 and first["power_w"] == 71.2
    assert (first["sm_clock_mhz"], first["memory_clock_mhz"]) == (345, 2619)
    assert first["clocks_event_reasons"] == ["sw_power_cap", "hw_thermal_slowdown"]
    assert second["clocks_event_reasons"] == ["gpu_idle"] and second["process_count"] == 3
    assert first["memory_used_bytes"] == 1 << 20 and first["utilization_gpu_pct"] == 0


def test_pcie_board_and_mig(machine):
    machine.nvml.GPUS[0].nvlinks = None
    machine.nvml.GPUS[0].mig_mode = (1, 1)
    gpus = machine.collect()["gpus"]
    assert gpus[0]["nvlink_active_links"] is None and gpus[0]["mig_mode"] == "enabled"
    assert gpus[1]["nvlink_active_links"] == 18


def test_old_binding_tolerated(machine):
    nvml = machine.nvml
    del nvml.nvmlDeviceGetCurrentClocksEventReasons  # drivers before 535 only know the throttle name
    del nvml.nvmlDeviceGetCudaComputeCapability
    nvml.nvmlDeviceGetName = lambda h: h.name.encode()  # old bindings return bytes
    nvml.GPUS[0].clocks_event_reasons = 0x8
    fp = machine.collect()
    assert fp["gpus"][0]["compute_capability"] is None
    assert fp["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert fp["telemetry"]["gpus"][0]["clocks_event_reasons"] == ["hw_slowdown"]
    assert fp["gpus"][0]["memory_total_gib"] == 80


def test_no_pynvml_means_no_gpus(machine, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    fp = machine.collect()
    assert fp["gpus"] == [] and fp["telemetry"]["gpus"] == []
    assert "pynvml" in fp["software"]["nvml_error"]
    assert fp["slug"].endswith("__cpu") and fp["identity"]["gpu_count"] == 0
    assert telemetry.collect_telemetry()["gpus"] == []


def test_nvml_init_failure_means_no_gpus_and_one_attempt(machine):
    nvml = machine.nvml
    nvml.INIT_ERROR = nvml.NVMLError_DriverNotLoaded()
    fp = machine.collect()
    assert fp["gpus"] == [] and "Driver Not Loaded" in fp["software"]["nvml_error"]
    for _ in range(3):
        assert telemetry.collect_telemetry()["gpus"] == []
    assert nvml.CALLS["init"] == 1  # a host without a driver pays for the attempt once


def test_nvml_initialised_once_and_shut_down_on_refresh(machine):
    nvml = machine.nvml
    machine.collect()
    for _ in range(5):
        telemetry.collect_telemetry()
    assert nvml.CALLS == {"init": 1, "shutdown": 0}
    machine.collect()
    assert nvml.CALLS == {"init": 2, "shutdown": 1}


@pytest.mark.parametrize("env, expected", [
    ("1", [UUID_B]), ("", []), ("7", []), ("1,0", [UUID_B, UUID_A]), ("GPU-9b7c", [UUID_B]),
    ("0,banana,1", [UUID_A]), ("MIG-1234", [UUID_A, UUID_B]),
])
def test_cuda_visible_devices_filters_gpus(machine, monkeypatch, env, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", env)
    fp = machine.collect()
    assert [g["uuid"] for g in fp["gpus"]] == expected
    assert [t["index"] for t in fp["telemetry"]["gpus"]] == [g["index"] for g in fp["gpus"]]
    assert fp["software"]["nvml_gpu_count"] == 2
    assert fp["identity"]["gpu_count"] == len(expected)


# -------------------------------------------------------------------------------------------------- identity
def test_identity_hash_ignores_volatile_readings(machine, monkeypatch):
    before = machine.collect()
    for gpu in machine.nvml.GPUS:
        gpu.temperature, gpu.power_usage_mw, gpu.clocks = 83, 655000, {1: 1980, 2: 2619}
        gpu.utilization, gpu.memory_used, gpu.clocks_event_reasons, gpu.processes = (99, 71), 60 << 30, 0x4, 2
    # a sibling node: same model, other UUIDs, other name, less free memory
    machine.nvml.GPUS[0].uuid, machine.nvml.GPUS[1].uuid = UUID_B.replace("9", "8"), UUID_A.replace("5", "4")
    monkeypatch.setattr(socket, "gethostname", lambda: "node-b")
    machine.write("proc/meminfo", MEMINFO.format(avail=1000000))
    after = machine.collect()

    assert after["hostname"] == "node-b" and after["telemetry"]["gpus"][0]["temperature_c"] == 83
    assert after["telemetry"]["memory_available_bytes"] == 1000000 * 1024
    assert after["telemetry"] != before["telemetry"] and after["gpus"] != before["gpus"]
    assert hardware.identity_diff(before, after) == []
    assert after["identity_hash"] == before["identity_hash"] and after["stack_hash"] == before["stack_hash"]
    assert after["slug"] == before["slug"]


@pytest.mark.parametrize("change, path", [
    ("gpu_model", "gpus.0.name"), ("gpu_count", "gpu_count"),
    ("cgroup_quota", "cpu.effective_cpus"), ("memory", "memory_gib"), ("isa_cap", "cpu.isa_cap"),
])
def test_identity_hash_changes_with_hardware(machine, monkeypatch, change, path):
    before = machine.collect()
    if change == "gpu_model":
        gpu = machine.nvml.GPUS[0]
        gpu.name, gpu.memory_total, gpu.compute_capability = "NVIDIA A100-SXM4-40GB", 42505273344, (8, 0)
    elif change == "gpu_count":
        machine.nvml.GPUS.pop()
    elif change == "cgroup_quota":
        machine.write("cgroup/cpu.max", "50000 100000\n")
    elif change == "isa_cap":
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    else:
        machine.write("proc/meminfo", MEMINFO.format(avail=1).replace("263856124", "131928062"))
    after = machine.collect()
    assert after["identity_hash"] != before["identity_hash"]
    assert path in [p for p, _, _ in hardware.identity_diff(before, after)]


@pytest.mark.parametrize("change, line", [
    ("torch", "torch 2.14.1+cu130 -> 2.15.0+cu130"),
    ("driver", "gpu driver 550.54.15 -> 570.86.10"),
    ("kernel", None),
])
def test_a_stack_change_keeps_the_hardware_identity(machine, monkeypatch, change, line):
    """A torch, driver or kernel upgrade on the same hardware: the same identity hash and slug, another stack."""
    before = machine.collect()
    if change == "torch":
        monkeypatch.setitem(sys.modules, "torch", make_fake_torch(version="2.15.0+cu130"))
    elif change == "driver":
        machine.nvml.DRIVER_VERSION = "570.86.10"
    else:
        monkeypatch.setattr(platform, "release", lambda: "9.9.9-test")
        line = f"kernel {before['stack']['os']['kernel']} -> 9.9.9-test"
    after = machine.collect()
    assert after["identity_hash"] == before["identity_hash"] and after["slug"] == before["slug"]
    assert hardware.identity_diff(before, after) == []
    assert after["stack_hash"] != before["stack_hash"]
    assert machine_identity.stack_changes(before, after) == [line]


def test_identity_hash_is_canonical():
    a = {"b": 1, "a": {"y": [1, 2], "x": None}}
    b = {"a": {"x": None, "y": [1, 2]}, "b": 1}
    assert machine_identity.hash_identity(a) == machine_identity.hash_identity(b)
    assert re.fullmatch(r"[0-9a-f]{16}", machine_identity.hash_identity(a))
    assert machine_identity.hash_identity(a) != machine_identity.hash_identity({**a, "b": 2})


def test_identity_is_hardware_and_stack_is_software(machine):
    fp = machine.collect()
    assert set(fp["identity"]) == {"cpu", "memory_gib", "gpu_count", "gpus"}
    assert set(fp["identity"]["cpu"]) == set(machine_identity.CPU_KEYS)
    assert fp["identity"]["gpus"][0] == {"name": "NVIDIA H100 80GB HBM3", "memory_total_gib": 80,
                                         "compute_capability": "9.0", "mig_mode": "disabled"}
    assert fp["stack"]["os"]["distro"] == "Ubuntu 22.04.4 LTS"
    assert fp["stack"]["torch"] == "2.14.1+cu130" and fp["stack"]["cudnn"] == "9.24.0"
    assert fp["stack"]["gpu_driver_version"] == "550.54.15"
    assert fp["stack"]["python"] == ".".join(platform.python_version_tuple()[:2])
    assert fp["schema"] == 2 and fp["identity_hash"] == machine_identity.hash_identity(fp["identity"])
    assert fp["stack_hash"] == machine_identity.hash_identity(fp["stack"])


def test_identity_diff_paths():
    a = {"cpu": {"brand": "x", "flags": ["avx"]}, "gpus": [{"name": "A"}]}
    b = {"identity": {"cpu": {"brand": "x", "flags": ["avx", "avx2"]}, "gpus": [{"name": "A"}, {"name": "B"}]}}
    assert hardware.identity_diff(a, b) == [("cpu.flags", ["avx"], ["avx", "avx2"]), ("gpus.1", None, {"name": "B"})]


# ----------------------------------------------------------------------------------------- CPU, memory, system
def test_cpu_memory_and_system_sections(machine):
    fp = machine.collect()
    cpu = fp["cpu"]
    assert cpu["brand"] == "AMD EPYC 7763 64-Core Processor" and cpu["vendor"] == "AuthenticAMD"
    assert cpu["physical_cores"] == 2 and cpu["sockets"] == 1 and cpu["logical_cores"] == os.cpu_count()
    assert cpu["flags"] == ["sse4_2", "fma", "avx", "avx2"]
    assert cpu["governor"] == "performance" and cpu["turbo"] is False
    assert cpu["cgroup_cpu_quota"] is None and cpu["effective_cpus"] == usable_cpus()
    assert fp["memory"]["total_gib"] == 252  # 263856124 kB
    assert fp["system"]["distro"] == "Ubuntu 22.04.4 LTS" and fp["hostname"] == "node-a"
    assert fp["telemetry"]["cpu_mhz"] == 2550.0  # mean of the fake /proc/cpuinfo, no cpufreq files
    assert fp["software"]["torch"] == "2.14.1+cu130" and fp["software"]["cudnn"] == "9.24.0"
    assert fp["software"]["nccl"] == "2.30.7" and fp["software"]["torch_num_threads"] == 4
    assert fp["slug"] == f"epyc-7763-{usable_cpus()}c__h100-80gb-x2"
    assert fp["errors"] == []


def test_cgroup_quota_limits_effective_cpus(machine):
    machine.write("cgroup/cpu.max", "50000 100000\n")
    fp = machine.collect()
    assert fp["cpu"]["cgroup_cpu_quota"] == 0.5 and fp["cpu"]["effective_cpus"] == 1
    assert fp["slug"].startswith("epyc-7763-1c__")


def test_unreadable_sources_are_tolerated(machine, monkeypatch):
    import cpuinfo

    def broken():
        raise RuntimeError("cpuid crashed")

    monkeypatch.setattr(cpuinfo, "get_cpu_info", broken)
    for name in ("proc/cpuinfo", "proc/meminfo", "etc/os-release"):
        (machine.root / name).unlink()
    (machine.root / "cgroup/cpu.max").unlink()
    (machine.root / "cgroup/cpu.max").mkdir()  # a directory where a file should be: reading it fails
    fp = machine.collect()
    assert "cpuid crashed" in fp["cpu"]["cpuinfo_error"]
    assert fp["cpu"]["cgroup_cpu_quota"] is None and fp["cpu"]["logical_cores"] == os.cpu_count()
    assert fp["telemetry"]["memory_available_bytes"] is None
    assert fp["errors"] == [] and fp["identity_hash"] and fp["slug"]


def test_without_torch(machine, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    fp = machine.collect()
    assert fp["software"]["torch"] is None and "torch" in fp["software"]["torch_error"]
    assert fp["stack"]["torch"] is None and fp["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert fp["slug"].endswith("__h100-80gb-x2")


def test_a_failing_collector_costs_only_its_own_section(machine, monkeypatch):
    def boom(info):
        raise RuntimeError("boom")

    monkeypatch.setattr(hardware, "collect_memory_info", boom)
    fp = machine.collect()
    assert len(fp["errors"]) == 1 and fp["errors"][0].endswith("RuntimeError: boom")
    assert fp["memory"] == {} and fp["identity"]["memory_gib"] is None
    assert fp["cpu"]["physical_cores"] == 2 and len(fp["gpus"]) == 2


def test_py_cpuinfo_called_once_and_cache_is_copied(machine):
    fp = machine.collect()
    fp["cpu"]["brand"] = "mutated"
    again = hardware.collect_fingerprint()
    telemetry.collect_telemetry()
    assert again["cpu"]["brand"] == "AMD EPYC 7763 64-Core Processor"
    assert machine.cpuinfo_calls == [1]


def test_parse_proc_cpuinfo_counts_cores_and_sockets():
    assert host.parse_proc_cpuinfo(PROC_CPUINFO)["physical_cores"] == 2
    two_sockets = "\n\n".join(f"processor: {i}\nphysical id: {i % 2}\ncore id: {i // 4}" for i in range(8))
    parsed = host.parse_proc_cpuinfo(two_sockets)
    assert (parsed["physical_cores"], parsed["sockets"]) == (4, 2)
    assert host.parse_proc_cpuinfo("processor: 0\nmodel name: Neoverse-N1\n")["physical_cores"] is None


@pytest.mark.parametrize("text, expected", [
    ("max 100000\n", None), ("200000 100000\n", 2.0), ("150000 100000", 1.5), ("garbage", None), ("", None),
    ("-1 100000", None), ("100000 0", None),
])
def test_parse_cpu_max(text, expected):
    assert host.parse_cpu_max(text) == expected


def _cgroup_tree(tmp_path, monkeypatch, self_cgroup: str, files: dict[str, str]):
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(self_cgroup)
    for name, text in files.items():
        path = tmp_path / "cgroup" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.setattr(host, "PROC_ROOT", tmp_path / "proc")
    monkeypatch.setattr(host, "CGROUP_ROOT", tmp_path / "cgroup")


def test_cgroup_v2_takes_the_tightest_limit_on_the_path(tmp_path, monkeypatch):
    _cgroup_tree(tmp_path, monkeypatch, "0::/slurm/job1\n", {
        "cpu.max": "max 100000\n", "slurm/cpu.max": "400000 100000\n", "slurm/job1/cpu.max": "800000 100000\n",
        "other/cpu.max": "10000 100000\n"})
    assert host.collect_cgroup_cpu_quota() == 4.0


def test_cgroup_v1_quota_and_period(tmp_path, monkeypatch):
    _cgroup_tree(tmp_path, monkeypatch, "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n", {
        "cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000\n", "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"})
    assert host.collect_cgroup_cpu_quota() == 2.5


def test_cgroup_unreadable_or_absent(tmp_path, monkeypatch):
    _cgroup_tree(tmp_path, monkeypatch, "0::/\n", {"cpu/cpu.cfs_quota_us": "abc\n", "cpu/cpu.cfs_period_us": "x\n"})
    (tmp_path / "cgroup/cpu.max").mkdir()
    assert host.collect_cgroup_cpu_quota() is None
    monkeypatch.setattr(host, "PROC_ROOT", tmp_path / "nowhere")
    monkeypatch.setattr(host, "CGROUP_ROOT", tmp_path / "nowhere")
    assert host.collect_cgroup_cpu_quota() is None


@pytest.mark.parametrize("usable, quota, expected", [(8, 2.5, 3), (2, 4.0, 2), (8, None, 8), (8, 0.5, 1)])
def test_resolve_effective_cpus(usable, quota, expected):
    assert host.resolve_effective_cpus(usable, quota) == expected


def test_parse_meminfo_and_os_release():
    assert host.parse_meminfo("MemTotal: 2048 kB\nHugePages_Total: 0\n") == {"memtotal": 2097152,
                                                                                "hugepages_total": 0}
    assert host.parse_os_release('# c\nPRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"\nID=rocky\n') == {
        "pretty_name": "Rocky Linux 9.3 (Blue Onyx)", "id": "rocky"}


@pytest.mark.parametrize("mask, names", [
    (0, []), (0x1, ["gpu_idle"]), (0x44, ["sw_power_cap", "hw_thermal_slowdown"]), (0x400, ["unknown_0x400"]),
])
def test_decode_clock_event_reasons(mask, names):
    assert telemetry.decode_clock_event_reasons(mask) == names


# ------------------------------------------------------------------------------------------------------ slug
@pytest.mark.parametrize("brand, short", [
    ("AMD EPYC 7763 64-Core Processor", "epyc-7763"),
    ("Intel(R) Xeon(R) Platinum 8480+", "xeon-platinum-8480"),
    ("Intel(R) Core(TM) i7-12700H", "i7-12700h"),
    ("12th Gen Intel(R) Core(TM) i7-12700H", "i7-12700h"),
    ("Apple M2 Pro", "m2-pro"),
    ("Intel(R) Xeon(R) CPU E5-2690 v4 @ 2.60GHz", "xeon-e5-2690-v4"),
    ("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", "xeon-gold-6338"),
    ("AMD Ryzen 9 7950X 16-Core Processor", "ryzen-9-7950x"),
    ("AMD Ryzen 5 5600G with Radeon Graphics", "ryzen-5-5600g"),
    ("AMD Ryzen 7 PRO 7840U w/ Radeon 780M Graphics", "ryzen-7-pro-7840u"),
    ("AMD FX(tm)-8350 Eight-Core Processor", "fx-8350"),
    ("Intel(R) Core(TM) Ultra 7 155H", "ultra-7-155h"),
    ("Intel(R) Xeon(R) Processor", "xeon"),
    ("Neoverse-V2", "neoverse-v2"),
    ("", "unknown-cpu"),
])
def test_shorten_cpu_name(brand, short):
    assert machine_identity.shorten_cpu_name(brand) == short


@pytest.mark.parametrize("name, gib, short", [
    ("NVIDIA H100 80GB HBM3", 80, "h100-80gb"),
    ("NVIDIA A100-SXM4-40GB", 40, "a100-sxm4-40gb"),
    ("NVIDIA GeForce RTX 4090", 24, "rtx-4090-24gb"),
    ("Tesla V100-SXM2-16GB", 16, "v100-sxm2-16gb"),
    ("NVIDIA H100 PCIe", 80, "h100-pcie-80gb"),
    ("NVIDIA RTX A6000", 48, "rtx-a6000-48gb"),
    ("NVIDIA L4", None, "l4"),
])
def test_shorten_gpu_name(name, gib, short):
    assert machine_identity.shorten_gpu_name(name, gib) == short


def _identity(brand, cores, gpus):
    return {"cpu": {"brand": brand, "effective_cpus": cores},
            "gpus": [{"name": n, "memory_total_gib": g} for n, g in gpus]}


@pytest.mark.parametrize("identity, slug", [
    (_identity("AMD EPYC 7763 64-Core Processor", 2, [("NVIDIA H100 80GB HBM3", 80)]), "epyc-7763-2c__h100-80gb-x1"),
    (_identity("AMD EPYC 7763 64-Core Processor", 16, [("NVIDIA H100 80GB HBM3", 80)]),
     "epyc-7763-16c__h100-80gb-x1"),
    (_identity("Intel(R) Xeon(R) Platinum 8480+", 16, []), "xeon-platinum-8480-16c__cpu"),
    (_identity("Intel(R) Xeon(R) Processor", 2, []), "xeon-2c__cpu"),
    (_identity("AMD EPYC 7742 64-Core Processor", 128, [("NVIDIA A100-SXM4-40GB", 40)] * 8),
     "epyc-7742-128c__a100-sxm4-40gb-x8"),
    (_identity("Intel(R) Core(TM) i9-13900K", 32, [("NVIDIA GeForce RTX 4090", 24), ("NVIDIA GeForce RTX 3090", 24),
                                                    ("NVIDIA GeForce RTX 4090", 24)]),
     "i9-13900k-32c__rtx-4090-24gb-x2_rtx-3090-24gb-x1"),
])
def test_make_slug(identity, slug):
    """The slug names the hardware only: a torch upgrade keeps the storage folder."""
    assert machine_identity.make_slug(identity) == slug
    assert machine_identity.make_slug({"identity": identity}) == slug


# ------------------------------------------------------------------------------------------- contract, output
def _check_contract(obj, path="fp"):
    if isinstance(obj, dict):
        for key, value in obj.items():
            assert isinstance(key, str) and KEY.match(key), f"{path}: bad key {key!r}"
            _check_contract(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            _check_contract(value, f"{path}[{i}]")
    elif isinstance(obj, str):
        assert "\n" not in obj and "\r" not in obj, f"{path}: newline in {obj!r}"
    else:
        assert obj is None or isinstance(obj, (bool, int, float)), f"{path}: {type(obj).__name__}"


def test_contract_keys_values_and_no_newlines(machine):
    machine.nvml.DRIVER_VERSION = "550.54.15\n"  # a stray newline from a tool must not reach the JSON
    machine.nvml.GPUS[1].not_supported = {"nvmlDeviceGetMigMode", "nvmlDeviceGetUtilizationRates"}
    fp = machine.collect()
    _check_contract(fp)
    json.dumps(fp, allow_nan=False)
    assert fp["software"]["nvidia_driver_version"] == "550.54.15"
    top = {"schema", "fer_bench_version", "identity", "identity_hash", "slug", "stack", "stack_hash", "hostname",
           "cpu", "memory", "system", "software", "gpus", "telemetry", "collected_at"}
    assert top <= set(fp)
    _check_contract(telemetry.collect_telemetry())


def test_format_fingerprint(machine, monkeypatch):
    fp = machine.collect()
    text = report.format_fingerprint(fp)
    assert fp["slug"] in text and f"identity:  {fp['identity_hash']}  (hardware;" in text
    assert f"stack:     {fp['stack_hash']}  (torch 2.14.1+cu130 (CUDA 13.0, cuDNN 9.24.0), NVIDIA driver 550.54.15" \
        in text and "malloc" in text
    assert text.count("NVIDIA H100 80GB HBM3") == 2 and "driver:    NVIDIA 550.54.15" in text
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert "gpus:      none (pynvml not importable" in report.format_fingerprint(machine.collect())
    assert "slug:      None" in report.format_fingerprint({})
    assert "stack:     None  (not recorded)" in report.format_fingerprint({})


# Every field mlcommons/logging's training system_desc_checker requires ("division" spelled right; the
# checker's own list has the typo "divison").
MLPERF_FIELDS = (
    "submitter", "division", "status", "system_name", "number_of_nodes", "host_processors_per_node",
    "host_processor_model_name", "host_processor_core_count", "host_processor_vcpu_count", "host_processor_frequency",
    "host_processor_caches", "host_processor_interconnect", "host_memory_capacity", "host_storage_type",
    "host_storage_capacity", "host_networking", "host_networking_topology", "host_memory_configuration",
    "accelerators_per_node", "accelerator_model_name", "accelerator_host_interconnect", "accelerator_frequency",
    "accelerator_on-chip_memories", "accelerator_memory_configuration", "accelerator_memory_capacity",
    "accelerator_interconnect", "accelerator_interconnect_topology", "cooling", "hw_notes", "framework",
    "other_software_stack", "operating_system", "sw_notes",
)


def test_to_mlperf(machine, monkeypatch):
    fp = machine.collect()
    desc = report.to_mlperf(fp)
    assert set(MLPERF_FIELDS) <= set(desc)
    json.dumps(desc, allow_nan=False)
    assert desc["host_processor_model_name"] == "AMD EPYC 7763 64-Core Processor"
    assert desc["host_processor_core_count"] == 2 and desc["host_processors_per_node"] == 1
    assert desc["host_processor_vcpu_count"] == os.cpu_count()
    assert desc["host_processor_frequency"] == "2450 MHz" and desc["host_memory_capacity"] == "252 GB"
    assert desc["accelerators_per_node"] == 2 and desc["accelerator_model_name"] == "NVIDIA H100 80GB HBM3"
    assert desc["accelerator_host_interconnect"] == "PCIe Gen5 x16"
    assert desc["accelerator_memory_configuration"] == "HBM3" and desc["accelerator_memory_capacity"] == "80 GB"
    assert desc["accelerator_interconnect"].startswith("NVLink")
    assert desc["framework"].startswith("PyTorch 2.14.1+cu130") and desc["operating_system"] == "Ubuntu 22.04.4 LTS"
    assert desc["other_software_stack"]["cuda_driver_version"] == "12.4" and desc["submitter"] == ""
    assert fp["identity_hash"] in desc["hw_notes"] and desc["sw_notes"] == f"fer_bench stack {fp['stack_hash']}"

    monkeypatch.setitem(sys.modules, "pynvml", None)
    cpu_only = report.to_mlperf(machine.collect())
    assert cpu_only["accelerators_per_node"] == 0 and cpu_only["accelerator_model_name"] == "N/A"
    assert set(MLPERF_FIELDS) <= set(report.to_mlperf({}))


# ---------------------------------------------------------------------------------------------------- sidecar
@pytest.mark.parametrize("results, sidecar", [
    ("out.json", "out.fingerprint"), ("runs/0001_abc.json", "runs/0001_abc.fingerprint"),
    ("run", "run.fingerprint"), ("a.b.json", "a.b.fingerprint"),
])
def test_sidecar_path(results, sidecar):
    """Not ending in .json: pytest-benchmark's *.json globbing of its storage never loads a sidecar as a run."""
    assert machine_identity.sidecar_path(results) == Path(sidecar)
    assert machine_identity.is_sidecar(sidecar) and machine_identity.is_sidecar(sidecar + ".json")
    assert not machine_identity.is_sidecar(results)


def test_find_sidecar_prefers_the_new_name_and_accepts_the_legacy_one(tmp_path):
    results = tmp_path / "0001_abc.json"
    assert machine_identity.find_sidecar(results) is None
    (tmp_path / "0001_abc.fingerprint.json").write_text("{}")
    assert machine_identity.find_sidecar(results) == tmp_path / "0001_abc.fingerprint.json"
    (tmp_path / "0001_abc.fingerprint").write_text("{}")
    assert machine_identity.find_sidecar(results) == tmp_path / "0001_abc.fingerprint"


def test_write_sidecar_writes_beside_results(tmp_path):
    fp = {"schema": 2, "slug": "x__cpu", "identity_hash": "0" * 16}
    path = hardware.write_sidecar(tmp_path / "out.json", fp)
    assert path == tmp_path / "out.fingerprint"
    assert json.loads(path.read_text()) == fp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fingerprint"]


def test_write_sidecar_is_atomic(tmp_path, monkeypatch):
    old = hardware.write_sidecar(tmp_path / "out.json", {"schema": 2, "slug": "old"})

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        hardware.write_sidecar(tmp_path / "out.json", {"schema": 2, "slug": "new"})
    assert json.loads(old.read_text())["slug"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fingerprint"]


def test_write_sidecar_collects_when_no_fingerprint_given(machine):
    path = hardware.write_sidecar(machine.root / "results" / "run.json")
    assert json.loads(path.read_text())["identity_hash"] == hardware.collect_fingerprint()["identity_hash"]


# ------------------------------------------------------------------------------------------- real processes
def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_importing_hardware_imports_no_heavy_library():
    code = ("import sys, fer_bench.machine.fingerprint; "
            "print([m for m in ('torch', 'pynvml', 'cpuinfo', 'numpy') if m in sys.modules])")
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_cli_fingerprint_on_this_machine():
    result = _run("-m", "fer_bench", "fingerprint", "--json")
    assert result.returncode == 0, result.stderr
    fp = json.loads(result.stdout)
    _check_contract(fp)
    assert fp["identity_hash"] == machine_identity.hash_identity(fp["identity"])
    assert fp["stack_hash"] == machine_identity.hash_identity(fp["stack"])
    assert fp["slug"] == machine_identity.make_slug(fp["identity"])
    assert re.fullmatch(r"[a-z0-9._-]+", fp["slug"]) and fp["slug"].count("__") == 1

    slug = _run("-m", "fer_bench", "fingerprint", "--slug")
    assert slug.returncode == 0 and slug.stdout.strip() == fp["slug"]

    mlperf = _run("-m", "fer_bench", "fingerprint", "--mlperf")
    assert mlperf.returncode == 0, mlperf.stderr
    assert set(MLPERF_FIELDS) <= set(json.loads(mlperf.stdout))

    text = _run("-m", "fer_bench", "fingerprint")
    assert text.returncode == 0 and text.stderr == "", text.stderr
    assert f"identity:  {fp['identity_hash']}" in text.stdout  # the same hash in another process
    assert f"stack:     {fp['stack_hash']}" in text.stdout
    assert fp["slug"] in text.stdout


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the steady malloc settings are glibc's")
def test_cli_fingerprint_gives_the_stack_of_each_malloc_mode():
    """The default is the suite's default (--fer-malloc steady); the two modes are one hardware identity with two
    software stacks."""
    steady = json.loads(_run("-m", "fer_bench", "fingerprint", "--json").stdout)
    system = json.loads(_run("-m", "fer_bench", "fingerprint", "--json", "--malloc", "system").stdout)
    assert steady["stack"]["malloc"] == "glibc-steady" and system["stack"]["malloc"] == "glibc"
    assert steady["identity_hash"] == system["identity_hash"] and steady["slug"] == system["slug"]
    assert steady["stack_hash"] != system["stack_hash"]
    assert machine_identity.stack_changes(steady, system) == ["malloc glibc-steady -> glibc"]
