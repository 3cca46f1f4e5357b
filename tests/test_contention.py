"""Contention accounting (fer_bench.measure.contention) and how the results treat a contended case.

The reader over fake /proc roots (arithmetic, descendants, a machine without /proc); real measure() windows with
real CPU burners beside them and with a quiet machine; the re-measure; the gate, compare and the terminal summary
over fabricated results (tests/result_factory.py).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from fer_bench.cli import main
from fer_bench.measure import contention, timing
from fer_bench.measure.contention import (
    CONTENTION_THRESHOLD,
    ContentionPolicy,
    ContentionWindow,
    MachineTimes,
    contention_figures,
    read_machine_times,
    read_runnable,
    read_tree_ticks,
    resolve_own_pid,
    wait_for_quiet,
)
from fer_bench.results.compare import create_view, format_view
from fer_bench.results.contention import describe_contention, is_contended
from fer_bench.results.runs import load_results
from result_factory import (
    create_benchmark,
    create_fingerprint,
    create_rounds,
    create_run,
    create_train_cases,
    write_run,
)

pytest_plugins = ["pytester"]

MACHINE = create_fingerprint("ci-box-2c", {"cpu": {"brand": "Xeon", "cores": 2}, "gpus": []})
BURN = "while True: pass"


# ------------------------------------------------------------------------------------------- a fake /proc


class FakeProc:
    """A /proc with /proc/stat (two CPUs), /proc/loadavg and a process tree, rewritten between readings."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def machine(self, user: int, system: int = 0, idle: int = 0, steal: int = 0, running: int = 1) -> None:
        cpu = f"{user} 0 {system} {idle} 0 0 0 {steal} 0 0"
        (self.root / "stat").write_text(f"cpu  {cpu}\ncpu0 {cpu}\ncpu1 {cpu}\nintr 1 2 3\nprocs_running {running}\n")
        (self.root / "loadavg").write_text(f"0.50 0.40 0.30 {running}/123 4567\n")

    def process(self, pid: int, ppid: int, utime: int, stime: int = 0, cutime: int = 0, cstime: int = 0,
                comm: str = "python") -> None:
        folder = self.root / str(pid)
        folder.mkdir(exist_ok=True)
        fields = ["S", str(ppid)] + ["0"] * 9 + [str(utime), str(stime), str(cutime), str(cstime)] + ["0"] * 20
        (folder / "stat").write_text(f"{pid} ({comm}) " + " ".join(fields) + "\n")


@pytest.fixture
def proc(tmp_path) -> FakeProc:
    return FakeProc(tmp_path / "proc")


def test_machine_times_and_runnable_from_a_fake_root(proc):
    proc.machine(user=300, system=100, idle=500, steal=20, running=3)
    times = read_machine_times(proc.root)
    assert times == MachineTimes(busy=400, steal=20, total=920, cpus=2)
    assert read_runnable(proc.root) == 3


def test_tree_ticks_count_descendants_and_not_strangers(proc):
    proc.process(100, 1, utime=10, stime=5, cutime=7, cstime=1)  # the run (7 + 1: children that ended)
    proc.process(101, 100, utime=20, comm="pt_data_worker")       # a DataLoader worker
    proc.process(102, 101, utime=3, comm="weird ) name (x")       # its child, with parentheses in its name
    proc.process(200, 1, utime=999)                                # somebody else
    assert read_tree_ticks(100, proc.root) == 10 + 5 + 7 + 1 + 20 + 3
    with pytest.raises(OSError):
        read_tree_ticks(4242, proc.root)


def test_figures_are_shares_of_the_machines_cpu_time():
    before = MachineTimes(busy=1000, steal=0, total=2000, cpus=2)
    after = MachineTimes(busy=1150, steal=10, total=2200, cpus=2)  # 200 ticks: 1 s of 2 CPUs at 100 Hz
    record = contention_figures(before, after, own_ticks=100, wall_s=1.0, runnable=[1, 3, 2])
    assert record["other_cpu_share"] == pytest.approx(50 / 200)
    assert record["steal_share"] == pytest.approx(10 / 200)
    assert record["own_cpu_share"] == pytest.approx(100 / 200)
    assert record["runnable_mean"] == 2 and record["runnable_max"] == 3 and record["cpus"] == 2
    assert record["contended"] is True and record["threshold"] == CONTENTION_THRESHOLD
    quiet = contention_figures(before, after, own_ticks=140, wall_s=1.0, runnable=[1])
    assert quiet["other_cpu_share"] == pytest.approx(10 / 200) and quiet["contended"] is False
    # the kernel's two clocks disagree by a few ticks: never a negative share
    assert contention_figures(before, after, own_ticks=170, wall_s=1.0, runnable=[])["other_cpu_share"] == 0
    # steal alone can contend a case: the hypervisor gave the CPU away
    stolen = MachineTimes(busy=1100, steal=30, total=2200, cpus=2)
    assert contention_figures(before, stolen, own_ticks=100, wall_s=1.0, runnable=[])["contended"] is True


