"""The platforms view: a row per case, a column per platform (a machine and a device) with the median, throughput,
energy or MFU and the ratio over the baseline platform; its chart (a bar per case and platform with the rounds'
interquartile range) and its report sections (one per benchmark group, the noisy cases noted)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from fer_bench.errors import FerBenchError
from fer_bench.results.bars import Bar, BarPanel, BarRow, BarScale, bar_scale, draw_bar_figure, facet_bars
from fer_bench.results.charts import (
    SeriesStyle,
    chart_rc,
    compact_case,
    compact_params,
    figure_to_svg,
    has_values,
    is_missing,
    new_figure,
    times_text,
    varying_params,
)
from fer_bench.results.format import describe_ratio, describe_speedup, format_number, geomean, is_number
from fer_bench.results.report_html import ReportContext, Section, slug_id, table_html
from fer_bench.results.runs import CaseKey, RunResult, list_identity_differences, list_stack_differences
from fer_bench.results.tables import ViewTable, param_names, public_row, records_frame, sort_records
from fer_bench.results.views import View, ViewInputs, register_view


#: The record column and unit each metric of the platforms view reads; every metric but time is better higher.
METRIC_COLUMNS = {"time": ("median_ms", "ms"), "samples_per_s": ("samples_per_s", "samples/s"),
                  "samples_per_joule": ("samples_per_joule", "images/J"), "mfu": ("mfu", "MFU")}
_MAX_IDENTITY_LINES = 25


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

    names = param_names(usable)
    out_rows, wide_rows = [], []
    ordered_keys = [r["_key"] for r in sort_records([next(iter(c.values())) for c in by_case.values()], names)]
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
            wide[p] = f"{shown(r[value_col])} ({text}{', contended' if r.get('contended') else ''})"
            out_rows.append(public_row(r, names) | {"kind": "case", "value": r[value_col], "unit": unit,
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
    return ViewTable("platforms", records_frame(out_rows, names), pd.DataFrame(wide_rows), notes,
                     {"baseline": base, "platforms": platforms, "metric": metric})


def _quartile_bounds(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """The first and third quartile of each case's round times (ms): the report's exact ``q1_ms``/``q3_ms``
    columns where present, else the median -/+ half the IQR (a compare view carries the IQR only)."""
    median = frame["median_ms"].astype(float)
    if "q1_ms" in frame.columns and "q3_ms" in frame.columns:
        q1, q3 = frame["q1_ms"].astype(float), frame["q3_ms"].astype(float)
    else:
        half = (frame["iqr_ms"].astype(float) / 2.0) if "iqr_ms" in frame.columns else median * math.nan
        q1, q3 = median - half, median + half
    return q1, q3


def _speedup_text(row: pd.Series) -> str:
    text = str(row.get("speedup_text") or "")
    if text == "baseline":
        return ""  # the legend names the baseline
    s = row.get("speedup")
    return times_text(float(s)) if not is_missing(s) and math.isfinite(float(s)) else ""


def plot_platforms(fig, frame: pd.DataFrame, params: Sequence[str], styles: Mapping[str, SeriesStyle],
                   meta: Mapping[str, Any] | None = None) -> None:
    """A platforms view (all groups, or one): per group (a facet, then per benchmark), a row per case and a bar per
    platform. Throughput (images/s) where the group's cases record it, else the median time per round; error bars
    from the rounds' quartiles (converted to throughput: samples per round over the quartile time), the speedup
    over the baseline platform written beside each bar."""
    data = frame[frame["kind"] == "case"].copy() if "kind" in frame.columns else frame.copy()
    baseline = (meta or {}).get("baseline")
    if baseline is None and "baseline" in data.columns:
        baseline = next(iter(data["baseline"].dropna()), None)
    order = sorted(styles) if styles else sorted(data["platform"].unique())
    order += [p for p in sorted(data["platform"].unique()) if p not in order]
    q1, q3 = _quartile_bounds(data)
    data["_q1"], data["_q3"] = q1, q3
    panels: list[BarPanel] = []
    scales: dict[str, BarScale] = {}
    left_out = 0
    for group in list(dict.fromkeys(data["group"].fillna(""))):
        gdata = data[data["group"].fillna("") == group]
        sps = gdata["samples_per_s"].astype(float) if "samples_per_s" in gdata else gdata["median_ms"] * math.nan
        # throughput where the group's runs recorded it (a throughput inferred from the batch over a round's time
        # is one for a step, not for a round that is a whole training run: time to accuracy)
        recorded = gdata["recorded_samples_per_s"] if "recorded_samples_per_s" in gdata else sps
        throughput = bool(recorded.astype(float).map(math.isfinite).any())
        if throughput:
            left_out += int((~sps.map(math.isfinite)).sum())
            gdata = gdata[sps.map(math.isfinite)]
        rows_by_bench: dict[str, list[BarRow]] = {}
        values: list[float] = []
        ms = gdata["median_ms"].astype(float)
        in_s = not throughput and bool(len(ms)) and float(ms.max()) >= 10_000
        for bench in list(dict.fromkeys(gdata["benchmark"])):
            bdata = gdata[gdata["benchmark"] == bench]
            names = varying_params(bdata, [n for n in params if n in bdata.columns])
            cases: dict[str, list[Bar]] = {}
            for _, r in bdata.iterrows():
                label = compact_params(r, names) or str(bench).replace("test_", "", 1)
                med, lo_t, hi_t = float(r["median_ms"]), float(r["_q1"]), float(r["_q3"])
                if throughput:
                    v = float(r["samples_per_s"])
                    low = v * med / hi_t if hi_t > 0 else math.nan
                    high = v * med / lo_t if lo_t > 0 else math.nan
                else:
                    k = 1e-3 if in_s else 1.0
                    v, low, high = med * k, lo_t * k, hi_t * k
                values.extend([v, low, high])
                cases.setdefault(label, []).append(Bar(str(r["platform"]), v, low, high, _speedup_text(r)))
            rows = [BarRow(label, sorted(bars, key=lambda b: order.index(b.platform) if b.platform in order else 0))
                    for label, bars in cases.items()]
            rows_by_bench[bench] = rows
        unit = "throughput (images/s)" if throughput else f"median time per round ({'s' if in_s else 'ms'})"
        scales[group] = bar_scale(values, unit + (", right is faster" if throughput else ", left is faster"))
        several = len(rows_by_bench) > 1
        for bench, rows in rows_by_bench.items():
            name = group or "(no group)"
            title = f"{name}: {str(bench).replace('test_', '', 1)}" if several else name
            panels.extend(facet_bars(title, rows, order, group))
    if not panels:
        return
    labels = {}
    if "kind" in frame.columns and baseline is not None:
        for _, g in frame[frame["kind"] == "geomean"].iterrows():
            p = str(g["platform"])
            s = g.get("speedup")
            labels[p] = (f"{p} (baseline)" if p == baseline else
                         f"{p}: {times_text(float(s))} over the baseline (geomean)" if not is_missing(s)
                         and math.isfinite(float(s)) else p)
    what = "Throughput" if all(s.label.startswith("throughput") for s in scales.values()) else "Speed"
    title = f"{what} per case and platform (error bars: the rounds' interquartile range)"
    if baseline is not None:
        title += f"; speedup over {baseline} beside each bar"
    if left_out:
        title += f"\n{left_out} case(s) without a throughput left out (see the table)"
    draw_bar_figure(fig, panels, scales, styles, title=title, legend_labels=labels)


def draw_platforms(frame: pd.DataFrame, styles: Mapping[str, SeriesStyle], *, meta: Mapping[str, Any] | None = None,
                   params: Sequence[str] = (), figure_cls: Any = None):
    """The platforms chart of a platforms view's records (one group's in the report; with ``q1_ms``/``q3_ms``
    columns, exact IQR error bars), even for a single platform; None without a case."""
    if frame.empty or not has_values(frame, "median_ms"):
        return None
    with chart_rc():
        fig = new_figure(figure_cls)
        plot_platforms(fig, frame, list(params), styles, meta)
    return fig if fig.axes else None


#: A case whose IQR exceeds this share of its median is noisy (the plugin's rel_iqr).
NOISY_REL_IQR = 0.1
_MAX_LISTED = 8


def _stats_index(runs: Sequence[RunResult]) -> dict[tuple, Mapping[str, Any]]:
    """Each case's stats by what a compare record carries of it: run path, group, device, function and median."""
    index = {}
    for run in runs:
        for case in run.cases:
            key = (str(run.path), case.group or "", str(case.params.get("device", "cpu")), case.key.function,
                   case.median_s * 1e3)
            index[key] = case.stats
    return index


