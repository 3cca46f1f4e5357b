"""`fer-bench ab`: the run order, the environment rule, the worktree, the runs and their manifest, the errors.

The end-to-end tests build a tiny git repository whose benchmark is a plain pytest-benchmark busy loop (the
fer_bench plugin stays inert there), so a pair of runs takes about a second.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from fer_bench.cli import main
from fer_bench import ab
from fer_bench.ab import (
    INJECT_ENV,
    collect_dependencies,
    create_pytest_command,
    create_run_env,
    ensure_baseline_venv,
    ensure_worktree,
    list_run_order,
)

FAST_ARGS = ["--", "--benchmark-min-rounds", "5", "--benchmark-max-time", "0.05", "-q"]

TINY = '''"""A busy loop, timed by pytest-benchmark; records which side ran it and what it saw of the injection knob."""
import os

SIDE = "{side}"
LOOPS = {loops}


def spin():
    x = 0
    for i in range(LOOPS):
        x += i * i
    return x


def test_tiny(benchmark):
    record = os.environ.get("TINY_RECORD")
    if record:
        with open(record, "a") as fh:
            fh.write(f"{{SIDE}} {{os.environ.get('{env}', '-')}}\\n")
    {fail}
    benchmark(spin)
'''


def write_tiny(root: Path, side: str, loops: int, fail: bool = False) -> None:
    (root / "benchmarks").mkdir(exist_ok=True)
    (root / "benchmarks" / "test_tiny.py").write_text(
        TINY.format(side=side, loops=loops, env=INJECT_ENV, fail="assert False, 'broken'" if fail else "pass"))


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=fer", "-c", "user.email=fer@example.com", *args], cwd=root,
                          check=True, capture_output=True, text=True).stdout.strip()


def make_repo(root: Path, *, baseline_fails: bool = False) -> Path:
    """A committed baseline (2000 loops) and a working-tree change (6000 loops): the current side is slower."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q")
    write_tiny(root, "baseline", 2000, fail=baseline_fails)
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "baseline")
    write_tiny(root, "current", 6000)
    return root


def run_cli(argv: list[str], cwd: Path) -> types.SimpleNamespace:
    """main() in ``cwd`` with stdout and stderr captured (usable from a module-scoped fixture)."""
    out, err = io.StringIO(), io.StringIO()
    before = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
    finally:
        os.chdir(before)
    return types.SimpleNamespace(rc=rc, out=out.getvalue(), err=err.getvalue())


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv(INJECT_ENV, raising=False)
    monkeypatch.delenv("TINY_RECORD", raising=False)


# ----------------------------------------------------------------------------------------------- pure helpers


def test_run_order_is_abba():
    order = list_run_order(4)
    assert [side[0] for _, side in order] == list("bccbbccb")
    assert [pair for pair, _ in order] == [1, 1, 2, 2, 3, 3, 4, 4]


def write_declaration(root: Path, requires: str, extras: str = "dev =\n    tox>=4", pyproject: bytes = b"[x]\n"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "setup.cfg").write_text(f"[metadata]\nname = x\n\n[options]\ninstall_requires =\n{requires}\n\n"
                                    f"[options.extras_require]\n{extras}\n")
    (root / "pyproject.toml").write_bytes(pyproject)


def test_dependencies_compare_the_entries_not_the_comments(tmp_path):
    write_declaration(tmp_path / "a", "    torch==2.14.1\n    # pinned as a pair\n    numpy>=1.24")
    write_declaration(tmp_path / "b", "    # another comment\n    torch==2.14.1\n\n    numpy>=1.24  # inline")
    (tmp_path / "b" / "setup.cfg").write_text((tmp_path / "b" / "setup.cfg").read_text()
                                              .replace("name = x", "name = x\nversion = 2"))
    a = collect_dependencies(tmp_path / "a")
    assert a == collect_dependencies(tmp_path / "b")
    assert a["install_requires"] == ["torch==2.14.1", "numpy>=1.24"]
    assert a["extras_require"] == {"dev": ["tox>=4"]}


@pytest.mark.parametrize("change", ["requires", "extras", "pyproject"])
def test_dependencies_differ(tmp_path, change):
    write_declaration(tmp_path / "a", "    torch==2.14.1")
    write_declaration(tmp_path / "b", "    torch==2.15.0" if change == "requires" else "    torch==2.14.1",
                      extras="dev =\n    tox>=5" if change == "extras" else "dev =\n    tox>=4",
                      pyproject=b"[y]\n" if change == "pyproject" else b"[x]\n")
    assert collect_dependencies(tmp_path / "a") != collect_dependencies(tmp_path / "b")


