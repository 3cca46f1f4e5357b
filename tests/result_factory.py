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
               node: str = "testnode", cpu_brand: str = "Test CPU", run: dict | None = None) -> dict:
    """A whole pytest-benchmark JSON document, as the plugin writes it: the fingerprint's identity goes into
    machine_info["fer_bench"] (a schema 1 fingerprint whole, as fer_bench wrote it then) and its stack into the
    top-level "fer_bench" key, with ``run`` as its run record (``{"node": "n1"}``: the node a run was made on)."""
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
        if run is not None:
            doc["fer_bench"]["run"] = dict(run)
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


# ----------------------------------------------------------------------------------- studies: convergence, ops, paper

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def create_curve(accuracies: Sequence[float], epoch_s: float, *, start_s: float = 0.0) -> list[dict]:
    """A per-epoch curve as test_time_to_accuracy records it: epoch 1.., cumulative seconds, train loss, accuracy,
    macro-F1 (accuracy - 0.05) and a per-class recall."""
    return [{"epoch": i, "time_s": round(start_s + i * epoch_s, 6), "train_loss": round(1.9 - 0.1 * i, 4),
             "accuracy": acc, "macro_f1": round(acc - 0.05, 4),
             "per_class_recall": {c: round(acc, 4) for c in FER_CLASSES}}
            for i, acc in enumerate(accuracies, start=1)]


