"""PNG charts of `fer-bench compare` views (the `plots` extra: matplotlib, Agg backend, no display needed).

One PNG per view that has data: platform speedups, throughput against batch size, throughput and data-wait share
against workers, precision speedups over fp32, scaling efficiency against world size (GPUs or ddp
processes), accuracy against time and epochs (convergence), op-category shares of a profiled step (ops), epoch
times per model and platform (paper). Written atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from fer_bench._atomic import write_bytes_atomic
from fer_bench.errors import FerBenchError

_MAX_SERIES = 20
_MAX_BARS = 40


def require_matplotlib() -> tuple[Any, Any]:
    """The Figure class and the Agg canvas; pyplot is never touched, so no GUI backend is ever chosen.

    Raises:
        FerBenchError: matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise FerBenchError("--plots needs matplotlib: pip install 'fer_bench[plots]'") from None
    return Figure, FigureCanvasAgg


def _series_labels(frame: pd.DataFrame, axis: str, params: Sequence[str]) -> pd.Series:
    """A short label per row: platform, benchmark and the params that vary (the plotted axis left out)."""
    params = [c for c in params if c in frame.columns and c != axis]
    varying = [c for c in ["benchmark", *params] if frame[c].astype(str).nunique() > 1]

    def label(row: pd.Series) -> str:
        bits = [str(row["platform"])]
        for c in varying:
            value = row[c]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            bits.append(str(value) if c == "benchmark" else f"{c}={value}")
        return " ".join(bits)

    return frame.apply(label, axis=1)


def _lines(ax, frame: pd.DataFrame, params: Sequence[str], axis: str, column: str, marker: str = "o") -> None:
    frame = frame[frame[column].notna()].copy()
    if frame.empty:
        return
    frame["_label"] = _series_labels(frame, axis, params)
    for i, (label, part) in enumerate(frame.groupby("_label", sort=True)):
        if i >= _MAX_SERIES:
            break
        part = part.sort_values(axis, key=lambda s: s.astype(float))
        ax.plot(part[axis].astype(float), part[column].astype(float), marker=marker, label=label)
    ax.grid(True, alpha=0.3)


def _legend(ax) -> None:
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        # outside the axes, so no curve hides behind it; savefig's tight bounding box makes room
        ax.legend(fontsize=7 if len(handles) > 6 else 8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _times_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _: f"{value:g}x")


def _plot_platforms(fig, frame: pd.DataFrame, params: Sequence[str]) -> None:
    baseline = frame["baseline"].dropna().iloc[0]
    # the baseline's own bars are all 1x (the vertical line) and a case only the baseline ran compares nothing
    data = frame[(frame["platform"] != baseline) & frame["speedup"].notna()].copy()
    data["label"] = data["case"].fillna("").str.replace("test_", "", regex=False)
    data.loc[data["kind"] == "geomean", "label"] = "geometric mean"
    cases = data[data["kind"] == "case"]
    keep = list(dict.fromkeys(cases["label"]))[:_MAX_BARS] + ["geometric mean"]
    data = data[data["label"].isin(keep)]
    table = data.pivot_table(index="label", columns="platform", values="speedup", sort=False)
    ax = fig.add_subplot(1, 1, 1)
    n_rows, n_cols = table.shape
    height = 0.8 / max(1, n_cols)
    for j, platform in enumerate(table.columns):
        ys = [i + j * height for i in range(n_rows)]
        ax.barh(ys, table[platform].to_numpy(dtype=float), height=height, label=platform)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(n_rows)])
    ax.set_yticklabels(table.index, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(_times_formatter())
    ax.xaxis.set_minor_formatter(_times_formatter())
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel(f"speedup over {baseline} (log scale, right is faster)")
    ax.set_title("Speedup per case over the baseline platform")
    ax.grid(True, axis="x", alpha=0.3)
    _legend(ax)
    fig.set_size_inches(10, max(3.5, 0.35 * n_rows * max(1, n_cols) ** 0.5 + 1.5))


def _plot_batch(fig, frame: pd.DataFrame, params: Sequence[str]) -> None:
    ax = fig.add_subplot(1, 1, 1)
    _lines(ax, frame, params, "batch_size", "samples_per_s")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size (per GPU)")
    ax.set_ylabel("samples / s")
    ax.set_title("Throughput against batch size")
    _legend(ax)


def _plot_workers(fig, frame: pd.DataFrame, params: Sequence[str]) -> None:
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    _lines(left, frame, params, "num_workers", "samples_per_s")
    left.set_xlabel("num_workers")
    left.set_ylabel("samples / s")
    left.set_title("Throughput against workers")
    _lines(right, frame, params, "num_workers", "data_wait_fraction")
    right.set_xlabel("num_workers")
    fig.subplots_adjust(wspace=0.3)
    right.set_ylabel("share of time waiting for data")
    right.set_ylim(0, 1)
    right.set_title("Data-wait share against workers")
    _legend(right)
    fig.set_size_inches(12, 4.8)


def _plot_precision(fig, frame: pd.DataFrame, params: Sequence[str]) -> None:
    data = frame[(frame["precision"] != "fp32") & frame["speedup"].notna()].copy()
    ax = fig.add_subplot(1, 1, 1)
    data["_label"] = _series_labels(data, "precision", params)
    table = data.pivot_table(index="_label", columns="precision", values="speedup", sort=True).head(_MAX_BARS)
    width = 0.8 / max(1, table.shape[1])
    for j, precision in enumerate(table.columns):
        xs = [i + j * width for i in range(len(table))]
        ax.bar(xs, table[precision].to_numpy(dtype=float), width=width, label=precision)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(table))])
    ax.set_xticklabels(table.index, rotation=30, ha="right", fontsize=7)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel("speedup over fp32")
    ax.set_title("Precision speedups over fp32")
    ax.grid(True, axis="y", alpha=0.3)
    _legend(ax)
    fig.set_size_inches(max(7, 0.6 * len(table) + 3), 5)


