"""A run loses nothing and leaves nothing behind: real pytest runs of the suite's own benchmarks in their own process
groups, stopped with real signals (SIGTERM, SIGKILL, SIGINT twice, Ctrl-C to the whole group during a DDP case),
a DDP rank killed or made to hang, two runs saving into one folder at once, and outputs that cannot be written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fer_bench.plugin.journal import read_journal

REPO = Path(__file__).resolve().parents[1]

pytest_plugins = ["pytester"]

#: 16 small step cases of about a second each
STEP_CASES = ["benchmarks/test_step.py::test_forward", "benchmarks/test_step.py::test_train_step",
              "--fer-models", "fer_cnn_2block", "--fer-batch-sizes", "1,2,3,4,5,6,7,8", "--fer-precisions", "fp32",
              "--fer-devices", "cpu", "--fer-budget", "none", "--fer-round-time", "0.05"]
DDP_CASES = ["benchmarks/test_scaling.py", "--fer-parallel", "ddp", "--fer-devices", "cpu", "--fer-num-gpus", "2",
             "--fer-models", "fer_cnn_2block", "--fer-budget", "none", "--fer-round-time", "0.2"]


def start(args: list[str], tmp_path: Path, **env) -> subprocess.Popen:
    """pytest over the repository's benchmarks, in a process group of its own (as a shell job is)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "SLURM_", "MASTER_"))}
    environment.update(FER_BENCH_CACHE=str(tmp_path / "cache"), **env)
    log = open(tmp_path / f"log-{time.monotonic_ns()}.txt", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=REPO,
                            env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proc.log = log
    return proc


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    proc.log.seek(0)
    text = proc.log.read()
    proc.log.close()
    return code, text


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (zombies are dead)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def assert_group_empty(pgid: int, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = group_members(pgid)
    assert not left, [Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")[:200] for pid in left]


def wait_for(condition, timeout: float = 240, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended before the condition: {finish(proc)[1][-3000:]}")
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def journal_cases(path: Path) -> int:
    try:
        return len(read_journal(path)[1])
    except Exception:
        return 0


def ddp_ranks(pid: int) -> list[int]:
    """The spawned DDP ranks among ``pid``'s children."""
    out = []
    for member in group_members(os.getpgid(pid)):
        try:
            cmdline = Path(f"/proc/{member}/cmdline").read_text()
            parent = int(Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if parent == pid and "spawn_main" in cmdline:
            out.append(member)
    return sorted(out)


def result_names(path: Path) -> list[str]:
    return [b["fullname"] for b in json.loads(path.read_text())["benchmarks"]]


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """A 16-case run killed with SIGKILL after 3 cases: only its journal is left."""
    tmp = tmp_path_factory.mktemp("killed")
    out = tmp / "run.json"
    proc = start([*STEP_CASES, "--benchmark-json", str(out)], tmp)
    journal = tmp / "run.journal.jsonl"
    wait_for(lambda: journal_cases(journal) >= 3, proc=proc)
    os.killpg(proc.pid, signal.SIGKILL)
    finish(proc)
    return tmp, out, journal


def test_sigterm_keeps_the_finished_cases_and_resume_runs_only_the_rest(tmp_path):
    out = tmp_path / "run.json"
    journal = tmp_path / "run.journal.jsonl"
    proc = start([*STEP_CASES, "--benchmark-json", str(out)], tmp_path)
    wait_for(lambda: journal_cases(journal) >= 3, proc=proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code, log = finish(proc)
    stopped_s = time.monotonic() - sent
    assert code == pytest.ExitCode.INTERRUPTED, log[-3000:]
    assert stopped_s < 20, f"the run took {stopped_s:.1f} s to stop"
    data = json.loads(out.read_text())
    incomplete = data["fer_bench"]["run"]["incomplete"]
    kept = result_names(out)
    assert incomplete["signal"] == "SIGTERM" and len(kept) == incomplete["finished"] >= 3
    assert len(kept) + len(incomplete["missing"]) == 16
    assert {m["case"] for m in incomplete["missing"]}.isdisjoint(kept)
    assert (tmp_path / "run.fingerprint").exists()
    assert "fer_bench: run interrupted by SIGTERM" in log and f"--fer-resume {journal}" in log

    proc = start([*STEP_CASES, "--benchmark-json", str(out), "--fer-resume", str(out)], tmp_path)
    code, log = finish(proc)
    assert code == 0, log[-3000:]
    assert f"{len(kept)} deselected" in log
    names = result_names(out)
    assert len(names) == len(set(names)) == 16
    run = json.loads(out.read_text())["fer_bench"]["run"]
    assert "incomplete" not in run and run["interruptions"][0]["signal"] == "SIGTERM"
    assert not journal.exists(), "a complete run removes its journal"


def test_after_sigkill_resume_works_from_the_journal_alone(killed_run, tmp_path):
    tmp, out, killed = killed_run
    assert not out.exists()
    journal = tmp_path / killed.name  # a copy: the run that completes removes its journal, the other tests read it
    shutil.copy(killed, journal)
    out = tmp_path / "run.json"
    header, cases, _ = read_journal(journal)
    assert len(cases) >= 3 and header["identity"]["hardware"]["identity_hash"]
    proc = start([*STEP_CASES, "--benchmark-json", str(out), "--fer-resume", str(journal)], tmp_path)
    code, log = finish(proc)
    assert code == 0, log[-3000:]
    names = result_names(out)
    assert len(names) == len(set(names)) == 16
    assert {c["nodeid"] for c in cases} <= set(names)
    assert not journal.exists(), "the completed run removes the journal it resumed and wrote"


@pytest.mark.parametrize("change, named", [
    (["--fer-batch-sizes", "1,2"], "options batch_size: 1,2,3,4,5,6,7,8 there, 1,2 here"),
    (["--fer-epoch-images", "64"], "workload epoch_images: 2048 there, 64 here"),
])
def test_resume_of_another_run_is_refused_in_one_line(killed_run, change, named):
    tmp, _, journal = killed_run
    args = [*STEP_CASES, *change, "--fer-resume", str(journal), "--benchmark-json", str(tmp / "other.json")]
    for option in change[::2]:  # the changed option replaces the one in STEP_CASES
        at = args.index(option)
        del args[at:at + 2]
        args += change
    code, log = finish(start(args, tmp))
    assert code == pytest.ExitCode.USAGE_ERROR, log[-3000:]
    line = [line for line in log.splitlines() if "--fer-resume" in line]
    assert len(line) == 1 and "refused, another run" in line[0] and named in line[0], log[-2000:]
    assert "Traceback" not in log


def test_a_second_ctrl_c_exits_at_once_and_the_journal_stays_whole(tmp_path):
    out = tmp_path / "run.json"
    journal = tmp_path / "run.journal.jsonl"
    proc = start([*STEP_CASES, "--benchmark-json", str(out)], tmp_path)
    wait_for(lambda: journal_cases(journal) >= 2, proc=proc)
    os.killpg(proc.pid, signal.SIGINT)
    os.killpg(proc.pid, signal.SIGINT)
    code, log = finish(proc, timeout=30)
    assert code in (128 + signal.SIGINT, pytest.ExitCode.INTERRUPTED), log[-3000:]
    assert journal_cases(journal) >= 2
    if out.exists():  # written whole or not at all
        json.loads(out.read_text())
    assert_group_empty(proc.pid)


def test_ctrl_c_during_a_ddp_case_ends_every_rank(tmp_path):
    out = tmp_path / "run.json"
    proc = start([*DDP_CASES, "--fer-batch-sizes", "8", "--benchmark-json", str(out)], tmp_path)
    wait_for(lambda: len(ddp_ranks(proc.pid)) == 2, proc=proc)
    time.sleep(2)  # the ranks are starting or stepping
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    code, log = finish(proc, timeout=60)
    assert code == pytest.ExitCode.INTERRUPTED, log[-3000:]
    assert time.monotonic() - sent < 20
    assert_group_empty(proc.pid)


def test_sigterm_to_the_leader_alone_during_a_ddp_case_ends_every_rank(tmp_path):
    proc = start([*DDP_CASES, "--fer-batch-sizes", "8", "--benchmark-json", str(tmp_path / "run.json")], tmp_path)
    wait_for(lambda: len(ddp_ranks(proc.pid)) == 2, proc=proc)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)  # SLURM's or kill's: the ranks are not told
    code, log = finish(proc, timeout=60)
    assert code == pytest.ExitCode.INTERRUPTED, log[-3000:]
    assert_group_empty(proc.pid)


def _one_failure_line(log: str, message: str) -> None:
    assert "1 failed, 1 passed" in log and " error" not in log.lower().split("short test summary")[-1], log[-3000:]
    assert "Traceback" not in log and "multiprocessing" not in log, log[-4000:]
    failures = [line for line in log.splitlines() if message in line]
    assert failures, log[-3000:]


def test_a_killed_rank_fails_its_case_in_one_line_and_the_next_case_runs(tmp_path):
    proc = start([*DDP_CASES, "--fer-batch-sizes", "8,16", "-W", "error::pytest_benchmark.logger.PytestBenchmarkWarning",
                  "--benchmark-json", str(tmp_path / "run.json")], tmp_path)
    wait_for(lambda: len(ddp_ranks(proc.pid)) == 2, proc=proc)
    os.kill(ddp_ranks(proc.pid)[1], signal.SIGKILL)
    code, log = finish(proc)
    assert code == pytest.ExitCode.TESTS_FAILED
    _one_failure_line(log, "rank 1 of 2 died during")
    assert_group_empty(proc.pid)


def test_a_hung_rank_fails_its_case_within_the_timeout_and_the_run_goes_on(tmp_path):
    started = time.monotonic()
    proc = start([*DDP_CASES, "--fer-batch-sizes", "8,16", "--fer-ddp-timeout", "5",
                  "--benchmark-json", str(tmp_path / "run.json")], tmp_path, FER_BENCH_INJECT_DDP_HANG="1@8")
    code, log = finish(proc)
    assert code == pytest.ExitCode.TESTS_FAILED, log[-3000:]
    _one_failure_line(log, "did not answer within 5 s during a round")
    assert len(result_names(tmp_path / "run.json")) == 1
    assert time.monotonic() - started < 180
    assert_group_empty(proc.pid)


def test_two_runs_saving_into_one_folder_at_once_both_keep_their_results(tmp_path):
    storage = tmp_path / "store"
    args = ["benchmarks/test_step.py::test_forward", "--fer-models", "fer_cnn_2block", "--fer-batch-sizes", "1",
            "--fer-precisions", "fp32", "--fer-devices", "cpu", "--fer-round-time", "0.05",
            "--benchmark-storage", f"file://{storage}", "--benchmark-autosave"]
    procs = [start(args, tmp_path), start(args, tmp_path)]
    results = [finish(p) for p in procs]
    assert all(code == 0 for code, _ in results), results[0][1][-2000:] + results[1][1][-2000:]
    saved = sorted(storage.glob("*/*.json"))
    runs = [p for p in saved if not p.name.endswith((".fingerprint.json",))]
    runs = [p for p in runs if "benchmarks" in json.loads(p.read_text())]
    assert len(runs) == 2, saved
    assert len({p.name.split("_")[0] for p in runs}) == 2, "each run has its own number"
    assert not list(storage.glob("*/.saving-*")) and not list(storage.glob("*/journal-*"))


@pytest.mark.parametrize("args, message", [
    (["--benchmark-json", "/proc/fer-bench/run.json"], "--benchmark-json /proc/fer-bench/run.json: cannot create"),
    (["--benchmark-storage", "file:///proc/fer-bench", "--benchmark-autosave"],
     "--benchmark-storage /proc/fer-bench: cannot write into /proc/fer-bench/"),
    (["--fer-journal", "/proc/fer-bench/j.jsonl"], "--fer-journal /proc/fer-bench/j.jsonl: cannot write into"),
])
def test_an_unwritable_output_is_refused_before_any_case(tmp_path, args, message):
    code, log = finish(start([*STEP_CASES, *args], tmp_path))
    assert code == pytest.ExitCode.USAGE_ERROR, log[-3000:]
    assert message in log and "Traceback" not in log and "PASSED" not in log, log[-2000:]


STOPPED_SUITE = """
import os

import pytest


@pytest.mark.parametrize("n", [1, 2, 3])
def test_case(benchmark, fer_options, n):
    benchmark.pedantic(lambda: None, rounds=2)
    assert not (n == 2 and os.environ.get("BREAK_CASE_2")), "case 2 is broken"
"""


def test_a_run_stopped_by_x_is_incomplete_and_resumes_with_the_failed_and_missing_cases(pytester, monkeypatch,
                                                                                         tmp_path):
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "cache"))
    pytester.makepyfile(test_stopped=STOPPED_SUITE)
    out = pytester.path / "run.json"
    monkeypatch.setenv("BREAK_CASE_2", "1")
    first = pytester.runpytest_subprocess("-p", "fer_bench.plugin", "-p", "no:cacheprovider", "-x",
                                          "--benchmark-json", str(out))
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    run = json.loads(out.read_text())["fer_bench"]["run"]
    assert run["incomplete"]["signal"] is None and "stopping after 1 failures" in run["incomplete"]["reason"]
    assert [m["case"] for m in run["incomplete"]["missing"]] == ["test_stopped.py::test_case[3]"]
    first.stdout.fnmatch_lines(["*fer_bench: run stopped early: 2 cases finished, 1 missing*"])

    monkeypatch.delenv("BREAK_CASE_2")
    second = pytester.runpytest_subprocess("-p", "fer_bench.plugin", "-p", "no:cacheprovider",
                                           "--benchmark-json", str(out), "--fer-resume", str(out))
    assert second.ret == 0, second.stdout.str()[-2000:]
    second.stdout.fnmatch_lines(["*2 passed, 1 deselected*"])
    assert sorted(result_names(out)) == [f"test_stopped.py::test_case[{n}]" for n in (1, 2, 3)]
