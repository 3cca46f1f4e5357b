"""The benchmark bodies: each builds its case outside the timed call, then hands one callable to measure().

The modules under benchmarks/ stay a few lines each and call these, so a step, a loader and an epoch are timed
the same way whatever the model, device or precision.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from statistics import median

import torch
from torch import nn

from fer_bench.data.constants import CLASS_NAMES
from fer_bench.data.dataset import FerData, take, train_split
from fer_bench.engine import RunConfig, Training, create_optimizer, create_train_step, evaluate, train_epoch
from fer_bench.engine.build import data_parallel
from fer_bench.engine.compile import warm_compiled_step
from fer_bench.engine.device import resolve_device, synchronize
from fer_bench.measure.timing import MIN_ROUNDS, WARMUP_ROUNDS, choose_rounds, measure, paired_overhead
from fer_bench.plugin.session import FerSession
from fer_bench.workload import create_workload

STEP_PHASES = ("forward", "forward_backward", "train_step")
#: The fewest alternating pairs the harness-overhead figure is made of.
MIN_OVERHEAD_PAIRS = 8
#: What counting a step's FLOPs (FlopCounterMode, after the timed rounds) costs, in calls of the step.
FLOP_COUNT_CALLS = 2
#: Each phase's rank among the step cases of one model, batch and precision: a call of a phase takes at least as
#: long as one of a lower rank (a forward pass is part of the backward pass's step, which is part of a training
#: step), so the budget skips a case at once when a lower phase already showed it cannot fit.
PHASE_RANKS = {"forward": 0, "forward_backward": 1, "train_step_reference": 2, "train_step": 2}
PHASE_BY_RANK = {0: "forward", 1: "forward and backward", 2: "training step"}
#: An epoch's fewest timed rounds (its cold epoch comes first, untimed).
EPOCH_MIN_ROUNDS = 3


def _eval_split(data: FerData) -> str | None:
    names = [s for s in ("public_test", "test", "private_test") if s in data.split_names()]
    return names[0] if names else None


def _common_info(session: FerSession, config: RunConfig, training: Training | None = None, **counts) -> dict:
    """What every result records: its axes, the settings that shaped it, its workload and the telemetry."""
    info = {**config.axes(), "data": session.data_description, "preset": session.preset_name}
    if training is not None:
        info.update(training.settings)
    info["workload"] = create_workload(session.data_identity, input_size=info.get("input_size"),
                                       in_chans=info.get("in_chans"), **counts)
    if config.model != "none":  # a loader pass has no precision
        info.update(_precision_native(session, config))
    try:
        from fer_bench.machine.fingerprint import collect_telemetry

        info["telemetry"] = collect_telemetry()
    except Exception as exc:  # telemetry is best effort: a missing reading must not fail a measurement
        info["telemetry"] = {"error": str(exc)}
    return info


def _precision_native(session: FerSession, config: RunConfig) -> dict:
    """``precision_native`` (and ``precision_note`` when emulated), from the fingerprint's CPU flags."""
    from fer_bench.engine.precision import describe_precision_native
    from fer_bench.machine.identity import collect_isa_cap

    device = resolve_device(config.device, config.devices_needed).device
    flags = session.get_fingerprint().get("cpu", {}).get("flags") or ()
    info = describe_precision_native(config.precision, device, flags)
    if device.type == "cpu":
        capped = collect_isa_cap()
        if capped:  # changes fp32 as well: the same machine runs at another speed
            info["cpu_isa_env"] = capped
    session.note_precision(info)
    return info


def device_batch(session: FerSession, training: Training) -> tuple[torch.Tensor, torch.Tensor]:
    """One real batch of the run's data through the standard loader policy, already on the device."""
    from fer_bench.data.loader import create_loader

    config = training.config
    data = session.data
    split = train_split(data)
    batch = config.global_batch_size  # nn.DataParallel splits it over its devices
    if data.labels is None or len(data.indices(split)) < batch:
        return training.example_batch()
    loader = create_loader(take(data, split, batch), split, batch_size=batch,
                           train=True, input_size=training.input_size, in_chans=training.in_chans,
                           seed=config.seed)
    x, y = next(iter(loader))
    return training.step.prepare_input(x), y.to(training.step.device)