def _with_quartiles(frame: pd.DataFrame, index: Mapping[tuple, Mapping[str, Any]]) -> pd.DataFrame:
    """The view's records with the rounds' first and third quartiles (q1_ms, q3_ms) of each case from its stats
    (NaN where the stats lack them)."""
    frame = frame.copy()
    q1, q3 = [], []
    for r in frame.itertuples(index=False):
        row = r._asdict()
        stats = index.get((str(row.get("run")), str(row.get("group") or ""), str(row.get("device")),
                           str(row.get("benchmark")), row.get("median_ms")), {})
        q1.append(float(stats["q1"]) * 1e3 if is_number(stats.get("q1")) else math.nan)
        q3.append(float(stats["q3"]) * 1e3 if is_number(stats.get("q3")) else math.nan)
    frame["q1_ms"], frame["q3_ms"] = q1, q3
    return frame


#: The platforms view's machine listing (shown once, in the machines section): its header lines and their items.
_MACHINE_NOTE_HEADS = ("Platforms (machine slug / device", "Identity differences between the machines",
                       "Software stack differences between the machines")


def _without_machine_listing(notes: Sequence[str]) -> list[str]:
    out, skipping = [], False
    for line in notes:
        if any(str(line).startswith(h) for h in _MACHINE_NOTE_HEADS):
            skipping = True
            continue
        if skipping and str(line).startswith("- "):
            continue
        skipping = False
        out.append(line)
    return out


