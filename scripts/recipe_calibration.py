#!/usr/bin/env python3
"""Calibrate the two documented CI recipes per job: how often unchanged code turns a job red, how often a known
slowdown gets through.

    .venv/bin/python scripts/recipe_calibration.py run --out docs/calibration/<slug>/recipes.jsonl --minutes 60
    .venv/bin/python scripts/recipe_calibration.py table docs/calibration/*/recipes.jsonl

``run`` makes CI jobs one after another, exactly as the recipes are written, cycling through four kinds:

* ``stored``: the stored-baseline recipe of docs/ci/github-actions.yml: three quick-preset processes
  (``pytest benchmarks --fer-preset quick --fer-budget none --benchmark-json current/runN.json``), then
  ``fer-bench gate baseline/ current/ --threshold 5% --alpha 0.01`` against the six newest stored runs of
  unchanged code. After an unchanged job its three runs join the baseline (the workflow keeps main's runs);
  the first job's baseline is made first (six runs, not counted as a job).
* ``ab``: the interleaved recipe, ``fer-bench ab --baseline HEAD --pairs N`` (the baseline built from the same
  commit in a git worktree, run alternately with the checkout, then gated pair by pair).

each in two conditions: ``aa`` (unchanged code on both sides) and ``slow`` (``FER_BENCH_INJECT_SLOWDOWN``: every
timed call of the current side does real extra CPU work worth the slowdown, 10% by default). A job's outcome is
its exit status: 0 pass, 1 regression, 4 inconclusive (red unless --allow-inconclusive), 2 or 3 an error.

Each job is one JSON line appended to --out (flushed as it ends), so an interrupted calibration resumes where it
stopped: the next job is the next kind in the cycle. ``table`` turns one or more such files into the README's
per-job table with exact (Clopper-Pearson) 95% binomial intervals from scipy.stats.binomtest.

A job line may carry ``"load"``: a note, added to the line afterwards, that other work shared the machine during
that job (say, the test suite); the table keeps such jobs in a row of their own, so they neither hide nor count as
the quiet runner's.

The checkout must be clean (the ab baseline is HEAD: uncommitted changes would make an A/A job an A/B one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("stored:aa", "stored:slow", "ab:aa", "ab:slow")
BASELINE_RUNS = 6  # the workflow keeps the six newest runs of main (two pushes of three)
CURRENT_RUNS = 3
OUTCOMES = {0: "pass", 1: "regression", 4: "inconclusive"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_jobs(paths) -> list[dict]:
    """The job lines of one or more calibration files (blank lines skipped)."""
    jobs = []
    for path in paths:
        for n, line in enumerate(Path(path).read_text().splitlines(), 1):
            if line.strip():
                try:
                    jobs.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise SystemExit(f"recipe_calibration: error: {path}:{n}: not a JSON line ({exc.msg})")
    return jobs


def next_kind(jobs: list[dict], kinds: tuple[str, ...] = KINDS) -> str:
    """The next kind in the cycle of ``kinds``, counting the file's jobs of those kinds."""
    done = sum(1 for job in jobs if f"{job['recipe']}:{job['condition']}" in kinds)
    return kinds[done % len(kinds)]


def recipe_label(job: dict) -> str:
    """The recipe as the table names it: the ab recipe with its pairs, interleaving and scope (jobs made before
    ``--interleave`` and ``--scope`` existed ran whole runs and gated every case)."""
    if job["recipe"] == "stored":
        return "stored baseline (6 runs) vs 3 runs"
    return (f"`fer-bench ab`, {job.get('pairs')} pairs, interleave {job.get('interleave', 'runs')}, scope "
            f"{job.get('scope', 'cases')}")


def outcome(exit_status: int) -> str:
    return OUTCOMES.get(exit_status, "error")