def _plot_scaling(fig, frame: pd.DataFrame, params: Sequence[str]) -> None:
    """Efficiency against the world size N, as the scaling view computed it (recorded throughput; weak:
    X_N / (N X_1), strong: T_1 / (N T_N)): a line per platform, parallel mode, scaling mode and other params."""
    ax = fig.add_subplot(1, 1, 1)
    data = frame[frame["efficiency"].notna()].copy()
    axis = "world_size" if "world_size" in data else "num_gpus"
    # a weak series keeps its per-device batch as N grows, a strong one its global batch: label each by what it
    # keeps, and by how the step was shared (dp and ddp are separate lines)
    batch = data["batch_size"] if "batch_size" in data else pd.Series([None] * len(data), index=data.index)
    parallel = data["parallel"] if "parallel" in data else pd.Series([""] * len(data), index=data.index)
    anchor = [f"{p} weak, batch {b}/device".strip() if mode == "weak" else f"{p} strong, global batch {g}".strip()
              for p, mode, b, g in zip(parallel.fillna(""), data["scaling_mode"], batch, data["global_batch_size"])]
    data["platform"] = data["platform"] + " " + pd.Series(anchor, index=data.index)
    # a series that ran at N=1 only scales nothing (the view leaves it out of its table too)
    data["_series"] = data["platform"] + data.apply(lambda r: repr([r.get(p) for p in params if p not in
                                                                   ("batch_size", "num_gpus", "parallel",
                                                                    "scaling")]), axis=1)
    data = data[data.groupby("_series")[axis].transform("max") > 1]
    shown = [p for p in params if p not in ("batch_size", "num_gpus", "parallel", "scaling")]
    _lines(ax, data.drop(columns="_series"), shown, axis, "efficiency")
    ax.axhline(1.0, color="black", linestyle="--", linewidth=0.8, label="ideal")
    ax.set_xlabel("world size N (GPUs, or ddp processes)")
    ax.set_ylabel("scaling efficiency")
    ax.set_ylim(0, 1.15)
    ax.set_title("Scaling efficiency (weak: E = X_N / (N X_1); strong: T_1 / (N T_N))")
    _legend(ax)


def _plot_convergence(fig, frame: pd.DataFrame, params: Sequence[str], meta: Mapping[str, Any]) -> None:
    """Accuracy against time and against epochs: a line per series (the representative run's curve of each
    platform and case), a dashed line at each target accuracy."""
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    curves = [c for c in meta.get("curves", []) if c["points"]][:_MAX_SERIES]
    for curve in curves:
        points = curve["points"]
        style = "-" if curve.get("reached", True) else ":"
        timed = [p for p in points if math.isfinite(p["time_s"])]
        line = None
        if timed:
            (line,) = left.plot([p["time_s"] for p in timed], [p["accuracy"] for p in timed], marker="o",
                                markersize=3, linestyle=style, label=curve["label"])
        right.plot([p["epoch"] for p in points], [p["accuracy"] for p in points], marker="o", markersize=3,
                   linestyle=style, label=curve["label"], color=line.get_color() if line is not None else None)
    targets = sorted({c["target"] for c in curves if isinstance(c["target"], float) and math.isfinite(c["target"])})
    for ax in (left, right):
        for target in targets:
            ax.axhline(target, color="black", linestyle="--", linewidth=0.8,
                       label=f"target {target:.0%}" if ax is right else None)
        ax.set_ylabel("accuracy")
        ax.yaxis.set_major_formatter(_percent_formatter())
        ax.grid(True, alpha=0.3)
    times = [p["time_s"] for c in curves for p in c["points"] if math.isfinite(p["time_s"]) and p["time_s"] > 0]
    if times and max(times) / min(times) > 100:  # platforms far apart: each one's curve readable
        left.set_xscale("log")
    left.set_xlabel("seconds since the run started" + (" (log scale)" if left.get_xscale() == "log" else ""))
    left.set_title("Accuracy against time")
    right.set_xlabel("epoch")
    right.set_title("Accuracy against epochs")
    fig.subplots_adjust(wspace=0.3)
    _legend(right)
    fig.set_size_inches(13, 5)


