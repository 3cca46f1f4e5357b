"""`fer-bench report`: one self-contained HTML page per comparison, for people to look at.

The page holds, in order:

* **Machines**, side by side: each (hardware, software stack) a column with its label, slug, identity and stack
  hashes, a summary of its hardware and stack, its platforms (with the colour they have in every chart) and its
  runs (when each was made, how many cases); then the hardware identity and software stack differences between
  them (fer_bench.results.runs.list_identity_differences / list_stack_differences).
* With ``--gate BASELINE...`` (the runs given are then the current side), **Gate**: fer_bench.results.gate's verdicts
  as an interval plot (ratio and confidence interval per case, threshold lines, regressions first, coloured by
  status), the verdict table and the gate's exit status line. The report's own exit status stays 0.
* A section per **benchmark group**: throughput per case and platform as bars (IQR error bars from the rounds'
  first and third quartiles, converted to throughput; the speedup over the baseline platform beside each bar) over
  the platforms view of that group (compare's create_view("platforms", groups=[g])).
* A section per **other view with data** (workers, precision, batch, scaling, convergence, ops, paper, compile):
  its chart, its table and its notes.

Notes sit beside the section they qualify: each view's own notes (different workloads, missing baselines,
launch-bound steps, emulated precisions, ...), and for a group the platforms view's notes plus the noisy cases
(rel_iqr, the IQR over the median, above 0.1). The machines listing the platforms view repeats in its notes is shown
once, in the machines section.

Self-contained: styles inline, charts inline SVG (matplotlib, text as text), no script, no external font, image or
link target outside the page. Written atomically (a reader sees the old page or the new one). Bad input: one line
on stderr, exit status 3.
"""

from __future__ import annotations

import argparse
import html
import math
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from fer_bench import __version__
from fer_bench._atomic import write_text_atomic
from fer_bench.errors import FerBenchError
from fer_bench.results import plots
from fer_bench.results.compare import (
    VIEWS,
    ViewTable,
    add_selection_arguments,
    collect_records,
    create_view,
    parse_platform_names,
)
from fer_bench.results.format import format_number, is_number
from fer_bench.results.runs import (
    RunResult,
    flatten_dict,
    label_machines,
    list_identity_differences,
    list_stack_differences,
    load_results,
)

EXIT_BAD_INPUT = 3
#: A case whose IQR exceeds this share of its median is noisy (the plugin's rel_iqr).
NOISY_REL_IQR = 0.1
_MAX_DIFF_ROWS = 60
_MAX_LISTED = 8
VIEW_TITLES = {
    "workers": "Data-loader workers",
    "precision": "Precision",
    "batch": "Batch size",
    "scaling": "Scaling across devices",
    "convergence": "Time to accuracy (convergence)",
    "ops": "Where a step's time goes (ops)",
    "paper": "The paper's table",
    "compile": "torch.compile",
}
#: Notes that qualify the numbers beside them (shown highlighted): different work, missing baselines, launch-bound
#: steps, noisy cases, emulated precisions, missed targets, inferred figures, the gate's findings.
_CAVEATS = re.compile(r"did different work|no (comparable )?baseline|launch-bound|^noisy|emulated|missed the target|"
                      r"ran no (fp32|eager)|no n=1 run|have no n=1|^left out|inferred|not comparable|^inconclusive|"
                      r"^regression|other hardware|changed since|--baseline .* ran no case", re.I)


# ----------------------------------------------------------------------------------------------- html pieces


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _inline(text: Any) -> str:
    """A note's inline markdown (`code`, **bold**) as HTML, everything else escaped."""
    out = html.escape(str(text), quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)


def _notes_html(notes: Sequence[str]) -> str:
    """Note lines as paragraphs, runs of ``- `` lines as lists; caveats highlighted."""
    parts: list[str] = []
    items: list[str] = []

    def flush() -> None:
        if items:
            parts.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
            items.clear()

    for line in notes:
        line = str(line)
        if not line.strip():
            continue
        if line.startswith("- "):
            items.append(_inline(line[2:]))
            continue
        flush()
        caveat = bool(_CAVEATS.search(line))
        parts.append(f'<p class="note{" caveat" if caveat else ""}">{_inline(line)}</p>')
    flush()
    return "".join(parts)


