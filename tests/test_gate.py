"""Tests of fer_bench.results.gate (`fer-bench gate`): statistics, verdicts, exit statuses and bad inputs."""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_bench.results import gate
from fer_bench.cli import main
from fer_bench.results.runs import load_results
from fer_bench.machine.identity import create_hardware_identity
from result_factory import (
    create_benchmark,
    create_fingerprint,
    create_rounds,
    create_run,
    create_stack,
    create_train_cases,
    write_run,
)

REPO = Path(__file__).resolve().parent.parent
MACHINE = create_fingerprint("ci-box-2c", {"cpu": {"brand": "Xeon", "cores": 2}, "gpus": []})
OTHER = create_fingerprint("other-box", {"cpu": {"brand": "EPYC", "cores": 64}, "gpus": []})


def _write(tmp_path: Path, name: str, factor: float = 1.0, seed: int = 0, fp: dict | None = MACHINE, **kw) -> Path:
    return write_run(tmp_path / name, create_run(create_train_cases(0.010, factor=factor, seed=seed, **kw), fp))


def _gate(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(["gate", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


# ------------------------------------------------------------------------------------------- statistics


def _hand_mann_whitney_p(x, y) -> float:
    """The gate's hand-written test before it used scipy (normal approximation, tie and continuity corrections),
    kept here as the reference that scipy.stats.mannwhitneyu replaced it without changing a p-value."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n1, n2 = len(x), len(y)
    combined = np.concatenate([x, y])
    order = np.argsort(combined, kind="mergesort")
    ordered = combined[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    bounds = np.r_[np.flatnonzero(starts), len(ordered)]
    ranks = np.empty(len(combined))
    ranks[order] = ((bounds[:-1] + 1 + bounds[1:]) / 2.0)[np.cumsum(starts) - 1]
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2.0)
    n = n1 + n2
    _, counts = np.unique(combined, return_counts=True)
    tie_term = float((counts.astype(float) ** 3 - counts).sum()) / (n * (n - 1))
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term)
    if variance <= 0:
        return 1.0
    z = max(abs(u1 - n1 * n2 / 2.0) - 0.5, 0.0) / math.sqrt(variance)
    return min(1.0, math.erfc(z / math.sqrt(2.0)))


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("shift", [0.0, 0.6, 2.0])
def test_scipy_rank_test_gives_the_hand_written_p_values(ties, shift):
    rng = np.random.default_rng(3)
    x, y = rng.normal(10, 1, 25), rng.normal(10 + shift, 1, 31)
    if ties:
        x, y = np.round(x), np.round(y)
    assert gate.mann_whitney_p(x, y) == pytest.approx(_hand_mann_whitney_p(x, y), rel=1e-9, abs=1e-300)


def test_rank_test_of_all_tied_values_is_not_significant():
    assert gate.mann_whitney_p(np.ones(8), np.ones(6)) == 1.0
    with pytest.raises(ValueError):
        gate.mann_whitney_p(np.ones(3), np.array([]))


@pytest.mark.parametrize("n1, n2", [(5, 5), (7, 7), (15, 9), (30, 50)])
def test_rank_test_floor_is_the_p_of_complete_separation(n1, n2):
    separated = gate.mann_whitney_p(np.arange(n1, dtype=float), np.arange(n1, n1 + n2, dtype=float))
    assert gate.rank_test_floor(n1, n2) == pytest.approx(separated, rel=1e-9)
    assert gate.rank_test_floor(5, 5) > 0.01  # 5 and 5 rounds are never significant at alpha 0.01


def test_holm_adjust_by_hand():
    # sorted p: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.5 (x1, but never below 0.06)
    adjusted = gate.holm_adjust([0.03, 0.01, 0.5, 0.02])
    np.testing.assert_allclose(adjusted, [0.06, 0.04, 0.5, 0.06])
    np.testing.assert_allclose(gate.holm_adjust([0.9, 0.8]), [1.0, 1.0])


def test_bootstrap_interval_is_reproducible_and_covers_the_true_ratio():
    base = np.asarray(create_rounds(0.010, n=40, sigma=0.03, seed=1))
    cur = np.asarray(create_rounds(0.012, n=40, sigma=0.03, seed=2))
    low, high = gate.bootstrap_ratio_ci(base, cur, 0.99, 4000)
    assert (low, high) == gate.bootstrap_ratio_ci(base, cur, 0.99, 4000)
    assert low < 1.2 < high
    assert high - low < 0.1


def test_resamples_grow_for_far_tails_within_bounds():
    assert gate.resolve_resamples(0.95) == gate.MIN_RESAMPLES
    assert gate.MIN_RESAMPLES < gate.resolve_resamples(0.998) <= gate.MAX_RESAMPLES
    assert gate.resolve_resamples(1 - 1e-9) == gate.MAX_RESAMPLES


@pytest.mark.parametrize("m", [5, 46, 65, 200])
def test_about_20_resamples_lie_beyond_each_end(m):
    """With 46 to 65 tested cases the old cap (20,000) left about 2 resamples beyond each end, not 20."""
    confidence = 1 - 0.01 / m
    assert gate.resolve_resamples(confidence) * (1 - confidence) / 2 == pytest.approx(20, abs=0.5)


@pytest.mark.parametrize("n", [4, 5])
def test_resampled_medians_have_the_exact_bootstrap_distribution(n):
    """The order-statistic sampler against every one of the n^n resamples of a small sample."""
    values = np.array([1.0, 2.5, 4.0, 8.0, 16.0][:n])
    exact: dict[float, float] = {}
    for draw in itertools.product(range(n), repeat=n):
        median = float(np.median(values[list(draw)]))
        exact[median] = exact.get(median, 0.0) + n ** -n
    k = 200_000
    drawn = gate.resample_medians(values, np.random.default_rng(5), k)
    got, counts = np.unique(drawn, return_counts=True)
    assert set(got) <= set(exact)
    for value, count in zip(got, counts):
        assert count / k == pytest.approx(exact[value], abs=4 * math.sqrt(exact[value] / k) + 1e-4)


def test_bootstrap_matches_resampling_every_round():
    base = np.asarray(create_rounds(0.010, n=40, sigma=0.05, seed=1))
    cur = np.asarray(create_rounds(0.011, n=31, sigma=0.05, seed=2))
    rng = np.random.default_rng(0)
    naive = (np.median(cur[rng.integers(0, 31, (40_000, 31))], axis=1)
             / np.median(base[rng.integers(0, 40, (40_000, 40))], axis=1))
    low, high = gate.bootstrap_ratio_ci(base, cur, 0.95, 40_000)
    assert (low, high) == pytest.approx(tuple(np.quantile(naive, [0.025, 0.975])), rel=0.01)


def test_parse_threshold_and_alpha():
    assert gate.parse_threshold("5%") == pytest.approx(0.05)
    assert gate.parse_threshold("0.05") == pytest.approx(0.05)
    for bad in ("5", "abc", "-1%"):
        with pytest.raises(Exception):
            gate.parse_threshold(bad)
    with pytest.raises(Exception):
        gate.parse_alpha("1.5")


# ------------------------------------------------------------------------------------------- verdicts


def test_doctored_slow_run_fails_and_unchanged_rerun_passes(tmp_path, capsys):
    base = _write(tmp_path, "base.json", seed=1)
    rerun = _write(tmp_path, "rerun.json", seed=2)
    slow = _write(tmp_path, "slow.json", factor=1.6, seed=3)

    status, out, err = _gate(capsys, base, rerun)
    assert status == 0, out + err
    assert "result: no regression in 4 case(s) -> exit 0" in out

    status, out, err = _gate(capsys, base, slow)
    assert status == 1
    assert len(re.findall(r"x slower, significant$", out, re.M)) == 4
    assert "result: 4 regressions" in out
    report = json.loads(_gate(capsys, base, slow, "--format", "json")[1])
    assert [r["ratio"] for r in report["rows"]] == pytest.approx([1.6] * 4, rel=0.04)


def test_improvement_is_reported_and_passes(tmp_path, capsys):
    base = _write(tmp_path, "base.json", seed=1)
    fast = _write(tmp_path, "fast.json", factor=0.8, seed=4)
    status, out, _ = _gate(capsys, base, fast)
    assert status == 0
    assert out.count("x faster, significant improvement") == 4
    assert sum(f"{v:.2f}x faster" in out for v in (1.23, 1.24, 1.25, 1.26, 1.27)) >= 1


def test_small_significant_change_below_threshold_passes(tmp_path, capsys):
    base = _write(tmp_path, "base.json", seed=1, sigma=0.005, n=60)
    cur = _write(tmp_path, "cur.json", factor=1.02, seed=5, sigma=0.005, n=60)
    status, out, _ = _gate(capsys, base, cur, "--threshold", "5%")
    assert status == 0
    assert "significant but within the 5% threshold" in out
    # the same data fails once the threshold is below the change
    status, _, _ = _gate(capsys, base, cur, "--threshold", "1%")
    assert status == 1


def test_json_report(tmp_path, capsys):
    base = _write(tmp_path, "base.json", seed=1)
    slow = _write(tmp_path, "slow.json", factor=1.3, seed=3)
    status, out, _ = _gate(capsys, base, slow, "--format", "json")
    report = json.loads(out)
    assert status == report["exit_status"] == 1
    assert report["n_regressions"] == 4 == len(report["rows"])
    for row in report["rows"]:
        assert row["ci_low"] > 1.0 and row["p_corrected"] < 0.01
        assert row["ratio"] == pytest.approx(1.3, rel=0.05)
    assert report["confidence"] == pytest.approx(1 - 0.01 / 4)


def test_baseline_runs_are_pooled(tmp_path):
    paths = [_write(tmp_path / "base", f"b{i}.json", seed=10 + i) for i in range(3)]
    cur = _write(tmp_path, "cur.json", seed=20)
    report = gate.evaluate_gate(load_results([tmp_path / "base"]), load_results([cur]))
    assert len(paths) == 3
    assert {row.n_baseline for row in report.rows} == {90} and {row.n_current for row in report.rows} == {30}


def test_samples_per_s_metric_reads_a_drop_as_regression(tmp_path, capsys):
    base = _write(tmp_path, "base.json", seed=1)
    slow = _write(tmp_path, "slow.json", factor=1.25, seed=3)
    status, out, _ = _gate(capsys, base, slow, "--metric", "samples_per_s", "--format", "json")
    report = json.loads(out)
    assert status == 1
    for row in report["rows"]:
        assert row["ratio"] == pytest.approx(0.8, rel=0.05)
        assert row["current_value"] < row["baseline_value"]
        assert row["ci_high"] < 1.0


def _memory_run(tmp_path: Path, name: str, mem: int, n: int = 3) -> Path:
    bench = create_benchmark("test_train_step", {"model": "resnet18", "batch_size": 64},
                             create_rounds(0.01, n=n, seed=n), extra_info={"peak_memory_bytes": mem}, keep_data=False)
    return write_run(tmp_path / name, create_run([bench], MACHINE))


def test_peak_memory_uses_threshold_only(tmp_path, capsys):
    base = _memory_run(tmp_path, "base.json", 100 << 20)
    grown = _memory_run(tmp_path, "grown.json", 130 << 20)
    same = _memory_run(tmp_path, "same.json", 102 << 20)
    status, out, _ = _gate(capsys, base, grown, "--metric", "peak_memory_bytes")
    assert status == 1 and "1.30x more memory" in out and "no significance test" in out
    status, out, _ = _gate(capsys, base, same, "--metric", "peak_memory_bytes")
    assert status == 0


def test_too_few_rounds_are_judged_by_the_threshold(tmp_path, capsys):
    def run(name, median, seed):
        bench = create_benchmark("test_epoch", {"model": "simple_cnn", "batch_size": 64, "num_workers": 2},
                                 create_rounds(median, n=3, sigma=0.01, seed=seed), group="epoch")
        return write_run(tmp_path / name, create_run([bench], MACHINE))

    base, slow, same = run("base.json", 20.0, 1), run("slow.json", 26.0, 2), run("same.json", 20.2, 3)
    status, out, _ = _gate(capsys, base, slow)
    assert status == 1 and "too few rounds (3 < 5)" in out
    status, out, _ = _gate(capsys, base, same)
    assert status == 0 and "too few rounds" in out


# ------------------------------------------------------------------------------------------- no baseline


def test_case_missing_from_baseline_fails_closed(tmp_path, capsys):
    base = _write(tmp_path, "base.json", seed=1, models=("resnet18",))
    cur = _write(tmp_path, "cur.json", seed=2, models=("resnet18", "simple_cnn"))
    status, out, err = _gate(capsys, base, cur)
    assert status == 2
    assert "simple_cnn" in err and "--allow-missing" in err
    status, out, err = _gate(capsys, base, cur, "--allow-missing")
    assert status == 0
    assert out.count("no baseline: skipped") == 2


def test_missing_case_does_not_hide_behind_a_renamed_id(tmp_path, capsys):
    """Matching is by function and params: an unchanged case whose id string changed still matches."""
    base_doc = create_run(create_train_cases(0.01, seed=1), MACHINE)
    for bench in base_doc["benchmarks"]:
        bench["name"] = bench["name"].replace("bs", "batch")
    base = write_run(tmp_path / "base.json", base_doc)
    cur = _write(tmp_path, "cur.json", seed=2)
    status, _, err = _gate(capsys, base, cur)
    assert status == 0, err


def test_baseline_from_another_machine(tmp_path, capsys):
    base = _write(tmp_path, "base.json", seed=1, fp=OTHER)
    cur = _write(tmp_path, "cur.json", seed=2)
    status, out, err = _gate(capsys, base, cur)
    assert status == 2 and out == ""
    assert "other hardware, other-box" in err and "--allow-other-machine" in err
    status, out, err = _gate(capsys, base, cur, "--allow-other-machine")
    assert status == 0 and "warning" in err


def test_other_hardware_with_the_same_stack_is_still_exit_2(tmp_path, capsys):
    """Only the hardware decides "same machine": one more GPU, the same software, no baseline."""
    one_gpu = create_fingerprint("box__h100-x1", {"cpu": {"brand": "Xeon"}, "gpus": [{"name": "H100"}]})
    two_gpus = create_fingerprint("box__h100-x2", {"cpu": {"brand": "Xeon"}, "gpus": [{"name": "H100"}] * 2})
    assert one_gpu["stack_hash"] == two_gpus["stack_hash"]
    base = _write(tmp_path, "base.json", seed=1, fp=one_gpu)
    cur = _write(tmp_path, "cur.json", seed=2, fp=two_gpus)
    status, _, err = _gate(capsys, base, cur)
    assert status == 2 and "no comparable baseline" in err and "box__h100-x1" in err


UPGRADED = create_fingerprint("ci-box-2c", MACHINE["identity"], stack=create_stack(torch="2.15.0+cu130",
                                                                                   kernel="6.8.0"))


@pytest.mark.parametrize("factor, status", [(1.0, 0), (1.2, 1)])
def test_torch_upgrade_on_the_same_hardware_is_gated_and_named(tmp_path, capsys, factor, status):
    """The infrastructure team's case: torch and the kernel upgraded on the same runner. The old runs are this
    machine's baseline (not exit 2), a 20% slowdown is a regression, and the report names what changed."""
    assert UPGRADED["identity_hash"] == MACHINE["identity_hash"] and UPGRADED["slug"] == MACHINE["slug"]
    assert UPGRADED["stack_hash"] != MACHINE["stack_hash"]
    base = _write(tmp_path, "base.json", seed=1)
    cur = _write(tmp_path, "cur.json", factor=factor, seed=2, fp=UPGRADED)
    code, out, _ = _gate(capsys, base, cur)
    assert code == status
    assert "note: software stack changed since the baseline: torch 2.14.1+cu130 -> 2.15.0+cu130" in out
    assert "note: software stack changed since the baseline: kernel 6.1.0 -> 6.8.0" in out
    _, out, _ = _gate(capsys, base, cur, "--format", "json")
    notes = json.loads(out)["notes"]
    assert [n for n in notes if n.startswith("software stack")] == [
        "software stack changed since the baseline: kernel 6.1.0 -> 6.8.0",
        "software stack changed since the baseline: torch 2.14.1+cu130 -> 2.15.0+cu130",
    ]


def test_same_stack_has_no_stack_note(tmp_path, capsys):
    base = _write(tmp_path, "base.json", seed=1)
    cur = _write(tmp_path, "cur.json", seed=2)
    _, out, _ = _gate(capsys, base, cur)
    assert "software stack" not in out


def test_stack_note_says_which_baseline_runs_differ(tmp_path, capsys):
    _write(tmp_path / "base", "old.json", seed=1)
    _write(tmp_path / "base", "new.json", seed=2, fp=UPGRADED)
    cur = _write(tmp_path, "cur.json", seed=3, fp=UPGRADED)
    _, out, _ = _gate(capsys, tmp_path / "base", cur)
    assert "torch 2.14.1+cu130 -> 2.15.0+cu130 (1 of 2 baseline runs, first " in out and "old.json" in out


def test_schema_1_baseline_is_the_same_hardware_as_a_schema_2_run(tmp_path, capsys):
    """A run stored before the split (one identity of hardware and software, legacy sidecar name) is this
    hardware's baseline; its stack comes from the split, so a malloc change shows as a note."""
    hardware = create_hardware_identity({"cpu": {"brand": "Intel(R) Xeon(R) Processor", "effective_cpus": 2},
                                         "memory": {"total_gib": 24}})
    old = create_fingerprint("xeon-2c__cpu", hardware, schema=1, stack=create_stack(malloc=None))
    new = create_fingerprint("xeon-2c__cpu", hardware)
    assert old["identity_hash"] != new["identity_hash"]  # as stored; the reader recomputes it
    base = write_run(tmp_path / "base.json", create_run(create_train_cases(0.01, seed=1), old), legacy_sidecar=True)
    cur = _write(tmp_path, "cur.json", seed=2, fp=new)
    status, out, _ = _gate(capsys, base, cur)
    assert status == 0
    assert "note: software stack changed since the baseline: malloc none -> glibc-steady" in out


@pytest.mark.parametrize("legacy", [False, True])
def test_sidecar_fingerprint_counts_as_the_same_machine(tmp_path, capsys, legacy):
    base = write_run(tmp_path / "base.json", create_run(create_train_cases(0.01, seed=1), MACHINE),
                     sidecar=not legacy, legacy_sidecar=legacy)
    cur = _write(tmp_path, "cur.json", seed=2)
    assert _gate(capsys, base, cur)[0] == 0


# ------------------------------------------------------------------------------------------- bad input


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    good = _write(tmp_path, "good.json", seed=1)
    text = good.read_text()
    bad = {"truncated": tmp_path / "truncated.json", "malformed": tmp_path / "malformed.json",
           "missing": tmp_path / "nope.json", "empty_dir": tmp_path / "empty", "not_benchmark": tmp_path / "x.json",
           "empty_file": tmp_path / "empty.json", "no_data": tmp_path / "nodata.json",
           "schema": tmp_path / "schema.json", "no_common": tmp_path / "other_cases.json"}
    bad["truncated"].write_text(text[: len(text) // 2])
    bad["malformed"].write_text("{'machine_info': }")
    bad["empty_dir"].mkdir()
    bad["not_benchmark"].write_text(json.dumps({"hello": "world"}))
    bad["empty_file"].write_text("")
    write_run(bad["no_data"], create_run(create_train_cases(0.01, seed=2, keep_data=False), MACHINE))
    write_run(bad["schema"], create_run(create_train_cases(0.01, seed=3), dict(MACHINE, schema=99)))
    write_run(bad["no_common"], create_run(create_train_cases(0.01, seed=4, models=("vgg13",)), MACHINE))
    return {"good": good, **bad}


@pytest.mark.parametrize("kind, words", [
    ("truncated", "truncated JSON"), ("malformed", "malformed"), ("missing", "no such file"),
    ("empty_dir", "no pytest-benchmark result"), ("not_benchmark", "not a pytest-benchmark result"),
    ("empty_file", "empty file"), ("no_data", "--benchmark-save-data"), ("schema", "schema 99"),
    ("no_common", "share no case"),
])
def test_bad_input_exits_3_with_one_line(tmp_path, capsys, kind, words):
    paths = _bad_inputs(tmp_path)
    status, out, err = _gate(capsys, paths["good"], paths[kind])
    assert status == 3
    assert out == ""
    assert err.startswith("fer-bench gate: error: ") and err.count("\n") == 1
    assert words in err
    if kind not in ("missing", "empty_dir", "no_common"):
        assert str(paths[kind].name) in err


def _run_cli(*argv: str) -> subprocess.CompletedProcess:
    code = ("import sys; from fer_bench.cli import main; status = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'imported torch'; sys.exit(status)")
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_bad_input_in_a_subprocess_has_no_traceback(tmp_path):
    paths = _bad_inputs(tmp_path)
    for kind in ("truncated", "no_data"):
        proc = _run_cli("gate", str(paths["good"]), str(paths[kind]))
        assert proc.returncode == 3, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_gate_never_imports_torch(tmp_path):
    base = _write(tmp_path, "base.json", seed=1)
    slow = _write(tmp_path, "slow.json", factor=1.6, seed=3)
    proc = _run_cli("gate", str(base), str(slow))
    assert proc.returncode == 1, proc.stderr
    assert "significant" in proc.stdout


def test_nan_free_json_even_with_infinite_ratio(tmp_path, capsys):
    base = _memory_run(tmp_path, "base.json", 0)
    cur = _memory_run(tmp_path, "cur.json", 50 << 20)
    status, out, _ = _gate(capsys, base, cur, "--metric", "peak_memory_bytes", "--format", "json")
    report = json.loads(out)  # strict JSON: Infinity would not parse with parse_constant raising
    json.loads(out, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert status == 1 and report["rows"][0]["ratio"] is None
    assert not math.isnan(report["threshold"])


def test_run_effects_widen_the_interval():
    base = np.asarray(create_rounds(0.010, n=60, sigma=0.02, seed=1))
    cur = np.asarray(create_rounds(0.010, n=30, sigma=0.02, seed=2))
    assert gate.collect_run_effects([0.010]) is None
    effects = gate.collect_run_effects([0.009, 0.010, 0.011])
    assert effects.sum() == pytest.approx(0.0, abs=1e-12)
    assert np.var(effects) == pytest.approx(np.var(np.log([0.009, 0.010, 0.011]), ddof=1))
    narrow = gate.bootstrap_ratio_ci(base, cur, 0.99, 4000)
    wide = gate.bootstrap_ratio_ci(base, cur, 0.99, 4000, run_effects=effects)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]
    assert (wide[1] - wide[0]) > 3 * (narrow[1] - narrow[0])


def test_small_sample_factor():
    # the 5 + 3 runs of one case at the Bonferroni confidence of 5 cases: t(0.999, 6) / z(0.999)
    assert gate.small_sample_factor(0.998, 6) == pytest.approx(5.2076 / 3.0902, rel=1e-3)
    assert gate.small_sample_factor(0.998, 30) < gate.small_sample_factor(0.998, 6)
    assert gate.small_sample_factor(0.998, 500) == 1.0


def test_run_effects_pool_over_cases_and_sides():
    pooled, df = gate.pool_run_effects([[0.009, 0.010, 0.011], [0.020], [0.030, 0.033]])
    assert len(pooled) == 5  # the single run gives no effect
    assert df == 2 + 1
    assert pooled[:3] == pytest.approx(gate.collect_run_effects([0.009, 0.010, 0.011]))
    assert gate.pool_run_effects([[0.010], [0.020]]) == (None, 0)


def test_noise_between_current_runs_counts_too(tmp_path, capsys):
    """One baseline run and three current processes at -0%, +8%, +16%: the current side's own spread is
    run-to-run noise, so its 8% median shift is not called a regression (one current run at +8% would be); at
    that noise a 5% change cannot be seen either, so the cases are inconclusive, not passed."""
    base = _write(tmp_path, "base.json", seed=50, sigma=0.01)
    for i, level in enumerate((1.0, 1.08, 1.16)):
        _write(tmp_path / "cur", f"c{i}.json", factor=level, seed=60 + i, sigma=0.01)
    status, out, _ = _gate(capsys, base, tmp_path / "cur")
    assert status == 4, out
    assert out.count("inconclusive: this machine's noise hides changes below") == 4
    assert "run-to-run noise: " in out and "8 degrees of freedom" in out  # 4 cases x (3 - 1)
    assert "one baseline run and one current run" not in out
    status, out, _ = _gate(capsys, base, tmp_path / "cur" / "c1.json")
    assert status == 1 and "one baseline run and one current run" in out


def test_noisy_baseline_runs_keep_a_shifted_run_from_failing(tmp_path, capsys):
    """Three baseline runs that differ by +-8% between processes: a current run 9% above their pooled median is
    within that run-to-run noise, although its rounds alone differ significantly from the pooled rounds."""
    for i, level in enumerate((0.92, 1.0, 1.08)):
        _write(tmp_path / "base", f"b{i}.json", factor=level, seed=10 + i, sigma=0.01)
    cur = _write(tmp_path, "cur.json", factor=1.09, seed=20, sigma=0.01)
    status, out, _ = _gate(capsys, tmp_path / "base", cur)
    assert status == 4, out  # not a regression; but at +-8% between runs a 5% change is hidden: not a pass
    assert "inconclusive: this machine's noise hides changes below" in out and "one baseline run" not in out
    status, out, _ = _gate(capsys, tmp_path / "base", cur, "--allow-inconclusive")
    assert status == 0 and "inconclusive (--allow-inconclusive)" in out
    # against the middle run alone the same current run is a significant regression
    status, out, _ = _gate(capsys, tmp_path / "base" / "b1.json", cur)
    assert status == 1 and "one baseline run" in out


def test_folder_baseline_keeps_this_machine_and_leaves_out_the_current_run(tmp_path, capsys):
    for i in range(2):
        _write(tmp_path / "results", f"mine{i}.json", seed=30 + i)
    _write(tmp_path / "results", "other.json", seed=40, fp=OTHER)
    cur = _write(tmp_path / "results", "current.json", seed=41)
    status, out, err = _gate(capsys, tmp_path / "results", cur, "--format", "json", "--allow-inconclusive")
    report = json.loads(out)
    assert status == 0
    assert sorted(Path(p).name for p in report["baseline"]) == ["mine0.json", "mine1.json"]
    assert {row["n_baseline"] for row in report["rows"]} == {60}
    assert "other machines left out" in err


def test_bad_gate_option_is_bad_input_not_missing_baseline(tmp_path, capsys):
    from fer_bench.cli import main

    assert main(["gate", "a.json", "b.json", "--threshold", "lots"]) == 3
    assert "usage:" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- MDE, inconclusive


def _one_case(tmp_path: Path, name: str, data, *, function: str = "test_train_step", params: dict | None = None,
              group: str = "train_step", extra_info: dict | None = None) -> Path:
    params = {"model": "resnet18", "batch_size": 64} if params is None else params
    bench = create_benchmark(function, params, list(data), group=group, extra_info=extra_info)
    return write_run(tmp_path / name, create_run([bench], MACHINE))


def _json(capsys, *argv) -> tuple[int, dict]:
    status, out, _ = _gate(capsys, *argv, "--format", "json")
    return status, json.loads(out)


def test_mde_is_the_half_width_of_the_log_interval():
    w = (math.log(1.1) - math.log(0.9)) / 2
    assert gate.minimum_detectable_effect(0.9, 1.1, "time") == pytest.approx(math.exp(w) - 1)
    assert gate.minimum_detectable_effect(0.9, 1.1, "samples_per_s") == pytest.approx(1 - math.exp(-w))
    assert gate.minimum_detectable_effect(1.2, 1.2, "time") == 0.0
    assert gate.minimum_detectable_effect(math.inf, math.inf, "time") == 0.0
    assert gate.minimum_detectable_effect(0.0, 1.2, "time") == math.inf
    assert gate.minimum_detectable_effect(1.0, math.inf, "samples_per_s") == math.inf


def test_every_tested_case_reports_its_mde(tmp_path, capsys):
    base, rerun = _write(tmp_path, "base.json", seed=1), _write(tmp_path, "rerun.json", seed=2)
    status, report = _json(capsys, base, rerun)
    assert status == 0 and report["n_inconclusive"] == 0 and report["runs_to_resolve"] is None
    for row in report["rows"]:
        w = (math.log(row["ci_high"]) - math.log(row["ci_low"])) / 2
        assert row["mde"] == pytest.approx(math.exp(w) - 1) and 0 < row["mde"] < 0.05
    _, out, _ = _gate(capsys, base, rerun)
    assert "MDE" in out.splitlines()[1]


def test_noise_that_hides_the_threshold_is_inconclusive_not_a_pass(tmp_path, capsys):
    """Rounds with a 30% spread: nothing differs, but a 5% slowdown could not have been seen. The old gate
    passed this (exit 0, "not significant"); now it exits 4, unless --allow-inconclusive."""
    base = _write(tmp_path, "base.json", seed=1, sigma=0.3)
    cur = _write(tmp_path, "cur.json", seed=2, sigma=0.3)
    status, out, err = _gate(capsys, base, cur)
    assert status == 4, out
    assert out.count("inconclusive: this machine's noise hides changes below") == 4
    result = out.splitlines()[-1]
    assert result.startswith("result: no regression, 4 inconclusive in 4 case(s) -> exit 4; about ")
    assert re.search(r"about \d+ runs a side would resolve 5% in every inconclusive case \(an estimate", result)
    assert "--allow-inconclusive" in err
    status, report = _json(capsys, base, cur)
    assert status == report["exit_status"] == 4 and report["n_inconclusive"] == 4
    assert all(r["status"] == "inconclusive" and r["mde"] > 0.05 for r in report["rows"])
    assert report["runs_to_resolve"] == max(r["runs_to_resolve"] for r in report["rows"]) > 1
    status, out, _ = _gate(capsys, base, cur, "--allow-inconclusive")
    assert status == 0 and "4 inconclusive (--allow-inconclusive) in 4 case(s) -> exit 0" in out
    assert out.count(", inconclusive: ") == 4


def test_regression_wins_over_inconclusive(tmp_path, capsys):
    def run(name, factor, seed):
        noisy = create_train_cases(0.01, seed=seed, sigma=0.3, models=("resnet18",))
        clean = create_train_cases(0.01, factor=factor, seed=seed, sigma=0.01, models=("simple_cnn",))
        return write_run(tmp_path / name, create_run(noisy + clean, MACHINE))

    status, out, _ = _gate(capsys, run("base.json", 1.0, 1), run("cur.json", 1.5, 2))
    assert status == 1, out
    assert "result: 2 regressions, 2 inconclusive in 4 case(s) -> exit 1" in out


def test_too_few_rounds_for_the_rank_test_is_inconclusive(tmp_path, capsys):
    """5 and 5 rounds: the rank test's smallest p is 0.012, so even a 30% slowdown was "not significant" and
    passed. Such a case can detect nothing at alpha 0.01: inconclusive."""
    base = _one_case(tmp_path, "base.json", create_rounds(0.010, n=5, sigma=0.01, seed=1))
    cur = _one_case(tmp_path, "cur.json", create_rounds(0.013, n=5, sigma=0.01, seed=2))
    status, out, _ = _gate(capsys, base, cur)
    assert status == 4, out
    assert "5 and 5 rounds are too few for the rank test to reach alpha/1 (its smallest p is 0.012)" in out
    status, report = _json(capsys, base, cur)
    row = report["rows"][0]
    assert row["tested"] and row["mde"] is None and row["runs_to_resolve"] == 2  # 10 and 10 rounds would do


def test_significant_improvement_is_not_inconclusive_however_wide(tmp_path, capsys):
    """A significant improvement's interval lies wholly below 1: it rules out a slowdown, wide or not."""
    base = _write(tmp_path, "base.json", seed=1, sigma=0.15)
    fast = _write(tmp_path, "fast.json", seed=2, sigma=0.15, factor=0.5)
    status, report = _json(capsys, base, fast)
    assert status == 0
    assert all(r["status"] == "improvement" and r["mde"] > 0.05 for r in report["rows"])


def test_runs_to_resolve_estimate():
    target = math.log(1.05)
    kw = dict(n_baseline=30, n_current=30, m=1, alpha=0.01)
    # one run a side, twice the width: 4 runs a side halve it
    assert gate.estimate_runs_to_resolve(2 * target, 0.05, "time", k_baseline=1, k_current=1, **kw) == 4
    # 5 + 3 runs: 1/3 + 1/5 = 0.533; twice the width needs 2/k <= 0.533 / 4, k = 15
    assert gate.estimate_runs_to_resolve(2 * target, 0.05, "time", k_baseline=5, k_current=3,
                                         n_baseline=150, n_current=90, m=1, alpha=0.01) == 15
    # a narrow interval, but 5 rounds a run: the rank test needs 15 and 15 rounds to reach 0.01/1000
    assert gate.estimate_runs_to_resolve(0.0, 0.05, "time", k_baseline=1, k_current=1, n_baseline=5,
                                         n_current=5, m=1000, alpha=0.01) == 3
    assert gate.estimate_runs_to_resolve(math.inf, 0.05, "time", k_baseline=1, k_current=1, **kw) is None
    assert gate.estimate_runs_to_resolve(100 * target, 0.05, "time", k_baseline=1, k_current=1, **kw) is None


def test_exit_status_4_is_documented_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["gate", "--help"])
    out = capsys.readouterr().out
    assert "4 inconclusive" in out and "--allow-inconclusive" in out


# ------------------------------------------------------------------------------------------- defects


def test_samples_per_s_judges_a_case_without_a_sample_count_on_time(tmp_path, capsys):
    """The suite's data-inspect cases record no batch size: --metric samples_per_s used to exit 3 on the suite's
    own runs. Their throughput ratio is the inverse of the time ratio."""
    def run(name, factor, seed):
        inspect = create_benchmark("test_data_inspect_warm", {}, create_rounds(0.2 * factor, n=30, seed=seed),
                                   group="data_inspect")
        return write_run(tmp_path / name, create_run(create_train_cases(0.01, factor=factor, seed=seed) + [inspect],
                                                     MACHINE))

    base, slow = run("base.json", 1.0, 1), run("slow.json", 1.25, 2)
    status, report = _json(capsys, base, slow, "--metric", "samples_per_s")
    assert status == 1
    inspect = report["rows"][-1]
    assert inspect["case"] == "test_data_inspect_warm" and inspect["status"] == "regression"
    assert inspect["ratio"] == pytest.approx(0.8, rel=0.05) and inspect["ci_high"] < 1.0
    assert inspect["baseline_value"] is None and inspect["current_value"] is None
    assert any(n.startswith("1 case(s) record no samples_per_s or batch size (first: test_data_inspect_warm)")
               for n in report["notes"])
    status, out, _ = _gate(capsys, base, run("rerun.json", 1.0, 3), "--metric", "samples_per_s")
    assert status == 0, out


def test_three_round_runs_pooled_over_runs_get_a_test(tmp_path, capsys):
    """The rule is about pooled rounds: one 3-round epoch run a side is judged by the threshold alone; 5 + 3 runs
    of it pool 15 and 9 rounds, get the rank test and an interval that carries their run-to-run noise."""
    def run(folder, name, median, seed):
        bench = create_benchmark("test_epoch", {"model": "simple_cnn", "batch_size": 64, "num_workers": 2},
                                 create_rounds(median, n=3, sigma=0.01, seed=seed), group="epoch")
        return write_run(tmp_path / folder / name, create_run([bench], MACHINE))

    for i in range(5):
        run("base", f"b{i}.json", 20.0, 10 + i)
    for i in range(3):
        run("slow", f"s{i}.json", 26.0, 20 + i)
    status, report = _json(capsys, tmp_path / "base", tmp_path / "slow")
    row = report["rows"][0]
    assert status == 1 and row["status"] == "regression" and row["verdict"].endswith("significant")
    assert (row["n_baseline"], row["n_current"], row["tested"]) == (15, 9, True)
    assert row["mde"] is not None and row["p_corrected"] < 0.01
    status, out, _ = _gate(capsys, tmp_path / "base" / "b0.json", tmp_path / "slow" / "s0.json")
    assert status == 1 and "too few rounds (3 < 5)" in out


# ------------------------------------------------------------------------------------------- edge cases


def test_zero_variance_on_both_sides(tmp_path, capsys):
    base = _one_case(tmp_path, "base.json", [1.0] * 30)
    slow = _one_case(tmp_path, "slow.json", [1.2] * 30)
    same = _one_case(tmp_path, "same.json", [1.0] * 30)
    status, report = _json(capsys, base, slow)
    row = report["rows"][0]
    assert status == 1 and row["status"] == "regression" and row["verdict"] == "1.20x slower, significant"
    assert row["ci_low"] == row["ci_high"] == pytest.approx(1.2) and row["mde"] == 0.0
    status, report = _json(capsys, base, same)
    row = report["rows"][0]
    assert status == 0 and row["verdict"] == "same speed, not significant" and row["p_value"] == 1.0
    assert row["mde"] == 0.0


def test_zero_baseline_median(tmp_path, capsys):
    """Rounds faster than the timer give a zero median: no crash, no NaN, strict JSON."""
    zeros, params = [0.0] * 20 + [1e-6] * 10, {"model": "resnet18"}
    base = _one_case(tmp_path, "base.json", zeros, params=params)
    slow = _one_case(tmp_path, "slow.json", create_rounds(0.001, n=30, seed=2), params=params)
    status, out, _ = _gate(capsys, base, slow, "--format", "json")
    report = json.loads(out, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    row = report["rows"][0]
    assert status == 1 and row["status"] == "regression" and row["ratio"] is None
    assert row["verdict"] == "slower than a zero baseline median, significant"
    status, out, _ = _gate(capsys, base, slow)
    assert status == 1 and "inf" in out
    # zero over zero is the same speed, but an interval from 0 to infinity can detect nothing
    status, report = _json(capsys, base, _one_case(tmp_path, "zero.json", zeros[::-1], params=params))
    row = report["rows"][0]
    assert status == 4 and row["ratio"] == 1.0
    assert row["verdict"] == "same speed, inconclusive: this machine's noise hides changes of any size"


def test_improvement_judged_by_the_threshold_alone(tmp_path, capsys):
    def run(name, median, seed):
        bench = create_benchmark("test_epoch", {"model": "simple_cnn", "batch_size": 64, "num_workers": 2},
                                 create_rounds(median, n=3, sigma=0.01, seed=seed), group="epoch")
        return write_run(tmp_path / name, create_run([bench], MACHINE))

    status, out, _ = _gate(capsys, run("base.json", 20.0, 1), run("fast.json", 15.0, 2))
    assert status == 0 and re.search(r"1\.3\dx faster, improvement \(too few rounds \(3 < 5\)", out), out


@pytest.mark.parametrize("base_mem, cur_mem, status, words", [
    (100 << 20, 130 << 20, 1, "1.30x more memory, above the 5% threshold"),
    (100 << 20, 70 << 20, 0, "1.43x less memory, improvement"),
    (100 << 20, 102 << 20, 0, "1.02x more memory, within the 5% threshold or under 1 MiB"),
    (1 << 20, 3 << 19, 0, "1.50x more memory, within the 5% threshold or under 1 MiB"),  # +50% but 0.5 MiB
    (0, 0, 0, "same memory, within"),
    (100 << 20, 0, 0, f"0 from {100 << 20}, improvement"),  # a run that recorded no peak: no ratio to word
    (0, 2 << 20, 1, f"{2 << 20} from 0, above the 5% threshold"),
])
def test_peak_memory_branches(tmp_path, capsys, base_mem, cur_mem, status, words):
    base, cur = _memory_run(tmp_path, "base.json", base_mem), _memory_run(tmp_path, "cur.json", cur_mem)
    code, report = _json(capsys, base, cur, "--metric", "peak_memory_bytes")
    row = report["rows"][0]
    assert code == status and row["verdict"].startswith(words), row["verdict"]
    assert row["mde"] is None and not row["tested"]


def test_peak_memory_not_recorded_is_not_judged(tmp_path, capsys):
    base = _memory_run(tmp_path, "base.json", 100 << 20)
    bench = create_benchmark("test_train_step", {"model": "resnet18", "batch_size": 64},
                             create_rounds(0.01, n=3, seed=3), keep_data=False)
    cur = write_run(tmp_path / "cur.json", create_run([bench], MACHINE))
    status, out, _ = _gate(capsys, base, cur, "--metric", "peak_memory_bytes")
    assert status == 0 and "no peak_memory_bytes recorded: not judged" in out


def test_cases_on_one_side_only(tmp_path, capsys):
    """Baseline {resnet18, simple_cnn}, current {simple_cnn, vgg13}: the common case is judged, the new one fails
    closed (or is skipped), the dropped one is listed."""
    def run(name, models, seed):
        return write_run(tmp_path / name, create_run(create_train_cases(0.01, seed=seed, models=models,
                                                                        batch_sizes=(32,)), MACHINE))

    # vgg13 takes resnet18's place in the list, so simple_cnn keeps its per-case time
    base, cur = run("base.json", ("resnet18", "simple_cnn"), 1), run("cur.json", ("vgg13", "simple_cnn"), 2)
    status, out, err = _gate(capsys, base, cur)
    assert status == 2 and "vgg13" in err
    assert "1 baseline case(s) not in the current run: test_train_step[model=resnet18" in out
    status, report = _json(capsys, base, cur, "--allow-missing")
    assert status == 0 and report["n_tested"] == 1
    missing, judged = report["rows"]
    assert "simple_cnn" in judged["case"] and judged["status"] == "unchanged" and judged["mde"] < 0.05
    assert "vgg13" in missing["case"] and missing["status"] == "no baseline" and missing["mde"] is None
    assert len(report["baseline_only"]) == 1


def test_case_missing_from_some_baseline_runs(tmp_path, capsys):
    """A case in only some of the pooled runs: its rounds and run medians come from those runs."""
    for i, models in enumerate((("resnet18", "simple_cnn"), ("resnet18",), ("resnet18",))):
        write_run(tmp_path / "base" / f"b{i}.json",
                  create_run(create_train_cases(0.01, seed=10 + i, models=models, batch_sizes=(32,)), MACHINE))
    cur = write_run(tmp_path / "cur.json", create_run(create_train_cases(0.01, seed=20, batch_sizes=(32,)), MACHINE))
    status, report = _json(capsys, tmp_path / "base", cur, "--allow-inconclusive")
    assert status == 0
    assert [(r["n_baseline"], r["n_current"]) for r in report["rows"]] == [(90, 30), (30, 30)]
    assert "2 degrees of freedom" in " ".join(report["notes"])  # resnet18's 3 baseline runs only


# ------------------------------------------------------------------------------------------- paired (fer-bench ab)
def _pairs(tmp_path: Path, levels, slowdown: float = 1.0, sigma: float = 0.01, models=("resnet18", "simple_cnn"),
           every: int = 1) -> tuple[Path, Path]:
    """Baseline and current runs made in pairs at the machine speeds ``levels`` (pair i at levels[i]): the drift
    of a shared runner, which touches both runs of a pair alike."""
    for i, level in enumerate(levels):
        for side, factor, minute in (("base", level, 2 * i), ("cur", level * slowdown, 2 * i + 1)):
            cases = create_train_cases(0.010, factor=factor, seed=100 * i + (side == "cur"), sigma=sigma,
                                       models=models if i % every == 0 or side == "base" else models[:1])
            run = create_run(cases, MACHINE, when=f"2026-01-01T12:{minute:02d}:00+00:00")
            write_run(tmp_path / side / f"ab-{i + 1:02d}.json", run)
    return tmp_path / "base", tmp_path / "cur"


DRIFT = (1.0, 1.12, 0.95, 1.2, 1.05, 0.9)  # +-12% between pairs, a few % within none


def test_paired_t_by_hand():
    d = np.log([1.10, 1.08, 1.12, 1.09])
    p, mean, low, high = gate.paired_t(d, 0.99)
    t = d.mean() / (d.std(ddof=1) / 2)
    from scipy import stats as st
    assert p == pytest.approx(2 * st.t.sf(abs(t), 3))
    assert mean == pytest.approx(d.mean())
    assert high - mean == pytest.approx(st.t.ppf(0.995, 3) * d.std(ddof=1) / 2)
    assert gate.paired_t(np.zeros(3), 0.99) == (1.0, 0.0, 0.0, 0.0)
    assert gate.paired_t(np.full(3, 0.1), 0.99)[0] == 0.0


def test_pairs_to_resolve_shrink_with_less_noise():
    many = gate.estimate_pairs_to_resolve(0.05, 0.05, "time", 0.999)
    few = gate.estimate_pairs_to_resolve(0.01, 0.05, "time", 0.999)
    assert few < many
    from scipy import stats as st
    assert st.t.ppf(0.9995, few - 1) * 0.01 / math.sqrt(few) <= math.log(1.05)
    assert st.t.ppf(0.9995, few - 2) * 0.01 / math.sqrt(few - 1) > math.log(1.05)
    assert gate.estimate_pairs_to_resolve(math.inf, 0.05, "time", 0.999) is None
    assert gate.estimate_pairs_to_resolve(5.0, 0.05, "time", 0.999) is None


def test_paired_gate_catches_a_slowdown_that_drift_hides_from_pooled_runs(tmp_path, capsys):
    """Six pairs on a runner whose speed drifts +-12% between pairs. Pooled, the 10% slowdown sits inside the
    run-to-run noise (no regression: inconclusive at best); paired, the drift cancels and it is a regression."""
    base, cur = _pairs(tmp_path, DRIFT, slowdown=1.10)
    status, out, _ = _gate(capsys, base, cur)
    assert status != 1 and status in (0, 4), out
    status, report = _json(capsys, base, cur, "--paired")
    assert status == 1, report
    assert report["paired"] and all(r["status"] == "regression" and r["n_pairs"] == 6 for r in report["rows"])
    assert all(1.08 < r["ratio"] < 1.12 for r in report["rows"])
    _, out, _ = _gate(capsys, base, cur, "--paired")
    assert "vs 6 baseline runs, paired" in out and "paired: baseline run i against current run i (6 pairs)" in out


def test_paired_gate_passes_unchanged_code_on_a_drifting_runner(tmp_path, capsys):
    base, cur = _pairs(tmp_path, DRIFT)
    status, report = _json(capsys, base, cur, "--paired")
    assert status == 0, report
    assert all(r["status"] == "unchanged" and r["mde"] < 0.05 for r in report["rows"])
    assert report["run_noise"] < 0.03


def test_paired_gate_with_noisy_pairs_is_inconclusive_and_says_how_many_pairs(tmp_path, capsys):
    """Pairs whose own ratio wobbles by several % (noise within the pair): three pairs cannot show 5%."""
    wobble = (1.0, 1.06, 0.95)
    for i, w in enumerate(wobble):
        for side, factor, minute in (("base", 1.0, 2 * i), ("cur", w, 2 * i + 1)):
            run = create_run(create_train_cases(0.010, factor=factor, seed=10 * i + (side == "cur"), sigma=0.01),
                             MACHINE, when=f"2026-01-01T12:{minute:02d}:00+00:00")
            write_run(tmp_path / side / f"ab-{i}.json", run)
    status, out, err = _gate(capsys, tmp_path / "base", tmp_path / "cur", "--paired")
    assert status == 4, out
    assert "inconclusive: this machine's noise hides changes below" in out
    assert re.search(r"about \d+ pairs would resolve 5%", out) and "run more pairs" in err


def test_paired_gate_needs_equal_sides_of_at_least_two(tmp_path, capsys):
    base, cur = _pairs(tmp_path, DRIFT[:3])
    (cur / "ab-03.json").unlink()
    status, _, err = _gate(capsys, base, cur, "--paired")
    assert status == 3 and "3 baseline and 2 current runs" in err
    status, _, err = _gate(capsys, base, cur, cur / "ab-01.json", "--paired")
    assert status == 3 and "--paired takes two folders" in err
    one = _pairs(tmp_path / "one", DRIFT[:1])
    status, _, err = _gate(capsys, *one, "--paired")
    assert status == 3 and "at least 2" in err


def test_a_case_in_too_few_pairs_is_judged_by_the_threshold(tmp_path, capsys):
    """simple_cnn only in the current run of the first of six pairs: one pair, judged by the threshold alone."""
    base, cur = _pairs(tmp_path, DRIFT, models=("resnet18", "simple_cnn"), every=6)
    status, report = _json(capsys, base, cur, "--paired")
    lone = [r for r in report["rows"] if "simple_cnn" in r["case"]]
    assert lone and all(r["n_pairs"] == 1 and not r["tested"] for r in lone)
    assert all("1 pair holds this case, too few for a test" in r["verdict"] for r in lone)
    assert status == 0


# ------------------------------------------------------------------------------------------- paired, suite scope
SUITE_MODELS = tuple(f"model_{i}" for i in range(8))


def _offset_pairs(tmp_path: Path, pairs: int = 10, slowdown: float = 1.0, offset_sd: float = 0.05,
                  seed: int = 7) -> tuple[Path, Path]:
    """Pairs whose cases each move by their own few percent in every process (a process's memory layout and
    thread placement), as fer-bench ab's runs do: no case resolves 5%, their mean over cases does."""
    rng = np.random.default_rng(seed)
    for i in range(pairs):
        for side, minute in (("base", 2 * i), ("cur", 2 * i + 1)):
            cases = []
            for k, model in enumerate(SUITE_MODELS):
                factor = math.exp(rng.normal(0.0, offset_sd)) * (slowdown if side == "cur" else 1.0)
                cases += create_train_cases(0.010, factor=factor, seed=1000 * i + 10 * k + (side == "cur"),
                                            sigma=0.01, models=(model,), batch_sizes=(32,))
            run = create_run(cases, MACHINE, when=f"2026-01-01T12:{minute:02d}:00+00:00")
            write_run(tmp_path / side / f"ab-{i + 1:02d}.json", run)
    return tmp_path / "base", tmp_path / "cur"


def test_suite_log_ratio_is_the_mean_over_cases_of_each_pair(tmp_path):
    base, cur = _offset_pairs(tmp_path, pairs=3)
    b, c = load_results([base]), load_results([cur])
    keys = [case.key for case in c[0].cases]
    per_case = np.array([gate.paired_log_ratios(b, c, k) for k in keys])
    assert gate.suite_log_ratios(b, c, keys) == pytest.approx(per_case.mean(axis=0))
    (cur / "ab-02.json").write_text((cur / "ab-02.json").read_text().replace("model_3", "model_x"))
    c = load_results([cur])
    assert len(gate.suite_log_ratios(b, c, keys)) == 2  # the pair that lacks a case is left out, not averaged


def test_suite_scope_passes_unchanged_code_that_no_single_case_resolves(tmp_path, capsys):
    base, cur = _offset_pairs(tmp_path)
    status, report = _json(capsys, base, cur, "--paired")
    assert status == 4 and report["scope"] == "cases", report["rows"]  # every case alone: inconclusive
    status, report = _json(capsys, base, cur, "--paired", "--scope", "suite")
    assert status == 0, report["suite"]
    suite = report["suite"]
    assert suite["status"] == "unchanged" and suite["mde"] < 0.05 and suite["n_pairs"] == 10
    assert report["n_inconclusive"] == 0 and any(r["status"] == "inconclusive" for r in report["rows"])
    status, out, _ = _gate(capsys, base, cur, "--paired", "--scope", "suite")
    assert "suite: geometric mean of 8 cases over 10 pairs" in out and "[gated]" in out
    assert "the case rows are shown, not gated" in out and "(scope suite: the suite row decides)" in out


def test_suite_scope_catches_a_slowdown_of_every_case_and_then_gates_the_cases(tmp_path, capsys):
    base, cur = _offset_pairs(tmp_path, slowdown=1.10)
    status, report = _json(capsys, base, cur, "--paired", "--scope", "suite")
    assert status == 1, report["suite"]
    suite = report["suite"]
    assert suite["status"] == "regression" and 1.07 < suite["ratio"] < 1.13 and suite["ci_low"] > 1.0
    assert report["n_regressions"] == 1 + sum(r["status"] == "regression" for r in report["rows"])
    _, out, _ = _gate(capsys, base, cur, "--paired", "--scope", "suite")
    assert "the case rows are gated too" in out
    assert "in the suite (an estimate" not in out  # an estimate, if any, is the gated cases' own


def test_suite_scope_with_too_few_pairs_is_inconclusive(tmp_path, capsys):
    base, cur = _offset_pairs(tmp_path, pairs=3, offset_sd=0.08)
    status, out, err = _gate(capsys, base, cur, "--paired", "--scope", "suite")
    assert status == 4, out
    assert re.search(r"about \d+ pairs would resolve 5% in the suite", out)


def test_suite_scope_needs_paired_runs_of_time_or_throughput(tmp_path, capsys):
    base, cur = _offset_pairs(tmp_path, pairs=2)
    status, _, err = _gate(capsys, base, cur, "--scope", "suite")
    assert status == 3 and "--scope suite gates the paired runs" in err
    status, report = _json(capsys, base, cur, "--paired", "--scope", "suite", "--metric", "samples_per_s")
    assert status in (0, 4) and report["suite"]["n_pairs"] == 2
