"""The workers view: throughput and the share of time spent waiting for data against num_workers, the best worker
count of each series marked, and the batched loader against per_image; its chart (lines against workers)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from fer_bench.axes import order_axes
from fer_bench.results.charts import SeriesStyle, has_values
from fer_bench.results.format import format_factor, format_number
from fer_bench.results.lines import LineColumn, draw_line_facets, line_series, throughput_groups
from fer_bench.results.tables import (
    ViewTable,
    axis_values,
    fill_implied,
    group_series,
    param_names,
    param_sort_key,
    pivot_table,
    public_row,
    records_frame,
    sort_records,
)
from fer_bench.results.views import View, ViewInputs, register_view


def create_workers_view(records: list[dict]) -> ViewTable:
    """Throughput and data-wait share against num_workers; the best worker count per series marked."""
    mine = [r for r in records if "num_workers" in r["params"]]
    if not mine:
        return ViewTable("workers", pd.DataFrame(), pd.DataFrame(), ["no results with a num_workers axis"])
    fill_implied(mine, "pipeline")
    names = param_names(mine)
    for members in group_series(mine, "num_workers").values():
        finite = [m for m in members if math.isfinite(m["samples_per_s"])]
        best = max(finite, key=lambda m: m["samples_per_s"]) if finite else None
        for m in members:
            m["best"] = m is best
    out = [public_row(r, names) for r in sort_records(mine, names, first=("platform",))]

    def cell(r: dict) -> str:
        wait = r["data_wait_fraction"]
        text = f"{format_number(r['samples_per_s'])}/s" + (f", wait {wait:.0%}" if math.isfinite(wait) else "")
        return f"**{text} best**" if r.get("best") else text

    table = pivot_table(mine, "num_workers", cell, axis_values(mine, "num_workers"), lambda v: f"w={v}")
    notes = ["Throughput (samples/s) and the share of the time spent waiting for data, per num_workers; "
             "**best** marks the highest throughput of each platform, benchmark and batch size."]
    notes.extend(_pipeline_notes(mine))
    return ViewTable("workers", records_frame(out, names), table, notes)


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
            param_sort_key(kv[1]["batched"]["params"].get(n)) for n in order_axes(dict(kv[0][2]))])):
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


def plot_workers(fig, frame: pd.DataFrame, params: Sequence[str], styles: Mapping[str, SeriesStyle],
                 meta: Mapping[str, Any] | None = None) -> None:
    frame = throughput_groups(frame)
    # a series at one worker count draws no line: left out, unless no series has two (then dots)
    facets = (line_series(frame, params, "num_workers", ["samples_per_s", "data_wait_fraction"])
              or line_series(frame, params, "num_workers", ["samples_per_s", "data_wait_fraction"], min_points=1))
    draw_line_facets(fig, facets, [
        LineColumn("samples_per_s", "throughput (images/s)", "throughput"),
        LineColumn("data_wait_fraction", "time waiting for data (%)", "data-wait share", kind="share")],
        styles, xlabel="data-loader workers (count)", x_mode="ticks",
        title="Throughput and data-wait share against the number of data-loader workers")


def _rows(inputs: ViewInputs) -> ViewTable:
    return create_workers_view(inputs.records)


def _chartable(frame: pd.DataFrame, meta: Mapping[str, Any]) -> bool:
    return has_values(frame, "samples_per_s")


register_view(View("workers", _rows, order=10, title="Data-loader workers", counts="per_image", plot=plot_workers,
                   chartable=_chartable,
                   help="throughput and data wait per num_workers (batched against per_image loaders)"))
