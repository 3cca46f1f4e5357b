"""Time to accuracy: train until the validation accuracy reaches a target, by MLPerf's and DAWNBench's rules.

An epoch time hides statistical efficiency: a large batch makes epochs fast and can converge late, and an
optimizer that steps cheaply can need twice the epochs. So a run here is scored by the time it takes to reach a
target accuracy:

* the clock starts once the data is in memory and includes everything after it: building the model and the
  loaders, every training epoch and every evaluation (``train_to_target``);
* evaluation runs at a fixed frequency, after every epoch, on the same held-out images;
* a run stops at the first evaluation that reaches the target, or at the epoch cap, having missed it;
* a case is N runs with seeds 0..N-1 (``--fer-repeats``); its score drops the fastest and the slowest run (with
  3 or more) and averages the rest, and at most one run may miss (it counts as the slowest, ``score_runs``). A
  case whose runs miss more often than that missed the target: it has no time.

Each run records its per-epoch curve (cumulative time, training loss, accuracy, macro-F1 and per-class recall:
accuracy alone misleads on FER2013's imbalanced classes), which ``write_curve_tsv`` also writes in DAWNBench's
``epoch hours top1Accuracy`` layout.

Learning rates: the optimizers the EfficientNet FER study compared need different rates (plain SGD at Adam's 1e-3
barely moves), so each has a base rate at the base batch of 64 (``BASE_LRS``), scaled for other batch sizes by the
case's ``lr_scaling`` rule (``scaled_lr``).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from fer_bench.axes import LR_SCALINGS, OPTIMIZERS
from fer_bench.errors import FerBenchError

#: The batch size the base learning rates are for.
BASE_BATCH_SIZE = 64
#: Each optimizer's learning rate at the base batch: the usual starting points for a small CNN trained from scratch
#: (plain SGD needs a far larger step than the adaptive methods).
BASE_LRS = {"sgd": 0.05, "sgd_momentum": 0.01, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 5e-4}
#: The default targets: the synthetic set is easier than FER2013 (the paper CNNs pass 0.70 in a few epochs of
#: 2,048 images on a 2-core CPU); on FER2013 the paper's simple CNNs reach 60-66% (METHOD.md).
SYNTHETIC_TARGET = 0.70
FILE_TARGET = 0.60
assert set(BASE_LRS) == set(OPTIMIZERS)


def scaled_lr(optimizer: str, batch_size: int, rule: str, base_lr: float | None = None) -> float:
    """The learning rate of ``optimizer`` at ``batch_size``: its base rate (or ``base_lr``) at BASE_BATCH_SIZE,
    times 1 (none), batch/64 (linear) or sqrt(batch/64) (sqrt).

    Raises:
        FerBenchError: an unknown optimizer or rule.
    """
    if optimizer not in BASE_LRS:
        raise FerBenchError(f"optimizer {optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    if rule not in LR_SCALINGS:
        raise FerBenchError(f"lr_scaling {rule!r} is not one of {', '.join(LR_SCALINGS)}")
    lr = BASE_LRS[optimizer] if base_lr is None else base_lr
    ratio = batch_size / BASE_BATCH_SIZE
    return lr * {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[rule]


def default_target(synthetic: bool) -> float:
    return SYNTHETIC_TARGET if synthetic else FILE_TARGET


@dataclass(frozen=True)
class EpochPoint:
    """One evaluated epoch of a run: ``time_s`` is the run's clock at the end of its evaluation."""

    epoch: int
    time_s: float
    train_loss: float
    accuracy: float
    macro_f1: float
    per_class_recall: dict
    epoch_time_s: float
    eval_time_s: float
    data_wait_s: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ConvergenceRun:
    """One seeded run: reached the target or not, and its curve."""

    seed: int
    target_accuracy: float
    max_epochs: int
    curve: list[EpochPoint] = field(default_factory=list)

    @property
    def reached_target(self) -> bool:
        return bool(self.curve) and self.curve[-1].accuracy >= self.target_accuracy

    @property
    def time_to_target_s(self) -> float | None:
        """The clock at the evaluation that reached the target; None for a run that missed it."""
        return self.curve[-1].time_s if self.reached_target else None

    @property
    def epochs_to_target(self) -> int | None:
        return self.curve[-1].epoch if self.reached_target else None

    @property
    def wall_s(self) -> float:
        return self.curve[-1].time_s if self.curve else 0.0

    @property
    def best_accuracy(self) -> float | None:
        return max((p.accuracy for p in self.curve), default=None)

    def as_dict(self) -> dict:
        last = self.curve[-1] if self.curve else None
        return {"seed": self.seed, "reached_target": self.reached_target, "time_to_target_s": self.time_to_target_s,
                "epochs_to_target": self.epochs_to_target, "epochs_trained": len(self.curve),
                "final_accuracy": last.accuracy if last else None, "final_macro_f1": last.macro_f1 if last else None,
                "best_accuracy": self.best_accuracy, "curve": [p.as_dict() for p in self.curve]}


