"""Line charts: a value against an axis (workers, batch size, world size, epochs, seconds), a panel per column and a
row of panels per facet, at most MAX_SERIES lines to a panel; a platform keeps its colour, its other params differ by
line style and marker fill."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from fer_bench.results.charts import (
    MAX_SERIES,
    Header,
    axes_rect,
    compact_params,
    finite_values,
    is_missing,
    set_log_scale,
    style_of,
    text_width,
    tick_formatter,
    use_log_scale,
    varying_params,
)


#: Lines of one platform in one panel: line style, then hollow markers (8 combinations: MAX_SERIES).
_LINESTYLES = ("-", "--", ":", "-.")


@dataclass
class LineSeries:
    """One line of a panel: a platform and a variant (its other params), its x values and a y list per column."""

    platform: str
    variant: str
    xs: list[float] = field(default_factory=list)
    ys: dict[str, list[float]] = field(default_factory=dict)
    dashed_label: str = ""


@dataclass
class LineColumn:
    """A column of panels: the frame column it plots, its axis label and title, and its kind of scale."""

    column: str
    label: str
    title: str
    kind: str = "value"  # value (log rule, SI numbers), share (0-100%), efficiency (%, ideal line at 100%)


def pack_series(keys: Sequence[tuple[str, str]], limit: int = MAX_SERIES) -> list[list[tuple[str, str]]]:
    """(platform, variant) series into panels of at most ``limit``, a platform's series kept together where they fit
    (a platform with more is split over panels of its own)."""
    by_platform: dict[str, list[str]] = {}
    for platform, variant in keys:
        by_platform.setdefault(platform, []).append(variant)
    panels: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for platform, variants in by_platform.items():
        for i in range(0, len(variants), limit):
            chunk = [(platform, v) for v in variants[i:i + limit]]
            if current and len(current) + len(chunk) > limit:
                panels.append(current)
                current = []
            current.extend(chunk)
    if current:
        panels.append(current)
    return panels


def _variant_style(k: int) -> tuple[str, bool]:
    """The k-th line of one platform in a panel: its line style, and whether its markers are hollow."""
    return _LINESTYLES[k % len(_LINESTYLES)], (k // len(_LINESTYLES)) % 2 == 1


def _plot_line(ax, series: LineSeries, values: list[float], xs: list[float], styles, k: int, label: str) -> None:
    st = style_of(styles, series.platform)
    linestyle, hollow = _variant_style(k)
    ax.plot(xs, values, linestyle=linestyle, marker=st.marker, markersize=4, linewidth=1.3, color=st.color,
            markerfacecolor="white" if hollow else st.color, markeredgecolor=st.color, label=label)


def _value_axis(ax, column: LineColumn, values: list[float]) -> None:
    if column.kind == "share":
        ax.set_ylim(0, 1)
        ax.yaxis.set_major_formatter(tick_formatter("percent"))
        ax.set_ylabel(column.label)
        return
    if column.kind == "efficiency":
        top = max([1.15, *[v * 1.05 for v in finite_values(values)]])
        ax.set_ylim(0, top)
        ax.axhline(1.0, color="black", linestyle="--", linewidth=0.8)
        ax.yaxis.set_major_formatter(tick_formatter("percent"))
        ax.set_ylabel(column.label)
        return
    if column.kind == "accuracy":
        vals = finite_values(values) or [0.0, 1.0]
        ax.set_ylim(max(0.0, min(vals) - 0.05), min(1.0, max(vals) + 0.05))
        ax.yaxis.set_major_formatter(tick_formatter("percent"))
        ax.set_ylabel(column.label)
        return
    positive = [v for v in finite_values(values) if v > 0]
    if use_log_scale(positive):
        set_log_scale(ax, "y")
        ax.set_ylim(10 ** math.floor(math.log10(min(positive))), max(positive) * 1.5)
        ax.set_ylabel(f"{column.label} (log scale)")
    else:
        ax.set_ylim(0, max(positive or [1.0]) * 1.1)
        ax.set_ylabel(column.label)
    ax.yaxis.set_major_formatter(tick_formatter("si"))


def _x_axis(ax, xs: Sequence[float], label: str, mode: str) -> None:
    """``xs``: the x values of the panel's whole facet (its panels share the x scale). ``mode``: ticks (a tick at
    each value: workers), log2 (the same on a log2 scale where they span over 2x: batch sizes, world sizes), integer
    (epochs), continuous (seconds: log where they span over LOG_SPAN)."""
    from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

    values = sorted(set(finite_values(xs)))
    log = False
    if mode == "continuous":
        log = use_log_scale(values)
        if log:
            set_log_scale(ax, "x")
            label += " (log scale)"
        ax.xaxis.set_major_formatter(tick_formatter("si"))
    elif mode == "integer":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    elif values:
        if mode == "log2" and min(values) > 0 and max(values) / min(values) > 2:
            log = True
            ax.set_xscale("log", base=2)
            ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_locator(FixedLocator(values))
        ax.xaxis.set_major_formatter(tick_formatter("si"))
    if values:
        lo, hi = values[0], values[-1]
        if log:
            ax.set_xlim(lo / 1.25, hi * 1.25)
        elif mode == "log2" and lo == hi and lo > 0:
            ax.set_xlim(lo * 0.5, lo * 1.5)
        else:
            pad = 0.05 * (hi - lo) or 1.0
            ax.set_xlim(lo - pad, hi + pad)
    ax.set_xlabel(label)
    ax.grid(True, alpha=0.3)


def _xs_of(series: LineSeries, column: str, column_x: Mapping[str, Any] | None) -> list[float]:
    """The x values of a series in a column: its own (``xs_<column>``) where the column has its own x axis."""
    if column_x and column in column_x:
        own = getattr(series, "xs_" + column, None)
        if own is not None:
            return own
    return series.xs


def draw_line_facets(fig, facets: list[tuple[str, list[LineSeries]]], columns: Sequence[LineColumn], styles, *,
                     xlabel: str, x_mode: str, title: str,
                     hlines: Mapping[str, list[tuple[float, str]]] | None = None,
                     column_x: Mapping[str, tuple[str, str]] | None = None) -> None:
    """Facets (a title and its series) as rows of panels: a panel per column with data, the series packed at most
    MAX_SERIES to a row; each facet's columns share a y scale over all of its rows.

    ``column_x``: a column's own x axis (label, mode; its series carry ``xs_<column>``), else the shared one."""
    x_mode_default = x_mode
    rows: list[tuple[str, list[LineSeries], list[LineColumn], dict[str, list[float]], dict[str, list[float]]]] = []
    for facet_title, series in facets:
        cols = [c for c in columns if any(finite_values(s.ys.get(c.column, ())) for s in series)]
        if not cols:
            continue
        scale_values = {c.column: [v for s in series for v in finite_values(s.ys.get(c.column, ()))] for c in cols}
        x_values = {c.column: [x for s in series for x, y in zip(_xs_of(s, c.column, column_x), s.ys.get(c.column, []))
                               if math.isfinite(x) and math.isfinite(y)] for c in cols}
        packs = pack_series([(s.platform, s.variant) for s in series])
        by_key = {(s.platform, s.variant): s for s in series}
        for i, pack in enumerate(packs, start=1):
            shown = facet_title + (f" ({i} of {len(packs)})" if len(packs) > 1 else "")
            rows.append((shown, [by_key[k] for k in pack], cols, scale_values, x_values))
    if not rows:
        return
    ncols = max(len(r[2]) for r in rows)
    labels = [s.platform + (f" \u00b7 {s.variant}" if s.variant else "") for r in rows for s in r[1]]
    legend_w = min(6.0, max(1.2, text_width(labels) + 0.6))
    axes_w = 3.4 if ncols > 1 else 5.2
    left, gap = 0.85, 0.9
    width = left + ncols * axes_w + (ncols - 1) * gap + 0.35 + legend_w
    header = Header.create(title, [], width)
    row_h, axes_h = 3.15, 2.3
    height = header.height + row_h * len(rows) + 0.05
    fig.set_size_inches(width, height)
    header.draw(fig, height)
    for i, (facet_title, series, cols, scale_values, x_values) in enumerate(rows):
        top = header.height + i * row_h + 0.32
        variant_index: dict[str, int] = {}
        for j, column in enumerate(cols):
            ax = fig.add_axes(axes_rect(width, height, left + j * (axes_w + gap), top, axes_w, axes_h))
            xs_all: list[float] = []
            for s in series:
                xs = _xs_of(s, column.column, column_x)
                pts = [(x, y) for x, y in zip(xs, s.ys.get(column.column, [])) if math.isfinite(x) and math.isfinite(y)]
                if not pts:
                    continue
                k = variant_index.setdefault(f"{s.platform}\0{s.variant}", sum(
                    1 for key in variant_index if key.startswith(s.platform + "\0")))
                label = s.platform + (f" \u00b7 {s.variant}" if s.variant else "")
                _plot_line(ax, s, [y for _, y in pts], [x for x, _ in pts], styles, k, label)
                xs_all.extend(x for x, _ in pts)
            for y, text in (hlines or {}).get(column.column, []):
                ax.axhline(y, color="black", linestyle="--", linewidth=0.8)
                ax.annotate(text, (0.99, y), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                            fontsize=6.5)
            _value_axis(ax, column, scale_values[column.column] + [y for y, _ in (hlines or {}).get(column.column, [])])
            x_label, x_mode = (column_x or {}).get(column.column, (xlabel, x_mode_default))
            _x_axis(ax, x_values[column.column], x_label, x_mode)
            ax.set_title(f"{facet_title}: {column.title}", loc="left")
            if j == len(cols) - 1:
                handles, _ = ax.get_legend_handles_labels()
                if handles:
                    ax.legend(loc="upper left", bbox_to_anchor=(1.0 + 0.3 / axes_w, 1.0), frameon=False,
                              borderaxespad=0.0)


