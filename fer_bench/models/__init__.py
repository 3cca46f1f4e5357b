"""The FER model zoo: a registry of CNNs, created by name.

    from fer_bench.models import create_model, list_models
    model = create_model("fer_cnn_3block", num_classes=7)

Importing this package registers every model but does not import timm (see timm_models.py).
"""

from __future__ import annotations

# Imported for their @register_model side effect; the order does not matter (list_models sorts).
from fer_bench.models import fer_cnn, timm_models, vgg_fer  # noqa: F401
from fer_bench.models._registry import (
    ModelInfo,
    create_model,
    describe_models,
    get_model_info,
    list_models,
    load_checkpoint,
    register_model,
)
from fer_bench.models.flops import count_flops

__all__ = [
    "ModelInfo",
    "count_flops",
    "create_model",
    "describe_models",
    "get_model_info",
    "list_models",
    "load_checkpoint",
    "register_model",
]
