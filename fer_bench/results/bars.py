"""Bar charts: a row per case and a bar per platform, faceted into panels of at most MAX_SERIES platforms and
MAX_ROWS cases that share their group's scale; and the speedup-over-a-reference bars of the precision and compile
views."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import pandas as pd

from fer_bench.results.charts import (
    MAX_BARS,
    MAX_ROWS,
    MAX_SERIES,
    WIDTH_IN,
    Header,
    SeriesStyle,
    axes_rect,
    compact_params,
    finite_values,
    has_values,
    set_log_scale,
    stack_panels,
    style_of,
    text_width,
    tick_formatter,
    times_text,
    use_log_scale,
    varying_params,
)


_BAR_IN = 0.17


@dataclass
class Bar:
    """One platform's bar of a case: its value, error bar ends and the text written beside it."""

    platform: str
    value: float
    low: float = math.nan
    high: float = math.nan
    text: str = ""


@dataclass
class BarRow:
    """One case: its label and a bar per platform."""

    label: str
    bars: list[Bar]


@dataclass
class BarPanel:
    """One panel of bars: its title, its rows and the name of the scale it shares."""

    title: str
    rows: list[BarRow]
    #: the scale this panel shares with the others of its facet (a group)
    scale: str = ""


@dataclass
class BarScale:
    """An x scale shared by panels: log or linear, its ends, label, tick format and reference line."""

    log: bool
    low: float
    high: float
    label: str
    formatter: str = "si"
    ref: float | None = None


def bar_scale(values: Iterable[float], label: str, *, formatter: str = "si", ref: float | None = None,
              room: bool = True) -> BarScale:
    """A shared x scale for bars over ``values``: log when they span more than LOG_SPAN, with room on the right for
    the text written beside the bars."""
    vals = [v for v in finite_values(values) if v > 0]
    if ref is not None:
        vals.append(ref)
    if not vals:
        return BarScale(False, 0.0, 1.0, label, formatter, ref)
    log = use_log_scale(vals)
    if log:
        low = 10 ** math.floor(math.log10(min(vals)))
        high = max(vals) * (4.0 if room else 1.3)
        return BarScale(True, low, high, f"{label} (log scale)", formatter, ref)
    return BarScale(False, 0.0, max(vals) * (1.28 if room else 1.05), label, formatter, ref)


def _split_rows(rows: list[BarRow], platforms: Sequence[str]) -> list[list[BarRow]]:
    """Rows (cases) with only the bars of ``platforms``, in chunks of at most MAX_ROWS rows and MAX_BARS bars."""
    chunks: list[list[BarRow]] = []
    current: list[BarRow] = []
    bars = 0
    wanted = set(platforms)
    for row in rows:
        kept = [b for b in row.bars if b.platform in wanted]
        if not kept:
            continue
        if current and (len(current) >= MAX_ROWS or bars + len(kept) > MAX_BARS):
            chunks.append(current)
            current, bars = [], 0
        current.append(BarRow(row.label, kept))
        bars += len(kept)
    if current:
        chunks.append(current)
    return chunks


def facet_bars(title: str, rows: list[BarRow], order: Sequence[str], scale: str) -> list[BarPanel]:
    """One facet's rows as panels: platforms in chunks of MAX_SERIES (in ``order``), rows in chunks."""
    present = [p for p in order if any(b.platform == p for r in rows for b in r.bars)]
    groups = [present[i:i + MAX_SERIES] for i in range(0, len(present), MAX_SERIES)] or [[]]
    panels = []
    for platforms in groups:
        for chunk in _split_rows(rows, platforms):
            panels.append(BarPanel(title, chunk, scale))
    if len(panels) > 1:
        for i, panel in enumerate(panels, start=1):
            panel.title = f"{title} ({i} of {len(panels)})"
    return panels


def _draw_bar_panel(ax, panel: BarPanel, styles: Mapping[str, SeriesStyle], scale: BarScale) -> None:
    ys, widths, lefts, colours, hatches, texts = [], [], [], [], [], []
    err_y, err_x, err_lo, err_hi = [], [], [], []
    ticks, tick_labels, separators = [], [], []
    y = 0.0
    base = scale.low if scale.log else 0.0
    for row in panel.rows:
        start = y
        for bar in row.bars:
            st = style_of(styles, bar.platform)
            ys.append(y)
            lefts.append(base)
            widths.append(max(bar.value, base) - base if math.isfinite(bar.value) else 0.0)
            colours.append(st.color)
            hatches.append(st.hatch)
            if math.isfinite(bar.low) and math.isfinite(bar.high) and bar.high > bar.low:
                err_y.append(y)
                err_x.append(bar.value)
                err_lo.append(max(0.0, bar.value - max(bar.low, base if scale.log else -math.inf)))
                err_hi.append(max(0.0, min(bar.high, scale.high) - bar.value))
            if bar.text:
                end = max(finite_values([bar.value, bar.high]) or [base])
                texts.append((end * 1.06 if scale.log else end + 0.01 * (scale.high - scale.low), y, bar.text))
            y += 1.0
        ticks.append((start + y - 1.0) / 2.0)
        tick_labels.append(row.label)
        separators.append(y - 0.5 + 0.25)
        y += 0.5
    rects = ax.barh(ys, widths, left=lefts, height=0.82, color=colours, edgecolor="white", linewidth=0.4)
    for rect, hatch in zip(rects, hatches):
        if hatch:
            rect.set_hatch(hatch)
            rect.set_edgecolor("#333333")
    if err_y:
        ax.errorbar(err_x, err_y, xerr=[err_lo, err_hi], fmt="none", ecolor="#222222", elinewidth=0.8, capsize=2,
                    capthick=0.8)
    for x, ty, text in texts:
        ax.text(x, ty, text, va="center", ha="left", fontsize=6.5, color="#333333", clip_on=True)
    for s in separators[:-1]:
        ax.axhline(s, color="#dddddd", linewidth=0.6)
    if scale.ref is not None:
        ax.axvline(scale.ref, color="black", linewidth=0.8)
    ax.set_yticks(ticks)
    ax.set_yticklabels(tick_labels)
    ax.set_ylim(y - 0.5, -0.75)
    if scale.log:
        set_log_scale(ax, "x")
    ax.set_xlim(scale.low if scale.log else 0.0, scale.high)
    ax.xaxis.set_major_formatter(tick_formatter(scale.formatter))
    ax.set_xlabel(scale.label)
    ax.set_title(panel.title, loc="left")
    ax.grid(True, axis="x", alpha=0.3)
    ax.tick_params(axis="y", length=0)


