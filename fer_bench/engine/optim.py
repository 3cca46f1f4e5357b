"""create_optimizer: the optimizers the EfficientNet FER study compared, by name."""

from __future__ import annotations

from typing import Iterable

import torch

from fer_bench.axes import OPTIMIZERS
from fer_bench.errors import FerBenchError


def create_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """sgd (plain), sgd_momentum (0.9, Nesterov off), adam, adamw (weight decay 0.01), rmsprop (alpha 0.99)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "sgd_momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.99)
    raise FerBenchError(f"optimizer {name!r} is not one of {', '.join(OPTIMIZERS)}")
