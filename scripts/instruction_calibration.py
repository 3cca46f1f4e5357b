#!/usr/bin/env python3
"""Calibrate the instruction gate beside the wall-time gate, job by job, with real code changes.

    nice -n 10 .venv/bin/python scripts/instruction_calibration.py run --jobs 4 \\
        --out docs/calibration/<slug>/instructions.jsonl
    .venv/bin/python scripts/instruction_calibration.py table docs/calibration/*/instructions.jsonl

A job is what a CI job on this runner does with ``--fer-instructions``: a baseline run of unchanged code, then a
current run, each one pytest process (``pytest benchmarks/test_step.py --fer-preset ci -k "test_train_step and not
reference" --fer-models fer_cnn_2block_cal --fer-instructions``): the training step of fer_cnn_2block at batch 16
in fp32, timed, then counted under Valgrind (5 repeats in one Valgrind process). Each job makes one baseline and
five current runs: the unchanged code (twice), and the code with a real change of about 1%, 2% and 5% more work
(extra ReLUs, a GELU, a 1x1 convolution in the model, scripts/calibration_models.py, chosen by FER_BENCH_CAL_EXTRA:
the case keeps its name, as a commit that changes the model would). Each current run is gated against the job's
baseline run twice, as a CI job would: ``fer-bench gate --metric instructions`` (threshold 1%) and ``fer-bench
gate`` on wall time (threshold 5%, the gate's defaults). The outcomes: pass (exit 0), fail (exit 1),
inconclusive (exit 4).

Each job is one JSON line appended to --out as it ends (its raw data: every repeat's count, every timed round, the
load average, the verdicts), so an interrupted calibration keeps what it made. ``table`` prints, per change and
gate, how many jobs passed, failed and were inconclusive, with exact (Clopper-Pearson) 95% binomial intervals, and
the measured size of each change (its median instruction and time ratios over the jobs).

--parallel 2 runs the six runs two at a time, in the order baseline and unchanged, 1% and 2%, 5% and unchanged
again (single-threaded: OMP_NUM_THREADS=1 in every run), so that every run's timed rounds have a twin process
beside them, baseline included, and a job takes half the minutes on two cores. Each job records which way it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path.insert(0, str(ROOT))

from fer_bench._atomic import write_text_atomic  # noqa: E402
from fer_bench.results.gate import evaluate_gate  # noqa: E402 - torch-free; the runs are subprocesses
from fer_bench.results.gate.verdict import resolve_threshold  # noqa: E402
from fer_bench.results.runs import load_result  # noqa: E402

CHANGES = ("unchanged", "1pct", "2pct", "5pct", "unchanged2")
#: The runs in the order they are made (two at a time with --parallel 2): "baseline" is unchanged code too.
ORDER = ("baseline", "unchanged", "1pct", "2pct", "5pct", "unchanged2")
GATES = ("instructions", "time")
OUTCOMES = {0: "pass", 1: "fail", 4: "inconclusive"}
MODEL = "fer_cnn_2block_cal"
SELECT = "test_train_step and not reference"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def pytest_command(json_path: Path) -> list[str]:
    return [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "test_step.py"), "-p", "calibration_models",
            "-p", "no:cacheprovider", "-q", "--fer-preset", "ci", "--fer-models", MODEL, "-k", SELECT,
            "--fer-instructions", "--benchmark-json", str(json_path)]


def run_env(change: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(SCRIPTS)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["OMP_NUM_THREADS"] = "1"
    env.pop("FER_BENCH_CAL_EXTRA", None)
    if change.endswith("pct"):
        env["FER_BENCH_CAL_EXTRA"] = change
    return env


def start_run(change: str, folder: Path) -> tuple[subprocess.Popen, Path, float]:
    json_path = folder / f"{change}.json"
    log = open(folder / f"{change}.log", "w")
    proc = subprocess.Popen(pytest_command(json_path), cwd=ROOT, env=run_env(change), stdout=log,
                            stderr=subprocess.STDOUT)
    return proc, json_path, time.monotonic()


def read_case(json_path: Path) -> dict:
    """The counted case's raw data: its counts per repeat, its timed rounds, how it was counted."""
    run = load_result(json_path)
    cases = [c for c in run.cases if c.extra_info.get("instructions_repeats")]
    if len(cases) != 1:
        raise SystemExit(f"instruction_calibration: error: {json_path}: {len(cases)} counted cases, expected 1")
    info = cases[0].extra_info
    return {"case": cases[0].name, "machine": run.machine.slug, "counts": info["instructions_repeats"],
            "rounds_s": [float(v) for v in cases[0].data], "step_time_ms": info.get("step_time_ms"),
            "valgrind_version": info.get("valgrind_version"), "threads": info.get("instructions_threads"),
            "cpu_capability": info.get("instructions_cpu_capability"),
            "cpu_capability_native": info.get("cpu_capability_native"),
            "instructions_wall_s": info.get("instructions_wall_s")}


def gate(base: Path, current: Path, metric: str) -> dict:
    report = evaluate_gate([load_result(base)], [load_result(current)], metric=metric,
                           threshold=resolve_threshold(None, metric), alpha=0.01)
    row = next(r for r in report.rows if r.tested or r.ratio is not None)
    return {"exit_status": report.exit_status, "outcome": OUTCOMES.get(report.exit_status, "error"),
            "threshold": report.threshold, "ratio": row.ratio, "ci": [row.ci_low, row.ci_high], "mde": row.mde,
            "verdict": row.verdict}


def _wait(procs: dict) -> dict[str, float]:
    seconds = {}
    for change, (proc, json_path, started) in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"instruction_calibration: error: the {change} run failed (exit {proc.returncode}); "
                             f"its log: {json_path.with_suffix('.log')}")
        seconds[change] = time.monotonic() - started
    return seconds


