"""Charts of `fer-bench compare` views (``--plots``: one PNG per view) and of `fer-bench report` (the same charts as
inline SVG). The `plots` extra: matplotlib's Figure and Agg canvas, never pyplot, so no display is needed.

Rules every chart follows, so a person can read it at a glance:

* **one colour per platform**, the same in every chart of a plot set or report: :func:`create_platform_styles`
  builds the mapping once from the sorted platform list, from tab10's ten distinct colours; past ten platforms
  the colours repeat with a hatch (bars) and a marker (lines) of their own, so no two platforms look alike;
* **facets instead of cramming**: a panel per benchmark group (and per benchmark, precision or compile mode where
  those differ), and never more than :data:`MAX_SERIES` (8) platforms or lines in one panel: more are split over
  several panels that share the group's scale. Within a platform, the lines of other params (batch size,
  pipeline) differ by line style and marker fill;
* a **log scale** where the values a scale shows span more than :data:`LOG_SPAN` (30x), else linear from zero;
* **units on every axis** (images/s, ms, s, %, x) and a title on every chart and panel.

Charts per view: platforms (throughput per case, a bar per platform, IQR error bars and the speedup over the
baseline written beside each bar), workers (throughput and data-wait share against workers), batch (throughput
against batch size), precision and compile (speedup over fp32 / eager per case), scaling (efficiency against
world size), convergence (accuracy against time and epochs), ops (op-category shares), paper (epoch time per
model); and the gate's verdicts (:func:`draw_gate`: ratio and interval per case). PNGs are written atomically.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd

from fer_bench._atomic import write_bytes_atomic
from fer_bench.errors import FerBenchError

#: At most this many platforms (bars of a case) or lines in one panel: more are split over several panels.
MAX_SERIES = 8
#: At most this many cases (rows of bars) and bars in one bar panel.
MAX_ROWS = 12
MAX_BARS = 64
#: A scale whose values span more than this factor is logarithmic.
LOG_SPAN = 30.0
#: tab10: ten colours told apart at a glance (and in the common colour-vision deficiencies, better than most).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
#: Past len(PALETTE) platforms, each round of colours gets the next hatch (bars) and marker (lines).
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "--", "||")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: Lines of one platform in one panel: line style, then hollow markers (8 combinations: MAX_SERIES).
_LINESTYLES = ("-", "--", ":", "-.")
#: The op categories' colours (ops view): pastel, so they are never taken for platforms.
_CATEGORY_COLOURS = ("#8dd3c7", "#fdb462", "#bebada", "#fb8072", "#80b1d3", "#b3de69", "#fccde5", "#ffffb3",
                     "#d9d9d9", "#bc80bd", "#ccebc5", "#ffed6f")
#: The gate's statuses, worst first, and their colours.
GATE_STATUS_ORDER = ("regression", "not comparable", "no baseline", "inconclusive", "improvement", "unchanged")
GATE_COLOURS = {"regression": "#d62728", "not comparable": "#9467bd", "no baseline": "#9467bd",
                "inconclusive": "#ff7f0e", "improvement": "#2ca02c", "unchanged": "#7f7f7f"}
_WIDTH_IN = 9.5
_BAR_IN = 0.17
_RC = {"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7.5, "ytick.labelsize": 7.5,
       "legend.fontsize": 7.5, "figure.titlesize": 10.5, "axes.spines.top": False, "axes.spines.right": False,
       "svg.fonttype": "none", "hatch.linewidth": 0.6, "font.family": "sans-serif"}


# ----------------------------------------------------------------------------------------------- basics


def require_matplotlib(what: str = "--plots") -> tuple[Any, Any]:
    """The Figure class and the Agg canvas; pyplot is never touched, so no GUI backend is ever chosen.

    Raises:
        FerBenchError: matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise FerBenchError(f"{what} needs matplotlib: pip install 'fer_bench[plots]'") from None
    return Figure, FigureCanvasAgg


@dataclass(frozen=True)
class SeriesStyle:
    """How one platform looks in every chart: its colour, and past ten platforms a hatch and a marker too."""

    color: str
    hatch: str = ""
    marker: str = "o"