def test_window_over_a_fake_root(proc):
    proc.process(100, 1, utime=10)
    proc.machine(user=1000, idle=1000)
    window = ContentionWindow(own_pid=100, root=proc.root, interval_s=0).start()
    proc.process(100, 1, utime=60)       # the run: 50 ticks
    proc.process(300, 1, utime=90)       # a stranger that started inside the window
    proc.machine(user=1100, idle=1100)   # the machine: 100 busy of 200
    record = window.stop()
    assert record["measured"] and record["other_cpu_share"] == pytest.approx(0.25) and record["contended"]
    assert record["own"] == "this process and its descendants"


def test_no_proc_is_recorded_as_not_measured(tmp_path):
    record = ContentionWindow(root=tmp_path / "no-proc", interval_s=0).start().stop()
    assert record["measured"] is False and "no readable /proc" in record["why"]
    assert not is_contended({"contention": record})
    assert describe_contention(record).startswith("contention not measured: no readable /proc")


def test_measure_without_proc_says_not_measured(tmp_path, monkeypatch):
    monkeypatch.setattr(contention, "PROC_ROOT", tmp_path / "no-proc")
    info = timing.measure(RealBenchmark(), lambda: None, device="cpu", samples_per_call=1, phase="step",
                          target_s=0.01, min_rounds=3, warmup_rounds=0)
    assert info["contention"]["measured"] is False
    assert "no readable /proc" in info["contention"]["why"]


def test_launchers_and_ab_count_their_siblings_as_the_run():
    assert resolve_own_pid(False, env={})[0] == os.getpid()
    assert resolve_own_pid(False, env={"WORLD_SIZE": "1"})[0] == os.getpid()
    assert resolve_own_pid(False, env={"WORLD_SIZE": "4"})[0] == os.getppid()
    assert resolve_own_pid(False, env={"SLURM_NTASKS": "2"})[0] == os.getppid()
    assert resolve_own_pid(True, env={})[0] == os.getppid()


def test_wait_for_quiet_stops_at_the_first_quiet_sample(proc):
    proc.process(100, 1, utime=0)
    proc.machine(user=0, idle=0)
    busy = iter([150, 150, 10])  # other work's ticks in each 200-tick sample

    def sleep(_seconds):
        stat = (proc.root / "stat").read_text().split()
        user, idle = int(stat[1]), int(stat[4])
        other = next(busy)
        proc.machine(user=user + other, idle=idle + 200 - other)

    result = wait_for_quiet(own_pid=100, root=proc.root, sample_s=1.0, max_wait_s=10, sleep=sleep)
    assert result["quiet"] and result["last"]["other_cpu_share"] == pytest.approx(0.05)


def test_wait_for_quiet_gives_up_after_its_bound(proc):
    proc.process(100, 1, utime=0)
    proc.machine(user=0, idle=0)
    calls = []

    def sleep(_seconds):
        calls.append(1)
        stat = (proc.root / "stat").read_text().split()
        proc.machine(user=int(stat[1]) + 180, idle=int(stat[4]) + 20)

    result = wait_for_quiet(own_pid=100, root=proc.root, sample_s=0.5, max_wait_s=2.0, sleep=sleep)
    assert not result["quiet"] and len(calls) == 4 and result["last"]["other_cpu_share"] == pytest.approx(0.9)


# ------------------------------------------------------------------------------------------- real windows


class RealBenchmark:
    """pytest-benchmark's fixture as far as measure() uses it, timing real rounds with perf_counter."""

    def __init__(self):
        self.extra_info: dict = {}
        self.data: list[float] = []
        self.stats = types.SimpleNamespace(stats=self)
        self.iqr = 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.data)

    def pedantic(self, target, rounds, iterations, warmup_rounds):
        for _ in range(rounds):
            t0 = time.perf_counter()
            target()
            self.data.append(time.perf_counter() - t0)


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _ambient(seconds: float = 1.0) -> float:
    """Other processes' and steal's share of the machine while this process sleeps."""
    window = ContentionWindow(interval_s=0).start()
    time.sleep(seconds)
    record = window.stop()
    return record["other_cpu_share"] + record["steal_share"]


