"""`fer-bench compare`: tables across machines, worker counts, precisions, batch sizes and GPU counts; the times to
a target accuracy (convergence), where a profiled step's time goes (ops) and the paper's table (paper).

Pure functions over stored pytest-benchmark JSON (pandas and numpy; never torch).

A *platform* is a machine and a device: ``<slug>/<device>`` (``laptop-i7/cpu``, ``hpc-node/cuda``). The device axis
belongs to the platform, so the platforms view puts "resnet18, bs 64, fp32, train_step" on one row with a column per
platform, whichever device ran it. A benchmark without a device axis (a data-loader pipeline) runs on the host and is
labelled ``/cpu``. Two machines whose slugs agree but whose (hardware) identity hashes differ get the hash's first
six digits; one machine that ran several software stacks (a torch upgrade) gets a platform per stack, named by
``@`` and the stack hash's first six digits, and the notes list what differs in the stacks.

Several runs of one machine: each (platform, case) takes its entry from the latest run by the JSON's datetime, so a
partial rerun replaces only the cases it ran.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import pandas as pd

from fer_bench.axes import AXES, OPTIMIZERS, PRECISIONS, order_axes
from fer_bench.errors import FerBenchError
from fer_bench.op_categories import OP_CATEGORIES
from fer_bench.results.format import (
    describe_speedup,
    format_factor,
    format_markdown_table,
    format_number,
    geomean,
    is_number,
)
from fer_bench.workload import COUNT_FIELDS, describe_workload, workload_differences
from fer_bench.results.runs import (
    CaseKey,
    CaseResult,
    RunResult,
    format_case,
    label_machines,
    list_identity_differences,
    list_stack_differences,
    load_results,
    parse_params_key,
)

VIEWS = ("platforms", "workers", "precision", "batch", "scaling", "convergence", "ops", "paper", "compile")
#: The benchmarks with a compile axis (the bare reference loop stays eager).
COMPILE_BENCHMARKS = ("test_forward", "test_forward_backward", "test_train_step", "test_epoch")
#: Views that compare throughput, where runs over different image counts are the same case (per image).
PER_IMAGE_VIEWS = ("workers", "batch")
#: Views of times of whole runs or epochs and of accuracies: never merged per image, whatever --metric says.
WHOLE_RUN_VIEWS = ("convergence", "paper")
COMPARE_METRICS = ("time", "samples_per_s", "samples_per_joule", "mfu")
#: The record column and unit each metric of the platforms view reads; every metric but time is better higher.
METRIC_COLUMNS = {"time": ("median_ms", "ms"), "samples_per_s": ("samples_per_s", "samples/s"),
                  "samples_per_joule": ("samples_per_joule", "images/J"), "mfu": ("mfu", "MFU")}
FORMATS = ("md", "csv", "json")
HOST_DEVICE = "cpu"
_MAX_IDENTITY_LINES = 25
#: Axes at the value runs made before the axis existed ran (as fer_bench.axes' since_default, here too so that a
#: run naming the value is the same case as one that does not whatever the registry holds).
IMPLIED_PARAMS: dict[str, Any] = {"optimizer": "adam", "pipeline": "batched", "lr_scaling": "none",
                                   "compile": "eager"}
#: The value an absent axis stands for (fer_bench.axes' since_default, and IMPLIED_PARAMS).
AXIS_DEFAULTS: dict[str, Any] = {**{a.name: a.since_default for a in AXES.values() if a.has_since_default},
                                 **IMPLIED_PARAMS}


@dataclass
class ViewTable:
    """One view: tidy records (csv, json, plots), a wide table (markdown) and the lines shown above it."""

    view: str
    records: pd.DataFrame
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.records.empty


# ----------------------------------------------------------------------------------------------- records


def _count_label(workload: dict | None) -> str:
    workload = workload or {}
    if workload.get("images_per_round") is not None:
        return f"{workload['images_per_round']} images/round"
    if workload.get("train_images") is not None:
        return f"{workload['train_images']} train + {workload.get('eval_images', '?')} eval images"
    return "unknown image count"


def label_workloads(cases: Sequence[CaseResult], per_image: bool) -> tuple[dict[int, str], list[str]]:
    """Tell apart cases of one function and params that did different work (fer_bench.workload).

    Cases whose workloads differ in more than image counts are different cases. Cases that differ only in image
    counts are one case when compared ``per_image`` (throughput: exact), else different cases. Returns a label
    per case (by ``id``; empty where the function and params did one kind of work) and notes saying which.
    """
    groups: dict[CaseKey, list[CaseResult]] = {}
    for case in cases:
        groups.setdefault(_case_key(case), []).append(case)
    labels: dict[int, str] = {}
    split: dict[str, set[str]] = {}
    per_image_merged: dict[str, set[str]] = {}
    count_split: dict[str, set[str]] = {}
    for key, members in groups.items():
        classes: list[tuple[dict | None, list[CaseResult]]] = []
        for case in members:
            for rep, same in classes:
                if not workload_differences(rep, case.workload, ignore_counts=True):
                    same.append(case)
                    break
            else:
                classes.append((case.workload, [case]))
        for rep, same in classes:
            counts = {_count_label(c.workload) for c in same}
            base = ""
            if len(classes) > 1:
                stripped = {k: v for k, v in (rep or {}).items() if k not in COUNT_FIELDS}
                base = describe_workload(stripped)
                split.setdefault(key.function, set()).update(
                    workload_differences(classes[0][0], rep, ignore_counts=True))
            if len(counts) > 1:
                (per_image_merged if per_image else count_split).setdefault(key.function, set()).update(counts)
            for c in same:
                count = _count_label(c.workload) if len(counts) > 1 and not per_image else ""
                labels[id(c)] = ", ".join(p for p in (base, count) if p)
    notes = []
    for function, diffs in sorted(split.items()):
        notes.append(f"`{function}`: runs did different work ({'; '.join(sorted(diffs))}): shown as separate "
                     f"cases (the `workload` column), never compared.")
    for function, counts in sorted(count_split.items()):
        notes.append(f"`{function}`: runs over different image counts ({', '.join(sorted(counts))}): shown as "
                     f"separate cases; `--metric samples_per_s` compares them per image.")
    for function, counts in sorted(per_image_merged.items()):
        notes.append(f"`{function}`: runs over different image counts ({', '.join(sorted(counts))}) compared per "
                     f"image (samples/s), which is exact for a loader pass or an epoch.")
    return labels, notes


#: extra_info figures that make a case what it is, like a param: a time to 60% and one to 65% are two cases.
CASE_DEFINING_EXTRA = ("target_accuracy",)


def _case_key(case: CaseResult) -> CaseKey:
    """The case's key without its device (the platform's) and without an implied axis at its default value; a
    case-defining extra_info figure (the target accuracy) joins it as a param."""
    key = case.key.without("device")
    params = [(k, v) for k, v in key.params if not (k in IMPLIED_PARAMS and json.loads(v) == IMPLIED_PARAMS[k])]
    names = {k for k, _ in params}
    params += [(k, json.dumps(case.extra_info[k])) for k in CASE_DEFINING_EXTRA
               if k not in names and is_number(case.extra_info.get(k))]
    return dataclasses.replace(key, params=tuple(sorted(params)))


def parse_platform_names(items: Iterable[str] | None) -> dict[str, str]:
    """``--platform-name SLUG=NAME`` values as a dict (the last of a repeated SLUG wins).

    Raises:
        FerBenchError: an item without ``=``, or with an empty side.
    """
    out: dict[str, str] = {}
    for item in items or ():
        slug, sep, name = str(item).partition("=")
        if not sep or not slug.strip() or not name.strip():
            raise FerBenchError(f"--platform-name {item!r}: write SLUG=NAME (a machine slug or slug/device, "
                                f"then the name to show)")
        out[slug.strip()] = name.strip()
    return out


def _rename_platforms(labels: dict[tuple, str], runs: Sequence[RunResult],
                      names: dict[str, str]) -> dict[tuple[tuple, str], str]:
    """Apply ``--platform-name``: a SLUG naming a machine (its label or its slug) renames that machine's label, the
    ``/device`` kept; one naming a whole platform (``slug/device``) renames that platform.

    Returns:
        the shown platform per ((identity hash, stack hash), device), for the renamed ones.

    Raises:
        FerBenchError: a SLUG that matches no machine or platform, or two platforms renamed to one name.
    """
    if not names:
        return {}
    devices: dict[tuple, set[str]] = {}
    slugs: dict[tuple, str] = {}
    for run in runs:
        k = (run.machine.identity_hash, run.machine.stack_hash)
        slugs[k] = run.machine.slug
        devices.setdefault(k, set()).update(str(c.params.get("device", HOST_DEVICE)) for c in run.cases)
    original = {(k, d): f"{labels[k]}/{d}" for k, devs in devices.items() for d in devs}
    shown: dict[tuple[tuple, str], str] = {}
    whole: dict[tuple[tuple, str], str] = {}
    for slug, name in names.items():
        platforms = [kd for kd, platform in original.items() if platform == slug]
        machines = [k for k in devices if slug in (labels[k], slugs[k])]
        if not platforms and not machines:
            raise FerBenchError(f"--platform-name {slug}={name}: no machine or platform {slug!r} in these results "
                                f"(have {', '.join(sorted(set(original.values())))})")
        whole.update((kd, name) for kd in platforms)
        for k in machines:
            # several hardware identities or stacks under one slug keep their ~hash / @stack suffixes apart
            label = name if len(machines) == 1 or labels[k] == slug else f"{name}{labels[k][len(slugs[k]):]}"
            shown.update(((k, d), f"{label}/{d}") for d in devices[k])
    shown.update(whole)  # a whole platform's name wins over its machine's
    final: dict[str, set[str]] = {}
    for kd, platform in original.items():
        final.setdefault(shown.get(kd, platform), set()).add(platform)
    clash = next(((n, sorted(o)) for n, o in sorted(final.items()) if len(o) > 1), None)
    if clash:
        raise FerBenchError(f"--platform-name: {' and '.join(clash[1])} would both be called {clash[0]!r}")
    return shown


def collect_records(runs: Sequence[RunResult], groups: Sequence[str] | None = None, *,
                    per_image: bool = False,
                    platform_names: dict[str, str] | None = None) -> tuple[list[dict], list[str]]:
    """One record per (platform, case), from the latest run that holds it.

    ``per_image``: cases that differ only in their image counts are one case (the view compares throughput);
    else they are separate cases. Cases that did other work are always separate (label_workloads).

    Returns:
        (records, notes). Each record carries platform, slug, device, machine, group, benchmark, params (without
        device), case (a stable label), median_ms, samples_per_s and the extra_info figures the views use.

    ``platform_names``: ``--platform-name`` (parse_platform_names): shown names for machines or platforms.

    Raises:
        FerBenchError: --group names no group present; --platform-name names no machine or platform.
    """
    labels = label_machines([run.machine for run in runs])
    renamed = _rename_platforms(labels, runs, platform_names or {})
    present_groups = sorted({c.group or "" for r in runs for c in r.cases})
    if groups:
        unknown = [g for g in groups if g not in present_groups]
        if len(unknown) == len(groups):
            raise FerBenchError(f"--group {' '.join(groups)}: no such group in these results "
                                f"(present: {', '.join(g or '(none)' for g in present_groups)})")
    work, notes = label_workloads([c for r in runs for c in r.cases
                                   if not groups or (c.group or "") in groups], per_image)
    latest: dict[tuple, dict] = {}
    superseded = 0
    for run in sorted(runs, key=lambda r: r.sort_key):
        machine = run.machine
        label = labels[(machine.identity_hash, machine.stack_hash)]
        for case in run.cases:
            if groups and (case.group or "") not in groups:
                continue
            device = str(case.params.get("device", HOST_DEVICE))
            key = dataclasses.replace(_case_key(case), work=work[id(case)])
            params = parse_params_key(key)
            if key.work:
                params["workload"] = key.work
            record = {
                "platform": renamed.get(((machine.identity_hash, machine.stack_hash), device), f"{label}/{device}"),
                "slug": machine.slug,
                "device": device,
                "machine": machine.identity_hash,
                "group": case.group or "",
                "benchmark": key.function,
                "case": format_case(key),
                "params": params,
                "_key": key,
                "median_ms": case.median_s * 1e3,
                "iqr_ms": float(case.stats["iqr"]) * 1e3 if is_number(case.stats.get("iqr")) else math.nan,
                "rounds": case.rounds,
                "samples_per_s": case.samples_per_s if case.samples_per_s is not None else math.nan,
                "data_wait_fraction": _float(case.extra_info.get("data_wait_fraction")),
                "samples_per_joule": _float(case.extra_info.get("samples_per_joule")),
                "mfu": _float(case.extra_info.get("mfu")),
                "_launch_bound": case.extra_info.get("launch_bound"),
                "compile_time_s": _float(case.extra_info.get("compile_time_s")),
                "_compile_graph_breaks": case.extra_info.get("compile_graph_breaks"),
                "_launch_bound_reason": case.extra_info.get("launch_bound_reason"),
                "global_batch_size": case.global_batch_size,
                **_scaling_fields(case),
                "_precision_native": case.extra_info.get("precision_native"),
                "_extra": case.extra_info,
                "run": str(run.path),
                "datetime": run.datetime.isoformat() if run.datetime else "",
            }
            slot = (record["platform"], machine.identity_hash, machine.stack_hash, key)
            superseded += slot in latest
            latest[slot] = record
    if superseded:
        notes.append(f"{superseded} older entr{'y' if superseded == 1 else 'ies'} of the same platform and case "
                     f"left out: the latest run by datetime wins.")
    return list(latest.values()), notes


def _scaling_fields(case: CaseResult) -> dict:
    """What the scaling view reads of a case: the parallel mode, world size, scaling mode and the recorded
    throughput (None / NaN for a case with no GPU count, world size or parallel mode: a loader pass)."""
    extra = case.extra_info
    scaled = "num_gpus" in case.params or "parallel" in case.params or "world_size" in extra
    recorded = extra.get("samples_per_s")
    return {
        "world_size": case.world_size if scaled else None,
        "parallel": case.parallel if scaled else None,
        "scaling_mode": case.scaling_mode if scaled else None,
        "recorded_samples_per_s": float(recorded) if case.samples_per_s_recorded else math.nan,
        "_throughput_inferred": not case.samples_per_s_recorded,
        "_dp_split_inferred": scaled and case.parallel == "dp" and case.global_batch_inferred
        and case.world_size > 1,
        "_parallel_inferred": scaled and not case.parallel_recorded and case.world_size > 1,
        "_rank_skew": _float(extra.get("rank_skew")),
        "_comm_exposed_ms": _float(extra.get("comm_exposed_ms")),
    }


def _float(value: Any) -> float:
    return float(value) if is_number(value) else math.nan


def _param_sort_key(value: Any) -> tuple:
    if value is None:
        return (2, 0.0, "")
    if is_number(value):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _sort_records(records: list[dict], names: Sequence[str], first: Sequence[str] = ()) -> list[dict]:
    def key(r: dict) -> tuple:
        return (tuple(str(r[f]) for f in first), r["group"], r["benchmark"],
                tuple(_param_sort_key(r["params"].get(n)) for n in names))

    return sorted(records, key=key)


def _param_names(records: Iterable[dict], drop: Sequence[str] = ()) -> list[str]:
    return [n for n in order_axes({k for r in records for k in r["params"]}) if n not in drop]


_INT_COLUMNS = ("rounds", "global_batch_size", "world_size", "n_cases", "runs_missed", "repeats", "max_epochs",
                "base_batch_size")
_LEAD_COLUMNS = ("platform", "kind", "value", "unit", "speedup", "speedup_text", "baseline")


def _frame(rows: list[dict], names: Sequence[str]) -> pd.DataFrame:
    """Tidy rows as a DataFrame: params keep their own types (no 64 -> 64.0), counts are nullable ints."""
    if not rows:
        return pd.DataFrame()
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lead = [*(c for c in ("group", "benchmark") if c in columns), *names]
    columns = lead + [c for c in _LEAD_COLUMNS if c in columns] + [
        c for c in columns if c not in lead and c not in _LEAD_COLUMNS]
    frame = pd.DataFrame({c: pd.Series([r.get(c) for r in rows], dtype=object) for c in columns})
    for c in columns:
        if c in names or c in ("group", "benchmark"):
            continue
        if c in _INT_COLUMNS:
            frame[c] = pd.array([None if v is None else int(v) for v in frame[c]], dtype="Int64")
        elif all(v is None or is_number(v) for v in frame[c]):
            frame[c] = frame[c].astype(float)
    frame.attrs["params"] = list(names)  # which columns are params, for the plots' series labels
    return frame


def _public(record: dict, names: Sequence[str]) -> dict:
    """A tidy row: case columns, then the record's own columns (no private keys, params spread out)."""
    row = {"group": record["group"], "benchmark": record["benchmark"]}
    row.update({n: record["params"].get(n) for n in names})
    row.update({k: v for k, v in record.items() if k not in ("params", "group", "benchmark") and not k.startswith("_")})
    return row


