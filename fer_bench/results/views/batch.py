"""The batch view: throughput against batch size and the gain over the smallest batch of the same series; its chart
(lines against batch size)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from fer_bench.results.charts import SeriesStyle, has_values
from fer_bench.results.format import format_number
from fer_bench.results.lines import LineColumn, draw_line_facets, line_series, throughput_groups
from fer_bench.results.tables import (
    ViewTable,
    axis_values,
    group_series,
    param_names,
    param_sort_key,
    pivot_table,
    public_row,
    records_frame,
    sort_records,
)
from fer_bench.results.views import View, ViewInputs, register_view


def create_batch_view(records: list[dict]) -> ViewTable:
    """Throughput against batch size; gain over the smallest batch of the same series."""
    mine = [r for r in records if "batch_size" in r["params"]]
    if not mine:
        return ViewTable("batch", pd.DataFrame(), pd.DataFrame(), ["no results with a batch_size axis"])
    names = param_names(mine)
    for members in group_series(mine, "batch_size").values():
        smallest = min(members, key=lambda m: param_sort_key(m["params"]["batch_size"]))
        for m in members:
            gain = m["samples_per_s"] / smallest["samples_per_s"]
            m["throughput_gain"] = round(gain, 4) if math.isfinite(gain) else math.nan
    out = [public_row(r, names) for r in sort_records(mine, names, first=("platform",))]
    table = pivot_table(mine, "batch_size", lambda r: f"{format_number(r['samples_per_s'])}/s",
                        axis_values(mine, "batch_size"), lambda v: f"bs={v}")
    notes = ["Throughput (samples/s) per batch size (per GPU when num_gpus > 1)."]
    return ViewTable("batch", records_frame(out, names), table, notes)


def plot_batch(fig, frame: pd.DataFrame, params: Sequence[str], styles: Mapping[str, SeriesStyle],
               meta: Mapping[str, Any] | None = None) -> None:
    frame = throughput_groups(frame)
    facets = (line_series(frame, params, "batch_size", ["samples_per_s"])
              or line_series(frame, params, "batch_size", ["samples_per_s"], min_points=1))
    draw_line_facets(fig, facets, [LineColumn("samples_per_s", "throughput (images/s)", "throughput")], styles,
                     xlabel="batch size (images per device)", x_mode="log2", title="Throughput against batch size")


def _rows(inputs: ViewInputs) -> ViewTable:
    return create_batch_view(inputs.records)


def _chartable(frame: pd.DataFrame, meta: Mapping[str, Any]) -> bool:
    return has_values(frame, "samples_per_s")


register_view(View("batch", _rows, order=30, title="Batch size", counts="per_image", plot=plot_batch,
                   chartable=_chartable,
                   help="throughput per batch size"))
