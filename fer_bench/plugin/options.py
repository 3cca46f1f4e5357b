"""The --fer-* options: one parse_* validator per option and the named presets.

A bad value fails when the command line is parsed, naming the offending text and the valid values, before any
test is collected.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fer_bench.machine.allocator import MODES as MALLOC_MODES
from fer_bench.engine.config import PRECISIONS, parse_device_name
from fer_bench.errors import FerBenchError


def _split(text: str, option: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise argparse.ArgumentTypeError(f"{option}: {text!r} is not a comma-separated list of values")
    return list(dict.fromkeys(items))  # drop repeats, keep order


def _ints(text: str, option: str, minimum: int) -> list[int]:
    out = []
    for item in _split(text, option):
        try:
            value = int(item)
        except ValueError:
            value = None
        if value is None or value < minimum:
            what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise argparse.ArgumentTypeError(f"{option}: {item!r} is not {what}")
        out.append(value)
    return out


def parse_models(text: str) -> list[str]:
    from fer_bench.models import list_models

    known = list_models()
    names = _split(text, "--fer-models")
    for name in names:
        if name not in known:
            raise argparse.ArgumentTypeError(
                f"--fer-models: {name!r} is not a registered model; valid: {', '.join(known)}")
    return names


def parse_devices(text: str) -> list[str]:
    out = []
    for item in _split(text, "--fer-devices"):
        try:
            out.append(parse_device_name(item))
        except FerBenchError:
            raise argparse.ArgumentTypeError(
                f"--fer-devices: {item!r} is not a device; valid: cpu, cuda, cuda:N, mps") from None
    return list(dict.fromkeys(out))


def parse_batch_sizes(text: str) -> list[int]:
    return _ints(text, "--fer-batch-sizes", 1)


def parse_num_workers(text: str) -> list[int]:
    return _ints(text, "--fer-num-workers", 0)


def parse_num_gpus(text: str) -> list[int]:
    return _ints(text, "--fer-num-gpus", 1)


def parse_precisions(text: str) -> list[str]:
    names = [item.lower() for item in _split(text, "--fer-precisions")]
    for name in names:
        if name not in PRECISIONS:
            raise argparse.ArgumentTypeError(
                f"--fer-precisions: {name!r} is not a precision; valid: {', '.join(PRECISIONS)}")
    return names


def parse_preset(text: str) -> str:
    if text not in PRESETS:
        raise argparse.ArgumentTypeError(f"--fer-preset: {text!r} is not a preset; valid: {', '.join(PRESETS)}")
    return text


def parse_epoch_images(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--fer-epoch-images: {text!r} is not a positive integer")
    return value


def parse_data_path(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"--fer-data: {text!r} does not exist")
    return path


@dataclass(frozen=True)
class Preset:
    """A named matrix: axis values for every benchmark, optional narrower values per benchmark, epoch size."""

    description: str
    axes: dict[str, list]
    per_benchmark: dict[str, dict[str, list]] = field(default_factory=dict)
    epoch_images: int = 2048
    eval_images: int = 512
    target_round_s: float = 1.0


# Every preset lists cuda and amp_fp16 so that runs on different machines collect the same cases; what a machine
# cannot run is reported as skipped with the reason.
PRESETS: dict[str, Preset] = {
    "quick": Preset(
        description="smoke run, about 20 seconds on a 2-core CPU",
        axes={"model": ["fer_cnn_2block"], "device": ["cpu", "cuda"], "batch_size": [32], "num_workers": [0],
              "precision": ["fp32", "amp_fp16"], "num_gpus": [1]},
        per_benchmark={"dataloader": {"num_workers": [0, 2]}},
        epoch_images=512, eval_images=256, target_round_s=0.3,
    ),
    "default": Preset(
        description="what a bare `pytest benchmarks` runs: under 10 minutes on a 2-core CPU",
        axes={"model": ["fer_cnn_2block", "fer_cnn_4block", "vgg_fer", "efficientnet_b0", "resnet18"],
              "device": ["cpu", "cuda"], "batch_size": [64], "num_workers": [0],
              "precision": ["fp32", "amp_bf16", "amp_fp16"], "num_gpus": [1]},
        per_benchmark={
            "dataloader": {"num_workers": [0, 1, 2], "batch_size": [64, 256]},
            "epoch": {"model": ["fer_cnn_3block"], "num_workers": [0, 2], "precision": ["fp32", "amp_fp16"]},
        },
        epoch_images=2048, eval_images=512, target_round_s=0.6,
    ),
    "full": Preset(
        description="the whole matrix, for a GPU node",
        axes={"model": ["fer_cnn_2block", "fer_cnn_3block", "fer_cnn_4block", "fer_cnn_5block", "vgg_fer",
                        "efficientnet_b0", "efficientnet_b0_rgb224", "resnet18", "hrnet_w18_small"],
              "device": ["cpu", "cuda"], "batch_size": [32, 64, 128, 256], "num_workers": [0, 2, 4, 8, 16],
              "precision": ["fp32", "amp_fp16", "amp_bf16", "bf16"], "num_gpus": [1, 2, 4, 8]},
        per_benchmark={"epoch": {"batch_size": [64, 256]}},
        epoch_images=28709, eval_images=3589, target_round_s=2.0,
    ),
}

# option name -> (dest, parser, help)
AXIS_OPTIONS: dict[str, tuple[str, Callable, str]] = {
    "model": ("--fer-models", parse_models, "models to benchmark (see `fer-bench models`)"),
    "device": ("--fer-devices", parse_devices, "devices: cpu, cuda, cuda:N, mps"),
    "batch_size": ("--fer-batch-sizes", parse_batch_sizes, "batch sizes (per GPU)"),
    "num_workers": ("--fer-num-workers", parse_num_workers, "DataLoader worker counts"),
    "precision": ("--fer-precisions", parse_precisions, f"precisions: {', '.join(PRECISIONS)}"),
    "num_gpus": ("--fer-num-gpus", parse_num_gpus, "GPU counts (nn.DataParallel when above 1)"),
}


def add_fer_options(group) -> None:
    """Register the --fer-* options on a pytest option group (or anything with an argparse-like addoption)."""
    for axis, (flag, parser, text) in AXIS_OPTIONS.items():
        group.addoption(flag, dest=f"fer_{axis}", type=parser, default=None, metavar="LIST",
                        help=f"{text}; comma list, overrides the preset's values. Default: from --fer-preset")
    group.addoption("--fer-preset", dest="fer_preset", type=parse_preset, default="default", metavar="NAME",
                    help="named matrix: " + "; ".join(f"{k}: {v.description}" for k, v in PRESETS.items())
                    + ". Default: %(default)r")
    group.addoption("--fer-data", dest="fer_data", type=parse_data_path, default=None, metavar="PATH",
                    help="a FER2013 copy (any format `fer-bench data inspect` reads). Default: the synthetic set")
    group.addoption("--fer-epoch-images", dest="fer_epoch_images", type=parse_epoch_images, default=None,
                    metavar="N", help="cap on the training images one epoch benchmark uses. Default: the preset's")
    group.addoption("--fer-allow-missing-baseline", dest="fer_allow_missing_baseline", action="store_true",
                    default=False, help="with --benchmark-compare: a case the baseline lacks is reported, not a "
                                        "failure. Default: off (fail closed)")
    group.addoption("--fer-allow-other-machine", dest="fer_allow_other_machine", action="store_true",
                    default=False, help="with --benchmark-compare: compare with the newest stored run even when no "
                                        "run of this hardware exists. Default: off (fail closed)")
    group.addoption("--fer-malloc", dest="fer_malloc", choices=MALLOC_MODES, default="steady",
                    help="glibc malloc for the run: 'steady' fixes its mmap and trim thresholds so a step's buffers "
                         "reuse warm heap pages in every process (run-to-run noise of a training step fell from 6%% "
                         "to 1.2%% here); 'system' leaves malloc as it started. Recorded in the fingerprint. "
                         "Default: %(default)r")
    group.addoption("--fer-save", dest="fer_save", action="store_true", default=False,
                    help="save this run under results/<machine slug>/ with its fingerprint (the README's bench "
                         "command). Default: off")