class _Orphan:
    """A burner that is not this process's descendant (a shell starts it in the background and exits, so it is
    re-parented): the run counts its own descendants as its own time, and another program's load is what the test
    is about."""

    def __init__(self) -> None:
        command = f"{shlex.quote(sys.executable)} -c {shlex.quote(BURN)} >/dev/null 2>&1 & echo $!"
        self.pid = int(subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout)

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self) -> None:
        deadline = time.monotonic() + 5
        while Path(f"/proc/{self.pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def _burners(n: int) -> list[_Orphan]:
    return [_Orphan() for _ in range(n)]


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="contention is read from Linux's /proc")
def test_cpu_burners_beside_a_real_measure_mark_it_contended():
    """One burner per CPU: whatever else runs here, this process gets at most its share of the machine, and the
    burners (never idle) take the rest."""
    burners = _burners(os.cpu_count() or 1)
    try:
        time.sleep(0.2)  # the burners past their start-up
        info = timing.measure(RealBenchmark(), lambda: _spin(0.02), device="cpu", samples_per_call=1,
                              phase="step", target_s=1.0, min_rounds=5, warmup_rounds=1)
    finally:
        for p in burners:
            p.kill()
            p.wait()
    record = info["contention"]
    assert record["measured"] and record["contended"], record
    assert record["other_cpu_share"] >= 0.3, record
    assert record["runnable_mean"] >= len(burners), record
    assert is_contended(info) and "other processes took" in describe_contention(record)


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="contention is read from Linux's /proc")
def test_a_quiet_run_counts_its_own_children_as_its_own():
    """No burner started by this test. Each round runs a child process (as a DataLoader worker would) that burns
    0.3 s of CPU: that is the run's own time whatever the machine does, so the record must hold it as own. On a
    machine that was quiet around the run (other engineers idle), the run is not contended."""
    child = ("import time\nwhile time.process_time() < 0.3: pass")

    def step() -> None:
        subprocess.run([sys.executable, "-c", child], check=True)

    before = _ambient()
    info = timing.measure(RealBenchmark(), step, device="cpu", samples_per_call=1, phase="step", target_s=0.1,
                          min_rounds=3, warmup_rounds=0)
    after = _ambient()
    record = info["contention"]
    assert record["measured"], record
    own_cpu_s = record["own_cpu_share"] * record["wall_s"] * record["cpus"]
    assert own_cpu_s >= 3 * 0.3 * 0.9, record  # three rounds' children, less a tick or two of rounding
    if max(before, after) < CONTENTION_THRESHOLD / 2:
        assert not record["contended"], (before, after, record)
        assert record["other_cpu_share"] < CONTENTION_THRESHOLD, (before, after, record)


# ------------------------------------------------------------------------------------------- re-measure


class ScriptedWindow:
    """ContentionWindow stand-in: each window opened returns the next scripted record."""

    records: list[dict] = []

    def __init__(self, **_kwargs):
        pass

    def start(self):
        return self

    def stop(self) -> dict:
        return ScriptedWindow.records.pop(0)


def _record(other: float) -> dict:
    return contention_figures(MachineTimes(0, 0, 0, 2), MachineTimes(int(other * 200), 0, 200, 2), 0, wall_s=1.0,
                              runnable=[2])


def _replaced(fixture, times):
    fixture.data = list(times)
    fixture.replaced = True


@pytest.mark.parametrize("quiet", [True, False])
def test_a_contended_case_is_remeasured_once_when_quiet(monkeypatch, quiet):
    ScriptedWindow.records = [_record(0.6), _record(0.02)]
    waits = []
    monkeypatch.setattr(timing, "ContentionWindow", ScriptedWindow)
    monkeypatch.setattr(timing, "wait_for_quiet", lambda **kw: waits.append(kw) or {
        "quiet": quiet, "waited_s": 2.0, "last": _record(0.02 if quiet else 0.7)})
    calls = []
    bench = RealBenchmark()
    policy = ContentionPolicy(remeasure=True, replace_rounds=_replaced, max_wait_s=5.0)
    info = timing.measure(bench, lambda: calls.append(1), device="cpu", samples_per_call=1, phase="step",
                          target_s=0.001, min_rounds=4, max_rounds=4, warmup_rounds=0, contention=policy)
    assert waits[0]["max_wait_s"] == 5.0
    record = info["contention"]
    if quiet:
        assert len(calls) == 1 + 4 + 4 and getattr(bench, "replaced", False) and len(bench.data) == 4
        assert record["contended"] is False and record["remeasure"]["done"]
        assert record["remeasure"]["first"]["other_cpu_share"] == pytest.approx(0.6)
    else:
        assert len(calls) == 1 + 4 and not getattr(bench, "replaced", False)
        assert record["contended"] and not record["remeasure"]["done"]
        assert "stayed busy for 2 s (other processes 70%" in record["remeasure"]["why"]


