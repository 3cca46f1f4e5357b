"""Count a model's FLOPs with `torch.utils.flop_counter.FlopCounterMode`.

FlopCounterMode counts convolutions, matmuls and attention as 2 x multiply-accumulates (one multiply plus one add),
from shapes alone, so the count does not depend on dtype, device or memory format. Elementwise ops, pooling,
normalisation, the loss and the optimizer step are not counted: they are memory-bound and small next to the convs.
torch's own formula for the convolution backward overcounts grouped convolutions (its grad-weight term is not divided
by `groups`: 33x forward for a depthwise conv instead of 3x, 43x for a whole EfficientNet-B0 step; seen on torch
2.14.1 and 2.11), so `count_flops` replaces it with one that counts each gradient as one forward convolution.

The benchmark divides a step's count by its time to report achieved TFLOP/s::

    flops = count_flops(model, images, backward=True)     # one training step
    tflops_per_s = flops / step_time_s / 1e12
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

__all__ = ["count_flops"]


def count_flops(
    model: nn.Module, example_inputs: torch.Tensor | Sequence[torch.Tensor], *, backward: bool = False
) -> int:
    """FLOPs of one forward pass, or of forward plus backward when `backward` is True.

    The model keeps its mode (train or eval; the caller picks) and is left as found: buffers such as BatchNorm's
    running statistics are restored, gradients are taken with `torch.autograd.grad` so no `.grad` is written, and
    the RNG state (dropout) is forked. Runs under whatever autocast context the caller holds.

    Args:
        model: the module to count.
        example_inputs: one input tensor, or a sequence of positional inputs, with the batch size to count.
        backward: also count the backward pass of a training step (loss.backward() on a cross-entropy loss),
            i.e. the gradients of every trainable parameter.

    Returns:
        Total FLOPs as counted by FlopCounterMode (2 x MACs).
    """
    from torch.utils.flop_counter import FlopCounterMode  # imported here: keeps `import fer_bench.models` cheap

    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    saved_buffers = [(b, b.detach().clone()) for b in model.buffers()]
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop})
    try:
        with _fork_rng(model, inputs):
            if backward:
                params = [p for p in model.parameters() if p.requires_grad]
                with counter, torch.enable_grad():
                    loss = _loss(model(*inputs))
                    torch.autograd.grad(loss, params, allow_unused=True)
            else:
                with counter, torch.no_grad():
                    model(*inputs)
    finally:
        with torch.no_grad():
            for buf, saved in saved_buffers:
                buf.copy_(saved)
    return int(counter.get_total_flops())


def _conv_backward_flop(
    grad_out_shape: Any,
    x_shape: Any,
    w_shape: Any,
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    _output_padding: Any,
    _groups: int,
    output_mask: Any,
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    """FLOPs of aten.convolution_backward: the input gradient and the weight gradient each cost one forward conv.

    FlopCounterMode passes shapes. The weight holds (out, in / groups, *kernel) for a conv and (in, out / groups,
    *kernel) for a transposed one, so the product below is already per group; the spatial extent is the output's for
    a conv and the input's for a transposed conv (each input point meets the whole kernel), as in torch's forward rule.
    """
    spatial = (x_shape if transposed else grad_out_shape)[2:]
    forward = 2 * x_shape[0] * math.prod(spatial) * math.prod(w_shape)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def _loss(output: torch.Tensor) -> torch.Tensor:
    # Cross-entropy against class 0 mirrors the training step; its own ops are not counted by FlopCounterMode.
    if output.ndim == 2:
        target = torch.zeros(output.shape[0], dtype=torch.long, device=output.device)
        return nn.functional.cross_entropy(output.float(), target)
    return output.float().sum()


def _fork_rng(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> AbstractContextManager[None]:
    # Name the accelerator devices in use: fork_rng otherwise touches (and warns about) every visible GPU.
    tensors = [*inputs, *model.parameters()]
    devices: dict[str, set[int]] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type not in ("cpu", "meta"):
            devices.setdefault(t.device.type, set()).add(t.device.index or 0)
    if len(devices) == 1:
        (device_type, indices), = devices.items()
        return torch.random.fork_rng(devices=sorted(indices), device_type=device_type)
    return torch.random.fork_rng(devices=[])
