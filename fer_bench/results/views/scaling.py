"""The scaling view: weak and strong scaling efficiency against the world size (nn.DataParallel devices or
DistributedDataParallel processes), each series against its N = 1 case; its chart (efficiency against N)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from fer_bench.results.charts import SeriesStyle, has_values
from fer_bench.results.format import format_number
from fer_bench.results.lines import LineColumn, draw_line_facets, line_series
from fer_bench.results.runs import format_case
from fer_bench.results.tables import ViewTable, listed, param_names, plural, public_row, records_frame, sort_records
from fer_bench.results.views import View, ViewInputs, register_view


#: The axes a scaling series runs along or is keyed by itself (not by its other params).
SCALING_AXES = ("num_gpus", "parallel", "scaling")
_SKEW_SHOWN_ABOVE = 1.1


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

    names = param_names(mine)
    out = [public_row(r, names) for r in sort_records(mine, names, first=("platform", "parallel", "scaling_mode"))]
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
        notes.append(f"{plural(inferred, 'entry records', 'entries record')} no samples_per_s (older runs): "
                     f"throughput inferred as the global batch over the median round time.")
    split = sum(r["_dp_split_inferred"] for r in mine)
    if split:
        notes.append(f"{plural(split, 'older DataParallel entry records', 'older DataParallel entries record')} "
                     f"no global batch: nn.DataParallel split batch_size over the GPUs, so the global batch is "
                     f"batch_size (not batch_size x num_gpus), read as strong scaling unless the run said otherwise.")
    guessed = sum(r["_parallel_inferred"] for r in mine)
    if guessed:
        notes.append(f"{plural(guessed, 'multi-GPU entry records', 'multi-GPU entries record')} no parallel "
                     f"mode: read as dp (nn.DataParallel, the only multi-GPU mode before ddp).")
    if borrowed:
        own = "has no N=1 case of its own" if len(borrowed) == 1 else "have no N=1 case of their own"
        notes.append(f"{len(borrowed)} series {own}; the baseline (X_1, T_1) is the N=1 case of the same platform "
                     f"and params run another way (`parallel: none`, or the other scaling mode): "
                     f"{listed(borrowed)}.")
    if lacking:
        notes.append(f"{plural(len(lacking), 'series has', 'series have')} no N=1 run: no efficiency for "
                     f"{'it' if len(lacking) == 1 else 'them'} ({listed(lacking)}).")
    if single_only:
        notes.append(f"{plural(single_only, 'series ran', 'series ran')} at N=1 only: no row in the table "
                     f"(their entries are in --format csv and json).")
    comm = [f"{format_case(r['_key'])} on {r['platform']} (N={r['world_size']}): "
            f"{format_number(r['_comm_exposed_ms'])} ms"
            for r in sort_records(mine, names, first=("platform",))
            if r["parallel"] == "ddp" and math.isfinite(r["_comm_exposed_ms"])]
    if comm:
        notes.append(f"Exposed communication per ddp case (the DDP step minus the same step under no_sync): "
                     f"{listed(comm)}.")
    return ViewTable("scaling", records_frame(out, names), pd.DataFrame(rows), notes)


def plot_scaling(fig, frame: pd.DataFrame, params: Sequence[str], styles: Mapping[str, SeriesStyle],
                 meta: Mapping[str, Any] | None = None) -> None:
    """Efficiency against the world size N, as the scaling view computed it: a line per platform, parallel mode,
    scaling mode (weak: its per-device batch, strong: its global batch) and the other params."""
    data = frame[frame["efficiency"].notna()].copy()
    axis = "world_size" if "world_size" in data else "num_gpus"

    def anchor(r: pd.Series) -> str:
        p = r.get("parallel") or ""
        if r.get("scaling_mode") == "weak":
            return f"{p} weak bs{r.get('batch_size')}/device".strip()
        return f"{p} strong global bs{r.get('global_batch_size')}".strip()

    data["_anchor"] = data.apply(anchor, axis=1)
    # a series that ran at N=1 only scales nothing (the view leaves it out of its table too)
    key = data["platform"].astype(str) + data["_anchor"]
    data = data[data.groupby(key)[axis].transform("max") > 1]
    facets = line_series(data, params, axis, ["efficiency"], drop=("batch_size", "num_gpus", "parallel", "scaling"),
                         variant=lambda r: r["_anchor"], min_points=1)
    draw_line_facets(fig, facets, [LineColumn("efficiency", "scaling efficiency (%)", "efficiency",
                                              kind="efficiency")], styles,
                     xlabel="world size N (GPUs, or ddp processes; count)", x_mode="log2",
                     title="Scaling efficiency (weak: E = X_N / (N X_1); strong: T_1 / (N T_N)); dashed: ideal")


def _rows(inputs: ViewInputs) -> ViewTable:
    return create_scaling_view(inputs.records)


def _chartable(frame: pd.DataFrame, meta: Mapping[str, Any]) -> bool:
    return has_values(frame, "efficiency")


register_view(View("scaling", _rows, order=40, title="Scaling across devices", plot=plot_scaling,
                   chartable=_chartable,
                   help="weak/strong efficiency per world size (GPUs, or ddp processes)"))
