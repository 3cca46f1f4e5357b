"""DistributedDataParallel over gloo on the CPU (fer_bench.engine.distributed): ranks started once per case,
driven round by round, their statistics, and a rank that dies failing its case only, leaving nothing behind.
Batch semantics (RunConfig) and the availability rules of the parallel and scaling axes."""

from __future__ import annotations

import os
import signal
import time

import pytest

import fer_bench.engine.availability  # noqa: F401  (the engine's checks, registered with the axes)
from fer_bench.axes import case_unavailable_reason
from fer_bench.engine.config import RunConfig
from fer_bench.engine.distributed import DDPOptions, DDPWorkers, WorkerFailed, summarize_ranks, threads_per_rank
from fer_bench.errors import FerBenchError


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers kill(0): read its state
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


TINY = RunConfig(model="fer_cnn_2block", batch_size=8, num_gpus=2, parallel="ddp")


# ----------------------------------------------------------------------------------------------- batch semantics


def test_weak_scaling_keeps_the_per_device_batch():
    assert TINY.world_size == 2 and TINY.per_device_batch_size == 8 and TINY.global_batch_size == 16
    assert TINY.batch_info() == {"parallel": "ddp", "world_size": 2, "scaling_mode": "weak",
                                 "per_device_batch_size": 8, "global_batch_size": 16}


def test_strong_scaling_splits_the_global_batch():
    strong = RunConfig(model="fer_cnn_2block", batch_size=64, num_gpus=4, parallel="ddp", scaling="strong")
    assert strong.global_batch_size == 64 and strong.per_device_batch_size == 16
    with pytest.raises(FerBenchError, match="splits the global batch 64 over 3"):
        RunConfig(model="fer_cnn_2block", batch_size=64, num_gpus=3, parallel="ddp", scaling="strong")


def test_a_step_benchmark_with_several_gpus_is_data_parallel_over_the_global_batch():
    legacy = RunConfig(model="fer_cnn_2block", batch_size=32, num_gpus=4, device="cuda")
    assert legacy.parallel_mode == "dp" and legacy.global_batch_size == 128 and legacy.per_device_batch_size == 32
    one = RunConfig(model="fer_cnn_2block", batch_size=32)
    assert one.parallel_mode == "none" and one.world_size == 1 and one.global_batch_size == 32


@pytest.mark.parametrize("case, reason", [
    ({"device": "cpu", "num_gpus": 1, "parallel": "dp"}, "nn.DataParallel replicates over CUDA devices, not cpu*"),
    ({"device": "cpu", "num_gpus": 2, "parallel": "dp"}, "num_gpus=2 needs a GPU device, not cpu"),
    ({"device": "cpu", "num_gpus": 512, "parallel": "ddp"}, "ddp on cpu: 512 processes need 512 cores, * here"),
    ({"device": "cpu", "num_gpus": 3, "batch_size": 64, "parallel": "ddp", "scaling": "strong"}, None),
    ({"device": "mps", "num_gpus": 1, "parallel": "ddp"}, None),  # the device axis speaks first: no MPS here
])
def test_parallel_and_scaling_say_why_a_case_cannot_run(case, reason):
    import fnmatch

    got = case_unavailable_reason({"model": "fer_cnn_2block", "batch_size": 32, "precision": "fp32", **case})
    if reason is None:
        assert got  # some reason: the cores (3 ranks on this machine) or the split, or no MPS device
    else:
        assert got and fnmatch.fnmatch(got, reason), got


def test_ddp_on_the_cpu_counts_processes_not_devices():
    case = {"model": "fer_cnn_2block", "device": "cpu", "batch_size": 32, "precision": "fp32", "num_gpus": 2,
            "parallel": "ddp", "scaling": "weak"}
    assert case_unavailable_reason(case) is None
    assert case_unavailable_reason({**case, "parallel": "none"})  # cpu with 2 GPUs: no


def test_cpu_ranks_share_the_cores():
    assert threads_per_rank("cpu", 2, cores=2) == 1 and threads_per_rank("cpu", 1, cores=2) == 2
    assert threads_per_rank("cpu", 4, cores=16) == 4


def test_rank_summary_by_hand():
    s = summarize_ranks([[0.010, 0.011, 0.012, 0.013], [0.020, 0.021, 0.022, 0.023]])
    assert [r["rounds"] for r in s["per_rank"]] == [4, 4]
    assert s["per_rank"][1]["median_ms"] == pytest.approx(21.5)
    assert s["rank_skew"] == pytest.approx(21.5 / 11.5) and s["slowest_rank"] == 1


# ----------------------------------------------------------------------------------------------- the ranks


def test_two_gloo_ranks_run_rounds_and_leave_nothing_behind():
    with DDPWorkers(TINY, options=DDPOptions(bucket_cap_mb=1.0)) as workers:
        assert [r["rank"] for r in workers.ranks] == [0, 1] and {r["backend"] for r in workers.ranks} == {"gloo"}
        pids, folder = [p.pid for p in workers.procs], workers._folder
        per_rank = workers.run(3)
        assert len(per_rank) == 2 and all(len(t) == 3 and min(t) > 0 for t in per_rank)
        synced = workers.run(2, no_sync=True)
        assert len(synced) == 2
        assert workers.round() > 0
    assert all(_gone(pid) for pid in pids) and not os.path.exists(folder)


