"""The --fer-* options: one per axis from the registry (fer_bench.axes), plus the run's own options.

A bad value fails when the command line is parsed, naming the offending text and the valid values, before any
test is collected. Every option defaults to None, so the plugin can tell a session that asked for fer_bench from
one that did not (see fer_bench.plugin: it stays inert in the latter).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fer_bench.axes import int_parser, option_axes
from fer_bench.machine.allocator import MODES as MALLOC_MODES
from fer_bench.machine.node import parse_node_name
from fer_bench.measure.contention import CONTENTION_THRESHOLD, MAX_QUIET_WAIT_S, QUIET_SAMPLE_S
from fer_bench.plugin.budget import format_duration, parse_duration
from fer_bench.plugin.progress import parse_progress
from fer_bench.plugin.presets import PRESETS

DEFAULT_PRESET = "default"
DEFAULT_MALLOC = "steady"
#: --fer-ddp-timeout's default (fer_bench.engine.distributed.DEFAULT_TIMEOUT_S; the engine is not imported here)
DEFAULT_DDP_TIMEOUT_S = 300.0


def parse_preset(text: str) -> str:
    if text not in PRESETS:
        raise argparse.ArgumentTypeError(f"--fer-preset: {text!r} is not a preset; valid: {', '.join(PRESETS)}")
    return text


def positive_int_option(option: str):
    """A parser of a positive integer option whose error names ``option``."""
    def parse(text: str) -> int:
        try:
            return int_parser(1)(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{option}: {exc}") from None

    return parse


parse_epoch_images = positive_int_option("--fer-epoch-images")
parse_repeats = positive_int_option("--fer-repeats")
parse_max_epochs = positive_int_option("--fer-max-epochs")


def parse_data_path(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"--fer-data: {text!r} does not exist")
    return path


def parse_malloc(text: str) -> str:
    if text not in MALLOC_MODES:
        raise argparse.ArgumentTypeError(f"--fer-malloc: {text!r} is not a mode; valid: {', '.join(MALLOC_MODES)}")
    return text


def _bounded_float(option: str, text: str, high: float, what: str, examples: str, unit: str = "") -> float:
    """A number above 0 and at most ``high`` (``unit`` may follow it: ``2s``), or one line naming the option, the
    text and the range."""
    try:
        value = float(text.strip().removesuffix(unit) if unit else text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= high:
        raise argparse.ArgumentTypeError(f"{option}: {text!r} is not {what} from above 0 to {high:g} ({examples})")
    return value


def parse_round_time(text: str) -> float:
    return _bounded_float("--fer-round-time", text, 600, "a time in seconds", "0.3, 2s", unit="s")


def parse_target_accuracy(text: str) -> float:
    """A fraction (0.7) or a percentage (70%), above 0 and at most 1."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"--fer-target-accuracy: {text!r} is not an accuracy from above 0 to 1 "
                                         f"(0.7, 70%)")
    return value


def parse_peak_tflops(text: str) -> float:
    return _bounded_float("--fer-peak-tflops", text, 1e6, "a peak in TFLOP/s", "3.2, 989")


def parse_node(text: str) -> str:
    try:
        return parse_node_name(text, "--fer-node")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_bucket_cap(text: str) -> float:
    return _bounded_float("--fer-ddp-bucket-cap-mb", text, 4096, "a size in MiB", "25, 1, 0.5")


#: Every --fer-* destination, for telling whether a session asked for fer_bench.
def option_dests() -> list[str]:
    return [axis.dest for axis in option_axes()] + [
        "fer_preset", "fer_data", "fer_epoch_images", "fer_allow_missing_baseline", "fer_allow_other_machine",
        "fer_allow_other_workload", "fer_malloc", "fer_save", "fer_budget", "fer_progress", "fer_round_time",
        "fer_ddp_bucket_cap_mb", "fer_ddp_gradient_as_bucket_view", "fer_ddp_static_graph", "fer_ddp_verify",
        "fer_repeats", "fer_max_epochs", "fer_target_accuracy", "fer_curve_tsv", "fer_profile_ops", "fer_peak_tflops",
        "fer_resume", "fer_journal", "fer_ddp_timeout", "fer_node",
        "fer_remeasure_contended", "fer_instructions"]