def line_series(frame: pd.DataFrame, params: Sequence[str], axis: str, columns: Sequence[str],
                drop: Sequence[str] = (), variant: Callable[[pd.Series], str] | None = None, min_points: int = 2
                ) -> list[tuple[str, list[LineSeries]]]:
    """A facet per group: its series by platform and the params that vary (``axis`` and ``drop`` left out); a series
    with fewer than ``min_points`` values of ``axis`` draws no line and is left out (the table shows it)."""
    facets = []
    names = [n for n in params if n in frame.columns and n != axis and n not in drop]
    for group in list(dict.fromkeys(frame["group"].fillna(""))):
        gdata = frame[frame["group"].fillna("") == group]
        varying = varying_params(gdata, ["benchmark", *names])
        series: dict[tuple[str, str], LineSeries] = {}
        for _, r in gdata.sort_values("platform", kind="stable").iterrows():
            x = r[axis]
            if is_missing(x):
                continue
            bits = {n: (str(r[n]).replace("test_", "", 1) if n == "benchmark" else r[n]) for n in varying}
            label = compact_params(bits, varying)
            if variant is not None:
                label = " ".join(b for b in (variant(r), label) if b)
            s = series.setdefault((str(r["platform"]), label), LineSeries(str(r["platform"]), label))
            s.xs.append(float(x))
            for c in columns:
                s.ys.setdefault(c, []).append(float(r[c]) if c in r and not is_missing(r[c]) else math.nan)
        for s in series.values():  # points in x order
            order = sorted(range(len(s.xs)), key=lambda i: s.xs[i])
            s.xs = [s.xs[i] for i in order]
            s.ys = {c: [v[i] for i in order] for c, v in s.ys.items()}
        kept = [s for s in series.values() if len(set(s.xs)) >= min_points]
        if kept:
            facets.append((group or "(no group)", kept))
    return facets


def throughput_groups(frame: pd.DataFrame) -> pd.DataFrame:
    """The records of the groups whose runs recorded their throughput (extra_info samples_per_s): a throughput
    inferred from the batch over a round's time is one for a step, not for a round that is a whole training run
    (time to accuracy). Frames without the column are kept whole."""
    if "recorded_samples_per_s" not in frame.columns or frame.empty:
        return frame
    recorded = frame["recorded_samples_per_s"].astype(float).map(math.isfinite)
    groups = set(frame.loc[recorded, "group"].fillna(""))
    return frame[frame["group"].fillna("").isin(groups)]
