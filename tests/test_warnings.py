"""Warnings are errors in the test suite (tests/conftest.py), never in a benchmark run: a run that times nothing
ends with pytest's own exit status and no traceback from pytest-benchmark's 'Not saving anything' warning, and a
case that fails before it used its benchmark fixture reports one failure, not a failure and a teardown error."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

FAILING_CASE = """
import pytest

@pytest.mark.benchmark(group="train_step")
def test_case(benchmark, run_config, model, device, batch_size, precision, num_gpus):
    raise RuntimeError("the case failed before it timed anything")
"""


def _pytest(*args: str, cwd: Path, cache: Path) -> tuple[int, str, dict[str, int]]:
    """Exit status, output and outcome counts ({'failed': 1, 'errors': 0, ...}) of a pytest subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "SLURM_", "MASTER_"))}
    env["FER_BENCH_CACHE"] = str(cache)
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    summary = next((line for line in reversed(done.stdout.splitlines()) if line.startswith("=")), "")
    counts = {("errors" if word.startswith("error") else word): int(n)
              for n, word in re.findall(r"(\d+) (failed|passed|skipped|deselected|errors?)", summary)}
    return done.returncode, output, counts


def test_the_suite_turns_warnings_into_errors():
    with pytest.raises(UserWarning):
        warnings.warn("a warning in a test", UserWarning)


def test_a_run_that_selects_nothing_exits_5_without_a_traceback(tmp_path):
    status, output, counts = _pytest("benchmarks", "-k", "no_such_case", "--benchmark-json",
                                     str(tmp_path / "x.json"), cwd=REPO, cache=tmp_path / "cache")
    assert status == pytest.ExitCode.NO_TESTS_COLLECTED, output[-3000:]
    assert "Traceback" not in output and "INTERNALERROR" not in output, output[-3000:]
    assert counts.get("deselected", 0) > 0 and "passed" not in counts, output[-3000:]


def test_a_run_whose_cases_all_skip_exits_0_and_says_so(tmp_path):
    # a device this machine lacks: every case skips with the reason, as under torchrun all but parallel=ddp do
    if not torch.cuda.is_available():
        device, reason = "cuda", "no CUDA device"
    elif not torch.backends.mps.is_available():
        device, reason = "mps", "MPS"
    else:
        pytest.skip("this machine has both CUDA and MPS: no device to skip on")
    status, output, counts = _pytest("benchmarks", "-k", "test_train_step", "--fer-preset", "quick",
                                     "--fer-devices", device, "--benchmark-json", str(tmp_path / "x.json"),
                                     cwd=REPO, cache=tmp_path / "cache")
    assert status == pytest.ExitCode.OK, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert counts.get("skipped", 0) > 0 and set(counts) <= {"skipped", "deselected"}, output[-3000:]
    assert reason in output


def test_a_failed_case_is_one_failure_and_no_error(tmp_path):
    """The case raises before it used the benchmark fixture, whose teardown warns 'Benchmark fixture was not used at
    all': under the repository's own ini that warning is not a second, teardown error."""
    (tmp_path / "test_fails.py").write_text(FAILING_CASE)
    status, output, counts = _pytest("-c", str(REPO / "tox.ini"), "--rootdir", str(tmp_path), "-p",
                                     "fer_bench.plugin", "test_fails.py", "--fer-preset", "quick",
                                     "--fer-models", "fer_cnn_2block", "--fer-devices", "cpu",
                                     cwd=tmp_path, cache=tmp_path / "cache")
    assert status == pytest.ExitCode.TESTS_FAILED, output[-3000:]
    assert counts.get("failed") == 1 and counts.get("errors", 0) == 0, output[-3000:]
    assert "the case failed before it timed anything" in output
