"""Standard ImageNet architectures from timm, randomly initialised for FER (never pretrained, never downloaded).

timm is imported inside the entry functions: it costs seconds to import, and `import fer_bench.models`,
`list_models()` and `get_model_info()` must stay cheap. `timm.create_model(..., pretrained=False)` builds the
architecture from timm's local config only; it reaches the Hugging Face hub only when weights are requested.

Input sizes: ImageNet stems downsample 32x, so a 48x48 image leaves a 2x2 map before global pooling (still valid).
EfficientNet-B0 also comes as the 224x224 RGB variant that EfficientNet FER studies train (the data pipeline upsamples
and repeats the gray channel because that model declares input_size=224, in_chans=3). timm's HRNet fuses branches at
1/4 to 1/32 scale and needs sides divisible by 32, so it fails at 48 and declares 64.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from fer_bench.errors import FerBenchError
from fer_bench.models._registry import register_model

__all__ = ["efficientnet_b0", "efficientnet_b0_rgb224", "hrnet_w18_small", "resnet18"]


def create_timm_model(arch: str, num_classes: int, in_chans: int, **kwargs: Any) -> nn.Module:
    """`timm.create_model(arch, pretrained=False, ...)`, refusing any request for pretrained weights.

    Raises:
        FerBenchError: `pretrained` or `pretrained_cfg_overlay` was passed (weights come only from a local checkpoint).
    """
    for key in ("pretrained", "pretrained_cfg_overlay", "checkpoint_path"):
        if kwargs.get(key):
            raise FerBenchError(
                f"{arch}: {key}={kwargs[key]!r} is not supported: fer_bench never downloads weights; "
                "pass create_model(..., checkpoint=<local file>) instead"
            )
        kwargs.pop(key, None)
    import timm  # lazy: see the module docstring

    return timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model(input_size=48, in_chans=1, family="efficientnet",
                description="EfficientNet-B0 (timm), random init, native 48x48 grayscale")
def efficientnet_b0(num_classes: int = 7, in_chans: int = 1, **kwargs: Any) -> nn.Module:
    """timm's efficientnet_b0 at 48x48 gray: a 2x2 map before the head."""
    return create_timm_model("efficientnet_b0", num_classes, in_chans, **kwargs)


@register_model(input_size=224, in_chans=3, family="efficientnet",
                description="EfficientNet-B0 (timm), random init, 224x224 RGB (FER images upsampled, gray repeated)")
def efficientnet_b0_rgb224(num_classes: int = 7, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """timm's efficientnet_b0 at its ImageNet resolution, as EfficientNet FER studies train it."""
    return create_timm_model("efficientnet_b0", num_classes, in_chans, **kwargs)


@register_model(input_size=48, in_chans=1, family="resnet",
                description="ResNet-18 (timm), random init, 48x48 grayscale (32x stem: 2x2 final map)")
def resnet18(num_classes: int = 7, in_chans: int = 1, **kwargs: Any) -> nn.Module:
    """timm's resnet18 at 48x48 gray."""
    return create_timm_model("resnet18", num_classes, in_chans, **kwargs)


@register_model(input_size=64, in_chans=1, family="hrnet",
                description="HRNet-W18-small (timm), random init, 64x64 grayscale (HRNet needs sides divisible by 32)")
def hrnet_w18_small(num_classes: int = 7, in_chans: int = 1, **kwargs: Any) -> nn.Module:
    """timm's hrnet_w18_small at 64x64 gray; 48 fails in its branch fusion."""
    return create_timm_model("hrnet_w18_small", num_classes, in_chans, **kwargs)
