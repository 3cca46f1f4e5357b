"""The paper view: the paper's table, per model and platform the epoch time, the time to the target accuracy, the
final accuracy and macro-F1, and the speedups over the model's slowest platform, one case per model chosen alike
for every platform; its chart (epoch time per model and platform)."""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, Sequence

import pandas as pd

from fer_bench.axes import AXES, OPTIMIZERS, PRECISIONS, order_axes
from fer_bench.results.accuracy import EPOCH, MLPERF_RULE, TIME_TO_ACCURACY, convergence_fields, is_time_to_accuracy
from fer_bench.results.bars import BarRow, Bar, bar_scale, draw_bar_figure, facet_bars
from fer_bench.results.charts import SeriesStyle, has_values, is_missing, times_text
from fer_bench.results.format import float_or_nan, format_factor, format_number, geomean, is_number
from fer_bench.results.records import AXIS_DEFAULTS, IMPLIED_PARAMS
from fer_bench.results.tables import ViewTable, function_name, param_sort_key, percent, records_frame, target_text
from fer_bench.results.views import View, ViewInputs, register_view


#: The value the paper view prefers on an axis with several, where present (else: the one most platforms ran).
#: The paper's setting where a machine ran it: fp32, one device, the default batch of 64 and Adam at its base rate.
PAPER_PREFERRED: dict[str, Any] = {**AXIS_DEFAULTS, "precision": "fp32", "num_gpus": 1, "lr_scaling": "none",
                                   "batch_size": 64}
_PAPER_FIRST_AXES = ("precision", "batch_size", "optimizer", "pipeline")
_MISSING = object()


def _paper_params(r: dict) -> dict:
    """The record's params with the defaults of absent added axes, and a time-to-accuracy case's target and lr
    scaling as if they were params (the paper view chooses among them as among params)."""
    params = {k: v if v is None or isinstance(v, (str, int, float)) else json.dumps(v, sort_keys=True)
              for k, v in r["params"].items()}  # hashable, to count and choose
    if function_name(r) in (TIME_TO_ACCURACY, EPOCH) or is_time_to_accuracy(r):
        params.setdefault("optimizer", AXIS_DEFAULTS["optimizer"])
        params.setdefault("pipeline", AXIS_DEFAULTS["pipeline"])
    if is_time_to_accuracy(r):
        params["target_accuracy"] = r["target_accuracy"]
        params["lr_scaling"] = r["lr_scaling"]
    return params


def _choose_paper_value(axis: str, members: list[dict]) -> tuple[Any, str]:
    """One value of ``axis`` for a model: the preferred one where present (PAPER_PREFERRED; a precision by
    PRECISIONS' order), else the one most platforms ran (ties: the smallest; a target: the highest)."""
    platforms: dict[Any, set[str]] = {}
    for r in members:
        value = r["_paper"].get(axis, _MISSING)
        if value is not _MISSING:
            platforms.setdefault(value, set()).add(r["platform"])
    if axis in PAPER_PREFERRED and PAPER_PREFERRED[axis] in platforms:
        return PAPER_PREFERRED[axis], "preferred"
    if axis == "precision" and any(p in platforms for p in PRECISIONS):
        return next(p for p in PRECISIONS if p in platforms), "no fp32 case"
    if axis == "optimizer" and any(o in platforms for o in OPTIMIZERS):
        return next(o for o in OPTIMIZERS if o in platforms), "no adam case"
    most = max(len(p) for p in platforms.values())
    tied = sorted((v for v in platforms if len(platforms[v]) == most), key=param_sort_key)
    value = tied[-1] if axis == "target_accuracy" else tied[0]  # ties: the highest target, else the smallest
    ties = "" if len(tied) == 1 else f", ties: the {'highest' if axis == 'target_accuracy' else 'smallest'}"
    return value, f"most platforms: {most}{ties}"


