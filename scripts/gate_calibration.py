#!/usr/bin/env python3
"""Measure `fer-bench gate`'s false-alarm and detection rates on this machine, with a real training workload.

A rounds-level study of the gate's statistics on a small fixed workload (30 rounds a case). What CI users run is
calibrated per job by scripts/recipe_calibration.py (both documented recipes as written); this one counts case
comparisons, and per gate call the jobs that a regression or an inconclusive case would turn red.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/gate_calibration.py --out calibration.json
    .venv/bin/python scripts/gate_calibration.py --trials 20 --rounds 30 --keep runs/ --out calibration.json
    .venv/bin/python scripts/gate_calibration.py --from-runs runs/ --out calibration.json   # re-gate stored runs

The workload is a 3-conv CNN training step (forward, backward, SGD) on 1x48x48 images, one parametrized case per
batch size, timed by pytest-benchmark itself: the script writes a benchmark module into a temporary folder and runs
`python -m pytest bench_calibration.py --benchmark-json run.json` in a subprocess per run, with
`benchmark.pedantic(rounds=R, warmup_rounds=W)`.

The injected slowdown is real work: when FER_GATE_CAL_EXTRA is set, each timed step also runs a calibrated number of
extra 64x64 matrix products worth --slowdown (10%) of that case's step time, measured once before the trials.

Runs are interleaved (A0, S0, A1, S1, ..., AK) so that drifting machine load touches both kinds alike. Then:
  * false alarms: gate(A_i -> A_{i+1}) for every i, the share of case comparisons flagged as a regression
    (also over all pairs i < j, a larger but correlated sample);
  * detection: gate(A_i -> S_i), the share of case comparisons flagged;
  * the same two figures for the CI recipe: --baseline-runs earlier runs pooled as the baseline against
    --current-runs runs pooled as the current one (sliding windows over the runs).
Each gate call is exactly what `fer-bench gate BASE CURRENT --threshold T --alpha A` decides (Holm over the cases).
A JSON summary is written atomically to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path.insert(0, str(ROOT))

from fer_bench._atomic import write_json_atomic  # noqa: E402
from fer_bench.results.gate import evaluate_gate  # noqa: E402 - gate never imports torch; this script's children do
from fer_bench.results.runs import load_result  # noqa: E402

BENCH_MODULE = '''\
"""Calibration workload of scripts/gate_calibration.py (generated)."""
import json
import os
import time

import pytest
import torch
from calibration_workload import create_step  # scripts/calibration_workload.py, on PYTHONPATH

torch.set_num_threads(int(os.environ.get("FER_GATE_CAL_THREADS", "1")))
BATCH_SIZES = json.loads(os.environ["FER_GATE_CAL_BATCH_SIZES"])
ROUNDS = int(os.environ["FER_GATE_CAL_ROUNDS"])
WARMUP = int(os.environ["FER_GATE_CAL_WARMUP"])
EXTRA = json.loads(os.environ.get("FER_GATE_CAL_EXTRA", "{}"))  # batch size -> extra matmuls per step


_A = torch.randn(64, 64)
_B = torch.randn(64, 64) / 8.0


def extra_work(n):
    """n real 64x64 matrix products: the injected slowdown."""
    a = _A
    for _ in range(n):
        a = torch.tanh(a @ _B)
    return a


def measure_calibration(repeats=25):
    """Median step time per batch size and median seconds per extra matmul."""
    out = {"step_s": {}}
    for bs in BATCH_SIZES:
        step = create_step(bs)
        for _ in range(WARMUP):
            step()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        out["step_s"][str(bs)] = sorted(times)[len(times) // 2]
    extra_work(200)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        extra_work(200)
        times.append((time.perf_counter() - t0) / 200)
    out["matmul_s"] = sorted(times)[len(times) // 2]
    return out


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_train_step(benchmark, batch_size):
    step = create_step(batch_size)
    n_extra = int(EXTRA.get(str(batch_size), 0))

    def timed():
        step()
        if n_extra:
            extra_work(n_extra)

    benchmark.group = "train_step"
    benchmark.extra_info["phase"] = "train_step"
    benchmark.extra_info["injected_matmuls"] = n_extra
    benchmark.pedantic(timed, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    benchmark.extra_info["samples_per_s"] = batch_size / benchmark.stats.stats.median
'''


def _env(args: argparse.Namespace, extra: dict | None) -> dict:
    env = dict(os.environ)
    env.update(
        FER_GATE_CAL_THREADS=str(args.threads),
        OMP_NUM_THREADS=str(args.threads),
        MKL_NUM_THREADS=str(args.threads),
        FER_GATE_CAL_BATCH_SIZES=json.dumps(args.batch_sizes),
        FER_GATE_CAL_ROUNDS=str(args.rounds),
        FER_GATE_CAL_WARMUP=str(args.warmup),
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SCRIPTS), env.get("PYTHONPATH")]))
    env.pop("FER_GATE_CAL_EXTRA", None)
    if extra:
        env["FER_GATE_CAL_EXTRA"] = json.dumps(extra)
    return env


def calibrate_extra(args: argparse.Namespace, workdir: Path) -> tuple[dict, dict]:
    """Extra matmuls per batch size worth --slowdown of the step, measured in a fresh process."""
    code = (f"from fer_bench.machine.allocator import configure_malloc; configure_malloc({args.malloc!r}); "
            "import json, bench_calibration as b; print(json.dumps(b.measure_calibration()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=_env(args, None),
                         capture_output=True, text=True, check=True)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    extra = {bs: max(1, round(args.slowdown * step / measured["matmul_s"])) for bs, step in measured["step_s"].items()}
    return extra, measured


def run_benchmarks(args: argparse.Namespace, workdir: Path, out: Path, extra: dict | None) -> Path:
    cmd = [sys.executable, "-m", "pytest", "bench_calibration.py", "-q", "-p", "no:cacheprovider",
           "-p", "fer_bench.plugin", f"--fer-malloc={args.malloc}",
           f"--benchmark-json={out}", "--benchmark-columns=median,iqr,rounds"]
    proc = subprocess.run(cmd, cwd=workdir, env=_env(args, extra), capture_output=True, text=True)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"benchmark run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return out


def measure(args: argparse.Namespace, runs_dir: Path) -> dict:
    """Interleaved normal and slowed runs into runs_dir; returns the calibration facts."""
    workdir = Path(tempfile.mkdtemp(prefix="fer_gate_cal_"))
    try:
        (workdir / "bench_calibration.py").write_text(BENCH_MODULE)
        # an own ini file keeps the repository's tox.ini out of the child pytest; the plugin comes in by -p, so
        # the runs carry fingerprints and use the suite's --fer-malloc setting
        (workdir / "pytest.ini").write_text("[pytest]\n")
        extra, measured = calibrate_extra(args, workdir)
        loads: list[float] = []
        print(f"calibrated extra work: {extra} matmuls ({measured})", flush=True)
        for i in range(args.trials + 1):
            t0 = time.perf_counter()
            run_benchmarks(args, workdir, runs_dir / f"A{i:03d}.json", None)
            if i < args.trials:
                run_benchmarks(args, workdir, runs_dir / f"S{i:03d}.json", extra)
            loads.append(os.getloadavg()[0])
            print(f"trial {i + 1}/{args.trials + 1}: {time.perf_counter() - t0:.1f} s, "
                  f"load {loads[-1]:.2f}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"extra_matmuls": extra, "calibration": measured, "load_per_trial": loads}


def _gate_counts(pairs, threshold: float, alpha: float) -> dict:
    """Per case comparison (flagged: a regression; inconclusive apart) and per gate call, i.e. per job: a job is
    red when any case regresses (exit 1) or, failing that, any is inconclusive (exit 4)."""
    flagged = inconclusive = total = 0
    jobs = {"jobs": 0, "regression": 0, "inconclusive": 0}
    ratios = []
    for bases, currents in pairs:
        report = evaluate_gate(bases, currents, threshold=threshold, alpha=alpha)
        jobs["jobs"] += 1
        jobs["regression"] += bool(report.regressions)
        jobs["inconclusive"] += bool(report.inconclusive) and not report.regressions
        for row in report.rows:
            total += 1
            flagged += row.status == "regression"
            inconclusive += row.status == "inconclusive"
            ratios.append(row.ratio)
    return {"flagged": flagged, "inconclusive": inconclusive, "comparisons": total,
            "rate": flagged / total if total else math.nan, "wilson95": _wilson(flagged, total), "ratios": ratios,
            "per_job": jobs}


def _wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    if n == 0:
        return [math.nan, math.nan]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _spread(ratios: list[float]) -> dict:
    logs = sorted(math.log(r) for r in ratios)
    n = len(logs)
    mean = sum(logs) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / max(1, n - 1))
    return {"median_ratio": math.exp(logs[n // 2]), "sd_log_ratio": sd,
            "min_ratio": math.exp(logs[0]), "max_ratio": math.exp(logs[-1])}


def gate_runs(runs_dir: Path, threshold: float, alpha: float, baseline_runs: int = 5,
              current_runs: int = 3) -> dict:
    normal = [load_result(p) for p in sorted(runs_dir.glob("A*.json"))]
    slow = [load_result(p) for p in sorted(runs_dir.glob("S*.json"))]
    if len(normal) < 2 or not slow:
        raise SystemExit(f"gate_calibration: {runs_dir} holds too few runs (A*.json, S*.json)")
    return _rates_from_runs(normal, slow, threshold, alpha, baseline_runs, current_runs)


def _rates_from_runs(normal: list, slow: list, threshold: float, alpha: float, baseline_runs: int,
                     current_runs: int = 3, all_pairs: bool = True) -> dict:
    aa = _gate_counts([([a], [b]) for a, b in zip(normal, normal[1:])], threshold, alpha)
    pairs = [([normal[i]], [normal[j]]) for i in range(len(normal)) for j in range(i + 1, len(normal))]
    aa_all = _gate_counts(pairs if all_pairs else [], threshold, alpha)
    det = _gate_counts([([a], [s]) for a, s in zip(normal, slow)], threshold, alpha)
    out = {
        "false_alarm": _public(aa) | {"ratio_spread": _spread(aa["ratios"])},
        "false_alarm_all_pairs": _public(aa_all),
        "detection": _public(det) | {"ratio_spread": _spread(det["ratios"])},
        "runs": {"normal": len(normal), "slow": len(slow)},
    }
    kb, kc = baseline_runs, current_runs
    if kb >= 1 and kc >= 1 and (kb, kc) != (1, 1) and len(normal) >= kb + kc:
        # The CI recipe: the kb runs stored before are the baseline folder, the kc runs of this job the current
        # one. Sliding windows: every window is a fair trial, neighbouring windows share runs.
        aa_p = [(normal[i - kb:i], normal[i:i + kc]) for i in range(kb, len(normal) - kc + 1)]
        det_p = [(normal[i - kb + 1:i + 1], slow[i:i + kc]) for i in range(kb - 1, len(slow) - kc + 1)]
        out["pooled"] = {"baseline_runs": kb, "current_runs": kc,
                         "false_alarm": _public(_gate_counts(aa_p, threshold, alpha)),
                         "detection": _public(_gate_counts(det_p, threshold, alpha))}
    return out


def _public(counts: dict) -> dict:
    return {k: v for k, v in counts.items() if k != "ratios"}


def create_model_runs(run_sd: float, args: argparse.Namespace, seed: int) -> tuple[list, list]:
    """Synthetic runs for --model: lognormal rounds (sd --round-sd) around a per-run level drawn with sd run_sd.

    A model, not a measurement: it shows the run-to-run noise at which the gate's targets hold.
    """
    import numpy as np

    from fer_bench.results.runs import CaseKey, CaseResult, Machine, RunResult

    rng = np.random.default_rng(seed)
    machine = Machine(slug="model", identity_hash="model", identity={})

    def run(name: str, factor: float):
        level = math.exp(rng.normal(0.0, run_sd))
        cases = []
        for bs in args.batch_sizes:
            data = 0.001 * bs * level * factor * np.exp(rng.normal(0.0, args.round_sd, size=args.rounds))
            key = CaseKey("test_train_step", (("batch_size", json.dumps(bs)),))
            stats = {"median": float(np.median(data)), "rounds": len(data)}
            cases.append(CaseResult(key, f"test_train_step[{bs}]", "train_step", "m.py::test_train_step",
                                    {"batch_size": bs}, {}, stats, data))
        return RunResult(Path(name), machine, None, tuple(cases))

    normal, slow = [], []
    for i in range(args.model_trials + 1):
        normal.append(run(f"A{i:03d}", 1.0))
        if i < args.model_trials:
            slow.append(run(f"S{i:03d}", 1.0 + args.slowdown))
    return normal, slow


def model_rates(args: argparse.Namespace) -> list[dict]:
    out = []
    for run_sd in args.model:
        normal, slow = create_model_runs(run_sd, args, seed=int(run_sd * 1e6))
        facts = _rates_from_runs(normal, slow, args.threshold, args.alpha, args.baseline_runs, args.current_runs,
                                 all_pairs=False)
        out.append({"run_sd": run_sd, "round_sd": args.round_sd} | facts)
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="JSON summary to write (atomically)")
    p.add_argument("--trials", type=int, default=20, help="A/A and A/slow pairs. Default: %(default)r")
    p.add_argument("--rounds", type=int, default=30, help="pedantic rounds per case. Default: %(default)r")
    p.add_argument("--warmup", type=int, default=5, help="pedantic warm-up rounds. Default: %(default)r")
    p.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[4, 8, 16, 24, 32],
                   help="one case per batch size. Default: 4,8,16,24,32")
    p.add_argument("--slowdown", type=float, default=0.10, help="injected extra work. Default: %(default)r")
    p.add_argument("--threshold", type=float, default=0.05, help="gate threshold. Default: %(default)r")
    p.add_argument("--alpha", type=float, default=0.01, help="gate alpha. Default: %(default)r")
    p.add_argument("--baseline-runs", type=int, default=5,
                   help="the CI recipe's figures: this many earlier runs pooled as the baseline. Default: %(default)r")
    p.add_argument("--current-runs", type=int, default=3,
                   help="the CI recipe's figures: this many runs pooled as the current one. Default: %(default)r")
    p.add_argument("--malloc", choices=("steady", "system"), default="steady",
                   help="the suite's --fer-malloc for the workload's processes. Default: %(default)r")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the workload. Default: %(default)r")
    p.add_argument("--keep", metavar="DIR", help="keep the run JSONs in DIR (default: a temporary folder)")
    p.add_argument("--from-runs", metavar="DIR", help="gate the runs stored in DIR by --keep; measure nothing")
    p.add_argument("--model", type=lambda s: [float(x) for x in s.split(",")], metavar="SD,SD...",
                   help="also gate synthetic runs (a model, not a measurement) whose run-to-run noise has these "
                        "log standard deviations, e.g. 0.01,0.02,0.05")
    p.add_argument("--model-trials", type=int, default=60, help="--model: pairs per noise level. Default: %(default)r")
    p.add_argument("--round-sd", type=float, default=0.03,
                   help="--model: log standard deviation between rounds. Default: %(default)r")
    p.add_argument("--skip-measure", action="store_true", help="with --model: run the model only")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    facts: dict = {}
    model = model_rates(args) if args.model else []
    for m in model:
        pooled = m.get("pooled", {})
        print(f"model, run-to-run sd {m['run_sd']:.3f}, round sd {m['round_sd']:.3f}: one run a side: false "
              f"alarms {m['false_alarm']['rate']:.1%}, detection {m['detection']['rate']:.1%}; "
              f"{args.baseline_runs} baseline and {args.current_runs} current runs: false alarms "
              f"{pooled.get('false_alarm', {}).get('rate', math.nan):.1%}, "
              f"detection {pooled.get('detection', {}).get('rate', math.nan):.1%}")
    if args.skip_measure:
        write_json_atomic(args.out, {"config": {k: v for k, v in vars(args).items() if k != "out"}, "model": model})
        return 0
    if args.from_runs:
        runs_dir = Path(args.from_runs)
    else:
        runs_dir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fer_gate_runs_"))
        runs_dir.mkdir(parents=True, exist_ok=True)
        facts = measure(args, runs_dir)
    result = gate_runs(runs_dir, args.threshold, args.alpha, args.baseline_runs, args.current_runs)
    summary = {
        "config": {k: v for k, v in vars(args).items() if k not in ("out",)},
        **facts,
        **result,
        "model": model,
        "load_average": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "seconds": time.perf_counter() - started,
    }
    write_json_atomic(args.out, summary)
    if not args.keep and not args.from_runs:
        shutil.rmtree(runs_dir, ignore_errors=True)
    fa, det = result["false_alarm"], result["detection"]
    print(f"A/A false alarms: {fa['flagged']}/{fa['comparisons']} case comparisons = {fa['rate']:.1%} "
          f"(95% CI {fa['wilson95'][0]:.1%}-{fa['wilson95'][1]:.1%}); all pairs: "
          f"{result['false_alarm_all_pairs']['flagged']}/{result['false_alarm_all_pairs']['comparisons']}")
    print(f"detection of a {args.slowdown:.0%} slowdown: {det['flagged']}/{det['comparisons']} = {det['rate']:.1%} "
          f"(95% CI {det['wilson95'][0]:.1%}-{det['wilson95'][1]:.1%}); measured slowdown "
          f"{det['ratio_spread']['median_ratio']:.3f}x median")
    if "pooled" in result:
        fa_k, det_k = result["pooled"]["false_alarm"], result["pooled"]["detection"]
        print(f"{args.baseline_runs} baseline runs against {args.current_runs} current runs (the CI recipe): "
              f"false alarms {fa_k['flagged']}/{fa_k['comparisons']} = {fa_k['rate']:.1%} "
              f"(95% CI {fa_k['wilson95'][0]:.1%}-{fa_k['wilson95'][1]:.1%}), detection "
              f"{det_k['flagged']}/{det_k['comparisons']} = {det_k['rate']:.1%} "
              f"(95% CI {det_k['wilson95'][0]:.1%}-{det_k['wilson95'][1]:.1%})")
    for label, counts in (("A/A", fa), ("slowed", det)):
        job = counts["per_job"]
        print(f"{label}, per gate call (a job): {job['regression']}/{job['jobs']} red by a regression, "
              f"{job['inconclusive']}/{job['jobs']} red as inconclusive; cases inconclusive: "
              f"{counts['inconclusive']}/{counts['comparisons']}")
    print(f"A/A ratio spread: sd(log) {fa['ratio_spread']['sd_log_ratio']:.3f}, "
          f"range {fa['ratio_spread']['min_ratio']:.3f}-{fa['ratio_spread']['max_ratio']:.3f}; "
          f"summary written to {args.out} ({summary['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