def run_job(folder: Path, parallel: int) -> dict:
    started, load_start = time.monotonic(), os.getloadavg()
    job: dict = {"started": _now(), "parallel": parallel, "runs": {}, "gates": {}}
    seconds: dict[str, float] = {}
    pending = list(ORDER)
    while pending:
        batch, pending = pending[:parallel], pending[parallel:]
        seconds.update(_wait({c: start_run(c, folder) for c in batch}))
    base = folder / "baseline.json"
    for change in ORDER:
        job["runs"][change] = read_case(folder / f"{change}.json")
        if change != "baseline":
            job["gates"][change] = {m: gate(base, folder / f"{change}.json", m) for m in GATES}
    job["machine"] = job["runs"]["baseline"]["machine"]
    job["seconds"] = round(time.monotonic() - started, 1)
    job["run_seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    job["loadavg_1m"] = [round(load_start[0], 2), round(os.getloadavg()[0], 2)]
    return job


def cmd_run(args) -> int:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for n in range(args.jobs):
        with tempfile.TemporaryDirectory(prefix="instruction-calibration-") as tmp:
            job = run_job(Path(tmp), args.parallel)
        if args.note:
            job["note"] = args.note
        text = out.read_text() if out.exists() else ""
        write_text_atomic(out, text + json.dumps(job) + "\n")
        summary = ", ".join(f"{c}: {g['instructions']['outcome']}/{g['time']['outcome']}"
                            for c, g in job["gates"].items())
        print(f"job {n + 1}/{args.jobs} ({job['seconds'] / 60:.1f} min): instructions/time {summary}", flush=True)
    return 0


# ------------------------------------------------------------------------------------------------ the table
def binomial_ci(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    from scipy import stats

    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def _rate(k: int, n: int) -> str:
    low, high = binomial_ci(k, n)
    return f"{k}/{n} [{low:.0%}, {high:.0%}]"


def read_jobs(paths) -> list[dict]:
    jobs = []
    for path in paths:
        for n, line in enumerate(Path(path).read_text().splitlines(), 1):
            if line.strip():
                try:
                    jobs.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise SystemExit(f"instruction_calibration: error: {path}:{n}: not a JSON line ({exc.msg})")
    return jobs


LABELS = {"unchanged": "unchanged", "unchanged2": "unchanged (2nd run)", "1pct": "about +1%",
          "2pct": "about +2%", "5pct": "about +5%"}


def describe_layout(job: dict) -> str:
    """How a job's runs shared the machine: one at a time, or two at a time (the first jobs' baseline ran alone)."""
    if job.get("parallel", 1) == 1:
        return ""
    return ", 2 runs at a time" + ("" if "unchanged2" in job.get("runs", {}) else " (baseline alone)")


def format_table(jobs: list[dict]) -> str:
    """Per machine, change and gate: jobs passed, failed, inconclusive (95% exact intervals), and the measured
    change (median over the jobs of the ratio that gate saw)."""
    lines = ["| machine | change | gate (threshold) | jobs | pass (exit 0) | fail (exit 1) | inconclusive (exit 4) "
             "| measured change (median, range) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for machine, layout in sorted({(job["machine"], describe_layout(job)) for job in jobs}):
        mine = [job for job in jobs if job["machine"] == machine and describe_layout(job) == layout]
        for change in CHANGES:
            for metric in GATES:
                verdicts = [job["gates"][change][metric] for job in mine if change in job.get("gates", {})]
                if not verdicts:
                    continue
                n = len(verdicts)
                counts = {o: sum(v["outcome"] == o for v in verdicts) for o in ("pass", "fail", "inconclusive")}
                ratios = [v["ratio"] for v in verdicts if v["ratio"] is not None]
                size = (f"{statistics.median(ratios) - 1:+.2%} ({min(ratios) - 1:+.2%} to {max(ratios) - 1:+.2%})"
                        if ratios else "-")
                what = "instructions" if metric == "instructions" else "wall time"
                threshold = verdicts[0]["threshold"]
                lines.append(f"| {machine}{layout} | {LABELS[change]} | {what} ({threshold:.0%}) | {n} | "
                             f"{_rate(counts['pass'], n)} | {_rate(counts['fail'], n)} | "
                             f"{_rate(counts['inconclusive'], n)} | {size} |")
    minutes = [job["seconds"] / 60 for job in jobs]
    lines.append("")
    lines.append(f"({len(jobs)} jobs, {statistics.median(minutes):.0f} minutes a job (median); 1-minute load "
                 f"average at the jobs' starts and ends {min(min(j['loadavg_1m']) for j in jobs):.1f} to "
                 f"{max(max(j['loadavg_1m']) for j in jobs):.1f})")
    return "\n".join(lines)


def cmd_table(args) -> int:
    jobs = read_jobs(args.files)
    if not jobs:
        raise SystemExit("instruction_calibration: error: no job in " + ", ".join(args.files))
    print(format_table(jobs))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="make jobs, appending one JSON line each to --out")
    run.add_argument("--out", required=True, help="the JSON-lines file (appended to)")
    run.add_argument("--jobs", type=int, default=1, help="jobs to make. Default: 1")
    run.add_argument("--parallel", type=int, choices=(1, 2), default=1,
                     help="current runs at a time (1 or 2). Default: 1")
    run.add_argument("--note", default=None, help="a note on the conditions, kept in each job's line")
    table = sub.add_parser("table", help="the pass/fail/inconclusive table of one or more files")
    table.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    return cmd_run(args) if args.command == "run" else cmd_table(args)


if __name__ == "__main__":
    sys.exit(main())