# ------------------------------------------------------------------------------------------------ the table
def binomial_ci(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    from scipy import stats

    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def _rate(k: int, n: int) -> str:
    low, high = binomial_ci(k, n)
    return f"{k}/{n} = {k / n:.0%} [{low:.0%}, {high:.0%}]"


def summarize(jobs: list[dict]) -> list[dict]:
    """Per machine, recipe and condition: the jobs and how many ended in each outcome."""
    cells: dict[tuple, dict] = {}
    for job in jobs:
        key = (job["machine"], recipe_label(job), job["condition"], job.get("load"))
        cell = cells.setdefault(key, {"machine": job["machine"], "recipe": key[1], "load": job.get("load"),
                                      "condition": job["condition"], "slowdown": job.get("slowdown"), "jobs": 0,
                                      "pass": 0, "regression": 0, "inconclusive": 0, "error": 0, "minutes": 0.0})
        cell["jobs"] += 1
        cell[outcome(job["exit_status"])] += 1
        cell["minutes"] += job.get("seconds", 0.0) / 60
    return list(cells.values())


def format_native_table(jobs: list[dict], threshold: float = 0.05) -> str:
    """pytest-benchmark's own gate on the stored recipe's jobs: ``--benchmark-compare`` against the newest stored
    run and ``--benchmark-compare-fail=median:5%``, one current run (the first of the job's three)."""
    lines = ["| machine | native gate | code | jobs | red (a median over +5%) | green |", "| --- | --- | --- | --- | --- | --- |"]
    cells: dict[tuple, list[bool]] = {}
    for job in jobs:
        medians = job.get("medians")
        if job["recipe"] != "stored" or not medians:
            continue
        key = (job["machine"], job["condition"], job.get("slowdown"))
        cells.setdefault(key, []).append(native_gate_fails(medians["latest_baseline"], medians["current_run1"],
                                                           threshold))
    for (machine, condition, slowdown), fails in cells.items():
        n, k = len(fails), sum(fails)
        code = "unchanged" if condition == "aa" else f"{slowdown:.0%} slower"
        lines.append(f"| {machine} | `--benchmark-compare-fail=median:{threshold:.0%}`, 1 run vs the newest stored "
                     f"| {code} | {n} | {_rate(k, n)} | {_rate(n - k, n)} |")
    return "\n".join(lines)


def format_table(jobs: list[dict]) -> str:
    """The README's table: per machine, recipe and condition, the share of jobs per outcome with its 95% CI."""
    lines = ["| machine | recipe | code | jobs | red: regression (exit 1) | red: inconclusive (exit 4) "
             "| green (exit 0) | minutes a job |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for cell in summarize(jobs):
        n = cell["jobs"]
        recipe = cell["recipe"]
        code = "unchanged" if cell["condition"] == "aa" else f"{cell['slowdown']:.0%} slower"
        if cell["load"]:  # a job that ran beside other work, marked so in its line ("load")
            code += f", {cell['load']}"
        errors = f" ({cell['error']} errors)" if cell["error"] else ""
        lines.append(f"| {cell['machine']} | {recipe} | {code} | {n}{errors} | {_rate(cell['regression'], n)} "
                     f"| {_rate(cell['inconclusive'], n)} | {_rate(cell['pass'], n)} "
                     f"| {cell['minutes'] / n:.1f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ running
def _python() -> str:
    return sys.executable


def _fer_bench() -> list[str]:
    return [_python(), "-m", "fer_bench.cli"]


def _env(slowdown: float | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "FER_BENCH_INJECT_SLOWDOWN"}
    if slowdown:
        env["FER_BENCH_INJECT_SLOWDOWN"] = str(slowdown)
    return env


def _quick_run(path: Path, log: Path, slowdown: float | None, pytest_args: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [_python(), "-m", "pytest", "benchmarks", "-p", "no:cacheprovider", "--fer-preset", "quick",
           "--fer-budget", "none", "--benchmark-json", str(path), *pytest_args]
    with open(log, "w") as out:
        code = subprocess.run(cmd, cwd=ROOT, env=_env(slowdown), stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} exited {code}: see {log}")


def _gate_json(cmd: list[str]) -> tuple[int, dict]:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=_env(None))
    try:
        report = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        report = {}
    return proc.returncode, report


def _report_fields(report: dict) -> dict:
    rows = report.get("rows") or []
    mdes = [r["mde"] for r in rows if r.get("mde") is not None]
    return {"cases": len(rows), "regressions": report.get("n_regressions"),
            "inconclusive_cases": report.get("n_inconclusive"), "noise": report.get("run_noise"),
            "max_mde": max(mdes) if mdes else None,
            "ratios": {r["case"]: round(r["ratio"], 4) for r in rows if r.get("ratio") is not None}}


def run_medians(path: Path) -> dict[str, float]:
    """Per case name, the median seconds of one pytest-benchmark JSON (for the native gate's rule, offline)."""
    doc = json.loads(Path(path).read_text())
    return {b["name"]: b["stats"]["median"] for b in doc.get("benchmarks", []) if b.get("stats")}


def native_gate_fails(baseline: dict[str, float], current: dict[str, float], threshold: float) -> bool:
    """pytest-benchmark's ``--benchmark-compare-fail=median:T%`` against one stored run: a case whose median grew
    by more than T% fails the run (cases missing on either side are not compared, as there)."""
    return any(current[name] > baseline[name] * (1 + threshold) for name in current if name in baseline)


def _stored_baseline(work: Path) -> list[Path]:
    return sorted((work / "baseline").glob("*.json"))


def _keep_newest(work: Path) -> None:
    runs = _stored_baseline(work)
    for old in runs[:-BASELINE_RUNS]:
        old.unlink()
        for sidecar in (old.with_suffix(".fingerprint"), old.with_name(old.stem + ".fingerprint.json")):
            sidecar.unlink(missing_ok=True)


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")


def seed_baseline(work: Path, pytest_args: list[str]) -> None:
    """Unchanged runs until the baseline holds BASELINE_RUNS (the stored recipe's starting point)."""
    (work / "logs").mkdir(parents=True, exist_ok=True)
    while len(_stored_baseline(work)) < BASELINE_RUNS:
        name = f"{_stamp()}_seed"
        print(f"recipe_calibration: baseline run {len(_stored_baseline(work)) + 1}/{BASELINE_RUNS}", flush=True)
        _quick_run(work / "baseline" / f"{name}.json", work / "logs" / f"{name}.log", None, pytest_args)


def run_stored(work: Path, condition: str, slowdown: float, threshold: str, pytest_args: list[str]) -> dict:
    seed_baseline(work, pytest_args)
    job = work / f"job-{_stamp()}"
    for i in range(1, CURRENT_RUNS + 1):
        _quick_run(job / "current" / f"run{i}.json", job / f"run{i}.log", slowdown if condition == "slow" else None,
                   pytest_args)
    status, report = _gate_json(_fer_bench() + ["gate", str(work / "baseline"), str(job / "current"),
                                                 "--threshold", threshold, "--alpha", "0.01", "--format", "json"])
    # the native gate's view of the same job: the first current run against the newest stored run
    native = {"latest_baseline": run_medians(_stored_baseline(work)[-1]),
              "current_run1": run_medians(job / "current" / "run1.json")}
    if condition == "aa":  # main's runs join the baseline, as the workflow keeps them
        for i in range(1, CURRENT_RUNS + 1):
            for suffix in (".json", ".fingerprint"):
                src = job / "current" / f"run{i}{suffix}"
                if src.exists():
                    shutil.copy2(src, work / "baseline" / f"{job.name}_{i}{suffix}")
        _keep_newest(work)
    shutil.rmtree(job, ignore_errors=True)
    return {"exit_status": status, **_report_fields(report), "medians": native}


def run_ab(work: Path, condition: str, slowdown: float, threshold: str, pairs: int, pytest_args: list[str],
           scope: str = "suite") -> dict:
    out = work / "ab"
    shutil.rmtree(out / "baseline", ignore_errors=True)
    shutil.rmtree(out / "current", ignore_errors=True)
    cmd = _fer_bench() + ["ab", "--baseline", "HEAD", "--pairs", str(pairs), "--out", str(out),
                          "--threshold", threshold, "--scope", scope, "--keep-worktree"]
    if condition == "slow":
        cmd += ["--inject-slowdown", str(slowdown)]
    if pytest_args:  # else ab's own default, --fer-preset quick --fer-budget none
        cmd += ["--", "--fer-preset", "quick", "--fer-budget", "none", *pytest_args]
    log = work / "logs" / f"ab-{_stamp()}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as stream:
        status = subprocess.run(cmd, cwd=ROOT, env=_env(None), stdout=stream, stderr=subprocess.STDOUT).returncode
    fields = {}
    if (out / "baseline").is_dir() and (out / "current").is_dir():
        _, report = _gate_json(_fer_bench() + ["gate", "--paired", str(out / "baseline"), str(out / "current"),
                                               "--threshold", threshold, "--scope", scope, "--format", "json"])
        fields = _report_fields(report)
        suite = report.get("suite") or {}
        fields["suite"] = {k: suite.get(k) for k in ("ratio", "ci_low", "ci_high", "mde", "p_value", "status")}
        fields["suite"]["pair_log_ratios"] = _suite_pairs(out)
    try:
        interleave = json.loads((out / "ab.json").read_text()).get("interleave", "runs")
    except (OSError, ValueError):
        interleave = None
    return {"exit_status": status, "pairs": pairs, "interleave": interleave, "scope": scope, **fields}


def _suite_pairs(out: Path) -> list[float]:
    """Each pair's suite log ratio (the mean over the cases both runs of every pair hold), for the record."""
    sys.path.insert(0, str(ROOT))
    from fer_bench.results.gate import suite_log_ratios
    from fer_bench.results.runs import load_results

    base, cur = load_results([out / "baseline"]), load_results([out / "current"])
    keys = [c.key for c in cur[0].cases if all(any(k.key == c.key for k in r.cases) for r in base + cur)]
    return [round(float(v), 5) for v in suite_log_ratios(base, cur, keys)]


def _machine_slug() -> str:
    out = subprocess.run(_fer_bench() + ["fingerprint", "--slug"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def _head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def _dirty() -> bool:
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                         text=True).stdout
    return bool(out.strip())


def cmd_run(args: argparse.Namespace) -> int:
    if _dirty() and not args.allow_dirty:
        print("recipe_calibration: error: the checkout has uncommitted changes; the ab recipe's baseline is HEAD, so "
              "an A/A job would compare other code (commit first, or --allow-dirty)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    jobs = read_jobs([out]) if out.exists() else []
    work = Path(args.work)
    machine, head = _machine_slug(), _head()
    deadline = time.monotonic() + args.minutes * 60
    done = 0
    while time.monotonic() < deadline and (args.jobs is None or done < args.jobs):
        kind = next_kind(jobs, tuple(args.kinds))
        recipe, condition = kind.split(":")
        started, t0 = _now(), time.monotonic()
        print(f"recipe_calibration: job {len(jobs) + 1}: {kind}", flush=True)
        try:
            if recipe == "stored":
                fields = run_stored(work, condition, args.slowdown, args.threshold, args.pytest_args)
            else:
                fields = run_ab(work, condition, args.slowdown, args.threshold, args.pairs, args.pytest_args,
                                args.scope)
        except RuntimeError as exc:
            print(f"recipe_calibration: error: {exc}", file=sys.stderr)
            return 1
        job = {"machine": machine, "commit": head, "recipe": recipe, "condition": condition,
               "slowdown": args.slowdown, "threshold": args.threshold, "started": started,
               "seconds": round(time.monotonic() - t0, 1), **fields}
        with open(out, "a") as stream:  # one line a job, flushed: an interrupted calibration resumes here
            stream.write(json.dumps(job, sort_keys=True) + "\n")
        jobs.append(job)
        done += 1
        print(f"recipe_calibration: job {len(jobs)}: {kind} -> exit {job['exit_status']} "
              f"({outcome(job['exit_status'])}) in {job['seconds']:.0f} s", flush=True)
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    jobs = read_jobs(args.files)
    if not jobs:
        print("recipe_calibration: error: no job in " + ", ".join(args.files), file=sys.stderr)
        return 2
    print(format_table(jobs))
    if any(job.get("medians") for job in jobs):
        print()
        print(format_native_table(jobs))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="make calibration jobs, appending a JSON line each to --out")
    p.add_argument("--out", required=True, help="the job file (JSON lines); resumed when it exists")
    p.add_argument("--minutes", type=float, default=60.0, help="start no job after this. Default: %(default)s")
    p.add_argument("--jobs", type=int, default=None, help="at most this many jobs in this call")
    p.add_argument("--pairs", type=int, default=10, help="pairs of the ab recipe. Default: %(default)s")
    p.add_argument("--scope", choices=("cases", "suite"), default="suite",
                   help="the ab recipe's --scope. Default: %(default)s")
    p.add_argument("--kinds", type=lambda t: t.split(","), default=list(KINDS),
                   help=f"the kinds to cycle through, comma list. Default: {','.join(KINDS)}")
    p.add_argument("--slowdown", type=float, default=0.10, help="the injected slowdown. Default: %(default)s")
    p.add_argument("--threshold", default="5%", help="the gate's threshold. Default: %(default)s")
    p.add_argument("--work", default=str(ROOT / ".fer-bench-calibration"),
                   help="runs and logs (the stored recipe's baseline lives here between calls)")
    p.add_argument("--allow-dirty", action="store_true", help="run with uncommitted changes")
    p.add_argument("pytest_args", nargs="*", help="after --: more pytest arguments for every run")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("table", help="the per-job table of one or more job files")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_table)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
