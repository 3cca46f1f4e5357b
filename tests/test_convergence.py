"""Time to accuracy: the learning-rate rules, MLPerf's scoring, the DAWNBench curve, the benchmark end to end on the
synthetic set (a paper CNN reaches the default target in fp32 and amp_bf16; an unreachable target is reported as
missed), and the gate's verdict on a case that stopped reaching its target."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fer_bench.engine.convergence import (
    BASE_LRS,
    ConvergenceRun,
    EpochPoint,
    curve_tsv,
    default_target,
    representative_run,
    scaled_lr,
    score_runs,
    write_curve_tsv,
)
from fer_bench.errors import FerBenchError
from fer_bench.results import gate
from fer_bench.results.runs import load_results
from tests.result_factory import create_fingerprint, create_run, create_time_to_accuracy, write_run

ROOT = Path(__file__).resolve().parents[1]


def _run(seed: int, accuracies: list[float], epoch_s: float, target: float = 0.7) -> ConvergenceRun:
    """A run whose epochs take ``epoch_s`` each, stopping at the first accuracy at or above the target."""
    run = ConvergenceRun(seed, target, max_epochs=len(accuracies))
    for i, acc in enumerate(accuracies, start=1):
        run.curve.append(EpochPoint(i, i * epoch_s, 1.0 / i, acc, acc - 0.1, {"happy": acc}, epoch_s, 0.1, 0.0))
        if acc >= target:
            break
    return run


# ------------------------------------------------------------------------------------------ learning rates


def test_scaled_lr_rules():
    assert scaled_lr("adam", 64, "none") == BASE_LRS["adam"]
    assert scaled_lr("adam", 256, "none") == BASE_LRS["adam"]
    assert scaled_lr("adam", 256, "linear") == pytest.approx(4 * BASE_LRS["adam"])
    assert scaled_lr("adam", 256, "sqrt") == pytest.approx(2 * BASE_LRS["adam"])
    assert scaled_lr("sgd", 32, "linear") == pytest.approx(BASE_LRS["sgd"] / 2)
    assert scaled_lr("rmsprop", 128, "sqrt", base_lr=0.01) == pytest.approx(0.01 * math.sqrt(2))


@pytest.mark.parametrize("optimizer, rule, words", [("lion", "none", "optimizer 'lion'"),
                                                     ("adam", "cubic", "lr_scaling 'cubic'")])
def test_scaled_lr_rejects_unknown_names(optimizer, rule, words):
    with pytest.raises(FerBenchError, match=words):
        scaled_lr(optimizer, 64, rule)


def test_plain_sgd_gets_a_larger_base_rate_than_the_adaptive_optimizers():
    assert BASE_LRS["sgd"] > BASE_LRS["sgd_momentum"] > BASE_LRS["adam"]
    assert default_target(True) > default_target(False) == 0.60


# ------------------------------------------------------------------------------------------ MLPerf scoring


def test_run_that_reaches_the_target_stops_there():
    run = _run(0, [0.3, 0.5, 0.72, 0.9], 2.0)
    assert run.reached_target and run.epochs_to_target == 3 and run.time_to_target_s == 6.0
    missed = _run(1, [0.3, 0.5, 0.6], 2.0)
    assert not missed.reached_target and missed.time_to_target_s is None and missed.epochs_to_target is None
    assert missed.wall_s == 6.0 and missed.best_accuracy == 0.6


def test_score_drops_the_fastest_and_the_slowest_of_five():
    runs = [_run(s, [0.5, 0.8], t) for s, t in enumerate([1.0, 2.0, 3.0, 4.0, 10.0])]
    score = score_runs(runs)
    assert score["reached_target"] and score["runs_missed"] == 0
    assert score["time_to_target_s"] == pytest.approx((4 + 6 + 8) / 3)  # 2 epochs each: 2, 4, 6, 8, 20 s
    assert score["epochs_to_target"] == 2
    assert sorted(score["scored_seeds"]) == [1, 2, 3]
    spread = score["time_to_target_spread"]
    assert (spread["min_s"], spread["median_s"], spread["max_s"]) == (2.0, 6.0, 20.0)


def test_one_missed_run_counts_as_the_slowest_and_is_dropped():
    runs = [_run(0, [0.5, 0.8], 1.0), _run(1, [0.5, 0.8], 3.0), _run(2, [0.5, 0.6], 1.0)]
    score = score_runs(runs)
    assert score["reached_target"] and score["runs_missed"] == 1
    assert score["time_to_target_s"] == pytest.approx(6.0)  # 2 s (fastest) and the miss dropped: the 6 s run
    assert score["scored_seeds"] == [1]


def test_two_missed_runs_miss_the_case_and_give_no_time():
    runs = [_run(0, [0.5, 0.8], 1.0), _run(1, [0.5, 0.6], 3.0), _run(2, [0.5, 0.6], 1.0)]
    score = score_runs(runs)
    assert not score["reached_target"] and score["runs_missed"] == 2
    assert score["time_to_target_s"] is None and score["epochs_to_target"] is None and score["scored_seeds"] == []


@pytest.mark.parametrize("accs, reached", [([[0.8]], True), ([[0.6]], False), ([[0.8], [0.6]], False),
                                           ([[0.8], [0.9]], True)])
def test_fewer_than_three_runs_all_must_reach(accs, reached):
    score = score_runs([_run(i, a, 1.0) for i, a in enumerate(accs)])
    assert score["reached_target"] is reached
    assert (score["time_to_target_s"] is None) is (not reached)


def test_representative_run_is_the_median_or_the_closest_miss():
    runs = [_run(0, [0.8], 5.0), _run(1, [0.8], 1.0), _run(2, [0.8], 3.0)]
    assert representative_run(runs).seed == 2
    misses = [_run(0, [0.5], 1.0), _run(1, [0.65], 1.0)]
    assert representative_run(misses).seed == 1


def test_curve_tsv_is_dawnbench_layout(tmp_path):
    run = _run(0, [0.5, 0.75], 1800.0)
    text = curve_tsv(run)
    lines = text.splitlines()
    assert lines[0].split("\t")[:3] == ["epoch", "hours", "top1Accuracy"]
    epoch, hours, top1 = lines[2].split("\t")[:3]
    assert (int(epoch), float(hours), float(top1)) == (2, 1.0, 75.0)
    path = write_curve_tsv(tmp_path / "c.tsv", run)
    assert path.read_text() == text and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------------------ end to end


def _pytest_tta(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "tta.json"
    env = {**os.environ, "FER_BENCH_CACHE": os.environ.get("FER_BENCH_CACHE", str(tmp_path / "cache"))}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/test_time_to_accuracy.py", "-q", "-p", "no:cacheprovider",
         "--fer-devices", "cpu", "--fer-models", "fer_cnn_2block", "--benchmark-json", str(out), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def test_paper_cnn_reaches_the_default_target_in_fp32_and_amp_bf16(tmp_path):
    proc, doc = _pytest_tta(tmp_path, "--fer-precisions", "fp32,amp_bf16", "--fer-repeats", "1",
                            "--fer-epoch-images", "4096", "--fer-curve-tsv")
    cases = {b["params"]["precision"]: b for b in doc["benchmarks"]}
    assert set(cases) == {"fp32", "amp_bf16"}, proc.stdout[-2000:]
    for precision, case in cases.items():
        info = case["extra_info"]
        assert info["target_accuracy"] == default_target(True)
        assert info["reached_target"] is True, (precision, info["runs"])
        curve = info["curve"]
        assert curve[-1]["accuracy"] >= info["target_accuracy"]
        assert all(p["accuracy"] < info["target_accuracy"] for p in curve[:-1])  # stopped at the first reach
        assert [p["epoch"] for p in curve] == list(range(1, len(curve) + 1))
        assert all(set(p) >= {"time_s", "train_loss", "accuracy", "macro_f1", "per_class_recall"} for p in curve)
        assert len(curve[-1]["per_class_recall"]) == 7
        assert info["time_to_target_s"] == pytest.approx(curve[-1]["time_s"])
        assert info["epochs_to_target"] == len(curve)
        assert case["stats"]["data"] == [pytest.approx(info["time_to_target_s"])]
        assert info["workload"]["target_accuracy"] == info["target_accuracy"]
        tsv = tmp_path / info["curve_tsv"][0]  # relative to the JSON's folder
        assert tsv.parent == tmp_path / "tta.curves" and len(tsv.read_text().splitlines()) == len(curve) + 1


def test_unreachable_target_is_reported_as_missed(tmp_path):
    proc, doc = _pytest_tta(tmp_path, "--fer-precisions", "fp32", "--fer-repeats", "3", "--fer-max-epochs", "1",
                            "--fer-target-accuracy", "99%", "--fer-epoch-images", "512")
    (case,) = doc["benchmarks"]
    info = case["extra_info"]
    assert info["reached_target"] is False and info["time_to_target_s"] is None
    assert info["epochs_to_target"] is None and info["runs_missed"] == 3
    assert all(not r["reached_target"] and r["time_to_target_s"] is None for r in info["runs"])
    assert info["rounds_are"].endswith("missed the target")
    assert len(case["stats"]["data"]) == 3
    assert "missed the target 99%: 3 of 3 runs missed" in proc.stdout


def test_artifact_options_need_a_results_json(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/test_time_to_accuracy.py", "-q", "-p", "no:cacheprovider",
         "--fer-curve-tsv", "--collect-only"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 4
    assert "--fer-curve-tsv writes beside the results JSON: add --benchmark-json PATH" in proc.stderr


# ------------------------------------------------------------------------------------------ the gate


def _gate(tmp_path: Path, base_missed: int, cur_missed: int, *, paired: bool = False, scope: str = "cases"):
    fp = create_fingerprint("epyc-2c")
    n = 2 if paired else 1
    bases, curs = [], []
    for i in range(n):
        base = create_time_to_accuracy("fer_cnn_2block", "cpu", [0.3, 0.5, 0.65, 0.72], 2.0, target=0.7,
                                       missed_runs=base_missed)
        cur = create_time_to_accuracy("fer_cnn_2block", "cpu", [0.3, 0.5, 0.65, 0.72], 2.0, target=0.7,
                                      missed_runs=cur_missed)
        bases.append(write_run(tmp_path / f"base{i}.json", create_run([base], fp)))
        curs.append(write_run(tmp_path / f"cur{i}.json", create_run([cur], fp, when="2026-01-02T12:00:00+00:00")))
    return gate.evaluate_gate(load_results(bases), load_results(curs), paired=paired, scope=scope)


def test_gate_fails_a_case_that_stopped_reaching_its_target(tmp_path):
    report = _gate(tmp_path, base_missed=0, cur_missed=2)
    (row,) = report.rows
    assert row.status == "regression" and "no longer reaches its target accuracy (2 of 3 runs missed 70%)" in \
        row.verdict
    assert report.exit_status == gate.EXIT_REGRESSION


def test_gate_under_suite_scope_still_fails_a_missed_target(tmp_path):
    report = _gate(tmp_path, base_missed=0, cur_missed=3, paired=True, scope="suite")
    assert report.suite is None  # nothing left to time
    assert report.exit_status == gate.EXIT_REGRESSION


def test_gate_improvement_and_both_missed(tmp_path):
    better = _gate(tmp_path / "a", base_missed=2, cur_missed=0)
    assert better.rows[0].status == "improvement" and better.exit_status == gate.EXIT_OK
    both = _gate(tmp_path / "b", base_missed=2, cur_missed=2)
    assert both.rows[0].status == "unchanged" and "missed its target on both sides" in both.rows[0].verdict
    assert both.exit_status == gate.EXIT_OK


def test_gate_times_a_case_both_sides_reached(tmp_path):
    report = _gate(tmp_path, base_missed=0, cur_missed=1)  # one miss of three: the case still reached it
    assert "target" not in report.rows[0].verdict and not report.rows[0].always_gated
