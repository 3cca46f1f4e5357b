"""The scaling bodies: a step over several devices (nn.DataParallel) or processes (DistributedDataParallel, spawned
or under a launcher), and a DDP epoch, each with its ranks' statistics and the communication the backward pass did
not hide."""

from __future__ import annotations

from statistics import median

import torch

from fer_bench.engine import RunConfig
from fer_bench.measure.case import EPOCH_MIN_ROUNDS, common_info
from fer_bench.measure.context import BenchOptions, Recorder
from fer_bench.measure.steps import bench_step
from fer_bench.measure.timing import measure
from fer_bench.workload import create_workload


def bench_scaling_step(benchmark, options: BenchOptions, recorder: Recorder, config: RunConfig) -> dict:
    """The full training step spread over ``num_gpus`` devices (dp) or processes (ddp), with explicit batch
    semantics (``config.batch_info()``): ``samples_per_s`` is the global batch over the step time.

    dp times nn.DataParallel's step in this process, as test_train_step does. ddp starts its ranks once for the
    case (fer_bench.engine.distributed.DDPWorkers); each timed round tells every rank to run one step and waits for
    all, so a round is the slowest rank's step plus the round trip to the ranks (``dispatch_ms`` records it).
    After the rounds, each rank's statistics, their skew, and the communication the backward pass did not hide
    (the DDP step minus the same step under ``no_sync()``, alternated in blocks) are recorded. With
    ``options.ddp_verify`` the ranks first check one step against one process's (``verify_ddp``).
    """
    if config.parallel_mode != "ddp":
        return bench_step(benchmark, options, recorder, config, "train_step")
    from fer_bench.engine.distributed import DDPOptions, DDPWorkers, summarize_ranks

    if recorder.launch is not None:
        return _bench_ddp_launched(benchmark, options, recorder, config)
    planner = recorder.round_planner(after_calls=2 * NO_SYNC_BLOCK_STEPS * NO_SYNC_BLOCKS)
    with DDPWorkers(config, options=DDPOptions(**options.ddp_options), timeout_s=options.ddp_timeout_s) as workers:
        extra = _ddp_info(options, recorder, config, threads=workers.threads)
        verify_ddp(options, workers.check, extra)
        per_round: list[list[float]] = []

        def one_round() -> None:
            per_round.append([times[0] for times in workers.run(1)])

        info = measure(benchmark, one_round, device=torch.device("cpu"), samples_per_call=config.global_batch_size,
                       phase="train_step", target_s=options.target_round_s, extra=extra, planner=planner,
                       contention=recorder.contention)
        summary = summarize_ranks([list(r)[-info["rounds"]:] for r in zip(*per_round)])
        comm = _exposed_communication(lambda steps, no_sync: workers.run(steps, no_sync=no_sync))
    return _record_ddp(benchmark, info, summary, comm, workers.describe())


def verify_ddp(options: BenchOptions, check, extra: dict) -> None:
    """--fer-ddp-verify: ``check()`` makes every rank take the DDP correctness check's step
    (fer_bench.engine.ddp_check) and returns rank 0's comparison; a mismatch fails the case with one line naming
    the largest difference, a match goes into ``extra`` as ``ddp_verified``. Nothing without the option."""
    if not options.ddp_verify:
        return
    from fer_bench.engine.ddp_check import CheckResult

    result = CheckResult(**check())
    if not result.ok:
        import pytest

        pytest.fail(result.message(), pytrace=False)
    extra["ddp_verified"] = result.record()


