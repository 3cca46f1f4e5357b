"""Which machine a run came from: its hardware identity, its software stack, their hashes, slug and sidecar name.

Torch-free (the standard library only), so the fingerprint collector, the results readers and the gates share this
one implementation.

* ``identity`` (hardware): CPU model, flags and cores, cgroup CPU quota, memory (GiB), the visible GPUs' models,
  memory, compute capability and MIG mode; and ``cpu.isa_cap`` where the environment caps the instruction set torch
  may use (``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` makes an AVX-512 machine run like an AVX2 one: its
  runs are another machine's, stored and gated apart, with ``-isa-avx2`` in the slug). No hostname and no GPU
  UUIDs (sibling nodes of one model must match).
  ``identity_hash`` decides "same machine" for every gate and keys the storage folder.
* ``stack`` (software): OS, kernel and distro, Python, the NVIDIA driver, torch / CUDA / HIP / cuDNN and the malloc
  in use. A baseline of the same hardware with another stack is compared, and the report says what changed
  (:func:`stack_changes`), so an upgrade that slows training shows as a regression instead of "no baseline".
* ``slug``: ``<cpu>-<N>c__<gpus or cpu>`` (``epyc-7763-16c__h100-80gb-x1``), the storage folder's readable name.
  Not unique: the identity hash is the arbiter. Where two identities share a slug (cloud VMs say "AMD EPYC" for
  several CPU generations), :func:`distinguish_identities` finds what tells them apart, and folders and tables name
  them ``<slug>~<that>`` (``epyc-2c__cpu~f25m17``, ``epyc-2c__cpu~f26m2``).

Schema 1 fingerprints (before the split) held one identity of both; :func:`split_legacy_identity` takes it apart
and :func:`normalize_fingerprint` recomputes its hash and slug from the hardware part, so an old run matches a new
run of the same hardware.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

#: Fingerprint schema this version writes.
SCHEMA = 2
CPU_KEYS = ("brand", "arch", "vendor", "family", "model", "flags", "sockets", "physical_cores", "logical_cores",
            "effective_cpus", "cgroup_cpu_quota")
GPU_KEYS = ("name", "memory_total_gib", "compute_capability", "mig_mode")
OS_KEYS = ("os", "kernel", "distro")
#: Environment variables that cap the CPU instruction set torch uses (ATen's vectorised kernels, oneDNN's
#: convolutions and matmuls; DNNL_MAX_CPU_ISA is ONEDNN_MAX_CPU_ISA's older name).
ISA_ENV_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
SOFTWARE_KEYS = ("torch", "torch_cuda", "torch_hip", "cudnn", "malloc")
#: The sidecar beside ``NAME.json``: ``NAME.fingerprint``, without .json, so pytest-benchmark's ``*.json`` globbing
#: of its storage folder never loads it as a run. Schema 1 wrote ``NAME.fingerprint.json``; readers accept both.
SIDECAR_SUFFIX = ".fingerprint"
LEGACY_SIDECAR_SUFFIX = ".fingerprint.json"
# Readable names of stack fields in change lines; other fields go by their key.
_STACK_LABELS = {"gpu_driver_version": "gpu driver", "torch_cuda": "torch cuda", "torch_hip": "torch hip",
                 "python_implementation": "python implementation"}


# ------------------------------------------------------------------------------------------ identity and stack
def collect_isa_cap(env: dict | None = None) -> dict:
    """The ISA_ENV_VARS that are set (``{"ONEDNN_MAX_CPU_ISA": "AVX2"}``); {} when none is."""
    env = os.environ if env is None else env
    return {var: env[var].strip() for var in ISA_ENV_VARS if (env.get(var) or "").strip()}


def _identity_cpu(cpu: dict) -> dict:
    out = {key: cpu.get(key) for key in CPU_KEYS}
    if cpu.get("isa_cap"):  # only when set: an uncapped machine's identity (and hash) is what it always was
        out["isa_cap"] = dict(cpu["isa_cap"])
    return out


def create_hardware_identity(info: dict) -> dict:
    """The hardware that makes two machines the same, from collected ``info`` (cpu, memory, gpus sections)."""
    cpu = info.get("cpu") or {}
    gpus = info.get("gpus") or []
    return {
        "cpu": _identity_cpu(cpu),
        "memory_gib": (info.get("memory") or {}).get("total_gib"),
        "gpu_count": len(gpus),
        "gpus": [{key: g.get(key) for key in GPU_KEYS} for g in gpus],
    }


def create_stack(info: dict) -> dict:
    """The software stack a run used, from collected ``info`` (system and software sections)."""
    system, sw = info.get("system") or {}, info.get("software") or {}
    python = ".".join((system.get("python_version") or "").split(".")[:2]) or None
    return {
        "os": {key: system.get(key) for key in OS_KEYS},
        "python": python,
        "python_implementation": system.get("python_implementation"),
        "gpu_driver_version": sw.get("nvidia_driver_version"),
        **{key: sw.get(key) for key in SOFTWARE_KEYS},
    }


def split_legacy_identity(identity: dict) -> tuple[dict, dict]:
    """A schema 1 identity (hardware and software in one dict) as (hardware identity, stack), schema 2's shapes.

    Fields the old identity lacks (``software.malloc`` before it was recorded) are None.
    """
    identity = identity if isinstance(identity, dict) else {}
    cpu = identity.get("cpu") if isinstance(identity.get("cpu"), dict) else {}
    gpus = [g for g in identity.get("gpus") or [] if isinstance(g, dict)]
    os_part = identity.get("os") if isinstance(identity.get("os"), dict) else {}
    sw = identity.get("software") if isinstance(identity.get("software"), dict) else {}
    hardware = {
        "cpu": _identity_cpu(cpu),
        "memory_gib": identity.get("memory_gib"),
        "gpu_count": identity.get("gpu_count", len(gpus)),
        "gpus": [{key: g.get(key) for key in GPU_KEYS} for g in gpus],
    }
    stack = {
        "os": {key: os_part.get(key) for key in OS_KEYS},
        "python": identity.get("python"),
        "python_implementation": identity.get("python_implementation"),
        "gpu_driver_version": identity.get("gpu_driver_version"),
        **{key: sw.get(key) for key in SOFTWARE_KEYS},
    }
    return hardware, stack


def hash_identity(obj: Any) -> str:
    """First 16 hex digits of the sha256 of ``obj``'s canonical JSON (the identity hash and the stack hash)."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:16]


