"""The nodes view: runs of one hardware identity made on several nodes (sibling nodes of one model), per case each
node's median, its deviation from the fleet's median and whether it lies outside the fleet's own run-to-run noise
(fer_bench.results.fleet: the test, its threshold and the false-alarm rate it implies); a one-line verdict per node;
its chart (nodes down the side, each case's deviation a dot, the flagged ones marked). Hardware identities are
judged apart, never pooled.

A run's node is its run record's ``node`` (SLURM's node name or --fer-node), else its sidecar's hostname, else
pytest-benchmark's hostname, else its file name (fer_bench.results.runs.resolve_node). Every run counts, not only
the latest of each node and case: a node with several runs is judged on the median of all of them.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from fer_bench.results.charts import Header, SeriesStyle, axes_rect, compact_case, stack_panels, text_width
from fer_bench.results.fleet import MIN_NODES, FleetJudgement, judge_fleet
from fer_bench.results.format import format_number, is_number
from fer_bench.results.records import label_workloads
from fer_bench.results.runs import CaseKey, CaseResult, RunResult, format_case, parse_params_key
from fer_bench.results.contention import is_contended
from fer_bench.results.tables import ViewTable, param_names, plural, records_frame
from fer_bench.results.views import View, ViewInputs, register_view

SLOW_COLOUR, FAST_COLOUR, OK_COLOUR = "#d62728", "#1f77b4", "#9a9a9a"


def _case_key(case: CaseResult, work: str) -> CaseKey:
    """The case as the fleet compares it: function, params (device included) and the work done; a case-defining
    target accuracy joins the params, as in the other views."""
    params = case.key.params
    target = case.extra_info.get("target_accuracy")
    if is_number(target) and "target_accuracy" not in dict(params):
        params = tuple(sorted((*params, ("target_accuracy", str(target)))))
    return CaseKey(case.key.function, params, work)


def _identity_labels(runs: Sequence[RunResult]) -> dict[str, str]:
    """A label per hardware identity: its slug, with the hash's first six digits where two identities share one."""
    first: dict[str, str] = {}
    for run in runs:
        first.setdefault(run.machine.identity_hash, run.machine.slug)
    count = Counter(first.values())
    return {h: slug if count[slug] == 1 else f"{slug}~{h.split(':')[-1][:6]}" for h, slug in first.items()}


class _Fleet:
    """The runs of one hardware identity, as runs x cases median seconds, and their judgement."""

    def __init__(self, label: str, identity_hash: str, runs: Sequence[RunResult], keys: dict[int, CaseKey],
                 groups: set[str] | None) -> None:
        self.label, self.identity_hash, self.runs = label, identity_hash, list(runs)
        self.nodes = sorted({r.node for r in runs})
        self.cases: list[CaseKey] = []
        self.group: dict[CaseKey, str] = {}
        where: dict[CaseKey, int] = {}
        cells: list[tuple[int, int, float]] = []
        #: (node, case) results measured while other processes took the machine: left out of the test
        self.contended: list[tuple[str, CaseKey]] = []
        for i, run in enumerate(self.runs):
            for case in run.cases:
                if groups is not None and (case.group or "") not in groups:
                    continue
                key = keys[id(case)]
                if is_contended(case.extra_info):
                    self.contended.append((run.node, key))
                    continue
                if key not in where:
                    where[key] = len(self.cases)
                    self.cases.append(key)
                    self.group[key] = case.group or ""
                cells.append((i, where[key], case.median_s))
        values = np.full((len(self.runs), len(self.cases)), np.nan)
        for i, j, v in cells:  # a run that holds a case twice (two modules) keeps the last: disambiguated upstream
            values[i, j] = v
        self.values = values
        self.node_of_run = [self.nodes.index(r.node) for r in self.runs]
        self.judgement: FleetJudgement | None = (judge_fleet(values, self.node_of_run)
                                                 if len(self.nodes) >= 2 and self.cases else None)

    def stacks(self) -> dict[str | None, list[str]]:
        """The nodes of each software stack hash."""
        out: dict[str | None, set[str]] = {}
        for run in self.runs:
            out.setdefault(run.machine.stack_hash, set()).add(run.node)
        return {k: sorted(v) for k, v in out.items()}


