"""Tests of fer_bench.results.gate (`fer-bench gate`): statistics, verdicts, exit statuses and bad inputs."""

from __future__ import annotations

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
from result_factory import (
    create_benchmark,
    create_fingerprint,
    create_rounds,
    create_run,
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


def test_rank_average_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    values = np.array([3.0, 1.0, 2.0, 2.0, 5.0, 3.0, 3.0, 0.5])
    np.testing.assert_allclose(gate.rank_average(values), stats.rankdata(values))


@pytest.mark.parametrize("ties", [False, True])
def test_mann_whitney_matches_scipy(ties):
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    x, y = rng.normal(10, 1, 25), rng.normal(10.6, 1, 31)
    if ties:
        x, y = np.round(x), np.round(y)
    u, p = gate.mann_whitney_u(x, y)
    ref = stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic", use_continuity=True)
    assert u == pytest.approx(ref.statistic)
    assert p == pytest.approx(ref.pvalue, rel=1e-9)


def test_mann_whitney_all_tied_is_not_significant():
    assert gate.mann_whitney_u(np.ones(8), np.ones(6))[1] == 1.0


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
    assert gate.resolve_resamples(1 - 1e-6) == gate.MAX_RESAMPLES


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
    assert "other-box" in err and "--allow-other-machine" in err
    status, out, err = _gate(capsys, base, cur, "--allow-other-machine")
    assert status == 0 and "warning" in err


def test_sidecar_fingerprint_counts_as_the_same_machine(tmp_path, capsys):
    base = write_run(tmp_path / "base.json", create_run(create_train_cases(0.01, seed=1), MACHINE), sidecar=True)
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


@pytest.mark.parametrize("q, df", [(0.975, 4), (0.999, 6), (0.999, 1), (0.9995, 30), (0.95, 2), (0.9999, 150)])
def test_student_t_quantile_matches_scipy(q, df):
    stats = pytest.importorskip("scipy.stats")
    assert gate.student_t_quantile(q, df) == pytest.approx(stats.t.ppf(q, df), rel=1e-8)


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
    run-to-run noise, so its 8% median shift is not called a regression (one current run at +8% would be)."""
    base = _write(tmp_path, "base.json", seed=50, sigma=0.01)
    for i, level in enumerate((1.0, 1.08, 1.16)):
        _write(tmp_path / "cur", f"c{i}.json", factor=level, seed=60 + i, sigma=0.01)
    status, out, _ = _gate(capsys, base, tmp_path / "cur")
    assert status == 0, out
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
    assert status == 0, out
    assert "not significant" in out and "one baseline run" not in out
    # against the middle run alone the same current run is a significant regression
    status, out, _ = _gate(capsys, tmp_path / "base" / "b1.json", cur)
    assert status == 1 and "one baseline run" in out


def test_folder_baseline_keeps_this_machine_and_leaves_out_the_current_run(tmp_path, capsys):
    for i in range(2):
        _write(tmp_path / "results", f"mine{i}.json", seed=30 + i)
    _write(tmp_path / "results", "other.json", seed=40, fp=OTHER)
    cur = _write(tmp_path / "results", "current.json", seed=41)
    status, out, err = _gate(capsys, tmp_path / "results", cur, "--format", "json")
    report = json.loads(out)
    assert status == 0
    assert sorted(Path(p).name for p in report["baseline"]) == ["mine0.json", "mine1.json"]
    assert {row["n_baseline"] for row in report["rows"]} == {60}
    assert "other machines left out" in err


def test_bad_gate_option_is_bad_input_not_missing_baseline(tmp_path, capsys):
    from fer_bench.cli import main

    assert main(["gate", "a.json", "b.json", "--threshold", "lots"]) == 3
    assert "usage:" in capsys.readouterr().err