# ----------------------------------------------------------------------------------------------- wording


# ----------------------------------------------------------------------------------------------- views


def _machines_notes(records: list[dict], runs: Sequence[RunResult]) -> list[str]:
    platforms = sorted({r["platform"] for r in records})
    stacks = {str(run.path): run.machine.stack_hash for run in runs}
    lines = ["Platforms (machine slug / device, hardware identity hash, software stack hash, latest run):"]
    for p in platforms:
        mine = [r for r in records if r["platform"] == p]
        newest = max(mine, key=lambda r: r["datetime"])
        lines.append(f"- `{p}`: identity {mine[0]['machine']}, stack {stacks.get(newest['run']) or 'unknown'}, "
                     f"{newest['run']} ({newest['datetime'] or 'no date'})")
    machines = {(run.machine.identity_hash, run.machine.stack_hash): run.machine for run in runs}
    for title, diffs in (
        ("Identity differences between the machines (hardware):", list_identity_differences(list(machines.values()))),
        ("Software stack differences between the machines:", list_stack_differences(list(machines.values()))),
    ):
        if diffs:
            lines.append(title)
            for path, values in diffs[:_MAX_IDENTITY_LINES]:
                lines.append(f"- `{path}`: " + "; ".join(f"{label}: {v}" for label, v in values.items()))
            if len(diffs) > _MAX_IDENTITY_LINES:
                lines.append(f"- ... and {len(diffs) - _MAX_IDENTITY_LINES} more")
    return lines


def resolve_baseline(choice: str | None, platforms: Sequence[str], geomeans: dict[str, float], metric: str,
                     n_common: int) -> tuple[str, str]:
    """The baseline platform and why: --baseline (a platform or a slug with one device), else the slowest.

    Raises:
        FerBenchError: --baseline matches no platform, or a slug with several devices.
    """
    if choice:
        if choice in platforms:
            return choice, "--baseline"
        matches = [p for p in platforms if p.rsplit("/", 1)[0].split("~")[0] == choice]
        if len(matches) == 1:
            return matches[0], "--baseline"
        if matches:
            raise FerBenchError(f"--baseline {choice}: that machine ran on several devices, name one of "
                                f"{', '.join(matches)}")
        raise FerBenchError(f"--baseline {choice}: no such machine or platform (have {', '.join(platforms)})")
    if n_common and all(math.isfinite(geomeans[p]) for p in platforms):
        pick = max if metric == "time" else min
        slowest = pick(platforms, key=lambda p: geomeans[p])
        return slowest, f"the slowest by geometric mean over the {n_common} case(s) all platforms share"
    return platforms[0], "the first platform by name: no case is shared by all platforms (pass --baseline)"