def train_to_target(config, train_data, train_split: str, eval_data, eval_split: str, *, target: float,
                    max_epochs: int, class_names: Sequence[str], eval_batch_size: int = 256,
                    clock: Callable[[], float] = time.perf_counter) -> ConvergenceRun:
    """One run of ``config`` (its seed sets the initial weights, the shuffle and the augmentation): build the model
    and loaders, then train an epoch and evaluate, until the accuracy on ``eval_data`` reaches ``target`` or
    ``max_epochs`` epochs have run. The clock starts before the model is built (the data is already loaded)."""
    from fer_bench.data.loader import create_loader
    from fer_bench.engine.build import create_train_step
    from fer_bench.engine.device import synchronize
    from fer_bench.engine.loop import evaluate, train_epoch

    run = ConvergenceRun(config.seed, target, max_epochs)
    start = clock()
    training = create_train_step(config)
    step = training.step
    on_gpu = step.device.type == "cuda"
    common = dict(input_size=training.input_size, in_chans=training.in_chans, device=step.device,
                  transform_on_device=on_gpu and config.pipeline == "batched", pin_memory=on_gpu,
                  num_workers=config.num_workers, persistent_workers=config.num_workers > 0, seed=config.seed)
    if config.pipeline != "batched":
        common["pipeline"] = config.pipeline
    train_loader = create_loader(train_data, train_split, batch_size=config.global_batch_size, train=True, **common)
    eval_loader = create_loader(eval_data, eval_split, batch_size=eval_batch_size, train=False, drop_last=False,
                                **common)
    for epoch in range(max_epochs):
        train_loader.set_epoch(epoch)
        stats = train_epoch(step, train_loader)
        t0 = clock()
        report = evaluate(step, eval_loader)
        synchronize(step.device)
        now = clock()
        recall = report.as_dict(tuple(class_names))["per_class_recall"]
        run.curve.append(EpochPoint(epoch + 1, now - start, stats.mean_loss, report.accuracy, report.macro_f1,
                                    recall, stats.epoch_time_s + (now - t0), now - t0, stats.data_wait_s))
        if report.accuracy >= target:
            break
    return run


def score_runs(runs: Sequence[ConvergenceRun]) -> dict:
    """MLPerf's score of a case's runs.

    With 3 or more runs the fastest and the slowest are dropped and the rest averaged; a run that missed counts as
    the slowest, and at most one may miss. With fewer runs every run must reach the target and all are averaged.
    ``reached_target`` is False (and the time None) when the case missed; ``runs_missed`` says how many did.
    """
    n = len(runs)
    missed = sum(not r.reached_target for r in runs)
    order = sorted(runs, key=lambda r: (not r.reached_target, r.time_to_target_s or 0.0))
    scored = order[1:-1] if n >= 3 else order
    reached = n > 0 and (missed <= 1 if n >= 3 else missed == 0)
    times = [r.time_to_target_s for r in runs if r.reached_target]
    out = {
        "reached_target": reached,
        "runs_missed": missed,
        "scored_seeds": [r.seed for r in scored] if reached else [],
        "time_to_target_s": statistics.fmean(r.time_to_target_s for r in scored) if reached else None,
        "epochs_to_target": statistics.fmean(r.epochs_to_target for r in scored) if reached else None,
        "scoring": ("mean of the runs left after dropping the fastest and the slowest (a missed run counts as the "
                    "slowest; at most one may miss)") if n >= 3 else "mean of every run (all must reach the target)",
    }
    if times:
        mean = statistics.fmean(times)
        out["time_to_target_spread"] = {
            "min_s": min(times), "median_s": statistics.median(times), "max_s": max(times),
            "cv": statistics.stdev(times) / mean if len(times) > 1 and mean > 0 else None}
    return out


def representative_run(runs: Sequence[ConvergenceRun]) -> ConvergenceRun | None:
    """The run whose curve stands for the case: the median time among those that reached the target, else the one
    that came closest (best accuracy)."""
    reached = sorted((r for r in runs if r.reached_target), key=lambda r: r.time_to_target_s)
    if reached:
        return reached[(len(reached) - 1) // 2]
    return max(runs, key=lambda r: r.best_accuracy or 0.0, default=None)


def curve_tsv(run: ConvergenceRun) -> str:
    """DAWNBench's per-epoch log (``epoch hours top1Accuracy``, tab-separated, accuracy in percent) with fer_bench's
    macro-F1 and training loss as extra columns."""
    lines = ["epoch\thours\ttop1Accuracy\tmacroF1\ttrainLoss"]
    for p in run.curve:
        lines.append(f"{p.epoch}\t{p.time_s / 3600:.8f}\t{100 * p.accuracy:.4f}\t{100 * p.macro_f1:.4f}\t"
                     f"{p.train_loss:.6f}")
    return "\n".join(lines) + "\n"


def write_curve_tsv(path: str | os.PathLike, run: ConvergenceRun) -> Path:
    """Write ``curve_tsv(run)`` atomically."""
    from fer_bench._atomic import write_text_atomic

    return write_text_atomic(Path(path), curve_tsv(run))


__all__ = ["BASE_BATCH_SIZE", "BASE_LRS", "ConvergenceRun", "EpochPoint", "curve_tsv", "default_target",
           "representative_run", "scaled_lr", "score_runs", "train_to_target", "write_curve_tsv"]
