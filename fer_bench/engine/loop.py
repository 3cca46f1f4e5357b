"""The epoch loop: compute time and time spent waiting for data, reported separately; the evaluation pass."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator

import torch

from fer_bench.engine.device import synchronize
from fer_bench.engine.metrics import ClassificationReport
from fer_bench.engine.step import TrainStep


@dataclass(frozen=True)
class EpochStats:
    """Where one epoch's time went.

    ``data_wait_s`` is the time the loop spent blocked on the loader for the next batch (the EfficientNet FER
    study's data-loading share); ``compute_s`` is the rest: moving the batch, the step, and the synchronisation.
    ``first_batch_s`` (worker start-up plus the first batch) is part of ``data_wait_s`` and also reported alone.
    """

    num_batches: int
    num_samples: int
    epoch_time_s: float
    data_wait_s: float
    compute_s: float
    first_batch_s: float
    mean_loss: float

    @property
    def data_wait_fraction(self) -> float:
        return self.data_wait_s / self.epoch_time_s if self.epoch_time_s > 0 else 0.0

    @property
    def samples_per_s(self) -> float:
        return self.num_samples / self.epoch_time_s if self.epoch_time_s > 0 else 0.0

    def as_dict(self) -> dict:
        out = asdict(self)
        out["data_wait_fraction"] = self.data_wait_fraction
        out["samples_per_s"] = self.samples_per_s
        return out


def _timed_batches(loader: Iterable, max_batches: int | None) -> Iterator[tuple[float, object]]:
    """Yield (seconds blocked in the loader, batch) pairs."""
    it = iter(loader)
    n = 0
    while max_batches is None or n < max_batches:
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            return
        yield time.perf_counter() - t0, batch
        n += 1


def train_epoch(step: TrainStep, loader: Iterable, *, max_batches: int | None = None,
                sync_each_step: bool | None = None) -> EpochStats:
    """Train one epoch (or ``max_batches`` batches) and split its time into data wait and compute.

    On an asynchronous device (CUDA, MPS) the host can run ahead of the GPU, and a host that waits for data while
    the GPU is still busy is not a data stall. ``sync_each_step`` (default: on for such devices) synchronises after
    every step so the measured wait is time the device really sat idle; the cost is that the next batch's host-side
    work no longer overlaps the current step.
    """
    device = step.device
    if sync_each_step is None:
        sync_each_step = device.type in ("cuda", "mps")
    synchronize(device)
    start = time.perf_counter()
    data_wait = 0.0
    first_batch = 0.0
    n_batches = n_samples = 0
    losses = []
    for wait, (x, y) in _timed_batches(loader, max_batches):
        if n_batches == 0:
            first_batch = wait
        data_wait += wait
        x = step.prepare_input(x)
        y = y.to(device, non_blocking=True)
        losses.append(step.step(x, y))
        if sync_each_step:
            synchronize(device)
        n_batches += 1
        n_samples += int(y.shape[0])
    synchronize(device)
    elapsed = time.perf_counter() - start
    mean_loss = float(torch.stack(losses).float().mean()) if losses else float("nan")
    return EpochStats(n_batches, n_samples, elapsed, data_wait, elapsed - data_wait, first_batch, mean_loss)


def evaluate(step: TrainStep, loader: Iterable, num_classes: int = 7, *,
             max_batches: int | None = None) -> ClassificationReport:
    """Run the model in eval mode over ``loader`` and return its confusion-matrix report."""
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=step.device)
    for _, (x, y) in _timed_batches(loader, max_batches):
        logits = step.forward(step.prepare_input(x))
        y = y.to(step.device, non_blocking=True)
        pred = logits.argmax(dim=1)
        confusion += torch.bincount(y * num_classes + pred, minlength=num_classes * num_classes)
    return ClassificationReport(confusion.cpu().numpy().reshape(num_classes, num_classes))


__all__ = ["EpochStats", "train_epoch", "evaluate"]
