"""Build fake pytest-benchmark result JSONs (with or without a fer_bench fingerprint) for the compare/gate tests.

The layout follows what pytest-benchmark 5 writes with --benchmark-json, plus what the plugin adds:
``machine_info["fer_bench"]`` (the hardware identity) and the top-level ``"fer_bench"`` key (the software stack).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fer_bench.machine.identity import create_stack_record, hash_identity, sidecar_path

AXIS_ID = {"batch_size": "bs{}", "num_workers": "w{}", "num_gpus": "g{}"}
#: The keys the plugin puts into machine_info["fer_bench"] (fer_bench.plugin.session.STABLE_FINGERPRINT_KEYS).
MACHINE_INFO_KEYS = ("schema", "fer_bench_version", "slug", "identity_hash", "identity")


def create_stack(**changes: object) -> dict:
    """A schema 2 software stack (torch 2.14.1 on CUDA 13, glibc-steady malloc), with ``changes`` applied;
    ``kernel=...`` changes the OS kernel."""
    stack = {"os": {"os": "Linux", "kernel": "6.1.0", "distro": "Debian GNU/Linux 12 (bookworm)"}, "python": "3.11",
             "python_implementation": "CPython", "gpu_driver_version": None, "torch": "2.14.1+cu130",
             "torch_cuda": "13.0", "torch_hip": None, "cudnn": "9.24.0", "malloc": "glibc-steady"}
    if "kernel" in changes:
        stack["os"] = {**stack["os"], "kernel": changes.pop("kernel")}
    stack.update(changes)
    return stack


def create_fingerprint(slug: str, identity: dict | None = None, schema: int = 2, stack: dict | None = None) -> dict:
    """A fer_bench fingerprint whose identity hash follows from its (hardware) identity dict.

    ``schema=1`` fakes a fingerprint from before the split: the stack's fields go into the one identity, as
    fer_bench wrote them then, and the hash covers both.
    """
    identity = identity if identity is not None else {"cpu": {"brand": slug, "cores": 2}, "gpus": []}
    stack = stack if stack is not None else create_stack()
    if schema == 1:
        software = {k: stack.get(k) for k in ("torch", "torch_cuda", "torch_hip", "cudnn", "malloc")}
        identity = {"os": stack.get("os"), "python": stack.get("python"),
                    "python_implementation": stack.get("python_implementation"),
                    "gpu_driver_version": stack.get("gpu_driver_version"), "software": software, **identity}
    fp = {
        "schema": schema,
        "fer_bench_version": "0.1.0",
        "identity": identity,
        "identity_hash": hash_identity(identity),
        "slug": slug,
        "hostname": f"{slug}-host",
        "cpu": identity.get("cpu", {}),
        "gpus": identity.get("gpus", []),
        "software": {"torch": stack.get("torch")},
        "telemetry": {},
    }
    if schema != 1:
        fp.update(stack=stack, stack_hash=hash_identity(stack))
    return fp


def create_rounds(median_s: float, n: int = 30, sigma: float = 0.03, seed: int = 0) -> list[float]:
    """Round times from lognormal noise around ``median_s`` (seconds)."""
    rng = np.random.default_rng(seed)
    return [float(v) for v in median_s * np.exp(rng.normal(0.0, sigma, size=n))]


def create_benchmark(
    function: str,
    params: dict[str, Any],
    data: Sequence[float],
    *,
    group: str = "train_step",
    extra_info: dict | None = None,
    keep_data: bool = True,
) -> dict:
    """One pytest-benchmark entry with stats computed from ``data`` (seconds per round)."""
    data = list(data)
    ordered = sorted(data)
    q1, _, q3 = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else (ordered[0],) * 3
    median = statistics.median(ordered)
    param_id = "-".join(AXIS_ID.get(k, "{}").format(v) for k, v in params.items())
    name = f"{function}[{param_id}]" if params else function
    extra = {"phase": group}
    if "batch_size" in params:
        extra["samples_per_s"] = params["batch_size"] * params.get("num_gpus", 1) / median
        extra["step_time_ms"] = median * 1e3
    extra.update(extra_info or {})
    stats = {
        "min": ordered[0], "max": ordered[-1], "mean": statistics.fmean(data),
        "stddev": statistics.stdev(data) if len(data) > 1 else 0.0, "rounds": len(data), "median": median,
        "iqr": q3 - q1, "q1": q1, "q3": q3, "iqr_outliers": 0, "stddev_outliers": 0, "outliers": "0;0",
        "ld15iqr": ordered[0], "hd15iqr": ordered[-1], "ops": 1.0 / statistics.fmean(data), "total": sum(data),
        "iterations": 1,
    }
    if keep_data:
        stats["data"] = data
    return {
        "group": group, "name": name, "fullname": f"benchmarks/test_step.py::{name}", "params": dict(params),
        "param": param_id or None, "extra_info": extra,
        "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 5, "max_time": 1.0,
                    "min_time": 5e-06, "warmup": False},
        "stats": stats,
    }


def create_run(benchmarks: list[dict], fingerprint: dict | None = None, *, when: str = "2026-01-01T12:00:00+00:00",
               node: str = "testnode", cpu_brand: str = "Test CPU") -> dict:
    """A whole pytest-benchmark JSON document, as the plugin writes it: the fingerprint's identity goes into
    machine_info["fer_bench"] (a schema 1 fingerprint whole, as fer_bench wrote it then) and its stack into the
    top-level "fer_bench" key."""
    machine_info = {
        "node": node, "processor": "", "machine": "x86_64", "python_implementation": "CPython",
        "python_version": "3.11.7", "release": "6.1", "system": "Linux",
        "cpu": {"brand_raw": cpu_brand, "count": 2, "arch": "X86_64"},
    }
    doc = {
        "machine_info": machine_info,
        "commit_info": {"id": "0" * 40, "dirty": False, "project": "fer_bench", "branch": "main"},
        "benchmarks": benchmarks,
        "datetime": when,
        "version": "5.3.1",
    }
    if fingerprint is not None and "stack" in fingerprint:
        machine_info["fer_bench"] = {k: fingerprint[k] for k in MACHINE_INFO_KEYS if k in fingerprint}
        doc["fer_bench"] = create_stack_record(fingerprint)
    elif fingerprint is not None:
        machine_info["fer_bench"] = fingerprint
    return doc


def write_run(path: Path, run: dict, *, sidecar: bool = False, legacy_sidecar: bool = False) -> Path:
    """Write ``run`` to ``path``; with ``sidecar`` the fingerprint (identity and stack) moves to NAME.fingerprint,
    with ``legacy_sidecar`` to the old name NAME.fingerprint.json."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    run = json.loads(json.dumps(run))
    if sidecar or legacy_sidecar:
        fp = {**run["machine_info"].pop("fer_bench"), **run.pop("fer_bench", {})}
        target = sidecar_path(path)
        if legacy_sidecar:
            target = target.with_name(target.name + ".json")
        target.write_text(json.dumps(fp))
    path.write_text(json.dumps(run, indent=1))
    return path


