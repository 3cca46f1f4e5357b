"""What every compare view builds its rows with: the ViewTable it returns, params in a stable order, tidy frames,
series along an axis, pivoted wide tables and speedups over a reference value. Pandas; never torch."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import pandas as pd

from fer_bench.axes import order_axes
from fer_bench.results.format import describe_speedup, is_number
from fer_bench.results.records import IMPLIED_PARAMS


@dataclass
class ViewTable:
    """One view: tidy records (csv, json, plots), a wide table (markdown) and the lines shown above it."""

    view: str
    records: pd.DataFrame
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.records.empty


def param_sort_key(value: Any) -> tuple:
    """A param value's place in a sort: numbers by value, then words, then None."""
    if value is None:
        return (2, 0.0, "")
    if is_number(value):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def sort_records(records: list[dict], names: Sequence[str], first: Sequence[str] = ()) -> list[dict]:
    """Records by ``first`` fields, group, benchmark, then the params ``names`` in their order."""
    def key(r: dict) -> tuple:
        return (tuple(str(r[f]) for f in first), r["group"], r["benchmark"],
                tuple(param_sort_key(r["params"].get(n)) for n in names))

    return sorted(records, key=key)


def param_names(records: Iterable[dict], drop: Sequence[str] = ()) -> list[str]:
    """The params the records carry, in the axis registry's order, less ``drop``."""
    return [n for n in order_axes({k for r in records for k in r["params"]}) if n not in drop]


_INT_COLUMNS = ("rounds", "global_batch_size", "world_size", "n_cases", "runs_missed", "repeats", "max_epochs",
                "base_batch_size")
_LEAD_COLUMNS = ("platform", "kind", "value", "unit", "speedup", "speedup_text", "baseline")


def records_frame(rows: list[dict], names: Sequence[str]) -> pd.DataFrame:
    """Tidy rows as a DataFrame: params keep their own types (no 64 -> 64.0), counts are nullable ints."""
    if not rows:
        return pd.DataFrame()
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lead = [*(c for c in ("group", "benchmark") if c in columns), *names]
    columns = lead + [c for c in _LEAD_COLUMNS if c in columns] + [
        c for c in columns if c not in lead and c not in _LEAD_COLUMNS]
    frame = pd.DataFrame({c: pd.Series([r.get(c) for r in rows], dtype=object) for c in columns})
    for c in columns:
        if c in names or c in ("group", "benchmark"):
            continue
        if c in _INT_COLUMNS:
            frame[c] = pd.array([None if v is None else int(v) for v in frame[c]], dtype="Int64")
        elif all(v is None or is_number(v) for v in frame[c]):
            frame[c] = frame[c].astype(float)
    frame.attrs["params"] = list(names)  # which columns are params, for the plots' series labels
    return frame


def public_row(record: dict, names: Sequence[str]) -> dict:
    """A tidy row: case columns, then the record's own columns (no private keys, params spread out)."""
    row = {"group": record["group"], "benchmark": record["benchmark"]}
    row.update({n: record["params"].get(n) for n in names})
    row.update({k: v for k, v in record.items() if k not in ("params", "group", "benchmark") and not k.startswith("_")})
    return row


def group_series(records: list[dict], axis: str, extra_drop: Sequence[str] = ()) -> dict[tuple, list[dict]]:
    """Records with ``axis`` grouped by everything else (platform, benchmark, other params)."""
    out: dict[tuple, list[dict]] = {}
    for r in records:
        if axis not in r["params"]:
            continue
        rest = tuple(sorted((k, repr(v)) for k, v in r["params"].items() if k != axis and k not in extra_drop))
        out.setdefault((r["platform"], r["group"], r["benchmark"], rest), []).append(r)
    return out


def pivot_table(records: list[dict], axis: str, cell, column_order: Sequence[Any], label) -> pd.DataFrame:
    """A wide table of ``records``: a row per series along ``axis``, a column per value (``label(value)``)
    holding ``cell(record)``."""
    names = param_names(records, drop=(axis,))
    rows = []
    for members in group_series(records, axis).values():
        first = members[0]
        row = {"platform": first["platform"], "group": first["group"], "benchmark": first["benchmark"]}
        row.update({n: first["params"].get(n, "") for n in names})
        by_value = {m["params"][axis]: m for m in members}
        for v in column_order:
            row[label(v)] = cell(by_value[v]) if v in by_value else "-"
        rows.append((first, row))
    rows.sort(key=lambda fr: (fr[0]["platform"], fr[0]["group"], fr[0]["benchmark"],
                              tuple(param_sort_key(fr[0]["params"].get(n)) for n in names)))
    return pd.DataFrame([r for _, r in rows])


def axis_values(records: list[dict], axis: str, order: Sequence[Any] = ()) -> list[Any]:
    """The values of ``axis`` present in the records: those of ``order`` first, in its order, then the rest."""
    values = {r["params"][axis] for r in records if axis in r["params"]}
    known = [v for v in order if v in values]
    return known + sorted(values - set(known), key=param_sort_key)


def fill_implied(records: list[dict], *axes: str, benchmarks: Sequence[str] | None = None) -> None:
    """In place: give an implied axis (IMPLIED_PARAMS) its default where a record lacks it, for the records of
    ``benchmarks``, else of each benchmark where some record names the axis (the others never had it)."""
    for axis in axes:
        having = set(benchmarks) if benchmarks is not None else {
            function_name(r) for r in records if axis in r["params"]}
        for r in records:
            if function_name(r) in having:
                r["params"].setdefault(axis, IMPLIED_PARAMS[axis])


def function_name(record: dict) -> str:
    """The benchmark function's name (without the module that two modules of one name put before it)."""
    return record["benchmark"].rsplit("::", 1)[-1]


def set_speedups(series: Iterable[list[dict]], axis: str, reference: Any) -> int:
    """In place: each member's ``speedup`` (median time) over its series' member at ``axis`` = ``reference``, and
    ``speedup_text``; returns how many series lack the reference."""
    lacking = 0
    for members in series:
        ref = next((m for m in members if m["params"][axis] == reference), None)
        lacking += ref is None
        for m in members:
            s = ref["median_ms"] / m["median_ms"] if ref is not None else math.nan
            m["speedup"] = round(s, 4) if math.isfinite(s) else math.nan
            m["speedup_text"] = (("reference" if m is ref else describe_speedup(s)) if ref is not None
                                 else f"no {reference}")
    return lacking


_MAX_LISTED = 10


def listed(items: Sequence[str]) -> str:
    """Items joined by '; ', the first _MAX_LISTED of them and how many more."""
    shown = "; ".join(items[:_MAX_LISTED])
    return shown + (f"; ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def plural(n: int, one: str, many: str) -> str:
    """``n`` and the noun in the number it needs ('1 case', '3 cases')."""
    return f"{n} {one if n == 1 else many}"


def percent(value: float) -> str:
    """A share as a percentage with one decimal ('61.3%'); '-' for NaN."""
    return f"{value:.1%}" if math.isfinite(value) else "-"


def target_text(value: float) -> str:
    """A target accuracy as a whole percentage where it is one ('65%'), else with one decimal."""
    return f"{value:.0%}" if math.isfinite(value) and round(value * 100, 6) == round(value * 100) else percent(value)
