"""The stragglers view: for each multi-rank case (DistributedDataParallel, spawned or under torchrun or srun), a row
per rank with its host, its median step time and how far that lies from the median rank's, the slowest rank named;
its chart (a bar per rank, the slowest marked). Read from the case's ``extra_info["per_rank"]``
(fer_bench.engine.distributed.summarize_ranks).

A rank's host is its per-rank entry's ``host`` (recorded under a launcher), else the launch's node list in the run
record (``fer_bench.run.launch.nodes``: each host's ranks), else the run's node: spawned ranks run where the session
ran.
"""

from __future__ import annotations

import math
from statistics import median
from typing import Any, Mapping, Sequence

import pandas as pd

from fer_bench.results.charts import Header, SeriesStyle, axes_rect, compact_case, stack_panels, text_width
from fer_bench.results.format import format_number, is_number
from fer_bench.results.runs import RunResult
from fer_bench.results.tables import ViewTable, param_names, public_row, records_frame, sort_records
from fer_bench.results.views import View, ViewInputs, register_view

SLOWEST_COLOUR, RANK_COLOUR = "#d62728", "#7f9fbf"
_MAX_PANELS = 8


def _launch_hosts(run: RunResult | None) -> dict[int, str]:
    """Rank -> host from the run record's launch node list."""
    nodes = ((run.run_info.get("launch") or {}).get("nodes") if run is not None else None) or []
    out = {}
    for node in nodes if isinstance(nodes, list) else []:
        if isinstance(node, dict) and isinstance(node.get("host"), str):
            out.update((int(r), node["host"]) for r in node.get("ranks") or [] if is_number(r))
    return out


def _host(entry: Mapping[str, Any], rank: int, launch_hosts: Mapping[int, str], run: RunResult | None) -> str:
    host = entry.get("host")
    if isinstance(host, str) and host:
        return host
    if rank in launch_hosts:
        return launch_hosts[rank]
    return run.node if run is not None and run.node else "unknown"


def create_stragglers_view(records: list[dict], runs: Sequence[RunResult]) -> ViewTable:
    """A row per rank of each multi-rank case: host, median step time and its difference from the median rank."""
    by_path = {str(run.path): run for run in runs}
    mine = [r for r in records if isinstance(r["_extra"].get("per_rank"), list) and len(r["_extra"]["per_rank"]) > 1]
    if not mine:
        return ViewTable("stragglers", pd.DataFrame(), pd.DataFrame(),
                         ["no multi-rank results (a DDP case over 2 or more processes records each rank's steps)"])
    names = param_names(mine)
    rows, wide, notes = [], [], []
    for r in sort_records(mine, names, first=("platform",)):
        run = by_path.get(r["run"])
        hosts = _launch_hosts(run)
        ranks = [e for e in r["_extra"]["per_rank"] if isinstance(e, dict) and is_number(e.get("median_ms"))]
        if len(ranks) < 2:
            continue
        middle = median(float(e["median_ms"]) for e in ranks)
        slowest = max(ranks, key=lambda e: float(e["median_ms"]))
        for e in sorted(ranks, key=lambda e: int(e.get("rank", 0))):
            rank = int(e.get("rank", 0))
            host = _host(e, rank, hosts, run)
            ms = float(e["median_ms"])
            vs = ms / middle - 1.0 if middle > 0 else math.nan
            is_slowest = e is slowest
            rows.append(public_row(r, names) | {
                "rank": rank, "host": host, "median_ms": ms,
                "iqr_ms": float(e["iqr_ms"]) if is_number(e.get("iqr_ms")) else math.nan,
                "median_rank_ms": middle, "vs_median_rank": round(vs, 5), "slowest": is_slowest})
            wide.append({"platform": r["platform"], "case": compact_case(r["case"], 70), "rank": rank, "host": host,
                         "step": f"{format_number(ms)} ms",
                         "vs median rank": f"{vs:+.1%}" + (" **slowest**" if is_slowest else "")})
        skew = r["_extra"].get("rank_skew")
        notes.append(f"`{compact_case(r['case'], 70)}` on `{r['platform']}`: {len(ranks)} ranks on "
                     f"{len({_host(e, int(e.get('rank', 0)), hosts, run) for e in ranks})} host(s); slowest rank "
                     f"{int(slowest.get('rank', 0))} on `{_host(slowest, int(slowest.get('rank', 0)), hosts, run)}`, "
                     f"{format_number(float(slowest['median_ms']))} ms, "
                     f"{float(slowest['median_ms']) / middle - 1.0:+.1%} over the median rank"
                     + (f" (rank skew {float(skew):.3f})" if is_number(skew) else "") + ".")
    notes.append("Per rank: its median step time over the timed rounds, and its difference from the median rank's "
                 "(a round waits for the slowest rank, so a straggler sets the step time of every rank).")
    return ViewTable("stragglers", records_frame(rows, names), pd.DataFrame(wide), notes)


