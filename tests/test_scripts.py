"""The calibration scripts (scripts/gate_calibration.py, scripts/malloc_noise.py) end to end, at tiny sizes."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPTS / script), *args], cwd=cwd, capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def test_gate_calibration_model_gates_the_ci_recipe_windows(tmp_path):
    """9 synthetic A runs and 8 slowed ones: two sliding windows of 5 baseline + 3 current runs a side, 5 cases each.
    With 0.5% run-to-run noise every slowdown is caught and no A/A window fails."""
    out = tmp_path / "model.json"
    proc = _run("gate_calibration.py", "--model", "0.005", "--model-trials", "8", "--skip-measure",
                "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    model = json.loads(out.read_text())["model"][0]
    assert model["false_alarm"]["comparisons"] == 8 * 5
    pooled = model["pooled"]
    assert (pooled["baseline_runs"], pooled["current_runs"]) == (5, 3)
    assert pooled["false_alarm"]["comparisons"] == 2 * 5 and pooled["false_alarm"]["flagged"] == 0
    assert pooled["detection"]["comparisons"] == 2 * 5 and pooled["detection"]["flagged"] == 10
    # per gate call (a CI job): both slowed windows red by a regression, no unchanged window red at all
    assert pooled["detection"]["per_job"] == {"jobs": 2, "regression": 2, "inconclusive": 0}
    assert pooled["false_alarm"]["per_job"] == {"jobs": 2, "regression": 0, "inconclusive": 0}


def test_gate_calibration_measures_real_runs(tmp_path):
    """One A run and one slowed run of the real workload, timed by pytest-benchmark with the plugin: the runs carry
    the steady malloc in their identity and get a sidecar, and the summary holds both rates."""
    runs, out = tmp_path / "runs", tmp_path / "summary.json"
    proc = _run("gate_calibration.py", "--trials", "1", "--rounds", "5", "--warmup", "1", "--batch-sizes", "4",
                "--keep", str(runs), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(out.read_text())
    assert summary["false_alarm"]["comparisons"] == 1 and summary["detection"]["comparisons"] == 1
    assert summary["extra_matmuls"]["4"] >= 1
    a0 = json.loads((runs / "A000.json").read_text())
    if platform.libc_ver()[0] == "glibc":
        assert a0["fer_bench"]["stack"]["malloc"] == "glibc-steady"
    assert (runs / "A000.fingerprint").is_file()
    assert a0["benchmarks"][0]["extra_info"]["injected_matmuls"] == 0
    s0 = json.loads((runs / "S000.json").read_text())
    assert s0["benchmarks"][0]["extra_info"]["injected_matmuls"] == summary["extra_matmuls"]["4"]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the malloc modes differ only on glibc")
def test_malloc_noise_reports_each_mode(tmp_path):
    out = tmp_path / "noise.json"
    proc = _run("malloc_noise.py", "--processes", "2", "--seconds", "0.2", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert [r["malloc"] for r in report["system"]] == ["glibc"] * 2
    assert [r["malloc"] for r in report["steady"]] == ["glibc-steady"] * 2
    assert set(report["steady"][0]["median_s"]) == {"step_bs8", "step_bs16", "matmul_384"}
    assert "page faults per call" in proc.stdout


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="contention is read from Linux's /proc")
def test_contention_threshold_measures_a_neighbour(tmp_path):
    """A neighbour busy all the time on one CPU beside a 1-thread step: both levels measured, with their records,
    and the table printed. No figure is asserted: the machine may be shared."""
    out = tmp_path / "threshold.json"
    proc = _run("contention_threshold.py", "--levels", "0,1", "--threads", "1", "--repeats", "1", "--round-time",
                "0.05", "--idle", "2", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert len(report["idle"]) == 2 and all(0 <= w["share"] <= 1.01 for w in report["idle"])
    assert sorted(r["level"] for r in report["rows"]) == [0.0, 1.0]
    assert all(r["contention"]["measured"] and r["step_ms"] > 0 for r in report["rows"])
    assert "idle machine, 2 windows of 1 s" in proc.stdout and "| 1 | 100% |" in proc.stdout


def test_malloc_noise_needs_two_processes(tmp_path):
    proc = _run("malloc_noise.py", "--processes", "1", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith("argument --processes: '1' is not an integer >= 2")


# ------------------------------------------------------------------------------------------ recipe calibration
def _recipe_calibration():
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe_calibration", SCRIPTS / "recipe_calibration.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _job(recipe, condition, status, machine="vm-2c__cpu", **kw):
    return {"machine": machine, "recipe": recipe, "condition": condition, "exit_status": status, "slowdown": 0.1,
            "seconds": 60.0, **kw}


def test_recipe_calibration_cycles_kinds_and_resumes(tmp_path):
    cal = _recipe_calibration()
    done = [_job(*kind.split(":"), 0) for kind in cal.KINDS]
    assert [cal.next_kind(done[:i]) for i in range(5)] == list(cal.KINDS) + [cal.KINDS[0]]
    # a calibration of some kinds only counts its own jobs: the file's other kinds do not shift the cycle
    assert cal.next_kind(done[:3], ("ab:aa", "ab:slow")) == "ab:slow"
    assert cal.next_kind(done[:2], ("ab:aa", "ab:slow")) == "ab:aa"
    path = tmp_path / "jobs.jsonl"
    path.write_text(json.dumps(_job("stored", "aa", 0)) + "\n\n" + json.dumps(_job("stored", "slow", 1)) + "\n")
    jobs = cal.read_jobs([path])
    assert len(jobs) == 2 and cal.next_kind(jobs) == "ab:aa"
    path.write_text("{not json\n")
    with pytest.raises(SystemExit, match="jobs.jsonl:1: not a JSON line"):
        cal.read_jobs([path])


def test_recipe_calibration_table_counts_jobs_with_exact_intervals():
    cal = _recipe_calibration()
    jobs = ([_job("stored", "aa", 0)] * 9 + [_job("stored", "aa", 4)]
            + [_job("stored", "slow", 1)] * 8 + [_job("stored", "slow", 4)] + [_job("stored", "slow", 0)]
            + [_job("ab", "aa", 0, pairs=6)] * 5 + [_job("ab", "slow", 1, pairs=6)] * 4 + [_job("ab", "slow", 3, pairs=6)])
    table = cal.format_table(jobs).splitlines()
    assert len(table) == 2 + 4
    stored_aa, stored_slow, ab_aa, ab_slow = table[2:]
    # 0 of 10 regressions: the exact 95% interval is [0, 1 - 0.025^(1/10)] = [0, 30.8%]
    assert "| unchanged | 10 | 0/10 = 0% [0%, 31%] | 1/10 = 10% [0%, 45%] | 9/10 = 90% [55%, 100%] | 1.0 |" in stored_aa
    assert "| 10% slower | 10 | 8/10 = 80% [44%, 97%] |" in stored_slow
    assert "`fer-bench ab`, 6 pairs, interleave runs, scope cases | unchanged | 5 | 0/5" in ab_aa
    assert "| 10% slower | 5 (1 errors) | 4/5 = 80%" in ab_slow
    loaded = cal.format_table([_job("ab", "aa", 4, pairs=6), {**_job("ab", "aa", 4, pairs=6), "load": "x beside"}])
    assert len(loaded.splitlines()) == 2 + 2 and "| unchanged, x beside | 1 |" in loaded
    low, high = cal.binomial_ci(0, 10)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** 0.1)


def test_the_committed_recipe_calibration_gives_the_docs_table():
    cal = _recipe_calibration()
    files = sorted((SCRIPTS.parent / "docs" / "calibration").glob("*/recipes.jsonl"))
    assert files, "no committed recipe calibration under docs/calibration/"
    jobs = cal.read_jobs(files)
    readme = (SCRIPTS.parent / "docs" / "calibration.md").read_text()  # moved there from README.md
    assert cal.format_table(jobs) in readme
    assert cal.format_native_table(jobs) in readme


def test_native_gate_rule_and_table():
    cal = _recipe_calibration()
    base = {"a": 1.0, "b": 2.0}
    assert not cal.native_gate_fails(base, {"a": 1.05, "b": 2.0}, 0.05)
    assert cal.native_gate_fails(base, {"a": 1.0, "b": 2.2}, 0.05)
    assert not cal.native_gate_fails(base, {"c": 9.0}, 0.05)  # a case missing on one side is not compared
    jobs = [_job("stored", "aa", 0, medians={"latest_baseline": base, "current_run1": {"a": 1.01, "b": 2.0}}),
            _job("stored", "aa", 0, medians={"latest_baseline": base, "current_run1": {"a": 1.2, "b": 2.0}}),
            _job("stored", "slow", 1, medians={"latest_baseline": base, "current_run1": {"a": 1.1, "b": 2.2}}),
            _job("ab", "aa", 0, pairs=6)]
    table = cal.format_native_table(jobs).splitlines()
    assert len(table) == 4
    assert "| unchanged | 2 | 1/2 = 50%" in table[2] and "| 10% slower | 1 | 1/1 = 100%" in table[3]


def test_fleet_check_judges_its_trials(tmp_path):
    """scripts/fleet_check.py --analyze over two trials of four nodes (fabricated, as its runs would be): one with
    node-3 15% slower, one with no slowdown; the last line is the summary of outcomes."""
    from result_factory import create_fingerprint, write_fleet

    fp = create_fingerprint("epyc-2c", {"cpu": {"brand": "AMD EPYC", "cores": 2}, "gpus": []})
    write_fleet(tmp_path / "fleet" / "slow-r1", fp, slow={"node-3": 0.15}, seed=1)
    write_fleet(tmp_path / "fleet" / "none-r1", fp, seed=2)
    summary = tmp_path / "summary.json"
    proc = _run("fleet_check.py", "--analyze", str(tmp_path / "fleet"), "--summary", str(summary), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last == {"slow_node": "node-3", "slowdown": "0.15",
                    "outcomes": {"none": {"none_flagged": 1}, "slow": {"only_slow_node_flagged": 1}}}
    trials = {t["trial"]: t for t in json.loads(summary.read_text())["trials"]}
    assert len(trials["slow-r1"]["flagged"]["node-3"]) == trials["slow-r1"]["cases"] == 6
    assert "slow-r1: only_slow_node_flagged (flagged node-3: 6 case(s)" in proc.stdout


def test_fleet_check_dry_run_slows_one_node_a_slow_trial(tmp_path):
    proc = _run("fleet_check.py", "--dry-run", "--repeats", "1", "--out", str(tmp_path / "fleet"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("fleet_check: ")]
    assert len(lines) == 8 and all("--fer-preset quick --fer-budget none --benchmark-json" in line for line in lines)
    slowed = [line for line in lines if "FER_BENCH_INJECT_SLOWDOWN=0.15" in line]
    assert len(slowed) == 1 and "slow-r1/node-3.json" in slowed[0]
