#!/usr/bin/env python3
"""The fleet check on one machine: does `fer-bench compare --view nodes` flag a node made slow on purpose, and only
that one, and does it flag none when no node is slow?

Each trial runs the preset once per node name (the order shuffled, so a drift of the machine's load does not always
touch the same node), into its own folder, then judges the folder with `fer-bench compare --view nodes --format
json`. Two scenarios a repeat: ``slow`` (FER_BENCH_INJECT_SLOWDOWN on one node: real extra work, every timed call
that much slower) and ``none`` (no slowdown anywhere). Run it on a quiet machine (it times the benchmarks):

    .venv/bin/python scripts/fleet_check.py --out fleet/ --summary fleet.json            # 4 nodes, 3 repeats
    .venv/bin/python scripts/fleet_check.py --nodes 6 --slow node-2 --slowdown 0.10 --repeats 5 --out fleet/
    .venv/bin/python scripts/fleet_check.py --analyze fleet/                              # judge stored trials again
    .venv/bin/python scripts/fleet_check.py --dry-run                                     # print the commands

The node name goes in with ``--fer-node NAME`` where the plugin has that option; otherwise the script writes it into
each run's record (``fer_bench.run.node``), which is where the option puts it. The last line printed is the summary
as one JSON object (also written atomically to --summary): per scenario how often each outcome occurred.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fer_bench._atomic import write_json_atomic, write_text_atomic  # noqa: E402
from fer_bench.measure.slowdown import INJECT_ENV  # noqa: E402 - torch-free

SCENARIOS = ("slow", "none")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=4, help="node names node-1..node-N. Default: %(default)r")
    parser.add_argument("--slow", default="node-3", help="the node given the slowdown. Default: %(default)r")
    parser.add_argument("--slowdown", default="0.15", help=f"{INJECT_ENV} of the slow node. Default: %(default)r")
    parser.add_argument("--repeats", type=int, default=3, help="trials of each scenario. Default: %(default)r")
    parser.add_argument("--preset", default="quick", help="--fer-preset of every run. Default: %(default)r")
    parser.add_argument("--out", default="fleet_check", help="folder of the runs, one subfolder a trial. "
                                                             "Default: %(default)r")
    parser.add_argument("--summary", help="also write the summary JSON here")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run order. Default: %(default)r")
    parser.add_argument("--analyze", metavar="DIR", help="run nothing: judge the trials already in DIR "
                                                         "(<scenario>-r<k>/ folders)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments, after --")
    args = parser.parse_args(argv)
    if args.nodes < 3 and not args.analyze:
        parser.error("--nodes: 3 or more (two nodes cannot say which one is off)")
    return args


def _has_node_option() -> bool:
    """Whether the plugin has --fer-node (the node name as an option)."""
    done = subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "--help", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True)
    return "--fer-node" in done.stdout


def _stamp_node(path: Path, node: str) -> None:
    """Write the node name into the run record, where --fer-node would have put it."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    record = doc.setdefault("fer_bench", {})
    record.setdefault("run", {})["node"] = node
    write_text_atomic(path, json.dumps(doc, indent=4))


def _run_trial(folder: Path, nodes: list[str], slow: str | None, args, node_option: bool, rng: random.Random) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    order = list(nodes)
    rng.shuffle(order)
    for node in order:
        out = folder / f"{node}.json"
        cmd = [sys.executable, "-m", "pytest", "benchmarks", "-p", "no:cacheprovider", "-q", "--fer-preset",
               args.preset, "--fer-budget", "none", "--benchmark-json", str(out), *args.pytest_args]
        if node_option:
            cmd += ["--fer-node", node]
        env = {k: v for k, v in os.environ.items() if k != INJECT_ENV}
        if node == slow:
            env[INJECT_ENV] = args.slowdown
        shown = (f"{INJECT_ENV}={args.slowdown} " if node == slow else "") + " ".join(cmd)
        print(f"fleet_check: {shown}", file=sys.stderr)
        if args.dry_run:
            continue
        done = subprocess.run(cmd, cwd=ROOT, env=env)
        if done.returncode != 0 or not out.is_file():
            raise SystemExit(f"fleet_check: the run of {node} failed (exit {done.returncode}): {shown}")
        if not node_option:
            _stamp_node(out, node)


def judge(folder: Path) -> dict:
    """`fer-bench compare FOLDER --view nodes --format json`: each flagged node and its flagged cases."""
    cmd = [sys.executable, "-m", "fer_bench", "compare", str(folder), "--view", "nodes", "--format", "json"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)})
    if done.returncode != 0:
        raise SystemExit(f"fleet_check: {' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
    rows = json.loads(done.stdout)
    flagged: dict[str, list[str]] = {}
    for r in rows:
        if r["flagged"]:
            flagged.setdefault(r["node"], []).append(r["case"])
    cases = sorted({r["case"] for r in rows})
    return {"nodes": sorted({r["node"] for r in rows}), "cases": len(cases), "flagged": flagged,
            "threshold_z": next((r["threshold_z"] for r in rows), None)}


def outcome(scenario: str, slow: str, verdict: dict) -> str:
    """What a trial found: for ``slow``, only_slow_node_flagged / slow_node_missed / others_flagged (the slow node
    with other nodes); for ``none``, none_flagged / some_flagged."""
    flagged = set(verdict["flagged"])
    if scenario == "none":
        return "none_flagged" if not flagged else "some_flagged"
    if flagged == {slow}:
        return "only_slow_node_flagged"
    return "slow_node_missed" if slow not in flagged else "others_flagged"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    nodes = [f"node-{i}" for i in range(1, args.nodes + 1)]
    base = Path(args.analyze or args.out)
    if not args.analyze:
        if args.slow not in nodes:
            raise SystemExit(f"fleet_check: --slow {args.slow}: not one of {', '.join(nodes)}")
        node_option = False if args.dry_run else _has_node_option()
        rng = random.Random(args.seed)
        for k in range(1, args.repeats + 1):
            for scenario in SCENARIOS:
                _run_trial(base / f"{scenario}-r{k}", nodes, args.slow if scenario == "slow" else None, args,
                           node_option, rng)
        if args.dry_run:
            return 0
    trials = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and p.name.split("-r")[0] in SCENARIOS):
        scenario = folder.name.split("-r")[0]
        verdict = judge(folder)
        found = outcome(scenario, args.slow, verdict)
        trials.append({"trial": folder.name, "scenario": scenario, "outcome": found, **verdict})
        named = "; ".join(f"{n}: {len(c)} case(s)" for n, c in sorted(verdict["flagged"].items())) or "no node"
        print(f"fleet_check: {folder.name}: {found} (flagged {named}; |z| > {verdict['threshold_z']})")
    if not trials:
        raise SystemExit(f"fleet_check: {base}: no trial folders (slow-r1/, none-r1/, ...)")
    counts: dict[str, dict[str, int]] = {}
    for t in trials:
        counts.setdefault(t["scenario"], {})
        counts[t["scenario"]][t["outcome"]] = counts[t["scenario"]].get(t["outcome"], 0) + 1
    summary = {"slow_node": args.slow, "slowdown": args.slowdown, "preset": args.preset, "outcomes": counts,
               "trials": trials}
    if args.summary:
        write_json_atomic(Path(args.summary), summary)
    print(json.dumps({k: summary[k] for k in ("slow_node", "slowdown", "outcomes")}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
