"""The ops view: where a profiled step's self time goes, the share of each op category (--fer-profile-ops) and the top
op; its chart (a stacked bar per model and platform)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from fer_bench.op_categories import OP_CATEGORIES
from fer_bench.results.charts import (
    MAX_BARS,
    WIDTH_IN,
    Header,
    SeriesStyle,
    axes_rect,
    stack_panels,
    text_width,
    tick_formatter,
)
from fer_bench.results.format import is_number
from fer_bench.results.tables import (
    ViewTable,
    function_name,
    param_names,
    param_sort_key,
    percent,
    records_frame,
    sort_records,
)
from fer_bench.results.views import View, ViewInputs, register_view


#: The op categories' colours (ops view): pastel, so they are never taken for platforms.
_CATEGORY_COLOURS = ("#8dd3c7", "#fdb462", "#bebada", "#fb8072", "#80b1d3", "#b3de69", "#fccde5", "#ffffb3",
                     "#d9d9d9", "#bc80bd", "#ccebc5", "#ffed6f")
#: The op categories of ``extra_info["op_category_shares"]`` (--fer-profile-ops), in the order shown.
_OPS_PREFERRED_BENCHMARKS = ("test_train_step", "test_forward")


def _op_shares(extra: dict) -> dict[str, float] | None:
    """The recorded shares by category (unknown categories added to other), or None where there are none."""
    shares = extra.get("op_category_shares")
    if not isinstance(shares, dict) or not shares:
        return None
    values = {str(k): float(v) for k, v in shares.items() if is_number(v)}
    if not values:
        return None
    out = {c: values.get(c, 0.0) for c in OP_CATEGORIES}
    out["other"] += sum(v for k, v in values.items() if k not in OP_CATEGORIES)
    return out


def _top_op(extra: dict) -> dict | None:
    ops = extra.get("top_ops")
    if not isinstance(ops, list):
        return None
    found = [o for o in ops if isinstance(o, dict) and isinstance(o.get("op"), str) and is_number(o.get("share"))]
    return max(found, key=lambda o: o["share"]) if found else None


def create_ops_view(records: list[dict]) -> ViewTable:
    """Where a profiled step spends its time: the share of each op category (``--fer-profile-ops``)."""
    mine = [r for r in records if _op_shares(r["_extra"]) is not None]
    if not mine:
        return ViewTable("ops", pd.DataFrame(), pd.DataFrame(),
                         ["no op profiles (no result carries extra_info op_category_shares: run with "
                          "--fer-profile-ops)"])
    names = param_names(mine)
    unknown = sorted({str(k) for r in mine for k in r["_extra"]["op_category_shares"] if k not in OP_CATEGORIES})
    for r in mine:
        r["_shares"] = _op_shares(r["_extra"])
        r["_top"] = _top_op(r["_extra"])

    # one case per (model, platform) for the notes and the plot: a train step first, then fp32, then the params
    def preference(r: dict) -> tuple:
        fn = function_name(r)
        return (_OPS_PREFERRED_BENCHMARKS.index(fn) if fn in _OPS_PREFERRED_BENCHMARKS else 2, fn,
                r["params"].get("precision", "fp32") != "fp32",
                tuple(param_sort_key(r["params"].get(n)) for n in names))

    chosen: dict[tuple, dict] = {}
    for r in sorted(mine, key=preference):
        chosen.setdefault((str(r["params"].get("model", r["benchmark"])), r["platform"]), r)
    representatives = {id(r) for r in chosen.values()}

    out, rows = [], []
    for r in sort_records(mine, names, first=("platform",)):
        top = r["_top"]
        top_text = f"{top['op']} {percent(float(top['share']))}" if top else "-"
        row = {"platform": r["platform"], "benchmark": r["benchmark"], **{n: r["params"].get(n, "") for n in names}}
        row.update({c: percent(r["_shares"][c]) for c in OP_CATEGORIES})
        row["top op"] = top_text
        rows.append(row)
        tidy = {"group": r["group"], "benchmark": r["benchmark"], **{n: r["params"].get(n) for n in names},
                "platform": r["platform"], "case": r["case"], **r["_shares"],
                "top_op": top["op"] if top else None,
                "top_op_category": (top.get("category") if top else None),
                "top_op_share": float(top["share"]) if top else math.nan,
                "representative": id(r) in representatives, "run": r["run"], "datetime": r["datetime"]}
        out.append(tidy)
    notes = ["Shares of the self time of a profiled step (--fer-profile-ops), outside the timed rounds, by op "
             "category; `top op`: the op with the largest share."]
    for (model, platform), r in sorted(chosen.items()):
        category = max(OP_CATEGORIES, key=lambda c: r["_shares"][c])
        case = [function_name(r)]
        if "batch_size" in r["params"]:
            case.append(f"bs {r['params']['batch_size']}")
        if "precision" in r["params"]:
            case.append(str(r["params"]["precision"]))
        case = ", ".join(case)
        notes.append(f"- {model} on {platform}: {r['_shares'][category]:.0%} of a step in {category} ({case})")
    if unknown:
        notes.append(f"Categories outside the nine above counted as other: {', '.join(unknown)}.")
    return ViewTable("ops", records_frame(out, names), pd.DataFrame(rows), notes, {"categories": OP_CATEGORIES})


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
    header = Header.create("Where a profiled step's time goes, by op category (one case per model and platform)",
                            [Patch(color=colours[c], label=c) for c in categories], WIDTH_IN)
    left = min(4.2, max(0.9, text_width(label for _, _, labels in labelled for label in labels) + 0.25))
    places, height = stack_panels(header.height, [0.24 * len(part) + 0.1 for _, part, _ in labelled])
    fig.set_size_inches(WIDTH_IN, height)
    header.draw(fig, height)
    for (group, part, labels), (top, h) in zip(labelled, places):
        ax = fig.add_axes(axes_rect(WIDTH_IN, height, left, top, WIDTH_IN - left - 0.3, h))
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
        ax.xaxis.set_major_formatter(tick_formatter("percent"))
        ax.set_xlabel("share of the profiled step's self time (%)")
        ax.set_title(group, loc="left")
        ax.grid(True, axis="x", alpha=0.3)
        ax.tick_params(axis="y", length=0)


def _rows(inputs: ViewInputs) -> ViewTable:
    return create_ops_view(inputs.records)


register_view(View("ops", _rows, order=60, title="Where a step's time goes (ops)", plot=plot_ops,
                   help="op-category shares of a profiled step (--fer-profile-ops)"))
