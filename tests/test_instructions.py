"""--fer-instructions (fer_bench.measure.instructions) and the instruction gate (fer_bench.results.gate.instructions):
fakes of torch's Callgrind result everywhere but one marked test, which counts a tiny statement under Valgrind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fer_bench.cli import main
from fer_bench.engine import RunConfig
from fer_bench.errors import FerBenchError
from fer_bench.measure import instructions as ins
from fer_bench.results.gate import evaluate_gate
from fer_bench.results.gate.instructions import instruction_repeats, judge_instructions
from fer_bench.results.gate.verdict import GateRow, resolve_threshold
from fer_bench.results.runs import load_results
from result_factory import create_benchmark, create_fingerprint, create_rounds, create_run, write_run

REPO = Path(__file__).resolve().parent.parent
MACHINE = create_fingerprint("ci-box-2c", {"cpu": {"brand": "EPYC", "cores": 2}, "gpus": []})
BASE = 269.84e6


# ------------------------------------------------------------------------------------------- counting


class FakeStats:
    """What collect_callgrind returns per repeat, as far as fer_bench reads it."""

    def __init__(self, total: int) -> None:
        self.total = total

    def counts(self, *, denoise: bool = False) -> int:
        return self.total - (0 if denoise else 1000)


class FakeTimer:
    """torch.utils.benchmark.Timer's stand-in: runs the setup here as the real one does (once to check it, then as
    the Valgrind process would: with its preload in the environment and torch on ``num_threads``), records how it
    was asked, and returns fixed counts."""

    calls: list[dict] = []

    def __init__(self, stmt: str, setup: str, num_threads: int) -> None:
        self.stmt, self.setup, self.num_threads = stmt, setup, num_threads

    def collect_callgrind(self, number: int, *, repeats: int, collect_baseline: bool):
        FakeTimer.calls.append({"stmt": self.stmt, "threads": self.num_threads, "number": number,
                                "repeats": repeats, "baseline": collect_baseline, "path": os.environ["PATH"]})
        import torch

        exec(compile(self.setup, "<setup>", "exec"), {})
        saved, threads = os.environ.get("LD_PRELOAD"), torch.get_num_threads()
        os.environ["LD_PRELOAD"] = "/usr/libexec/valgrind/vgpreload_core-amd64-linux.so"
        torch.set_num_threads(self.num_threads)
        try:
            exec(compile(self.setup, "<setup>", "exec"), {})
        finally:
            torch.set_num_threads(threads)
            if saved is None:
                os.environ.pop("LD_PRELOAD")
            else:
                os.environ["LD_PRELOAD"] = saved
        return tuple(FakeStats(int(BASE * number) + 10 * i) for i in range(repeats))


def test_unavailable_names_what_to_install():
    assert ins.instructions_unavailable(lambda tool: None) == ins.VALGRIND_MISSING
    assert "install valgrind" in ins.VALGRIND_MISSING and "apt install valgrind" in ins.VALGRIND_MISSING
    partial = ins.instructions_unavailable(lambda tool: None if tool == "callgrind_annotate" else f"/bin/{tool}")
    assert partial.startswith("callgrind_annotate not found")


def test_only_eager_one_process_cpu_steps_are_counted():
    assert ins.case_unsupported("cpu", "eager", "none") is None
    assert "GPU work is not counted" in ins.case_unsupported("cuda", "eager", "none")
    assert "eager steps only" in ins.case_unsupported("cpu", "default", "none")
    assert "one-process" in ins.case_unsupported("cpu", "eager", "ddp")
    with pytest.raises(ValueError):
        ins.create_setup({}, "epoch", side_file="x")


def test_collect_counts_every_repeat_in_one_timer_call(monkeypatch):
    """One collect_callgrind call with every repeat (torch imported once), one thread, no baseline; the denoised
    count per call; the Valgrind side of the setup's report (threads, CPU capability) and this process's."""
    FakeTimer.calls = []
    config = RunConfig(model="fer_cnn_2block", batch_size=2)
    count = ins.collect_instructions(config, "train_step", repeats=3, number=2, timer_factory=FakeTimer,
                                     version=lambda: "valgrind-3.19.0")
    assert len(FakeTimer.calls) == 1
    call = FakeTimer.calls[0]
    assert call == {**call, "stmt": "step.step(x, y)", "threads": 1, "number": 2, "repeats": 3, "baseline": False}
    assert call["path"].split(os.pathsep)[0] == os.path.dirname(sys.executable)  # torch runs `python` from PATH
    assert count.per_call == (BASE, BASE + 5, BASE + 10)  # (BASE * 2 + 10 i) / 2
    assert count.threads == 1 and count.valgrind_version == "valgrind-3.19.0"
    import torch

    assert count.cpu_capability == count.cpu_capability_native == torch.backends.cpu.get_cpu_capability()
    info = count.extra_info()
    assert info["instructions_per_call"] == BASE + 5
    assert (info["instructions_min"], info["instructions_max"]) == (BASE, BASE + 10)
    assert info["instructions_spread"] == pytest.approx(10 / (BASE + 5))
    assert info["instructions_repeats"] == [BASE, BASE + 5, BASE + 10]


def test_setup_rebuilds_a_model_registered_elsewhere(tmp_path, monkeypatch):
    """A model registered outside fer_bench (a calibration variant) is imported by the Valgrind process too."""
    import sys

    import torch

    from fer_bench.models import _registry

    # the variants go into copies of the registry, and the module is forgotten after the test: the rest of the
    # suite sees the documented models only
    monkeypatch.setattr(_registry, "_entrypoints", dict(_registry._entrypoints))
    monkeypatch.setattr(_registry, "_infos", dict(_registry._infos))
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    monkeypatch.setitem(sys.modules, "calibration_models", None)  # recorded as absent: gone after the test
    del sys.modules["calibration_models"]
    import calibration_models  # noqa: F401  (registers the variants)

    assert ins.model_modules("fer_cnn_2block_plus2pct") == ["calibration_models"]
    assert ins.model_modules("fer_cnn_2block") == []
    setup = ins.create_setup({"model": "fer_cnn_2block_plus2pct", "batch_size": 2}, "forward",
                             side_file=str(tmp_path / "side"), modules=["calibration_models"],
                             path=[str(REPO / "scripts")])
    scope: dict = {}
    exec(compile(setup, "<setup>", "exec"), scope)
    assert isinstance(scope["step"].model.features[-1], torch.nn.GELU)
    under, native = ins.read_side_file(str(tmp_path / "side"))
    assert under is None and native["threads"] >= 1


def test_record_says_why_a_case_is_not_counted():
    gpu = RunConfig(model="fer_cnn_2block", device="cuda")
    assert "GPU" in ins.record_instructions(gpu, "forward", collect=None)["instructions_reason"]
    count = ins.InstructionCount(per_call=(1.0, 2.0, 3.0), number=1, threads=1, valgrind_version="v")
    ticks = iter([10.0, 70.5])
    out = ins.record_instructions(RunConfig(model="fer_cnn_2block"), "forward", collect=lambda c, p: count,
                                  clock=lambda: next(ticks))
    assert out["instructions_per_call"] == 2.0 and out["instructions_wall_s"] == 60.5


def test_a_valgrind_failure_is_one_line():
    class Broken(FakeTimer):
        def collect_callgrind(self, number, *, repeats, collect_baseline):
            raise OSError("Failed to collect callgrind profile:\nInterpreter mismatch:\n  a\n    vs.\n  b")

    with pytest.raises(FerBenchError, match="Valgrind failed: Failed to collect callgrind profile: | Interpreter"):
        ins.count_instructions("pass", "", timer_factory=Broken)


def test_stored_case_times_leave_the_valgrind_process_out():
    from fer_bench.plugin.presets import stored_case_seconds

    assert stored_case_seconds({"case_wall_s": 200.0, "case_shared_s": 5.0, "instructions_wall_s": 180.0}, {}) == 15.0


@pytest.mark.slow
def test_a_real_callgrind_collection():
    """One real collection, of a tiny tensor statement (about a minute: importing torch under Valgrind): the repeats
    agree to a fraction of a percent, and Valgrind's CPU is no AVX-512 one."""
    if ins.instructions_unavailable():
        pytest.skip(ins.instructions_unavailable())
    fd_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"fer-bench-side-{os.getpid()}.jsonl"
    setup = "\n".join(["import json, os, torch", "a = torch.ones(64, 64)",
                       f"with open({str(fd_path)!r}, 'a') as f:",
                       "    f.write(json.dumps({'valgrind': 'vgpreload' in os.environ.get('LD_PRELOAD', ''),",
                       "                        'capability': torch.backends.cpu.get_cpu_capability()}) + '\\n')"])
    try:
        counts = ins.count_instructions("torch.mm(a, a)", setup, repeats=3, number=10)
        under, native = ins.read_side_file(str(fd_path))
    finally:
        fd_path.unlink(missing_ok=True)
    assert len(counts) == 3 and min(counts) > 1000
    assert (max(counts) - min(counts)) / min(counts) < 0.01
    assert under is not None and under["capability"] in ("DEFAULT", "AVX2")
    assert "AVX512" not in under["capability"]