def _flops(model: nn.Module, x: torch.Tensor, *, backward: bool) -> int | None:
    from fer_bench.models.flops import count_flops

    module = model.module if isinstance(model, nn.DataParallel) else model
    try:
        flops = count_flops(module, x, backward=backward)
    finally:
        module.zero_grad(set_to_none=True)
    return flops or None


def bench_step(benchmark, session: FerSession, config: RunConfig, phase: str) -> dict:
    """forward (eval, no grad), forward_backward, or the full train_step, on a batch already on the device."""
    if phase not in STEP_PHASES:
        raise ValueError(f"phase must be one of {STEP_PHASES}")
    planner = _step_planner(session, config, phase, after_calls=FLOP_COUNT_CALLS)
    training = create_train_step(config)
    x, y = device_batch(session, training)
    step = training.step
    fn = {"forward": lambda: step.forward(x),
          "forward_backward": lambda: step.forward_backward(x, y),
          "train_step": lambda: step.step(x, y)}[phase]

    def flops() -> int | None:
        with step.policy.autocast():  # counted on the eager model: a compiled one does the same arithmetic
            return _flops(step.eager_model, x, backward=phase != "forward")

    extra = _common_info(session, config, training)
    extra.update(warm_compiled_step(step, fn))  # compiles before the rounds; a fallback to eager fails the case
    # the FLOP count runs a step's worth of work after the rounds: part of the case's need in the budget's plan
    with _no_compiling_in_rounds(step):
        info = measure(benchmark, fn, device=step.device, samples_per_call=config.global_batch_size, phase=phase,
                       target_s=session.preset.target_round_s, flops_per_call=flops, extra=extra, planner=planner)
    _step_figures(benchmark, session, config, step.device, fn, info)
    if session.profile_ops and phase == "train_step" and "step_time_ms" in info:
        _profile_ops(benchmark, session, training, x, y, info)
    return info


@contextlib.contextmanager
def _no_compiling_in_rounds(step):
    """A compiled step must not compile again inside its timed rounds (a recompile is compile time timed as a
    step, and past the recompile limit the frame runs eager): the case fails instead, naming why."""
    if getattr(step, "compile_mode", "eager") == "eager":
        yield
        return
    from fer_bench.engine.compile import CompiledFellBack, CompileWatch

    with CompileWatch(step) as watch:
        yield
    report = watch.report(0.0, expect_compile=False)
    if report["compile_graphs"] or report["compile_fell_back"]:
        why = report["compile_fallback_reason"] or "; ".join(report["compile_recompile_reasons"]) or \
            f"{report['compile_graphs']} new graph(s)"
        raise CompiledFellBack(f"torch.compile mode {step.compile_mode} compiled again during the timed rounds "
                               f"({why}): the rounds are not a compiled step's")


def _step_figures(benchmark, session: FerSession, config: RunConfig, device: torch.device, fn, info: dict) -> None:
    """MFU against the datasheet peak and the launch-bound verdict of a timed step (fer_bench.measure.utilisation):
    every step result carries them, null with the reason where they do not apply."""
    from fer_bench.measure.utilisation import count_dispatched_ops, launch_bound, utilisation

    figures = utilisation(info, device=device, precision=config.precision, tf32=config.tf32,
                          user_peak_tflops=session.peak_tflops)
    ops = None
    if device.type == "cuda" and "step_time_ms" in info and config.compile == "eager":
        ops = count_dispatched_ops(fn)  # one more step, after the rounds
    figures.update(launch_bound(device_type=device.type, host_ms=info.get("host_time_ms"),
                                device_ms=info.get("device_time_ms"), ops=ops))
    if config.compile != "eager" and device.type == "cuda":
        figures["launch_bound_reason"] = "a compiled step's kernels are not counted by dispatch: not judged"
    if figures.get("launch_bound"):
        session.launch_bound.append(f"{benchmark.name}: {figures['launch_bound_reason']}")
    benchmark.extra_info.update(figures)
    info.update(figures)