def test_no_remeasure_without_the_option(monkeypatch):
    ScriptedWindow.records = [_record(0.6)]
    monkeypatch.setattr(timing, "ContentionWindow", ScriptedWindow)
    monkeypatch.setattr(timing, "wait_for_quiet", lambda **kw: pytest.fail("waited without the option"))
    info = timing.measure(RealBenchmark(), lambda: None, device="cpu", samples_per_call=1, phase="step",
                          target_s=0.001, min_rounds=3, max_rounds=3, warmup_rounds=0,
                          contention=ContentionPolicy(remeasure=False))
    assert info["contention"]["contended"] and "remeasure" not in info["contention"]


# ------------------------------------------------------------------------------------------- gate and compare


def _contended(other: float = 0.42) -> dict:
    return {"contention": {"measured": True, "other_cpu_share": other, "steal_share": 0.01, "own_cpu_share": 0.5,
                           "runnable_mean": 3.5, "runnable_max": 5, "cpus": 2, "wall_s": 1.2, "contended": True,
                           "threshold": 0.1}}


def _quiet() -> dict:
    return {"contention": {**_contended(0.01)["contention"], "contended": False}}


def _run_with(tmp_path: Path, name: str, *, factor: float = 1.0, seed: int = 0, contended: tuple = (),
              when: str = "2026-01-01T12:00:00+00:00") -> Path:
    """The four train_step cases; those whose batch size is in ``contended`` measured on a busy machine."""
    cases = create_train_cases(0.010, factor=factor, seed=seed)
    for case in cases:
        case["extra_info"].update(_contended() if case["params"]["batch_size"] in contended else _quiet())
    return write_run(tmp_path / name, create_run(cases, MACHINE, when=when))


