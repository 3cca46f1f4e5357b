"""Real code changes of known size for calibrating the instruction and wall-time gates: fer_cnn_2block with extra
layers that make its training step (batch 16, one thread) do about 1%, 2% or 5% more work, sized under Callgrind
(one Valgrind process counting each candidate's step; the calibration measures each job's own ratios):

* ``1pct``: a second ReLU (not in place) after each stage's ReLU: +0.70% (32x48x48) and +0.35% (64x24x24);
* ``2pct``: those two and a GELU after the features (64x12x12): about +1% more;
* ``5pct``: a 1x1 convolution (64 to 64 channels) and ReLU after the features: +5.3% to +5.4%.

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
VARIANTS = ("1pct", "2pct", "5pct")


def create_variant(extra: str | None, num_classes: int = 7, in_chans: int = 1, drop_rate: float = 0.0) -> nn.Module:
    """fer_cnn_2block, with the extra layers of ``extra`` (None or empty: none)."""
    model = fer_cnn_2block(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
    if not extra:
        return model
    if extra not in VARIANTS:
        raise FerBenchError(f"{EXTRA_ENV}={extra!r}: choose one of {', '.join(VARIANTS)} or leave it unset")
    if extra == "5pct":
        model.features.append(nn.Conv2d(64, 64, 1))
        model.features.append(nn.ReLU(inplace=True))
        return model
    for stage in model.features:  # each stage is conv, ReLU, pool: the second ReLU goes before the pool
        stage.insert(2, nn.ReLU())
    if extra == "2pct":
        model.features.append(nn.GELU())
    return model


@register_model(family="calibration", description="calibration: fer_cnn_2block, plus the extra work "
                                                  "FER_BENCH_CAL_EXTRA names (1pct, 2pct, 5pct)")
def fer_cnn_2block_cal(num_classes: int = 7, in_chans: int = 1, drop_rate: float = 0.0) -> nn.Module:
    """fer_cnn_2block or the variant FER_BENCH_CAL_EXTRA names."""
    return create_variant(os.environ.get(EXTRA_ENV, "").strip() or None, num_classes, in_chans, drop_rate)


@register_model(family="calibration", description="calibration: fer_cnn_2block + two ReLUs, about 1% more work")
def fer_cnn_2block_plus1pct(num_classes: int = 7, in_chans: int = 1, drop_rate: float = 0.0) -> nn.Module:
    """fer_cnn_2block and a second ReLU in each stage."""
    return create_variant("1pct", num_classes, in_chans, drop_rate)


@register_model(family="calibration", description="calibration: fer_cnn_2block + two ReLUs and a GELU, about 2% "
                                                  "more work")
def fer_cnn_2block_plus2pct(num_classes: int = 7, in_chans: int = 1, drop_rate: float = 0.0) -> nn.Module:
    """fer_cnn_2block, a second ReLU in each stage and a GELU after the features."""
    return create_variant("2pct", num_classes, in_chans, drop_rate)


@register_model(family="calibration", description="calibration: fer_cnn_2block + a 1x1 conv, about 5% more work")
def fer_cnn_2block_plus5pct(num_classes: int = 7, in_chans: int = 1, drop_rate: float = 0.0) -> nn.Module:
    """fer_cnn_2block and a 1x1 convolution and ReLU after the features."""
    return create_variant("5pct", num_classes, in_chans, drop_rate)