#: --fer-profile-ops: profiled steps after a case's timed rounds, and the unprofiled steps before them.
PROFILE_STEPS, PROFILE_WARMUP = 3, 2


def _profile_ops(benchmark, session: FerSession, training: Training, x, y, info: dict) -> None:
    """A few training steps under torch.profiler after the timed rounds (the profiler's overhead stays out of
    them): the Chrome trace and the tables of self time by operator and category go into the results JSON's
    ``.ops/`` folder, the category shares and per-phase peak memory into extra_info."""
    from fer_bench.measure.ops import profile_train_step

    out = profile_train_step(training.step, x, y, steps=PROFILE_STEPS, warmup=PROFILE_WARMUP,
                             out_dir=session.artifact_dir("ops"), name=benchmark.name)
    base = session.json_path.parent
    files = out.pop("files", {})
    out["op_profile_files"] = {kind: os.path.relpath(path, base) for kind, path in files.items()}
    benchmark.extra_info.update(out)
    info.update(out)


def _step_planner(session: FerSession, config: RunConfig, phase: str, *, after_calls: int = 0,
                  extra_calls: int = 0):
    """The budget's planner of a step case, made before the model is built: a case whose cheaper phase (same
    model, batch, precision...) already showed its minimum cannot fit is skipped at no cost."""
    family = tuple(v for k, v in config.axes().items() if k not in ("optimizer", "num_workers"))
    return session.round_planner(extra_calls, after_calls=after_calls, family=family, rank=PHASE_RANKS[phase],
                                 phase_names=PHASE_BY_RANK, min_rounds=MIN_ROUNDS,
                                 calls_before=1 + WARMUP_ROUNDS)  # the cold call and the warm-up