def _swatch(style: plots.SeriesStyle | None) -> str:
    if style is None:
        return ""
    hatch = " hatched" if style.hatch else ""
    return f'<span class="sw{hatch}" style="background-color:{style.color}"></span>'


def _cell(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_number(value) and isinstance(value, float):
        return _esc(format_number(value))
    return _inline(value)


def _table_html(frame: pd.DataFrame, styles: Mapping[str, plots.SeriesStyle], *, caption: str = "",
                numeric_right: bool = True, drop: Sequence[str] = ()) -> str:
    """A DataFrame as an HTML table; a platform column header or cell gets the platform's colour swatch. Columns
    that are empty in every row, and those in ``drop``, are left out."""
    if frame is None or frame.empty:
        return ""
    keep = [c for c in frame.columns if c not in drop and not all(_cell(v) == "" for v in frame[c])]
    frame = frame[keep]
    head = "".join(f"<th>{_swatch(styles.get(str(c)))}{_esc(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, row):
            text = _cell(value)
            if column == "platform" and str(value) in styles:
                text = _swatch(styles[str(value)]) + text
            cls = ' class="num"' if numeric_right and is_number(value) else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{_inline(caption)}</caption>" if caption else ""
    return (f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _slug_id(text: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-") or "none"


@dataclass
class Section:
    """One section of the page: its charts (SVG), tables (HTML) and notes."""

    id: str
    kind: str  # machines | gate | group | view | empty
    title: str
    subtitle: str = ""
    charts: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    body: str = ""  # extra HTML above the charts (machines, gate summary)
    #: notes in a column beside the charts and tables, else above them (the machines table wants the width)
    notes_beside: bool = True

    def render(self) -> str:
        sub = f' <span class="kind">{_esc(self.subtitle)}</span>' if self.subtitle else ""
        main = self.body + "".join(f'<figure class="chart">{c}</figure>' for c in self.charts) + "".join(self.tables)
        aside = (f'<aside class="notes"><h3>Notes</h3>{_notes_html(self.notes)}</aside>' if self.notes else "")
        if aside and not self.notes_beside:
            main, aside = aside.replace('class="notes"', 'class="notes above"') + main, ""
        layout = "body with-notes" if aside else "body"
        return (f'<section id="{_esc(self.id)}" class="section {self.kind}" data-kind="{self.kind}" '
                f'data-charts="{len(self.charts)}" data-tables="{len(self.tables)}">'
                f'<h2>{_esc(self.title)}{sub}</h2><div class="{layout}"><div class="main">{main}</div>{aside}</div>'
                f'</section>')


_CSS = """
:root{--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--bg:#ffffff;--soft:#f6f8fa;--warn:#fff8c5;--warnline:#d4a72c}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue","DejaVu Sans",Arial,
sans-serif;color:var(--fg);background:var(--bg)}
header.top{padding:1.2rem 1.5rem .6rem;border-bottom:1px solid var(--line);background:var(--soft)}
h1{font-size:1.5rem;margin:0 0 .3rem}
h2{font-size:1.2rem;margin:0 0 .7rem;padding-bottom:.3rem;border-bottom:1px solid var(--line)}
h2 .kind{font-size:.8rem;font-weight:normal;color:var(--muted);margin-left:.5rem}
h3{font-size:.95rem;margin:1rem 0 .4rem}
.meta{color:var(--muted);margin:.2rem 0}
nav ol{display:flex;flex-wrap:wrap;gap:.25rem 1.1rem;list-style:none;padding:0;margin:.6rem 0 0}
nav a{color:#0969da;text-decoration:none}
nav a:hover{text-decoration:underline}
main{padding:0 1.5rem 2rem;max-width:1800px}
.section{margin:1.6rem 0 2.2rem}
.body.with-notes{display:grid;grid-template-columns:minmax(0,1fr) 19rem;gap:1.4rem;align-items:start}
@media (max-width:1100px){.body.with-notes{grid-template-columns:minmax(0,1fr)}}
.main{min-width:0}
figure.chart{margin:0 0 1rem;overflow-x:auto}
figure.chart svg{max-width:100%;height:auto;display:block}
aside.notes{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:.2rem .9rem .6rem;
font-size:.85rem;overflow-wrap:anywhere}
aside.notes h3{margin:.6rem 0 .4rem}
aside.notes.above{margin-bottom:1rem}
aside.notes p{margin:.45rem 0}
aside.notes ul{margin:.2rem 0 .5rem;padding-left:1.1rem}
p.caveat{background:var(--warn);border-left:3px solid var(--warnline);padding:.25rem .5rem;border-radius:3px}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:.86em;
background:rgba(175,184,193,.2);padding:0 .2em;border-radius:3px}
.table-wrap{overflow:auto;max-height:36rem;border:1px solid var(--line);border-radius:6px;margin:.4rem 0 1rem}
table{border-collapse:collapse;font-size:.82rem;width:max-content;min-width:100%}
caption{text-align:left;padding:.4rem .6rem;color:var(--muted)}
th,td{padding:.28rem .6rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top;white-space:nowrap}
thead th{position:sticky;top:0;background:var(--soft);z-index:1}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fbfcfd}
table.machines th[scope=row]{background:var(--soft);position:sticky;left:0}
table.machines{width:100%}
table.machines td{white-space:normal;min-width:11rem;overflow-wrap:anywhere}
table.machines code{word-break:break-all}
.sw{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.35em;vertical-align:-.05em;
border:1px solid rgba(0,0,0,.25)}
.sw.hatched{background-image:repeating-linear-gradient(45deg,rgba(0,0,0,.45) 0 1px,transparent 1px 4px)}
.runs{margin:0;padding-left:1rem}
.legend-item{margin-right:.9rem;white-space:nowrap}
.status{font-weight:600}
.exit{font-family:ui-monospace,Menlo,Consolas,monospace;background:var(--soft);border:1px solid var(--line);
padding:.5rem .7rem;border-radius:6px;white-space:pre-wrap;overflow-wrap:anywhere}
.exit.fail{border-color:#cf222e;background:#ffebe9}
.exit.warn{border-color:var(--warnline);background:var(--warn)}
footer{color:var(--muted);font-size:.8rem;padding:1rem 1.5rem;border-top:1px solid var(--line)}
""".strip()


# ----------------------------------------------------------------------------------------------- machines


def _when(value: datetime | None) -> str:
    if value is None:
        return "no date"
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return value.strftime("%Y-%m-%d %H:%M")


def _hardware_summary(identity: Mapping[str, Any]) -> str:
    flat = flatten_dict(identity)
    bits = []
    cpu = flat.get("cpu.brand")
    cores = flat.get("cpu.physical_cores") or flat.get("cpu.cores") or flat.get("cpu.logical_cores")
    if cpu:
        bits.append(f"{cpu}" + (f", {cores} cores" if cores else ""))
    gpus = [v for k, v in flat.items() if re.fullmatch(r"gpus\.\d+\.name", k) and v]
    if gpus:
        names = sorted(set(map(str, gpus)))
        bits.append(", ".join(f"{len([g for g in gpus if g == n])}x {n}" for n in names))
    if flat.get("memory_gib"):
        bits.append(f"{flat['memory_gib']} GiB memory")
    return "; ".join(bits) or "-"


def _stack_summary(stack: Mapping[str, Any]) -> str:
    flat = flatten_dict(stack or {})
    bits = [f"{k} {flat[k]}" for k in ("torch", "python", "cudnn", "malloc") if flat.get(k)]
    if flat.get("os.distro"):
        bits.append(str(flat["os.distro"]))
    return ", ".join(bits) or "not recorded"


def _machines_section(runs: Sequence[RunResult], records: Sequence[Mapping[str, Any]],
                      styles: Mapping[str, plots.SeriesStyle]) -> Section:
    labels = label_machines([r.machine for r in runs])
    columns: dict[tuple, list[RunResult]] = {}
    for run in runs:
        columns.setdefault((run.machine.identity_hash, run.machine.stack_hash), []).append(run)
    platforms_of: dict[tuple, set[str]] = {}
    path_key = {str(run.path): (run.machine.identity_hash, run.machine.stack_hash) for run in runs}
    for r in records:
        key = path_key.get(str(r["run"]))
        if key is not None:
            platforms_of.setdefault(key, set()).add(str(r["platform"]))
    keys = sorted(columns, key=lambda k: labels[k])
    head = "".join(f"<th>{_esc(labels[k])}</th>" for k in keys)

    def row(name: str, cells: Iterable[str]) -> str:
        return f'<tr><th scope="row">{_esc(name)}</th>' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"

    rows = [
        row("slug", (_esc(columns[k][0].machine.slug) for k in keys)),
        row("identity hash", (f"<code>{_esc(k[0])}</code>" for k in keys)),
        row("stack hash", (f"<code>{_esc(k[1] or 'not recorded')}</code>" for k in keys)),
        row("hardware", (_esc(_hardware_summary(columns[k][0].machine.identity)) for k in keys)),
        row("software stack", (_esc(_stack_summary(columns[k][-1].machine.stack)) for k in keys)),
        row("platforms (chart colour)", ("<br>".join(f"{_swatch(styles.get(p))}{_esc(p)}"
                                                     for p in sorted(platforms_of.get(k, ()))) or "-"
                                         for k in keys)),
        row("runs", ("<ul class=\"runs\">" + "".join(
            f"<li>{_esc(_when(run.datetime))}: <code>{_esc(run.path.name)}</code>, {len(run.cases)} case"
            f"{'s' * (len(run.cases) != 1)}</li>" for run in sorted(columns[k], key=lambda r: r.sort_key))
            + "</ul>" for k in keys)),
        row("cases (all runs)", (_esc(sum(len(r.cases) for r in columns[k])) for k in keys)),
    ]
    body = (f'<div class="table-wrap"><table class="machines"><thead><tr><th></th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')
    tables = [body]
    machines = [runs_[0].machine for runs_ in columns.values()]
    for title, diffs in (("Hardware identity differences", list_identity_differences(machines)),
                         ("Software stack differences", list_stack_differences(machines))):
        if not diffs:
            continue
        names = list(diffs[0][1])
        frame = pd.DataFrame([{"path": f"`{path}`", **{n: _diff_value(values.get(n)) for n in names}}
                              for path, values in diffs[:_MAX_DIFF_ROWS]])
        more = f" (the first {_MAX_DIFF_ROWS} of {len(diffs)})" if len(diffs) > _MAX_DIFF_ROWS else ""
        tables.append(f"<h3>{_esc(title)}{_esc(more)}</h3>" + _table_html(frame, {}, numeric_right=False))
    n_machines = len({k[0] for k in keys})
    notes = [f"{len(runs)} run{'s' * (len(runs) != 1)} of {n_machines} machine{'s' * (n_machines != 1)} "
             f"({len(keys)} hardware and software stack combination{'s' * (len(keys) != 1)}). A machine that ran "
             f"several software stacks gets a column per stack, labelled `@` and the stack hash's first digits.",
             "Each (platform, case) takes its entry from the latest run by the run's datetime."]
    section = Section("machines", "machines", "Machines", f"{len(keys)} side by side", notes=notes,
                      notes_beside=False)
    section.tables = tables
    return section


def _diff_value(value: Any) -> str:
    return "-" if value is None else str(value)


# ----------------------------------------------------------------------------------------------- groups


def _stats_index(runs: Sequence[RunResult]) -> dict[tuple, Mapping[str, Any]]:
    """Each case's stats by what a compare record carries of it: run path, group, device, function and median."""
    index = {}
    for run in runs:
        for case in run.cases:
            key = (str(run.path), case.group or "", str(case.params.get("device", "cpu")), case.key.function,
                   case.median_s * 1e3)
            index[key] = case.stats
    return index


def _with_quartiles(frame: pd.DataFrame, index: Mapping[tuple, Mapping[str, Any]]) -> pd.DataFrame:
    """The view's records with the rounds' first and third quartiles (q1_ms, q3_ms) of each case from its stats
    (NaN where the stats lack them)."""
    frame = frame.copy()
    q1, q3 = [], []
    for r in frame.itertuples(index=False):
        row = r._asdict()
        stats = index.get((str(row.get("run")), str(row.get("group") or ""), str(row.get("device")),
                           str(row.get("benchmark")), row.get("median_ms")), {})
        q1.append(float(stats["q1"]) * 1e3 if is_number(stats.get("q1")) else math.nan)
        q3.append(float(stats["q3"]) * 1e3 if is_number(stats.get("q3")) else math.nan)
    frame["q1_ms"], frame["q3_ms"] = q1, q3
    return frame


#: The platforms view's machine listing (shown once, in the machines section): its header lines and their items.
_MACHINE_NOTE_HEADS = ("Platforms (machine slug / device", "Identity differences between the machines",
                       "Software stack differences between the machines")


def _without_machine_listing(notes: Sequence[str]) -> list[str]:
    out, skipping = [], False
    for line in notes:
        if any(str(line).startswith(h) for h in _MACHINE_NOTE_HEADS):
            skipping = True
            continue
        if skipping and str(line).startswith("- "):
            continue
        skipping = False
        out.append(line)
    return out


def _noisy_notes(frame: pd.DataFrame) -> list[str]:
    cases = frame[frame["kind"] == "case"] if "kind" in frame.columns else frame
    noisy = []
    for r in cases.itertuples(index=False):
        row = r._asdict()
        median, iqr = row.get("median_ms"), row.get("iqr_ms")
        if is_number(median) and is_number(iqr) and median > 0 and iqr / median > NOISY_REL_IQR:
            noisy.append((iqr / median, plots.compact_case(str(row["case"]), 60), str(row["platform"])))
    if not noisy:
        return []
    noisy.sort(reverse=True)
    listed = "; ".join(f"`{c}` on `{p}` ({v:.2f})" for v, c, p in noisy[:_MAX_LISTED])
    more = f"; and {len(noisy) - _MAX_LISTED} more" if len(noisy) > _MAX_LISTED else ""
    return [f"Noisy: {len(noisy)} case{'s' * (len(noisy) != 1)} with an IQR over {NOISY_REL_IQR:.0%} of the median "
            f"(rel_iqr > {NOISY_REL_IQR:g}): wide error bars, and a speedup within that spread is not a difference. "
            f"Worst first: {listed}{more}."]


def _group_section(runs: Sequence[RunResult], group: str, *, baseline: str | None, names: Mapping[str, str],
                   styles: Mapping[str, plots.SeriesStyle], index: Mapping[tuple, Any], n: int) -> Section:
    notes: list[str] = []
    try:
        view = create_view("platforms", runs, groups=[group], baseline=baseline, platform_names=dict(names))
    except FerBenchError:
        if not baseline:
            raise
        view = create_view("platforms", runs, groups=[group], platform_names=dict(names))
        notes.append(f"--baseline {baseline} ran no case of this group: its baseline is the view's own choice.")
    name = group or "(no group)"
    section = Section(f"group-{_slug_id(name)}", "group", name, "benchmark group")
    if view.empty:
        section.notes = [*notes, *view.notes]
        return section
    frame = _with_quartiles(view.records, index)
    fig = plots.draw_platforms(frame, styles, meta=view.meta, params=view.records.attrs.get("params", []))
    if fig is not None:
        section.charts.append(plots.figure_to_svg(fig, f"c{n}-"))
    section.tables.append(_table_html(view.table, styles, drop=("group",)))
    section.notes = [*notes, *_without_machine_listing(view.notes), *_noisy_notes(view.records)]
    return section


def _view_section(view: str, table: ViewTable, styles: Mapping[str, plots.SeriesStyle], n: int) -> Section:
    section = Section(f"view-{view}", "view", VIEW_TITLES.get(view, view), f"compare --view {view}")
    fig = plots.draw_view(view, table, styles)
    if fig is not None:
        section.charts.append(plots.figure_to_svg(fig, f"c{n}-"))
    section.tables.append(_table_html(table.table, styles))
    section.notes = list(table.notes)
    return section


# ----------------------------------------------------------------------------------------------- gate


def _gate_section(report: Any, n: int) -> Section:
    from fer_bench.results.gate import format_gate_text, format_gate_value

    text = format_gate_text(report).splitlines()
    summary = text[-1] if text else f"exit {report.exit_status}"
    head = text[0] if text else ""
    status = report.exit_status
    cls = "fail" if status in (1, 2) else "warn" if status == 4 else ""
    section = Section("gate", "gate", "Gate", f"exit status {status}")
    section.body = (f'<p class="meta">{_esc(head)}</p>'
                    f'<p class="exit {cls}" data-exit-status="{status}">{_esc(summary)}</p>')
    fig = plots.draw_gate_figure(report)
    if fig is not None:
        section.charts.append(plots.figure_to_svg(fig, f"c{n}-"))
    rows = []
    for r in sorted(report.rows, key=lambda r: (plots.GATE_STATUS_ORDER.index(r.status)
                                                if r.status in plots.GATE_STATUS_ORDER else 99)):
        rows.append({
            "case": r.case, "status": r.status,
            "baseline": format_gate_value(r.baseline_value, report.metric),
            "current": format_gate_value(r.current_value, report.metric),
            "ratio": "-" if r.ratio is None else f"{r.ratio:.3f}",
            "interval": "-" if r.ci_low is None or r.ci_high is None else f"[{r.ci_low:.3f}, {r.ci_high:.3f}]",
            "MDE": "-" if r.mde is None else "any" if math.isinf(r.mde) else f"{r.mde:.1%}",
            "p (Holm)": "-" if r.p_corrected is None else f"{r.p_corrected:.2g}",
            "verdict": r.verdict,
        })
    caption = (f"metric {report.metric}, threshold {report.threshold:.1%}, alpha {report.alpha:g}; "
               f"{len(report.baseline)} baseline run(s)")
    section.tables.append(_table_html(pd.DataFrame(rows), {}, caption=caption))
    section.notes = [*report.messages, *report.notes]
    if report.baseline_only:
        section.notes.append(f"{len(report.baseline_only)} baseline case(s) not in the current runs: "
                             + ", ".join(f"`{c}`" for c in report.baseline_only[:5])
                             + (" ..." if len(report.baseline_only) > 5 else ""))
    section.notes.append("The report's own exit status is 0: the gate's is on the summary line above (0 no "
                         "regression, 1 regression, 2 no comparable baseline, 4 inconclusive).")
    return section


# ----------------------------------------------------------------------------------------------- the page


@dataclass
class Report:
    """A built report: its HTML and what it holds."""

    html: str
    sections: list[Section]
    gate_exit_status: int | None = None
    seconds: float = 0.0

    @property
    def n_charts(self) -> int:
        return sum(len(s.charts) for s in self.sections)


def build_report(runs: Sequence[RunResult], *, gate_baseline: Sequence[RunResult] | None = None,
                 baseline: str | None = None, groups: Sequence[str] | None = None,
                 platform_names: Mapping[str, str] | None = None, title: str | None = None,
                 gate_options: Mapping[str, Any] | None = None) -> Report:
    """The report of ``runs`` (and, with ``gate_baseline``, the gate of ``runs`` against it) as one HTML page.

    Raises:
        FerBenchError: matplotlib is missing; --group, --baseline or --platform-name match nothing; the gate's bad
            input (several current machines, no common case).
    """
    started = time.perf_counter()
    plots.require_matplotlib("fer-bench report")
    names = dict(platform_names or {})
    records, _ = collect_records(runs, groups, platform_names=names)
    create_view("platforms", runs, baseline=baseline, groups=groups, platform_names=names)  # checks --baseline
    styles = plots.create_platform_styles(str(r["platform"]) for r in records)
    sections = [_machines_section(runs, records, styles)]
    n = 0
    gate_status = None
    if gate_baseline is not None:
        from fer_bench.results.gate import evaluate_gate

        report = evaluate_gate(gate_baseline, runs, **dict(gate_options or {}))
        gate_status = report.exit_status
        n += 1
        sections.append(_gate_section(report, n))
    present = sorted({c.group or "" for r in runs for c in r.cases})
    index = _stats_index(runs)
    for group in present:
        if groups and group not in groups:
            continue
        n += 1
        sections.append(_group_section(runs, group, baseline=baseline, names=names, styles=styles, index=index,
                                       n=n))
    empty = []
    for view in VIEWS:
        if view == "platforms":
            continue
        table = create_view(view, runs, baseline=baseline, groups=groups, platform_names=names)
        if table.empty or not plots.has_data(view, table.records, table.meta):
            empty.append((view, table.notes[-1] if table.notes else "no data"))
            continue
        n += 1
        sections.append(_view_section(view, table, styles, n))
    if empty:
        section = Section("views-without-data", "empty", "Views without data", f"{len(empty)} views")
        section.body = "<ul>" + "".join(f"<li><strong>{_esc(VIEW_TITLES.get(v, v))}</strong> "
                                        f"(<code>--view {_esc(v)}</code>): {_inline(why)}</li>"
                                        for v, why in empty) + "</ul>"
        sections.append(section)
    seen: set[str] = set()
    for section in sections:  # two groups whose names differ only in punctuation keep ids of their own
        base, k = section.id, 2
        while section.id in seen:
            section.id, k = f"{base}-{k}", k + 1
        seen.add(section.id)
    page = _page(runs, sections, title=title, gate_status=gate_status, styles=styles)
    return Report(page, sections, gate_status, time.perf_counter() - started)


def _page(runs: Sequence[RunResult], sections: list[Section], *, title: str | None, gate_status: int | None,
          styles: Mapping[str, plots.SeriesStyle]) -> str:
    n_machines = len({r.machine.identity_hash for r in runs})
    title = title or f"fer-bench report: {len(runs)} run{'s' * (len(runs) != 1)} of {n_machines} " \
                     f"machine{'s' * (n_machines != 1)}"
    dates = sorted(r.datetime for r in runs if r.datetime is not None)
    span = f", made {_when(dates[0])} to {_when(dates[-1])}" if len(dates) > 1 else (
        f", made {_when(dates[0])}" if dates else "")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<li><a href="#{_esc(s.id)}">{_esc(s.title)}</a></li>' for s in sections)
    gate_line = ""
    gate = next((s for s in sections if s.kind == "gate"), None)
    if gate is not None:
        gate_line = f'<p class="meta">Gate: exit status {gate_status} (see <a href="#gate">Gate</a>)</p>'
    legend = " ".join(f'<span class="legend-item">{_swatch(st)}{_esc(p)}</span>' for p, st in styles.items())
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="fer_bench {_esc(__version__)}">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        f'<header class="top"><h1>{_esc(title)}</h1>'
        f'<p class="meta">{len(runs)} run{"s" * (len(runs) != 1)} of {n_machines} machine'
        f'{"s" * (n_machines != 1)}, {len(styles)} platform{"s" * (len(styles) != 1)}{_esc(span)}; generated '
        f"{_esc(now)} by fer-bench {_esc(__version__)}.</p>"
        f'<p class="meta">Platform colours, the same in every chart: {legend}</p>{gate_line}'
        f"<nav><ol>{nav}</ol></nav></header>\n<main>\n"
        + "\n".join(s.render() for s in sections)
        + "\n</main>\n<footer>Self-contained: no script, no external resource. Charts: matplotlib SVG. Tables and "
          "notes: <code>fer-bench compare</code>'s views; verdicts: <code>fer-bench gate</code>.</footer>\n"
          "</body></html>\n"
    )


# ----------------------------------------------------------------------------------------------- CLI


def _threshold(text: str) -> float:
    from fer_bench.results.gate import parse_threshold  # scipy: imported only when the option is given

    return parse_threshold(text)


def _alpha(text: str) -> float:
    from fer_bench.results.gate import parse_alpha

    return parse_alpha(text)


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `fer-bench report`."""
    parser.add_argument("runs", nargs="+", metavar="RUN_OR_DIR",
                        help="pytest-benchmark JSON files or folders (searched recursively); with --gate, the "
                             "current runs")
    parser.add_argument("-o", "--output", required=True, metavar="report.html",
                        help="the HTML file to write (atomically: a reader sees the old file or the new one)")
    parser.add_argument("--gate", nargs="+", metavar="BASELINE",
                        help="also gate the runs (the current side) against these baseline runs or folders, as "
                             "fer-bench gate does; the verdicts go into the page, the exit status stays 0")
    parser.add_argument("--baseline", metavar="SLUG",
                        help="platform (slug/device) or machine slug the others are compared with. "
                             "Default: the slowest by geometric mean")
    add_selection_arguments(parser)
    parser.add_argument("--title", metavar="T", help="the page's title. Default: how many runs of how many machines")
    parser.add_argument("--threshold", type=_threshold, default=0.05,
                        help="--gate: smallest change that counts, as 5%% or 0.05. Default: 5%%")
    parser.add_argument("--alpha", type=_alpha, default=0.01,
                        help="--gate: significance level after Holm's correction. Default: %(default)r")
    parser.add_argument("--allow-other-machine", action="store_true",
                        help="--gate: gate against a baseline measured on other hardware")
    parser.add_argument("--allow-missing", action="store_true",
                        help="--gate: skip current cases that the baseline lacks")


def cmd_report(args: argparse.Namespace) -> int:
    """Write the report; 0 once written (whatever the gate said), 3 on bad input (one line on stderr)."""
    try:
        output = Path(args.output)
        if output.is_dir():
            raise FerBenchError(f"-o {output}: is a folder; name the HTML file to write")
        runs = load_results(args.runs)
        gate_runs = None
        if args.gate:
            try:
                gate_runs = load_results(args.gate, exclude=[r.path for r in runs])
            except FerBenchError as exc:
                raise FerBenchError(f"--gate (the baseline runs, the report's runs left out): {exc}") from None
        report = build_report(
            runs, gate_baseline=gate_runs, baseline=args.baseline, groups=args.group,
            platform_names=parse_platform_names(args.platform_name), title=args.title,
            gate_options={"threshold": args.threshold, "alpha": args.alpha,
                          "allow_other_machine": args.allow_other_machine, "allow_missing": args.allow_missing},
        )
        try:
            write_text_atomic(output, report.html)
        except OSError as exc:
            raise FerBenchError(f"-o {output}: cannot write: {exc.strerror or exc}") from None
    except FerBenchError as exc:
        print(f"fer-bench report: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    size = len(report.html.encode("utf-8"))
    gate = f"; gate: exit status {report.gate_exit_status}" if report.gate_exit_status is not None else ""
    print(f"fer-bench report: wrote {output} ({size / 1e6:.2f} MB, {len(report.sections)} sections, "
          f"{report.n_charts} charts, {report.seconds:.1f} s){gate}", file=sys.stderr)
    return 0
