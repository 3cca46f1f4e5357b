"""`fer-bench report`: one self-contained HTML page per comparison, for people to look at.

The page holds, in order:

* **Machines**, side by side: each (hardware, software stack) a column with its label, slug, identity and stack
  hashes, a summary of its hardware and stack, its platforms (with the colour they have in every chart) and its
  runs (when each was made, how many cases); then the hardware identity and software stack differences between
  them (fer_bench.results.runs.list_identity_differences / list_stack_differences).
* With ``--gate BASELINE...`` (the runs given are then the current side), **Gate**: fer_bench.results.gate's verdicts
  as an interval plot (ratio and confidence interval per case, threshold lines, regressions first, coloured by
  status), the verdict table and the gate's exit status line. The report's own exit status stays 0.
* Then each registered compare view's sections, in the registry's order (fer_bench.results.views): the platforms
  view's, a section per **benchmark group** (throughput per case and platform as bars, IQR error bars from the
  rounds' first and third quartiles, converted to throughput; the speedup over the baseline platform beside each
  bar; over the platforms view of that group), and every **other view with data** its chart, its table and its
  notes; the views without data are listed last.

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
import math
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from fer_bench import __version__
from fer_bench._atomic import write_text_atomic
from fer_bench.errors import FerBenchError
from fer_bench.results import plots
from fer_bench.results.charts import SeriesStyle, create_platform_styles, figure_to_svg, require_matplotlib
from fer_bench.results.compare import add_selection_arguments, create_view
from fer_bench.results.gate_plot import GATE_STATUS_ORDER, draw_gate_figure
from fer_bench.results.records import collect_records, parse_platform_names
from fer_bench.results.report_html import (
    CSS,
    ReportContext,
    Section,
    esc,
    inline_markdown,
    swatch,
    table_html,
)
from fer_bench.results.runs import (
    RunResult,
    flatten_dict,
    label_machines,
    list_identity_differences,
    list_stack_differences,
    load_results,
)
from fer_bench.results.views import View, get_view, list_views


EXIT_BAD_INPUT = 3
_MAX_DIFF_ROWS = 60


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
                      styles: Mapping[str, SeriesStyle]) -> Section:
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
    head = "".join(f"<th>{esc(labels[k])}</th>" for k in keys)

    def row(name: str, cells: Iterable[str]) -> str:
        return f'<tr><th scope="row">{esc(name)}</th>' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"

    rows = [
        row("slug", (esc(columns[k][0].machine.slug) for k in keys)),
        row("identity hash", (f"<code>{esc(k[0])}</code>" for k in keys)),
        row("stack hash", (f"<code>{esc(k[1] or 'not recorded')}</code>" for k in keys)),
        row("hardware", (esc(_hardware_summary(columns[k][0].machine.identity)) for k in keys)),
        row("software stack", (esc(_stack_summary(columns[k][-1].machine.stack)) for k in keys)),
        row("platforms (chart colour)", ("<br>".join(f"{swatch(styles.get(p))}{esc(p)}"
                                                     for p in sorted(platforms_of.get(k, ()))) or "-"
                                         for k in keys)),
        row("runs", ("<ul class=\"runs\">" + "".join(
            f"<li>{esc(_when(run.datetime))}: <code>{esc(run.path.name)}</code>, {len(run.cases)} case"
            f"{'s' * (len(run.cases) != 1)}</li>" for run in sorted(columns[k], key=lambda r: r.sort_key))
            + "</ul>" for k in keys)),
        row("cases (all runs)", (esc(sum(len(r.cases) for r in columns[k])) for k in keys)),
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
        tables.append(f"<h3>{esc(title)}{esc(more)}</h3>" + table_html(frame, {}, numeric_right=False))
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


def _view_sections(view: View, ctx: ReportContext) -> list[Section]:
    """A view's usual section: its chart, its table and its notes; a view with nothing to show is listed under "Views
    without data" instead."""
    table = ctx.view(view.name)
    if table.empty or (view.plot is not None and not plots.has_data(view.name, table.records, table.meta)):
        ctx.without_data.append((view.name, view.title, table.notes[-1] if table.notes else "no data"))
        return []
    prefix = ctx.next_chart_prefix()
    section = Section(f"view-{view.name}", "view", view.title, f"compare --view {view.name}")
    fig = plots.draw_view(view.name, table, ctx.styles)
    if fig is not None:
        section.charts.append(figure_to_svg(fig, prefix))
    section.tables.append(table_html(table.table, ctx.styles))
    section.notes = list(table.notes)
    return [section]


