"""The precision view: each precision's speedup over fp32 of the same platform, benchmark, model and batch size, the
emulated ones (no native hardware support) marked; its chart (speedup bars per case and platform)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from fer_bench.axes import PRECISIONS
from fer_bench.results.bars import has_ratios, plot_ratio_bars
from fer_bench.results.charts import SeriesStyle
from fer_bench.results.format import format_number
from fer_bench.results.tables import (
    ViewTable,
    axis_values,
    group_series,
    param_names,
    pivot_table,
    public_row,
    records_frame,
    set_speedups,
    sort_records,
)
from fer_bench.results.views import View, ViewInputs, register_view


def create_precision_view(records: list[dict]) -> ViewTable:
    """Speedup of each precision over fp32 of the same platform, benchmark, model and batch size."""
    mine = [r for r in records if "precision" in r["params"]]
    if not mine:
        return ViewTable("precision", pd.DataFrame(), pd.DataFrame(), ["no results with a precision axis"])
    names = param_names(mine)
    lacking = set_speedups(group_series(mine, "precision").values(), "precision", "fp32")
    for m in mine:
        # the run's own word (extra_info["precision_native"]); a run made before it was recorded says nothing
        m["emulated"] = m.get("_precision_native") is False
    out = [public_row(r, names) for r in sort_records(mine, names, first=("platform",))]

    def cell(r: dict) -> str:
        return f"{format_number(r['median_ms'])} ms ({r['speedup_text']}{', emulated' if r['emulated'] else ''})"

    table = pivot_table(mine, "precision", cell, axis_values(mine, "precision", PRECISIONS), str)
    notes = ["Median ms per round and the speedup over fp32 of the same platform, benchmark, model and batch size."]
    emulated = sorted({f"{r['params']['precision']} on {r['platform']}" for r in mine if r["emulated"]})
    if emulated:
        notes.append(f"emulated: {', '.join(emulated)}: no native hardware support (the run's precision_native "
                     f"is false), so slower than fp32 there is expected, not a bug.")
    if lacking:
        notes.append(f"{lacking} series ran no fp32 case: no speedup for them.")
    return ViewTable("precision", records_frame(out, names), table, notes)


def plot_precision(fig, frame: pd.DataFrame, params: Sequence[str], styles: Mapping[str, SeriesStyle],
                   meta: Mapping[str, Any] | None = None) -> None:
    def emulated(r: pd.Series) -> str:
        return " emulated" if r.get("emulated") is True else ""

    plot_ratio_bars(fig, frame, params, styles, axis="precision", reference="fp32", what="Precision",
                    note=emulated)


def _rows(inputs: ViewInputs) -> ViewTable:
    return create_precision_view(inputs.records)


def _chartable(frame: pd.DataFrame, meta: Mapping[str, Any]) -> bool:
    return has_ratios(frame, "precision", "fp32")


register_view(View("precision", _rows, order=20, title="Precision", plot=plot_precision, chartable=_chartable,
                   help="speedup over fp32"))
