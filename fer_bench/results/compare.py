"""`fer-bench compare`: tables across machines, worker counts, precisions, batch sizes and GPU counts.

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

from fer_bench.axes import PRECISIONS, order_axes
from fer_bench.errors import FerBenchError
from fer_bench.results.format import (
    describe_speedup,
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

VIEWS = ("platforms", "workers", "precision", "batch", "scaling")
#: Views that compare throughput, where runs over different image counts are the same case (per image).
PER_IMAGE_VIEWS = ("workers", "batch")
COMPARE_METRICS = ("time", "samples_per_s")
FORMATS = ("md", "csv", "json")
HOST_DEVICE = "cpu"
_MAX_IDENTITY_LINES = 25


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
        groups.setdefault(case.key.without("device"), []).append(case)
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


def collect_records(runs: Sequence[RunResult], groups: Sequence[str] | None = None, *,
                    per_image: bool = False) -> tuple[list[dict], list[str]]:
    """One record per (platform, case), from the latest run that holds it.

    ``per_image``: cases that differ only in their image counts are one case (the view compares throughput);
    else they are separate cases. Cases that did other work are always separate (label_workloads).

    Returns:
        (records, notes). Each record carries platform, slug, device, machine, group, benchmark, params (without
        device), case (a stable label), median_ms, samples_per_s and the extra_info figures the views use.

    Raises:
        FerBenchError: --group names no group present.
    """
    labels = label_machines([run.machine for run in runs])
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
            key = dataclasses.replace(case.key.without("device"), work=work[id(case)])
            params = parse_params_key(key)
            if key.work:
                params["workload"] = key.work
            record = {
                "platform": f"{label}/{device}",
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
                "global_batch_size": case.global_batch_size,
                **_scaling_fields(case),
                "_precision_native": case.extra_info.get("precision_native"),
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


_INT_COLUMNS = ("rounds", "global_batch_size", "world_size", "n_cases")
_LEAD_COLUMNS = ("platform", "kind", "value", "unit", "speedup", "speedup_text", "baseline")


def _frame(rows: list[dict], names: Sequence[str]) -> pd.DataFrame:
    """Tidy rows as a DataFrame: params keep their own types (no 64 -> 64.0), counts are nullable ints."""
    if not rows:
        return pd.DataFrame()
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lead = ["group", "benchmark", *names]
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


def create_platforms_view(records: list[dict], runs: Sequence[RunResult], metric: str = "time",
                          baseline: str | None = None) -> ViewTable:
    """One row per case, one column per platform: the median and the speedup over the baseline platform."""
    value_col = "median_ms" if metric == "time" else "samples_per_s"
    unit = "ms" if metric == "time" else "samples/s"
    usable = [r for r in records if math.isfinite(r[value_col])]
    if not usable:
        return ViewTable("platforms", pd.DataFrame(), pd.DataFrame(), [f"no result carries {value_col}"])
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
            text = "baseline" if p == base else (describe_speedup(s) if ref is not None else "no baseline")
            wide[p] = f"{format_number(r[value_col])} {unit} ({text})"
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
        text = "baseline" if p == base else describe_speedup(g_speed)
        geo[p] = f"{format_number(g_value)} {unit} ({text})" if keys else "-"
        out_rows.append({"group": "", "benchmark": "geometric mean"} | {n: None for n in names} | {
            "platform": p, "kind": "geomean", "value": g_value, "unit": unit, "n_cases": len(keys),
            "speedup": round(g_speed, 4) if math.isfinite(g_speed) else math.nan, "speedup_text": text,
            "baseline": base})
    wide_rows.append(geo)
    notes = _machines_notes(usable, runs)
    notes.append(f"Baseline: `{base}` ({why}). Values: median {unit} per round; speedup over the baseline.")
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
    return ViewTable("workers", _frame(out, names), table, notes)


def create_precision_view(records: list[dict]) -> ViewTable:
    """Speedup of each precision over fp32 of the same platform, benchmark, model and batch size."""
    mine = [r for r in records if "precision" in r["params"]]
    if not mine:
        return ViewTable("precision", pd.DataFrame(), pd.DataFrame(), ["no results with a precision axis"])
    names = _param_names(mine)
    lacking = 0
    for members in _series(mine, "precision").values():
        ref = next((m for m in members if m["params"]["precision"] == "fp32"), None)
        lacking += ref is None
        for m in members:
            s = ref["median_ms"] / m["median_ms"] if ref is not None else math.nan
            m["speedup"] = round(s, 4) if math.isfinite(s) else math.nan
            m["speedup_text"] = ("reference" if m is ref else describe_speedup(s)) if ref is not None else "no fp32"
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


def create_view(view: str, runs: Sequence[RunResult], *, metric: str = "time", baseline: str | None = None,
                groups: Sequence[str] | None = None) -> ViewTable:
    """Build one view from loaded runs.

    Raises:
        FerBenchError: unknown view or metric, --group or --baseline that matches nothing.
    """
    if view not in VIEWS:
        raise FerBenchError(f"--view {view!r}: choose one of {', '.join(VIEWS)}")
    if metric not in COMPARE_METRICS:
        raise FerBenchError(f"--metric {metric!r}: choose one of {', '.join(COMPARE_METRICS)}")
    records, notes = collect_records(runs, groups, per_image=metric == "samples_per_s" or view in PER_IMAGE_VIEWS)
    if view == "platforms":
        table = create_platforms_view(records, runs, metric, baseline)
    else:
        table = {"workers": create_workers_view, "precision": create_precision_view, "batch": create_batch_view,
                 "scaling": create_scaling_view}[view](records)
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


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `fer-bench compare`."""
    parser.add_argument("runs", nargs="+", metavar="RUN_OR_DIR",
                        help="pytest-benchmark JSON files or folders (searched recursively)")
    parser.add_argument("--baseline", metavar="SLUG",
                        help="platform (slug/device) or machine slug the others are compared with. "
                             "Default: the slowest by geometric mean")
    parser.add_argument("--view", choices=VIEWS, default="platforms",
                        help="platforms: a row per case, a column per machine/device with the speedup over the "
                             "baseline; workers: throughput and data wait per num_workers; precision: speedup over "
                             "fp32; batch: throughput per batch size; scaling: weak/strong efficiency per "
                             "world size (GPUs, or ddp processes). "
                             "Default: %(default)r")
    parser.add_argument("--metric", choices=COMPARE_METRICS, default="time",
                        help="what the platforms view shows. Default: %(default)r")
    parser.add_argument("--format", choices=FORMATS, default="md", help="Default: %(default)r")
    parser.add_argument("--plots", metavar="DIR", help="also write one PNG per view with data into DIR "
                                                       "(needs matplotlib: pip install fer_bench[plots])")
    parser.add_argument("--group", nargs="+", action="extend", metavar="G",
                        help="only these pytest-benchmark groups (train_step, epoch, ...); put it after the runs")


def cmd_compare(args: argparse.Namespace) -> int:
    """Print the chosen view; with --plots also write the PNGs. Raises FerBenchError on bad input."""
    runs = load_results(args.runs)
    table = create_view(args.view, runs, metric=args.metric, baseline=args.baseline, groups=args.group)
    sys.stdout.write(format_view(table, args.format))
    if args.plots:
        from fer_bench.results.plots import write_plots

        views = {v: (table if v == args.view else create_view(v, runs, metric=args.metric, baseline=args.baseline,
                                                              groups=args.group)) for v in VIEWS}
        written = write_plots(views, args.plots)
        shown = ", ".join(str(p) for p in written) or "none (no view has data)"
        print(f"fer-bench compare: plots: {shown}", file=sys.stderr)
    return 0
