"""The compile view: each torch.compile mode's speedup over eager of the same platform, benchmark and params, with
its compile time and graph breaks; its chart (speedup bars per case and platform)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from fer_bench.axes import COMPILE_MODES
from fer_bench.results.bars import has_ratios, plot_ratio_bars
from fer_bench.results.charts import SeriesStyle, is_missing
from fer_bench.results.format import format_number
from fer_bench.results.tables import (
    ViewTable,
    axis_values,
    fill_implied,
    function_name,
    group_series,
    param_names,
    pivot_table,
    public_row,
    records_frame,
    set_speedups,
    sort_records,
)
from fer_bench.results.views import View, ViewInputs, register_view


#: The benchmarks with a compile axis (the bare reference loop stays eager).
COMPILE_BENCHMARKS = ("test_forward", "test_forward_backward", "test_train_step", "test_epoch")


def create_compile_view(records: list[dict]) -> ViewTable:
    """Each compile mode's speedup over eager of the same platform, benchmark and params, with its compile time
    (cold, before the timed rounds) and graph breaks; series with no compiled case are left out."""
    mine = [{**r, "params": dict(r["params"])} for r in records if function_name(r) in COMPILE_BENCHMARKS]
    fill_implied(mine, "compile", benchmarks=list(COMPILE_BENCHMARKS))
    series = {k: v for k, v in group_series(mine, "compile").items()
              if any(m["params"]["compile"] != "eager" for m in v)}
    mine = [m for members in series.values() for m in members]
    if not mine:
        return ViewTable("compile", pd.DataFrame(), pd.DataFrame(),
                         ["no compiled results (run the step or epoch benchmarks with --fer-compile eager,default)"])
    names = param_names(mine)
    lacking = set_speedups(series.values(), "compile", "eager")
    for m in mine:
        m["graph_breaks"] = m.get("_compile_graph_breaks")
    out = [public_row(r, names) for r in sort_records(mine, names, first=("platform",))]

    def cell(r: dict) -> str:
        text = f"{format_number(r['median_ms'])} ms ({r['speedup_text']}"
        if math.isfinite(r["compile_time_s"]):
            text += f", compile {format_number(r['compile_time_s'])} s"
        if r["graph_breaks"]:
            text += f", {r['graph_breaks']} graph break{'s' * (r['graph_breaks'] != 1)}"
        return text + ")"

    table = pivot_table(mine, "compile", cell, axis_values(mine, "compile", COMPILE_MODES), str)
    notes = ["Median ms per round and the speedup over eager of the same platform, benchmark and params; the "
             "compile time is the first compiled call's (cold, before the timed rounds; inductor's on-disk caches "
             "make a later run's shorter)."]
    if lacking:
        notes.append(f"{lacking} series ran no eager case: no speedup for them.")
    return ViewTable("compile", records_frame(out, names), table, notes)


def plot_compile(fig, frame: pd.DataFrame, params: Sequence[str], styles: Mapping[str, SeriesStyle],
                 meta: Mapping[str, Any] | None = None) -> None:
    def compile_time(r: pd.Series) -> str:
        t = r.get("compile_time_s")
        return f", compile {t:.3g} s" if not is_missing(t) and math.isfinite(float(t)) else ""

    plot_ratio_bars(fig, frame, params, styles, axis="compile", reference="eager", what="torch.compile",
                    note=compile_time)


def _rows(inputs: ViewInputs) -> ViewTable:
    return create_compile_view(inputs.records)


def _chartable(frame: pd.DataFrame, meta: Mapping[str, Any]) -> bool:
    return has_ratios(frame, "compile", "eager")


register_view(View("compile", _rows, order=80, title="torch.compile", plot=plot_compile, chartable=_chartable,
                   help="each torch.compile mode's speedup over eager and its compile time"))