def collect_fleets(runs: Sequence[RunResult], groups: set[str] | None = None) -> list[_Fleet]:
    """One fleet per hardware identity of ``runs`` (only ``groups``' cases where given), in label order."""
    labels = _identity_labels(runs)
    all_cases = [c for r in runs for c in r.cases if groups is None or (c.group or "") in groups]
    work, _ = label_workloads(all_cases, per_image=False)
    keys = {id(c): _case_key(c, work.get(id(c), "")) for c in all_cases}
    by_identity: dict[str, list[RunResult]] = {}
    for run in runs:
        by_identity.setdefault(run.machine.identity_hash, []).append(run)
    return [_Fleet(labels[h], h, members, keys, groups)
            for h, members in sorted(by_identity.items(), key=lambda kv: labels[kv[0]])]


def _percent(value: float) -> str:
    return f"{value:+.1%}" if math.isfinite(value) else "-"


def _range(values: Sequence[float]) -> str:
    lo, hi = min(values), max(values)
    return _percent(lo) if abs(hi - lo) < 5e-4 else f"{_percent(lo)} to {_percent(hi)}"


def node_verdicts(fleet: _Fleet) -> dict[str, tuple[str, str]]:
    """A verdict per node, as a word (ok, slow, fast, mixed, not judged) and a line: ``ok`` and its largest
    deviation, or slow / fast with the cases beyond the fleet's noise and by how much."""
    j = fleet.judgement
    out = {}
    for n, node in enumerate(fleet.nodes):
        ran = int((j.runs[n] > 0).sum())
        devs = j.deviation[n][j.runs[n] > 0]
        if j.threshold is None:
            out[node] = ("not judged", f"not judged: {len(fleet.nodes)} nodes cannot say which is off (run "
                                       f"{MIN_NODES} or more); {ran} cases, {_range(list(devs))} from the fleet's "
                                       f"median")
            continue
        slow = [d for d, f in zip(j.deviation[n], j.flagged[n]) if f and d > 0]
        fast = [d for d, f in zip(j.deviation[n], j.flagged[n]) if f and d < 0]
        if not slow and not fast:
            largest = max(devs, key=abs) if len(devs) else math.nan
            out[node] = ("ok", f"ok ({plural(ran, 'case', 'cases')} within the fleet's noise, largest "
                               f"{_percent(largest)})")
            continue
        parts = []
        if slow:
            parts.append(f"slow: {len(slow)} of {ran} cases {_range(slow)}")
        if fast:
            parts.append(f"fast: {len(fast)} of {ran} cases {_range(fast)}")
        word = "mixed" if slow and fast else "slow" if slow else "fast"
        out[node] = (word, "; ".join(parts) + " beyond the fleet's noise")
    return out


def _runs_note(fleet: _Fleet) -> str:
    per_node = Counter(r.node for r in fleet.runs)
    sources = Counter(r.node_source for r in fleet.runs)
    counts = ", ".join(f"`{n}` {per_node[n]}" for n in fleet.nodes)
    named = ", ".join(f"{s} ({c})" for s, c in sources.most_common())
    return (f"`{fleet.label}` (identity {fleet.identity_hash}): {plural(len(fleet.nodes), 'node', 'nodes')}, "
            f"{plural(len(fleet.runs), 'run', 'runs')} ({counts}), {plural(len(fleet.cases), 'case', 'cases')}; node "
            f"names from: {named}.")