def _gate(capsys, *argv) -> tuple[int, str]:
    status = main(["gate", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out + err


def test_gate_gives_a_contended_case_no_verdict(tmp_path, capsys):
    base = _run_with(tmp_path, "base.json", seed=1)
    slow = _run_with(tmp_path, "cur.json", seed=2, factor=1.6, contended=(64,))
    status, out = _gate(capsys, base, slow)
    # the two contended cases are no evidence, even 1.6x slower; the two others are regressions
    assert status == 1, out
    assert out.count("contended: no verdict:") == 2
    lines = [line for line in out.splitlines() if line.startswith("fer-bench gate: contended:")]
    assert [line.split(": ")[2] for line in lines] == [
        f"test_train_step[model={m}, device=cpu, batch_size=64, precision=fp32]" for m in ("resnet18", "simple_cnn")]
    assert all("other processes took 42% of the machine's CPU time, steal 1%, 3.5 tasks runnable on 2 CPUs "
               "(threshold 10%): no verdict" in line for line in lines), out
    assert "would resolve" not in out  # more runs resolve noise, never a busy machine
    assert main(["gate", str(base), str(slow), "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    statuses = sorted(r["status"] for r in report["rows"])
    assert statuses == ["inconclusive", "inconclusive", "regression", "regression"]


def test_contended_cases_alone_make_the_gate_inconclusive(tmp_path, capsys):
    base = _run_with(tmp_path, "base.json", seed=1)
    cur = _run_with(tmp_path, "cur.json", seed=2, contended=(32, 64))
    status, out = _gate(capsys, base, cur)
    assert status == 4, out
    assert "inconclusive: 4 case(s) were measured while other processes took the machine (contended)" in out
    assert "cannot show" not in out  # not a noise problem: nothing was judged
    status, out = _gate(capsys, base, cur, "--allow-inconclusive")
    assert status == 0, out


def test_a_contended_baseline_run_is_set_aside_and_the_rest_judge(tmp_path, capsys):
    bases = [_run_with(tmp_path, f"base{i}.json", seed=10 + i, contended=(32,) if i == 0 else (),
                       when=f"2026-01-0{i + 1}T12:00:00+00:00") for i in range(3)]
    cur = _run_with(tmp_path, "cur.json", seed=2)
    status, out = _gate(capsys, *bases, cur)
    assert status in (0, 4), out
    assert "contended: no verdict" not in out
    assert "note: contended: 2 entr(ies) of 2 case(s) set aside, judged on their other runs" in out


def test_peak_memory_ignores_contention(tmp_path, capsys):
    base = _run_with(tmp_path, "base.json", seed=1)
    cur = _run_with(tmp_path, "cur.json", seed=2, contended=(32, 64))
    for path in (base, cur):  # every case with the same peak memory
        doc = json.loads(path.read_text())
        for bench in doc["benchmarks"]:
            bench["extra_info"]["peak_memory_bytes"] = 100 << 20
        path.write_text(json.dumps(doc))
    status, out = _gate(capsys, base, cur, "--metric", "peak_memory_bytes")
    assert status == 0 and "contended" not in out, out


def test_paired_suite_gate_still_names_a_contended_case(tmp_path, capsys):
    """fer-bench ab's gate: the suite row is the job's verdict, but a case with no uncontended pair is gated too."""
    for i in range(3):
        _run_with(tmp_path, f"base/ab-{i + 1:02d}.json", seed=20 + i, when=f"2026-01-01T12:{2 * i:02d}:00+00:00")
        _run_with(tmp_path, f"cur/ab-{i + 1:02d}.json", seed=30 + i, contended=(64,),
                  when=f"2026-01-01T12:{2 * i + 1:02d}:00+00:00")
    status, out = _gate(capsys, tmp_path / "base", tmp_path / "cur", "--paired", "--scope", "suite")
    assert status == 4, out
    assert out.count("contended: no verdict:") == 2
    assert "suite: geometric mean of 2 cases" in out


def test_compare_marks_contended_results(tmp_path):
    path = _run_with(tmp_path, "run.json", contended=(64,))
    table = create_view("platforms", load_results([path]))
    text = format_view(table)
    assert "Contended: 2 result(s) were measured while other processes took the machine" in text
    assert "other processes took 42% of the machine's CPU time" in text
    assert text.count(", contended)") == 2
    records = json.loads(format_view(table, "json"))
    assert sorted(r["contended"] for r in records if r["kind"] == "case") == [False, False, True, True]


def test_old_results_without_a_record_are_not_contended(tmp_path, capsys):
    plain = [create_benchmark("test_step", {"batch_size": 8}, create_rounds(0.01))]
    path = write_run(tmp_path / "old.json", create_run(plain, MACHINE))
    assert not is_contended(load_results([path])[0].cases[0].extra_info)
    assert "Contended" not in format_view(create_view("platforms", load_results([path])))


# ------------------------------------------------------------------------------------------- the terminal summary

MEASURED_CASE = """
from fer_bench.measure.timing import measure

def test_step(benchmark, fer_recorder):
    measure(benchmark, lambda: sum(range(2000)), device="cpu", samples_per_call=1, phase="step", target_s=0.05,
            min_rounds=3, warmup_rounds=0, contention=fer_recorder.contention)
"""


@pytest.fixture
def plugin_run(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "cache"))
    pytester.makepyfile(test_contended_case=MEASURED_CASE)

    def _run(conftest: str, *args: str):
        pytester.makeconftest(conftest)
        return pytester.runpytest_subprocess("-p", "fer_bench.plugin", "-p", "no:cacheprovider", "-W", "error",
                                             "--fer-progress", "off", "--benchmark-json", "out.json", *args)
    return _run


def test_summary_names_contended_cases_and_the_option_remeasures(plugin_run, pytester):
    """Every case contended (a threshold below zero), and the quiet wait short: the option waits, gives up, and
    the summary names the case with its figures."""
    result = plugin_run("from fer_bench.measure import contention\ncontention.CONTENTION_THRESHOLD = -1.0\n"
                        "contention.QUIET_SAMPLE_S = 0.2\ncontention.MAX_QUIET_WAIT_S = 0.4\n",
                        "--fer-remeasure-contended")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["*fer_bench: contended cases (1 of 1: unreliable, no gate verdict)*",
                                 "test_step: other processes took *% of the machine's CPU time, steal *%, * tasks "
                                 "runnable on * CPUs (threshold -100%); not re-measured: the machine stayed busy*"])
    record = json.loads((pytester.path / "out.json").read_text())["benchmarks"][0]["extra_info"]["contention"]
    assert record["contended"] and record["remeasure"]["done"] is False


def test_summary_says_once_that_contention_was_not_measured(plugin_run):
    result = plugin_run("from pathlib import Path\nfrom fer_bench.measure import contention\n"
                        "contention.PROC_ROOT = Path('/nonexistent-proc')\n")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["fer_bench: contention not measured for 1 case(s): no readable /proc*"])
    assert "contended cases" not in result.stdout.str()