def _platform_handles(styles: Mapping[str, SeriesStyle], platforms: Sequence[str],
                      labels: Mapping[str, str] | None = None) -> list:
    from matplotlib.patches import Patch

    handles = []
    for p in platforms:
        st = style_of(styles, p)
        handles.append(Patch(facecolor=st.color, hatch=st.hatch or None,
                             edgecolor="#333333" if st.hatch else st.color, label=(labels or {}).get(p, p)))
    return handles


def draw_bar_figure(fig, panels: list[BarPanel], scales: Mapping[str, BarScale], styles: Mapping[str, SeriesStyle],
                    *, title: str, legend_labels: Mapping[str, str] | None = None) -> None:
    """Bar panels stacked under a title and a legend of their platforms (``legend_labels`` renames
    them)."""
    shown = sorted({b.platform for p in panels for r in p.rows for b in r.bars})
    header = Header.create(title, _platform_handles(styles, shown, legend_labels), WIDTH_IN)
    left = min(4.2, max(0.9, text_width(r.label for p in panels for r in p.rows) + 0.25))
    width = WIDTH_IN
    places, height = stack_panels(header.height, [_BAR_IN * sum(len(r.bars) for r in panel.rows)
                                                  + 0.08 * len(panel.rows) + 0.12 for panel in panels])
    fig.set_size_inches(width, height)
    header.draw(fig, height)
    for panel, (top, h) in zip(panels, places):
        ax = fig.add_axes(axes_rect(width, height, left, top, width - left - 0.3, h))
        _draw_bar_panel(ax, panel, styles, scales[panel.scale])


def _ratio_rows(frame: pd.DataFrame, axis: str, reference: str) -> pd.Series:
    """The rows of a ratio view that have a speedup over the reference value of ``axis``."""
    return (frame[axis] != reference) & frame["speedup"].notna()


def has_ratios(frame: pd.DataFrame, axis: str, reference: str) -> bool:
    """Whether a ratio view (precision over fp32, compile over eager) has a speedup to chart."""
    return has_values(frame, "speedup") and bool(_ratio_rows(frame, axis, reference).any())


def plot_ratio_bars(fig, frame: pd.DataFrame, params: Sequence[str], styles: Mapping[str, SeriesStyle], *,
                    axis: str, reference: str, what: str, note: Callable[[pd.Series], str] | None = None) -> None:
    """Speedups over a reference value of ``axis`` (fp32, eager): a facet per group and value, a row per case, a bar
    per platform."""
    data = frame[_ratio_rows(frame, axis, reference)].copy()
    order = sorted(styles)
    order += [p for p in sorted(data["platform"].unique()) if p not in order]
    panels: list[BarPanel] = []
    values: list[float] = []
    names = [n for n in params if n in data.columns and n != axis]
    for group in list(dict.fromkeys(data["group"].fillna(""))):
        gdata = data[data["group"].fillna("") == group]
        shown = varying_params(gdata, ["benchmark", *names]) or ["benchmark"]
        for value in list(dict.fromkeys(gdata[axis])):
            vdata = gdata[gdata[axis] == value]
            cases: dict[str, list[Bar]] = {}
            for _, r in vdata.iterrows():
                bits = {n: (str(r[n]).replace("test_", "", 1) if n == "benchmark" else r[n]) for n in shown}
                label = compact_params(bits, shown)
                s = float(r["speedup"])
                values.append(s)
                text = times_text(s) + (note(r) if note else "")
                cases.setdefault(label, []).append(Bar(str(r["platform"]), s, text=text))
            rows = [BarRow(k, sorted(v, key=lambda b: order.index(b.platform))) for k, v in cases.items()]
            panels.extend(facet_bars(f"{group or '(no group)'}: {value} over {reference}", rows, order, "all"))
    if not panels:
        return
    scale = bar_scale(values, f"speedup over {reference} (x, right is faster)", formatter="times", ref=1.0)
    draw_bar_figure(fig, panels, {"all": scale}, styles, title=f"{what} speedup over {reference}, per case and "
                                                                 f"platform (the line: no change)")
