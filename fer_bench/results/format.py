"""Wording and tables shared by `fer-bench compare`, `fer-bench gate` and the CLI: one implementation each.
Torch-free and pandas-free."""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence


def is_number(value: Any) -> bool:
    """A finite int or float (a bool is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def float_or_nan(value: Any) -> float:
    """A number as a float; NaN for anything else (None, a string, a bool, an infinity)."""
    return float(value) if is_number(value) else math.nan


def format_number(value: float | None) -> str:
    """Three significant figures without scientific notation for everyday magnitudes."""
    if value is None or not math.isfinite(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def format_factor(factor: float) -> str:
    """Two decimals below 2x (1.07x), one above (5.0x, 12.4x)."""
    return f"{factor:.2f}" if factor < 1.995 else f"{factor:.1f}"


def describe_speedup(speedup: float | None) -> str:
    """'12.4x faster', '1.30x slower' or 'same speed' for a speedup over a reference (above 1 is faster)."""
    if speedup is None or not math.isfinite(speedup) or speedup <= 0:
        return "-"
    if format_factor(speedup) == "1.00":
        return "same speed"
    if speedup >= 1:
        return f"{format_factor(speedup)}x faster"
    return f"{format_factor(1 / speedup)}x slower"


def describe_ratio(ratio: float, metric: str) -> str:
    """A current/baseline ratio in the metric's own terms: time and peak memory are better lower, samples_per_s and
    samples_per_joule higher ('1.18x slower', '1.07x faster', '1.20x more memory', '1.10x fewer images per
    joule')."""
    if metric == "peak_memory_bytes":
        if format_factor(max(ratio, 1 / ratio)) == "1.00":
            return "same memory"
        return f"{format_factor(ratio)}x more memory" if ratio >= 1 else f"{format_factor(1 / ratio)}x less memory"
    if metric == "samples_per_joule":
        if format_factor(max(ratio, 1 / ratio)) == "1.00":
            return "same energy per image"
        return (f"{format_factor(ratio)}x more images per joule" if ratio >= 1
                else f"{format_factor(1 / ratio)}x fewer images per joule")
    return describe_speedup(1.0 / ratio if metric == "time" else ratio)


def geomean(values: Iterable[float | None]) -> float:
    """Geometric mean of the finite positive values; NaN when there is none."""
    logs = [math.log(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    return math.exp(sum(logs) / len(logs)) if logs else math.nan


def format_markdown_table(headers: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table; pipes in cells are escaped, None and NaN cells are empty.

    By hand rather than pandas' to_markdown: that needs tabulate (no dependency of ours) and pads every cell to its
    column's width, so each stored table's text would change for no reader's gain."""
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines.extend("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)
    return "\n".join(lines)


def format_text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: Sequence[int] = ()) -> str:
    """Plain-text columns, two spaces apart; columns whose index is in ``right`` are right-aligned (ten lines: not worth
    tabulate as a dependency)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])
