"""Four plain CNNs of increasing depth for 48x48 grayscale FER2013, the HPC/FER paper's comparison axis.

The paper compared four CNN architectures of increasing depth but did not publish their layers; these four are our
reconstruction, spanning the usual range of FER2013 CNNs from a first-tutorial net to a deep VGG-like one. All
convolutions are 3x3 with padding 1 and every stage ends in a 2x2 max-pool, so the 48x48 map halves per stage.

| name           | stages (convs x channels)                  | BN | head                          | params |
| -------------- | ------------------------------------------ | -- | ----------------------------- | ------ |
| fer_cnn_2block | 1x32, 1x64                                  | no | flatten 12x12 -> 32 -> 7      | ~0.31M |
| fer_cnn_3block | 1x64, 1x128, 1x256 (+ dropout 0.25)         | yes| flatten 6x6 -> 128 -> 7       | ~1.55M |
| fer_cnn_4block | 2x64, 2x128, 2x256, 2x512 (+ dropout 0.25)  | yes| flatten 3x3 -> 256 -> 7       | ~5.9M  |
| fer_cnn_5block | 2x64, 2x128, 3x256, 3x512, 3x512 (VGG16-BN) | yes| global avg pool -> 7          | ~14.7M |

The flattening heads sit behind an adaptive average pool to the grid a 48x48 input produces (an identity at 48, as in
torchvision's VGG), so any input size of at least 16 pixels works; the 5-block net pools globally.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from fer_bench.models._registry import register_model

__all__ = [
    "FerCNN",
    "create_conv_stage",
    "create_flatten_head",
    "fer_cnn_2block",
    "fer_cnn_3block",
    "fer_cnn_4block",
    "fer_cnn_5block",
]


class FerCNN(nn.Module):
    """A feature extractor (conv stages) followed by a classifier head.

    Args:
        features: the convolutional stages, N x C x H x W -> N x C' x H' x W'.
        head: pooling, flattening and linear layers ending in `num_classes` logits.
        num_classes: the head's output size, kept for introspection.
    """

    def __init__(self, features: nn.Sequential, head: nn.Sequential, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = features
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def create_conv_stage(
    in_chans: int,
    out_chans: int,
    num_convs: int,
    *,
    batch_norm: bool = True,
    conv_bias: bool | None = None,
    pool: bool = True,
    drop_rate: float = 0.0,
) -> nn.Sequential:
    """`num_convs` x (3x3 conv, [BN], ReLU), then an optional 2x2 max-pool and dropout.

    Args:
        in_chans: input channels of the first conv.
        out_chans: channels of every conv in the stage.
        num_convs: convolutions in the stage.
        batch_norm: add BatchNorm2d after each conv.
        conv_bias: conv bias; default: only without BatchNorm (BN's shift makes it redundant).
        pool: end with a 2x2 max-pool (stride 2).
        drop_rate: dropout after the pool; 0 adds no layer.
    """
    bias = (not batch_norm) if conv_bias is None else conv_bias
    layers: list[nn.Module] = []
    for i in range(num_convs):
        layers.append(nn.Conv2d(in_chans if i == 0 else out_chans, out_chans, 3, padding=1, bias=bias))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_chans))
        layers.append(nn.ReLU(inplace=True))
    if pool:
        layers.append(nn.MaxPool2d(2, 2))
    if drop_rate > 0:
        layers.append(nn.Dropout(drop_rate))
    return nn.Sequential(*layers)


def create_flatten_head(
    chans: int, grid: int, hidden: Sequence[int], num_classes: int, drop_rate: float
) -> nn.Sequential:
    """Adaptive-pool to `grid` x `grid`, flatten, hidden Linear+ReLU(+dropout) layers, then the classifier."""
    layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(grid), nn.Flatten(1)]
    width = chans * grid * grid
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        if drop_rate > 0:
            layers.append(nn.Dropout(drop_rate))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _build(
    stages: Sequence[tuple[int, int]],
    *,
    in_chans: int,
    num_classes: int,
    batch_norm: bool,
    stage_drop_rate: float,
    head: nn.Sequential,
    pool_last: bool = True,
) -> FerCNN:
    blocks = []
    prev = in_chans
    for i, (num_convs, chans) in enumerate(stages):
        last = i == len(stages) - 1
        blocks.append(
            create_conv_stage(
                prev,
                chans,
                num_convs,
                batch_norm=batch_norm,
                pool=pool_last or not last,
                drop_rate=stage_drop_rate,
            )
        )
        prev = chans
    return FerCNN(nn.Sequential(*blocks), head, num_classes)


@register_model(
    family="fer_cnn", description="paper CNN 1/4: 2 conv-ReLU-pool blocks (32, 64) + FC 32, Keras-tutorial style"
)
def fer_cnn_2block(num_classes: int = 7, in_chans: int = 1, drop_rate: float = 0.0) -> nn.Module:
    """The shallowest paper CNN: two conv-ReLU-pool blocks and a small fully connected layer, no BatchNorm."""
    head = create_flatten_head(64, 12, [32], num_classes, drop_rate)
    return _build([(1, 32), (1, 64)], in_chans=in_chans, num_classes=num_classes, batch_norm=False,
                  stage_drop_rate=0.0, head=head)


@register_model(family="fer_cnn", description="paper CNN 2/4: 3 conv-BN-ReLU-pool blocks (64-256) + dropout, FC 128")
def fer_cnn_3block(num_classes: int = 7, in_chans: int = 1, drop_rate: float = 0.5) -> nn.Module:
    """Three single-conv blocks with BatchNorm and dropout 0.25, then FC 128 with dropout `drop_rate`."""
    head = create_flatten_head(256, 6, [128], num_classes, drop_rate)
    return _build([(1, 64), (1, 128), (1, 256)], in_chans=in_chans, num_classes=num_classes, batch_norm=True,
                  stage_drop_rate=0.25, head=head)


@register_model(family="fer_cnn", description="paper CNN 3/4: 4 double-conv BN blocks (64-512) + dropout, FC 256")
def fer_cnn_4block(num_classes: int = 7, in_chans: int = 1, drop_rate: float = 0.5) -> nn.Module:
    """Four blocks of two conv-BN-ReLU each, wider (up to 512 channels), then FC 256 with dropout `drop_rate`."""
    head = create_flatten_head(512, 3, [256], num_classes, drop_rate)
    return _build([(2, 64), (2, 128), (2, 256), (2, 512)], in_chans=in_chans, num_classes=num_classes,
                  batch_norm=True, stage_drop_rate=0.25, head=head)


@register_model(family="fer_cnn", description="paper CNN 4/4: deep VGG16-BN-like, 5 stages of 2-3 convs, global pool")
def fer_cnn_5block(num_classes: int = 7, in_chans: int = 1, drop_rate: float = 0.5) -> nn.Module:
    """VGG16-BN's 13-conv stack (64-512); the fifth stage runs on the 3x3 map unpooled, then global average pooling."""
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    if drop_rate > 0:
        head.append(nn.Dropout(drop_rate))
    head.append(nn.Linear(512, num_classes))
    return _build([(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)], in_chans=in_chans, num_classes=num_classes,
                  batch_norm=True, stage_drop_rate=0.0, head=head, pool_last=False)