def create_paper_view(records: list[dict]) -> ViewTable:
    """The paper's table: per model and platform, the epoch time, the time to the target accuracy, the final
    accuracy and macro-F1, and the speedups over the model's slowest platform. One case per model, chosen the same
    way for every platform (see the notes)."""
    epochs = [r for r in records if function_name(r) == EPOCH and is_number(r["_extra"].get("epoch_time_s"))]
    tta = [r for r in records if is_time_to_accuracy(r)]
    for r in tta:
        r.update(convergence_fields(r["_extra"]))
        r["lr_scaling"] = r["params"].get("lr_scaling") or r["lr_scaling"] or IMPLIED_PARAMS["lr_scaling"]
    mine = [r for r in epochs + tta if "model" in r["params"]]
    if not mine:
        return ViewTable("paper", pd.DataFrame(), pd.DataFrame(),
                         ["no results for the paper's table (test_epoch with epoch_time_s, or "
                          "test_time_to_accuracy)"])
    named: dict[str, set[str]] = {}
    for r in mine:
        named.setdefault(function_name(r), set()).update(r["params"])
    for r in mine:
        # an added axis some run of the benchmark names: the runs that do not name it ran its default
        r["_paper"] = {**{a: d for a, d in AXIS_DEFAULTS.items() if a in named[function_name(r)]}, **_paper_params(r)}

    rows: list[dict] = []
    choice_notes: list[str] = []
    left_out: list[str] = []
    for model in sorted({r["params"]["model"] for r in mine}, key=str):
        members = [r for r in mine if r["params"]["model"] == model]
        axes = [a for a in _PAPER_FIRST_AXES if any(a in r["_paper"] for r in members)]
        axes += [a for a in order_axes({k for r in members for k in r["_paper"]})
                 if a not in axes and a not in ("model", "num_workers")]
        said = []
        for axis in axes:
            if not any(axis in r["_paper"] for r in members):
                continue  # the cases an earlier axis kept do not have this one (another benchmark's axis)

            def shown(v: Any) -> str:
                return target_text(v) if axis == "target_accuracy" else str(v)

            choices = AXES[axis].choices or () if axis in AXES else ()
            present = sorted({r["_paper"][axis] for r in members if axis in r["_paper"]},
                             key=lambda v: (choices.index(v) if v in choices else len(choices), param_sort_key(v)))
            value, why = _choose_paper_value(axis, members)
            members = [r for r in members if r["_paper"].get(axis, value) == value]
            if len(present) > 1:
                said.append(f"{axis} {shown(value)} (of {', '.join(map(shown, present))}: {why})")
            elif axis in _PAPER_FIRST_AXES or axis == "target_accuracy":
                said.append(f"{axis} {shown(value)}")
        dropped = sorted({r["platform"] for r in mine if r["params"]["model"] == model}
                         - {r["platform"] for r in members})
        if dropped:
            left_out.append(f"{model} on {', '.join(dropped)}")
        workers = []
        for platform in sorted({r["platform"] for r in members}):
            ep = [r for r in members if r["platform"] == platform and function_name(r) == EPOCH]
            tt = [r for r in members if r["platform"] == platform and is_time_to_accuracy(r)]
            epoch = min(ep, key=lambda r: (r["_extra"]["epoch_time_s"],
                                           param_sort_key(r["params"].get("num_workers")))) if ep else None
            run = min(tt, key=lambda r: (not r["reached_target"],
                                         float_or_nan(r["time_to_target_s"]) if r["reached_target"] else math.inf,
                                         r["case"])) if tt else None
            if epoch is not None and "num_workers" in epoch["params"] and len(ep) > 1:
                workers.append(f"{platform} w={epoch['params']['num_workers']}")
            epoch_s, source = math.nan, None
            if epoch is not None:
                epoch_s, source = float(epoch["_extra"]["epoch_time_s"]), EPOCH
            elif run is not None and math.isfinite(run["epoch_time_s"]):
                epoch_s, source = run["epoch_time_s"], TIME_TO_ACCURACY
            acc, f1, acc_source = math.nan, math.nan, None
            if run is not None and math.isfinite(run["final_accuracy"]):
                acc, f1, acc_source = run["final_accuracy"], run["final_macro_f1"], TIME_TO_ACCURACY
            elif epoch is not None and is_number(epoch["_extra"].get("accuracy")):
                acc, f1, acc_source = (float(epoch["_extra"]["accuracy"]),
                                       float_or_nan(epoch["_extra"].get("macro_f1")), EPOCH)
            first = epoch or run
            rows.append({
                "model": model, "platform": platform,
                "batch_size": first["params"].get("batch_size"), "precision": first["_paper"].get("precision"),
                "optimizer": first["_paper"].get("optimizer"), "pipeline": first["_paper"].get("pipeline"),
                "num_workers": epoch["params"].get("num_workers") if epoch is not None else None,
                "epoch_time_s": epoch_s, "epoch_time_source": source,
                "target_accuracy": run["target_accuracy"] if run is not None else math.nan,
                "reached_target": run["reached_target"] if run is not None else None,
                "time_to_target_s": run["time_to_target_s"] if run is not None else math.nan,
                "final_accuracy": acc, "final_macro_f1": f1, "accuracy_source": acc_source,
                "epoch_case": epoch["case"] if epoch is not None else None,
                "time_to_accuracy_case": run["case"] if run is not None else None,
            })
        choice_notes.append(f"- {model}: {', '.join(said) or 'one case'}"
                            + (f"; num_workers: each platform's fastest epoch ({', '.join(workers)})"
                               if workers else ""))

    # speedups over each model's slowest platform: by epoch time, and by time to target among those that reached it
    for model in {r["model"] for r in rows}:
        mine_rows = [r for r in rows if r["model"] == model]
        for column, speed in (("epoch_time_s", "epoch_speedup"), ("time_to_target_s", "time_to_target_speedup")):
            finite = [r for r in mine_rows if math.isfinite(r[column])]
            slowest = max(finite, key=lambda r: r[column]) if finite else None
            for r in mine_rows:
                s = slowest[column] / r[column] if slowest is not None and math.isfinite(r[column]) else math.nan
                r[speed] = round(s, 4) if math.isfinite(s) else math.nan
                r[f"{speed}_over"] = slowest["platform"] if slowest is not None else None

    # platforms from the slowest to the fastest by geometric mean epoch time (over the models all of them ran)
    platforms = sorted({r["platform"] for r in rows})
    timed = {p: {r["model"]: r["epoch_time_s"] for r in rows if r["platform"] == p and math.isfinite(r["epoch_time_s"])}
             for p in platforms}
    with_times = [set(t) for t in timed.values() if t]
    shared = set.intersection(*with_times) if len(with_times) > 1 else set()
    means = {p: geomean(t[m] for m in (shared or t)) for p, t in timed.items()}
    order = sorted(platforms, key=lambda p: (not math.isfinite(means[p]), -means[p] if math.isfinite(means[p])
                                             else 0.0, p))
    rows.sort(key=lambda r: (str(r["model"]), order.index(r["platform"])))
    for r in rows:
        r["epoch_time_geomean_s"] = means[r["platform"]]

    table = []
    for r in rows:
        if r["reached_target"] is None:
            to_target = "-"
        else:
            to_target = f"{format_number(r['time_to_target_s'])} s" if r["reached_target"] else "missed"
        table.append({
            "model": r["model"], "platform": r["platform"],
            "epoch time": f"{format_number(r['epoch_time_s'])} s" if math.isfinite(r["epoch_time_s"]) else "-",
            "speedup": _factor_text(r["epoch_speedup"]),
            "time to target": to_target,
            "speedup (to target)": _factor_text(r["time_to_target_speedup"]),
            "accuracy": percent(r["final_accuracy"]),
            "macro-F1": f"{r['final_macro_f1']:.3f}" if math.isfinite(r["final_macro_f1"]) else "-",
        })
    targets = sorted({(r["model"], r["target_accuracy"]) for r in rows if math.isfinite(r["target_accuracy"])})
    notes = ["The paper's table: per model and platform, the epoch time (test_epoch's epoch_time_s: the training "
             "epoch; else test_time_to_accuracy's: an epoch and its evaluation), its speedup over the model's "
             "slowest platform, the time to the target accuracy (test_time_to_accuracy, "
             f"{MLPERF_RULE}; `missed`: more than one run missed) and its speedup over the slowest platform that "
             "reached it, and the final accuracy and macro-F1 (the median over the runs' last evaluations, else "
             "test_epoch's evaluation after its last epoch).",
             f"Platforms from the slowest to the fastest by geometric mean epoch time"
             f"{' over the models all of them ran' if shared else ''}: {', '.join(order)}.",
             "One case per model, chosen alike for every platform: precision fp32, batch size 64 (else the one most "
             "platforms ran; ties: the smallest), optimizer adam, pipeline batched, the other axes at their defaults "
             "(else the value most platforms ran), and of the worker counts each platform's fastest epoch:"]
    notes.extend(choice_notes)
    if targets:
        notes.append("Target accuracy: " + ", ".join(f"{target_text(t)} ({m})" for m, t in targets) + ".")
    if left_out:
        notes.append(f"Left out (no case at the chosen settings): {'; '.join(left_out)}.")
    names = ["model", "batch_size", "precision", "optimizer", "pipeline", "num_workers"]
    return ViewTable("paper", records_frame(rows, names), pd.DataFrame(table), notes, {"platforms": order})


