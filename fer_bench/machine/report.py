"""Readable and MLPerf-shaped reports of a fingerprint: hardware identity and software stack
(see fer_bench.machine.fingerprint)."""

from __future__ import annotations

import re
from typing import Any

_GIB = 2**30


def _size(nbytes: Any) -> str:
    if not isinstance(nbytes, int) or nbytes <= 0:
        return "?"
    for unit, scale in (("GiB", _GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.4g} {unit}"
    return f"{nbytes} B"


def _or_dash(value: Any) -> Any:
    return "-" if value is None else value


def _describe_stack(stack: dict) -> str:
    """The software stack in one line: ``torch 2.14.1+cu130 (CUDA 13.0, cuDNN 9.24.0), driver -, ...``."""
    if not stack:
        return "not recorded"
    system = stack.get("os") or {}
    torch = f"torch {_or_dash(stack.get('torch'))}"
    if stack.get("torch_cuda"):
        torch += f" (CUDA {stack['torch_cuda']}, cuDNN {_or_dash(stack.get('cudnn'))})"
    elif stack.get("torch_hip"):
        torch += f" (HIP {stack['torch_hip']})"
    return (f"{torch}, NVIDIA driver {_or_dash(stack.get('gpu_driver_version'))}, "
            f"{stack.get('python_implementation') or 'Python'} {_or_dash(stack.get('python'))}, "
            f"{system.get('distro') or system.get('os') or '?'} kernel {_or_dash(system.get('kernel'))}, "
            f"malloc {_or_dash(stack.get('malloc'))}")


def format_fingerprint(fp: dict) -> str:
    """A few readable lines: what ``fer-bench fingerprint`` prints."""
    cpu, mem, system, sw = (fp.get(k) or {} for k in ("cpu", "memory", "system", "software"))
    tel = fp.get("telemetry") or {}
    quota = cpu.get("cgroup_cpu_quota")
    lines = [
        f"slug:      {fp.get('slug')}",
        f"identity:  {fp.get('identity_hash')}  (hardware; schema {fp.get('schema')}, collected "
        f"{fp.get('collected_at')})",
        f"stack:     {fp.get('stack_hash')}  ({_describe_stack(fp.get('stack') or {})})",
        f"host:      {fp.get('hostname')}  {system.get('distro') or system.get('os')}, kernel {system.get('kernel')}, "
        f"{system.get('python_implementation')} {system.get('python_version')}",
        f"cpu:       {cpu.get('brand')} ({cpu.get('arch')}), {cpu.get('physical_cores')} physical / "
        f"{cpu.get('logical_cores')} logical cores, {cpu.get('effective_cpus')} effective"
        f"{f' (cgroup quota {quota})' if quota else ''}; governor {cpu.get('governor') or '?'}, "
        f"turbo {'?' if cpu.get('turbo') is None else 'on' if cpu.get('turbo') else 'off'}",
        f"flags:     {' '.join(cpu.get('flags') or []) or '-'}"
        + (f"  (capped: {' '.join(f'{k}={v}' for k, v in cpu['isa_cap'].items())})" if cpu.get("isa_cap") else ""),
        f"memory:    {_size(mem.get('total_bytes'))} total, {_size(tel.get('memory_available_bytes'))} available",
    ]
    gpus = fp.get("gpus") or []
    if not gpus:
        lines.append(f"gpus:      none ({sw.get('nvml_error') or 'NVML reports no visible GPU'})")
    for g in gpus:
        lines.append(
            f"gpu {g.get('index')}:     {g.get('name')}, {_size(g.get('memory_total_bytes'))}, "
            f"cc {g.get('compute_capability')}, PCIe gen{g.get('pcie_max_generation')} x{g.get('pcie_max_width')}, "
            f"NVLink links {_or_dash(g.get('nvlink_active_links'))}, MIG {_or_dash(g.get('mig_mode'))}, "
            f"{_or_dash(g.get('power_limit_w'))} W limit")
    if gpus:
        lines.append(f"driver:    NVIDIA {sw.get('nvidia_driver_version')}, "
                     f"CUDA driver {sw.get('cuda_driver_version')}")
    lines.append(
        f"software:  torch {sw.get('torch')} (CUDA {sw.get('torch_cuda') or '-'}, cuDNN {sw.get('cudnn') or '-'}, "
        f"NCCL {sw.get('nccl') or '-'}), torchvision {sw.get('torchvision')}, timm {sw.get('timm')}, "
        f"numpy {sw.get('numpy')}, fer_bench {sw.get('fer_bench')}; threads {sw.get('torch_num_threads')} intra / "
        f"{sw.get('torch_num_interop_threads')} interop; malloc {sw.get('malloc') or '?'}")
    env = sw.get("env") or {}
    lines.append(f"env:       {' '.join(f'{k.upper()}={v}' for k, v in env.items()) or '-'}")
    load = tel.get("load_avg")
    gpu_tel = "; ".join(
        f"gpu {t.get('index')} {t.get('temperature_c')} C {t.get('power_w')} W {t.get('sm_clock_mhz')} MHz "
        f"{','.join(t.get('clocks_event_reasons') or []) or 'unthrottled'}" for t in tel.get("gpus") or [])
    lines.append(f"telemetry: load {' '.join(map(str, load)) if load else '?'}, cpu {tel.get('cpu_mhz') or '?'} MHz"
                 + (f"; {gpu_tel}" if gpu_tel else ""))
    return "\n".join(lines)


def to_mlperf(fp: dict) -> dict:
    """The fingerprint as an MLPerf training system description (mlcommons/logging system_desc_checker's fields).

    Facts a process cannot see (submitter, storage, networking, cooling) are "". Counts follow NVIDIA's
    submission script: ``host_processor_core_count`` is cores per processor.
    """
    cpu, mem, system, sw = (fp.get(k) or {} for k in ("cpu", "memory", "system", "software"))
    gpus = fp.get("gpus") or []
    sockets = cpu.get("sockets") or 1
    names = list(dict.fromkeys(g.get("name") or "unknown GPU" for g in gpus))
    caches = ", ".join(f"{label} {_size(cpu.get(key))}" for label, key in (
        ("L1d", "l1_data_cache_size"), ("L1i", "l1_instruction_cache_size"), ("L2", "l2_cache_size"),
        ("L3", "l3_cache_size")) if isinstance(cpu.get(key), int))
    g0 = gpus[0] if gpus else {}
    memory_type = re.search(r"\b(HBM\w*|GDDR\w*)\b", g0.get("name") or "", flags=re.I)
    links = [g.get("nvlink_active_links") or 0 for g in gpus]
    if any(links):
        interconnect = f"NVLink ({max(links)} links per GPU)"
    else:
        interconnect = "PCIe" if len(gpus) > 1 else "N/A"
    framework = f"PyTorch {sw['torch']}" if sw.get("torch") else ""
    if framework and sw.get("torch_cuda"):
        framework += f" (CUDA {sw['torch_cuda']}, cuDNN {sw.get('cudnn') or '?'})"
    return {
        "submitter": "", "division": "", "system_type": "", "status": "",
        "system_name": (f"{len(gpus)}x {' + '.join(names)}" if gpus else cpu.get("brand") or "") or "",
        "number_of_nodes": 1,
        "host_processors_per_node": sockets,
        "host_processor_model_name": cpu.get("brand") or "",
        "host_processor_core_count": (cpu["physical_cores"] // sockets) if cpu.get("physical_cores") else "",
        "host_processor_vcpu_count": cpu.get("logical_cores") or "",
        "host_processor_frequency": f"{cpu['hz_advertised'] / 1e6:.0f} MHz" if cpu.get("hz_advertised") else "",
        "host_processor_caches": caches,
        "host_processor_interconnect": "",
        "host_memory_capacity": f"{mem['total_gib']} GB" if mem.get("total_gib") else "",
        "host_storage_type": "", "host_storage_capacity": "", "host_networking": "", "host_networking_topology": "",
        "host_memory_configuration": "",
        "accelerators_per_node": len(gpus),
        "accelerator_model_name": " + ".join(names) if gpus else "N/A",
        "accelerator_host_interconnect": (f"PCIe Gen{g0['pcie_max_generation']} x{g0['pcie_max_width']}"
                                          if g0.get("pcie_max_generation") and g0.get("pcie_max_width") else ""),
        "accelerator_frequency": f"{g0['max_sm_clock_mhz']} MHz" if g0.get("max_sm_clock_mhz") else "",
        "accelerator_on-chip_memories": "",
        "accelerator_memory_configuration": memory_type.group(1).upper() if memory_type else "",
        "accelerator_memory_capacity": f"{g0['memory_total_gib']} GB" if g0.get("memory_total_gib") else "",
        "accelerator_interconnect": interconnect,
        "accelerator_interconnect_topology": "",
        "cooling": "",
        "hw_notes": f"fer_bench hardware identity {fp.get('identity_hash')}; effective CPUs "
                    f"{cpu.get('effective_cpus')}",
        "framework": framework,
        "other_software_stack": {
            "cuda_version": sw.get("torch_cuda") or "", "cuda_driver_version": sw.get("cuda_driver_version") or "",
            "cudnn_version": sw.get("cudnn") or "", "nccl_version": sw.get("nccl") or "",
            "nvidia_kernel_driver": sw.get("nvidia_driver_version") or "",
            "kernel_version": f"{system.get('os') or ''} {system.get('kernel') or ''}".strip(),
            "python_version": system.get("python_version") or "", "torchvision_version": sw.get("torchvision") or "",
            "timm_version": sw.get("timm") or "", "numpy_version": sw.get("numpy") or "",
            "fer_bench_version": fp.get("fer_bench_version") or "",
        },
        "operating_system": system.get("distro") or system.get("os") or "",
        "sw_notes": f"fer_bench stack {fp.get('stack_hash')}" if fp.get("stack_hash") else "",
    }