# ------------------------------------------------------------------------------------------- the plugin


@pytest.mark.slow
def test_without_valgrind_the_counted_cases_skip_with_one_line(tmp_path):
    """A PATH without valgrind: the ci preset's counted cases skip naming what to install; the reference step, which
    is never counted, still runs."""
    env = {**os.environ, "PATH": str(tmp_path), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "pytest", "benchmarks/test_step.py", "--fer-preset", "ci",
                           "--fer-instructions", "--benchmark-disable", "-p", "no:cacheprovider", "-q", "-rs",
                           "--fer-round-time", "0.05"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    skips = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skips) == 2 and all(line.endswith(ins.VALGRIND_MISSING) for line in skips)
    assert "1 passed, 2 skipped" in done.stdout


# ------------------------------------------------------------------------------------------- the gate


def _row() -> GateRow:
    return GateRow(case="c", group=None, status="unchanged", verdict="")


@pytest.mark.parametrize("factor, status", [(1.0, "unchanged"), (1.004, "unchanged"), (1.02, "regression"),
                                            (1.05, "regression"), (0.97, "improvement")])
def test_instruction_verdicts_at_the_counts_noise(factor, status):
    """Repeats 0.01% apart, one run a side: the floor of process-to-process noise decides the interval."""
    base = [[BASE, BASE * 1.0001, BASE * 0.9999]]
    row = judge_instructions(_row(), base, [[v * factor for v in base[0]]], threshold=0.01, alpha=0.01, n_judged=3)
    assert row.status == status, row.verdict
    assert row.ratio == pytest.approx(factor, rel=1e-6)
    assert row.mde < 0.01 and row.ci_low < factor < row.ci_high