def _ddp_info(options: BenchOptions, recorder: Recorder, config: RunConfig, *, threads: int, **counts) -> dict:
    """What a DDP case records before its rounds: the axes and settings, with the one-device step's facts;
    ``counts`` are the workload's image counts (an epoch's)."""
    from fer_bench.models import get_model_info

    model_info = get_model_info(config.model)
    extra = common_info(options, recorder, config)
    extra.update(config.batch_info(), optimizer=config.optimizer, lr=config.lr, channels_last=config.channels_last,
                 input_size=model_info.input_size, in_chans=model_info.in_chans, torch_num_threads=threads)
    extra["workload"] = create_workload(recorder.data_identity, input_size=model_info.input_size,
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


def _bench_ddp_launched(benchmark, options: BenchOptions, recorder: Recorder, config: RunConfig) -> dict:
    """A DDP case under torchrun or srun: this process is one rank of the launcher's world, rank 0 leads (see
    fer_bench.engine.launch) and alone records the result; the other ranks follow its calls."""
    import torch.distributed as dist

    from fer_bench.engine import launch
    from fer_bench.engine.distributed import DDPOptions, build_rank_step, ddp_backend, summarize_ranks, timed_steps

    me = recorder.launch
    ddp_options = DDPOptions(**options.ddp_options)
    backend = ddp_backend(config.device.split(":")[0])
    group = dist.new_group(backend="nccl") if backend == "nccl" else None
    training = build_rank_step({**config.as_dict(), "batch_size": config.per_device_batch_size}, me.local_rank,
                               ddp_options, process_group=group)
    step, device = training.step, training.step.device
    x, y = training.example_batch()
    verdict = None
    if options.ddp_verify:  # every rank takes the check's step, then every rank knows rank 0's verdict
        from fer_bench.engine.ddp_check import rank_check_step

        verdict = launch.gather(rank_check_step(training, me.rank, me.world_size))[0]
    steps: list[float] = []
    blocks: dict[bool, list[list[float]]] = {False: [], True: []}

    def run_block(n: int, no_sync: bool) -> None:
        blocks[no_sync].append(timed_steps(step, x, y, device, n, no_sync))

    if me.rank == 0:
        def one_step() -> None:
            launch.lead(launch.STEP)
            steps.extend(timed_steps(step, x, y, device, 1))

        extra = _ddp_info(options, recorder, config, threads=torch.get_num_threads())
        verify_ddp(options, lambda: verdict, extra)
        info = measure(benchmark, one_step, device=torch.device("cpu"), samples_per_call=config.global_batch_size,
                       phase="train_step", target_s=options.target_round_s, extra=extra,
                       contention=recorder.contention)

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

        verify_ddp(options, lambda: verdict, {})  # a mismatch fails the case on every rank, in step
        recorder.leave_unrecorded(benchmark)  # this rank's calls follow rank 0's rounds: rank 0 alone records it
        benchmark.pedantic(serve, rounds=1, iterations=1)
    every = launch.gather({"steps": steps, "blocks": blocks, "host": launch.this_host()})
    if group is not None:
        dist.destroy_process_group(group)
    if me.rank != 0:
        return {}
    rounds = info.get("rounds", len(steps))
    summary = summarize_ranks([r["steps"][-rounds:] for r in every])
    for entry, rank in zip(summary["per_rank"], every):  # the straggler table names each rank's host
        entry["host"] = rank["host"]

    def slowest(no_sync: bool) -> list[float]:
        per_block = zip(*(r["blocks"][no_sync] for r in every))  # block i of every rank
        return [max(step_times) for block in per_block for step_times in zip(*block)]

    comm = _comm_figures(slowest(False), slowest(True))
    nodes = recorder.launch_nodes or {}
    ddp = {"backend": backend, "world_size": me.world_size, "nodes": nodes.get("node_count", 1),
           "procs_per_node": me.world_size // max(1, nodes.get("node_count", 1)), "launcher": me.launcher,
           "heterogeneous": nodes.get("heterogeneous", False), **ddp_options.as_dict()}
    return _record_ddp(benchmark, info, summary, comm, ddp)


def bench_ddp_epoch(benchmark, options: BenchOptions, recorder: Recorder, config: RunConfig) -> dict:
    """A training epoch under DistributedDataParallel: each rank trains its DistributedSampler share of the
    epoch's images (fer_bench.data.loader's ``shard``), so one round is one epoch of the whole set over the ranks;
    the evaluation pass is not part of it (a single-device epoch case times both)."""
    from fer_bench.engine.distributed import DDPOptions, DDPWorkers, summarize_ranks

    if recorder.launch is not None:
        import pytest

        pytest.skip("a DDP epoch under torchrun or srun is not built yet: run test_epoch with parallel=ddp without "
                    "a launcher (its ranks are spawned), or test_scaling_step under the launcher")
    spec = {"data_path": str(options.data_path) if options.data_path else None,
            "epoch_images": options.epoch_images, "num_workers": config.num_workers, "pipeline": config.pipeline}
    planner = recorder.round_planner()
    with DDPWorkers(config, options=DDPOptions(**options.ddp_options), epoch=spec,
                    timeout_s=options.ddp_timeout_s) as workers:
        first = workers.ranks[0]
        samples = sum(r["epoch_samples"] for r in workers.ranks)
        extra = _ddp_info(options, recorder, config, threads=workers.threads, train_images=first["train_images"],
                          eval_images=0)
        extra.update(train_images=first["train_images"], eval_images=0, epoch_steps=first["epoch_steps"],
                     eval_split=None, sampler="DistributedSampler-style shards (same order, every N-th row)")
        verify_ddp(options, workers.check, extra)
        epochs: list[list[dict]] = []

        def one_epoch() -> None:
            epochs.append(workers.epoch(len(epochs)))

        info = measure(benchmark, one_epoch, device=torch.device("cpu"), samples_per_call=samples, phase="epoch",
                       target_s=options.target_round_s * 4, min_rounds=EPOCH_MIN_ROUNDS, max_rounds=20,
                       warmup_rounds=0, extra=extra, planner=planner, contention=recorder.contention)
    # the first is the cold-start epoch; a contended case re-measured ran its rounds twice: the last ones count
    timed = epochs[1:][-info["rounds"]:] or epochs
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