def _gate_section(report: Any, prefix: str) -> Section:
    from fer_bench.results.gate import format_gate_text, format_gate_value

    text = format_gate_text(report).splitlines()
    summary = text[-1] if text else f"exit {report.exit_status}"
    head = text[0] if text else ""
    status = report.exit_status
    cls = "fail" if status in (1, 2) else "warn" if status == 4 else ""
    section = Section("gate", "gate", "Gate", f"exit status {status}")
    section.body = (f'<p class="meta">{esc(head)}</p>'
                    f'<p class="exit {cls}" data-exit-status="{status}">{esc(summary)}</p>')
    fig = draw_gate_figure(report)
    if fig is not None:
        section.charts.append(figure_to_svg(fig, prefix))
    rows = []
    for r in sorted(report.rows, key=lambda r: (GATE_STATUS_ORDER.index(r.status)
                                                if r.status in GATE_STATUS_ORDER else 99)):
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
    section.tables.append(table_html(pd.DataFrame(rows), {}, caption=caption))
    section.notes = [*report.messages, *report.notes]
    if report.baseline_only:
        section.notes.append(f"{len(report.baseline_only)} baseline case(s) not in the current runs: "
                             + ", ".join(f"`{c}`" for c in report.baseline_only[:5])
                             + (" ..." if len(report.baseline_only) > 5 else ""))
    section.notes.append("The report's own exit status is 0: the gate's is on the summary line above (0 no "
                         "regression, 1 regression, 2 no comparable baseline, 4 inconclusive).")
    return section


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
    require_matplotlib("fer-bench report")
    names = dict(platform_names or {})
    records, _ = collect_records(runs, groups, platform_names=names)
    create_view("platforms", runs, baseline=baseline, groups=groups, platform_names=names)  # checks --baseline
    styles = create_platform_styles(str(r["platform"]) for r in records)
    ctx = ReportContext(runs, styles, create_view, baseline=baseline, groups=groups, platform_names=names)
    sections = [_machines_section(runs, records, styles)]
    gate_status = None
    if gate_baseline is not None:
        from fer_bench.results.gate import evaluate_gate

        report = evaluate_gate(gate_baseline, runs, **dict(gate_options or {}))
        gate_status = report.exit_status
        sections.append(_gate_section(report, ctx.next_chart_prefix()))
    for name in list_views():
        view = get_view(name)
        sections.extend(view.report(ctx) if view.report is not None else _view_sections(view, ctx))
    if ctx.without_data:
        section = Section("views-without-data", "empty", "Views without data", f"{len(ctx.without_data)} views")
        section.body = "<ul>" + "".join(f"<li><strong>{esc(heading)}</strong> "
                                        f"(<code>--view {esc(v)}</code>): {inline_markdown(why)}</li>"
                                        for v, heading, why in ctx.without_data) + "</ul>"
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
          styles: Mapping[str, SeriesStyle]) -> str:
    n_machines = len({r.machine.identity_hash for r in runs})
    title = title or f"fer-bench report: {len(runs)} run{'s' * (len(runs) != 1)} of {n_machines} " \
                     f"machine{'s' * (n_machines != 1)}"
    dates = sorted(r.datetime for r in runs if r.datetime is not None)
    span = f", made {_when(dates[0])} to {_when(dates[-1])}" if len(dates) > 1 else (
        f", made {_when(dates[0])}" if dates else "")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<li><a href="#{esc(s.id)}">{esc(s.title)}</a></li>' for s in sections)
    gate_line = ""
    gate = next((s for s in sections if s.kind == "gate"), None)
    if gate is not None:
        gate_line = f'<p class="meta">Gate: exit status {gate_status} (see <a href="#gate">Gate</a>)</p>'
    legend = " ".join(f'<span class="legend-item">{swatch(st)}{esc(p)}</span>' for p, st in styles.items())
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="fer_bench {esc(__version__)}">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n"
        f'<header class="top"><h1>{esc(title)}</h1>'
        f'<p class="meta">{len(runs)} run{"s" * (len(runs) != 1)} of {n_machines} machine'
        f'{"s" * (n_machines != 1)}, {len(styles)} platform{"s" * (len(styles) != 1)}{esc(span)}; generated '
        f"{esc(now)} by fer-bench {esc(__version__)}.</p>"
        f'<p class="meta">Platform colours, the same in every chart: {legend}</p>{gate_line}'
        f"<nav><ol>{nav}</ol></nav></header>\n<main>\n"
        + "\n".join(s.render() for s in sections)
        + "\n</main>\n<footer>Self-contained: no script, no external resource. Charts: matplotlib SVG. Tables and "
          "notes: <code>fer-bench compare</code>'s views; verdicts: <code>fer-bench gate</code>.</footer>\n"
          "</body></html>\n"
    )


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