def create_nodes_view(runs: Sequence[RunResult], groups: set[str] | None = None) -> ViewTable:
    """Per hardware identity with runs from several nodes: a row per case with the fleet's median, its noise and
    each node's median and deviation (flagged ones marked); a verdict per node in the notes."""
    fleets = collect_fleets(runs, groups)
    several = [f for f in fleets if f.judgement is not None]
    if not several:
        return ViewTable("nodes", pd.DataFrame(), pd.DataFrame(), [
            "no hardware identity has runs from several nodes (a run's node: its run record's `node`, else its "
            "sidecar's hostname)"])
    names = param_names([{"params": parse_params_key(k)} for f in several for k in f.cases])
    rows, wide, notes = [], [], []
    multi = len(several) > 1
    if multi:
        notes.append(f"{len(several)} hardware identities, each judged against its own nodes only (never pooled).")
    for fleet in several:
        j = fleet.judgement
        notes.append(_runs_note(fleet))
        if fleet.contended:
            shown = ", ".join(f"`{node}` {format_case(key)}" for node, key in fleet.contended[:3])
            more = f" and {len(fleet.contended) - 3} more" if len(fleet.contended) > 3 else ""
            notes.append(f"Left out: {plural(len(fleet.contended), 'result', 'results')} measured while other "
                         f"processes took the machine (contended, unreliable): {shown}{more}.")
        notes.append(j.threshold.describe(len(fleet.nodes), len(fleet.cases)) if j.threshold is not None else
                     f"`{fleet.label}`: {len(fleet.nodes)} nodes: deviations shown, none judged (a node outside the "
                     f"noise needs {MIN_NODES} or more nodes to be told from the others).")
        stacks = fleet.stacks()
        if len(stacks) > 1:
            notes.append(f"`{fleet.label}`: the nodes ran {len(stacks)} software stacks (a difference may be the "
                         f"software's): " + "; ".join(f"stack {(h or 'unknown')[:6]}: {', '.join(ns)}"
                                                     for h, ns in stacks.items()))
        verdicts = node_verdicts(fleet)
        notes.append(f"Verdicts for `{fleet.label}`:")
        notes.extend(f"- `{node}`: {verdicts[node][1]}" for node in fleet.nodes)
        cut = j.threshold.z if j.threshold is not None else math.nan
        for c, key in enumerate(fleet.cases):
            params = parse_params_key(key)
            case_label = format_case(key) + (f" ({key.work})" if key.work else "")
            row = {"machine": fleet.label} if multi else {}
            row.update({"case": compact_case(case_label, 70),
                        "fleet median": f"{format_number(j.centre_s[c] * 1e3)} ms", "noise": f"{j.scale[c]:.1%}",
                        "outside": f"±{math.expm1(cut * j.scale[c]):.1%}" if math.isfinite(cut) else "-"})
            for n, node in enumerate(fleet.nodes):
                if j.runs[n, c] == 0:
                    row[node] = "-"
                    continue
                flag = " **slow**" if j.flagged[n, c] and j.deviation[n, c] > 0 else \
                    " **fast**" if j.flagged[n, c] else ""
                row[node] = f"{format_number(j.median_s[n, c] * 1e3)} ms ({_percent(j.deviation[n, c])}){flag}"
                rows.append({"group": fleet.group[key], "benchmark": key.function,
                             **{k: params.get(k) for k in names}, "machine": fleet.label,
                             "identity_hash": fleet.identity_hash, "node": node, "case": case_label,
                             "runs": int(j.runs[n, c]), "median_ms": float(j.median_s[n, c] * 1e3),
                             "fleet_median_ms": float(j.centre_s[c] * 1e3),
                             "deviation": round(float(j.deviation[n, c]), 5), "z": round(float(j.z[n, c]), 3),
                             "noise": round(float(j.scale[c]), 5), "threshold_z": cut,
                             "flagged": bool(j.flagged[n, c]),
                             "verdict": verdicts[node][0]})
            wide.append(row)
    notes.append("Per case: the fleet's median (over the nodes' medians), its noise (1.4826 x MAD of the per-run "
                 "medians, relative), the deviation beyond which a node is flagged (`outside`), and each node's "
                 "median over all its runs with its deviation from the fleet's median; **slow** / **fast**: outside "
                 "the fleet's noise.")
    return ViewTable("nodes", records_frame(rows, names), pd.DataFrame(wide), notes,
                     {"machines": [f.label for f in several]})