def normalize_fingerprint(fp: dict) -> dict:
    """A schema 1 or 2 fingerprint as schema 2's machine fields: slug, identity_hash, identity, stack, stack_hash.

    Schema 1: the identity is split, its hash and slug recomputed from the hardware part. Schema 2: the stored
    values; a stack the fingerprint lacks is ``{}`` with hash None. No validation (the readers do theirs).
    """
    if fp.get("schema") == 1:
        hardware, stack = split_legacy_identity(fp.get("identity"))
        return {"slug": make_slug(hardware), "identity_hash": hash_identity(hardware), "identity": hardware,
                "stack": stack, "stack_hash": hash_identity(stack)}
    identity, stack = fp.get("identity"), fp.get("stack")
    stack = stack if isinstance(stack, dict) else {}
    stack_hash = fp.get("stack_hash") if isinstance(fp.get("stack_hash"), str) else None
    return {"slug": fp.get("slug"), "identity_hash": fp.get("identity_hash"),
            "identity": identity if isinstance(identity, dict) else {}, "stack": stack,
            "stack_hash": stack_hash or (hash_identity(stack) if stack else None)}


def create_stack_record(fp: dict) -> dict:
    """What a results JSON holds at its top-level ``"fer_bench"`` key: ``{"stack": ..., "stack_hash": ...}``."""
    stack = fp.get("stack") or {}
    return {"stack": stack, "stack_hash": fp.get("stack_hash") or (hash_identity(stack) if stack else None)}


