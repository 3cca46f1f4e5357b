"""The charts of the compare views: `fer-bench compare --plots` writes one PNG per view with data, `fer-bench report`
inlines the same charts as SVG. Each view's chart is drawn by its own module (fer_bench.results.views); what every
chart shares is fer_bench.results.charts, the bar and line panels fer_bench.results.bars and .lines. The `plots`
extra: matplotlib's Figure and Agg canvas, never pyplot. PNGs are written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from fer_bench._atomic import write_bytes_atomic
from fer_bench.results.charts import (
    SeriesStyle,
    chart_rc,
    create_platform_styles,
    figure_to_png,
    new_figure,
    require_matplotlib,
)
from fer_bench.results.views import get_view, list_views


def has_data(view: str, frame: pd.DataFrame, meta: Mapping[str, Any] | None = None) -> bool:
    """Whether a view has anything to chart: a chart of its own, and in ``frame`` what that chart needs."""
    if view not in list_views() or frame.empty:
        return False
    spec = get_view(view)
    if spec.plot is None:
        return False
    return spec.chartable is None or bool(spec.chartable(frame, meta or {}))


def draw_view(view: str, table: Any, styles: Mapping[str, SeriesStyle], *, figure_cls: Any = None,
              frame: pd.DataFrame | None = None):
    """The chart of one view (a compare ViewTable, or its ``frame`` given instead of its records) as a matplotlib
    Figure, or None when the view has nothing to chart."""
    frame = table.records if frame is None else frame
    meta = getattr(table, "meta", None) or {}
    if not has_data(view, frame, meta):
        return None
    with chart_rc():
        fig = new_figure(figure_cls)
        params = list(table.records.attrs.get("params", frame.attrs.get("params", [])))
        get_view(view).plot(fig, frame, params, styles, meta)
        if not fig.axes:
            return None
    return fig


def collect_platforms(views: Mapping[str, Any]) -> list[str]:
    """The sorted platforms of every view's records: what :func:`create_platform_styles` maps."""
    found: set[str] = set()
    for table in views.values():
        frame = table.records
        if not frame.empty and "platform" in frame.columns:
            found.update(str(p) for p in frame["platform"].dropna())
        for curve in (getattr(table, "meta", None) or {}).get("curves", []):
            found.add(str(curve.get("platform")))
    return sorted(found)


def write_plots(views: Mapping[str, Any], out_dir: str | Path,
                styles: Mapping[str, SeriesStyle] | None = None) -> list[Path]:
    """One PNG per view with data into ``out_dir`` (created), named ``<view>.png``; returns the paths written.
    Every chart gives a platform the same colour (``styles``, default: built from every view's platforms).

    Args:
        views: view name -> fer_bench.results.tables.ViewTable.

    Raises:
        FerBenchError: matplotlib is missing.
    """
    figure_cls, _ = require_matplotlib()
    out_dir = Path(out_dir)
    styles = styles if styles is not None else create_platform_styles(collect_platforms(views))
    written = []
    for name, table in views.items():
        fig = draw_view(name, table, styles, figure_cls=figure_cls)
        if fig is None:
            continue
        written.append(write_bytes_atomic(out_dir / f"{name}.png", figure_to_png(fig)))
    return written
