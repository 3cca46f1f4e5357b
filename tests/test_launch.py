"""Runs under a launcher (fer_bench.engine.launch): what torchrun and srun set, the plugin's launched session
end to end with torchrun (2 gloo ranks, one JSON from rank 0 that says world size 2), and the repository's SLURM
recipe on the local single-node SLURM that scripts/slurm/setup_local.sh installs and starts (only under CI=true or
with FER_BENCH_SYSTEM_INSTALL=1, and never on a machine with a SLURM of its own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fer_bench.engine.launch import describe_nodes, detect_launch
from fer_bench.errors import FerBenchError
from fer_bench.results.compare import create_view
from fer_bench.results.runs import load_results

REPO = Path(__file__).resolve().parent.parent
TORCHRUN = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
SLURM = {"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1", "SLURM_JOB_NODELIST": "node[1-2]",
         "MASTER_ADDR": "node1", "MASTER_PORT": "29611"}


def test_torchrun_variables():
    info = detect_launch(TORCHRUN)
    assert (info.launcher, info.rank, info.world_size, info.local_rank) == ("torchrun", 1, 2, 1)
    assert (info.master_addr, info.master_port) == ("127.0.0.1", 29500)


def test_slurm_variables():
    info = detect_launch(SLURM)
    assert (info.launcher, info.rank, info.world_size, info.local_rank, info.node_list) == \
        ("slurm", 3, 4, 1, "node[1-2]")


def test_a_single_process_is_no_launch():
    assert detect_launch({}) is None
    assert detect_launch({**TORCHRUN, "RANK": "0", "WORLD_SIZE": "1"}) is None


@pytest.mark.parametrize("env, message", [
    ({**SLURM, "MASTER_ADDR": ""}, "srun: rank 3 of 4: MASTER_ADDR is not set (scripts/slurm/fer_bench.sbatch sets it*"),
    ({**TORCHRUN, "WORLD_SIZE": "two"}, "torchrun: WORLD_SIZE='two' is not an integer"),
    ({**TORCHRUN, "RANK": "5"}, "torchrun: rank 5 is outside a world of 2"),
])
def test_incomplete_launch_variables_say_which(env, message):
    import fnmatch

    with pytest.raises(FerBenchError) as err:
        detect_launch(env)
    assert fnmatch.fnmatch(str(err.value), message), str(err.value)


def test_nodes_and_heterogeneous_hardware():
    same = describe_nodes([{"host": "a", "identity_hash": "h1", "slug": "s"}] * 2)
    assert same["node_count"] == 1 and same["nodes"][0]["ranks"] == [0, 1] and not same["heterogeneous"]
    mixed = describe_nodes([{"host": "a", "identity_hash": "h1", "slug": "s1"},
                            {"host": "b", "identity_hash": "h2", "slug": "s2"}])
    assert mixed["node_count"] == 2 and mixed["heterogeneous"] and mixed["identities"] == ["h1", "h2"]


def _check_ddp_json(path: Path, launcher: str) -> None:
    data = json.loads(path.read_text())
    launch = data["fer_bench"]["run"]["launch"]
    assert launch["launcher"] == launcher and launch["world_size"] == 2 and launch["node_count"] == 1
    assert not launch["heterogeneous"] and launch["nodes"][0]["ranks"] == [0, 1]
    (bench,) = data["benchmarks"]  # rank 0's only: one entry, not one a rank
    extra = bench["extra_info"]
    assert extra["world_size"] == 2 and extra["global_batch_size"] == 2 * extra["per_device_batch_size"]
    assert extra["ddp"]["backend"] == "gloo" and extra["ddp"]["launcher"] == launcher
    assert [r["rank"] for r in extra["per_rank"]] == [0, 1]
    assert [r["host"] for r in extra["per_rank"]] == [launch["nodes"][0]["host"]] * 2  # for the straggler table
    assert all(r["rounds"] == bench["stats"]["rounds"] for r in extra["per_rank"])
    assert extra["samples_per_s"] == pytest.approx(extra["global_batch_size"] / bench["stats"]["median"], rel=1e-6)
    assert "comm_exposed_ms" in extra and extra["rank_skew"] >= 1.0


def test_torchrun_writes_one_json_of_world_size_2(tmp_path):
    out = tmp_path / "run.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "pytest",
           "benchmarks", "-p", "no:cacheprovider", "-q", "-k", "ddp", "--fer-devices", "cpu", "--fer-num-gpus", "2",
           "--fer-batch-sizes", "16", "--benchmark-json", str(out)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "SLURM_", "MASTER_"))}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    _check_ddp_json(out, "torchrun")
    assert not list(tmp_path.glob("*.json.tmp*"))
    table = create_view("stragglers", load_results([out]))  # the straggler table: both ranks, the slowest named
    assert table.records["rank"].tolist() == [0, 1] and int(table.records["slowest"].sum()) == 1


def test_torchrun_with_every_case_skipped_exits_0(tmp_path):
    """Under torchrun only parallel=ddp cases run: a selection without one skips every case on every rank, and that
    is a clean run (pytest-benchmark's 'Not saving anything' stays a warning)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "pytest",
           "benchmarks", "-p", "no:cacheprovider", "-k", "test_train_step", "--fer-preset", "quick",
           "--benchmark-json", str(tmp_path / "run.json")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "SLURM_", "MASTER_"))}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "only parallel=ddp cases run" in output and "Traceback" not in output, output[-3000:]