def create_train_cases(median_s: float, *, factor: float = 1.0, device: str = "cpu", n: int = 30,
                       sigma: float = 0.03, seed: int = 0, models: Sequence[str] = ("resnet18", "simple_cnn"),
                       batch_sizes: Sequence[int] = (32, 64), keep_data: bool = True) -> list[dict]:
    """train_step cases (model x batch size, fp32) whose median time is ``median_s * factor`` times a per-case
    constant (the same constants on every machine, so the machine ratio is ``factor`` for every case)."""
    out = []
    for i, model in enumerate(models):
        for j, bs in enumerate(batch_sizes):
            case_median = median_s * factor * (1 + 0.5 * i) * (bs / batch_sizes[0])
            out.append(create_benchmark(
                "test_train_step",
                {"model": model, "device": device, "batch_size": bs, "precision": "fp32"},
                create_rounds(case_median, n=n, sigma=sigma, seed=seed * 1000 + 10 * i + j),
                keep_data=keep_data,
            ))
    return out


def create_workers_cases(seed: int = 0, speed: float = 1.0) -> list[dict]:
    """epoch cases over num_workers: throughput peaks at 4 workers; data wait falls as workers grow."""
    out = []
    for bs in (64, 128):
        for w, (epoch_s, wait) in {0: (40.0, 0.6), 2: (22.0, 0.3), 4: (16.0, 0.1), 8: (17.0, 0.08)}.items():
            seconds = epoch_s * bs / 64 / speed
            out.append(create_benchmark(
                "test_epoch", {"model": "simple_cnn", "device": "cpu", "batch_size": bs, "num_workers": w},
                create_rounds(seconds, n=3, sigma=0.01, seed=seed + w), group="epoch",
                extra_info={"samples_per_s": 28709 / seconds, "data_wait_fraction": wait},
            ))
    return out


def create_precision_cases(seed: int = 0) -> list[dict]:
    """train_step cases: amp_bf16 takes half of fp32's time, bf16 a quarter."""
    out = []
    for p, factor in {"fp32": 1.0, "amp_bf16": 0.5, "bf16": 0.25}.items():
        out.append(create_benchmark(
            "test_train_step", {"model": "resnet18", "device": "cuda", "batch_size": 64, "precision": p},
            create_rounds(0.040 * factor, n=20, sigma=0.005, seed=seed), group="train_step"))
    return out


def create_batch_cases(seed: int = 0) -> list[dict]:
    """forward cases over batch size: time grows slower than the batch, so throughput rises."""
    out = []
    for bs, t in {16: 0.010, 32: 0.016, 64: 0.028, 128: 0.054}.items():
        out.append(create_benchmark(
            "test_forward", {"model": "resnet18", "device": "cuda", "batch_size": bs, "precision": "fp32"},
            create_rounds(t, n=20, sigma=0.005, seed=seed + bs), group="forward"))
    return out