def bench_train_step_reference(benchmark, session: FerSession, config: RunConfig) -> dict:
    """The full step as a bare hand loop (model, loss, backward, optimizer step, nothing else).

    It sits in the train_step group so every run shows the harness's own overhead beside it; the precision is
    applied the plain way (autocast, GradScaler, bf16 weights) so both sides do the same arithmetic. After its own
    timed rounds it times the harness's step and the bare step in alternating pairs: ``harness_overhead_fraction``
    is the median of the paired ratios minus one, free of the drift between two separately timed tests.
    """
    from fer_bench.models import create_model

    # the paired pass (a warm pair, then at least MIN_OVERHEAD_PAIRS pairs) is kept beside the minimum rounds
    planner = _step_planner(session, config, "train_step_reference", extra_calls=2 * (MIN_OVERHEAD_PAIRS + 1))
    training = create_train_step(config)  # the same input batch, and the harness side of the paired overhead
    device, policy = training.step.device, training.step.policy
    x, y = device_batch(session, training)
    torch.manual_seed(config.seed)
    model = create_model(config.model).to(device=device, dtype=policy.param_dtype)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.parallel_mode == "dp":
        model = data_parallel(model, device, config.num_gpus)
    model.train()
    optimizer = create_optimizer(config.optimizer, model.parameters(), config.lr)
    criterion = nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler(device.type) if policy.grad_scaler else None
    dtype = policy.autocast_dtype

    if dtype is None:
        def bare_step():
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
    elif scaler is None:
        def bare_step():
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype):
                loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
    else:
        def bare_step():
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype):
                loss = criterion(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    info = measure(benchmark, bare_step, device=device, samples_per_call=config.global_batch_size,
                   phase="train_step_reference", target_s=session.preset.target_round_s,
                   extra=_common_info(session, config, training), planner=planner)
    _step_figures(benchmark, session, config, device, bare_step, info)
    if "step_time_ms" in info:
        estimate = info["step_time_ms"] / 1e3
        wanted = choose_rounds(2 * estimate, session.preset.target_round_s, MIN_OVERHEAD_PAIRS, 100)
        fit = session.fit_calls(per_call_s=2 * estimate, minimum=MIN_OVERHEAD_PAIRS + 1, wanted=wanted + 1)
        if fit:
            overhead = paired_overhead(lambda: training.step.step(x, y), bare_step, device=device, pairs=fit - 1)
            session.overheads[benchmark.name] = overhead["harness_overhead_fraction"]
        else:  # an extra: the case keeps its rounds, the overhead figure is left out and says why
            overhead = {"harness_overhead_skipped": f"over the time budget: {MIN_OVERHEAD_PAIRS} pairs would take "
                                                    f"{2 * estimate * (MIN_OVERHEAD_PAIRS + 1):.1f} s more"}
            session.overhead_skipped.append(benchmark.name)
        benchmark.extra_info.update(overhead)
        info.update(overhead)
    return info


def bench_dataloader(benchmark, session: FerSession, *, device: str, batch_size: int, num_workers: int,
                     pin_memory: bool, pipeline: str = "batched", seed: int = 0) -> dict:
    """Loader-only throughput: one pass over ``--fer-epoch-images`` training images per round, through the batched
    pipeline or the per-image one (fer_bench.data.per_image: its image folder is written once, before timing)."""
    from fer_bench.data.loader import create_loader

    data = session.data
    split = train_split(data)
    subset = take(data, split, session.epoch_images)
    n_batches = len(subset) // batch_size
    if n_batches == 0:
        raise ValueError(f"--fer-epoch-images {session.epoch_images} is smaller than batch size {batch_size}")
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
    extra = _common_info(session, config, images_per_round=n_batches * batch_size)
    for axis in ("model", "precision", "num_gpus", "optimizer", "lr_scaling", "memory_format", "parallel",
                 "scaling"):
        extra.pop(axis)  # a loader pass has none of these
    extra.update(pin_memory=pin_memory, loader=loader.settings(), images_per_round=n_batches * batch_size)
    return measure(benchmark, one_pass, device=torch_device, samples_per_call=n_batches * batch_size,
                   phase="dataloader", target_s=session.preset.target_round_s * 2, min_rounds=5,
                   warmup_rounds=1, extra=extra, planner=session.round_planner())


def bench_epoch(benchmark, session: FerSession, config: RunConfig) -> dict:
    """A training epoch over ``--fer-epoch-images`` images plus the evaluation pass, timed together per round."""
    from fer_bench.data.loader import create_loader

    data = session.data
    if data.labels is None:
        raise ValueError(f"{session.data_description} has no labels: the epoch benchmark needs a labelled set")
    if config.parallel_mode == "ddp":
        return _bench_ddp_epoch(benchmark, session, config)
    training = create_train_step(config)
    device = training.step.device
    on_gpu = device.type == "cuda"
    split = train_split(data)
    train = take(data, split, session.epoch_images)
    batch = config.global_batch_size  # nn.DataParallel splits each loader batch over its devices
    if len(train) < batch:
        raise ValueError(f"{len(train)} training images is fewer than batch size {batch}")
    eval_split = _eval_split(data) or split
    evaluation = take(data, eval_split, session.preset.eval_images)
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

    extra = _common_info(session, config, training, train_images=len(train), eval_images=len(evaluation))
    if config.compile != "eager":
        x, y = device_batch(session, training)
        extra.update(warm_compiled_step(step, lambda: step.step(x, y)),
                     compile_epoch=("training steps compiled (every batch the same shape: the last partial batch "
                                    "is dropped); the evaluation pass eager (its last batch is partial)"))
    extra.update(loader=train_loader.settings(), train_images=len(train), eval_images=len(evaluation),
                 eval_split=eval_split)
    planner = session.round_planner()
    if planner is not None and config.compile == "eager":  # an eager floor would overstate a compiled epoch's
        _check_epoch_floor(planner, session, training, len(train) // batch)
    with _no_compiling_in_rounds(step):
        info = measure(benchmark, one_epoch, device=device, samples_per_call=len(train), phase="epoch",
                       target_s=session.preset.target_round_s * 4, min_rounds=EPOCH_MIN_ROUNDS, max_rounds=20,
                       warmup_rounds=0, extra=extra, planner=planner)
    timed = records[1:] or records  # the first record is the cold-start epoch
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


def _check_epoch_floor(planner, session: FerSession, training: Training, batches: int) -> None:
    """An epoch's cold call is the budget's only estimate of it, and the most a skipped epoch can waste; an epoch
    takes at least its batches' forward passes, so two forward passes on one batch (the first warms it; eval mode,
    no grad: the model is left as it was) skip an epoch that cannot fit before it runs."""
    x, _ = device_batch(session, training)
    training.step.forward(x)
    t0 = time.perf_counter()
    training.step.forward(x)
    synchronize(training.step.device)
    per_batch = time.perf_counter() - t0
    planner.check_floor(batches * per_batch, calls_before=1, min_rounds=EPOCH_MIN_ROUNDS,
                        why=f"{batches} forward passes alone take {batches * per_batch:.1f} s an epoch")


def bench_scaling_step(benchmark, session: FerSession, config: RunConfig) -> dict:
    """The full training step spread over ``num_gpus`` devices (dp) or processes (ddp), with explicit batch
    semantics (``config.batch_info()``): ``samples_per_s`` is the global batch over the step time.

    dp times nn.DataParallel's step in this process, as test_train_step does. ddp starts its ranks once for the
    case (fer_bench.engine.distributed.DDPWorkers); each timed round tells every rank to run one step and waits for
    all, so a round is the slowest rank's step plus the round trip to the ranks (``dispatch_ms`` records it).
    After the rounds, each rank's statistics, their skew, and the communication the backward pass did not hide
    (the DDP step minus the same step under ``no_sync()``, alternated in blocks) are recorded.
    """
    if config.parallel_mode != "ddp":
        return bench_step(benchmark, session, config, "train_step")
    from fer_bench.engine.distributed import DDPOptions, DDPWorkers, summarize_ranks

    if session.launch is not None:
        return _bench_ddp_launched(benchmark, session, config)
    planner = session.round_planner(after_calls=2 * NO_SYNC_BLOCK_STEPS * NO_SYNC_BLOCKS)
    with DDPWorkers(config, options=DDPOptions(**session.ddp_options)) as workers:
        extra = _ddp_info(session, config, threads=workers.threads)
        per_round: list[list[float]] = []

        def one_round() -> None:
            per_round.append([times[0] for times in workers.run(1)])

        info = measure(benchmark, one_round, device=torch.device("cpu"), samples_per_call=config.global_batch_size,
                       phase="train_step", target_s=session.preset.target_round_s, extra=extra, planner=planner)
        summary = summarize_ranks([list(r)[-info["rounds"]:] for r in zip(*per_round)])
        comm = _exposed_communication(lambda steps, no_sync: workers.run(steps, no_sync=no_sync))
    return _record_ddp(benchmark, info, summary, comm, workers.describe())


def _ddp_info(session: FerSession, config: RunConfig, *, threads: int, **counts) -> dict:
    """What a DDP case records before its rounds: the axes and settings, with the one-device step's facts;
    ``counts`` are the workload's image counts (an epoch's)."""
    from fer_bench.models import get_model_info

    model_info = get_model_info(config.model)
    extra = _common_info(session, config)
    extra.update(config.batch_info(), optimizer=config.optimizer, lr=config.lr, channels_last=config.channels_last,
                 input_size=model_info.input_size, in_chans=model_info.in_chans, torch_num_threads=threads)
    extra["workload"] = create_workload(session.data_identity, input_size=model_info.input_size,
                                        in_chans=model_info.in_chans, **counts)
    return extra


def _record_ddp(benchmark, info: dict, summary: dict, comm: dict, ddp: dict) -> dict:
    slowest = max(r["median_ms"] for r in summary["per_rank"])
    figures = {**summary, **comm, "ddp": ddp, "slowest_rank_step_ms": slowest}
    if "step_time_ms" in info:
        figures["dispatch_ms"] = info["step_time_ms"] - slowest
    benchmark.extra_info.update(figures)
    info.update(figures)
    return info


def _bench_ddp_launched(benchmark, session: FerSession, config: RunConfig) -> dict:
    """A DDP case under torchrun or srun: this process is one rank of the launcher's world, rank 0 leads (see
    fer_bench.engine.launch) and alone records the result; the other ranks follow its calls."""
    import torch.distributed as dist

    from fer_bench.engine import launch
    from fer_bench.engine.distributed import DDPOptions, build_rank_step, ddp_backend, summarize_ranks, timed_steps

    me = session.launch
    options = DDPOptions(**session.ddp_options)
    backend = ddp_backend(config.device.split(":")[0])
    group = dist.new_group(backend="nccl") if backend == "nccl" else None
    training = build_rank_step({**config.as_dict(), "batch_size": config.per_device_batch_size}, me.local_rank,
                               options, process_group=group)
    step, device = training.step, training.step.device
    x, y = training.example_batch()
    steps: list[float] = []
    blocks: dict[bool, list[list[float]]] = {False: [], True: []}

    def run_block(n: int, no_sync: bool) -> None:
        blocks[no_sync].append(timed_steps(step, x, y, device, n, no_sync))

    if me.rank == 0:
        def one_step() -> None:
            launch.lead(launch.STEP)
            steps.extend(timed_steps(step, x, y, device, 1))

        extra = _ddp_info(session, config, threads=torch.get_num_threads())
        info = measure(benchmark, one_step, device=torch.device("cpu"), samples_per_call=config.global_batch_size,
                       phase="train_step", target_s=session.preset.target_round_s, extra=extra)

        for no_sync in no_sync_schedule():  # every rank's block times are gathered at the end
            launch.lead(launch.NO_SYNC_BLOCK if no_sync else launch.SYNCED_BLOCK, NO_SYNC_BLOCK_STEPS)
            run_block(NO_SYNC_BLOCK_STEPS, no_sync)
        launch.lead(launch.STOP)
    else:
        def serve() -> None:
            while True:
                code, n = launch.follow()
                if code == launch.STOP:
                    return
                if code == launch.STEP:
                    steps.extend(timed_steps(step, x, y, device, 1))
                else:
                    run_block(n, code == launch.NO_SYNC_BLOCK)

        benchmark.disabled = True  # this rank's calls follow rank 0's rounds: rank 0 alone records the case
        benchmark.pedantic(serve, rounds=1, iterations=1)
    every = launch.gather({"steps": steps, "blocks": blocks})
    if group is not None:
        dist.destroy_process_group(group)
    if me.rank != 0:
        return {}
    rounds = info.get("rounds", len(steps))
    summary = summarize_ranks([r["steps"][-rounds:] for r in every])

    def slowest(no_sync: bool) -> list[float]:
        per_block = zip(*(r["blocks"][no_sync] for r in every))  # block i of every rank
        return [max(step_times) for block in per_block for step_times in zip(*block)]

    comm = _comm_figures(slowest(False), slowest(True))
    nodes = session.launch_nodes or {}
    ddp = {"backend": backend, "world_size": me.world_size, "nodes": nodes.get("node_count", 1),
           "procs_per_node": me.world_size // max(1, nodes.get("node_count", 1)), "launcher": me.launcher,
           "heterogeneous": nodes.get("heterogeneous", False), **options.as_dict()}
    return _record_ddp(benchmark, info, summary, comm, ddp)


def _bench_ddp_epoch(benchmark, session: FerSession, config: RunConfig) -> dict:
    """A training epoch under DistributedDataParallel: each rank trains its DistributedSampler share of the
    epoch's images (fer_bench.data.loader's ``shard``), so one round is one epoch of the whole set over the ranks;
    the evaluation pass is not part of it (a single-device epoch case times both)."""
    from fer_bench.engine.distributed import DDPOptions, DDPWorkers, summarize_ranks

    if session.launch is not None:
        import pytest

        pytest.skip("a DDP epoch under torchrun or srun is not built yet: run test_epoch with parallel=ddp without "
                    "a launcher (its ranks are spawned), or test_scaling_step under the launcher")
    spec = {"data_path": str(session.data_path) if session.data_path else None,
            "epoch_images": session.epoch_images, "num_workers": config.num_workers, "pipeline": config.pipeline}
    planner = session.round_planner()
    with DDPWorkers(config, options=DDPOptions(**session.ddp_options), epoch=spec) as workers:
        first = workers.ranks[0]
        samples = sum(r["epoch_samples"] for r in workers.ranks)
        extra = _ddp_info(session, config, threads=workers.threads, train_images=first["train_images"],
                          eval_images=0)
        extra.update(train_images=first["train_images"], eval_images=0, epoch_steps=first["epoch_steps"],
                     eval_split=None, sampler="DistributedSampler-style shards (same order, every N-th row)")
        epochs: list[list[dict]] = []

        def one_epoch() -> None:
            epochs.append(workers.epoch(len(epochs)))

        info = measure(benchmark, one_epoch, device=torch.device("cpu"), samples_per_call=samples, phase="epoch",
                       target_s=session.preset.target_round_s * 4, min_rounds=EPOCH_MIN_ROUNDS, max_rounds=20,
                       warmup_rounds=0, extra=extra, planner=planner)
    timed = epochs[1:] or epochs  # the first is the cold-start epoch
    summary = summarize_ranks([[e[rank]["epoch_time_s"] for e in timed] for rank in range(config.world_size)])
    slowest = [max(e[rank]["epoch_time_s"] for rank in range(config.world_size)) for e in timed]
    figures = {
        **summary,
        "epoch_time_s": median(slowest),
        "data_wait_fraction": median([median(r["data_wait_fraction"] for r in e) for e in timed]),
        "data_wait_s": median([max(r["data_wait_s"] for r in e) for e in timed]),
        "compute_s": median([max(r["compute_s"] for r in e) for e in timed]),
        "train_loss": epochs[-1][0]["loss"],
        "epochs_trained": len(epochs),
        "ddp": workers.describe(),
    }
    benchmark.extra_info.update(figures)
    info.update(figures)
    return info


def bench_time_to_accuracy(benchmark, session: FerSession, config: RunConfig) -> dict:
    """Train to the target accuracy ``session.repeats`` times (seeds 0..N-1), one seeded run a round, by MLPerf's
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

    data = session.data
    if data.labels is None:
        raise ValueError(f"{session.data_description} has no labels: time to accuracy needs a labelled set")
    target = session.target_accuracy or default_target(session.data_path is None)
    lr = scaled_lr(config.optimizer, config.batch_size, config.lr_scaling)
    config = dataclasses.replace(config, lr=lr)
    split = train_split(data)
    train = take(data, split, session.epoch_images)
    if len(train) < config.global_batch_size:
        raise ValueError(f"{len(train)} training images is fewer than batch size {config.global_batch_size}")
    eval_split = _eval_split(data) or split
    evaluation = take(data, eval_split, session.preset.eval_images)
    seeds = iter(range(session.repeats))
    runs = []

    def one_run(seed: int) -> None:
        runs.append(train_to_target(dataclasses.replace(config, seed=seed), train, split, evaluation, eval_split,
                                    target=target, max_epochs=session.max_epochs, class_names=CLASS_NAMES))

    from fer_bench.models import get_model_info

    model_info = get_model_info(config.model)
    extra = _common_info(session, config)
    extra["workload"] = create_workload(session.data_identity, input_size=model_info.input_size,
                                        in_chans=model_info.in_chans, train_images=len(train),
                                        eval_images=len(evaluation), target_accuracy=target,
                                        max_epochs=session.max_epochs)
    extra.update(config.batch_info(), target_accuracy=target, max_epochs=session.max_epochs,
                 repeats=session.repeats, eval_every_epochs=1, lr=lr, base_lr=BASE_LRS[config.optimizer],
                 base_batch_size=BASE_BATCH_SIZE, lr_scaling=config.lr_scaling, train_images=len(train),
                 eval_images=len(evaluation), eval_split=eval_split, input_size=model_info.input_size,
                 in_chans=model_info.in_chans, torch_num_threads=torch.get_num_threads(),
                 clock="from building the model (data already in memory) to the evaluation that reached the target")
    benchmark.extra_info.update(extra)
    benchmark.pedantic(one_run, setup=lambda: ((next(seeds),), {}), rounds=session.repeats, iterations=1,
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
    _replace_rounds(benchmark, rounds)
    if session.curve_tsv:
        written = [write_curve_tsv(session.artifact_path("curves", benchmark.name, f".seed{r.seed}.tsv"), r)
                   for r in runs]
        figures["curve_tsv"] = [os.path.relpath(path, session.json_path.parent) for path in written]
    if not score["reached_target"]:
        session.missed_targets.append(
            f"{benchmark.name} missed the target {target:.0%}: {score['runs_missed']} of {len(runs)} runs missed "
            f"(best accuracy {figures['best_accuracy']:.1%} in {session.max_epochs} epochs); its rounds are times to "
            f"the epoch cap, not to the target")
    benchmark.extra_info.update(figures)
    return {**extra, **figures}


def _replace_rounds(benchmark, times: list[float]) -> None:
    """Make ``times`` the rounds pytest-benchmark reports for this case (its statistics are computed lazily from
    ``data`` and cached, so the cache goes with the old rounds)."""
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is None:
        return
    stats.__dict__.clear()
    stats.data = list(times)


#: The no_sync comparison: blocks of steps alternating DDP and no_sync (drift cancels), each this many steps.
NO_SYNC_BLOCKS, NO_SYNC_BLOCK_STEPS = 3, 3


def no_sync_schedule():
    """Whether each block of the no_sync comparison skips the all-reduce: DDP then no_sync, then the other way
    round, and so on (ABBA, so a drift over the blocks cancels)."""
    for block in range(NO_SYNC_BLOCKS):
        yield from ((False, True) if block % 2 == 0 else (True, False))


def _exposed_communication(run_block) -> dict:
    """The DDP step's median minus the no_sync step's (slowest rank of each step), from alternating blocks;
    ``run_block(steps, no_sync)`` returns each rank's step times of one block."""
    synced, local = [], []
    for no_sync in no_sync_schedule():
        per_rank = run_block(NO_SYNC_BLOCK_STEPS, no_sync)
        (local if no_sync else synced).extend(max(step) for step in zip(*per_rank))
    return _comm_figures(synced, local)


def _comm_figures(synced: list[float], local: list[float]) -> dict:
    ddp_ms, no_sync_ms = median(synced) * 1e3, median(local) * 1e3
    return {"ddp_step_ms": ddp_ms, "no_sync_step_ms": no_sync_ms, "comm_exposed_ms": ddp_ms - no_sync_ms,
            "comm_exposed_fraction": (ddp_ms - no_sync_ms) / ddp_ms if ddp_ms > 0 else None}


__all__ = ["bench_dataloader", "bench_epoch", "bench_scaling_step", "bench_step", "bench_time_to_accuracy",
           "bench_train_step_reference", "take"]
