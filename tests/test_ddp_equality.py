"""DistributedDataParallel trains the same model as one process (fer_bench.engine.ddp_check): one DDP step over
two gloo ranks leaves the parameters one process's step on the same global batch leaves, under weak and strong
scaling; a broken all-reduce, a mis-scaled loss or a wrong share makes the check fail; --fer-ddp-verify runs the
check before a DDP case is timed.

The ranks are started once per scaling mode for the module (DDPWorkers); each check re-syncs them from rank 0, so
a faulty check leaves nothing for the next one. fer_cnn_2block has no BatchNorm and no dropout, so its reference
is one process's step on the whole global batch; fer_cnn_3block (BatchNorm, dropout) is checked against the mean
of the shares' gradients, which is what DDP without SyncBatchNorm computes.
"""

from __future__ import annotations

import pytest

from fer_bench.engine.config import RunConfig
from fer_bench.engine.ddp_check import (FAULT_ENV, FAULTS, CheckResult, batch_dependent, injected_fault,
                                        shard_rows)
from fer_bench.engine.distributed import DDPWorkers
from fer_bench.errors import FerBenchError

WEAK = RunConfig(model="fer_cnn_2block", batch_size=8, num_gpus=2, parallel="ddp", scaling="weak")
STRONG = RunConfig(model="fer_cnn_2block", batch_size=12, num_gpus=2, parallel="ddp", scaling="strong")


@pytest.fixture(scope="module")
def weak_ranks():
    with DDPWorkers(WEAK, threads=1) as workers:
        yield workers


@pytest.fixture(scope="module")
def strong_ranks():
    with DDPWorkers(STRONG, threads=1) as workers:
        yield workers


# ----------------------------------------------------------------------------------------------- equality


@pytest.mark.parametrize("config, ranks", [(WEAK, "weak_ranks"), (STRONG, "strong_ranks")], ids=["weak", "strong"])
def test_one_ddp_step_leaves_the_parameters_of_one_process_step(config, ranks, request):
    result = CheckResult(**request.getfixturevalue(ranks).check())
    assert result.ok, result.message()
    assert result.global_batch_size == config.global_batch_size  # weak: 8 x 2 = 16; strong: 12 in all
    assert result.reference == "global_batch" and result.world_size == 2 and result.fault is None
    # not vacuous: the step moved the parameters by far more than the tolerance, and rounding is far below it
    assert 0 <= result.max_abs_diff < result.tolerance / 10
    assert 0 <= result.grad_max_abs_diff < result.grad_tolerance / 10


@pytest.mark.parametrize("fault", FAULTS)
def test_a_broken_ddp_step_is_reported_with_its_largest_difference(weak_ranks, fault):
    result = CheckResult(**weak_ranks.check(fault))
    assert not result.ok
    assert result.max_abs_diff > 10 * result.tolerance and result.grad_max_abs_diff > 10 * result.grad_tolerance
    message = result.message()
    assert "\n" not in message and "does NOT match" in message and f"injected fault: {fault}" in message
    assert f"largest parameter difference {result.max_abs_diff:.3g} in {result.parameter}" in message


def test_a_check_after_a_faulty_one_starts_from_synced_ranks(weak_ranks):
    assert not CheckResult(**weak_ranks.check("skip_allreduce")).ok  # the ranks' parameters now differ
    assert CheckResult(**weak_ranks.check()).ok


def test_strong_scaling_without_the_all_reduce_fails_too(strong_ranks):
    assert not CheckResult(**strong_ranks.check("skip_allreduce")).ok


def test_batchnorm_and_dropout_are_checked_against_the_ranks_own_shares():
    bn = RunConfig(model="fer_cnn_3block", batch_size=4, num_gpus=2, parallel="ddp")
    with DDPWorkers(bn, threads=1) as workers:
        good, bad = CheckResult(**workers.check()), CheckResult(**workers.check("scale_loss"))
    assert good.reference == "per_rank_shares" and good.ok, good.message()
    assert not bad.ok


# ----------------------------------------------------------------------------------------------- the parts


def test_shares_are_the_distributed_sampler_rows():
    assert shard_rows(8, 0, 2) == [0, 2, 4, 6] and shard_rows(8, 1, 2) == [1, 3, 5, 7]
    assert sorted(shard_rows(12, 0, 3) + shard_rows(12, 1, 3) + shard_rows(12, 2, 3)) == list(range(12))


def test_which_models_need_the_per_rank_reference():
    from fer_bench.models import create_model

    assert not batch_dependent(create_model("fer_cnn_2block"))
    assert batch_dependent(create_model("fer_cnn_3block"))


def test_the_fault_variable_is_validated():
    assert injected_fault({}) is None and injected_fault({FAULT_ENV: ""}) is None
    assert injected_fault({FAULT_ENV: "scale_loss"}) == "scale_loss"
    with pytest.raises(FerBenchError, match=f"{FAULT_ENV}='drop_rank' is not a fault; valid: skip_allreduce"):
        injected_fault({FAULT_ENV: "drop_rank"})


# ----------------------------------------------------------------------------------------------- --fer-ddp-verify


def _result(ok: bool) -> dict:
    return CheckResult(ok=ok, max_abs_diff=2e-4 if not ok else 1e-9, tolerance=3e-7, parameter="head.1.weight",
                       grad_max_abs_diff=0.19, grad_tolerance=1e-4, grad_parameter="head.1.weight",
                       reference="global_batch", world_size=2, global_batch_size=16, precision="fp32").as_dict()


def test_verify_records_a_match_and_fails_a_mismatch_in_one_line():
    from fer_bench.measure.context import BenchOptions
    from fer_bench.measure.ddp import verify_ddp

    extra: dict = {}
    verify_ddp(BenchOptions(), lambda: pytest.fail("not asked: no check"), extra)
    assert extra == {}
    verify_ddp(BenchOptions(ddp_verify=True), lambda: _result(True), extra)
    assert extra["ddp_verified"]["max_abs_diff"] == 1e-9 and extra["ddp_verified"]["tolerance"] == 3e-7
    with pytest.raises(pytest.fail.Exception) as failed:
        verify_ddp(BenchOptions(ddp_verify=True), lambda: _result(False), {})
    assert not failed.value.pytrace and "\n" not in failed.value.msg
    assert "largest parameter difference 0.0002 in head.1.weight (tolerance 3e-07)" in failed.value.msg


class _Benchmark:
    stats = None

    def __init__(self) -> None:
        self.extra_info: dict = {}
        self.calls = 0

    def pedantic(self, target, rounds, iterations, warmup_rounds=0):
        self.calls += 1
        target()


def test_a_ddp_case_with_a_broken_all_reduce_fails_before_it_is_timed(monkeypatch):
    """The fault comes through the environment, read in the spawned ranks; the case fails with one line."""
    from fer_bench.measure.context import BenchOptions, Recorder
    from fer_bench.measure.ddp import bench_scaling_step

    monkeypatch.setenv(FAULT_ENV, "skip_allreduce")
    benchmark = _Benchmark()
    with pytest.raises(pytest.fail.Exception, match=r"does NOT match .* \(injected fault: skip_allreduce\)"):
        bench_scaling_step(benchmark, BenchOptions(ddp_verify=True), Recorder(fingerprint=dict), WEAK)
    assert benchmark.calls == 0  # nothing was timed