def _launch_bound_notes(records: list[dict]) -> list[str]:
    """One line per platform whose steps were launch-bound (the GPU waited for kernel launches), naming the cases
    and the lever."""
    by_platform: dict[str, list[dict]] = {}
    for r in records:
        if r.get("_launch_bound"):
            by_platform.setdefault(r["platform"], []).append(r)
    notes = []
    for platform, members in sorted(by_platform.items()):
        names = ", ".join(f"`{m['case']}`" for m in members[:3]) + (f" and {len(members) - 3} more"
                                                                   if len(members) > 3 else "")
        notes.append(f"Launch-bound on `{platform}` ({len(members)} case{'s' * (len(members) != 1)}: {names}): "
                     f"{members[0]['_launch_bound_reason']}")
    return notes


def _describe_against(ratio: float, metric: str) -> str:
    """A platform against the baseline: a speedup for time and throughput, the metric's own words otherwise."""
    if metric in ("time", "samples_per_s"):
        return describe_speedup(ratio)
    if not math.isfinite(ratio) or ratio <= 0:
        return "-"
    from fer_bench.results.format import describe_ratio

    return describe_ratio(ratio, metric) if metric == "samples_per_joule" else f"{ratio:.2f}x the baseline's MFU"


def create_platforms_view(records: list[dict], runs: Sequence[RunResult], metric: str = "time",
                          baseline: str | None = None) -> ViewTable:
    """One row per case, one column per platform: the median and the speedup over the baseline platform."""
    value_col, unit = METRIC_COLUMNS[metric]
    usable = [r for r in records if math.isfinite(r[value_col])]
    if not usable:
        why = {"samples_per_joule": " (energy is measured on NVIDIA GPUs through NVML and on Linux CPUs with a "
                                    "readable RAPL counter: see each result's energy_reason)",
               "mfu": " (MFU needs a datasheet peak: a GPU of fer_bench.machine.peaks, or --fer-peak-tflops; see "
                      "each result's mfu_reason)"}.get(metric, "")
        return ViewTable("platforms", pd.DataFrame(), pd.DataFrame(), [f"no result carries {value_col}{why}"])

    def shown(value: float) -> str:
        return f"{value:.1%} MFU" if metric == "mfu" else f"{format_number(value)} {unit}"

    platforms = sorted({r["platform"] for r in usable})
    by_case: dict[CaseKey, dict[str, dict]] = {}
    for r in usable:
        by_case.setdefault(r["_key"], {})[r["platform"]] = r
    common = [k for k, cols in by_case.items() if len(cols) == len(platforms)]
    geomeans = {p: geomean(by_case[k][p][value_col] for k in common) for p in platforms}
    base, why = resolve_baseline(baseline, platforms, geomeans, metric, len(common))

    def speedup(value: float, ref: float) -> float:
        return ref / value if metric == "time" else value / ref

    names = _param_names(usable)
    out_rows, wide_rows = [], []
    ordered_keys = [r["_key"] for r in _sort_records([next(iter(c.values())) for c in by_case.values()], names)]
    for key in ordered_keys:
        cols = by_case[key]
        ref = cols.get(base)
        first = next(iter(cols.values()))
        wide = {"group": first["group"], "benchmark": first["benchmark"]}
        wide.update({n: first["params"].get(n, "") for n in names})
        for p in platforms:
            r = cols.get(p)
            if r is None:
                wide[p] = "-"
                continue
            s = speedup(r[value_col], ref[value_col]) if ref is not None else math.nan
            text = "baseline" if p == base else (_describe_against(s, metric) if ref is not None else "no baseline")
            wide[p] = f"{shown(r[value_col])} ({text})"
            out_rows.append(_public(r, names) | {"kind": "case", "value": r[value_col], "unit": unit,
                                                 "speedup": round(s, 4) if math.isfinite(s) else math.nan,
                                                 "speedup_text": text, "baseline": base})
        wide_rows.append(wide)
    shared = common
    geo_note = f"over the {len(common)} case(s) all platforms share"
    if not common:
        geo_note = "over the cases each platform shares with the baseline"
    geo = {"group": "", "benchmark": f"**geometric mean** ({geo_note})"} | {n: "" for n in names}
    for p in platforms:
        keys = shared or [k for k, c in by_case.items() if p in c and base in c]
        g_value = geomean(by_case[k][p][value_col] for k in keys)
        g_speed = geomean(speedup(by_case[k][p][value_col], by_case[k][base][value_col]) for k in keys)
        text = "baseline" if p == base else _describe_against(g_speed, metric)
        geo[p] = f"{shown(g_value)} ({text})" if keys else "-"
        out_rows.append({"group": "", "benchmark": "geometric mean"} | {n: None for n in names} | {
            "platform": p, "kind": "geomean", "value": g_value, "unit": unit, "n_cases": len(keys),
            "speedup": round(g_speed, 4) if math.isfinite(g_speed) else math.nan, "speedup_text": text,
            "baseline": base})
    wide_rows.append(geo)
    notes = _machines_notes(usable, runs)
    notes.extend(_launch_bound_notes(usable))
    what = {"time": f"median {unit} per round", "samples_per_s": "samples/s over the median round",
            "samples_per_joule": "images per joule over the timed rounds (energy_j_per_step)",
            "mfu": "achieved FLOP/s over the datasheet peak of the dtype the step ran in"}[metric]
    notes.append(f"Baseline: `{base}` ({why}). Values: {what}; "
                 f"{'speedup' if metric in ('time', 'samples_per_s') else 'ratio'} over the baseline.")
    return ViewTable("platforms", _frame(out_rows, names), pd.DataFrame(wide_rows), notes,
                     {"baseline": base, "platforms": platforms, "metric": metric})


def _series(records: list[dict], axis: str, extra_drop: Sequence[str] = ()) -> dict[tuple, list[dict]]:
    """Records with ``axis`` grouped by everything else (platform, benchmark, other params)."""
    out: dict[tuple, list[dict]] = {}
    for r in records:
        if axis not in r["params"]:
            continue
        rest = tuple(sorted((k, repr(v)) for k, v in r["params"].items() if k != axis and k not in extra_drop))
        out.setdefault((r["platform"], r["group"], r["benchmark"], rest), []).append(r)
    return out


def _pivot_table(records: list[dict], axis: str, cell, column_order: Sequence[Any], label) -> pd.DataFrame:
    names = _param_names(records, drop=(axis,))
    rows = []
    for members in _series(records, axis).values():
        first = members[0]
        row = {"platform": first["platform"], "group": first["group"], "benchmark": first["benchmark"]}
        row.update({n: first["params"].get(n, "") for n in names})
        by_value = {m["params"][axis]: m for m in members}
        for v in column_order:
            row[label(v)] = cell(by_value[v]) if v in by_value else "-"
        rows.append((first, row))
    rows.sort(key=lambda fr: (fr[0]["platform"], fr[0]["group"], fr[0]["benchmark"],
                              tuple(_param_sort_key(fr[0]["params"].get(n)) for n in names)))
    return pd.DataFrame([r for _, r in rows])


def _axis_values(records: list[dict], axis: str, order: Sequence[Any] = ()) -> list[Any]:
    values = {r["params"][axis] for r in records if axis in r["params"]}
    known = [v for v in order if v in values]
    return known + sorted(values - set(known), key=_param_sort_key)


def create_workers_view(records: list[dict]) -> ViewTable:
    """Throughput and data-wait share against num_workers; the best worker count per series marked."""
    mine = [r for r in records if "num_workers" in r["params"]]
    if not mine:
        return ViewTable("workers", pd.DataFrame(), pd.DataFrame(), ["no results with a num_workers axis"])
    _fill_implied(mine, "pipeline")
    names = _param_names(mine)
    for members in _series(mine, "num_workers").values():
        finite = [m for m in members if math.isfinite(m["samples_per_s"])]
        best = max(finite, key=lambda m: m["samples_per_s"]) if finite else None
        for m in members:
            m["best"] = m is best
    out = [_public(r, names) for r in _sort_records(mine, names, first=("platform",))]

    def cell(r: dict) -> str:
        wait = r["data_wait_fraction"]
        text = f"{format_number(r['samples_per_s'])}/s" + (f", wait {wait:.0%}" if math.isfinite(wait) else "")
        return f"**{text} best**" if r.get("best") else text

    table = _pivot_table(mine, "num_workers", cell, _axis_values(mine, "num_workers"), lambda v: f"w={v}")
    notes = ["Throughput (samples/s) and the share of the time spent waiting for data, per num_workers; "
             "**best** marks the highest throughput of each platform, benchmark and batch size."]
    notes.extend(_pipeline_notes(mine))
    return ViewTable("workers", _frame(out, names), table, notes)


def _fill_implied(records: list[dict], *axes: str, benchmarks: Sequence[str] | None = None) -> None:
    """In place: give an implied axis (IMPLIED_PARAMS) its default where a record lacks it, for the records of
    ``benchmarks``, else of each benchmark where some record names the axis (the others never had it)."""
    for axis in axes:
        having = set(benchmarks) if benchmarks is not None else {
            _function(r) for r in records if axis in r["params"]}
        for r in records:
            if _function(r) in having:
                r["params"].setdefault(axis, IMPLIED_PARAMS[axis])


def _function(record: dict) -> str:
    """The benchmark function's name (without the module that two modules of one name put before it)."""
    return record["benchmark"].rsplit("::", 1)[-1]


