"""The step bodies: forward, forward and backward, the full training step, and the bare reference loop with its
paired harness overhead; each builds its case outside the timed call, then hands one callable to measure()."""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn

from fer_bench.engine import RunConfig, Training, create_optimizer, create_train_step
from fer_bench.engine.build import data_parallel
from fer_bench.engine.compile import warm_compiled_step
from fer_bench.measure.case import common_info, device_batch
from fer_bench.measure.context import BenchOptions, Recorder
from fer_bench.measure.timing import MIN_ROUNDS, WARMUP_ROUNDS, choose_rounds, measure, paired_overhead


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

def _flops(model: nn.Module, x: torch.Tensor, *, backward: bool) -> int | None:
    from fer_bench.models.flops import count_flops

    module = model.module if isinstance(model, nn.DataParallel) else model
    try:
        flops = count_flops(module, x, backward=backward)
    finally:
        module.zero_grad(set_to_none=True)
    return flops or None


def bench_step(benchmark, options: BenchOptions, recorder: Recorder, config: RunConfig, phase: str) -> dict:
    """forward (eval, no grad), forward_backward, or the full train_step, on a batch already on the device."""
    if phase not in STEP_PHASES:
        raise ValueError(f"phase must be one of {STEP_PHASES}")
    planner = _step_planner(options, recorder, config, phase, after_calls=FLOP_COUNT_CALLS)
    training = create_train_step(config)
    x, y = device_batch(options, recorder, training)
    step = training.step
    fn = {"forward": lambda: step.forward(x),
          "forward_backward": lambda: step.forward_backward(x, y),
          "train_step": lambda: step.step(x, y)}[phase]

    def flops() -> int | None:
        with step.policy.autocast():  # counted on the eager model: a compiled one does the same arithmetic
            return _flops(step.eager_model, x, backward=phase != "forward")

    extra = common_info(options, recorder, config, training)
    extra.update(warm_compiled_step(step, fn))  # compiles before the rounds; a fallback to eager fails the case
    # the FLOP count runs a step's worth of work after the rounds: part of the case's need in the budget's plan
    with no_compiling_in_rounds(step):
        info = measure(benchmark, fn, device=step.device, samples_per_call=config.global_batch_size, phase=phase,
                       target_s=options.target_round_s, flops_per_call=flops, extra=extra, planner=planner,
                       contention=recorder.contention)
    _step_figures(benchmark, options, recorder, config, step.device, fn, info)
    if options.instructions:  # after the rounds: a Valgrind process of its own builds the case again
        from fer_bench.measure.instructions import record_instructions

        counted = record_instructions(config, phase)
        benchmark.extra_info.update(counted)
        info.update(counted)
    if options.profile_ops and phase == "train_step" and "step_time_ms" in info:
        _profile_ops(benchmark, options, recorder, training, x, y, info)
    return info


@contextlib.contextmanager
def no_compiling_in_rounds(step):
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


def _step_figures(benchmark, options: BenchOptions, recorder: Recorder, config: RunConfig, device: torch.device,
                  fn, info: dict) -> None:
    """MFU against the datasheet peak and the launch-bound verdict of a timed step (fer_bench.measure.utilisation):
    every step result carries them, null with the reason where they do not apply."""
    from fer_bench.measure.utilisation import count_dispatched_ops, launch_bound, utilisation

    figures = utilisation(info, device=device, precision=config.precision, tf32=config.tf32,
                          user_peak_tflops=options.peak_tflops)
    ops = None
    if device.type == "cuda" and "step_time_ms" in info and config.compile == "eager":
        ops = count_dispatched_ops(fn)  # one more step, after the rounds
    figures.update(launch_bound(device_type=device.type, host_ms=info.get("host_time_ms"),
                                device_ms=info.get("device_time_ms"), ops=ops))
    if config.compile != "eager" and device.type == "cuda":
        figures["launch_bound_reason"] = "a compiled step's kernels are not counted by dispatch: not judged"
    if figures.get("launch_bound"):
        recorder.launch_bound.append(f"{benchmark.name}: {figures['launch_bound_reason']}")
    benchmark.extra_info.update(figures)
    info.update(figures)