def test_a_killed_rank_fails_the_case_and_the_others_are_stopped():
    workers = DDPWorkers(TINY)
    workers.start()
    pids, folder = [p.pid for p in workers.procs], workers._folder
    workers.run(1)
    os.kill(pids[1], signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(WorkerFailed, match=r"rank 1 of 2 died during a round \(killed by SIGKILL\)"):
        workers.run(1)
    assert time.monotonic() - started < 30  # not the process group's timeout
    assert all(_gone(pid) for pid in pids) and not os.path.exists(folder)
    workers.close()  # twice is fine


def test_a_rank_that_raises_names_itself_and_its_error():
    bad = RunConfig(model="no_such_model", batch_size=8, num_gpus=2, parallel="ddp")
    with pytest.raises(WorkerFailed, match=r"rank \d of 2 failed during starting: .*no_such_model"):
        with DDPWorkers(bad):
            pass


# ----------------------------------------------------------------------------------------------- epochs


def test_sharded_loader_deals_each_epoch_like_a_distributed_sampler():
    import numpy as np

    from fer_bench.data.loader import _BatchSampler

    rows = np.arange(103)
    ranks = [_BatchSampler(rows, 10, shuffle=True, drop_last=True, seed=3, shard=(r, 2)) for r in range(2)]
    assert [len(s) for s in ranks] == [5, 5] and ranks[0].per_rank == 51
    seen = [np.concatenate([b for _, _, b in s]) for s in ranks]
    assert not set(seen[0]) & set(seen[1])  # disjoint shares
    order = np.random.default_rng([3, 0]).permutation(rows)[:102]
    assert list(seen[0]) == list(order[0::2][:50]) and list(seen[1]) == list(order[1::2][:50])
    for s in ranks:
        s.epoch = 1
    again = np.concatenate([b for _, _, b in ranks[0]])
    assert list(again) != list(seen[0])  # a new deal every epoch


def test_a_shard_must_name_a_rank_of_the_replicas():
    from fer_bench.data.loader import create_loader
    from fer_bench.data.synthetic import create_synthetic

    data = create_synthetic(size=200, seed=1)
    with pytest.raises(FerBenchError, match=r"shard must be \(rank, replicas\)"):
        create_loader(data, "train", batch_size=8, shard=(2, 2))
    loader = create_loader(data, "train", batch_size=8, shard=(1, 2))
    assert loader.settings()["shard"] == [1, 2] and loader.num_samples == len(data.indices("train")) // 2


def test_ddp_ranks_train_their_shares_of_an_epoch():
    spec = {"data_path": None, "epoch_images": 64, "num_workers": 0}
    with DDPWorkers(TINY, epoch=spec) as workers:
        assert [r["epoch_steps"] for r in workers.ranks] == [4, 4]  # 32 images a rank, 8 a batch
        assert [r["epoch_samples"] for r in workers.ranks] == [32, 32]
        first, second = workers.epoch(0), workers.epoch(1)
    for figures in (first, second):
        assert [f["num_samples"] for f in figures] == [32, 32]
        assert all(f["epoch_time_s"] > 0 and 0 <= f["data_wait_fraction"] <= 1 for f in figures)


def test_epoch_needs_workers_started_for_it():
    workers = DDPWorkers(TINY)
    with pytest.raises(FerBenchError, match="epoch="):
        workers.epoch(0)


def test_each_rank_gets_its_device_and_backend():
    from fer_bench.engine.distributed import ddp_backend, rank_device

    assert [rank_device("cuda", r) for r in range(3)] == ["cuda:0", "cuda:1", "cuda:2"]
    assert rank_device("cuda:2", 1) == "cuda:3" and rank_device("cpu", 5) == "cpu"
    assert ddp_backend("cuda") == "nccl" and ddp_backend("cpu") == "gloo"


def test_wrap_ddp_passes_the_knobs_and_device_ids(monkeypatch):
    """The CUDA branch of wrap_ddp with a fake DistributedDataParallel: device_ids, output_device and the knobs."""
    import torch
    import torch.nn.parallel

    from fer_bench.engine.distributed import wrap_ddp

    seen = {}
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", lambda model, **kw: seen.update(kw) or model)
    options = DDPOptions(bucket_cap_mb=1.0, gradient_as_bucket_view=True, static_graph=True)
    wrap_ddp(torch.nn.Linear(2, 2), torch.device("cuda", 3), options, process_group="nccl-group")
    assert seen == {"device_ids": [3], "output_device": 3, "process_group": "nccl-group", "bucket_cap_mb": 1.0,
                    "gradient_as_bucket_view": True, "static_graph": True}
    wrap_ddp(torch.nn.Linear(2, 2), torch.device("cpu"), DDPOptions())
    assert seen["device_ids"] is None and seen["output_device"] is None and seen["process_group"] is None
