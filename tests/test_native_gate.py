"""The native gate end to end: --benchmark-compare against the newest stored run of the same hardware, failing
closed on a missing case or on a baseline from other hardware."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

SLEEP_TEST = """
import os, time
import pytest

@pytest.mark.benchmark(group="train_step")
def test_step(benchmark, batch_size):
    delay = float(os.environ.get("STEP_MS", "20")) / 1000
    benchmark.extra_info["workload"] = {"data": {"kind": "synthetic", "size": 100},
                                        "images_per_round": int(os.environ.get("IMAGES", "2048"))}
    if "REACHED" in os.environ:  # a time-to-accuracy case's verdict
        benchmark.extra_info["reached_target"] = os.environ["REACHED"] == "1"
    benchmark.pedantic(lambda: time.sleep(delay), rounds=5, warmup_rounds=1)
"""


@pytest.fixture
def gate(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "cache"))
    pytester.makepyfile(test_gate_case=SLEEP_TEST)

    def _run(*args, step_ms=20, batch_sizes="8", images=2048, reached=None):
        monkeypatch.setenv("STEP_MS", str(step_ms))
        if reached is None:
            monkeypatch.delenv("REACHED", raising=False)
        else:
            monkeypatch.setenv("REACHED", "1" if reached else "0")
        monkeypatch.setenv("IMAGES", str(images))
        # -W error: as the project's own filterwarnings, where a pytest-benchmark warning stops the session
        return pytester.runpytest_subprocess("-p", "fer_bench.plugin", "-p", "no:cacheprovider", "-W", "error",
                                             "--fer-batch-sizes", batch_sizes, *args)
    return _run


COMPARE = ("--benchmark-compare", "--benchmark-compare-fail=median:10%")


def test_unchanged_rerun_passes_and_slowdown_fails(gate, pytester):
    assert gate("--fer-save").ret == 0
    same = gate(*COMPARE)
    assert same.ret == 0, same.stdout.str()
    same.stdout.fnmatch_lines(["*compared with*results*0001_*.json (newest stored run of this hardware)*"])
    slow = gate(*COMPARE, step_ms=32)
    assert slow.ret != 0
    assert "Performance has regressed" in slow.stdout.str() + slow.stderr.str()


def test_case_missing_from_the_baseline_fails_closed(gate):
    assert gate("--fer-save").ret == 0
    result = gate(*COMPARE, batch_sizes="8,16")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*FAILED: no baseline entry in*for 1 case(s): *test_step?bs16?*"
                                 "--fer-allow-missing-baseline*"])
    allowed = gate(*COMPARE, "--fer-allow-missing-baseline", batch_sizes="8,16")
    assert allowed.ret == 0, allowed.stdout.str()
    allowed.stdout.fnmatch_lines(["*note: no baseline entry*not checked: *bs16*"])


def test_baseline_from_other_hardware_fails_closed(gate, pytester):
    assert gate("--fer-save").ret == 0
    stored = list((pytester.path / "results").glob("*/0001_*.json"))
    assert len(stored) == 1
    data = json.loads(stored[0].read_text())
    data["machine_info"]["fer_bench"]["identity_hash"] = "0123456789abcdef"
    data["machine_info"]["fer_bench"]["slug"] = "other-node"
    stored[0].write_text(json.dumps(data))
    result = gate(*COMPARE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no stored run of this hardware*other hardware (other-node)*"
                                 "--fer-allow-other-machine*"])
    allowed = gate(*COMPARE, "--fer-allow-other-machine", "-W", "ignore::pytest_benchmark.logger.PytestBenchmarkWarning")
    assert allowed.ret == 0, allowed.stdout.str()
    allowed.stdout.fnmatch_lines(["*note: comparing with*made on other hardware (other-node)*"])


def test_newest_run_of_this_hardware_is_chosen(gate, pytester):
    assert gate("--fer-save").ret == 0
    assert gate("--fer-save", step_ms=40).ret == 0  # a newer, slower run of the same hardware
    runs = sorted((pytester.path / "results").glob("*/00*_*.json"))
    assert [p.name[:4] for p in runs] == ["0001", "0002"]
    result = gate(*COMPARE, step_ms=40)  # as slow as the newest: no regression against it
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*compared with*0002_*.json*"])


def test_legacy_sidecars_in_storage_do_not_stop_the_gate(gate, pytester):
    """Runs stored by fer_bench 0.1 have NAME.fingerprint.json beside them: pytest-benchmark loads every *.json of
    the folder and its "Failed to load" warning, an error under filterwarnings=error, used to stop the session."""
    assert gate("--fer-save").ret == 0
    # today's sidecar (NAME.fingerprint) is no *.json: pytest-benchmark's own compare command reads the folder
    proc = subprocess.run([sys.executable, "-m", "pytest_benchmark", "--storage", "results", "compare"],
                          cwd=pytester.path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Failed to load" not in proc.stdout + proc.stderr and "test_step[bs8]" in proc.stdout
    sidecar = next((pytester.path / "results").glob("*/0001_*.fingerprint"))
    sidecar.rename(sidecar.with_name(sidecar.name + ".json"))
    result = gate(*COMPARE)
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_other_work_in_the_baseline_fails_closed(gate):
    """A baseline over 2,048 images a round is not a baseline for 4,096: the gate says so instead of calling the
    run slower."""
    assert gate("--fer-save").ret == 0
    result = gate(*COMPARE, images=4096)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*FAILED: other work in the baseline in*for 1 case(s): test_step?bs8? "
                                 "(images_per_round 4096 vs 2048, current vs baseline)*--fer-allow-other-workload*"])
    allowed = gate(*COMPARE, "--fer-allow-other-workload", images=4096)
    assert allowed.ret == 0, allowed.stdout.str()


def test_a_case_that_stops_reaching_its_target_fails(gate):
    """A missed time-to-accuracy case's rounds are times to the epoch cap: never compared as if they were times to
    the target, whatever their speed."""
    assert gate("--fer-save", reached=True).ret == 0
    result = gate(*COMPARE, reached=False, step_ms=10)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*FAILED: 1 case(s) no longer reach the target accuracy their baseline in*reached: "
                                 "test_step?bs8?*"])
    assert gate(*COMPARE, reached=True).ret == 0


def test_a_torch_upgrade_is_gated_not_refused(gate, pytester):
    """The same hardware with another software stack is the same machine: the baseline is used and the change
    is listed."""
    assert gate("--fer-save").ret == 0
    stored = next((pytester.path / "results").glob("*/0001_*.json"))
    data = json.loads(stored.read_text())
    current_torch = data["fer_bench"]["stack"]["torch"]
    data["fer_bench"]["stack"]["torch"] = "2.13.0+cu128"
    stored.write_text(json.dumps(data))
    stored.with_name(stored.stem + ".fingerprint").unlink()  # the stack comes from the JSON itself
    result = gate(*COMPARE)
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([f"*note: software stack changed since the baseline: torch 2.13.0+cu128 -> "
                                 f"{current_torch}*"])
    slow = gate(*COMPARE, step_ms=32)
    assert slow.ret != 0 and "Performance has regressed" in slow.stdout.str() + slow.stderr.str()
