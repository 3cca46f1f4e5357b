"""`fer-bench <subcommand>`: create_parser() plus one cmd_* function per subcommand and a dispatch dict.

Subcommands import what they need lazily, so `fer-bench compare`, `fer-bench gate` and `fer-bench ab` never import
torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

from fer_bench import __version__
from fer_bench.errors import FerBenchError


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


def cmd_data_inspect(args: argparse.Namespace) -> int:
    from fer_bench.data.inspect import format_inspect, inspect_data

    report = inspect_data(args.path, ferplus=args.ferplus, size=args.size, seed=args.seed)
    if args.json:
        _print_json(report)
    else:
        print(format_inspect(report))
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from fer_bench.data.synthetic import create_synthetic
    from fer_bench.data.writers import write_dataset

    data = create_synthetic(size=args.size, seed=args.seed)
    written = write_dataset(data, args.out, args.format)
    print(f"wrote the {len(data)}-image synthetic set as {args.format} to {args.out} ({len(written)} files)")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from fer_bench.models import describe_models

    rows = describe_models(args.pattern)
    if args.json:
        _print_json(rows)
        return 0
    from fer_bench.results.format import format_text_table

    table = [[r["name"], f"{r['num_params']:,}", f"{r['in_chans']}x{r['input_size']}x{r['input_size']}",
              f"{r['gflops']:.3f}"] for r in rows]
    print(format_text_table(["name", "params", "input", "GFLOPs"], table, right=(1, 2, 3)))
    return 0


def cmd_fingerprint(args: argparse.Namespace) -> int:
    from fer_bench.machine import fingerprint as hardware
    from fer_bench.machine.allocator import configure_malloc

    try:
        configure_malloc(args.malloc)  # the stack (malloc) a benchmark run with --fer-malloc MODE records
    except RuntimeError as exc:
        raise FerBenchError(f"--malloc {args.malloc}: {exc}; pass --malloc system") from None
    fp = hardware.collect_fingerprint()
    if args.slug:
        print(fp["slug"])
    elif args.mlperf:
        _print_json(hardware.to_mlperf(fp))
    elif args.json:
        _print_json(fp)
    else:
        print(hardware.format_fingerprint(fp))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from fer_bench.plugin.summary import list_preset_costs

    for line in list_preset_costs(args.path, args.preset or ()):
        print(line)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from fer_bench.results.compare import cmd_compare as run

    return run(args)


def cmd_gate(args: argparse.Namespace) -> int:
    from fer_bench.results.gate import cmd_gate as run

    return run(args)


def cmd_ab(args: argparse.Namespace) -> int:
    from fer_bench.ab import cmd_ab as run

    return run(args)


def cmd_report(args: argparse.Namespace) -> int:
    from fer_bench.results.report import cmd_report as run

    return run(args)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return value


#: Subcommands whose options import pandas or scipy: registered only when one of them is the command.
HEAVY_COMMANDS = ("compare", "gate", "ab", "report")


def create_parser(load: Sequence[str] = HEAVY_COMMANDS) -> argparse.ArgumentParser:
    """The fer-bench parser; ``load`` names the pandas- or scipy-backed subcommands whose options are registered."""
    parser = argparse.ArgumentParser(
        prog="fer-bench", description="Time facial-expression-recognition CNN training across hardware."
    )
    parser.add_argument("--version", action="version", version=f"fer_bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    data = sub.add_parser("data", help="inspect FER2013 copies and write the synthetic set")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data_sub.required = True

    p = data_sub.add_parser("inspect", help="detected format, counts per split and class, pixel mean and std")
    p.add_argument("path", nargs="?", help="a FER2013 copy (csv file or image folder). Default: the synthetic set")
    p.add_argument("--ferplus", metavar="CSV", help="FER+ vote file (fer2013new.csv) to take labels from")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--size", type=_positive_int, default=None,
                   help="synthetic set only: total images (split sizes and imbalance scaled). Default: FER2013's 35887")
    p.add_argument("--seed", type=int, default=0, help="synthetic set only: seed. Default: %(default)r")
    p.set_defaults(func=cmd_data_inspect)

    p = data_sub.add_parser("synth", help="write the synthetic set in a real FER2013 format")
    p.add_argument("out", help="output path: a .csv file for --format csv, a folder for --format folder")
    from fer_bench.data.writers import DATASET_FORMATS  # numpy only, no torch

    p.add_argument("--format", choices=DATASET_FORMATS, default="csv",
                   help="csv: fer2013.csv; icml: icml_face_data.csv; train: train.csv (Training rows); test: test.csv "
                        "(test rows, pixels only); folder: train/ and test/ of class folders. Default: %(default)r")
    p.add_argument("--size", type=_positive_int, default=None, help="total images. Default: FER2013's 35887")
    p.add_argument("--seed", type=int, default=0, help="Default: %(default)r")
    p.set_defaults(func=cmd_data_synth)

    p = sub.add_parser("models", help="list the registered models")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern. Default: %(default)r")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("fingerprint", help="print this machine's fingerprint: hardware identity and software stack")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="the whole fingerprint as JSON")
    g.add_argument("--slug", action="store_true", help="only the readable slug of the hardware (the results folder)")
    g.add_argument("--mlperf", action="store_true", help="as an MLPerf system description")
    p.add_argument("--malloc", choices=("steady", "system"), default="steady",
                   help="the software stack of a benchmark run with this --fer-malloc. Default: %(default)r")
    p.set_defaults(func=cmd_fingerprint)

    p = sub.add_parser("presets", help="each preset's cases per benchmark, its time budget and its expected time "
                                       "on this machine (from the runs under results/<slug>/)")
    p.add_argument("path", nargs="?", default="benchmarks", help="the benchmark modules. Default: %(default)r")
    from fer_bench.plugin.presets import PRESETS  # torch-free

    p.add_argument("--preset", action="append", choices=list(PRESETS),
                   help="only this preset (repeatable). Default: every preset")
    p.set_defaults(func=cmd_presets)

    # compare and gate import pandas, ab the gate's scipy: their options are registered only when one of them is the
    # command, so every other subcommand (a warm `data inspect` above all) starts without paying for that import
    for name, text, func in (("compare", "compare stored runs across machines", cmd_compare),
                             ("gate", "statistical regression gate between stored runs", cmd_gate),
                             ("ab", "run this checkout and a baseline commit alternately, then gate the pairs",
                              cmd_ab),
                             ("report", "one self-contained HTML page of stored runs: the machines side by side, a "
                                        "chart and table per group and view, and with --gate the gate's verdicts",
                              cmd_report)):
        p = sub.add_parser(name, help=text, description=text)
        if name in load:
            if name == "compare":
                from fer_bench.results.compare import add_compare_arguments as add_arguments
            elif name == "gate":
                from fer_bench.results.gate import add_gate_arguments as add_arguments
            elif name == "report":
                from fer_bench.results.report import add_report_arguments as add_arguments
            else:
                from fer_bench.ab import add_ab_arguments as add_arguments
            add_arguments(p)
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = create_parser(load=[a for a in argv[:1] if a in HEAVY_COMMANDS])
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        # the gate's exit statuses give 2 to "no comparable baseline": a bad option is bad input (3) there (and in
        # ab, which ends with the gate, and in report, which can hold a gate)
        if argv[:1] in (["gate"], ["ab"], ["report"]) and exc.code == 2:
            return 3
        raise
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except FerBenchError as exc:
        print(f"fer-bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fer-bench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
