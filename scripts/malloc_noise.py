#!/usr/bin/env python3
"""How much of the noise between processes is glibc malloc's: per-process step medians and page faults per step.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/malloc_noise.py --processes 12 --seconds 8

For each --fer-malloc mode, starts --processes fresh processes one after another. Each applies the mode
(fer_bench.machine.allocator.configure_malloc), builds the calibration workload (scripts/calibration_workload.py, a
3-conv CNN training step) at batch sizes 8 and 16 and a 384x384 matrix product as a control, then calls the
three in turn for --seconds. It prints, per mode and workload, the median of each process and the standard deviation of
their logs (the run-to-run noise), and the minor page faults per call. The control shows whether the CPU itself
changed speed between processes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r'''
import json, resource, sys, time
import torch
from calibration_workload import create_step  # scripts/calibration_workload.py, on PYTHONPATH
from fer_bench.machine.allocator import configure_malloc

mode, seconds = sys.argv[1], float(sys.argv[2])
described = configure_malloc(mode)
torch.set_num_threads(1)


a, b = torch.randn(384, 384), torch.randn(384, 384)
work = {"step_bs8": create_step(8), "step_bs16": create_step(16), "matmul_384": lambda: torch.mm(a, b)}
for fn in work.values():
    for _ in range(5):
        fn()
times = {k: [] for k in work}
faults = {k: 0 for k in work}
end = time.perf_counter() + seconds
while time.perf_counter() < end:
    for name, fn in work.items():
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        fn()
        times[name].append(time.perf_counter() - t0)
        faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
print(json.dumps({"malloc": described, "median_s": {k: sorted(v)[len(v) // 2] for k, v in times.items()},
                  "faults_per_call": {k: faults[k] / len(times[k]) for k in work}}))
'''


def _at_least_two(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 2")
    return value


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--processes", type=_at_least_two, default=12,
                   help="processes per mode (2 or more: their spread is the figure). Default: %(default)r")
    p.add_argument("--seconds", type=float, default=8.0, help="timing per process. Default: %(default)r")
    p.add_argument("--modes", default="system,steady", help="comma list of --fer-malloc modes. Default: %(default)r")
    p.add_argument("--out", help="also write the per-process figures as JSON here")
    args = p.parse_args(argv)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent), env.get("PYTHONPATH")]))
    report = {}
    for mode in args.modes.split(","):
        runs = []
        for _ in range(args.processes):
            out = subprocess.run([sys.executable, "-c", CHILD, mode, str(args.seconds)], capture_output=True,
                                 text=True, check=True, env=env)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        report[mode] = runs
        print(f"--fer-malloc {mode} ({runs[0]['malloc']}), {len(runs)} processes:")
        for name in runs[0]["median_s"]:
            medians = [r["median_s"][name] * 1e3 for r in runs]
            sd = statistics.stdev(math.log(m) for m in medians)
            faults = statistics.median(r["faults_per_call"][name] for r in runs)
            print(f"  {name:<11} median of medians {statistics.median(medians):7.2f} ms, range "
                  f"{min(medians):.2f}-{max(medians):.2f} ms, sd(log) {sd:.3f}, page faults per call {faults:.0f}")
    if args.out:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from fer_bench._atomic import write_json_atomic

        write_json_atomic(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