def create_platform_styles(platforms: Iterable[str]) -> dict[str, SeriesStyle]:
    """The fixed platform -> style mapping of a plot set or report, from the sorted platform list: the i-th platform
    gets colour i mod 10, and round i // 10 of the colours its own hatch and marker."""
    ordered = sorted({str(p) for p in platforms})
    n = len(PALETTE)
    return {p: SeriesStyle(PALETTE[i % n], HATCHES[(i // n) % len(HATCHES)], MARKERS[(i // n) % len(MARKERS)])
            for i, p in enumerate(ordered)}


def _style(styles: Mapping[str, SeriesStyle], platform: str) -> SeriesStyle:
    return styles.get(platform) or SeriesStyle("#444444")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _finite(values: Iterable[Any]) -> list[float]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


def use_log_scale(values: Iterable[Any]) -> bool:
    """The log-scale rule: every value positive and the largest over LOG_SPAN times the smallest."""
    vals = _finite(values)
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) > LOG_SPAN


def _si(value: float, _pos: Any = None) -> str:
    """Axis numbers: 950, 1.5k, 20k, 3M."""
    if value == 0:
        return "0"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:g}{suffix}"
    return f"{value:g}"


def _formatter(kind: str):
    from matplotlib.ticker import FuncFormatter

    if kind == "percent":
        return FuncFormatter(lambda v, _: f"{v:.0%}")
    if kind == "times":
        return FuncFormatter(lambda v, _: f"{v:g}x")
    return FuncFormatter(_si)


def _factor(value: float) -> str:
    if not math.isfinite(value):
        return ""
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x" if value < 100 else f"{value:.0f}x"


def _compact_params(params: Mapping[str, Any], names: Sequence[str]) -> str:
    """Params as a short label: bs64 w4 g2 for the counts, the value of a word axis (resnet18, amp_bf16)."""
    bits = []
    for n in names:
        v = params.get(n)
        if _is_missing(v) or v == "":
            continue
        if n in ("batch_size", "num_workers", "num_gpus") and not isinstance(v, bool):
            bits.append({"batch_size": "bs", "num_workers": "w", "num_gpus": "g"}[n] + str(v))
        elif isinstance(v, bool):
            bits.append(n if v else f"no {n}")
        elif isinstance(v, str):
            bits.append(v)
        elif n == "target_accuracy" and isinstance(v, float):
            bits.append(f"target {v:.0%}")
        else:
            bits.append(f"{n}={v}")
    return " ".join(bits)


def _varying(frame: pd.DataFrame, names: Sequence[str]) -> list[str]:
    return [n for n in names if n in frame.columns and frame[n].map(repr).nunique() > 1]


def compact_case(case: str, limit: int = 90) -> str:
    """A case id (``fn[model=resnet18, device=cpu, batch_size=64, ...]``) shortened for an axis label."""
    text = str(case).replace("test_", "", 1)
    for long, short in (("batch_size=", "bs"), ("num_workers=", "w"), ("num_gpus=", "g"), ("model=", ""),
                        ("precision=", ""), ("device=", ""), ("pipeline=", ""), (", ", " ")):
        text = text.replace(long, short)
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _new_figure(figure_cls: Any = None):
    figure_cls = figure_cls or require_matplotlib()[0]
    return figure_cls(figsize=(_WIDTH_IN, 4.0), dpi=110)


def _rc():
    import matplotlib

    return matplotlib.rc_context(_RC)


# ----------------------------------------------------------------------------------------------- bar panels


@dataclass
class _Bar:
    platform: str
    value: float
    low: float = math.nan
    high: float = math.nan
    text: str = ""


@dataclass
class _Row:
    label: str
    bars: list[_Bar]


@dataclass
class _BarPanel:
    title: str
    rows: list[_Row]
    #: the scale this panel shares with the others of its facet (a group)
    scale: str = ""


@dataclass
class _Scale:
    log: bool
    low: float
    high: float
    label: str
    formatter: str = "si"
    ref: float | None = None


def _scale(values: Iterable[float], label: str, *, formatter: str = "si", ref: float | None = None,
           room: bool = True) -> _Scale:
    """A shared x scale for bars over ``values``: log when they span more than LOG_SPAN, with room on the right for
    the text written beside the bars."""
    vals = [v for v in _finite(values) if v > 0]
    if ref is not None:
        vals.append(ref)
    if not vals:
        return _Scale(False, 0.0, 1.0, label, formatter, ref)
    log = use_log_scale(vals)
    if log:
        low = 10 ** math.floor(math.log10(min(vals)))
        high = max(vals) * (4.0 if room else 1.3)
        return _Scale(True, low, high, f"{label} (log scale)", formatter, ref)
    return _Scale(False, 0.0, max(vals) * (1.28 if room else 1.05), label, formatter, ref)


def _split_rows(rows: list[_Row], platforms: Sequence[str]) -> list[list[_Row]]:
    """Rows (cases) with only the bars of ``platforms``, in chunks of at most MAX_ROWS rows and MAX_BARS bars."""
    chunks: list[list[_Row]] = []
    current: list[_Row] = []
    bars = 0
    wanted = set(platforms)
    for row in rows:
        kept = [b for b in row.bars if b.platform in wanted]
        if not kept:
            continue
        if current and (len(current) >= MAX_ROWS or bars + len(kept) > MAX_BARS):
            chunks.append(current)
            current, bars = [], 0
        current.append(_Row(row.label, kept))
        bars += len(kept)
    if current:
        chunks.append(current)
    return chunks


def _facet_bars(title: str, rows: list[_Row], order: Sequence[str], scale: str) -> list[_BarPanel]:
    """One facet's rows as panels: platforms in chunks of MAX_SERIES (in ``order``), rows in chunks."""
    present = [p for p in order if any(b.platform == p for r in rows for b in r.bars)]
    groups = [present[i:i + MAX_SERIES] for i in range(0, len(present), MAX_SERIES)] or [[]]
    panels = []
    for platforms in groups:
        for chunk in _split_rows(rows, platforms):
            panels.append(_BarPanel(title, chunk, scale))
    if len(panels) > 1:
        for i, panel in enumerate(panels, start=1):
            panel.title = f"{title} ({i} of {len(panels)})"
    return panels


def _draw_bar_panel(ax, panel: _BarPanel, styles: Mapping[str, SeriesStyle], scale: _Scale) -> None:
    ys, widths, lefts, colours, hatches, texts = [], [], [], [], [], []
    err_y, err_x, err_lo, err_hi = [], [], [], []
    ticks, tick_labels, separators = [], [], []
    y = 0.0
    base = scale.low if scale.log else 0.0
    for row in panel.rows:
        start = y
        for bar in row.bars:
            st = _style(styles, bar.platform)
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
                end = max(_finite([bar.value, bar.high]) or [base])
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
        _set_log(ax, "x")
    ax.set_xlim(scale.low if scale.log else 0.0, scale.high)
    ax.xaxis.set_major_formatter(_formatter(scale.formatter))
    ax.set_xlabel(scale.label)
    ax.set_title(panel.title, loc="left")
    ax.grid(True, axis="x", alpha=0.3)
    ax.tick_params(axis="y", length=0)


def _set_log(ax, which: str = "x") -> None:
    """A log scale with minor ticks at 2x and 5x only, unlabelled (cheaper to draw, and enough to read by)."""
    from matplotlib.ticker import LogLocator, NullFormatter

    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
    axis.set_minor_formatter(NullFormatter())


# layout by hand, in inches from the top: cheaper than a layout engine (which draws every axes once more), and the
# charts' sizes follow from their contents anyway
_CHAR_IN = 0.06  # a 7.5 pt character, on average (DejaVu Sans is wide)
_TITLE_LINE_IN = 0.24
_LEGEND_ROW_IN = 0.2


def _text_width(labels: Iterable[Any], char_in: float = _CHAR_IN) -> float:
    return max((len(str(label)) for label in labels), default=0) * char_in


def _stack_panels(top: float, heights: list[float],
                  title_in: float = 0.3) -> tuple[list[tuple[float, float]], float]:
    """Panels stacked down the figure from ``top`` (inches), each with ``title_in`` for its title above and 0.5
    below: each panel's (top, height) and the figure's height."""
    y, places = top, []
    for h in heights:
        y += title_in
        places.append((y, h))
        y += h + 0.5
    return places, y + 0.05


def _frac(width: float, height: float, left: float, top: float, w: float, h: float) -> list[float]:
    return [left / width, 1.0 - (top + h) / height, w / width, h / height]


@dataclass
class _Header:
    """A figure's title and its legend (handles with labels), placed once the figure's height is known."""

    title: str
    handles: list = field(default_factory=list)
    ncols: int = 1

    @classmethod
    def create(cls, title: str, handles: list, width: float) -> _Header:
        longest = _text_width([h.get_label() for h in handles]) + 0.45
        ncols = max(1, min(len(handles) or 1, 4, int((width - 0.4) // max(longest, 0.1))))
        return cls(title, handles, ncols)

    @property
    def lines(self) -> list[str]:
        import textwrap

        return [line for part in self.title.split("\n") for line in textwrap.wrap(part, 100)]

    @property
    def height(self) -> float:
        rows = math.ceil(len(self.handles) / self.ncols) if self.handles else 0
        return 0.12 + _TITLE_LINE_IN * len(self.lines) + _LEGEND_ROW_IN * rows + (0.12 if rows else 0.0)

    def draw(self, fig, height: float) -> None:
        fig.text(0.5, 1.0 - 0.1 / height, "\n".join(self.lines), ha="center", va="top", fontsize=10.5)
        if self.handles:
            fig.legend(handles=self.handles, loc="upper center", frameon=False, ncols=self.ncols,
                       bbox_to_anchor=(0.5, 1.0 - (0.1 + _TITLE_LINE_IN * len(self.lines)) / height))


def _platform_handles(styles: Mapping[str, SeriesStyle], platforms: Sequence[str],
                      labels: Mapping[str, str] | None = None) -> list:
    from matplotlib.patches import Patch

    handles = []
    for p in platforms:
        st = _style(styles, p)
        handles.append(Patch(facecolor=st.color, hatch=st.hatch or None,
                             edgecolor="#333333" if st.hatch else st.color, label=(labels or {}).get(p, p)))
    return handles


def _draw_bar_figure(fig, panels: list[_BarPanel], scales: Mapping[str, _Scale], styles: Mapping[str, SeriesStyle],
                     *, title: str, legend_labels: Mapping[str, str] | None = None) -> None:
    shown = sorted({b.platform for p in panels for r in p.rows for b in r.bars})
    header = _Header.create(title, _platform_handles(styles, shown, legend_labels), _WIDTH_IN)
    left = min(4.2, max(0.9, _text_width(r.label for p in panels for r in p.rows) + 0.25))
    width = _WIDTH_IN
    places, height = _stack_panels(header.height, [_BAR_IN * sum(len(r.bars) for r in panel.rows)
                                                   + 0.08 * len(panel.rows) + 0.12 for panel in panels])
    fig.set_size_inches(width, height)
    header.draw(fig, height)
    for panel, (top, h) in zip(panels, places):
        ax = fig.add_axes(_frac(width, height, left, top, width - left - 0.3, h))
        _draw_bar_panel(ax, panel, styles, scales[panel.scale])


# ----------------------------------------------------------------------------------------------- platforms


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
    return _factor(float(s)) if not _is_missing(s) and math.isfinite(float(s)) else ""


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
    panels: list[_BarPanel] = []
    scales: dict[str, _Scale] = {}
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
        rows_by_bench: dict[str, list[_Row]] = {}
        values: list[float] = []
        ms = gdata["median_ms"].astype(float)
        in_s = not throughput and bool(len(ms)) and float(ms.max()) >= 10_000
        for bench in list(dict.fromkeys(gdata["benchmark"])):
            bdata = gdata[gdata["benchmark"] == bench]
            names = _varying(bdata, [n for n in params if n in bdata.columns])
            cases: dict[str, list[_Bar]] = {}
            for _, r in bdata.iterrows():
                label = _compact_params(r, names) or str(bench).replace("test_", "", 1)
                med, lo_t, hi_t = float(r["median_ms"]), float(r["_q1"]), float(r["_q3"])
                if throughput:
                    v = float(r["samples_per_s"])
                    low = v * med / hi_t if hi_t > 0 else math.nan
                    high = v * med / lo_t if lo_t > 0 else math.nan
                else:
                    k = 1e-3 if in_s else 1.0
                    v, low, high = med * k, lo_t * k, hi_t * k
                values.extend([v, low, high])
                cases.setdefault(label, []).append(_Bar(str(r["platform"]), v, low, high, _speedup_text(r)))
            rows = [_Row(label, sorted(bars, key=lambda b: order.index(b.platform) if b.platform in order else 0))
                    for label, bars in cases.items()]
            rows_by_bench[bench] = rows
        unit = "throughput (images/s)" if throughput else f"median time per round ({'s' if in_s else 'ms'})"
        scales[group] = _scale(values, unit + (", right is faster" if throughput else ", left is faster"))
        several = len(rows_by_bench) > 1
        for bench, rows in rows_by_bench.items():
            name = group or "(no group)"
            title = f"{name}: {str(bench).replace('test_', '', 1)}" if several else name
            panels.extend(_facet_bars(title, rows, order, group))
    if not panels:
        return
    labels = {}
    if "kind" in frame.columns and baseline is not None:
        for _, g in frame[frame["kind"] == "geomean"].iterrows():
            p = str(g["platform"])
            s = g.get("speedup")
            labels[p] = (f"{p} (baseline)" if p == baseline else
                         f"{p}: {_factor(float(s))} over the baseline (geomean)" if not _is_missing(s)
                         and math.isfinite(float(s)) else p)
    what = "Throughput" if all(s.label.startswith("throughput") for s in scales.values()) else "Speed"
    title = f"{what} per case and platform (error bars: the rounds' interquartile range)"
    if baseline is not None:
        title += f"; speedup over {baseline} beside each bar"
    if left_out:
        title += f"\n{left_out} case(s) without a throughput left out (see the table)"
    _draw_bar_figure(fig, panels, scales, styles, title=title, legend_labels=labels)


def _plot_ratio_bars(fig, frame: pd.DataFrame, params: Sequence[str], styles: Mapping[str, SeriesStyle], *,
                     axis: str, reference: str, what: str, note: Callable[[pd.Series], str] | None = None) -> None:
    """Speedups over a reference value of ``axis`` (fp32, eager): a facet per group and value, a row per case, a bar
    per platform."""
    data = frame[(frame[axis] != reference) & frame["speedup"].notna()].copy()
    order = sorted(styles)
    order += [p for p in sorted(data["platform"].unique()) if p not in order]
    panels: list[_BarPanel] = []
    values: list[float] = []
    names = [n for n in params if n in data.columns and n != axis]
    for group in list(dict.fromkeys(data["group"].fillna(""))):
        gdata = data[data["group"].fillna("") == group]
        shown = _varying(gdata, ["benchmark", *names]) or ["benchmark"]
        for value in list(dict.fromkeys(gdata[axis])):
            vdata = gdata[gdata[axis] == value]
            cases: dict[str, list[_Bar]] = {}
            for _, r in vdata.iterrows():
                bits = {n: (str(r[n]).replace("test_", "", 1) if n == "benchmark" else r[n]) for n in shown}
                label = _compact_params(bits, shown)
                s = float(r["speedup"])
                values.append(s)
                text = _factor(s) + (note(r) if note else "")
                cases.setdefault(label, []).append(_Bar(str(r["platform"]), s, text=text))
            rows = [_Row(k, sorted(v, key=lambda b: order.index(b.platform))) for k, v in cases.items()]
            panels.extend(_facet_bars(f"{group or '(no group)'}: {value} over {reference}", rows, order, "all"))
    if not panels:
        return
    scale = _scale(values, f"speedup over {reference} (x, right is faster)", formatter="times", ref=1.0)
    _draw_bar_figure(fig, panels, {"all": scale}, styles, title=f"{what} speedup over {reference}, per case and "
                                                                 f"platform (the line: no change)")


def plot_precision(fig, frame: pd.DataFrame, params: Sequence[str], styles: Mapping[str, SeriesStyle],
                   meta: Mapping[str, Any] | None = None) -> None:
    def emulated(r: pd.Series) -> str:
        return " emulated" if r.get("emulated") is True else ""

    _plot_ratio_bars(fig, frame, params, styles, axis="precision", reference="fp32", what="Precision",
                     note=emulated)


def plot_compile(fig, frame: pd.DataFrame, params: Sequence[str], styles: Mapping[str, SeriesStyle],
                 meta: Mapping[str, Any] | None = None) -> None:
    def compile_time(r: pd.Series) -> str:
        t = r.get("compile_time_s")
        return f", compile {t:.3g} s" if not _is_missing(t) and math.isfinite(float(t)) else ""

    _plot_ratio_bars(fig, frame, params, styles, axis="compile", reference="eager", what="torch.compile",
                     note=compile_time)


def plot_paper(fig, frame: pd.DataFrame, params: Sequence[str], styles: Mapping[str, SeriesStyle],
               meta: Mapping[str, Any] | None = None) -> None:
    """The paper's epoch time per model (a row) and platform (a bar); the speedup over the model's slowest platform
    beside each bar."""
    data = frame[frame["epoch_time_s"].notna()]
    order = sorted(styles)
    order += [p for p in sorted(data["platform"].unique()) if p not in order]
    rows: list[_Row] = []
    values: list[float] = []
    for model in list(dict.fromkeys(data["model"].astype(str))):
        bars = []
        for _, r in data[data["model"].astype(str) == model].iterrows():
            t = float(r["epoch_time_s"])
            values.append(t)
            s = r.get("epoch_speedup")
            text = ("slowest" if not _is_missing(s) and float(s) == 1.0 else _factor(float(s))
                    if not _is_missing(s) else "")
            bars.append(_Bar(str(r["platform"]), t, text=text))
        rows.append(_Row(model, sorted(bars, key=lambda b: order.index(b.platform))))
    panels = _facet_bars("epoch time per model", rows, order, "all")
    scale = _scale(values, "seconds per epoch (s, left is faster)")
    _draw_bar_figure(fig, panels, {"all": scale}, styles,
                     title="Epoch time per model and platform (the paper's table); speedup over the model's "
                           "slowest platform beside each bar")


def plot_ops(fig, frame: pd.DataFrame, params: Sequence[str], styles: Mapping[str, SeriesStyle],
             meta: Mapping[str, Any] | None = None) -> None:
    """A stacked bar per (model, platform) and group: the share of each op category of its profiled step."""
    categories = [c for c in (meta or {}).get("categories", ()) if c in frame.columns]
    data = frame[frame["representative"].astype(bool)] if "representative" in frame else frame
    colours = {c: _CATEGORY_COLOURS[i % len(_CATEGORY_COLOURS)] for i, c in enumerate(categories)}
    facets = []
    for group in list(dict.fromkeys(data["group"].fillna(""))):
        gdata = data[data["group"].fillna("") == group]
        for i in range(0, len(gdata), MAX_BARS // 2):
            facets.append((group or "(no group)", gdata.iloc[i:i + MAX_BARS // 2]))
    from matplotlib.patches import Patch

    labelled = []
    for group, part in facets:
        models = part["model"] if "model" in part else part["benchmark"]
        labels = [f"{m} on {p}" for m, p in zip(models.astype(str), part["platform"].astype(str))]
        labelled.append((group, part, labels))
    header = _Header.create("Where a profiled step's time goes, by op category (one case per model and platform)",
                            [Patch(color=colours[c], label=c) for c in categories], _WIDTH_IN)
    left = min(4.2, max(0.9, _text_width(label for _, _, labels in labelled for label in labels) + 0.25))
    places, height = _stack_panels(header.height, [0.24 * len(part) + 0.1 for _, part, _ in labelled])
    fig.set_size_inches(_WIDTH_IN, height)
    header.draw(fig, height)
    for (group, part, labels), (top, h) in zip(labelled, places):
        ax = fig.add_axes(_frac(_WIDTH_IN, height, left, top, _WIDTH_IN - left - 0.3, h))
        lefts = [0.0] * len(part)
        for category in categories:
            shares = [float(v) for v in part[category].fillna(0.0)]
            ax.barh(range(len(part)), shares, left=lefts, height=0.75, color=colours[category],
                    edgecolor="white", linewidth=0.4)
            lefts = [a + b for a, b in zip(lefts, shares)]
        ax.set_yticks(range(len(part)))
        ax.set_yticklabels(labels)
        ax.set_ylim(len(part) - 0.5, -0.5)
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(_formatter("percent"))
        ax.set_xlabel("share of the profiled step's self time (%)")
        ax.set_title(group, loc="left")
        ax.grid(True, axis="x", alpha=0.3)
        ax.tick_params(axis="y", length=0)


# ----------------------------------------------------------------------------------------------- line panels


@dataclass
class _Series:
    platform: str
    variant: str
    xs: list[float] = field(default_factory=list)
    ys: dict[str, list[float]] = field(default_factory=dict)
    dashed_label: str = ""


@dataclass
class _LineColumn:
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


def _plot_line(ax, series: _Series, values: list[float], xs: list[float], styles, k: int, label: str) -> None:
    st = _style(styles, series.platform)
    linestyle, hollow = _variant_style(k)
    ax.plot(xs, values, linestyle=linestyle, marker=st.marker, markersize=4, linewidth=1.3, color=st.color,
            markerfacecolor="white" if hollow else st.color, markeredgecolor=st.color, label=label)


def _value_axis(ax, column: _LineColumn, values: list[float]) -> None:
    if column.kind == "share":
        ax.set_ylim(0, 1)
        ax.yaxis.set_major_formatter(_formatter("percent"))
        ax.set_ylabel(column.label)
        return
    if column.kind == "efficiency":
        top = max([1.15, *[v * 1.05 for v in _finite(values)]])
        ax.set_ylim(0, top)
        ax.axhline(1.0, color="black", linestyle="--", linewidth=0.8)
        ax.yaxis.set_major_formatter(_formatter("percent"))
        ax.set_ylabel(column.label)
        return
    if column.kind == "accuracy":
        vals = _finite(values) or [0.0, 1.0]
        ax.set_ylim(max(0.0, min(vals) - 0.05), min(1.0, max(vals) + 0.05))
        ax.yaxis.set_major_formatter(_formatter("percent"))
        ax.set_ylabel(column.label)
        return
    positive = [v for v in _finite(values) if v > 0]
    if use_log_scale(positive):
        _set_log(ax, "y")
        ax.set_ylim(10 ** math.floor(math.log10(min(positive))), max(positive) * 1.5)
        ax.set_ylabel(f"{column.label} (log scale)")
    else:
        ax.set_ylim(0, max(positive or [1.0]) * 1.1)
        ax.set_ylabel(column.label)
    ax.yaxis.set_major_formatter(_formatter("si"))


def _x_axis(ax, xs: Sequence[float], label: str, mode: str) -> None:
    """``xs``: the x values of the panel's whole facet (its panels share the x scale). ``mode``: ticks (a tick at
    each value: workers), log2 (the same on a log2 scale where they span over 2x: batch sizes, world sizes), integer
    (epochs), continuous (seconds: log where they span over LOG_SPAN)."""
    from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

    values = sorted(set(_finite(xs)))
    log = False
    if mode == "continuous":
        log = use_log_scale(values)
        if log:
            _set_log(ax, "x")
            label += " (log scale)"
        ax.xaxis.set_major_formatter(_formatter("si"))
    elif mode == "integer":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    elif values:
        if mode == "log2" and min(values) > 0 and max(values) / min(values) > 2:
            log = True
            ax.set_xscale("log", base=2)
            ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_locator(FixedLocator(values))
        ax.xaxis.set_major_formatter(_formatter("si"))
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


def _xs_of(series: _Series, column: str, column_x: Mapping[str, Any] | None) -> list[float]:
    """The x values of a series in a column: its own (``xs_<column>``) where the column has its own x axis."""
    if column_x and column in column_x:
        own = getattr(series, "xs_" + column, None)
        if own is not None:
            return own
    return series.xs


def _draw_line_facets(fig, facets: list[tuple[str, list[_Series]]], columns: Sequence[_LineColumn], styles, *,
                      xlabel: str, x_mode: str, title: str,
                      hlines: Mapping[str, list[tuple[float, str]]] | None = None,
                      column_x: Mapping[str, tuple[str, str]] | None = None) -> None:
    """Facets (a title and its series) as rows of panels: a panel per column with data, the series packed at most
    MAX_SERIES to a row; each facet's columns share a y scale over all of its rows.

    ``column_x``: a column's own x axis (label, mode; its series carry ``xs_<column>``), else the shared one."""
    x_mode_default = x_mode
    rows: list[tuple[str, list[_Series], list[_LineColumn], dict[str, list[float]], dict[str, list[float]]]] = []
    for facet_title, series in facets:
        cols = [c for c in columns if any(_finite(s.ys.get(c.column, ())) for s in series)]
        if not cols:
            continue
        scale_values = {c.column: [v for s in series for v in _finite(s.ys.get(c.column, ()))] for c in cols}
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
    legend_w = min(6.0, max(1.2, _text_width(labels) + 0.6))
    axes_w = 3.4 if ncols > 1 else 5.2
    left, gap = 0.85, 0.9
    width = left + ncols * axes_w + (ncols - 1) * gap + 0.35 + legend_w
    header = _Header.create(title, [], width)
    row_h, axes_h = 3.15, 2.3
    height = header.height + row_h * len(rows) + 0.05
    fig.set_size_inches(width, height)
    header.draw(fig, height)
    for i, (facet_title, series, cols, scale_values, x_values) in enumerate(rows):
        top = header.height + i * row_h + 0.32
        variant_index: dict[str, int] = {}
        for j, column in enumerate(cols):
            ax = fig.add_axes(_frac(width, height, left + j * (axes_w + gap), top, axes_w, axes_h))
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


def _line_series(frame: pd.DataFrame, params: Sequence[str], axis: str, columns: Sequence[str],
                 drop: Sequence[str] = (), variant: Callable[[pd.Series], str] | None = None, min_points: int = 2
                 ) -> list[tuple[str, list[_Series]]]:
    """A facet per group: its series by platform and the params that vary (``axis`` and ``drop`` left out); a series
    with fewer than ``min_points`` values of ``axis`` draws no line and is left out (the table shows it)."""
    facets = []
    names = [n for n in params if n in frame.columns and n != axis and n not in drop]
    for group in list(dict.fromkeys(frame["group"].fillna(""))):
        gdata = frame[frame["group"].fillna("") == group]
        varying = _varying(gdata, ["benchmark", *names])
        series: dict[tuple[str, str], _Series] = {}
        for _, r in gdata.sort_values("platform", kind="stable").iterrows():
            x = r[axis]
            if _is_missing(x):
                continue
            bits = {n: (str(r[n]).replace("test_", "", 1) if n == "benchmark" else r[n]) for n in varying}
            label = _compact_params(bits, varying)
            if variant is not None:
                label = " ".join(b for b in (variant(r), label) if b)
            s = series.setdefault((str(r["platform"]), label), _Series(str(r["platform"]), label))
            s.xs.append(float(x))
            for c in columns:
                s.ys.setdefault(c, []).append(float(r[c]) if c in r and not _is_missing(r[c]) else math.nan)
        for s in series.values():  # points in x order
            order = sorted(range(len(s.xs)), key=lambda i: s.xs[i])
            s.xs = [s.xs[i] for i in order]
            s.ys = {c: [v[i] for i in order] for c, v in s.ys.items()}
        kept = [s for s in series.values() if len(set(s.xs)) >= min_points]
        if kept:
            facets.append((group or "(no group)", kept))
    return facets


def _throughput_groups(frame: pd.DataFrame) -> pd.DataFrame:
    """The records of the groups whose runs recorded their throughput (extra_info samples_per_s): a throughput
    inferred from the batch over a round's time is one for a step, not for a round that is a whole training run
    (time to accuracy). Frames without the column are kept whole."""
    if "recorded_samples_per_s" not in frame.columns or frame.empty:
        return frame
    recorded = frame["recorded_samples_per_s"].astype(float).map(math.isfinite)
    groups = set(frame.loc[recorded, "group"].fillna(""))
    return frame[frame["group"].fillna("").isin(groups)]


def plot_workers(fig, frame: pd.DataFrame, params: Sequence[str], styles: Mapping[str, SeriesStyle],
                 meta: Mapping[str, Any] | None = None) -> None:
    frame = _throughput_groups(frame)
    # a series at one worker count draws no line: left out, unless no series has two (then dots)
    facets = (_line_series(frame, params, "num_workers", ["samples_per_s", "data_wait_fraction"])
              or _line_series(frame, params, "num_workers", ["samples_per_s", "data_wait_fraction"], min_points=1))
    _draw_line_facets(fig, facets, [
        _LineColumn("samples_per_s", "throughput (images/s)", "throughput"),
        _LineColumn("data_wait_fraction", "time waiting for data (%)", "data-wait share", kind="share")],
        styles, xlabel="data-loader workers (count)", x_mode="ticks",
        title="Throughput and data-wait share against the number of data-loader workers")


def plot_batch(fig, frame: pd.DataFrame, params: Sequence[str], styles: Mapping[str, SeriesStyle],
               meta: Mapping[str, Any] | None = None) -> None:
    frame = _throughput_groups(frame)
    facets = (_line_series(frame, params, "batch_size", ["samples_per_s"])
              or _line_series(frame, params, "batch_size", ["samples_per_s"], min_points=1))
    _draw_line_facets(fig, facets, [_LineColumn("samples_per_s", "throughput (images/s)", "throughput")], styles,
                      xlabel="batch size (images per device)", x_mode="log2", title="Throughput against batch size")


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
    facets = _line_series(data, params, axis, ["efficiency"], drop=("batch_size", "num_gpus", "parallel", "scaling"),
                          variant=lambda r: r["_anchor"], min_points=1)
    _draw_line_facets(fig, facets, [_LineColumn("efficiency", "scaling efficiency (%)", "efficiency",
                                                kind="efficiency")], styles,
                      xlabel="world size N (GPUs, or ddp processes; count)", x_mode="log2",
                      title="Scaling efficiency (weak: E = X_N / (N X_1); strong: T_1 / (N T_N)); dashed: ideal")


def plot_convergence(fig, frame: pd.DataFrame, params: Sequence[str], styles: Mapping[str, SeriesStyle],
                     meta: Mapping[str, Any] | None = None) -> None:
    """Accuracy against time and against epochs: a line per curve (the representative run of each platform and
    case), packed at most MAX_SERIES to a panel; a dashed line at each target accuracy."""
    curves = [c for c in (meta or {}).get("curves", []) if c["points"]]
    series = []
    for c in curves:
        s = _Series(str(c["platform"]), str(c["label"]).removeprefix(str(c["platform"])).strip()
                    + ("" if c.get("reached", True) else " (missed)"))
        s.xs = [p["epoch"] for p in c["points"]]
        s.ys = {"accuracy_epoch": [p["accuracy"] for p in c["points"]],
                "accuracy_time": [p["accuracy"] if math.isfinite(p["time_s"]) else math.nan for p in c["points"]]}
        s.xs_accuracy_time = [p["time_s"] if math.isfinite(p["time_s"]) else math.nan for p in c["points"]]
        series.append(s)
    # one series per (platform, label): two curves of one label stay apart
    seen: dict[tuple[str, str], int] = {}
    for s in series:
        n = seen.get((s.platform, s.variant), 0)
        seen[(s.platform, s.variant)] = n + 1
        if n:
            s.variant += f" #{n + 1}"
    targets = sorted({c["target"] for c in curves if isinstance(c["target"], float) and math.isfinite(c["target"])})
    lines = [(t, f"target {t:.0%}") for t in targets]
    _draw_line_facets(fig, [("accuracy", series)], [
        _LineColumn("accuracy_time", "accuracy (%)", "against time", kind="accuracy"),
        _LineColumn("accuracy_epoch", "accuracy (%)", "against epochs", kind="accuracy")],
        styles, xlabel="epochs (count)", x_mode="integer",
        title="Accuracy against time and epochs (each case's representative run); dashed: the target",
        hlines={"accuracy_time": lines, "accuracy_epoch": lines},
        column_x={"accuracy_time": ("seconds since the run started (s)", "continuous")})


# ----------------------------------------------------------------------------------------------- gate


def draw_gate(fig, report: Any) -> None:
    """The gate's verdicts: per case the ratio (current over baseline) and its confidence interval, coloured by
    status, regressions first; the no-change line and the threshold lines drawn."""
    metric = report.metric
    higher_better = metric in ("samples_per_s", "samples_per_joule")
    rows = [r for r in report.rows if r.ratio is not None and math.isfinite(r.ratio) and r.ratio > 0]
    rank = {s: i for i, s in enumerate(GATE_STATUS_ORDER)}
    rows.sort(key=lambda r: (rank.get(r.status, len(rank)), r.ratio if higher_better else -r.ratio))
    if not rows:
        return
    t = report.threshold
    values = [v for r in rows for v in (r.ratio, r.ci_low, r.ci_high) if v is not None]
    values += [1.0 - t if t < 1 else 1.0, 1.0 + t]
    finite = [v for v in _finite(values) if v > 0]
    log = use_log_scale(finite)
    lo, hi = min(finite), max(finite)
    if log:
        lo, hi = lo / 1.3, hi * 1.3
    else:
        pad = 0.08 * (hi - lo) or 0.05
        lo, hi = max(0.0, lo - pad), hi + pad
    from matplotlib.lines import Line2D

    present = [s for s in GATE_STATUS_ORDER if any(r.status == s for r in rows)]
    present += sorted({r.status for r in rows} - set(present))
    handles = [Line2D([], [], color=GATE_COLOURS.get(s, "#444444"), marker="o", linewidth=2.2, label=s)
               for s in present]
    handles.append(Line2D([], [], color="black", linestyle="--", linewidth=0.8, label=f"threshold \u00b1{t:.0%}"))
    left_out = len(report.rows) - len(rows)
    conf = f"{report.confidence:.2%} " if getattr(report, "confidence", None) else ""
    title = f"Gate verdicts: ratio (current over baseline) and {conf}confidence interval per case, worst first"
    if left_out:
        title += f"\n{left_out} case(s) without a ratio are in the table only"
    header = _Header.create(title, handles, _WIDTH_IN)
    chunks = [rows[i:i + 40] for i in range(0, len(rows), 40)]
    labels = [[compact_case(r.case, 70) for r in chunk] for chunk in chunks]
    left = min(4.2, max(0.9, _text_width(label for chunk in labels for label in chunk) + 0.25))
    places, height = _stack_panels(header.height, [0.19 * len(chunk) + 0.15 for chunk in chunks],
                                   title_in=0.3 if len(chunks) > 1 else 0.08)
    fig.set_size_inches(_WIDTH_IN, height)
    header.draw(fig, height)
    for k, (chunk, (top, h)) in enumerate(zip(chunks, places)):
        ax = fig.add_axes(_frac(_WIDTH_IN, height, left, top, _WIDTH_IN - left - 0.3, h))
        for y, r in enumerate(chunk):
            colour = GATE_COLOURS.get(r.status, "#444444")
            if r.ci_low is not None and r.ci_high is not None:
                a = min(max(r.ci_low, lo), hi) if math.isfinite(r.ci_low) else lo
                b = min(max(r.ci_high, lo), hi) if math.isfinite(r.ci_high) else hi
                ax.plot([a, b], [y, y], color=colour, linewidth=2.2, solid_capstyle="butt", alpha=0.55)
            ax.plot([r.ratio], [y], marker="o", markersize=4.5, color=colour)
        ax.axvline(1.0, color="black", linewidth=0.9)
        for x in (1.0 - t, 1.0 + t):
            if x > 0:
                ax.axvline(x, color="black", linestyle="--", linewidth=0.8)
        ax.set_yticks(range(len(chunk)))
        ax.set_yticklabels(labels[k])
        ax.set_ylim(len(chunk) - 0.5, -0.7)
        if log:
            _set_log(ax, "x")
        ax.set_xlim(lo, hi)
        ax.xaxis.set_major_formatter(_formatter("times"))
        worse = "left" if higher_better else "right"
        ax.set_xlabel(f"current / baseline ({metric}; x, {worse} is worse{', log scale' if log else ''})")
        ax.grid(True, axis="x", alpha=0.3)
        ax.tick_params(axis="y", length=0)
        if len(chunks) > 1:
            ax.set_title(f"cases {k * 40 + 1} to {k * 40 + len(chunk)}", loc="left")


# ----------------------------------------------------------------------------------------------- views


_PLOTTERS: dict[str, Callable] = {
    "platforms": plot_platforms,
    "batch": plot_batch,
    "workers": plot_workers,
    "precision": plot_precision,
    "scaling": plot_scaling,
    "convergence": plot_convergence,
    "ops": plot_ops,
    "paper": plot_paper,
    "compile": plot_compile,
}


def has_data(view: str, frame: pd.DataFrame, meta: Mapping[str, Any] | None = None) -> bool:
    """Whether a view has anything to chart."""
    if view not in _PLOTTERS or frame.empty:
        return False
    if view == "convergence":
        return any(c["points"] for c in (meta or {}).get("curves", []))
    if view == "ops":
        return True
    needed = {"platforms": "median_ms", "batch": "samples_per_s", "workers": "samples_per_s",
              "precision": "speedup", "scaling": "efficiency", "paper": "epoch_time_s", "compile": "speedup"}[view]
    if needed not in frame or not frame[needed].notna().any():
        return False
    if view == "precision":
        return bool(((frame["precision"] != "fp32") & frame["speedup"].notna()).any())
    if view == "compile":
        return bool(((frame["compile"] != "eager") & frame["speedup"].notna()).any())
    if view == "platforms":
        return frame["platform"].nunique() > 1
    return True


_has_data = has_data


def draw_view(view: str, table: Any, styles: Mapping[str, SeriesStyle], *, figure_cls: Any = None,
              frame: pd.DataFrame | None = None):
    """The chart of one view (a compare ViewTable, or its ``frame`` given instead of its records) as a matplotlib
    Figure, or None when the view has nothing to chart."""
    frame = table.records if frame is None else frame
    meta = getattr(table, "meta", None) or {}
    if not has_data(view, frame, meta):
        return None
    with _rc():
        fig = _new_figure(figure_cls)
        params = list(table.records.attrs.get("params", frame.attrs.get("params", [])))
        _PLOTTERS[view](fig, frame, params, styles, meta)
        if not fig.axes:
            return None
    return fig


def draw_platforms(frame: pd.DataFrame, styles: Mapping[str, SeriesStyle], *, meta: Mapping[str, Any] | None = None,
                   params: Sequence[str] = (), figure_cls: Any = None):
    """The platforms chart of a platforms view's records (one group's in the report; with ``q1_ms``/``q3_ms``
    columns, exact IQR error bars), even for a single platform; None without a case."""
    if frame.empty or "median_ms" not in frame or not frame["median_ms"].notna().any():
        return None
    with _rc():
        fig = _new_figure(figure_cls)
        plot_platforms(fig, frame, list(params), styles, meta)
    return fig if fig.axes else None


def draw_gate_figure(report: Any, figure_cls: Any = None):
    """The gate's interval plot (:func:`draw_gate`) as a Figure; None when no case has a ratio."""
    with _rc():
        fig = _new_figure(figure_cls)
        draw_gate(fig, report)
    return fig if fig.axes else None


def figure_to_png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    with _rc():
        fig.savefig(buffer, format="png")
    return buffer.getvalue()


_SVG_ID = re.compile(r'\bid="([^"]+)"')
#: The charts' text font in a page: matplotlib's own, else the usual sans-serif faces.
_SVG_FONTS = "'DejaVu Sans', 'Bitstream Vera Sans', Verdana, Arial, Helvetica, sans-serif"


def figure_to_svg(fig, id_prefix: str = "") -> str:
    """The figure as an inline SVG element: no XML prolog, DOCTYPE or metadata; text as text (``svg.fonttype``
    none: small, and searchable); every id given ``id_prefix`` (and the references to it), so several charts in
    one page never share an id."""
    buffer = io.StringIO()
    with _rc():
        fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    # smaller: no indentation, path data on one line, the font family once on the root (inherited)
    text = re.sub(r"\n\s*", "\n", text)
    text = re.sub(r" \n(?=[MLCQZz] )", " ", text)
    text = re.sub(r"font-family: [^;\"]*(; )?", "", text)
    text = text.replace("<svg ", f'<svg font-family="{_SVG_FONTS}" ', 1)
    if id_prefix:
        ids = set(_SVG_ID.findall(text))
        text = _SVG_ID.sub(lambda m: f'id="{id_prefix}{m.group(1)}"', text)
        text = re.sub(r'(url\(#|href="#)([^)"]+)', lambda m: m.group(1) + (
            id_prefix + m.group(2) if m.group(2) in ids else m.group(2)), text)
    return text.strip()


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
        views: view name -> fer_bench.results.compare.ViewTable.

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
