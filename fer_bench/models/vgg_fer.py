"""VGGNet for FER2013 after Khaireddin & Chen (2021), "Facial Emotion Recognition: State of the Art Performance on
FER2013" (arXiv:2105.03588), which reports 73.28% single-model test accuracy.

Their network: four stages of two 3x3 conv-BN-ReLU layers (64, 128, 256, 512 channels), each stage closed by a 2x2
max-pool, then two fully connected layers of 4096 units with ReLU and dropout 0.2, and a 7-way classifier. Their
convolutions keep a bias in front of BatchNorm; so does ours, to match the parameter count.

One deliberate difference: they trained on 40x40 ten-crops, giving a 2x2x512 map and a first FC layer of
2048 x 4096 (about 29.9M parameters in all). We feed the whole 48x48 image like every other model here, so the map is
3x3x512 and the first FC layer is 4608 x 4096: about 40.4M parameters, most of them in the two FC layers. An adaptive
average pool to 3x3 in front of the flatten is an identity at 48 and lets other input sizes run.
"""

from __future__ import annotations

from torch import nn

from fer_bench.models._registry import register_model
from fer_bench.models.fer_cnn import FerCNN, create_conv_stage, create_flatten_head

__all__ = ["vgg_fer"]


@register_model(
    family="vgg", description="VGGNet of Khaireddin & Chen 2021 (73.28% on FER2013): 4x2 conv-BN (64-512), 2x FC 4096"
)
def vgg_fer(num_classes: int = 7, in_chans: int = 1, drop_rate: float = 0.2) -> nn.Module:
    """Khaireddin & Chen's VGGNet at 48x48: 8 conv-BN-ReLU layers, two FC 4096 layers with dropout `drop_rate`."""
    stages = []
    prev = in_chans
    for chans in (64, 128, 256, 512):
        stages.append(create_conv_stage(prev, chans, 2, batch_norm=True, conv_bias=True))
        prev = chans
    head = create_flatten_head(512, 3, [4096, 4096], num_classes, drop_rate)
    return FerCNN(nn.Sequential(*stages), head, num_classes)
