"""The pieces `fer-bench report` builds its page from: escaping, notes (inline markdown, caveats highlighted), tables,
colour swatches, a Section of the page and its style sheet, and the ReportContext a view builds its sections in.

Kept as a few f-strings over html.escape rather than jinja2 templates: the page is one fixed layout whose every
value goes through one escaping function, and jinja2 would be a dependency to declare (it is installed here only as
torch's).
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import pandas as pd

from fer_bench.results.charts import SeriesStyle
from fer_bench.results.format import format_number, is_number

if TYPE_CHECKING:
    from fer_bench.results.runs import RunResult
    from fer_bench.results.tables import ViewTable


#: Notes that qualify the numbers beside them (shown highlighted): different work, missing baselines, launch-bound
#: steps, noisy cases, emulated precisions, missed targets, inferred figures, the gate's findings.
_CAVEATS = re.compile(r"did different work|no (comparable )?baseline|launch-bound|^noisy|emulated|missed the target|"
                      r"ran no (fp32|eager)|no n=1 run|have no n=1|^left out|inferred|not comparable|^inconclusive|"
                      r"^regression|other hardware|changed since|--baseline .* ran no case", re.I)


def esc(value: Any) -> str:
    """Text escaped for HTML, quotes included."""
    return html.escape(str(value), quote=True)


def inline_markdown(text: Any) -> str:
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
            items.append(inline_markdown(line[2:]))
            continue
        flush()
        caveat = bool(_CAVEATS.search(line))
        parts.append(f'<p class="note{" caveat" if caveat else ""}">{inline_markdown(line)}</p>')
    flush()
    return "".join(parts)


def swatch(style: SeriesStyle | None) -> str:
    """A platform's colour (and hatch) as a small square before its name; empty without a style."""
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
        return esc(format_number(value))
    return inline_markdown(value)


def table_html(frame: pd.DataFrame, styles: Mapping[str, SeriesStyle], *, caption: str = "",
               numeric_right: bool = True, drop: Sequence[str] = ()) -> str:
    """A DataFrame as an HTML table; a platform column header or cell gets the platform's colour swatch. Columns
    that are empty in every row, and those in ``drop``, are left out."""
    if frame is None or frame.empty:
        return ""
    keep = [c for c in frame.columns if c not in drop and not all(_cell(v) == "" for v in frame[c])]
    frame = frame[keep]
    head = "".join(f"<th>{swatch(styles.get(str(c)))}{esc(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, row):
            text = _cell(value)
            if column == "platform" and str(value) in styles:
                text = swatch(styles[str(value)]) + text
            cls = ' class="num"' if numeric_right and is_number(value) else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{inline_markdown(caption)}</caption>" if caption else ""
    return (f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def slug_id(text: str) -> str:
    """Text as an element id: lower case, runs of other characters as '-'."""
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
        sub = f' <span class="kind">{esc(self.subtitle)}</span>' if self.subtitle else ""
        main = self.body + "".join(f'<figure class="chart">{c}</figure>' for c in self.charts) + "".join(self.tables)
        aside = (f'<aside class="notes"><h3>Notes</h3>{_notes_html(self.notes)}</aside>' if self.notes else "")
        if aside and not self.notes_beside:
            main, aside = aside.replace('class="notes"', 'class="notes above"') + main, ""
        layout = "body with-notes" if aside else "body"
        return (f'<section id="{esc(self.id)}" class="section {self.kind}" data-kind="{self.kind}" '
                f'data-charts="{len(self.charts)}" data-tables="{len(self.tables)}">'
                f'<h2>{esc(self.title)}{sub}</h2><div class="{layout}"><div class="main">{main}</div>{aside}</div>'
                f'</section>')


CSS = """
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


@dataclass
class ReportContext:
    """What a view builds its report sections from: the runs and the page's options, the platform colours, and
    compare's create_view passed down (a view module never imports the command that lists it)."""

    runs: Sequence[RunResult]
    styles: Mapping[str, SeriesStyle]
    create_view: Callable[..., ViewTable]
    baseline: str | None = None
    groups: Sequence[str] | None = None
    platform_names: Mapping[str, str] = field(default_factory=dict)
    #: charts given an id prefix so far: every chart of the page gets its own (``c1-``, ``c2-``, ...)
    charts: int = 0
    #: (view name, title, why) of the views with nothing to show, listed at the end of the page
    without_data: list[tuple[str, str, str]] = field(default_factory=list)

    def next_chart_prefix(self) -> str:
        """The id prefix of the next chart of the page."""
        self.charts += 1
        return f"c{self.charts}-"

    def view(self, name: str, **options: Any) -> ViewTable:
        """compare's view ``name`` of the report's runs, with the page's baseline, groups and platform names unless
        ``options`` say otherwise."""
        chosen = {"baseline": self.baseline, "groups": self.groups, "platform_names": dict(self.platform_names)}
        return self.create_view(name, self.runs, **{**chosen, **options})