def test_no_declaration_is_an_equal_declaration(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert collect_dependencies(tmp_path / "a") == collect_dependencies(tmp_path / "b")


def test_this_checkout_declares_its_dependencies():
    deps = collect_dependencies(Path(__file__).resolve().parents[1])
    assert any(r.startswith("torch==") for r in deps["install_requires"])
    assert "dev" in deps["extras_require"] and deps["pyproject.toml"]


def test_pytest_command_line():
    cmd = create_pytest_command("/py", Path("/o/current/ab-03.json"), ["--fer-preset", "quick"])
    assert cmd == ["/py", "-m", "pytest", "benchmarks", "-p", "no:cacheprovider", "--benchmark-json",
                   "/o/current/ab-03.json", "--fer-preset", "quick"]


def test_run_env_sets_the_knob_only_when_asked():
    inherited = {INJECT_ENV: "0.5", "PYTHONPATH": "/elsewhere", "HOME": "/h"}
    plain = create_run_env(inherited, "/tree")
    assert INJECT_ENV not in plain and plain["HOME"] == "/h"
    assert plain["PYTHONPATH"] == "/tree" + os.pathsep + "/elsewhere"
    slowed = create_run_env({}, "/tree", inject_slowdown="10%")
    assert slowed[INJECT_ENV] == "10%" and slowed["PYTHONPATH"] == "/tree"


@pytest.mark.parametrize("text", ["0.1", "10%", "0", "9.5", "abc", "-0.1", "10", "1000%", "nan"])
def test_inject_option_agrees_with_the_knob(text):
    from fer_bench.errors import FerBenchError
    from fer_bench.measure.timing import parse_slowdown as knob

    try:
        knob(text)
        knob_ok = True
    except FerBenchError:
        knob_ok = False
    try:
        ab.parse_slowdown(text)
        option_ok = True
    except Exception:
        option_ok = False
    assert option_ok == knob_ok


def test_bad_options_exit_3(capsys):
    assert main(["ab"]) == 3  # --baseline is required
    assert main(["ab", "--baseline", "HEAD", "--pairs", "1"]) == 3
    assert main(["ab", "--baseline", "HEAD", "--inject-slowdown", "abc"]) == 3
    assert "--inject-slowdown" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- the worktree


def test_worktree_is_reused_at_its_commit_and_remade_at_another(tmp_path):
    repo = make_repo(tmp_path / "repo")
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "commit", "-q", "-a", "-m", "second")
    second = git(repo, "rev-parse", "HEAD")
    path = tmp_path / "out" / "baseline-src"
    assert ensure_worktree(repo, path, first) is False
    assert ensure_worktree(repo, path, first) is True
    assert "LOOPS = 2000" in (path / "benchmarks" / "test_tiny.py").read_text()
    assert ensure_worktree(repo, path, second) is False
    assert git(path, "rev-parse", "HEAD") == second
    ab.remove_worktree(repo, path)
    assert not path.exists()
    assert len(git(repo, "worktree", "list").splitlines()) == 1


# ------------------------------------------------------------------------------------------ the baseline's own venv


def test_own_venv_is_made_once_per_declaration(tmp_path, monkeypatch):
    source = tmp_path / "src"
    write_declaration(source, "    torch==2.14.1")
    venv_dir = tmp_path / "baseline-venv"
    commands = []

    def fake_run(cmd, **kwargs):
        commands.append(cmd)
        (venv_dir / "bin").mkdir(parents=True, exist_ok=True)
        (venv_dir / "bin" / "python").write_text("")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(ab.subprocess, "run", fake_run)
    python, reused = ensure_baseline_venv(venv_dir, source, tmp_path / "logs" / "venv.log")
    assert python == str(venv_dir / "bin" / "python") and not reused
    assert commands[0][1:3] == ["-m", "venv"] and commands[1][-2:] == ["-e", f"{source}[dev]"]
    assert ensure_baseline_venv(venv_dir, source, tmp_path / "logs" / "venv.log") == (python, True)
    assert len(commands) == 2
    write_declaration(source, "    torch==2.15.0")
    assert ensure_baseline_venv(venv_dir, source, tmp_path / "logs" / "venv.log") == (python, False)
    assert len(commands) == 4


def test_failed_install_names_its_log(tmp_path, monkeypatch):
    from fer_bench.errors import FerBenchError

    monkeypatch.setattr(ab.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1))
    with pytest.raises(FerBenchError, match=r"exit 1\); see .*venv\.log"):
        ensure_baseline_venv(tmp_path / "v", tmp_path, tmp_path / "logs" / "venv.log")


def test_the_baseline_must_import_its_own_fer_bench(tmp_path):
    from fer_bench.errors import FerBenchError

    tree = tmp_path / "out" / "baseline-src"
    (tree / "fer_bench").mkdir(parents=True)
    (tree / "fer_bench" / "__init__.py").write_text("")
    ab._check_imports_own_tree(sys.executable, tree, create_run_env(os.environ, tree))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    with pytest.raises(FerBenchError, match="not from its worktree"):
        ab._check_imports_own_tree(sys.executable, tree, env)  # the installed fer_bench comes first