def test_ranks_that_collect_other_cases_stop_with_one_line(tmp_path):
    """Rank 1 selects another model than rank 0: a collective would wait forever, so the session stops."""
    script = tmp_path / "mismatch.sh"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$RANK" = 1 ]; then MODEL=fer_cnn_4block; else MODEL=fer_cnn_2block; fi\n'
        f'exec "{sys.executable}" -m pytest benchmarks -p no:cacheprovider -q -k ddp --fer-devices cpu '
        f'--fer-num-gpus 2 --fer-models "$MODEL" --co\n')
    script.chmod(0o755)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--no-python",
           str(script)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "rank 1 collected other cases than rank 0" in done.stdout + done.stderr


def test_the_sbatch_recipe_runs_on_the_local_slurm(tmp_path, local_slurm):
    _run_the_recipe(tmp_path)


def _run_the_recipe(tmp_path: Path) -> None:
    out = tmp_path / "slurm.json"
    env = {**os.environ, "FER_BENCH_JSON": str(out),
           "FER_BENCH_PYTEST_ARGS": "-q -k ddp --fer-devices cpu --fer-num-gpus 2 --fer-batch-sizes 16"}
    done = subprocess.run([str(REPO / "scripts" / "slurm" / "run_recipe.sh"), f"--output={tmp_path}/job-%j.out"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "COMPLETED" in done.stdout
    _check_ddp_json(out, "slurm")


def test_a_job_stopped_at_its_walltime_is_requeued_and_finishes_every_case(tmp_path, local_slurm):
    """The recipe under a walltime shorter than the run: SLURM's warning signal (--signal=B:USR1@60 with --time=2,
    sent 30 to 60 s in: SLURM checks every 30 s or so) stops the run, which keeps its finished cases; the script
    requeues the job, and the requeued job resumes from the journal until every case is in the JSON, each once."""
    out = tmp_path / "walltime.json"
    sizes = "1,2,3,4,5,6,7,8,9,10,11,12"
    env = {**os.environ, "FER_BENCH_JSON": str(out), "FER_BENCH_JOB_TIMEOUT": "600",
           "FER_BENCH_PYTEST_ARGS": f"-q -k ddp --fer-devices cpu --fer-num-gpus 2 --fer-models fer_cnn_2block "
                                    f"--fer-batch-sizes {sizes} --fer-round-time 5"}
    recipe = subprocess.Popen([str(REPO / "scripts" / "slurm" / "run_recipe.sh"), "--time=2",
                               "--signal=B:USR1@60", f"--output={tmp_path}/job-%j.out"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # SLURM holds a requeued batch job for about two minutes (its BeginTime): release it at once, as an admin
    # would, so the test does not wait; the requeue itself is the recipe's
    deadline = time.monotonic() + 700
    while recipe.poll() is None and time.monotonic() < deadline:
        held = subprocess.run(["squeue", "-h", "-t", "PD", "-o", "%i %r"], capture_output=True, text=True).stdout
        for job, reason in (line.split() for line in held.splitlines() if line.strip()):
            if reason == "BeginTime":
                subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
        time.sleep(2)
    if recipe.poll() is None:
        recipe.kill()
    output, _ = recipe.communicate()
    done = subprocess.CompletedProcess(recipe.args, recipe.returncode, output, "")
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "requeueing job" in log and "resuming from" in log, log[-4000:]
    data = json.loads(out.read_text())
    names = [b["fullname"] for b in data["benchmarks"]]
    assert len(names) == len(set(names)) == len(sizes.split(",")), names
    run = data["fer_bench"]["run"]
    assert run["interruptions"] and run["interruptions"][0]["signal"] == "SIGUSR1" and "incomplete" not in run
    assert not (tmp_path / "walltime.journal.jsonl").exists()


def _fake_slurm_bin(tmp_path: Path) -> Path:
    """A PATH folder whose sbatch and scontrol are a cluster's that runs every job at once, and whose apt-get fails,
    so that a wrong turn to setup_local.sh installs nothing."""
    fake = tmp_path / "bin"
    fake.mkdir()
    out = tmp_path / "job-4242.out"
    out.write_text("the job's output\n")
    scripts = {"sbatch": "echo 4242\n",
               "scontrol": f'echo "JobId=4242 JobState=COMPLETED Reason=None ExitCode=0:0 StdOut={out}"\n',
               "apt-get": "echo 'apt-get: not in this test' >&2; exit 100\n"}
    for name, body in scripts.items():
        (fake / name).write_text("#!/bin/sh\n" + body)
        (fake / name).chmod(0o755)
    return fake


def test_the_recipe_uses_a_slurm_the_machine_has(tmp_path):
    fake = _fake_slurm_bin(tmp_path)
    (tmp_path / "slurm.conf").write_text("ClusterName=site\n")
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}",
           "SLURM_CONF": str(tmp_path / "slurm.conf")}
    done = subprocess.run([str(REPO / "scripts" / "slurm" / "run_recipe.sh")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "submitting to this machine's own SLURM" in done.stdout and "setup_local:" not in done.stdout + done.stderr
    assert "the job's output" in done.stdout and "job 4242 COMPLETED" in done.stdout


def test_the_recipe_test_skips_on_a_machine_with_its_own_slurm(tmp_path):
    """Even under CI=true: sbatch with a slurm.conf that setup_local.sh did not write is the machine's own SLURM."""
    fake = _fake_slurm_bin(tmp_path)
    (tmp_path / "slurm.conf").write_text("ClusterName=site\n")
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}", "SLURM_CONF": str(tmp_path / "slurm.conf"),
           "CI": "true"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "tests/test_launch.py",
                           "-k", "test_the_sbatch_recipe_runs_on_the_local_slurm"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 skipped" in done.stdout and "has a SLURM of its own" in done.stdout, done.stdout[-3000:]


def test_system_installs_ask_first(system_install, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("FER_BENCH_SYSTEM_INSTALL", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"would change the machine \(apt-get install x\); allow it with "
                       r"FER_BENCH_SYSTEM_INSTALL=1 python3 dev.py test -k test_system_installs_ask_first"):
        system_install("apt-get install x")
    for name, value in (("CI", "true"), ("FER_BENCH_SYSTEM_INSTALL", "1")):
        with monkeypatch.context() as env:
            env.setenv(name, value)
            system_install("apt-get install x")  # allowed: returns
