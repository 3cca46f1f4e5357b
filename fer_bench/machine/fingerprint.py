"""This machine's fingerprint: a hardware identity that says which machine it is, the software stack it runs,
and telemetry that drifts.

`collect_fingerprint()` composes small ``collect_*_info(info)`` functions (pyperf's habit); each mutates one dict
and tolerates a missing library, an unreadable /proc or /sys file or a missing NVIDIA driver: it records what it
could and never raises. The collectors live beside this module, one job each:

* ``fer_bench.machine.host``: CPU model, flags and cores, cgroup CPU quota, memory, OS and kernel;
* ``fer_bench.machine.software``: package versions, torch / CUDA / cuDNN / NCCL, the malloc, thread env vars;
* ``fer_bench.machine.gpus``: the visible GPUs' models, memory, compute capability and MIG mode, and the driver,
  through the process's one NVML session (``fer_bench.machine.nvml``);
* ``fer_bench.machine.telemetry``: clocks, temperatures, power, throttle reasons, load, free memory.

What the fingerprint holds:

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

import copy
import os
from pathlib import Path
from typing import Any

from fer_bench import __version__
from fer_bench.machine import host
from fer_bench.machine._collect import sanitize, utc_now
from fer_bench.machine.gpus import collect_gpu_info
from fer_bench.machine.host import collect_cpu_info, collect_memory_info, collect_system_info
from fer_bench.machine.identity import (
    SCHEMA,
    create_hardware_identity,
    create_stack,
    hash_identity,
    make_slug,
    sidecar_path,
)
from fer_bench.machine.nvml import close_nvml
# The reports live in their own module; re-exported for the CLI's `fingerprint` command, which imports them from here.
from fer_bench.machine.report import format_fingerprint, to_mlperf  # noqa: F401
from fer_bench.machine.software import collect_software_info
from fer_bench.machine.telemetry import collect_telemetry  # the plugin and the benchmark bodies import it from here

_FINGERPRINT: dict | None = None


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
    global _FINGERPRINT
    if refresh:
        _FINGERPRINT = None
        host.forget_cpuinfo()
        close_nvml()
    if _FINGERPRINT is None:
        info: dict[str, Any] = {"errors": []}
        for collect in (collect_cpu_info, collect_memory_info, collect_system_info, collect_software_info,
                        collect_gpu_info):
            try:
                collect(info)
            except Exception as exc:  # a bug in one collector must not cost the others
                info["errors"].append(f"{collect.__name__}: {type(exc).__name__}: {exc}")
        info = sanitize(info)
        identity, stack = create_hardware_identity(info), create_stack(info)
        _FINGERPRINT = {
            "schema": SCHEMA, "fer_bench_version": __version__, "identity_hash": hash_identity(identity),
            "slug": make_slug(identity), "stack_hash": hash_identity(stack), "hostname": info.get("hostname"),
            "collected_at": utc_now(), "identity": identity, "stack": stack,
            **{k: info.get(k, {}) for k in ("cpu", "memory", "system", "software")},
            "gpus": info.get("gpus", []), "telemetry": collect_telemetry(), "errors": info["errors"],
        }
    return copy.deepcopy(_FINGERPRINT)


def write_sidecar(results_path: str | os.PathLike, fp: dict | None = None) -> Path:
    """Write the fingerprint beside a results file (``NAME.fingerprint``, see ``identity.sidecar_path``),
    atomically; returns the sidecar's path."""
    from fer_bench._atomic import write_json_atomic

    return write_json_atomic(sidecar_path(results_path), collect_fingerprint() if fp is None else fp)