# ----------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def ab_job(tmp_path_factory):
    """One job of 2 pairs, the current side injected with 25%; the outcome, its folder and the runs' records."""
    root = tmp_path_factory.mktemp("ab")
    repo = make_repo(root / "repo")
    record = root / "seen.txt"
    os.environ["TINY_RECORD"] = str(record)
    try:
        result = run_cli(["ab", "--baseline", "HEAD", "--pairs", "2", "--out", str(root / "out"), "--inject-slowdown",
                          "0.25", "--allow-inconclusive", *FAST_ARGS], repo)
    finally:
        del os.environ["TINY_RECORD"]
    result.repo, result.dir, result.record = repo, root / "out", record
    result.manifest = json.loads((root / "out" / "ab.json").read_text())
    return result


def test_job_runs_abba_and_gates(ab_job):
    assert ab_job.rc in (0, 1), ab_job.err  # a 3x slower loop: a regression, or inconclusive at 2 pairs (allowed)
    sha = git(ab_job.repo, "rev-parse", "HEAD")
    progress = [line for line in ab_job.err.splitlines() if line.startswith("fer-bench ab: [")]
    assert [line.split("] ")[1].rsplit(" ", 2)[0] for line in progress] == [
        f"baseline {sha[:7]}", "current (working tree)", "current (working tree)", f"baseline {sha[:7]}"]
    assert progress[0].startswith("fer-bench ab: [1/4] ") and progress[0].endswith(" s")
    assert "fer-bench gate:" in ab_job.out and "paired" in ab_job.out and "test_tiny" in ab_job.out
    seen = ab_job.record.read_text().split()
    assert seen == ["baseline", "-", "current", "0.25", "current", "0.25", "baseline", "-"]
    # the tiny baseline has no fer_bench/measure/turns.py: whole runs alternate, and the job says so
    assert "predates turn-taking" in ab_job.err and ab_job.manifest["interleave"] == "runs"


def test_job_writes_its_runs_logs_and_manifest(ab_job):
    out, m = ab_job.dir, ab_job.manifest
    for side in ("baseline", "current"):
        for n in ("01", "02"):
            assert json.loads((out / side / f"ab-{n}.json").read_text())["benchmarks"]
            assert "$ " in (out / "logs" / f"{side}-{n}.log").read_text()
    assert m["status"] == "done" and m["exit_status"] == m["gate"]["exit_status"] == ab_job.rc
    assert m["baseline"]["ref"] == "HEAD" and m["baseline"]["sha"] == git(ab_job.repo, "rev-parse", "HEAD")
    assert m["current"]["dirty"] is True and m["current"]["sha"] == m["baseline"]["sha"]
    assert m["environment"]["mode"] == "shared" and m["python"] == sys.executable
    assert m["pytest_args"] == FAST_ARGS[1:] and m["inject_slowdown"] == "0.25"
    assert [p["order"] for p in m["pairs"]] == [["baseline", "current"], ["current", "baseline"]]
    second = m["pairs"][1]
    assert second["current"]["run"] == 3 and second["baseline"]["run"] == 4
    assert second["baseline"]["json"] == "baseline/ab-02.json" and second["baseline"]["log"] == "logs/baseline-02.log"
    assert second["baseline"]["exit_code"] == 0 and second["baseline"]["seconds"] > 0


def test_job_removes_its_worktree(ab_job):
    assert not (ab_job.dir / "baseline-src").exists()
    assert len(git(ab_job.repo, "worktree", "list").splitlines()) == 1
    assert ab_job.manifest["baseline"]["worktree_kept"] is False


def test_rounds_mode_runs_both_sides_at_once_taking_turns(tmp_path, monkeypatch):
    """A baseline that takes turns: each pair's two runs start together under one coordinator (the installed
    plugin takes the first turn at session start), and the pair is recorded with its turns."""
    monkeypatch.setattr(ab, "supports_turns", lambda source: True)
    repo = make_repo(tmp_path / "repo")
    result = run_cli(["ab", "--baseline", "HEAD", "--pairs", "2", "--out", str(tmp_path / "out"),
                      "--allow-inconclusive", *FAST_ARGS], repo)
    assert result.rc in (0, 1), result.err
    progress = [line for line in result.err.splitlines() if line.startswith("fer-bench ab: [")]
    assert len(progress) == 2 and progress[0].startswith("fer-bench ab: [1/2] pair 1: baseline ")
    assert " turns " in progress[0] and "predates" not in result.err
    m = json.loads((tmp_path / "out" / "ab.json").read_text())
    assert m["interleave"] == "rounds" and m["status"] == "done"
    for pair in m["pairs"]:
        assert pair["turns"] >= 2  # at least each side's session
        assert pair["baseline"]["exit_code"] == pair["current"]["exit_code"] == 0
        assert pair["baseline"]["run"] == pair["current"]["run"] == pair["pair"]
    for side in ("baseline", "current"):
        for n in ("01", "02"):
            assert json.loads((tmp_path / "out" / side / f"ab-{n}.json").read_text())["benchmarks"]