def _percent_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _: f"{value:.0%}")


def _plot_ops(fig, frame: pd.DataFrame, params: Sequence[str], meta: Mapping[str, Any]) -> None:
    """A stacked horizontal bar per (model, platform): the share of each op category of its profiled step."""
    categories = [c for c in meta.get("categories", ()) if c in frame.columns]
    data = frame[frame["representative"].astype(bool)] if "representative" in frame else frame
    data = data.head(_MAX_BARS)
    models = data["model"] if "model" in data else data["benchmark"]
    labels = [f"{m} on {p}" for m, p in zip(models.astype(str), data["platform"].astype(str))]
    ax = fig.add_subplot(1, 1, 1)
    left = [0.0] * len(data)
    for category in categories:
        shares = [float(v) for v in data[category].fillna(0.0)]
        ax.barh(range(len(data)), shares, left=left, label=category)
        left = [a + b for a, b in zip(left, shares)]
    ax.set_yticks(range(len(data)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(_percent_formatter())
    ax.set_xlabel("share of the self time of a profiled step")
    ax.set_title("Where a step's time goes, by op category")
    ax.grid(True, axis="x", alpha=0.3)
    _legend(ax)
    fig.set_size_inches(10, max(3.0, 0.45 * len(data) + 1.5))


def _plot_paper(fig, frame: pd.DataFrame, params: Sequence[str], meta: Mapping[str, Any]) -> None:
    """Grouped bars: the epoch time of each model, a bar per platform (slowest to fastest), log scale."""
    data = frame[frame["epoch_time_s"].notna()]
    models = list(dict.fromkeys(data["model"].astype(str)))[:_MAX_BARS]
    platforms = [p for p in meta.get("platforms", sorted(data["platform"].unique())) if p in set(data["platform"])]
    width = 0.8 / max(1, len(platforms))
    ax = fig.add_subplot(1, 1, 1)
    times = {(str(m), p): float(t) for m, p, t in zip(data["model"], data["platform"], data["epoch_time_s"])}
    for j, platform in enumerate(platforms):
        shown = [(i, times[(m, platform)]) for i, m in enumerate(models) if (m, platform) in times]
        ax.bar([i + j * width for i, _ in shown], [t for _, t in shown], width=width, label=platform)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(models))])
    ax.set_xticklabels(models, rotation=20, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("seconds per epoch (log scale, lower is faster)")
    ax.set_title("Epoch time per model and platform")
    ax.grid(True, axis="y", alpha=0.3)
    _legend(ax)
    fig.set_size_inches(max(7, 1.2 * len(models) * max(1, len(platforms)) ** 0.5 + 3), 5)


_PLOTTERS: dict[str, Callable] = {
    "platforms": _plot_platforms,
    "batch": _plot_batch,
    "workers": _plot_workers,
    "precision": _plot_precision,
    "scaling": _plot_scaling,
    "convergence": _plot_convergence,
    "ops": _plot_ops,
    "paper": _plot_paper,
}
#: Plotters that also read the view's meta (curves, category order, platform order).
_WITH_META = ("convergence", "ops", "paper")


def _has_data(view: str, frame: pd.DataFrame, meta: Mapping[str, Any] | None = None) -> bool:
    if frame.empty:
        return False
    if view == "convergence":
        return any(c["points"] for c in (meta or {}).get("curves", []))
    if view == "ops":
        return True
    needed = {"platforms": "speedup", "batch": "samples_per_s", "workers": "samples_per_s",
              "precision": "speedup", "scaling": "efficiency", "paper": "epoch_time_s"}[view]
    if needed not in frame or not frame[needed].notna().any():
        return False
    if view == "precision":
        return bool(((frame["precision"] != "fp32") & frame["speedup"].notna()).any())
    if view == "platforms":
        return frame["platform"].nunique() > 1
    return True


def write_plots(views: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """One PNG per view with data into ``out_dir`` (created); returns the paths written.

    Args:
        views: view name -> fer_bench.results.compare.ViewTable.

    Raises:
        FerBenchError: matplotlib is missing.
    """
    figure_cls, canvas_cls = require_matplotlib()
    out_dir = Path(out_dir)
    written = []
    for name, table in views.items():
        frame = table.records
        meta = getattr(table, "meta", None) or {}
        if name not in _PLOTTERS or not _has_data(name, frame, meta):
            continue
        fig = figure_cls(figsize=(9, 5), dpi=110)
        canvas_cls(fig)
        params = list(frame.attrs.get("params", []))
        if name in _WITH_META:
            _PLOTTERS[name](fig, frame, params, meta)
        else:
            _PLOTTERS[name](fig, frame, params)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
        written.append(write_bytes_atomic(out_dir / f"{name}.png", buffer.getvalue()))
    return written