# ---------------------------------------------------------------------------------------------- stack changes
def _flat_stack(stack: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in stack.items():
        if isinstance(value, dict):  # os: {os, kernel, distro} -> os, kernel, distro
            out.update({k: v for k, v in value.items() if not isinstance(v, dict)})
        else:
            out[key] = value
    return out


def _stack_of(machine_or_dict: Any) -> dict:
    stack = getattr(machine_or_dict, "stack", machine_or_dict)
    if isinstance(stack, dict) and isinstance(stack.get("stack"), dict):  # a fingerprint or a stack record
        stack = stack["stack"]
    return stack if isinstance(stack, dict) else {}


def _show(value: Any) -> str:
    return "none" if value is None else ",".join(map(str, value)) if isinstance(value, list) else str(value)


def stack_changes(old: Any, new: Any) -> list[str]:
    """What changed in the software stack, one readable line per field: ``torch 2.14.1+cu130 -> 2.15.0``.

    ``old`` and ``new`` are Machines (their ``stack``), fingerprints, stack records or stacks. [] when either
    stack is unknown (empty).
    """
    a, b = _stack_of(old), _stack_of(new)
    if not a or not b:
        return []
    flat_a, flat_b = _flat_stack(a), _flat_stack(b)
    keys = list(flat_a) + [k for k in flat_b if k not in flat_a]
    return [f"{_STACK_LABELS.get(k, k)} {_show(flat_a.get(k))} -> {_show(flat_b.get(k))}"
            for k in keys if flat_a.get(k) != flat_b.get(k)]


def stack_change_notes(baseline: Any, current: Any) -> list[str]:
    """``software stack changed since the baseline: torch 2.14.1 -> 2.15.0``, a line per change (gate, plugin)."""
    return [f"software stack changed since the baseline: {change}" for change in stack_changes(baseline, current)]


# ------------------------------------------------------------------------------------------------------- slug
def _slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.")


def shorten_cpu_name(brand: str | None) -> str:
    """"AMD EPYC 7763 64-Core Processor" -> "epyc-7763": vendor words, clock and graphics dropped."""
    text = re.sub(r"\((r|tm)\)|®|™", " ", brand or "", flags=re.I)
    text = re.split(r"@|\bw/|\bwith\b", text, flags=re.I)[0]
    text = re.sub(r"\b\w+-core\b|\b\d+(st|nd|rd|th)\s+gen\b", " ", text, flags=re.I)
    text = re.sub(r"\b(amd|intel|apple|processor|cpu|core)\b", " ", text, flags=re.I)
    return _slugify(text) or "unknown-cpu"


def shorten_gpu_name(name: str | None, memory_gib: int | None = None) -> str:
    """"NVIDIA H100 80GB HBM3" -> "h100-80gb"; the memory size is appended when the name lacks one."""
    text = re.sub(r"\b(nvidia|geforce|tesla|hbm\w*|gddr\w*)\b", " ", name or "", flags=re.I)
    short = _slugify(text) or "unknown-gpu"
    if memory_gib and not re.search(r"\d+gb\b", short):
        short = f"{short}-{memory_gib}gb"
    return short


def isa_cap_label(isa_cap: dict | None) -> str | None:
    """``isa-avx2`` for ``{"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}``; None when uncapped."""
    values = []
    for value in (isa_cap or {}).values():
        short = _slugify(str(value))
        if short and short not in values:
            values.append(short)
    return "isa-" + "-".join(values) if values else None


def make_slug(fp_or_identity: dict) -> str:
    """A readable, filesystem-safe name of the hardware: ``<cpu>-<N>c__<gpus or cpu>``, with ``-isa-<cap>`` after
    the cores where the environment caps the instruction set (``epyc-2c-isa-avx2__cpu``).

    Takes a fingerprint or a hardware identity. Not unique: two identities may share a slug; the hash decides.
    """
    ident = fp_or_identity.get("identity", fp_or_identity)
    cpu = ident.get("cpu") or {}
    cores = cpu.get("effective_cpus")
    cpu_part = shorten_cpu_name(cpu.get("brand") or cpu.get("arch")) + (f"-{cores}c" if cores else "")
    cap = isa_cap_label(cpu.get("isa_cap"))
    if cap:
        cpu_part += f"-{cap}"
    counts = Counter(shorten_gpu_name(g.get("name"), g.get("memory_total_gib")) for g in ident.get("gpus") or [])
    gpu_part = "_".join(f"{name}-x{n}" for name, n in counts.items()) or "cpu"
    return "__".join(re.sub(r"[^a-z0-9._-]+", "-", p).strip("-.") or "unknown" for p in (cpu_part, gpu_part))


# ------------------------------------------------------------------------------- identities sharing a slug
#: The instruction-set levels a distinguished slug names, highest first, by the flag that marks each.
ISA_LEVELS = (("amx", "amx_tile"), ("avx512", "avx512f"), ("avx2", "avx2"), ("avx", "avx"), ("sse4", "sse4_2"))
#: Between a slug and what tells apart identities that share it: ``epyc-2c__cpu~f25m17``.
DISTINGUISH_SEPARATOR = "~"


def cpu_model_label(identity: dict) -> str | None:
    """``f25m17``: the CPU's family and model numbers (cloud VMs say "AMD EPYC" for every generation); None when
    either is unknown."""
    cpu = identity.get("cpu") if isinstance(identity.get("cpu"), dict) else {}
    family, model = cpu.get("family"), cpu.get("model")
    if family is None or model is None:
        return None
    return _slugify(f"f{family}m{model}") or None


def isa_level_label(identity: dict) -> str | None:
    """The highest instruction-set level the CPU's flags show (``avx512``, ``avx2``); None when none is known."""
    cpu = identity.get("cpu") if isinstance(identity.get("cpu"), dict) else {}
    flags = cpu.get("flags") if isinstance(cpu.get("flags"), list) else []
    return next((label for label, flag in ISA_LEVELS if flag in flags), None)


def _cpu_model_and_isa(identity: dict) -> str | None:
    parts = (cpu_model_label(identity), isa_level_label(identity))
    return None if None in parts else "-".join(parts)


def short_hash(identity_hash: str) -> str:
    """The first 6 digits of an identity hash (an unknown machine's ``unknown:`` prefix dropped)."""
    return identity_hash.split(":")[-1][:6]


def distinguish_identities(identities: dict[str, dict]) -> dict[str, str]:
    """What tells apart hardware identities that share a slug, per identity hash: the CPU family and model numbers
    (``f25m17``), else the instruction-set level (``avx512``, ``avx2``), else both, else the hash's first 6 digits;
    the first of these that differs for every one of them."""
    for describe in (cpu_model_label, isa_level_label, _cpu_model_and_isa):
        parts = {h: describe(identity if isinstance(identity, dict) else {}) for h, identity in identities.items()}
        if None not in parts.values() and len(set(parts.values())) == len(parts):
            return parts
    return {h: short_hash(h) for h in identities}


def distinguished_slug(slug: str, part: str) -> str:
    """``epyc-2c__cpu~f25m17``: a slug with what tells its identity from another of the same slug."""
    return f"{slug}{DISTINGUISH_SEPARATOR}{part}"


# ---------------------------------------------------------------------------------------------------- sidecar
def sidecar_path(results_path: str | os.PathLike) -> Path:
    """Where a results file's fingerprint goes: ``out.json`` -> ``out.fingerprint`` (other names get the suffix)."""
    path = Path(results_path)
    stem = path.name[:-5] if path.name.endswith(".json") else path.name
    return path.with_name(stem + SIDECAR_SUFFIX)


def find_sidecar(results_path: str | os.PathLike) -> Path | None:
    """The existing sidecar of a results file: ``NAME.fingerprint``, else the legacy ``NAME.fingerprint.json``."""
    new = sidecar_path(results_path)
    legacy = new.with_name(new.name + ".json")
    for candidate in (new, legacy):
        if candidate.is_file():
            return candidate
    return None


def is_sidecar(path: str | os.PathLike) -> bool:
    """Whether a file is a fingerprint sidecar (either name), never a run."""
    name = Path(path).name
    return name.endswith(SIDECAR_SUFFIX) or name.endswith(LEGACY_SIDECAR_SUFFIX)