def test_noisy_counts_are_inconclusive_not_passed():
    base = [[BASE, BASE * 1.02], [BASE * 0.99, BASE * 1.01]]
    cur = [[BASE * 1.005, BASE * 0.985], [BASE, BASE * 1.02]]
    row = judge_instructions(_row(), base, cur, threshold=0.01, alpha=0.01, n_judged=1)
    assert row.status == "inconclusive" and row.mde > 0.01 and row.runs_to_resolve > 2
    assert "hides changes below" in row.verdict


def test_a_side_without_counts_is_not_judged():
    row = judge_instructions(_row(), [], [[BASE]], threshold=0.01, alpha=0.01, n_judged=1)
    assert row.status == "unchanged" and "--fer-instructions" in row.verdict and row.ratio is None
    assert instruction_repeats({"instructions_per_call": 5.0}) == (5.0,)
    assert instruction_repeats({"instructions_repeats": [1.0, None, True, -2.0, 3.0]}) == (1.0, 3.0)


def _counted_run(path: Path, factor: float, seed: int, counted: bool = True) -> Path:
    cases = []
    for i, model in enumerate(("fer_cnn_2block", "fer_cnn_3block")):
        extra = {}
        if counted:
            repeats = [BASE * (1 + i) * factor * (1 + 1e-4 * j) for j in range(5)]
            extra = {"instructions_repeats": repeats, "instructions_per_call": repeats[2]}
        cases.append(create_benchmark("test_train_step", {"model": model, "device": "cpu", "batch_size": 16,
                                                          "precision": "fp32"},
                                      create_rounds(0.02 * factor, sigma=0.15, seed=seed + i), extra_info=extra))
    return write_run(path, create_run(cases, MACHINE))