def _pipeline_notes(records: list[dict]) -> list[str]:
    """How far the batched loader is ahead of per_image, each at its best worker count, per platform, benchmark,
    batch size and other params."""
    pairs: dict[tuple, dict[str, dict]] = {}
    for r in records:
        pipeline = r["params"].get("pipeline")
        if pipeline is None or not math.isfinite(r["samples_per_s"]):
            continue
        rest = tuple(sorted((k, repr(v)) for k, v in r["params"].items() if k not in ("pipeline", "num_workers")))
        best = pairs.setdefault((r["platform"], r["benchmark"], rest), {})
        if pipeline not in best or r["samples_per_s"] > best[pipeline]["samples_per_s"]:
            best[pipeline] = r
    pairs = {k: v for k, v in pairs.items() if "batched" in v and "per_image" in v}
    if not pairs:
        return []
    benchmarks = {k[1] for k in pairs}
    varying = {n for n in {n for k in pairs for n, _ in k[2]}
               if len({dict(k[2]).get(n) for k in pairs}) > 1 and n != "batch_size"}
    lines = ["Batched loader against per_image, each at its best worker count:"]
    for (platform, bench, rest), best in sorted(pairs.items(), key=lambda kv: (kv[0][0], kv[0][1], [
            _param_sort_key(kv[1]["batched"]["params"].get(n)) for n in order_axes(dict(kv[0][2]))])):
        params = best["batched"]["params"]
        bits = [platform, *([bench] if len(benchmarks) > 1 else [])]
        bits += [f"bs{params['batch_size']}"] if "batch_size" in params else []
        bits += [f"{n}={params.get(n)}" for n in order_axes(varying) if n in params]
        fast, slow = best["batched"], best["per_image"]
        ratio = fast["samples_per_s"] / slow["samples_per_s"]
        lines.append(f"- {' '.join(bits)}: batched {format_number(fast['samples_per_s'])}/s "
                     f"(w={fast['params']['num_workers']}) is {format_factor(ratio)}x per_image "
                     f"{format_number(slow['samples_per_s'])}/s (w={slow['params']['num_workers']})")
    return lines


def _set_speedups(series: Iterable[list[dict]], axis: str, reference: Any) -> int:
    """In place: each member's ``speedup`` (median time) over its series' member at ``axis`` = ``reference``, and
    ``speedup_text``; returns how many series lack the reference."""
    lacking = 0
    for members in series:
        ref = next((m for m in members if m["params"][axis] == reference), None)
        lacking += ref is None
        for m in members:
            s = ref["median_ms"] / m["median_ms"] if ref is not None else math.nan
            m["speedup"] = round(s, 4) if math.isfinite(s) else math.nan
            m["speedup_text"] = (("reference" if m is ref else describe_speedup(s)) if ref is not None
                                 else f"no {reference}")
    return lacking


def create_precision_view(records: list[dict]) -> ViewTable:
    """Speedup of each precision over fp32 of the same platform, benchmark, model and batch size."""
    mine = [r for r in records if "precision" in r["params"]]
    if not mine:
        return ViewTable("precision", pd.DataFrame(), pd.DataFrame(), ["no results with a precision axis"])
    names = _param_names(mine)
    lacking = _set_speedups(_series(mine, "precision").values(), "precision", "fp32")
    for m in mine:
        # the run's own word (extra_info["precision_native"]); a run made before it was recorded says nothing
        m["emulated"] = m.get("_precision_native") is False
    out = [_public(r, names) for r in _sort_records(mine, names, first=("platform",))]

    def cell(r: dict) -> str:
        return f"{format_number(r['median_ms'])} ms ({r['speedup_text']}{', emulated' if r['emulated'] else ''})"

    table = _pivot_table(mine, "precision", cell, _axis_values(mine, "precision", PRECISIONS), str)
    notes = ["Median ms per round and the speedup over fp32 of the same platform, benchmark, model and batch size."]
    emulated = sorted({f"{r['params']['precision']} on {r['platform']}" for r in mine if r["emulated"]})
    if emulated:
        notes.append(f"emulated: {', '.join(emulated)}: no native hardware support (the run's precision_native "
                     f"is false), so slower than fp32 there is expected, not a bug.")
    if lacking:
        notes.append(f"{lacking} series ran no fp32 case: no speedup for them.")
    return ViewTable("precision", _frame(out, names), table, notes)


def create_compile_view(records: list[dict]) -> ViewTable:
    """Each compile mode's speedup over eager of the same platform, benchmark and params, with its compile time
    (cold, before the timed rounds) and graph breaks; series with no compiled case are left out."""
    mine = [{**r, "params": dict(r["params"])} for r in records if _function(r) in COMPILE_BENCHMARKS]
    _fill_implied(mine, "compile", benchmarks=list(COMPILE_BENCHMARKS))
    series = {k: v for k, v in _series(mine, "compile").items() if any(m["params"]["compile"] != "eager" for m in v)}
    mine = [m for members in series.values() for m in members]
    if not mine:
        return ViewTable("compile", pd.DataFrame(), pd.DataFrame(),
                         ["no compiled results (run the step or epoch benchmarks with --fer-compile eager,default)"])
    names = _param_names(mine)
    lacking = _set_speedups(series.values(), "compile", "eager")
    for m in mine:
        m["graph_breaks"] = m.get("_compile_graph_breaks")
    out = [_public(r, names) for r in _sort_records(mine, names, first=("platform",))]

    def cell(r: dict) -> str:
        text = f"{format_number(r['median_ms'])} ms ({r['speedup_text']}"
        if math.isfinite(r["compile_time_s"]):
            text += f", compile {format_number(r['compile_time_s'])} s"
        if r["graph_breaks"]:
            text += f", {r['graph_breaks']} graph break{'s' * (r['graph_breaks'] != 1)}"
        return text + ")"

    from fer_bench.axes import COMPILE_MODES

    table = _pivot_table(mine, "compile", cell, _axis_values(mine, "compile", COMPILE_MODES), str)
    notes = ["Median ms per round and the speedup over eager of the same platform, benchmark and params; the "
             "compile time is the first compiled call's (cold, before the timed rounds; inductor's on-disk caches "
             "make a later run's shorter)."]
    if lacking:
        notes.append(f"{lacking} series ran no eager case: no speedup for them.")
    return ViewTable("compile", _frame(out, names), table, notes)


def create_batch_view(records: list[dict]) -> ViewTable:
    """Throughput against batch size; gain over the smallest batch of the same series."""
    mine = [r for r in records if "batch_size" in r["params"]]
    if not mine:
        return ViewTable("batch", pd.DataFrame(), pd.DataFrame(), ["no results with a batch_size axis"])
    names = _param_names(mine)
    for members in _series(mine, "batch_size").values():
        smallest = min(members, key=lambda m: _param_sort_key(m["params"]["batch_size"]))
        for m in members:
            gain = m["samples_per_s"] / smallest["samples_per_s"]
            m["throughput_gain"] = round(gain, 4) if math.isfinite(gain) else math.nan
    out = [_public(r, names) for r in _sort_records(mine, names, first=("platform",))]
    table = _pivot_table(mine, "batch_size", lambda r: f"{format_number(r['samples_per_s'])}/s",
                         _axis_values(mine, "batch_size"), lambda v: f"bs={v}")
    notes = ["Throughput (samples/s) per batch size (per GPU when num_gpus > 1)."]
    return ViewTable("batch", _frame(out, names), table, notes)


#: The axes a scaling series runs along or is keyed by itself (not by its other params).
SCALING_AXES = ("num_gpus", "parallel", "scaling")
_SKEW_SHOWN_ABOVE = 1.1
_MAX_LISTED = 10


