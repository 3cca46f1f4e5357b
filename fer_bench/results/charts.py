"""What every chart shares: matplotlib's Figure and Agg canvas (never pyplot, so no display is needed), one style per
platform, the log-scale rule, tick formats, short labels, the title-and-legend header, the layout by hand, and a
figure as PNG bytes or as inline SVG. The `plots` extra.

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
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

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
WIDTH_IN = 9.5
_RC = {"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7.5, "ytick.labelsize": 7.5,
       "legend.fontsize": 7.5, "figure.titlesize": 10.5, "axes.spines.top": False, "axes.spines.right": False,
       "svg.fonttype": "none", "hatch.linewidth": 0.6, "font.family": "sans-serif"}


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


def style_of(styles: Mapping[str, SeriesStyle], platform: str) -> SeriesStyle:
    """The platform's style; dark grey for a platform the mapping lacks."""
    return styles.get(platform) or SeriesStyle("#444444")


def is_missing(value: Any) -> bool:
    """None, NaN or pandas' NA."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def finite_values(values: Iterable[Any]) -> list[float]:
    """The values that are finite numbers, as floats."""
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
    vals = finite_values(values)
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) > LOG_SPAN


def _si(value: float, _pos: Any = None) -> str:
    """Axis numbers: 950, 1.5k, 20k, 3M."""
    if value == 0:
        return "0"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:g}{suffix}"
    return f"{value:g}"


def tick_formatter(kind: str):
    """Tick labels: ``percent`` (61%), ``times`` (1.5x), else SI numbers (1.5k)."""
    from matplotlib.ticker import FuncFormatter

    if kind == "percent":
        return FuncFormatter(lambda v, _: f"{v:.0%}")
    if kind == "times":
        return FuncFormatter(lambda v, _: f"{v:g}x")
    return FuncFormatter(_si)


def times_text(value: float) -> str:
    """A factor as text beside a bar ('1.07x', '12.4x', '150x'); empty for NaN."""
    if not math.isfinite(value):
        return ""
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x" if value < 100 else f"{value:.0f}x"


def compact_params(params: Mapping[str, Any], names: Sequence[str]) -> str:
    """Params as a short label: bs64 w4 g2 for the counts, the value of a word axis (resnet18, amp_bf16)."""
    bits = []
    for n in names:
        v = params.get(n)
        if is_missing(v) or v == "":
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


def varying_params(frame: pd.DataFrame, names: Sequence[str]) -> list[str]:
    """The ``names`` whose value differs between the frame's rows."""
    return [n for n in names if n in frame.columns and frame[n].map(repr).nunique() > 1]


def compact_case(case: str, limit: int = 90) -> str:
    """A case id (``fn[model=resnet18, device=cpu, batch_size=64, ...]``) shortened for an axis label."""
    text = str(case).replace("test_", "", 1)
    for long, short in (("batch_size=", "bs"), ("num_workers=", "w"), ("num_gpus=", "g"), ("model=", ""),
                        ("precision=", ""), ("device=", ""), ("pipeline=", ""), (", ", " ")):
        text = text.replace(long, short)
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def new_figure(figure_cls: Any = None):
    """A figure at the charts' width (its height is set once its panels are known)."""
    figure_cls = figure_cls or require_matplotlib()[0]
    return figure_cls(figsize=(WIDTH_IN, 4.0), dpi=110)


def chart_rc():
    """The charts' matplotlib settings (font sizes, no top and right spines, SVG text as text)."""
    import matplotlib

    return matplotlib.rc_context(_RC)


def set_log_scale(ax, which: str = "x") -> None:
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


def text_width(labels: Iterable[Any], char_in: float = _CHAR_IN) -> float:
    """The width in inches of the longest label, at ``char_in`` per character."""
    return max((len(str(label)) for label in labels), default=0) * char_in


def stack_panels(top: float, heights: list[float],
                 title_in: float = 0.3) -> tuple[list[tuple[float, float]], float]:
    """Panels stacked down the figure from ``top`` (inches), each with ``title_in`` for its title above and 0.5
    below: each panel's (top, height) and the figure's height."""
    y, places = top, []
    for h in heights:
        y += title_in
        places.append((y, h))
        y += h + 0.5
    return places, y + 0.05


def axes_rect(width: float, height: float, left: float, top: float, w: float, h: float) -> list[float]:
    """An axes' rectangle in figure fractions, from inches measured from the figure's top left."""
    return [left / width, 1.0 - (top + h) / height, w / width, h / height]


@dataclass
class Header:
    """A figure's title and its legend (handles with labels), placed once the figure's height is known."""

    title: str
    handles: list = field(default_factory=list)
    ncols: int = 1

    @classmethod
    def create(cls, title: str, handles: list, width: float) -> Header:
        longest = text_width([h.get_label() for h in handles]) + 0.45
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


def has_values(frame: pd.DataFrame, column: str) -> bool:
    """Whether ``frame`` has ``column`` with at least one value (what a chart of that column needs)."""
    return column in frame and bool(frame[column].notna().any())


def figure_to_png(fig) -> bytes:
    """The figure as PNG bytes (Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    with chart_rc():
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
    with chart_rc():
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
