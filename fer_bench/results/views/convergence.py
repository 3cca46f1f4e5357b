"""The convergence view: the time to a target accuracy (test_time_to_accuracy, MLPerf's scoring), a row per model,
target and params and a column per platform, the fastest optimizer and batch size marked; its chart (accuracy
against time and epochs)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from fer_bench.results.accuracy import MLPERF_RULE, convergence_fields, is_time_to_accuracy
from fer_bench.results.charts import SeriesStyle
from fer_bench.results.format import format_number
from fer_bench.results.lines import LineColumn, LineSeries, draw_line_facets
from fer_bench.results.records import IMPLIED_PARAMS
from fer_bench.results.tables import (
    ViewTable,
    fill_implied,
    function_name,
    param_names,
    param_sort_key,
    percent,
    plural,
    records_frame,
    sort_records,
    target_text,
)
from fer_bench.results.views import View, ViewInputs, register_view


def _convergence_cell(f: dict) -> str:
    if f["reached_target"]:
        text = f"{format_number(f['time_to_target_s'])} s"
        if math.isfinite(f["epochs_to_target"]):
            text += f", {f['epochs_to_target']:.1f} ep"
        if f["runs_missed"]:
            text += f" ({f['runs_missed']} of {f['repeats'] or '?'} runs missed)"
        return f"**{text} best**" if f.get("best") else text
    cap = f["max_epochs"] or (int(f["_epochs_run"]) if f["_epochs_run"] else None)
    best = f"best {percent(f['best_accuracy'])}" if math.isfinite(f["best_accuracy"]) else "no accuracy recorded"
    return f"missed ({f'cap {cap} ep' if cap else 'no cap recorded'}, {best})"


#: Columns of the convergence records, after the case's params and the platform.
_CONVERGENCE_COLUMNS = ("target_accuracy", "lr_scaling", "time_to_target_s", "epochs_to_target", "reached_target",
                        "runs_missed", "repeats", "max_epochs", "final_accuracy", "final_macro_f1", "best_accuracy",
                        "epoch_time_s", "spread_min_s", "spread_median_s", "spread_max_s", "spread_cv", "lr",
                        "base_lr", "base_batch_size", "best")


def create_convergence_view(records: list[dict]) -> ViewTable:
    """Time to a target accuracy (test_time_to_accuracy, MLPerf's scoring): a row per model, target and the other
    device-independent params, a column per platform; the fastest optimizer and batch size of each platform marked.
    A missed case shows no time, but its epoch cap and the best accuracy any run reached."""
    mine = [r for r in records if is_time_to_accuracy(r)]
    if not mine:
        return ViewTable("convergence", pd.DataFrame(), pd.DataFrame(),
                         ["no time-to-accuracy results (test_time_to_accuracy, group time_to_accuracy)"])
    fill_implied(mine, "optimizer", benchmarks=[function_name(r) for r in mine])
    fill_implied(mine, "pipeline")
    for r in mine:
        r.update(convergence_fields(r["_extra"]))
        # the lr scaling is a param (the axis), else extra_info's word (runs before the axis), else the base rate
        r["lr_scaling"] = r["params"].get("lr_scaling") or r["lr_scaling"] or IMPLIED_PARAMS["lr_scaling"]
    names = param_names(mine, drop=("target_accuracy", "lr_scaling"))
    platforms = sorted({r["platform"] for r in mine})

    def row_key(r: dict) -> tuple:
        return (r["group"], r["benchmark"], tuple(sorted((k, repr(v)) for k, v in r["params"].items())),
                r["lr_scaling"] or "", r["target_accuracy"])

    # the fastest optimizer and batch size: per platform and everything else, over the cases that reached the target
    contests: dict[tuple, list[dict]] = {}
    for r in mine:
        rest = tuple(sorted((k, repr(v)) for k, v in r["params"].items()
                            if k not in ("optimizer", "batch_size", "target_accuracy")))
        contests.setdefault((r["platform"], r["benchmark"], rest, r["lr_scaling"] or "", r["target_accuracy"]),
                            []).append(r)
    marked = 0
    for members in contests.values():
        reached = [m for m in members if m["reached_target"]]
        best = min(reached, key=lambda m: m["time_to_target_s"]) if len(members) > 1 and reached else None
        for m in members:
            m["best"] = m is best
        marked += best is not None

    rows: dict[tuple, dict] = {}
    for r in sorted(mine, key=lambda r: (r["group"], r["benchmark"],
                                         tuple(param_sort_key(r["params"].get(n)) for n in names),
                                         r["lr_scaling"] or "", r["target_accuracy"])):
        row = rows.get(row_key(r))
        if row is None:
            row = {"benchmark": r["benchmark"]} if len({m["benchmark"] for m in mine}) > 1 else {}
            row.update({n: r["params"].get(n, "") for n in names})
            row.update({"lr scaling": r["lr_scaling"] or "-", "target": target_text(r["target_accuracy"])})
            row.update({p: "-" for p in platforms})
            rows[row_key(r)] = row
        row[r["platform"]] = _convergence_cell(r)

    out = []
    curves = []
    varying = [n for n in names if n != "model" and len({repr(r["params"].get(n)) for r in mine}) > 1]
    several_models = len({r["params"].get("model") for r in mine}) > 1
    for r in sort_records(mine, names, first=("platform",)):
        row = {"group": r["group"], "benchmark": r["benchmark"], **{n: r["params"].get(n) for n in names},
               "platform": r["platform"], "case": r["case"]}
        row.update({c: r[c] for c in _CONVERGENCE_COLUMNS})
        row.update({"run": r["run"], "datetime": r["datetime"]})
        out.append(row)
        if r["_curve"]:
            bits = [r["platform"], *([str(r["params"].get("model"))] if several_models else [])]
            bits += [f"{n}={r['params'].get(n)}" for n in varying]
            if len({m["lr_scaling"] for m in mine}) > 1:
                bits.append(f"lr {r['lr_scaling']}")
            if len({m["target_accuracy"] for m in mine}) > 1:
                bits.append(f"target {target_text(r['target_accuracy'])}")
            curves.append({"label": " ".join(bits), "platform": r["platform"], "target": r["target_accuracy"],
                           "reached": r["reached_target"], "points": r["_curve"]})

    targets = sorted({(str(r["params"].get("model")), r["target_accuracy"]) for r in mine})
    repeats = sorted({r["repeats"] for r in mine if r["repeats"]})
    notes = [f"Time to the target accuracy (test_time_to_accuracy): {MLPERF_RULE}. A cell shows that time and the "
             f"epochs to the target; a case that missed shows no time: `missed (cap N ep, best X%)`, its epoch cap "
             f"and the highest accuracy any run's curve reached.",
             "Target accuracy: " + ", ".join(f"{target_text(t)} ({m})" for m, t in targets) + "; repeats: "
             + (", ".join(map(str, repeats)) if repeats else "not recorded") + " seeded runs per case."]
    if marked:
        notes.append("**best** marks the shortest time to target of each platform, model and target across "
                     "optimizers and batch sizes (the other params and the lr scaling alike).")
    missed = sum(not r["reached_target"] for r in mine)
    if missed:
        notes.append(f"{plural(missed, 'case', 'cases')} missed the target (more than one run missed): no time.")
    return ViewTable("convergence", records_frame(out, names), pd.DataFrame(list(rows.values())), notes,
                     {"curves": curves, "platforms": platforms})


def plot_convergence(fig, frame: pd.DataFrame, params: Sequence[str], styles: Mapping[str, SeriesStyle],
                     meta: Mapping[str, Any] | None = None) -> None:
    """Accuracy against time and against epochs: a line per curve (the representative run of each platform and
    case), packed at most MAX_SERIES to a panel; a dashed line at each target accuracy."""
    curves = [c for c in (meta or {}).get("curves", []) if c["points"]]
    series = []
    for c in curves:
        s = LineSeries(str(c["platform"]), str(c["label"]).removeprefix(str(c["platform"])).strip()
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
    draw_line_facets(fig, [("accuracy", series)], [
        LineColumn("accuracy_time", "accuracy (%)", "against time", kind="accuracy"),
        LineColumn("accuracy_epoch", "accuracy (%)", "against epochs", kind="accuracy")],
        styles, xlabel="epochs (count)", x_mode="integer",
        title="Accuracy against time and epochs (each case's representative run); dashed: the target",
        hlines={"accuracy_time": lines, "accuracy_epoch": lines},
        column_x={"accuracy_time": ("seconds since the run started (s)", "continuous")})


def _rows(inputs: ViewInputs) -> ViewTable:
    return create_convergence_view(inputs.records)


def _chartable(frame: pd.DataFrame, meta: Mapping[str, Any]) -> bool:
    return any(c["points"] for c in meta.get("curves", []))


register_view(View("convergence", _rows, order=50, title="Time to accuracy (convergence)", counts="separate",
                   plot=plot_convergence, chartable=_chartable,
                   help="time to the target accuracy (test_time_to_accuracy, MLPerf's scoring)"))
