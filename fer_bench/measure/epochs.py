"""The pass bodies: a loader pass, a training epoch with its evaluation, and time to accuracy."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from statistics import median

import torch

from fer_bench.data.constants import CLASS_NAMES
from fer_bench.data.dataset import take, train_split
from fer_bench.engine import RunConfig, Training, create_train_step, evaluate, train_epoch
from fer_bench.engine.compile import warm_compiled_step
from fer_bench.engine.device import resolve_device, synchronize
from fer_bench.measure.case import EPOCH_MIN_ROUNDS, common_info, device_batch, find_eval_split
from fer_bench.measure.context import BenchOptions, Recorder
from fer_bench.measure.ddp import bench_ddp_epoch
from fer_bench.measure.steps import no_compiling_in_rounds
from fer_bench.measure.timing import measure
from fer_bench.workload import create_workload


def bench_dataloader(benchmark, options: BenchOptions, recorder: Recorder, *, device: str, batch_size: int,
                     num_workers: int, pin_memory: bool, pipeline: str = "batched", seed: int = 0) -> dict:
    """Loader-only throughput: one pass over ``--fer-epoch-images`` training images per round, through the batched
    pipeline or the per-image one (fer_bench.data.per_image: its image folder is written once, before timing)."""
    from fer_bench.data.loader import create_loader

    data = recorder.data
    split = train_split(data)
    subset = take(data, split, options.epoch_images)
    n_batches = len(subset) // batch_size
    if n_batches == 0:
        raise ValueError(f"--fer-epoch-images {options.epoch_images} is smaller than batch size {batch_size}")
    torch_device = resolve_device(device).device
    on_gpu = torch_device.type == "cuda"
    loader = create_loader(subset, split, batch_size=batch_size, num_workers=num_workers, train=True,
                           device=torch_device, transform_on_device=on_gpu and pipeline == "batched",
                           pin_memory=pin_memory, persistent_workers=num_workers > 0, seed=seed, pipeline=pipeline)

    def one_pass():
        for _ in loader:
            pass

    config = RunConfig(model="none", device=device, batch_size=batch_size, num_workers=num_workers,
                       pipeline=pipeline)
    extra = common_info(options, recorder, config, images_per_round=n_batches * batch_size)
    for axis in ("model", "precision", "num_gpus", "optimizer", "lr_scaling", "memory_format", "parallel",
                 "scaling"):
        extra.pop(axis)  # a loader pass has none of these
    extra.update(pin_memory=pin_memory, loader=loader.settings(), images_per_round=n_batches * batch_size)
    return measure(benchmark, one_pass, device=torch_device, samples_per_call=n_batches * batch_size,
                   phase="dataloader", target_s=options.target_round_s * 2, min_rounds=5,
                   warmup_rounds=1, extra=extra, planner=recorder.round_planner(),
                   contention=recorder.contention)


def bench_epoch(benchmark, options: BenchOptions, recorder: Recorder, config: RunConfig) -> dict:
    """A training epoch over ``--fer-epoch-images`` images plus the evaluation pass, timed together per round."""
    from fer_bench.data.loader import create_loader

    data = recorder.data
    if data.labels is None:
        raise ValueError(f"{options.data_description} has no labels: the epoch benchmark needs a labelled set")
    if config.parallel_mode == "ddp":
        return bench_ddp_epoch(benchmark, options, recorder, config)
    training = create_train_step(config)
    device = training.step.device
    on_gpu = device.type == "cuda"
    split = train_split(data)
    train = take(data, split, options.epoch_images)
    batch = config.global_batch_size  # nn.DataParallel splits each loader batch over its devices
    if len(train) < batch:
        raise ValueError(f"{len(train)} training images is fewer than batch size {batch}")
    eval_split = find_eval_split(data) or split
    evaluation = take(data, eval_split, options.eval_images)
    common = dict(input_size=training.input_size, in_chans=training.in_chans, device=device,
                  transform_on_device=on_gpu, pin_memory=on_gpu, num_workers=config.num_workers,
                  persistent_workers=config.num_workers > 0, seed=config.seed)
    if config.pipeline != "batched":
        common.update(pipeline=config.pipeline, transform_on_device=False)
    train_loader = create_loader(train, split, batch_size=batch, train=True, **common)
    eval_loader = create_loader(evaluation, eval_split, batch_size=batch, train=False,
                                drop_last=False, **common)
    records = []
    step = training.step

    def one_epoch():
        train_loader.set_epoch(len(records))
        stats = train_epoch(step, train_loader)
        t0 = time.perf_counter()
        with _eager_evaluation(step):
            report = evaluate(step, eval_loader)
        records.append((stats, report, time.perf_counter() - t0))

    extra = common_info(options, recorder, config, training, train_images=len(train), eval_images=len(evaluation))
    if config.compile != "eager":
        x, y = device_batch(options, recorder, training)
        extra.update(warm_compiled_step(step, lambda: step.step(x, y)),
                     compile_epoch=("training steps compiled (every batch the same shape: the last partial batch "
                                    "is dropped); the evaluation pass eager (its last batch is partial)"))
    extra.update(loader=train_loader.settings(), train_images=len(train), eval_images=len(evaluation),
                 eval_split=eval_split)
    planner = recorder.round_planner()
    if planner is not None and config.compile == "eager":  # an eager floor would overstate a compiled epoch's
        _check_epoch_floor(planner, options, recorder, training, len(train) // batch)
    with no_compiling_in_rounds(step):
        info = measure(benchmark, one_epoch, device=device, samples_per_call=len(train), phase="epoch",
                       target_s=options.target_round_s * 4, min_rounds=EPOCH_MIN_ROUNDS, max_rounds=20,
                       warmup_rounds=0, extra=extra, planner=planner, contention=recorder.contention)
    # the first record is the cold-start epoch; a contended case re-measured ran its rounds twice: the last count
    timed = records[1:][-info["rounds"]:] or records
    stats_list = [r[0] for r in timed]
    last_stats, last_report, _ = records[-1]

    epoch_time = median([s.epoch_time_s for s in stats_list])
    report = last_report.as_dict(CLASS_NAMES)
    figures = {
        "epoch_time_s": epoch_time,
        "eval_time_s": median([r[2] for r in timed]),
        "samples_per_s": last_stats.num_samples / epoch_time if epoch_time > 0 else None,
        "data_wait_fraction": median([s.data_wait_fraction for s in stats_list]),
        "data_wait_s": median([s.data_wait_s for s in stats_list]),
        "compute_s": median([s.compute_s for s in stats_list]),
        "first_batch_s": records[0][0].first_batch_s,
        "epochs_trained": len(records),
        "train_loss": last_stats.mean_loss,
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "per_class_recall": report["per_class_recall"],
        "confusion_matrix": report["confusion_matrix"],
    }
    benchmark.extra_info.update(figures)
    info.update(figures)
    return info


@contextlib.contextmanager
def _eager_evaluation(step):
    """Evaluate with the eager model of a compiled step: an eval-mode graph and a partial last batch would each
    compile again."""
    compiled = step.model
    step.model = step.eager_model
    try:
        yield
    finally:
        step.model = compiled


def _check_epoch_floor(planner, options: BenchOptions, recorder: Recorder, training: Training, batches: int) -> None:
    """An epoch's cold call is the budget's only estimate of it, and the most a skipped epoch can waste; an epoch
    takes at least its batches' forward passes, so two forward passes on one batch (the first warms it; eval mode,
    no grad: the model is left as it was) skip an epoch that cannot fit before it runs."""
    x, _ = device_batch(options, recorder, training)
    training.step.forward(x)
    t0 = time.perf_counter()
    training.step.forward(x)
    synchronize(training.step.device)
    per_batch = time.perf_counter() - t0
    planner.check_floor(batches * per_batch, calls_before=1, min_rounds=EPOCH_MIN_ROUNDS,
                        why=f"{batches} forward passes alone take {batches * per_batch:.1f} s an epoch")


def bench_time_to_accuracy(benchmark, options: BenchOptions, recorder: Recorder, config: RunConfig) -> dict:
    """Train to the target accuracy ``options.repeats`` times (seeds 0..N-1), one seeded run a round, by MLPerf's
    rules (fer_bench.engine.convergence): the result's rounds are the runs' times to the target, and its
    ``time_to_target_s`` their score. A case that missed the target (more than one run missed, or any of fewer
    than 3) has no time to target: ``reached_target`` is False and its rounds are the runs' times to the epoch cap,
    which the terminal summary says."""
    from fer_bench.engine.convergence import (
        BASE_BATCH_SIZE,
        BASE_LRS,
        default_target,
        representative_run,
        scaled_lr,
        score_runs,
        train_to_target,
        write_curve_tsv,
    )

    data = recorder.data
    if data.labels is None:
        raise ValueError(f"{options.data_description} has no labels: time to accuracy needs a labelled set")
    target = options.target_accuracy or default_target(options.data_path is None)
    lr = scaled_lr(config.optimizer, config.batch_size, config.lr_scaling)
    config = dataclasses.replace(config, lr=lr)
    split = train_split(data)
    train = take(data, split, options.epoch_images)
    if len(train) < config.global_batch_size:
        raise ValueError(f"{len(train)} training images is fewer than batch size {config.global_batch_size}")
    eval_split = find_eval_split(data) or split
    evaluation = take(data, eval_split, options.eval_images)
    seeds = iter(range(options.repeats))
    runs = []

    def one_run(seed: int) -> None:
        runs.append(train_to_target(dataclasses.replace(config, seed=seed), train, split, evaluation, eval_split,
                                    target=target, max_epochs=options.max_epochs, class_names=CLASS_NAMES))

    from fer_bench.models import get_model_info

    model_info = get_model_info(config.model)
    extra = common_info(options, recorder, config)
    extra["workload"] = create_workload(recorder.data_identity, input_size=model_info.input_size,
                                        in_chans=model_info.in_chans, train_images=len(train),
                                        eval_images=len(evaluation), target_accuracy=target,
                                        max_epochs=options.max_epochs)
    extra.update(config.batch_info(), target_accuracy=target, max_epochs=options.max_epochs,
                 repeats=options.repeats, eval_every_epochs=1, lr=lr, base_lr=BASE_LRS[config.optimizer],
                 base_batch_size=BASE_BATCH_SIZE, lr_scaling=config.lr_scaling, train_images=len(train),
                 eval_images=len(evaluation), eval_split=eval_split, input_size=model_info.input_size,
                 in_chans=model_info.in_chans, torch_num_threads=torch.get_num_threads(),
                 clock="from building the model (data already in memory) to the evaluation that reached the target")
    benchmark.extra_info.update(extra)
    benchmark.pedantic(one_run, setup=lambda: ((next(seeds),), {}), rounds=options.repeats, iterations=1,
                       warmup_rounds=0)
    score = score_runs(runs)
    rep = representative_run(runs)
    finals = [r.curve[-1] for r in runs if r.curve]
    figures = {
        **score,
        "epoch_time_s": median(p.epoch_time_s for r in runs for p in r.curve),
        "final_accuracy": median(p.accuracy for p in finals),
        "final_macro_f1": median(p.macro_f1 for p in finals),
        "best_accuracy": max(r.best_accuracy for r in runs),
        "curve": [p.as_dict() for p in rep.curve] if rep else [],
        "curve_seed": rep.seed if rep else None,
        "runs": [r.as_dict() for r in runs],
    }
    # the rounds are the runs' times to the target (the runs' own clocks); a missed case keeps its runs' times to
    # the cap, and says so, for it has no time to the target
    reached_times = [r.time_to_target_s for r in runs if r.reached_target]
    rounds = reached_times if score["reached_target"] else [r.wall_s for r in runs]
    figures["rounds_are"] = ("each run's time to the target (the runs that reached it)" if score["reached_target"]
                             else "each run's time to the epoch cap: the case missed the target")
    recorder.replace_rounds(benchmark, rounds)
    if options.curve_tsv:
        written = [write_curve_tsv(options.artifact_path("curves", benchmark.name, f".seed{r.seed}.tsv"), r)
                   for r in runs]
        figures["curve_tsv"] = [os.path.relpath(path, options.json_path.parent) for path in written]
    if not score["reached_target"]:
        recorder.missed_targets.append(
            f"{benchmark.name} missed the target {target:.0%}: {score['runs_missed']} of {len(runs)} runs missed "
            f"(best accuracy {figures['best_accuracy']:.1%} in {options.max_epochs} epochs); its rounds are times to "
            f"the epoch cap, not to the target")
    benchmark.extra_info.update(figures)
    return {**extra, **figures}