def _factor_text(value: float) -> str:
    return f"{format_factor(value)}x" if math.isfinite(value) else "-"


def plot_paper(fig, frame: pd.DataFrame, params: Sequence[str], styles: Mapping[str, SeriesStyle],
               meta: Mapping[str, Any] | None = None) -> None:
    """The paper's epoch time per model (a row) and platform (a bar); the speedup over the model's slowest platform
    beside each bar."""
    data = frame[frame["epoch_time_s"].notna()]
    order = sorted(styles)
    order += [p for p in sorted(data["platform"].unique()) if p not in order]
    rows: list[BarRow] = []
    values: list[float] = []
    for model in list(dict.fromkeys(data["model"].astype(str))):
        bars = []
        for _, r in data[data["model"].astype(str) == model].iterrows():
            t = float(r["epoch_time_s"])
            values.append(t)
            s = r.get("epoch_speedup")
            text = ("slowest" if not is_missing(s) and float(s) == 1.0 else times_text(float(s))
                    if not is_missing(s) else "")
            bars.append(Bar(str(r["platform"]), t, text=text))
        rows.append(BarRow(model, sorted(bars, key=lambda b: order.index(b.platform))))
    panels = facet_bars("epoch time per model", rows, order, "all")
    scale = bar_scale(values, "seconds per epoch (s, left is faster)")
    draw_bar_figure(fig, panels, {"all": scale}, styles,
                    title="Epoch time per model and platform (the paper's table); speedup over the model's "
                          "slowest platform beside each bar")


def _rows(inputs: ViewInputs) -> ViewTable:
    return create_paper_view(inputs.records)


def _chartable(frame: pd.DataFrame, meta: Mapping[str, Any]) -> bool:
    return has_values(frame, "epoch_time_s")


register_view(View("paper", _rows, order=70, title="The paper's table", counts="separate", plot=plot_paper,
                   chartable=_chartable,
                   help="the paper's table (epoch time, time to target, accuracy, macro-F1, speedups "
                        "over the slowest platform)"))