def test_default_out_is_ignored_by_git(tmp_path, monkeypatch):
    """Default folder inside the checkout: git status stays as it was (and a run that fails stops at once)."""
    repo = make_repo(tmp_path / "repo", baseline_fails=True)
    before = git(repo, "status", "--porcelain")
    result = run_cli(["ab", "--baseline", "HEAD", "--pairs", "2", *FAST_ARGS], repo)
    assert result.rc == 3
    log = repo / ".fer-bench-ab" / "logs" / "baseline-01.log"
    errors = [line for line in result.err.splitlines() if "error" in line]
    assert errors == [f"fer-bench ab: error: the baseline run of pair 1 failed (pytest exit 1); see {log}"]
    assert "broken" in log.read_text()
    assert not (repo / ".fer-bench-ab" / "current").exists()  # nothing ran after the failure
    manifest = json.loads((repo / ".fer-bench-ab" / "ab.json").read_text())
    assert manifest["status"] == "failed" and manifest["exit_status"] == 3
    assert manifest["pairs"][0]["baseline"]["exit_code"] == 1
    assert git(repo, "status", "--porcelain") == before
    assert not (repo / ".fer-bench-ab" / "baseline-src").exists()


def test_unknown_ref_exits_3(tmp_path):
    repo = make_repo(tmp_path / "repo")
    result = run_cli(["ab", "--baseline", "no-such-branch", "--out", str(tmp_path / "out")], repo)
    assert result.rc == 3
    assert result.err.strip().splitlines() == [
        f"fer-bench ab: error: --baseline no-such-branch: no such commit in {repo.resolve()} (in CI, check out with "
        f"fetch-depth: 0)"]
    assert not (tmp_path / "out").exists()


def test_outside_a_git_checkout_exits_3(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    (tmp_path / "plain").mkdir()
    result = run_cli(["ab", "--baseline", "HEAD"], tmp_path / "plain")
    assert result.rc == 3
    assert len(result.err.strip().splitlines()) == 1 and "is not inside a git checkout" in result.err


def test_interrupt_cleans_up_and_exits_130(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ab, "_run_side", interrupted)
    result = run_cli(["ab", "--baseline", "HEAD", "--out", str(tmp_path / "out")], repo)
    assert result.rc == 130 and result.err.strip().splitlines()[-1] == "fer-bench ab: interrupted"
    assert not (tmp_path / "out" / "baseline-src").exists()
    assert json.loads((tmp_path / "out" / "ab.json").read_text())["status"] == "interrupted"


def test_keep_worktree_and_the_gate_in_pair_order(tmp_path, monkeypatch):
    """--keep-worktree leaves it; the gate gets baseline i and current i in pair order, paired."""
    repo = make_repo(tmp_path / "repo")
    git(repo, "commit", "-q", "-a", "-m", "current")  # a clean checkout: labelled by its sha
    head = git(repo, "rev-parse", "HEAD")
    calls = {}

    def fake_gate(baseline, current, **kwargs):
        calls.update(baseline=[r.path.name for r in baseline], current=[r.path.name for r in current], **kwargs)
        return types.SimpleNamespace(rows=[], messages=["a message"], exit_status=0)

    import fer_bench.results.gate as gate

    monkeypatch.setattr(gate, "evaluate_gate", fake_gate)
    result = run_cli(["ab", "--baseline", "HEAD~1", "--pairs", "3", "--out", str(tmp_path / "out"), "--keep-worktree",
                      "--threshold", "10%", *FAST_ARGS], repo)
    assert result.rc == 0, result.err
    assert calls["baseline"] == calls["current"] == ["ab-01.json", "ab-02.json", "ab-03.json"]
    assert calls["paired"] is True and calls["threshold"] == pytest.approx(0.10)
    assert f"current {head[:7]}" in result.err and "fer-bench ab: a message" in result.err
    kept = tmp_path / "out" / "baseline-src"
    assert "LOOPS = 2000" in (kept / "benchmarks" / "test_tiny.py").read_text()
    manifest = json.loads((tmp_path / "out" / "ab.json").read_text())
    assert manifest["current"]["dirty"] is False and manifest["baseline"]["worktree_kept"] is True
    ab.remove_worktree(repo, kept)