def plot_nodes(fig, frame: pd.DataFrame, params: Sequence[str], styles: Mapping[str, SeriesStyle],
               meta: Mapping[str, Any] | None = None) -> None:
    """A panel per hardware identity: a row per node, each case's deviation from the fleet's median a dot (grey
    within the fleet's noise, red slow, blue fast, larger and outlined when flagged); the verdict at the right."""
    from matplotlib.lines import Line2D

    machines = list(dict.fromkeys(frame["machine"]))
    width = 9.5
    label_in = min(2.2, max(0.8, text_width(frame["node"]) + 0.2))
    verdict_in = 1.6
    heights = [max(0.9, 0.34 * frame[frame["machine"] == m]["node"].nunique()) for m in machines]
    handles = [Line2D([], [], marker="o", ls="", color=OK_COLOUR, label="within the fleet's noise"),
               Line2D([], [], marker="o", ls="", color=SLOW_COLOUR, mec="black", label="slow, outside the noise"),
               Line2D([], [], marker="o", ls="", color=FAST_COLOUR, mec="black", label="fast, outside the noise")]
    header = Header.create("Each node's deviation from the fleet's median, per case (a dot a case)", handles, width)
    places, height = stack_panels(header.height, heights)
    fig.set_size_inches(width, height)
    for machine, (top, h) in zip(machines, places):
        data = frame[frame["machine"] == machine]
        nodes = sorted(data["node"].unique(), reverse=True)
        cases = list(dict.fromkeys(data["case"]))
        ax = fig.add_axes(axes_rect(width, height, label_in, top, width - label_in - verdict_in, h))
        spread = 0.5 / max(1, len(cases))
        devs = data["deviation"].astype(float) * 100
        for _, r in data.iterrows():
            y = nodes.index(r["node"]) + (cases.index(r["case"]) - (len(cases) - 1) / 2) * spread
            flagged = bool(r["flagged"])
            colour = (SLOW_COLOUR if r["deviation"] > 0 else FAST_COLOUR) if flagged else OK_COLOUR
            ax.plot(float(r["deviation"]) * 100, y, marker="o", ls="", color=colour, ms=6 if flagged else 4,
                    mec="black" if flagged else colour, mew=0.6, zorder=3 if flagged else 2)
        cut = data["threshold_z"].astype(float) * data["noise"].astype(float)
        if cut.notna().any():
            allow = float(np.expm1(cut.median())) * 100
            ax.axvspan(-allow, allow, color="#e8e8e8", zorder=0, lw=0)
        ax.axvline(0, color="#555555", lw=0.8, zorder=1)
        ax.set_yticks(range(len(nodes)), nodes)
        ax.set_ylim(-0.6, len(nodes) - 0.4)
        span = max(5.0, float(np.nanmax(np.abs(devs))) * 1.15 if len(devs) else 5.0)
        ax.set_xlim(-span, span)
        ax.set_xlabel("deviation from the fleet's median time per round (%; right is slower; shaded: the median "
                      "case's noise allowance)")
        verdicts = data.drop_duplicates("node").set_index("node")["verdict"]
        for i, node in enumerate(nodes):
            n_flag = int(data[(data["node"] == node)]["flagged"].sum())
            text = str(verdicts.get(node, ""))
            ax.text(1.01, i, f"{text}" + (f" ({n_flag} of {len(data[data['node'] == node])})" if n_flag else ""),
                    transform=ax.get_yaxis_transform(), va="center", fontsize=7.5,
                    color=SLOW_COLOUR if text == "slow" else FAST_COLOUR if text == "fast" else "#333333")
        ax.set_title(f"{machine}: {len(nodes)} nodes, {len(cases)} cases", loc="left")
    header.draw(fig, height)


def _rows(inputs: ViewInputs) -> ViewTable:
    groups = {r["group"] for r in inputs.records}
    return create_nodes_view(inputs.runs, groups)


def _chartable(frame: pd.DataFrame, meta: Mapping[str, Any]) -> bool:
    return "deviation" in frame.columns and bool(frame["deviation"].notna().any())


register_view(View("nodes", _rows, order=85, title="Nodes of one machine", counts="separate", plot=plot_nodes,
                   chartable=_chartable, every_run=True,
                   help="sibling nodes of one hardware identity: each node's deviation from the fleet's median per "
                        "case, the ones outside the fleet's noise flagged, a verdict per node"))