def _noisy_notes(frame: pd.DataFrame) -> list[str]:
    cases = frame[frame["kind"] == "case"] if "kind" in frame.columns else frame
    noisy = []
    for r in cases.itertuples(index=False):
        row = r._asdict()
        median, iqr = row.get("median_ms"), row.get("iqr_ms")
        if is_number(median) and is_number(iqr) and median > 0 and iqr / median > NOISY_REL_IQR:
            noisy.append((iqr / median, compact_case(str(row["case"]), 60), str(row["platform"])))
    if not noisy:
        return []
    noisy.sort(reverse=True)
    listed = "; ".join(f"`{c}` on `{p}` ({v:.2f})" for v, c, p in noisy[:_MAX_LISTED])
    more = f"; and {len(noisy) - _MAX_LISTED} more" if len(noisy) > _MAX_LISTED else ""
    return [f"Noisy: {len(noisy)} case{'s' * (len(noisy) != 1)} with an IQR over {NOISY_REL_IQR:.0%} of the median "
            f"(rel_iqr > {NOISY_REL_IQR:g}): wide error bars, and a speedup within that spread is not a difference. "
            f"Worst first: {listed}{more}."]


def _group_section(ctx: ReportContext, group: str, index: Mapping[tuple, Any]) -> Section:
    notes: list[str] = []
    try:
        view = ctx.view("platforms", groups=[group])
    except FerBenchError:
        if not ctx.baseline:
            raise
        view = ctx.view("platforms", groups=[group], baseline=None)
        notes.append(f"--baseline {ctx.baseline} ran no case of this group: its baseline is the view's own choice.")
    prefix = ctx.next_chart_prefix()
    name = group or "(no group)"
    section = Section(f"group-{slug_id(name)}", "group", name, "benchmark group")
    if view.empty:
        section.notes = [*notes, *view.notes]
        return section
    frame = _with_quartiles(view.records, index)
    fig = draw_platforms(frame, ctx.styles, meta=view.meta, params=view.records.attrs.get("params", []))
    if fig is not None:
        section.charts.append(figure_to_svg(fig, prefix))
    section.tables.append(table_html(view.table, ctx.styles, drop=("group",)))
    section.notes = [*notes, *_without_machine_listing(view.notes), *_noisy_notes(view.records)]
    return section


def report_platforms(ctx: ReportContext) -> list[Section]:
    """A section per benchmark group (of --group, else every group): its platforms view's bars (IQR error bars from
    the rounds' quartiles), its table, and its notes with the noisy cases."""
    index = _stats_index(ctx.runs)
    present = sorted({c.group or "" for r in ctx.runs for c in r.cases})
    return [_group_section(ctx, group, index) for group in present if not ctx.groups or group in ctx.groups]


def _rows(inputs: ViewInputs) -> ViewTable:
    return create_platforms_view(inputs.records, inputs.runs, inputs.metric, inputs.baseline)


def _chartable(frame: pd.DataFrame, meta: Mapping[str, Any]) -> bool:
    return has_values(frame, "median_ms") and frame["platform"].nunique() > 1


register_view(View("platforms", _rows, order=0, title="Platforms", plot=plot_platforms, chartable=_chartable,
                   report=report_platforms,
                   help="a row per case, a column per machine/device with the speedup over the baseline"))