def test_gate_cli_judges_instructions_with_its_own_threshold(tmp_path, capsys):
    base = _counted_run(tmp_path / "base.json", 1.0, 0)
    same = _counted_run(tmp_path / "same.json", 1.0, 1)
    slower = _counted_run(tmp_path / "slow.json", 1.02, 2)
    assert main(["gate", str(base), str(same), "--metric", "instructions"]) == 0
    out = capsys.readouterr().out
    assert "metric instructions, threshold 1.0%" in out and "269.89 M" in out
    assert main(["gate", str(base), str(slower), "--metric", "instructions"]) == 1
    assert "+2.00% instructions, above the 1% threshold" in capsys.readouterr().out
    assert main(["gate", str(base), str(slower), "--metric", "instructions", "--threshold", "5%"]) == 0
    capsys.readouterr()
    uncounted = _counted_run(tmp_path / "plain.json", 1.0, 3, counted=False)
    assert main(["gate", str(base), str(uncounted), "--metric", "instructions"]) == 3
    assert "count them with --fer-instructions" in capsys.readouterr().err
    assert resolve_threshold(None, "time") == 0.05 and resolve_threshold(0.02, "instructions") == 0.02


def test_paired_instruction_gate_pools_the_pairs(tmp_path):
    runs = {side: [_counted_run(tmp_path / side / f"{i}.json", f, i) for i in range(2)]
            for side, f in (("a", 1.0), ("b", 1.05))}
    report = evaluate_gate(load_results(runs["a"]), load_results(runs["b"]), metric="instructions",
                           threshold=0.01, paired=True)
    assert report.exit_status == 1 and all(r.status == "regression" for r in report.rows)
    assert any("pooled per side" in n for n in report.notes)
    with pytest.raises(FerBenchError, match="--scope suite"):
        evaluate_gate(load_results(runs["a"]), load_results(runs["b"]), metric="instructions", paired=True,
                      scope="suite")


def test_ab_counts_with_the_ci_preset_by_default():
    from argparse import Namespace

    from fer_bench.ab import INSTRUCTION_PAIRS, resolve_ab_args

    args = Namespace(metric="instructions", threshold=None, pairs=None, pytest_args=[])
    assert resolve_ab_args(args) == ["--fer-preset", "ci", "--fer-instructions"]
    assert (args.threshold, args.pairs) == (0.01, INSTRUCTION_PAIRS)
    args = Namespace(metric="instructions", threshold=0.02, pairs=3, pytest_args=["--fer-preset", "quick"])
    assert resolve_ab_args(args) == ["--fer-preset", "quick", "--fer-instructions"]
    assert (args.threshold, args.pairs) == (0.02, 3)
    args = Namespace(metric="time", threshold=None, pairs=None, pytest_args=[])
    assert "--fer-instructions" not in resolve_ab_args(args) and (args.threshold, args.pairs) == (0.05, 10)


# ------------------------------------------------------------------------------------------- calibration


def test_calibration_table_counts_jobs_with_exact_intervals(tmp_path):
    def verdict(outcome, ratio, threshold):
        return {"outcome": outcome, "ratio": ratio, "threshold": threshold}

    job = {"machine": "epyc-2c__cpu", "seconds": 1200, "loadavg_1m": [1.0, 3.0],
           "gates": {"unchanged": {"instructions": verdict("pass", 1.0001, 0.01),
                                   "time": verdict("inconclusive", 1.1, 0.05)},
                     "2pct": {"instructions": verdict("fail", 1.021, 0.01), "time": verdict("pass", 1.01, 0.05)}}}
    path = tmp_path / "instructions.jsonl"
    path.write_text(json.dumps(job) + "\n" + json.dumps(job) + "\n")
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "instruction_calibration.py"), "table", str(path)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    row = next(line for line in lines if "| about +2% | instructions" in line)
    assert "| 2 | 0/2 [0%, 84%] | 2/2 [16%, 100%] | 0/2 [0%, 84%] | +2.10% (+2.10% to +2.10%) |" in row
    assert any("| unchanged | wall time (5%)" in line and "2/2 [16%, 100%] | +10.00%" in line for line in lines)