def add_fer_options(group) -> None:
    """Register the --fer-* options on a pytest option group (or anything with an argparse-like addoption)."""
    for axis in option_axes():
        group.addoption(axis.option, dest=axis.dest, type=axis.parse_list, default=None, metavar="LIST",
                        help=f"{axis.help}; comma list, overrides the preset's values. Default: from --fer-preset")
    group.addoption("--fer-preset", dest="fer_preset", type=parse_preset, default=None, metavar="NAME",
                    help="named matrix: " + "; ".join(f"{k}: {v.description}" for k, v in PRESETS.items())
                    + f". Default: {DEFAULT_PRESET!r}")
    group.addoption("--fer-data", dest="fer_data", type=parse_data_path, default=None, metavar="PATH",
                    help="a FER2013 copy (any format `fer-bench data inspect` reads). Default: the synthetic set")
    group.addoption("--fer-epoch-images", dest="fer_epoch_images", type=parse_epoch_images, default=None,
                    metavar="N", help="cap on the training images one epoch or loader pass uses. Default: the "
                                      "preset's")
    group.addoption("--fer-allow-missing-baseline", dest="fer_allow_missing_baseline", action="store_true",
                    default=None, help="with --benchmark-compare: a case the baseline lacks is reported, not a "
                                       "failure. Default: off (fail closed)")
    group.addoption("--fer-allow-other-machine", dest="fer_allow_other_machine", action="store_true",
                    default=None, help="with --benchmark-compare: compare with the newest stored run even when no "
                                       "run of this hardware exists. Default: off (fail closed)")
    group.addoption("--fer-allow-other-workload", dest="fer_allow_other_workload", action="store_true",
                    default=None, help="with --benchmark-compare: a case whose baseline did other work (another "
                                       "image count, input size or data set) is reported, not a failure. "
                                       "Default: off (fail closed)")
    group.addoption("--fer-malloc", dest="fer_malloc", type=parse_malloc, default=None, metavar="MODE",
                    help="glibc malloc for the run: 'steady' fixes its mmap and trim thresholds so a step's buffers "
                         "reuse warm heap pages in every process (run-to-run noise of a training step fell from 6%% "
                         "to 1.2%% here); 'system' leaves malloc as it started. Recorded in the fingerprint. "
                         f"Default: {DEFAULT_MALLOC!r}")
    group.addoption("--fer-save", dest="fer_save", action="store_true", default=None,
                    help="save this run under results/<machine slug>/ with its fingerprint (the README's bench "
                         "command). Default: off")
    group.addoption("--fer-node", dest="fer_node", type=parse_node, default=None, metavar="NAME",
                    help="the node this run is recorded as (fer_bench.run.node in the JSON, and in the saved "
                         "file's name), telling a fleet's runs apart. Default: $FER_BENCH_NODE, else SLURM's "
                         "$SLURMD_NODENAME, else the hostname")
    group.addoption("--fer-budget", dest="fer_budget", type=parse_duration, default=None, metavar="DURATION",
                    help="time the whole run may take (90s, 2m, 1h, 10m30s, or none): each case's rounds are "
                         "planned to fit, and a case whose minimum rounds do not is skipped with the time it "
                         "needs. Default: the preset's (" + ", ".join(
                             f"{k} {_budget_text(v.budget_s)}" for k, v in PRESETS.items()) + ")")
    group.addoption("--fer-round-time", dest="fer_round_time", type=parse_round_time, default=None,
                    metavar="SECONDS",
                    help="time the timed rounds of a step case should fill (a data-loader pass gets twice, an epoch "
                         "case four times this): more rounds give a steadier median on a noisy machine. Default: "
                         "the preset's (" + ", ".join(f"{k} {v.target_round_s:g} s" for k, v in PRESETS.items())
                         + ")")
    group.addoption("--fer-ddp-bucket-cap-mb", dest="fer_ddp_bucket_cap_mb", type=parse_bucket_cap, default=None,
                    metavar="MIB",
                    help="DistributedDataParallel's gradient bucket size: a small FER CNN's whole gradient fits in "
                         "the default 25 MiB bucket, so its all-reduce cannot overlap the backward pass; a smaller "
                         "bucket lets it. Default: 25")
    group.addoption("--fer-ddp-gradient-as-bucket-view", dest="fer_ddp_gradient_as_bucket_view",
                    action="store_true", default=None,
                    help="DDP's gradient_as_bucket_view (gradients are views into the buckets: less memory and one "
                         "copy fewer). Default: off")
    group.addoption("--fer-ddp-static-graph", dest="fer_ddp_static_graph", action="store_true", default=None,
                    help="DDP's static_graph (the graph never changes: skips re-deriving which parameters get "
                         "gradients). Default: off")
    group.addoption("--fer-ddp-verify", dest="fer_ddp_verify", action="store_true", default=None,
                    help="before timing a DDP case, run one DDP step on each rank's DistributedSampler share of a "
                         "seeded global batch and compare it with one process's step on the whole batch: a "
                         "mismatch fails the case naming the largest parameter difference, a match is recorded "
                         "as extra_info['ddp_verified']. Default: off")
    group.addoption("--fer-repeats", dest="fer_repeats", type=parse_repeats, default=None, metavar="N",
                    help="time to accuracy: seeded runs per case (seeds 0..N-1); the score drops the fastest and "
                         "the slowest of 3 or more and averages the rest, and at most one run may miss. Default: "
                         "the preset's (" + ", ".join(f"{k} {v.repeats}" for k, v in PRESETS.items()) + ")")
    group.addoption("--fer-target-accuracy", dest="fer_target_accuracy", type=parse_target_accuracy, default=None,
                    metavar="ACC",
                    help="time to accuracy: the validation accuracy a run must reach (0.7 or 70%%). Default: 0.70 "
                         "on the synthetic set, 0.60 on a FER2013 file (--fer-data)")
    group.addoption("--fer-max-epochs", dest="fer_max_epochs", type=parse_max_epochs, default=None, metavar="N",
                    help="time to accuracy: the epoch cap; a run that has not reached the target by then missed "
                         "it. Default: the preset's (" + ", ".join(f"{k} {v.max_epochs}" for k, v in PRESETS.items())
                         + ")")
    group.addoption("--fer-curve-tsv", dest="fer_curve_tsv", action="store_true", default=None,
                    help="time to accuracy: also write each run's per-epoch curve as a DAWNBench-style TSV (epoch, "
                         "hours, top1Accuracy, macro-F1, loss) into <results JSON>.curves/; needs --benchmark-json. "
                         "Default: off")
    group.addoption("--fer-profile-ops", dest="fer_profile_ops", action="store_true", default=None,
                    help="after each step case's timed rounds, profile a few extra steps with torch.profiler and "
                         "write a Chrome trace and tables of self time by operator and category into "
                         "<results JSON>.ops/; the category shares go into extra_info. Needs --benchmark-json. "
                         "Default: off")
    group.addoption("--fer-instructions", dest="fer_instructions", action="store_true", default=None,
                    help="after each CPU step case's timed rounds (test_forward, test_forward_backward, "
                         "test_train_step; eager, one process), count the instructions of one call under Valgrind "
                         "(torch.utils.benchmark's Callgrind support: one thread, denoised, 5 repeats in one "
                         "Valgrind process, minutes a case) into extra_info (instructions_per_call and its "
                         "spread), for `fer-bench gate --metric instructions`. Without valgrind those cases skip, "
                         "naming what to install. The time budget does not plan for it (the ci preset has none). "
                         "Default: off")
    group.addoption("--fer-peak-tflops", dest="fer_peak_tflops", type=parse_peak_tflops, default=None,
                    metavar="TFLOPS",
                    help="the peak TFLOP/s that MFU is computed against, for the dtype the steps run in: needed on "
                         "a CPU (no datasheet table), and overrides the table on a GPU. Default: the GPU's datasheet "
                         "peak (fer_bench.machine.peaks); none on a CPU")
    group.addoption("--fer-resume", dest="fer_resume", type=parse_existing_path("--fer-resume"), default=None,
                    metavar="PATH",
                    help="go on with an interrupted run: PATH is its results JSON or its journal "
                         "(*.journal.jsonl); only the cases it lacks run, and this run's JSON holds every case once. "
                         "Refused, naming the difference, on other hardware, software, workload or options. "
                         "Default: off")
    group.addoption("--fer-journal", dest="fer_journal", type=Path, default=None, metavar="PATH",
                    help="where each finished case is appended as it completes (JSON lines, fsynced). Default: "
                         "beside --benchmark-json (run.json: run.journal.jsonl), else in the storage folder with "
                         "--fer-save/--benchmark-autosave; none without either")
    group.addoption("--fer-ddp-timeout", dest="fer_ddp_timeout", type=parse_ddp_timeout, default=None,
                    metavar="SECONDS",
                    help="how long the DDP ranks may take to answer a round (every rank's steps) and the process "
                         "group's collective timeout: a rank that hangs fails its case within it and the run goes on "
                         "(under torchrun or srun the run stops after that case: its world is broken). "
                         f"Default: {DEFAULT_DDP_TIMEOUT_S:g}")
    group.addoption("--fer-remeasure-contended", dest="fer_remeasure_contended", action="store_true",
                    default=None,
                    help=f"a case measured while other processes took more than {_pct(CONTENTION_THRESHOLD)} of the "
                         f"machine's CPU time (contended: recorded in every result) has its rounds timed once more "
                         f"as soon as a {QUIET_SAMPLE_S:g} s sample is below that, waiting at most "
                         f"{MAX_QUIET_WAIT_S:g} s; the new rounds replace the old. Default: off (the case stays "
                         f"contended, and the gate gives it no verdict)")
    group.addoption("--fer-progress", dest="fer_progress", type=parse_progress, default=None, metavar="MODE",
                    help="a progress line per case with the time left: every, sparse (every 30 s or 10 cases, "
                         "and the last), off; auto is every on a terminal, sparse in a log. Default: 'auto'")


def parse_ddp_timeout(text: str) -> float:
    return _bounded_float("--fer-ddp-timeout", text, 86400.0, "seconds a DDP rank may take", "60 or 300", " s")


def parse_existing_path(option: str):
    def parse(text: str) -> Path:
        path = Path(text).expanduser()
        if not path.exists():
            raise argparse.ArgumentTypeError(f"{option} {text}: no such file")
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{option} {text}: is a folder, not a results JSON or journal")
        return path

    return parse
def _pct(fraction: float) -> str:
    return f"{fraction:.0%}".replace("%", "%%")  # argparse formats help with %


def _budget_text(seconds: float | None) -> str:
    return "none" if seconds is None else format_duration(seconds)
