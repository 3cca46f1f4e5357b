"""The chart of the gate's verdicts in `fer-bench report`: per case the ratio (current over baseline) and its
confidence interval, coloured by status, regressions first, with the no-change and threshold lines."""

from __future__ import annotations

import math
from typing import Any

from fer_bench.results.charts import (
    WIDTH_IN,
    Header,
    axes_rect,
    chart_rc,
    compact_case,
    finite_values,
    new_figure,
    set_log_scale,
    stack_panels,
    text_width,
    tick_formatter,
    use_log_scale,
)


#: The gate's statuses, worst first, and their colours.
GATE_STATUS_ORDER = ("regression", "not comparable", "no baseline", "inconclusive", "improvement", "unchanged")
GATE_COLOURS = {"regression": "#d62728", "not comparable": "#9467bd", "no baseline": "#9467bd",
                "inconclusive": "#ff7f0e", "improvement": "#2ca02c", "unchanged": "#7f7f7f"}


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
    finite = [v for v in finite_values(values) if v > 0]
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
    header = Header.create(title, handles, WIDTH_IN)
    chunks = [rows[i:i + 40] for i in range(0, len(rows), 40)]
    labels = [[compact_case(r.case, 70) for r in chunk] for chunk in chunks]
    left = min(4.2, max(0.9, text_width(label for chunk in labels for label in chunk) + 0.25))
    places, height = stack_panels(header.height, [0.19 * len(chunk) + 0.15 for chunk in chunks],
                                  title_in=0.3 if len(chunks) > 1 else 0.08)
    fig.set_size_inches(WIDTH_IN, height)
    header.draw(fig, height)
    for k, (chunk, (top, h)) in enumerate(zip(chunks, places)):
        ax = fig.add_axes(axes_rect(WIDTH_IN, height, left, top, WIDTH_IN - left - 0.3, h))
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
            set_log_scale(ax, "x")
        ax.set_xlim(lo, hi)
        ax.xaxis.set_major_formatter(tick_formatter("times"))
        worse = "left" if higher_better else "right"
        ax.set_xlabel(f"current / baseline ({metric}; x, {worse} is worse{', log scale' if log else ''})")
        ax.grid(True, axis="x", alpha=0.3)
        ax.tick_params(axis="y", length=0)
        if len(chunks) > 1:
            ax.set_title(f"cases {k * 40 + 1} to {k * 40 + len(chunk)}", loc="left")


def draw_gate_figure(report: Any, figure_cls: Any = None):
    """The gate's interval plot (:func:`draw_gate`) as a Figure; None when no case has a ratio."""
    with chart_rc():
        fig = new_figure(figure_cls)
        draw_gate(fig, report)
    return fig if fig.axes else None