def _listed(items: Sequence[str]) -> str:
    shown = "; ".join(items[:_MAX_LISTED])
    return shown + (f"; ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def create_scaling_view(records: list[dict]) -> ViewTable:
    """Weak and strong scaling efficiency against the world size N: the devices (nn.DataParallel) or processes
    (DistributedDataParallel) sharing a step (docs: METHOD.md, Scaling).

    A series is a platform, benchmark, parallel mode (none, dp, ddp), scaling mode and the other params; its
    baseline is its own N = 1 case, else the N = 1 case of the same work run another way (the other scaling
    mode, or ``parallel: none``), said in a note. Throughput X is what each run recorded (``samples_per_s``);
    only an older run without it gets the global batch over the median, said in a note.

    Weak (fixed per-device batch): E(N) = X_N / (N X_1). Strong (fixed global batch): S(N) = T_1 / T_N,
    efficiency S(N) / N.
    """
    mine = [r for r in records if r.get("world_size") is not None]
    if not any(r["world_size"] > 1 for r in mine):
        return ViewTable("scaling", pd.DataFrame(), pd.DataFrame(),
                         ["no multi-GPU results (no case ran on more than one device or process)"])

    def rest_of(r: dict, drop_batch: bool) -> tuple:
        drop = set(SCALING_AXES) | ({"batch_size"} if drop_batch else set())
        return tuple(sorted((k, repr(v)) for k, v in r["params"].items() if k not in drop))

    series: dict[tuple, list[dict]] = {}
    for r in mine:
        mode = r["scaling_mode"]
        anchor = r["global_batch_size"] if mode == "strong" else None
        key = (r["platform"], r["group"], r["benchmark"], r["parallel"], mode, anchor, rest_of(r, mode == "strong"))
        series.setdefault(key, []).append(r)

    # the N = 1 cases by the work they did: platform, benchmark, params other than batch and the scaling axes,
    # and the global batch (at N = 1 the per-device and the global batch are one)
    singles: dict[tuple, list[dict]] = {}
    for r in mine:
        if r["world_size"] == 1:
            singles.setdefault((r["platform"], r["group"], r["benchmark"], rest_of(r, True),
                                r["global_batch_size"]), []).append(r)

    lacking: list[str] = []
    borrowed: list[str] = []
    baselines: dict[tuple, dict | None] = {}
    for key, members in series.items():
        platform, group, bench, parallel, mode, anchor, _ = key
        base = next((m for m in members if m["world_size"] == 1), None)
        series_key = members[0]["_key"].without(*SCALING_AXES, *(("batch_size",) if mode == "strong" else ()))
        label = f"{format_case(series_key)} ({parallel}, {mode}) on {platform}"
        if base is None:
            first = members[0]
            batch = anchor if mode == "strong" else first["params"].get("batch_size")
            found = singles.get((platform, group, bench, rest_of(first, True), batch), [])
            # the same parallel mode run the other way at N = 1 is the same work; then parallel none
            base = next((c for c in found if c["parallel"] == parallel), None) or next(
                (c for c in found if c["parallel"] == "none"), None)
            if base is not None:
                borrowed.append(f"{label}: `{format_case(base['_key'])}` ({base['parallel']}, {base['scaling_mode']})")
            else:
                lacking.append(label)
        baselines[key] = base
        for m in members:
            n = m["world_size"]
            m["throughput"] = m["samples_per_s"]
            m["baseline_case"] = None if base is None else f"{base['platform']} {format_case(base['_key'])}"
            m["rank_skew"] = m["_rank_skew"]
            m["comm_exposed_ms"] = m["_comm_exposed_ms"]
            if base is None:
                m["speedup"] = m["efficiency"] = math.nan
                continue
            s = base["median_ms"] / m["median_ms"]
            eff = m["throughput"] / (n * base["samples_per_s"]) if mode == "weak" else s / n
            m["speedup"] = round(s, 4) if math.isfinite(s) else math.nan
            m["efficiency"] = round(eff, 4) if math.isfinite(eff) else math.nan

    names = _param_names(mine)
    out = [_public(r, names) for r in _sort_records(mine, names, first=("platform", "parallel", "scaling_mode"))]
    rows = []
    world_sizes = sorted({r["world_size"] for r in mine})
    table_names = [n for n in names if n not in SCALING_AXES]
    single_only = 0
    for key, members in sorted(series.items(), key=lambda kv: repr(kv[0])):
        platform, group, bench, parallel, mode, anchor, _ = key
        if all(m["world_size"] == 1 for m in members):
            single_only += 1  # nothing scales: a row of 100% (a baseline shows in its series' N=1 cell)
            continue
        first = members[0]
        row = {"platform": platform, "group": group, "benchmark": bench, "parallel": parallel, "mode": mode,
               "global batch": anchor if anchor is not None else "-"}
        row.update({n: first["params"].get(n, "") if not (mode == "strong" and n == "batch_size") else "-"
                    for n in table_names})
        by_n = {m["world_size"]: m for m in members}
        base = baselines[key]
        for n in world_sizes:
            m = by_n.get(n)
            if m is None:
                borrowed_base = n == 1 and base is not None and base not in members
                row[f"N={n}"] = (f"{base['parallel']}: {format_number(base['samples_per_s'])}/s (baseline)"
                                 if borrowed_base else "-")
                continue
            detail = f"{format_number(m['throughput'])}/s"
            if parallel == "ddp" and math.isfinite(m["rank_skew"]) and m["rank_skew"] > _SKEW_SHOWN_ABOVE:
                detail += f", skew {m['rank_skew']:.2f}"
            if math.isfinite(m["efficiency"]):
                row[f"N={n}"] = f"{m['efficiency']:.0%} ({detail})"
            else:
                row[f"N={n}"] = f"no N=1 run ({detail})"
        rows.append(row)

    notes = ["Scaling efficiency per world size N, the devices (dp: nn.DataParallel) or processes "
             "(ddp: DistributedDataParallel) sharing a step; the throughput each run recorded in parentheses. "
             "Weak: fixed per-device batch, E(N) = X_N / (N X_1). Strong: fixed global batch, S(N) = T_1 / T_N, "
             f"efficiency S(N) / N. skew: the slowest rank's median over the fastest's (ddp, shown above "
             f"{_SKEW_SHOWN_ABOVE})."]
    inferred = sum(r["_throughput_inferred"] for r in mine)
    if inferred:
        notes.append(f"{_plural(inferred, 'entry records', 'entries record')} no samples_per_s (older runs): "
                     f"throughput inferred as the global batch over the median round time.")
    split = sum(r["_dp_split_inferred"] for r in mine)
    if split:
        notes.append(f"{_plural(split, 'older DataParallel entry records', 'older DataParallel entries record')} "
                     f"no global batch: nn.DataParallel split batch_size over the GPUs, so the global batch is "
                     f"batch_size (not batch_size x num_gpus), read as strong scaling unless the run said otherwise.")
    guessed = sum(r["_parallel_inferred"] for r in mine)
    if guessed:
        notes.append(f"{_plural(guessed, 'multi-GPU entry records', 'multi-GPU entries record')} no parallel "
                     f"mode: read as dp (nn.DataParallel, the only multi-GPU mode before ddp).")
    if borrowed:
        own = "has no N=1 case of its own" if len(borrowed) == 1 else "have no N=1 case of their own"
        notes.append(f"{len(borrowed)} series {own}; the baseline (X_1, T_1) is the N=1 case of the same platform "
                     f"and params run another way (`parallel: none`, or the other scaling mode): "
                     f"{_listed(borrowed)}.")
    if lacking:
        notes.append(f"{_plural(len(lacking), 'series has', 'series have')} no N=1 run: no efficiency for "
                     f"{'it' if len(lacking) == 1 else 'them'} ({_listed(lacking)}).")
    if single_only:
        notes.append(f"{_plural(single_only, 'series ran', 'series ran')} at N=1 only: no row in the table "
                     f"(their entries are in --format csv and json).")
    comm = [f"{format_case(r['_key'])} on {r['platform']} (N={r['world_size']}): "
            f"{format_number(r['_comm_exposed_ms'])} ms"
            for r in _sort_records(mine, names, first=("platform",))
            if r["parallel"] == "ddp" and math.isfinite(r["_comm_exposed_ms"])]
    if comm:
        notes.append(f"Exposed communication per ddp case (the DDP step minus the same step under no_sync): "
                     f"{_listed(comm)}.")
    return ViewTable("scaling", _frame(out, names), pd.DataFrame(rows), notes)


# ----------------------------------------------------------------------------------------------- convergence


TIME_TO_ACCURACY = "test_time_to_accuracy"
EPOCH = "test_epoch"
_MLPERF_RULE = ("MLPerf's rule: each of the seeded runs of a case trains until it reaches the target accuracy or its "
                "epoch cap; the case reaches the target when at most one run missed (none, of fewer than 3 runs), and "
                "its time is the mean of the runs left after dropping the fastest and the slowest")


def _is_time_to_accuracy(record: dict) -> bool:
    return _function(record) == TIME_TO_ACCURACY or record["group"] == "time_to_accuracy"


def _curve_points(curve: Any) -> list[dict]:
    """A stored curve's usable points (epoch and accuracy numbers; time_s NaN where absent), by epoch."""
    if not isinstance(curve, list):
        return []
    points = [{"epoch": float(p["epoch"]), "time_s": _float(p.get("time_s")), "accuracy": float(p["accuracy"]),
               "macro_f1": _float(p.get("macro_f1")), "train_loss": _float(p.get("train_loss"))}
              for p in curve if isinstance(p, dict) and is_number(p.get("epoch")) and is_number(p.get("accuracy"))]
    return sorted(points, key=lambda p: p["epoch"])


def _int_or_none(value: Any) -> int | None:
    return int(value) if is_number(value) else None


def _convergence_fields(extra: dict) -> dict:
    """What the convergence and paper views read of a test_time_to_accuracy entry. A missed case has no time."""
    time_s = _float(extra.get("time_to_target_s"))
    reached = extra.get("reached_target")
    reached = reached if isinstance(reached, bool) else math.isfinite(time_s)
    epochs = _float(extra.get("epochs_to_target"))
    if not reached:
        time_s = epochs = math.nan
    runs = [r for r in extra.get("runs") or [] if isinstance(r, dict)] if isinstance(extra.get("runs"), list) else []
    curve = _curve_points(extra.get("curve"))
    run_curves = [_curve_points(r.get("curve")) for r in runs]
    accuracies = [p["accuracy"] for c in [curve, *run_curves] for p in c]
    final = _float(extra.get("final_accuracy"))
    spread = extra.get("time_to_target_spread") if isinstance(extra.get("time_to_target_spread"), dict) else {}
    repeats = _int_or_none(extra.get("repeats")) or (len(runs) or None)
    missed = _int_or_none(extra.get("runs_missed"))
    if missed is None and runs:
        missed = sum(r.get("reached_target") is False for r in runs)
    cap = _int_or_none(extra.get("max_epochs"))
    epochs_run = [p["epoch"] for c in [curve, *run_curves] for p in c]
    lr_scaling = extra.get("lr_scaling")
    target = _float(extra.get("target_accuracy"))
    return {
        "target_accuracy": target,
        "reached_target": bool(reached),
        "time_to_target_s": time_s,
        "epochs_to_target": epochs,
        "runs_missed": missed,
        "repeats": repeats,
        "max_epochs": cap,
        "final_accuracy": final,
        "final_macro_f1": _float(extra.get("final_macro_f1")),
        # the run's own figure, else the highest point of the stored curves
        "best_accuracy": (float(extra["best_accuracy"]) if is_number(extra.get("best_accuracy"))
                          else max(accuracies) if accuracies else final),
        "epoch_time_s": _float(extra.get("epoch_time_s")),
        "spread_min_s": _float(spread.get("min_s")),
        "spread_median_s": _float(spread.get("median_s")),
        "spread_max_s": _float(spread.get("max_s")),
        "spread_cv": _float(spread.get("cv")),
        "lr": _float(extra.get("lr")),
        "base_lr": _float(extra.get("base_lr")),
        "lr_scaling": lr_scaling if isinstance(lr_scaling, str) else None,
        "base_batch_size": _int_or_none(extra.get("base_batch_size")),
        "_curve": curve,
        "_epochs_run": max(epochs_run) if epochs_run else None,
    }


def _percent(value: float) -> str:
    return f"{value:.1%}" if math.isfinite(value) else "-"


def _target_text(value: float) -> str:
    return f"{value:.0%}" if math.isfinite(value) and round(value * 100, 6) == round(value * 100) else _percent(value)


def _convergence_cell(f: dict) -> str:
    if f["reached_target"]:
        text = f"{format_number(f['time_to_target_s'])} s"
        if math.isfinite(f["epochs_to_target"]):
            text += f", {f['epochs_to_target']:.1f} ep"
        if f["runs_missed"]:
            text += f" ({f['runs_missed']} of {f['repeats'] or '?'} runs missed)"
        return f"**{text} best**" if f.get("best") else text
    cap = f["max_epochs"] or (int(f["_epochs_run"]) if f["_epochs_run"] else None)
    best = f"best {_percent(f['best_accuracy'])}" if math.isfinite(f["best_accuracy"]) else "no accuracy recorded"
    return f"missed ({f'cap {cap} ep' if cap else 'no cap recorded'}, {best})"


#: Columns of the convergence records, after the case's params and the platform.
_CONVERGENCE_COLUMNS = ("target_accuracy", "lr_scaling", "time_to_target_s", "epochs_to_target", "reached_target",
                        "runs_missed", "repeats", "max_epochs", "final_accuracy", "final_macro_f1", "best_accuracy",
                        "epoch_time_s", "spread_min_s", "spread_median_s", "spread_max_s", "spread_cv", "lr",
                        "base_lr", "base_batch_size", "best")


def create_convergence_view(records: list[dict]) -> ViewTable:
    """Time to a target accuracy (test_time_to_accuracy, MLPerf's scoring): a row per model, target and the other
    device-independent params, a column per platform; the fastest optimizer and batch size of each platform marked.
    A missed case shows no time, but its epoch cap and the best accuracy any run reached."""
    mine = [r for r in records if _is_time_to_accuracy(r)]
    if not mine:
        return ViewTable("convergence", pd.DataFrame(), pd.DataFrame(),
                         ["no time-to-accuracy results (test_time_to_accuracy, group time_to_accuracy)"])
    _fill_implied(mine, "optimizer", benchmarks=[_function(r) for r in mine])
    _fill_implied(mine, "pipeline")
    for r in mine:
        r.update(_convergence_fields(r["_extra"]))
        # the lr scaling is a param (the axis), else extra_info's word (runs before the axis), else the base rate
        r["lr_scaling"] = r["params"].get("lr_scaling") or r["lr_scaling"] or IMPLIED_PARAMS["lr_scaling"]
    names = _param_names(mine, drop=("target_accuracy", "lr_scaling"))
    platforms = sorted({r["platform"] for r in mine})

    def row_key(r: dict) -> tuple:
        return (r["group"], r["benchmark"], tuple(sorted((k, repr(v)) for k, v in r["params"].items())),
                r["lr_scaling"] or "", r["target_accuracy"])

    # the fastest optimizer and batch size: per platform and everything else, over the cases that reached the target
    contests: dict[tuple, list[dict]] = {}
    for r in mine:
        rest = tuple(sorted((k, repr(v)) for k, v in r["params"].items()
                            if k not in ("optimizer", "batch_size", "target_accuracy")))
        contests.setdefault((r["platform"], r["benchmark"], rest, r["lr_scaling"] or "", r["target_accuracy"]),
                            []).append(r)
    marked = 0
    for members in contests.values():
        reached = [m for m in members if m["reached_target"]]
        best = min(reached, key=lambda m: m["time_to_target_s"]) if len(members) > 1 and reached else None
        for m in members:
            m["best"] = m is best
        marked += best is not None

    rows: dict[tuple, dict] = {}
    for r in sorted(mine, key=lambda r: (r["group"], r["benchmark"],
                                         tuple(_param_sort_key(r["params"].get(n)) for n in names),
                                         r["lr_scaling"] or "", r["target_accuracy"])):
        row = rows.get(row_key(r))
        if row is None:
            row = {"benchmark": r["benchmark"]} if len({m["benchmark"] for m in mine}) > 1 else {}
            row.update({n: r["params"].get(n, "") for n in names})
            row.update({"lr scaling": r["lr_scaling"] or "-", "target": _target_text(r["target_accuracy"])})
            row.update({p: "-" for p in platforms})
            rows[row_key(r)] = row
        row[r["platform"]] = _convergence_cell(r)

    out = []
    curves = []
    varying = [n for n in names if n != "model" and len({repr(r["params"].get(n)) for r in mine}) > 1]
    several_models = len({r["params"].get("model") for r in mine}) > 1
    for r in _sort_records(mine, names, first=("platform",)):
        row = {"group": r["group"], "benchmark": r["benchmark"], **{n: r["params"].get(n) for n in names},
               "platform": r["platform"], "case": r["case"]}
        row.update({c: r[c] for c in _CONVERGENCE_COLUMNS})
        row.update({"run": r["run"], "datetime": r["datetime"]})
        out.append(row)
        if r["_curve"]:
            bits = [r["platform"], *([str(r["params"].get("model"))] if several_models else [])]
            bits += [f"{n}={r['params'].get(n)}" for n in varying]
            if len({m["lr_scaling"] for m in mine}) > 1:
                bits.append(f"lr {r['lr_scaling']}")
            if len({m["target_accuracy"] for m in mine}) > 1:
                bits.append(f"target {_target_text(r['target_accuracy'])}")
            curves.append({"label": " ".join(bits), "platform": r["platform"], "target": r["target_accuracy"],
                           "reached": r["reached_target"], "points": r["_curve"]})

    targets = sorted({(str(r["params"].get("model")), r["target_accuracy"]) for r in mine})
    repeats = sorted({r["repeats"] for r in mine if r["repeats"]})
    notes = [f"Time to the target accuracy (test_time_to_accuracy): {_MLPERF_RULE}. A cell shows that time and the "
             f"epochs to the target; a case that missed shows no time: `missed (cap N ep, best X%)`, its epoch cap "
             f"and the highest accuracy any run's curve reached.",
             "Target accuracy: " + ", ".join(f"{_target_text(t)} ({m})" for m, t in targets) + "; repeats: "
             + (", ".join(map(str, repeats)) if repeats else "not recorded") + " seeded runs per case."]
    if marked:
        notes.append("**best** marks the shortest time to target of each platform, model and target across "
                     "optimizers and batch sizes (the other params and the lr scaling alike).")
    missed = sum(not r["reached_target"] for r in mine)
    if missed:
        notes.append(f"{_plural(missed, 'case', 'cases')} missed the target (more than one run missed): no time.")
    return ViewTable("convergence", _frame(out, names), pd.DataFrame(list(rows.values())), notes,
                     {"curves": curves, "platforms": platforms})


# ----------------------------------------------------------------------------------------------- ops


#: The op categories of ``extra_info["op_category_shares"]`` (--fer-profile-ops), in the order shown.
_OPS_PREFERRED_BENCHMARKS = ("test_train_step", "test_forward")


def _op_shares(extra: dict) -> dict[str, float] | None:
    """The recorded shares by category (unknown categories added to other), or None where there are none."""
    shares = extra.get("op_category_shares")
    if not isinstance(shares, dict) or not shares:
        return None
    values = {str(k): float(v) for k, v in shares.items() if is_number(v)}
    if not values:
        return None
    out = {c: values.get(c, 0.0) for c in OP_CATEGORIES}
    out["other"] += sum(v for k, v in values.items() if k not in OP_CATEGORIES)
    return out


def _top_op(extra: dict) -> dict | None:
    ops = extra.get("top_ops")
    if not isinstance(ops, list):
        return None
    found = [o for o in ops if isinstance(o, dict) and isinstance(o.get("op"), str) and is_number(o.get("share"))]
    return max(found, key=lambda o: o["share"]) if found else None


def create_ops_view(records: list[dict]) -> ViewTable:
    """Where a profiled step spends its time: the share of each op category (``--fer-profile-ops``)."""
    mine = [r for r in records if _op_shares(r["_extra"]) is not None]
    if not mine:
        return ViewTable("ops", pd.DataFrame(), pd.DataFrame(),
                         ["no op profiles (no result carries extra_info op_category_shares: run with "
                          "--fer-profile-ops)"])
    names = _param_names(mine)
    unknown = sorted({str(k) for r in mine for k in r["_extra"]["op_category_shares"] if k not in OP_CATEGORIES})
    for r in mine:
        r["_shares"] = _op_shares(r["_extra"])
        r["_top"] = _top_op(r["_extra"])

    # one case per (model, platform) for the notes and the plot: a train step first, then fp32, then the params
    def preference(r: dict) -> tuple:
        fn = _function(r)
        return (_OPS_PREFERRED_BENCHMARKS.index(fn) if fn in _OPS_PREFERRED_BENCHMARKS else 2, fn,
                r["params"].get("precision", "fp32") != "fp32",
                tuple(_param_sort_key(r["params"].get(n)) for n in names))

    chosen: dict[tuple, dict] = {}
    for r in sorted(mine, key=preference):
        chosen.setdefault((str(r["params"].get("model", r["benchmark"])), r["platform"]), r)
    representatives = {id(r) for r in chosen.values()}

    out, rows = [], []
    for r in _sort_records(mine, names, first=("platform",)):
        top = r["_top"]
        top_text = f"{top['op']} {_percent(float(top['share']))}" if top else "-"
        row = {"platform": r["platform"], "benchmark": r["benchmark"], **{n: r["params"].get(n, "") for n in names}}
        row.update({c: _percent(r["_shares"][c]) for c in OP_CATEGORIES})
        row["top op"] = top_text
        rows.append(row)
        tidy = {"group": r["group"], "benchmark": r["benchmark"], **{n: r["params"].get(n) for n in names},
                "platform": r["platform"], "case": r["case"], **r["_shares"],
                "top_op": top["op"] if top else None,
                "top_op_category": (top.get("category") if top else None),
                "top_op_share": float(top["share"]) if top else math.nan,
                "representative": id(r) in representatives, "run": r["run"], "datetime": r["datetime"]}
        out.append(tidy)
    notes = ["Shares of the self time of a profiled step (--fer-profile-ops), outside the timed rounds, by op "
             "category; `top op`: the op with the largest share."]
    for (model, platform), r in sorted(chosen.items()):
        category = max(OP_CATEGORIES, key=lambda c: r["_shares"][c])
        case = [_function(r)]
        if "batch_size" in r["params"]:
            case.append(f"bs {r['params']['batch_size']}")
        if "precision" in r["params"]:
            case.append(str(r["params"]["precision"]))
        case = ", ".join(case)
        notes.append(f"- {model} on {platform}: {r['_shares'][category]:.0%} of a step in {category} ({case})")
    if unknown:
        notes.append(f"Categories outside the nine above counted as other: {', '.join(unknown)}.")
    return ViewTable("ops", _frame(out, names), pd.DataFrame(rows), notes, {"categories": OP_CATEGORIES})


# ----------------------------------------------------------------------------------------------- paper


#: The value the paper view prefers on an axis with several, where present (else: the one most platforms ran).
#: The paper's setting where a machine ran it: fp32, one device, the default batch of 64 and Adam at its base rate.
PAPER_PREFERRED: dict[str, Any] = {**AXIS_DEFAULTS, "precision": "fp32", "num_gpus": 1, "lr_scaling": "none",
                                   "batch_size": 64}
_PAPER_FIRST_AXES = ("precision", "batch_size", "optimizer", "pipeline")
_MISSING = object()


def _paper_params(r: dict) -> dict:
    """The record's params with the defaults of absent added axes, and a time-to-accuracy case's target and lr
    scaling as if they were params (the paper view chooses among them as among params)."""
    params = {k: v if v is None or isinstance(v, (str, int, float)) else json.dumps(v, sort_keys=True)
              for k, v in r["params"].items()}  # hashable, to count and choose
    if _function(r) in (TIME_TO_ACCURACY, EPOCH) or _is_time_to_accuracy(r):
        params.setdefault("optimizer", AXIS_DEFAULTS["optimizer"])
        params.setdefault("pipeline", AXIS_DEFAULTS["pipeline"])
    if _is_time_to_accuracy(r):
        params["target_accuracy"] = r["target_accuracy"]
        params["lr_scaling"] = r["lr_scaling"]
    return params


def _choose_paper_value(axis: str, members: list[dict]) -> tuple[Any, str]:
    """One value of ``axis`` for a model: the preferred one where present (PAPER_PREFERRED; a precision by
    PRECISIONS' order), else the one most platforms ran (ties: the smallest; a target: the highest)."""
    platforms: dict[Any, set[str]] = {}
    for r in members:
        value = r["_paper"].get(axis, _MISSING)
        if value is not _MISSING:
            platforms.setdefault(value, set()).add(r["platform"])
    if axis in PAPER_PREFERRED and PAPER_PREFERRED[axis] in platforms:
        return PAPER_PREFERRED[axis], "preferred"
    if axis == "precision" and any(p in platforms for p in PRECISIONS):
        return next(p for p in PRECISIONS if p in platforms), "no fp32 case"
    if axis == "optimizer" and any(o in platforms for o in OPTIMIZERS):
        return next(o for o in OPTIMIZERS if o in platforms), "no adam case"
    most = max(len(p) for p in platforms.values())
    tied = sorted((v for v in platforms if len(platforms[v]) == most), key=_param_sort_key)
    value = tied[-1] if axis == "target_accuracy" else tied[0]  # ties: the highest target, else the smallest
    ties = "" if len(tied) == 1 else f", ties: the {'highest' if axis == 'target_accuracy' else 'smallest'}"
    return value, f"most platforms: {most}{ties}"


def create_paper_view(records: list[dict]) -> ViewTable:
    """The paper's table: per model and platform, the epoch time, the time to the target accuracy, the final
    accuracy and macro-F1, and the speedups over the model's slowest platform. One case per model, chosen the same
    way for every platform (see the notes)."""
    epochs = [r for r in records if _function(r) == EPOCH and is_number(r["_extra"].get("epoch_time_s"))]
    tta = [r for r in records if _is_time_to_accuracy(r)]
    for r in tta:
        r.update(_convergence_fields(r["_extra"]))
        r["lr_scaling"] = r["params"].get("lr_scaling") or r["lr_scaling"] or IMPLIED_PARAMS["lr_scaling"]
    mine = [r for r in epochs + tta if "model" in r["params"]]
    if not mine:
        return ViewTable("paper", pd.DataFrame(), pd.DataFrame(),
                         ["no results for the paper's table (test_epoch with epoch_time_s, or "
                          "test_time_to_accuracy)"])
    named: dict[str, set[str]] = {}
    for r in mine:
        named.setdefault(_function(r), set()).update(r["params"])
    for r in mine:
        # an added axis some run of the benchmark names: the runs that do not name it ran its default
        r["_paper"] = {**{a: d for a, d in AXIS_DEFAULTS.items() if a in named[_function(r)]}, **_paper_params(r)}

    rows: list[dict] = []
    choice_notes: list[str] = []
    left_out: list[str] = []
    for model in sorted({r["params"]["model"] for r in mine}, key=str):
        members = [r for r in mine if r["params"]["model"] == model]
        axes = [a for a in _PAPER_FIRST_AXES if any(a in r["_paper"] for r in members)]
        axes += [a for a in order_axes({k for r in members for k in r["_paper"]})
                 if a not in axes and a not in ("model", "num_workers")]
        said = []
        for axis in axes:
            if not any(axis in r["_paper"] for r in members):
                continue  # the cases an earlier axis kept do not have this one (another benchmark's axis)

            def shown(v: Any) -> str:
                return _target_text(v) if axis == "target_accuracy" else str(v)

            choices = AXES[axis].choices or () if axis in AXES else ()
            present = sorted({r["_paper"][axis] for r in members if axis in r["_paper"]},
                             key=lambda v: (choices.index(v) if v in choices else len(choices), _param_sort_key(v)))
            value, why = _choose_paper_value(axis, members)
            members = [r for r in members if r["_paper"].get(axis, value) == value]
            if len(present) > 1:
                said.append(f"{axis} {shown(value)} (of {', '.join(map(shown, present))}: {why})")
            elif axis in _PAPER_FIRST_AXES or axis == "target_accuracy":
                said.append(f"{axis} {shown(value)}")
        dropped = sorted({r["platform"] for r in mine if r["params"]["model"] == model}
                         - {r["platform"] for r in members})
        if dropped:
            left_out.append(f"{model} on {', '.join(dropped)}")
        workers = []
        for platform in sorted({r["platform"] for r in members}):
            ep = [r for r in members if r["platform"] == platform and _function(r) == EPOCH]
            tt = [r for r in members if r["platform"] == platform and _is_time_to_accuracy(r)]
            epoch = min(ep, key=lambda r: (r["_extra"]["epoch_time_s"],
                                           _param_sort_key(r["params"].get("num_workers")))) if ep else None
            run = min(tt, key=lambda r: (not r["reached_target"], _float(r["time_to_target_s"]) if r["reached_target"]
                                         else math.inf, r["case"])) if tt else None
            if epoch is not None and "num_workers" in epoch["params"] and len(ep) > 1:
                workers.append(f"{platform} w={epoch['params']['num_workers']}")
            epoch_s, source = math.nan, None
            if epoch is not None:
                epoch_s, source = float(epoch["_extra"]["epoch_time_s"]), EPOCH
            elif run is not None and math.isfinite(run["epoch_time_s"]):
                epoch_s, source = run["epoch_time_s"], TIME_TO_ACCURACY
            acc, f1, acc_source = math.nan, math.nan, None
            if run is not None and math.isfinite(run["final_accuracy"]):
                acc, f1, acc_source = run["final_accuracy"], run["final_macro_f1"], TIME_TO_ACCURACY
            elif epoch is not None and is_number(epoch["_extra"].get("accuracy")):
                acc, f1, acc_source = (float(epoch["_extra"]["accuracy"]), _float(epoch["_extra"].get("macro_f1")),
                                       EPOCH)
            first = epoch or run
            rows.append({
                "model": model, "platform": platform,
                "batch_size": first["params"].get("batch_size"), "precision": first["_paper"].get("precision"),
                "optimizer": first["_paper"].get("optimizer"), "pipeline": first["_paper"].get("pipeline"),
                "num_workers": epoch["params"].get("num_workers") if epoch is not None else None,
                "epoch_time_s": epoch_s, "epoch_time_source": source,
                "target_accuracy": run["target_accuracy"] if run is not None else math.nan,
                "reached_target": run["reached_target"] if run is not None else None,
                "time_to_target_s": run["time_to_target_s"] if run is not None else math.nan,
                "final_accuracy": acc, "final_macro_f1": f1, "accuracy_source": acc_source,
                "epoch_case": epoch["case"] if epoch is not None else None,
                "time_to_accuracy_case": run["case"] if run is not None else None,
            })
        choice_notes.append(f"- {model}: {', '.join(said) or 'one case'}"
                            + (f"; num_workers: each platform's fastest epoch ({', '.join(workers)})"
                               if workers else ""))

    # speedups over each model's slowest platform: by epoch time, and by time to target among those that reached it
    for model in {r["model"] for r in rows}:
        mine_rows = [r for r in rows if r["model"] == model]
        for column, speed in (("epoch_time_s", "epoch_speedup"), ("time_to_target_s", "time_to_target_speedup")):
            finite = [r for r in mine_rows if math.isfinite(r[column])]
            slowest = max(finite, key=lambda r: r[column]) if finite else None
            for r in mine_rows:
                s = slowest[column] / r[column] if slowest is not None and math.isfinite(r[column]) else math.nan
                r[speed] = round(s, 4) if math.isfinite(s) else math.nan
                r[f"{speed}_over"] = slowest["platform"] if slowest is not None else None

    # platforms from the slowest to the fastest by geometric mean epoch time (over the models all of them ran)
    platforms = sorted({r["platform"] for r in rows})
    timed = {p: {r["model"]: r["epoch_time_s"] for r in rows if r["platform"] == p and math.isfinite(r["epoch_time_s"])}
             for p in platforms}
    with_times = [set(t) for t in timed.values() if t]
    shared = set.intersection(*with_times) if len(with_times) > 1 else set()
    means = {p: geomean(t[m] for m in (shared or t)) for p, t in timed.items()}
    order = sorted(platforms, key=lambda p: (not math.isfinite(means[p]), -means[p] if math.isfinite(means[p])
                                             else 0.0, p))
    rows.sort(key=lambda r: (str(r["model"]), order.index(r["platform"])))
    for r in rows:
        r["epoch_time_geomean_s"] = means[r["platform"]]

    table = []
    for r in rows:
        if r["reached_target"] is None:
            to_target = "-"
        else:
            to_target = f"{format_number(r['time_to_target_s'])} s" if r["reached_target"] else "missed"
        table.append({
            "model": r["model"], "platform": r["platform"],
            "epoch time": f"{format_number(r['epoch_time_s'])} s" if math.isfinite(r["epoch_time_s"]) else "-",
            "speedup": _factor_text(r["epoch_speedup"]),
            "time to target": to_target,
            "speedup (to target)": _factor_text(r["time_to_target_speedup"]),
            "accuracy": _percent(r["final_accuracy"]),
            "macro-F1": f"{r['final_macro_f1']:.3f}" if math.isfinite(r["final_macro_f1"]) else "-",
        })
    targets = sorted({(r["model"], r["target_accuracy"]) for r in rows if math.isfinite(r["target_accuracy"])})
    notes = ["The paper's table: per model and platform, the epoch time (test_epoch's epoch_time_s: the training "
             "epoch; else test_time_to_accuracy's: an epoch and its evaluation), its speedup over the model's "
             "slowest platform, the time to the target accuracy (test_time_to_accuracy, "
             f"{_MLPERF_RULE}; `missed`: more than one run missed) and its speedup over the slowest platform that "
             "reached it, and the final accuracy and macro-F1 (the median over the runs' last evaluations, else "
             "test_epoch's evaluation after its last epoch).",
             f"Platforms from the slowest to the fastest by geometric mean epoch time"
             f"{' over the models all of them ran' if shared else ''}: {', '.join(order)}.",
             "One case per model, chosen alike for every platform: precision fp32, batch size 64 (else the one most "
             "platforms ran; ties: the smallest), optimizer adam, pipeline batched, the other axes at their defaults "
             "(else the value most platforms ran), and of the worker counts each platform's fastest epoch:"]
    notes.extend(choice_notes)
    if targets:
        notes.append("Target accuracy: " + ", ".join(f"{_target_text(t)} ({m})" for m, t in targets) + ".")
    if left_out:
        notes.append(f"Left out (no case at the chosen settings): {'; '.join(left_out)}.")
    names = ["model", "batch_size", "precision", "optimizer", "pipeline", "num_workers"]
    return ViewTable("paper", _frame(rows, names), pd.DataFrame(table), notes, {"platforms": order})


def _factor_text(value: float) -> str:
    return f"{format_factor(value)}x" if math.isfinite(value) else "-"


def create_view(view: str, runs: Sequence[RunResult], *, metric: str = "time", baseline: str | None = None,
                groups: Sequence[str] | None = None, platform_names: dict[str, str] | None = None) -> ViewTable:
    """Build one view from loaded runs.

    Args:
        platform_names: ``--platform-name`` (machine slug, or slug/device -> the name shown), in every view.

    Raises:
        FerBenchError: unknown view or metric, --group, --baseline or --platform-name that matches nothing.
    """
    if view not in VIEWS:
        raise FerBenchError(f"--view {view!r}: choose one of {', '.join(VIEWS)}")
    if metric not in COMPARE_METRICS:
        raise FerBenchError(f"--metric {metric!r}: choose one of {', '.join(COMPARE_METRICS)}")
    per_image = view in PER_IMAGE_VIEWS or (metric == "samples_per_s" and view not in WHOLE_RUN_VIEWS)
    records, notes = collect_records(runs, groups, per_image=per_image, platform_names=platform_names)
    if view == "platforms":
        table = create_platforms_view(records, runs, metric, baseline)
    else:
        table = {"workers": create_workers_view, "precision": create_precision_view, "batch": create_batch_view,
                 "scaling": create_scaling_view, "convergence": create_convergence_view, "ops": create_ops_view,
                 "compile": create_compile_view,
                 "paper": create_paper_view}[view](records)
    table.notes = notes + table.notes
    return table


# ----------------------------------------------------------------------------------------------- output


def format_frame(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table."""
    if frame.empty:
        return ""
    return format_markdown_table(list(frame.columns), frame.itertuples(index=False))


def format_view(table: ViewTable, fmt: str = "md") -> str:
    """The view as markdown (notes, then the table), csv or json records."""
    if fmt == "csv":
        return table.records.to_csv(index=False)
    if fmt == "json":
        # through pandas' encoder for NaN -> null and numpy scalars, then json for readable output
        records = json.loads(table.records.to_json(orient="records")) if not table.empty else []
        return json.dumps(records, indent=2) + "\n"
    parts = [f"## fer-bench compare: {table.view}", ""]
    parts.extend(table.notes)
    if not table.empty:
        parts.extend(["", format_frame(table.table)])
    return "\n".join(parts) + "\n"


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """--group and --platform-name, shared by `fer-bench compare` and `fer-bench report`."""
    parser.add_argument("--group", nargs="+", action="extend", metavar="G",
                        help="only these pytest-benchmark groups (train_step, epoch, ...); put it after the runs")
    parser.add_argument("--platform-name", action="append", metavar="SLUG=NAME", dest="platform_name",
                        help="show a machine (its slug; the /device stays) or a platform (slug/device) under NAME "
                             "in every view, e.g. --platform-name epyc-2c=\"ordinary computer\" (repeatable)")


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `fer-bench compare`."""
    parser.add_argument("runs", nargs="+", metavar="RUN_OR_DIR",
                        help="pytest-benchmark JSON files or folders (searched recursively)")
    parser.add_argument("--baseline", metavar="SLUG",
                        help="platform (slug/device) or machine slug the others are compared with. "
                             "Default: the slowest by geometric mean")
    parser.add_argument("--view", choices=VIEWS, default="platforms",
                        help="platforms: a row per case, a column per machine/device with the speedup over the "
                             "baseline; workers: throughput and data wait per num_workers (batched against "
                             "per_image loaders); precision: speedup over "
                             "fp32; batch: throughput per batch size; scaling: weak/strong efficiency per "
                             "world size (GPUs, or ddp processes); convergence: time to the target accuracy "
                             "(test_time_to_accuracy, MLPerf's scoring); ops: op-category shares of a profiled step "
                             "(--fer-profile-ops); paper: the paper's table (epoch time, time to target, accuracy, "
                             "macro-F1, speedups over the slowest platform); compile: each torch.compile mode's speedup over eager "
                             "and its compile time. "
                             "Default: %(default)r")
    parser.add_argument("--metric", choices=COMPARE_METRICS, default="time",
                        help="what the platforms view shows: time, samples_per_s, samples_per_joule (energy per "
                             "image, where measured), mfu (utilisation of the datasheet peak). Default: %(default)r")
    parser.add_argument("--format", choices=FORMATS, default="md", help="Default: %(default)r")
    parser.add_argument("--plots", metavar="DIR", help="also write one PNG per view with data into DIR "
                                                       "(needs matplotlib: pip install fer_bench[plots])")
    add_selection_arguments(parser)


def cmd_compare(args: argparse.Namespace) -> int:
    """Print the chosen view; with --plots also write the PNGs. Raises FerBenchError on bad input."""
    runs = load_results(args.runs)
    names = parse_platform_names(getattr(args, "platform_name", None))
    table = create_view(args.view, runs, metric=args.metric, baseline=args.baseline, groups=args.group,
                        platform_names=names)
    sys.stdout.write(format_view(table, args.format))
    if args.plots:
        from fer_bench.results.plots import write_plots

        views = {v: (table if v == args.view else create_view(v, runs, metric=args.metric, baseline=args.baseline,
                                                              groups=args.group, platform_names=names))
                 for v in VIEWS}
        written = write_plots(views, args.plots)
        shown = ", ".join(str(p) for p in written) or "none (no view has data)"
        print(f"fer-bench compare: plots: {shown}", file=sys.stderr)
    return 0
