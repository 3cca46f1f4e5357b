"""The fleet recipe (scripts/slurm/fer_bench_array.sbatch) on the local single-node SLURM that
scripts/slurm/setup_local.sh installs and starts: a job array of three tasks pretending to be three nodes
(FER_BENCH_NODE_NAMES) leaves one saved run per task in one folder, each named by and recording its node.

Only under CI=true or with FER_BENCH_SYSTEM_INSTALL=1, as root, and never on a machine with a SLURM of its own.
About 45 s here (three runs of two tiny cases, one after another: each task has the node to itself).

Run: FER_BENCH_SYSTEM_INSTALL=1 python -m pytest tests/test_fleet_slurm.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fer_bench.machine.identity import sidecar_path

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts" / "slurm"
NODES = ("alpha", "beta", "gamma")
#: One tiny case (the 2-block CNN's forward pass at fp32 on the CPU): the runs, not the cases, are under test.
SELECTION = ('-q -k "test_forward and not backward" --fer-models fer_cnn_2block --fer-devices cpu '
             '--fer-precisions fp32 --fer-batch-sizes 16')


def test_the_array_recipe_saves_one_run_per_node_into_one_folder(tmp_path, local_slurm):
    _run_the_array(tmp_path)


def _run_the_array(tmp_path: Path) -> None:
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "FER_BENCH_NODE"))}
    env.update(FER_BENCH_PYTHON=sys.executable, FER_BENCH_STORAGE=str(store), FER_BENCH_NODE_NAMES=",".join(NODES),
               FER_BENCH_PYTEST_ARGS=SELECTION, FER_BENCH_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    # --wait: sbatch returns when every task has ended, with the highest exit code of the array's tasks
    done = subprocess.run(["sbatch", "--wait", "--parsable", f"--array=0-{len(NODES) - 1}",
                           f"--output={tmp_path}/task-%j.out", str(SCRIPTS / "fer_bench_array.sbatch")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    outputs = "".join(p.read_text(errors="replace")[-1500:] for p in sorted(tmp_path.glob("task-*.out")))
    assert done.returncode == 0, done.stdout + done.stderr + outputs

    folders = [p for p in store.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders  # one machine: one folder for the whole fleet
    saved = sorted(folders[0].glob("*.json"))
    assert len(saved) == len(NODES), [p.name for p in saved]
    recorded = {}
    for path in saved:
        run = json.loads(path.read_text())
        node = run["fer_bench"]["run"]["node"]
        assert path.stem.endswith(f"_{node}") and run["fer_bench"]["run"]["node_source"] == "env"
        assert json.loads(sidecar_path(path).read_text())["run"]["node"] == node
        assert run["benchmarks"] and all(b["stats"].get("data") for b in run["benchmarks"])
        recorded[node] = path
    assert sorted(recorded) == sorted(NODES)
