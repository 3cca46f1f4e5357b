"""The native gate end to end: --benchmark-compare against the newest stored run of the same hardware, failing
closed on a missing case or on a baseline from other hardware."""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]

SLEEP_TEST = """
import os, time
import pytest

@pytest.mark.benchmark(group="train_step")
def test_step(benchmark, batch_size):
    delay = float(os.environ.get("STEP_MS", "20")) / 1000
    benchmark.pedantic(lambda: time.sleep(delay), rounds=5, warmup_rounds=1)
"""


@pytest.fixture
def gate(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "cache"))
    pytester.makepyfile(test_gate_case=SLEEP_TEST)

    def _run(*args, step_ms=20, batch_sizes="8"):
        monkeypatch.setenv("STEP_MS", str(step_ms))
        return pytester.runpytest_subprocess("-p", "fer_bench.plugin", "-p", "no:cacheprovider",
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
    stored = [p for p in (pytester.path / "results").glob("*/0001_*.json") if not p.name.endswith(".fingerprint.json")]
    assert len(stored) == 1
    data = json.loads(stored[0].read_text())
    data["machine_info"]["fer_bench"]["identity_hash"] = "0123456789abcdef"
    data["machine_info"]["fer_bench"]["slug"] = "other-node"
    stored[0].write_text(json.dumps(data))
    result = gate(*COMPARE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no stored run of this hardware*other hardware (other-node)*"
                                 "--fer-allow-other-machine*"])
    allowed = gate(*COMPARE, "--fer-allow-other-machine")
    assert allowed.ret == 0, allowed.stdout.str()
    allowed.stdout.fnmatch_lines(["*note: comparing with*made on other hardware (other-node)*"])


def test_newest_run_of_this_hardware_is_chosen(gate, pytester):
    assert gate("--fer-save").ret == 0
    assert gate("--fer-save", step_ms=40).ret == 0  # a newer, slower run of the same hardware
    runs = sorted((pytester.path / "results").glob("*/00*_*.json"))
    runs = [p for p in runs if not p.name.endswith(".fingerprint.json")]
    assert [p.name[:4] for p in runs] == ["0001", "0002"]
    result = gate(*COMPARE, step_ms=40)  # as slow as the newest: no regression against it
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*compared with*0002_*.json*"])