def create_scaling_cases(seed: int = 0) -> list[dict]:
    """DDP cases: weak scaling (per-GPU batch 32) and strong scaling (global batch 256) over 1, 2 and 4 GPUs.

    Weak: T_1 = 100 ms, T_2 = 105 ms, T_4 = 125 ms -> E = 1, 1/1.05, 0.8.
    Strong: T_1 = 400 ms, T_2 = 220 ms, T_4 = 125 ms -> S = 1, 1.818, 3.2 and E = 1, 0.909, 0.8.
    """
    out = []
    for n, t in {1: 0.100, 2: 0.105, 4: 0.125}.items():
        out.append(create_benchmark(
            "test_ddp_step", {"model": "resnet18", "device": "cuda", "batch_size": 32, "num_gpus": n},
            [t] * 10, group="train_step", extra_info={"scaling_mode": "weak", "global_batch_size": 32 * n}))
    for n, t in {1: 0.400, 2: 0.220, 4: 0.125}.items():
        out.append(create_benchmark(
            "test_ddp_step", {"model": "resnet18", "device": "cuda", "batch_size": 256 // n, "num_gpus": n},
            [t] * 10, group="train_step", extra_info={"scaling_mode": "strong", "global_batch_size": 256}))
    return out


def create_scaling_step(world_size: int, median_s: float, *, parallel: str = "ddp", scaling: str = "weak",
                        batch_size: int = 32, model: str = "fer_cnn_2block", device: str = "cpu",
                        precision: str = "fp32", samples_per_s: float | None = None, rank_skew: float | None = None,
                        comm_exposed_ms: float | None = None, n: int = 10, group: str = "scaling") -> dict:
    """One ``test_scaling_step`` entry as the engine writes it with the parallel and scaling axes.

    ``num_gpus`` is the world size (GPUs for dp, processes for ddp). Weak: per-device batch ``batch_size``, global
    ``batch_size x world_size``; strong: global ``batch_size``, split. ``samples_per_s`` is the recorded
    throughput (default: the global batch over the median, what a faithful run records). For ddp the per-rank
    figures, the rank skew (default 1.0) and the exposed communication (default null) are filled in.
    """
    params = {"model": model, "device": device, "batch_size": batch_size, "precision": precision,
              "num_gpus": world_size, "parallel": parallel, "scaling": scaling}
    global_batch = batch_size * world_size if scaling == "weak" else batch_size
    per_device = batch_size if scaling == "weak" else max(1, batch_size // world_size)
    extra: dict[str, Any] = {
        "parallel": parallel, "world_size": world_size, "scaling_mode": scaling,
        "per_device_batch_size": per_device, "global_batch_size": global_batch,
        "samples_per_s": samples_per_s if samples_per_s is not None else global_batch / median_s,
    }
    if parallel == "ddp":
        skew = 1.0 if rank_skew is None else rank_skew
        extra.update(
            per_rank=[{"rank": r, "median_ms": median_s * 1e3 * (skew if r == world_size - 1 else 1.0),
                       "iqr_ms": 0.1, "rounds": n} for r in range(world_size)],
            rank_skew=skew, comm_exposed_ms=comm_exposed_ms,
            ddp={"backend": "gloo" if device == "cpu" else "nccl", "world_size": world_size, "nodes": 1,
                 "procs_per_node": world_size, "bucket_cap_mb": 25, "gradient_as_bucket_view": False,
                 "static_graph": False})
    entry = create_benchmark("test_scaling_step", params, [median_s] * n, group=group, extra_info=extra)
    # the ids the axes write: dp/ddp (nothing for none), "strong" (nothing for weak)
    parts = [model, device, f"bs{batch_size}", precision, f"g{world_size}",
             *([parallel] if parallel != "none" else []), *(["strong"] if scaling == "strong" else [])]
    entry["name"] = f"test_scaling_step[{'-'.join(parts)}]"
    entry["param"] = "-".join(parts)
    entry["fullname"] = f"benchmarks/test_scaling.py::{entry['name']}"
    return entry


def create_old_data_parallel_cases(times: dict[int, float] | None = None, *, batch_size: int = 64,
                                   model: str = "resnet18") -> list[dict]:
    """``test_train_step`` entries as fer_bench wrote them before the parallel/scaling axes: num_gpus 1 runs
    ``parallel: none``, above 1 ``parallel: data_parallel`` (nn.DataParallel split batch_size over the GPUs), and
    no ``global_batch_size``, ``world_size``, ``scaling_mode`` or ``samples_per_s`` in extra_info.

    Default times: 100 ms on 1 GPU, 60 ms on 2, 40 ms on 4 (strong scaling: S = 1.67, 2.5; E = 0.833, 0.625).
    """
    out = []
    for gpus, median_s in (times or {1: 0.100, 2: 0.060, 4: 0.040}).items():
        entry = create_benchmark(
            "test_train_step", {"model": model, "device": "cuda", "batch_size": batch_size, "precision": "fp32",
                                "num_gpus": gpus},
            [median_s] * 10, group="train_step", extra_info={"parallel": "none" if gpus == 1 else "data_parallel"})
        entry["extra_info"].pop("samples_per_s", None)
        entry["extra_info"].pop("step_time_ms", None)
        out.append(entry)
    return out
