"""What the convergence and paper views read of a time-to-accuracy case (test_time_to_accuracy, MLPerf's scoring):
the time and epochs to the target, the runs that missed it, the curves, the final and best accuracy."""

from __future__ import annotations

import math
from typing import Any

from fer_bench.results.format import float_or_nan, is_number
from fer_bench.results.tables import function_name


TIME_TO_ACCURACY = "test_time_to_accuracy"
EPOCH = "test_epoch"
MLPERF_RULE = ("MLPerf's rule: each of the seeded runs of a case trains until it reaches the target accuracy or its "
               "epoch cap; the case reaches the target when at most one run missed (none, of fewer than 3 runs), and "
               "its time is the mean of the runs left after dropping the fastest and the slowest")


def is_time_to_accuracy(record: dict) -> bool:
    """Whether a record is a time-to-accuracy case (by its function or its group)."""
    return function_name(record) == TIME_TO_ACCURACY or record["group"] == "time_to_accuracy"


def _curve_points(curve: Any) -> list[dict]:
    """A stored curve's usable points (epoch and accuracy numbers; time_s NaN where absent), by epoch."""
    if not isinstance(curve, list):
        return []
    points = [{"epoch": float(p["epoch"]), "time_s": float_or_nan(p.get("time_s")), "accuracy": float(p["accuracy"]),
               "macro_f1": float_or_nan(p.get("macro_f1")), "train_loss": float_or_nan(p.get("train_loss"))}
              for p in curve if isinstance(p, dict) and is_number(p.get("epoch")) and is_number(p.get("accuracy"))]
    return sorted(points, key=lambda p: p["epoch"])


def _int_or_none(value: Any) -> int | None:
    return int(value) if is_number(value) else None


def convergence_fields(extra: dict) -> dict:
    """What the convergence and paper views read of a test_time_to_accuracy entry. A missed case has no time."""
    time_s = float_or_nan(extra.get("time_to_target_s"))
    reached = extra.get("reached_target")
    reached = reached if isinstance(reached, bool) else math.isfinite(time_s)
    epochs = float_or_nan(extra.get("epochs_to_target"))
    if not reached:
        time_s = epochs = math.nan
    runs = [r for r in extra.get("runs") or [] if isinstance(r, dict)] if isinstance(extra.get("runs"), list) else []
    curve = _curve_points(extra.get("curve"))
    run_curves = [_curve_points(r.get("curve")) for r in runs]
    accuracies = [p["accuracy"] for c in [curve, *run_curves] for p in c]
    final = float_or_nan(extra.get("final_accuracy"))
    spread = extra.get("time_to_target_spread") if isinstance(extra.get("time_to_target_spread"), dict) else {}
    repeats = _int_or_none(extra.get("repeats")) or (len(runs) or None)
    missed = _int_or_none(extra.get("runs_missed"))
    if missed is None and runs:
        missed = sum(r.get("reached_target") is False for r in runs)
    cap = _int_or_none(extra.get("max_epochs"))
    epochs_run = [p["epoch"] for c in [curve, *run_curves] for p in c]
    lr_scaling = extra.get("lr_scaling")
    target = float_or_nan(extra.get("target_accuracy"))
    return {
        "target_accuracy": target,
        "reached_target": bool(reached),
        "time_to_target_s": time_s,
        "epochs_to_target": epochs,
        "runs_missed": missed,
        "repeats": repeats,
        "max_epochs": cap,
        "final_accuracy": final,
        "final_macro_f1": float_or_nan(extra.get("final_macro_f1")),
        # the run's own figure, else the highest point of the stored curves
        "best_accuracy": (float(extra["best_accuracy"]) if is_number(extra.get("best_accuracy"))
                          else max(accuracies) if accuracies else final),
        "epoch_time_s": float_or_nan(extra.get("epoch_time_s")),
        "spread_min_s": float_or_nan(spread.get("min_s")),
        "spread_median_s": float_or_nan(spread.get("median_s")),
        "spread_max_s": float_or_nan(spread.get("max_s")),
        "spread_cv": float_or_nan(spread.get("cv")),
        "lr": float_or_nan(extra.get("lr")),
        "base_lr": float_or_nan(extra.get("base_lr")),
        "lr_scaling": lr_scaling if isinstance(lr_scaling, str) else None,
        "base_batch_size": _int_or_none(extra.get("base_batch_size")),
        "_curve": curve,
        "_epochs_run": max(epochs_run) if epochs_run else None,
    }
