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


def test_malloc_noise_needs_two_processes(tmp_path):
    proc = _run("malloc_noise.py", "--processes", "1", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith("argument --processes: '1' is not an integer >= 2")
