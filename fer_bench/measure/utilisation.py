"""How close a step gets to the hardware: MFU against the datasheet peak, and whether the step is launch-bound.

MFU (model FLOPs utilisation) is the step's achieved FLOP/s (its FLOPs counted on the eager model by
torch.utils.flop_counter, over the median step time) divided by the datasheet peak of the dtype it ran in
(fer_bench.machine.peaks). A GPU the table does not know, or a CPU without ``--fer-peak-tflops``, gets null with the
reason: never a guessed peak.

A small CNN on a large GPU is bound by kernel launches, not arithmetic: the host issues a kernel every few
microseconds and the GPU finishes each before the next arrives. CUDA events bracket the whole step, so the device
time then equals the host time and says nothing; what does is the device time per launched kernel. One step is run
again under a counting dispatch mode after the timed rounds (every ATen operator that reaches a backend kernel),
and a step whose device time per operator is under ``LAUNCH_BOUND_US_PER_OP`` (a kernel launch costs about 5-10 us
of host time), or whose host time exceeds its device time by ``LAUNCH_BOUND_HOST_MARGIN``, is launch-bound. The
levers are fewer launches (``--fer-compile reduce-overhead``: CUDA graphs replay the whole step as one launch; or
``default``, which fuses kernels) and more work per launch (a larger batch).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

#: Device time per dispatched operator below which a CUDA step is launch-bound (microseconds).
LAUNCH_BOUND_US_PER_OP = 20.0
#: Host time over device time above which a CUDA step is launch-bound (the host falls behind the GPU).
LAUNCH_BOUND_HOST_MARGIN = 1.2
LEVERS = "--fer-compile reduce-overhead (CUDA graphs) or default (fused kernels), or a larger batch"


def count_dispatched_ops(fn: Callable[[], Any]) -> int:
    """ATen operators one call of ``fn`` dispatches to a backend (about the kernels it launches on a GPU)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.n


def launch_bound(*, device_type: str, host_ms: float | None, device_ms: float | None,
                 ops: int | None) -> dict:
    """The launch-bound verdict of a step: ``launch_bound`` (True/False, None off CUDA or without figures), the
    device time per dispatched operator, and ``launch_bound_reason``."""
    out: dict[str, Any] = {"launch_bound": None, "dispatched_ops_per_step": ops,
                           "device_us_per_op": None, "launch_bound_reason": None}
    if device_type != "cuda":
        out["launch_bound_reason"] = f"kernel launches are a CUDA cost; a {device_type} step is not judged"
        return out
    if not device_ms or not host_ms or not ops:
        out["launch_bound_reason"] = "no device time or operator count for this step"
        return out
    per_op = device_ms * 1e3 / ops
    out["device_us_per_op"] = per_op
    host_over = host_ms / device_ms
    if per_op < LAUNCH_BOUND_US_PER_OP:
        out["launch_bound"] = True
        out["launch_bound_reason"] = (f"{per_op:.1f} us of device time per operator ({ops} a step) is about what "
                                      f"launching a kernel costs: try {LEVERS}")
    elif host_over > LAUNCH_BOUND_HOST_MARGIN:
        out["launch_bound"] = True
        out["launch_bound_reason"] = (f"the host time is {host_over:.2f}x the device time: the GPU waits for the "
                                      f"host; try {LEVERS}")
    else:
        out["launch_bound"] = False
        out["launch_bound_reason"] = f"{per_op:.0f} us of device time per operator"
    return out


def utilisation(info: dict, *, device: torch.device, precision: str, tf32: bool,
                user_peak_tflops: float | None) -> dict:
    """``peak_tflops``, ``peak_dtype``, ``peak_source`` and ``mfu`` (or ``mfu_reason``) of a step result ``info``
    (its ``achieved_tflops``), for the GPU ``device`` is, or the user's peak."""
    from fer_bench.machine.peaks import compute_mfu

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return compute_mfu(info.get("achieved_tflops"), device_type=device.type, gpu_name=name, precision=precision,
                       tf32=tf32, user_peak_tflops=user_peak_tflops)


__all__ = ["LAUNCH_BOUND_US_PER_OP", "count_dispatched_ops", "launch_bound", "utilisation"]
