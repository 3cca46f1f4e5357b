"""Real code changes of known size for calibrating the instruction and wall-time gates: fer_cnn_2block with one
extra 1x1 convolution and ReLU after its features (64 channels at 12x12), grouped to do about 1%, 2% or 5% more
work in a training step (batch 16, one thread; measured under Callgrind, docs/calibration.md).

Imported for its registrations (never by fer_bench itself, so the production zoo stays as it is):

* ``fer_cnn_2block_plus1pct``, ``..._plus2pct``, ``..._plus5pct``: the variants under their own names;
* ``fer_cnn_2block_cal``: fer_cnn_2block, or the variant FER_BENCH_CAL_EXTRA names (``1pct``, ``2pct``, ``5pct``;
  unset or empty: none), read when the model is built, so the unchanged and the changed code make a case of the
  same name that the gate matches, as a commit that changes the model would.

    PYTHONPATH=scripts pytest benchmarks/test_step.py -p calibration_models --fer-models fer_cnn_2block_cal ...
"""

from __future__ import annotations

import os

from torch import nn

from fer_bench.errors import FerBenchError
from fer_bench.models import register_model
from fer_bench.models.fer_cnn import fer_cnn_2block

EXTRA_ENV = "FER_BENCH_CAL_EXTRA"
#: variant -> groups of the extra 64->64 1x1 convolution (fewer groups, more work)
VARIANT_GROUPS = {"1pct": 16, "2pct": 4, "5pct": 1}


def create_variant(extra: str | None, num_classes: int = 7, in_chans: int = 1, drop_rate: float = 0.0) -> nn.Module:
    """fer_cnn_2block, with the extra convolution of ``extra`` (None or empty: none)."""
    model = fer_cnn_2block(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
    if extra:
        if extra not in VARIANT_GROUPS:
            raise FerBenchError(f"{EXTRA_ENV}={extra!r}: choose one of {', '.join(VARIANT_GROUPS)} or leave it unset")
        model.features.append(nn.Conv2d(64, 64, 1, groups=VARIANT_GROUPS[extra]))
        model.features.append(nn.ReLU(inplace=True))
    return model


@register_model(family="calibration", description="calibration: fer_cnn_2block, plus the extra work "
                                                  "FER_BENCH_CAL_EXTRA names (1pct, 2pct, 5pct)")
def fer_cnn_2block_cal(num_classes: int = 7, in_chans: int = 1, drop_rate: float = 0.0) -> nn.Module:
    """fer_cnn_2block or the variant FER_BENCH_CAL_EXTRA names."""
    return create_variant(os.environ.get(EXTRA_ENV, "").strip() or None, num_classes, in_chans, drop_rate)


@register_model(family="calibration", description="calibration: fer_cnn_2block + a 1x1 conv, about 1% more work")
def fer_cnn_2block_plus1pct(num_classes: int = 7, in_chans: int = 1, drop_rate: float = 0.0) -> nn.Module:
    """fer_cnn_2block and a 1x1 convolution in 16 groups."""
    return create_variant("1pct", num_classes, in_chans, drop_rate)


@register_model(family="calibration", description="calibration: fer_cnn_2block + a 1x1 conv, about 2% more work")
def fer_cnn_2block_plus2pct(num_classes: int = 7, in_chans: int = 1, drop_rate: float = 0.0) -> nn.Module:
    """fer_cnn_2block and a 1x1 convolution in 4 groups."""
    return create_variant("2pct", num_classes, in_chans, drop_rate)


@register_model(family="calibration", description="calibration: fer_cnn_2block + a 1x1 conv, about 5% more work")
def fer_cnn_2block_plus5pct(num_classes: int = 7, in_chans: int = 1, drop_rate: float = 0.0) -> nn.Module:
    """fer_cnn_2block and a full 1x1 convolution."""
    return create_variant("5pct", num_classes, in_chans, drop_rate)
