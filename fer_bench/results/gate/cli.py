"""`fer-bench gate`'s command line: its options and validators (shared with `fer-bench ab`) and cmd_gate."""

from __future__ import annotations

import argparse
import math
import sys

from fer_bench.errors import FerBenchError
from fer_bench.results.gate.evaluate import evaluate_gate
from fer_bench.results.gate.text import format_gate_json, format_gate_text
from fer_bench.results.gate.verdict import EXIT_BAD_INPUT, METRICS, SCOPES, resolve_threshold
from fer_bench.results.runs import load_results


def parse_threshold(text: str) -> float:
    """'5%' or '0.05' -> 0.05."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage (5%) or a fraction (0.05)") from None
    if not raw.endswith("%") and value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: write a percentage (5%) or a fraction below 1 (0.05)")
    if not (0 <= value < 10) or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0% and 1000%")
    return value


def parse_alpha(text: str) -> float:
    """A significance level strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1 (e.g. 0.01)")
    return value


def add_verdict_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that shape the verdict, shared by `fer-bench gate` and `fer-bench ab`."""
    parser.add_argument("--threshold", type=parse_threshold, default=None,
                        help="smallest change that counts, as 5%% or 0.05. Default: 5%%; 1%% with --metric "
                             "instructions (a count's noise is a tenth of a percent)")
    parser.add_argument("--alpha", type=parse_alpha, default=0.01,
                        help="significance level after Holm's correction over cases. Default: %(default)r")
    parser.add_argument("--metric", choices=METRICS, default="time",
                        help="what is compared: the rounds' time, samples_per_s, peak_memory_bytes, "
                             "samples_per_joule, or instructions (the counts of --fer-instructions). Default: "
                             "%(default)r")
    parser.add_argument("--allow-missing", action="store_true",
                        help="skip current cases that the baseline lacks instead of failing (exit 2)")
    parser.add_argument("--scope", choices=SCOPES, default=None,
                        help="paired runs only: cases (every case gates, Holm over cases) or suite (one test of the "
                             "geometric mean over cases decides; the cases gate once it is a significant "
                             "regression). Default: suite for fer-bench ab, cases for fer-bench gate and for "
                             "--metric instructions")
    parser.add_argument("--allow-inconclusive", action="store_true",
                        help="exit 0, not 4, when the only finding is inconclusive cases (their noise hides a change "
                             "of the threshold's size); the rows stay marked inconclusive")


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `fer-bench gate`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Gate the current run (the last argument) against pooled baseline runs: per case, the ratio of medians,\n"
        "a Mann-Whitney U test (Holm-corrected) and a bootstrap interval that carries run-to-run noise when the\n"
        "baseline has several runs. How it decides and its measured calibration: docs/gate.md."
    )
    parser.epilog = ("exit status: 0 no regression, 1 regression, 2 no comparable baseline (other machine or "
                     "missing case),\n3 bad input (one line on stderr), 4 inconclusive: no regression, but a tested "
                     "case's minimum\ndetectable effect (MDE) exceeds the threshold, or a case was measured only on "
                     "a contended machine\n(--allow-inconclusive: 0). 2 wins over 1, 1 over 4.")
    parser.add_argument("runs", nargs="+", metavar="RUN_OR_DIR",
                        help="baseline runs (files or folders, pooled) then, last, the current run")
    add_verdict_arguments(parser)
    parser.add_argument("--allow-other-machine", action="store_true",
                        help="gate against a baseline measured on other hardware (a different identity hash)")
    parser.add_argument("--paired", action="store_true",
                        help="the two arguments are folders of runs made in pairs (fer-bench ab): the i-th oldest "
                             "baseline run against the i-th oldest current run, a t test on the per-pair ratios")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="Default: %(default)r")


def cmd_gate(args: argparse.Namespace) -> int:
    """Run the gate; the exit status is the verdict. Bad input prints one line and returns 3."""
    try:
        if len(args.runs) < 2:
            raise FerBenchError("give at least one baseline and the current run (the last argument)")
        paired = getattr(args, "paired", False)
        if paired and len(args.runs) != 2:
            raise FerBenchError(f"--paired takes two folders (baseline runs, current runs), not {len(args.runs)} "
                                f"arguments")
        current = load_results(args.runs[-1:])
        baseline = load_results(args.runs[:-1], exclude=[r.path for r in current])
        report = evaluate_gate(
            baseline, current, metric=args.metric, threshold=resolve_threshold(args.threshold, args.metric),
            alpha=args.alpha,
            allow_other_machine=args.allow_other_machine, allow_missing=args.allow_missing,
            allow_inconclusive=args.allow_inconclusive, paired=paired, scope=args.scope or "cases",
        )
    except FerBenchError as exc:
        print(f"fer-bench gate: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.format == "json":
        print(format_gate_json(report))
    elif report.rows:
        print(format_gate_text(report))
    for message in report.messages:
        print(f"fer-bench gate: {message}", file=sys.stderr)
    return report.exit_status


