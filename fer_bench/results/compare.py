"""`fer-bench compare`: one view of stored runs across machines as markdown, csv or json, and with --plots every
view's chart. The views are fer_bench.results.views' registry, one module each; the records they start from are
fer_bench.results.records'. Pure functions over stored pytest-benchmark JSON (pandas and numpy; never torch).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

import pandas as pd

from fer_bench.errors import FerBenchError
from fer_bench.results.format import format_markdown_table
from fer_bench.results.records import collect_records, parse_platform_names
from fer_bench.results.runs import RunResult, load_results
from fer_bench.results.tables import ViewTable
from fer_bench.results.views import ViewInputs, get_view, list_views


COMPARE_METRICS = ("time", "samples_per_s", "samples_per_joule", "mfu")
FORMATS = ("md", "csv", "json")


def create_view(view: str, runs: Sequence[RunResult], *, metric: str = "time", baseline: str | None = None,
                groups: Sequence[str] | None = None, platform_names: dict[str, str] | None = None) -> ViewTable:
    """Build one view from loaded runs.

    Args:
        platform_names: ``--platform-name`` (machine slug, or slug/device -> the name shown), in every view.

    Raises:
        FerBenchError: unknown view or metric, --group, --baseline or --platform-name that matches nothing.
    """
    views = list_views()
    if view not in views:
        raise FerBenchError(f"--view {view!r}: choose one of {', '.join(views)}")
    if metric not in COMPARE_METRICS:
        raise FerBenchError(f"--metric {metric!r}: choose one of {', '.join(COMPARE_METRICS)}")
    spec = get_view(view)
    per_image = spec.counts == "per_image" or (metric == "samples_per_s" and spec.counts != "separate")
    records, notes = collect_records(runs, groups, per_image=per_image, platform_names=platform_names,
                                     note_superseded=not spec.every_run)
    table = spec.rows(ViewInputs(records, runs, metric, baseline))
    table.notes = notes + table.notes
    return table


def format_frame(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table."""
    if frame.empty:
        return ""
    return format_markdown_table(list(frame.columns), frame.itertuples(index=False))


def format_view(table: ViewTable, fmt: str = "md") -> str:
    """The view as markdown (notes, then the table), csv or json records."""
    if fmt == "csv":
        return table.records.to_csv(index=False)
    if fmt == "json":
        # through pandas' encoder for NaN -> null and numpy scalars, then json for readable output
        records = json.loads(table.records.to_json(orient="records")) if not table.empty else []
        return json.dumps(records, indent=2) + "\n"
    parts = [f"## fer-bench compare: {table.view}", ""]
    parts.extend(table.notes)
    if not table.empty:
        parts.extend(["", format_frame(table.table)])
    return "\n".join(parts) + "\n"


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """--group and --platform-name, shared by `fer-bench compare` and `fer-bench report`."""
    parser.add_argument("--group", nargs="+", action="extend", metavar="G",
                        help="only these pytest-benchmark groups (train_step, epoch, ...); put it after the runs")
    parser.add_argument("--platform-name", action="append", metavar="SLUG=NAME", dest="platform_name",
                        help="show a machine (its slug; the /device stays) or a platform (slug/device) under NAME "
                             "in every view, e.g. --platform-name epyc-2c=\"ordinary computer\" (repeatable)")


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `fer-bench compare`."""
    parser.add_argument("runs", nargs="+", metavar="RUN_OR_DIR",
                        help="pytest-benchmark JSON files or folders (searched recursively)")
    parser.add_argument("--baseline", metavar="SLUG",
                        help="platform (slug/device) or machine slug the others are compared with. "
                             "Default: the slowest by geometric mean")
    views = list_views()
    parser.add_argument("--view", choices=views, default="platforms",
                        help="; ".join(f"{name}: {get_view(name).help}".replace("%", "%%") for name in views)
                        + ". Default: %(default)r")
    parser.add_argument("--metric", choices=COMPARE_METRICS, default="time",
                        help="what the platforms view shows: time, samples_per_s, samples_per_joule (energy per "
                             "image, where measured), mfu (utilisation of the datasheet peak). Default: %(default)r")
    parser.add_argument("--format", choices=FORMATS, default="md", help="Default: %(default)r")
    parser.add_argument("--plots", metavar="DIR", help="also write one PNG per view with data into DIR "
                                                       "(needs matplotlib: pip install fer_bench[plots])")
    add_selection_arguments(parser)


def cmd_compare(args: argparse.Namespace) -> int:
    """Print the chosen view; with --plots also write the PNGs. Raises FerBenchError on bad input."""
    runs = load_results(args.runs)
    names = parse_platform_names(getattr(args, "platform_name", None))
    table = create_view(args.view, runs, metric=args.metric, baseline=args.baseline, groups=args.group,
                        platform_names=names)
    sys.stdout.write(format_view(table, args.format))
    if args.plots:
        from fer_bench.results.plots import write_plots

        views = {v: (table if v == args.view else create_view(v, runs, metric=args.metric, baseline=args.baseline,
                                                              groups=args.group, platform_names=names))
                 for v in list_views()}
        written = write_plots(views, args.plots)
        shown = ", ".join(str(p) for p in written) or "none (no view has data)"
        print(f"fer-bench compare: plots: {shown}", file=sys.stderr)
    return 0