def plot_stragglers(fig, frame: pd.DataFrame, params: Sequence[str], styles: Mapping[str, SeriesStyle],
                    meta: Mapping[str, Any] | None = None) -> None:
    """A panel per multi-rank case (the first eight): a bar per rank (labelled with its host), the median rank a
    dashed line, the slowest rank red."""
    from matplotlib.patches import Patch

    keys = list(dict.fromkeys(zip(frame["platform"], frame["case"])))[:_MAX_PANELS]
    width = 9.5
    labels = [f"rank {int(r)} ({h})" for r, h in zip(frame["rank"], frame["host"])]
    left = min(3.0, max(1.0, text_width(labels) + 0.2))
    heights = [max(0.5, 0.28 * int(((frame["platform"] == p) & (frame["case"] == c)).sum())) for p, c in keys]
    handles = [Patch(color=RANK_COLOUR, label="rank"), Patch(color=SLOWEST_COLOUR, label="slowest rank")]
    header = Header.create("Median step time per rank (dashed: the median rank)", handles, width)
    places, height = stack_panels(header.height, heights)
    fig.set_size_inches(width, height)
    for (platform, case), (top, h) in zip(keys, places):
        data = frame[(frame["platform"] == platform) & (frame["case"] == case)].sort_values("rank", ascending=False)
        ax = fig.add_axes(axes_rect(width, height, left, top, width - left - 0.9, h))
        ms = data["median_ms"].astype(float).tolist()
        ax.barh(range(len(data)), ms, color=[SLOWEST_COLOUR if s else RANK_COLOUR for s in data["slowest"]],
                height=0.7)
        ax.axvline(float(data["median_rank_ms"].iloc[0]), color="#333333", ls="--", lw=0.9)
        ax.set_yticks(range(len(data)), [f"rank {int(r)} ({h})" for r, h in zip(data["rank"], data["host"])])
        for i, (v, vs) in enumerate(zip(ms, data["vs_median_rank"].astype(float))):
            ax.text(v, i, f" {vs:+.1%}", va="center", fontsize=7)
        ax.set_xlim(0, max(ms) * 1.15)
        ax.set_xlabel("median step time (ms)")
        ax.set_title(f"{platform}: {compact_case(case, 80)}", loc="left")
    header.draw(fig, height)


def _rows(inputs: ViewInputs) -> ViewTable:
    return create_stragglers_view(inputs.records, inputs.runs)


def _chartable(frame: pd.DataFrame, meta: Mapping[str, Any]) -> bool:
    return "median_ms" in frame.columns and bool(frame["median_ms"].notna().any())


register_view(View("stragglers", _rows, order=45, title="Ranks of a multi-rank run", counts="separate",
                   plot=plot_stragglers, chartable=_chartable,
                   help="per rank of a DDP run (spawned, torchrun or srun): its host, its step time against the "
                        "median rank's, the slowest rank named"))