def create_time_to_accuracy(model: str, device: str, accuracies: Sequence[float], epoch_s: float, *,
                            target: float = 0.6, batch_size: int = 64, precision: str = "fp32",
                            optimizer: str | None = "adam", pipeline: str | None = None, repeats: int = 3,
                            missed_runs: int = 0, lr_scaling: str = "none", base_lr: float = 1e-3,
                            base_batch_size: int = 64, group: str = "time_to_accuracy") -> dict:
    """One ``test_time_to_accuracy`` entry: ``repeats`` seeded runs, each training until the accuracy (the same
    curve for every run) reaches ``target`` or the curve ends (the cap: ``len(accuracies)`` epochs).

    Run i's epochs take ``epoch_s * (1 + 0.1 * (i - (repeats - 1) / 2))`` seconds, so the MLPerf score (fastest and
    slowest dropped, the rest averaged) is exactly ``epochs_to_target * epoch_s`` when every run reaches it. The
    last ``missed_runs`` runs (the slowest) never reach the target. ``optimizer=None`` writes the params of a run
    made before the optimizer and lr_scaling axes (adam, and lr_scaling only in extra_info); ``pipeline=None``
    names no pipeline (batched).
    """
    cap = len(accuracies)
    hit = next((i for i, a in enumerate(accuracies, start=1) if a >= target), None)
    runs = []
    for i in range(repeats):
        factor = 1 + 0.1 * (i - (repeats - 1) / 2)
        misses = hit is None or i >= repeats - missed_runs
        if misses:
            accs = [min(a, target - 0.01) for a in accuracies]
            stop = cap
        else:
            accs, stop = list(accuracies), hit
        curve = create_curve(accs[:stop], epoch_s * factor)
        runs.append({"seed": i, "reached_target": not misses,
                     "time_to_target_s": None if misses else curve[-1]["time_s"],
                     "epochs_to_target": None if misses else float(stop),
                     "final_accuracy": curve[-1]["accuracy"], "final_macro_f1": curve[-1]["macro_f1"],
                     "curve": curve})
    missed = sum(not r["reached_target"] for r in runs)
    reached = missed <= 1
    times = sorted(r["time_to_target_s"] for r in runs if r["reached_target"]) + [float("inf")] * missed
    kept = times[1:-1] if len(times) >= 3 else times
    reached_times = [r["time_to_target_s"] for r in runs if r["reached_target"]]
    median_run = runs[(repeats - 1) // 2]
    extra = {
        "target_accuracy": target, "max_epochs": cap, "repeats": repeats, "lr": base_lr * (
            batch_size / base_batch_size if lr_scaling == "linear" else
            (batch_size / base_batch_size) ** 0.5 if lr_scaling == "sqrt" else 1.0),
        "base_lr": base_lr, "lr_scaling": lr_scaling, "base_batch_size": base_batch_size,
        "reached_target": reached,
        "time_to_target_s": statistics.fmean(kept) if reached else None,
        "epochs_to_target": float(hit) if reached else None,
        "runs_missed": missed,
        "epoch_time_s": epoch_s,
        "final_accuracy": statistics.median(r["final_accuracy"] for r in runs),
        "final_macro_f1": statistics.median(r["final_macro_f1"] for r in runs),
        "curve": median_run["curve"],
        "runs": runs,
    }
    if reached_times:
        spread = statistics.pstdev(reached_times) / statistics.fmean(reached_times) if len(reached_times) > 1 else 0.0
        extra["time_to_target_spread"] = {"min_s": min(reached_times), "median_s": statistics.median(reached_times),
                                          "max_s": max(reached_times), "cv": round(spread, 4)}
    params: dict[str, Any] = {"model": model, "device": device, "batch_size": batch_size, "precision": precision}
    if optimizer is not None:
        params["optimizer"] = optimizer
        params["lr_scaling"] = lr_scaling
    if pipeline is not None:
        params["pipeline"] = pipeline
    data = [r["curve"][-1]["time_s"] for r in runs]
    entry = create_benchmark("test_time_to_accuracy", params, data, group=group, extra_info=extra)
    entry["extra_info"].pop("samples_per_s", None)
    entry["extra_info"].pop("step_time_ms", None)
    parts = [model, device, f"bs{batch_size}", precision, *([f"opt_{optimizer}"] if optimizer not in (None, "adam")
                                                             else []),
             *([f"lr_{lr_scaling}"] if optimizer is not None and lr_scaling != "none" else []),
             *([pipeline] if pipeline == "per_image" else [])]
    entry["name"] = f"test_time_to_accuracy[{'-'.join(parts)}]"
    entry["param"] = "-".join(parts)
    entry["fullname"] = f"benchmarks/test_convergence.py::{entry['name']}"
    return entry


def create_epoch_case(model: str, device: str, epoch_s: float, *, accuracy: float = 0.5, macro_f1: float = 0.45,
                      batch_size: int = 64, num_workers: int = 0, precision: str = "fp32",
                      pipeline: str | None = None, data_wait: float = 0.1, train_images: int = 28709,
                      eval_images: int = 3589) -> dict:
    """One ``test_epoch`` entry as bench_epoch writes it: epoch_time_s (the training epoch), samples_per_s, the
    data-wait share, and the accuracy and macro-F1 after the last epoch; a round is the epoch and its evaluation."""
    params: dict[str, Any] = {"model": model, "device": device, "batch_size": batch_size,
                              "num_workers": num_workers, "precision": precision}
    if pipeline is not None:
        params["pipeline"] = pipeline
    extra = {"epoch_time_s": epoch_s, "samples_per_s": train_images / epoch_s, "data_wait_fraction": data_wait,
             "accuracy": accuracy, "macro_f1": macro_f1, "train_images": train_images, "eval_images": eval_images}
    return create_benchmark("test_epoch", params, [epoch_s * 1.1] * 3, group="epoch", extra_info=extra)


def create_loader_case(batch_size: int, num_workers: int, samples_per_s: float, *, pipeline: str | None = None,
                       device: str = "cpu", images: int = 4096, data_wait: float | None = None) -> dict:
    """One ``test_dataloader`` entry: a pass over ``images`` images at ``samples_per_s``."""
    params: dict[str, Any] = {"device": device, "batch_size": batch_size, "num_workers": num_workers,
                              "pin_memory": False}
    if pipeline is not None:
        params["pipeline"] = pipeline
    extra: dict[str, Any] = {"samples_per_s": samples_per_s, "images_per_round": images}
    if data_wait is not None:
        extra["data_wait_fraction"] = data_wait
    return create_benchmark("test_dataloader", params, [images / samples_per_s] * 5, group="dataloader",
                            extra_info=extra)


def create_profiled_step(model: str, device: str, shares: dict[str, float], *, function: str = "test_train_step",
                         batch_size: int = 64, precision: str = "fp32", median_s: float = 0.01,
                         top_ops: list[dict] | None = None) -> dict:
    """A step entry run with ``--fer-profile-ops``: op_category_shares (the rest of 1 goes to other) and top_ops."""
    shares = dict(shares)
    shares["other"] = round(shares.get("other", 0.0) + 1.0 - sum(shares.values()), 6)
    if top_ops is None:
        biggest = max(shares, key=shares.get)
        top_ops = [{"op": f"aten::{biggest.split()[0]}", "category": biggest, "share": round(shares[biggest] * 0.8, 4)}]
    return create_benchmark(function, {"model": model, "device": device, "batch_size": batch_size,
                                       "precision": precision},
                            [median_s] * 10, group=function.removeprefix("test_"),
                            extra_info={"op_category_shares": shares, "top_ops": top_ops})


# ----------------------------------------------------------------------------------------- a fleet of nodes

FLEET_NODES = ("node-1", "node-2", "node-3", "node-4")


def create_fleet_cases(factor: float, seed: int) -> list[dict]:
    """Six cases: four train steps and two forward passes, each ``factor`` times its fleet-wide time."""
    cases = create_train_cases(0.010, factor=factor, seed=seed, sigma=0.02)
    for i, bs in enumerate((16, 32)):
        cases.append(create_benchmark("test_forward", {"model": "resnet18", "device": "cpu", "batch_size": bs,
                                                       "precision": "fp32"},
                                      create_rounds(0.004 * factor * (i + 1), n=30, sigma=0.02, seed=seed * 7 + i),
                                      group="forward"))
    return cases


def write_fleet(folder: Path, fingerprint: dict, *, slow: dict[str, float] | None = None, seed: int = 0,
                runs_per_node: dict[str, int] | None = None, nodes=FLEET_NODES) -> Path:
    """One run per node of ``nodes`` (``runs_per_node`` more) into ``folder``, each node's name in its run record;
    ``slow``: node -> its slowdown (0.15: 15% slower on every case)."""
    for n, node in enumerate(nodes):
        for k in range((runs_per_node or {}).get(node, 1)):
            factor = 1.0 + (slow or {}).get(node, 0.0)
            run = create_run(create_fleet_cases(factor, seed=seed * 100 + n * 10 + k + 1), fingerprint,
                             when=f"2026-01-0{k + 1}T12:00:00+00:00", run={"node": node, "preset": "quick"})
            write_run(folder / f"{node}-{k}.json", run)
    return folder