#: --fer-profile-ops: profiled steps after a case's timed rounds, and the unprofiled steps before them.
PROFILE_STEPS, PROFILE_WARMUP = 3, 2


def _profile_ops(benchmark, options: BenchOptions, recorder: Recorder, training: Training, x, y, info: dict) -> None:
    """A few training steps under torch.profiler after the timed rounds (the profiler's overhead stays out of
    them): the Chrome trace and the tables of self time by operator and category go into the results JSON's
    ``.ops/`` folder, the category shares and per-phase peak memory into extra_info."""
    from fer_bench.measure.ops import profile_train_step

    out = profile_train_step(training.step, x, y, steps=PROFILE_STEPS, warmup=PROFILE_WARMUP,
                             out_dir=options.artifact_dir("ops"), name=benchmark.name)
    base = options.json_path.parent
    files = out.pop("files", {})
    out["op_profile_files"] = {kind: os.path.relpath(path, base) for kind, path in files.items()}
    benchmark.extra_info.update(out)
    info.update(out)


def _step_planner(options: BenchOptions, recorder: Recorder, config: RunConfig, phase: str, *, after_calls: int = 0,
                  extra_calls: int = 0):
    """The budget's planner of a step case, made before the model is built: a case whose cheaper phase (same
    model, batch, precision...) already showed its minimum cannot fit is skipped at no cost."""
    family = tuple(v for k, v in config.axes().items() if k not in ("optimizer", "num_workers"))
    return recorder.round_planner(extra_calls, after_calls=after_calls, family=family, rank=PHASE_RANKS[phase],
                                 phase_names=PHASE_BY_RANK, min_rounds=MIN_ROUNDS,
                                 calls_before=1 + WARMUP_ROUNDS)  # the cold call and the warm-up


def bench_train_step_reference(benchmark, options: BenchOptions, recorder: Recorder, config: RunConfig) -> dict:
    """The full step as a bare hand loop (model, loss, backward, optimizer step, nothing else).

    It sits in the train_step group so every run shows the harness's own overhead beside it; the precision is
    applied the plain way (autocast, GradScaler, bf16 weights) so both sides do the same arithmetic. After its own
    timed rounds it times the harness's step and the bare step in alternating pairs: ``harness_overhead_fraction``
    is the median of the paired ratios minus one, free of the drift between two separately timed tests.
    """
    from fer_bench.models import create_model

    # the paired pass (a warm pair, then at least MIN_OVERHEAD_PAIRS pairs) is kept beside the minimum rounds
    planner = _step_planner(options, recorder, config, "train_step_reference", extra_calls=2 * (MIN_OVERHEAD_PAIRS + 1))
    training = create_train_step(config)  # the same input batch, and the harness side of the paired overhead
    device, policy = training.step.device, training.step.policy
    x, y = device_batch(options, recorder, training)
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
                   phase="train_step_reference", target_s=options.target_round_s,
                   extra=common_info(options, recorder, config, training), planner=planner)
    _step_figures(benchmark, options, recorder, config, device, bare_step, info)
    if "step_time_ms" in info:
        estimate = info["step_time_ms"] / 1e3
        wanted = choose_rounds(2 * estimate, options.target_round_s, MIN_OVERHEAD_PAIRS, 100)
        fit = recorder.fit_calls(per_call_s=2 * estimate, minimum=MIN_OVERHEAD_PAIRS + 1, wanted=wanted + 1)
        if fit:
            overhead = paired_overhead(lambda: training.step.step(x, y), bare_step, device=device, pairs=fit - 1)
            recorder.overheads[benchmark.name] = overhead["harness_overhead_fraction"]
        else:  # an extra: the case keeps its rounds, the overhead figure is left out and says why
            overhead = {"harness_overhead_skipped": f"over the time budget: {MIN_OVERHEAD_PAIRS} pairs would take "
                                                    f"{2 * estimate * (MIN_OVERHEAD_PAIRS + 1):.1f} s more"}
            recorder.overhead_skipped.append(benchmark.name)
        benchmark.extra_info.update(overhead)
        info.update(overhead)
    return info
