#!/usr/bin/env python3
"""What other load does to a timed training step, and what the contention record says about it: the measurement
behind fer_bench.measure.contention.CONTENTION_THRESHOLD.

    .venv/bin/python scripts/contention_threshold.py --out docs/calibration/contention-threshold.json

First it samples the machine while this process sleeps (``--idle`` windows of 1 s): what other processes take of
a machine nobody is using (the floor any threshold must stand above). Then, for each torch thread count, it times
a real fer_cnn_2block training step (batch 16, the engine's own TrainStep) with fer_bench's measure() beside a
neighbour process that keeps one CPU busy for a fraction (``--levels``) of every 50 ms, the levels in a
different order each repeat. It prints per thread count and level the median of the neighbour's recorded share
(other_cpu_share + steal_share), the step's median time, its slowdown over the no-neighbour level, and how many
repeats were marked contended. Run it on the machine alone: other processes are load the script does not
control (the idle windows show how much there was).

    .venv/bin/python scripts/contention_threshold.py --levels none --idle 1800 --out idle.json

samples the idle windows only (here half an hour): how often, and for how long, a shared machine is quiet.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NEIGHBOUR = r"""
import sys, time
duty, period = float(sys.argv[1]), 0.05
while True:
    start = time.perf_counter()
    while time.perf_counter() - start < duty * period:
        pass
    rest = period - (time.perf_counter() - start)
    if rest > 0:
        time.sleep(rest)
"""


class Fixture:
    """pytest-benchmark's fixture as far as measure() uses it: rounds timed with perf_counter."""

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


def idle_windows(n: int) -> list[dict]:
    """``n`` windows of 1 s with this process asleep: their start (Unix time), other + steal share and runnable
    tasks."""
    from fer_bench.measure.contention import ContentionWindow

    windows = []
    for _ in range(n):
        start = time.time()
        window = ContentionWindow(interval_s=0.25).start()
        time.sleep(1.0)
        record = window.stop()
        share = record["other_cpu_share"] + record["steal_share"] if record.get("measured") else float("nan")
        windows.append({"t": round(start, 1), "share": round(share, 4), "runnable": record.get("runnable_mean")})
        print(json.dumps(windows[-1]), file=sys.stderr, flush=True)
    return windows


def describe_idle(windows: list[dict], threshold: float) -> str:
    """The idle windows' median and maximum share, the share of windows under the threshold, and the longest
    stretch of consecutive windows at or over it."""
    shares = [w["share"] for w in windows]
    longest = run = 0
    for share in shares:
        run = run + 1 if share >= threshold else 0
        longest = max(longest, run)
    quiet = sum(s < threshold for s in shares)
    return (f"idle machine, {len(shares)} windows of 1 s: other + steal share median {statistics.median(shares):.3f}, "
            f"max {max(shares):.3f}; {quiet} of {len(shares)} under {threshold:.0%}; the longest busy stretch "
            f"{longest} s")


def measure_level(fn, level: float, round_time: float) -> dict:
    from fer_bench.measure.timing import measure

    neighbour = (subprocess.Popen([sys.executable, "-c", NEIGHBOUR, str(level)]) if level > 0 else None)
    try:
        time.sleep(0.3)  # past the neighbour's start-up
        info = measure(Fixture(), fn, device="cpu", samples_per_call=16, phase="train_step", target_s=round_time)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    record = info["contention"]
    return {"level": level, "step_ms": info["step_time_ms"], "rounds": info["rounds"], "contention": record}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="0,0.05,0.1,0.2,0.4,1",
                        help="the neighbour's busy fractions of one CPU; none: the idle windows only")
    parser.add_argument("--threads", default="1,2", help="torch thread counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--round-time", type=float, default=1.0, help="seconds of timed rounds per measurement")
    parser.add_argument("--idle", type=int, default=10, help="1 s windows sampled with this process asleep")
    parser.add_argument("--out", type=Path, help="write the raw measurements as JSON")
    args = parser.parse_args(argv)
    levels = [] if args.levels == "none" else [float(v) for v in args.levels.split(",")]
    threads = [int(v) for v in args.threads.split(",")]

    import torch

    from fer_bench._atomic import write_json_atomic
    from fer_bench.engine.build import create_train_step
    from fer_bench.engine.config import RunConfig
    from fer_bench.measure.contention import CONTENTION_THRESHOLD

    idle = idle_windows(args.idle)
    rows: list[dict] = []
    rng = random.Random(0)
    for n_threads in threads if levels else []:
        torch.set_num_threads(n_threads)
        training = create_train_step(RunConfig(model="fer_cnn_2block", device="cpu", batch_size=16))
        x, y = training.example_batch()
        fn = lambda: training.step.step(x, y)  # noqa: E731
        for _ in range(5):
            fn()
        for repeat in range(args.repeats):
            order = levels[:]
            rng.shuffle(order)
            for level in order:
                row = measure_level(fn, level, args.round_time)
                rows.append({"threads": n_threads, "repeat": repeat, **row})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    print(describe_idle(idle, CONTENTION_THRESHOLD) if idle else "no idle window sampled")
    if args.out:
        write_json_atomic(args.out, {"idle": idle, "rows": rows, "argv": sys.argv[1:],
                                     "python": sys.version.split()[0], "torch": torch.__version__})
    if not rows:
        return 0
    print("| threads | neighbour (of one CPU) | recorded other + steal (median) | step ms (median) | slowdown | "
          "contended |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n_threads in threads:
        mine = [r for r in rows if r["threads"] == n_threads]
        base = statistics.median(r["step_ms"] for r in mine if r["level"] == 0)
        for level in levels:
            at = [r for r in mine if r["level"] == level]
            shares = [r["contention"]["other_cpu_share"] + r["contention"]["steal_share"] for r in at
                      if r["contention"].get("measured")]
            step = statistics.median(r["step_ms"] for r in at)
            contended = sum(bool(r["contention"].get("contended")) for r in at)
            share = f"{statistics.median(shares):.1%}" if shares else "-"
            print(f"| {n_threads} | {level:.0%} | {share} | {step:.1f} | {step / base:.2f}x | "
                  f"{contended} of {len(at)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
