"""`fer-bench ab --baseline REF`: interleaved A/B runs of two commits in one job, then the paired gate.

A stored baseline was measured minutes or days ago, and a shared CI runner's speed drifts over minutes (other
tenants, clocks, thermal state), so the difference between a stored baseline and a fresh run is the runner's as
much as the code's. Here the baseline commit is checked out beside the current checkout (a git worktree) and the
two suites run alternately in the same job, in ABBA order (pair 1 baseline then current, pair 2 current then
baseline...), so drift touches both sides alike and a linear trend cancels within each two pairs. The paired gate
(fer_bench.results.gate, ``paired=True``) then judges run i of one side against run i of the other. docs/ab.md has
the CI recipe. asv's ``continuous --interleave-rounds`` is the same idea.

The baseline runs with the current interpreter (its own sources first on PYTHONPATH) when its dependency
declaration equals the current one, else in a virtual environment of its own under the output folder, made once.

An orchestrator beside fer_bench.cli, above the layers it drives: it starts benchmark processes (the turn-taking
of fer_bench.measure.turns, the slowdown knob of fer_bench.measure.slowdown, the plugin's duration wording) and
then reads their runs with fer_bench.results, which never imports it. Stdlib only at import (the gate's numpy and
scipy load after the runs): never torch.
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from fer_bench._atomic import write_json_atomic, write_text_atomic
from fer_bench.errors import FerBenchError
from fer_bench.measure.slowdown import INJECT_ENV, parse_slowdown as parse_knob  # torch-free

DEFAULT_PAIRS = 10
DEFAULT_OUT = ".fer-bench-ab"
#: What both sides run when no PYTEST_ARGS follow ``--``: the quick preset without its 30 s budget. Under a budget
#: the cases a run skips depend on how fast that run went (a pair of quick runs measured here kept 6 and 8 of its
#: 9 cases), and a case missing from one run of a pair leaves the paired gate nothing to compare (exit 2).
DEFAULT_PYTEST_ARGS = ("--fer-preset", "quick", "--fer-budget", "none")
INSTRUCTION_PYTEST_ARGS, INSTRUCTION_PAIRS = ("--fer-preset", "ci", "--fer-instructions"), 2  # counts do not drift
SIDES = ("baseline", "current")
#: How a pair's two runs interleave: their rounds, taking turns (fer_bench.measure.turns), or whole runs (ABBA).
INTERLEAVE_MODES = ("rounds", "runs")
MANIFEST = "ab.json"
MANIFEST_SCHEMA = 1
#: The stamp in the baseline's own virtual environment: the digest of the declaration it was installed from.
VENV_STAMP = ".fer-bench-ab-installed"
EXIT_BAD_INPUT, EXIT_INTERRUPTED = 3, 130
#: The files that declare the dependencies: equal declarations let the baseline share the current interpreter.
DEPENDENCY_FILES = ("setup.cfg", "pyproject.toml")


class _RunFailed(Exception):
    """A pytest run exited non-zero: already reported, the job stops with exit 3."""


# ----------------------------------------------------------------------------------------------- pure helpers


def list_run_order(pairs: int) -> list[tuple[int, str]]:
    """(pair, side) in the order the runs are made: pair i baseline then current when i is odd, current then
    baseline when i is even (ABBA: a drift that is linear over the job cancels within every two pairs)."""
    order = []
    for pair in range(1, pairs + 1):
        sides = SIDES if pair % 2 else SIDES[::-1]
        order.extend((pair, side) for side in sides)
    return order


def _requirement_lines(text: str) -> list[str]:
    """A setup.cfg list value as its entries: blank lines and comments dropped, whitespace stripped."""
    lines = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", ";")):
            lines.append(line)
    return lines


def collect_dependencies(root: str | os.PathLike) -> dict[str, Any]:
    """What a checkout declares it needs installed: setup.cfg's ``[options] install_requires`` and
    ``[options.extras_require]`` (as entries, so a reworded comment changes nothing), and pyproject.toml's bytes
    (its sha256; None when absent). Two checkouts with equal results can share one environment.

    Raises:
        FerBenchError: setup.cfg cannot be parsed (naming the file).
    """
    root = Path(root)
    deps: dict[str, Any] = {"install_requires": None, "extras_require": None, "pyproject.toml": None}
    cfg_path = root / "setup.cfg"
    if cfg_path.is_file():
        cfg = configparser.ConfigParser(interpolation=None)
        try:
            cfg.read_string(cfg_path.read_text(encoding="utf-8"), source=str(cfg_path))
        except (configparser.Error, UnicodeDecodeError) as exc:
            raise FerBenchError(f"{cfg_path}: cannot read it ({type(exc).__name__})") from None
        if cfg.has_option("options", "install_requires"):
            deps["install_requires"] = _requirement_lines(cfg.get("options", "install_requires"))
        if cfg.has_section("options.extras_require"):
            deps["extras_require"] = {name: _requirement_lines(value)
                                      for name, value in sorted(cfg.items("options.extras_require"))}
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        deps["pyproject.toml"] = hashlib.sha256(pyproject.read_bytes()).hexdigest()
    return deps


def hash_declaration(root: str | os.PathLike) -> str:
    """sha256 over the bytes of setup.cfg and pyproject.toml (absent: empty) and the Python version: what the
    baseline's own environment was installed from. Stricter than :func:`collect_dependencies` (an entry point or
    a package list is part of an install too)."""
    h = hashlib.sha256(sys.version.encode())
    for name in DEPENDENCY_FILES:
        path = Path(root) / name
        h.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    return h.hexdigest()


def create_pytest_command(python: str | os.PathLike, json_path: str | os.PathLike,
                          pytest_args: Sequence[str]) -> list[str]:
    """One run of a side's suite: its benchmarks, no cache folder written into its tree, the results as JSON."""
    return [str(python), "-m", "pytest", "benchmarks", "-p", "no:cacheprovider", "--benchmark-json",
            str(json_path), *pytest_args]


def create_run_env(environ: Mapping[str, str], source: str | os.PathLike, *,
                   inject_slowdown: str | None = None) -> dict[str, str]:
    """The environment of one side's run: ``source`` first on PYTHONPATH (its own fer_bench and benchmarks are
    imported), and FER_BENCH_INJECT_SLOWDOWN set to ``inject_slowdown`` or removed (an inherited one would slow
    both sides, or one side unnoticed)."""
    env = dict(environ)
    env.pop(INJECT_ENV, None)
    if inject_slowdown is not None:
        env[INJECT_ENV] = inject_slowdown
    rest = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(source) + (os.pathsep + rest if rest else "")
    return env


def parse_slowdown(text: str) -> str:
    """--inject-slowdown: as FER_BENCH_INJECT_SLOWDOWN accepts it (fer_bench.measure.slowdown: 0.10 or 10%, from 0
    to below 10); the text is passed on unchanged, and the runs validate it again."""
    try:
        parse_knob(text)
    except FerBenchError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction from 0 to below 10 (0.10) or a percentage "
                                         f"(10%)") from None
    return text.strip()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: the paired gate needs at least 2 pairs")
    return value


# ----------------------------------------------------------------------------------------------- git


def _git(args: Sequence[str], cwd: str | os.PathLike) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def resolve_repo(cwd: str | os.PathLike) -> Path:
    """The top of the git checkout holding ``cwd``.

    Raises:
        FerBenchError: git is missing or ``cwd`` is not in a git checkout.
    """
    try:
        done = _git(["rev-parse", "--show-toplevel"], cwd)
    except FileNotFoundError:
        raise FerBenchError("git is not installed (fer-bench ab checks the baseline out with git worktree)") from None
    if done.returncode != 0:
        raise FerBenchError(f"{Path(cwd).resolve()} is not inside a git checkout (fer-bench ab compares two commits "
                            f"of one)")
    return Path(done.stdout.strip()).resolve()


def resolve_commit(repo: Path, ref: str) -> str:
    """The commit sha ``ref`` names.

    Raises:
        FerBenchError: naming --baseline and the ref, when git knows no such commit.
    """
    done = _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], repo)
    if done.returncode != 0 or not done.stdout.strip():
        raise FerBenchError(f"--baseline {ref}: no such commit in {repo} (in CI, check out with fetch-depth: 0)")
    return done.stdout.strip()


def _head(repo: Path) -> str | None:
    done = _git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], repo)
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def _is_dirty(repo: Path) -> bool:
    done = _git(["status", "--porcelain"], repo)
    return done.returncode == 0 and bool(done.stdout.strip())


def ensure_worktree(repo: Path, path: Path, sha: str) -> bool:
    """A detached worktree of ``sha`` at ``path``: reused when one is there at that commit with no changes, else
    (re)made. Returns whether it was reused.

    Raises:
        FerBenchError: git cannot add the worktree (its message, on one line).
    """
    if path.exists():
        here = _git(["rev-parse", "--show-toplevel"], path)
        same_tree = here.returncode == 0 and Path(here.stdout.strip()).resolve() == path.resolve()
        if same_tree and _head(path) == sha and not _is_dirty(path):
            return True
        remove_worktree(repo, path)
    done = _git(["worktree", "add", "--detach", str(path), sha], repo)
    if done.returncode != 0:
        reason = " ".join(done.stderr.split()) or f"git exit {done.returncode}"
        raise FerBenchError(f"git worktree add {path} {sha[:12]}: {reason}")
    return False


def remove_worktree(repo: Path, path: Path) -> None:
    """Remove the worktree at ``path`` and git's record of it; a leftover folder that is no worktree goes too (it
    lies in fer-bench ab's own output folder)."""
    _git(["worktree", "remove", "--force", str(path)], repo)
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    _git(["worktree", "prune"], repo)


# ----------------------------------------------------------------------------------------------- environments


@dataclass
class SideSetup:
    """How one side runs: its interpreter, its source tree (cwd and first on PYTHONPATH), its label."""

    side: str
    python: str
    source: Path
    label: str


def _check_imports_own_tree(python: str, source: Path, env: Mapping[str, str]) -> None:
    """A tree that holds fer_bench must import its own copy, not the installed one: one subprocess, once."""
    if not (source / "fer_bench" / "__init__.py").is_file():
        return  # a suite that uses fer_bench as an installed dependency: nothing of its own to shadow
    # run from beside the tree, not in it: the cwd would come first on sys.path and hide what PYTHONPATH does
    done = subprocess.run([python, "-c", "import fer_bench; print(fer_bench.__file__)"], cwd=source.parent,
                          env=dict(env), capture_output=True, text=True)
    found = done.stdout.strip()
    if done.returncode != 0 or not found:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise FerBenchError(f"the baseline in {source} cannot import fer_bench with {python}: {last}")
    if not Path(found).resolve().is_relative_to(source.resolve()):
        raise FerBenchError(f"the baseline imports fer_bench from {found}, not from its worktree {source}; remove "
                            f"what puts that copy first (a PYTHONPATH entry, a non-editable install)")


def ensure_baseline_venv(venv_dir: Path, source: Path, log_path: Path) -> tuple[str, bool]:
    """The baseline's own virtual environment (``pip install -e <source>[dev]``), reused while its stamp holds
    the same declaration digest. Returns its python and whether it was reused.

    Raises:
        FerBenchError: creating or installing failed (naming the log).
    """
    python = venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    stamp = venv_dir / VENV_STAMP
    digest = hash_declaration(source)
    if python.exists() and stamp.is_file() and stamp.read_text().strip() == digest:
        return str(python), True
    print(f"fer-bench ab: the baseline declares other dependencies: installing them into {venv_dir} (minutes, "
          f"once; reused while they stay the same)", file=sys.stderr, flush=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        for cmd in ([sys.executable, "-m", "venv", "--clear", str(venv_dir)],
                    [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-e", f"{source}[dev]"]):
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=source).returncode
            if rc != 0:
                raise FerBenchError(f"setting up the baseline's environment failed (exit {rc}); see {log_path}")
    write_text_atomic(stamp, digest + "\n")
    return str(python), False


# ----------------------------------------------------------------------------------------------- the job


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _relative(path: Path, out: Path) -> str:
    try:
        return str(path.relative_to(out))
    except ValueError:
        return str(path)


def _clear_previous(out: Path) -> None:
    """Runs and logs of an earlier job in this folder go, so the folder shows one job (ab.json says which)."""
    for pattern in ("baseline/ab-*.json", "current/ab-*.json", "logs/baseline-*.log", "logs/current-*.log"):
        for old in out.glob(pattern):
            old.unlink()


def _start_side(setup: SideSetup, cmd: list[str], env: Mapping[str, str], log_path: Path):
    """Start one side's run; returns the process and its open log (closed by the caller)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")
    log.write("$ " + " ".join(cmd) + f"\n# cwd {setup.source}\n")
    log.flush()
    return subprocess.Popen(cmd, cwd=setup.source, env=dict(env), stdout=log, stderr=subprocess.STDOUT), log


def _run_side(setup: SideSetup, cmd: list[str], env: Mapping[str, str], log_path: Path) -> int:
    proc, log = _start_side(setup, cmd, env, log_path)
    with log:
        try:
            return proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise


def supports_turns(source: str | os.PathLike) -> bool:
    """Whether a checkout's suite takes turns under FER_BENCH_TURNS (fer_bench.measure.turns, added with
    ``--interleave rounds``): an older baseline runs run by run instead."""
    return (Path(source) / "fer_bench" / "measure" / "turns.py").is_file()


def _gate(args: argparse.Namespace, manifest: dict, out: Path) -> int:
    """The paired gate over the runs, in pair order: the report on stdout, its messages on stderr."""
    from fer_bench.results.gate import evaluate_gate, format_gate_text
    from fer_bench.results.runs import load_results

    by_side: dict[str, list] = {side: [] for side in SIDES}
    for pair in manifest["pairs"]:
        for side in SIDES:
            by_side[side].extend(load_results([out / pair[side]["json"]]))
    report = evaluate_gate(
        by_side["baseline"], by_side["current"], metric=args.metric, threshold=args.threshold, alpha=args.alpha,
        allow_other_machine=False, allow_missing=args.allow_missing, allow_inconclusive=args.allow_inconclusive,
        paired=True, scope=args.scope or ("cases" if args.metric == "instructions" else "suite"),
    )
    if report.rows:
        print(format_gate_text(report), flush=True)
    for message in report.messages:
        print(f"fer-bench ab: {message}", file=sys.stderr)
    return report.exit_status


def resolve_ab_args(args: argparse.Namespace) -> list[str]:
    """Settle the metric's threshold and pairs in ``args``; both sides' pytest arguments (--metric instructions adds
    --fer-instructions where they lack it)."""
    from fer_bench.results.gate.verdict import resolve_threshold

    counting = args.metric == "instructions"
    args.threshold = resolve_threshold(args.threshold, args.metric)
    args.pairs = args.pairs or (INSTRUCTION_PAIRS if counting else DEFAULT_PAIRS)
    pytest_args = list(args.pytest_args or (INSTRUCTION_PYTEST_ARGS if counting else DEFAULT_PYTEST_ARGS))
    return pytest_args + ["--fer-instructions"] * (counting and "--fer-instructions" not in pytest_args)


def run_ab(args: argparse.Namespace, cwd: str | os.PathLike | None = None) -> int:
    """The whole job; FerBenchError and KeyboardInterrupt propagate (after the worktree is cleaned up)."""
    pytest_args = resolve_ab_args(args)
    repo = resolve_repo(cwd or os.getcwd())
    sha = resolve_commit(repo, args.baseline)
    current_sha, dirty = _head(repo), _is_dirty(repo)  # before the output folder exists inside the checkout
    out = Path(args.out).resolve() if args.out else repo / DEFAULT_OUT
    out.mkdir(parents=True, exist_ok=True)
    if out.is_relative_to(repo) and not (out / ".gitignore").exists():
        write_text_atomic(out / ".gitignore", "# fer-bench ab's output: never part of the checkout\n*\n")
    worktree = out / "baseline-src"
    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA, "tool": "fer-bench ab", "status": "preparing", "started": _now(), "finished": None,
        "repo": str(repo), "out": str(out),
        "baseline": {"ref": args.baseline, "sha": sha, "source": str(worktree)},
        "current": {"sha": current_sha, "dirty": dirty, "source": str(repo)},
        "python": sys.executable, "python_version": sys.version.split()[0],
        "environment": None, "pytest_args": pytest_args, "inject_slowdown": args.inject_slowdown,
        "interleave": args.interleave, "pair_count": args.pairs, "pairs": [], "gate": None, "exit_status": None,
    }
    manifest_path = out / MANIFEST
    write_json_atomic(manifest_path, manifest)
    _clear_previous(out)
    try:
        reused = ensure_worktree(repo, worktree, sha)
        manifest["baseline"]["worktree_reused"] = reused
        shared = collect_dependencies(worktree) == collect_dependencies(repo)
        if shared:
            baseline_python = sys.executable
            mode = {"mode": "shared", "baseline_python": baseline_python}
        else:
            venv_dir = out / "baseline-venv"
            baseline_python, venv_reused = ensure_baseline_venv(venv_dir, worktree, out / "logs" / "baseline-venv.log")
            mode = {"mode": "own venv", "baseline_python": baseline_python, "venv": str(venv_dir),
                    "venv_reused": venv_reused}
        manifest["environment"] = mode
        current_label = "current (working tree)" if dirty or not current_sha else f"current {current_sha[:7]}"
        setups = {
            "baseline": SideSetup("baseline", baseline_python, worktree, f"baseline {sha[:7]}"),
            "current": SideSetup("current", sys.executable, repo, current_label),
        }
        envs = {side: create_run_env(os.environ, setups[side].source,
                                     inject_slowdown=args.inject_slowdown if side == "current" else None)
                for side in SIDES}
        _check_imports_own_tree(baseline_python, worktree, envs["baseline"])
        if manifest["interleave"] == "rounds" and not supports_turns(worktree):
            manifest["interleave"] = "runs"
            print(f"fer-bench ab: the baseline {sha[:7]} predates turn-taking (fer_bench/measure/turns.py): its runs "
                  f"alternate with the current side's run by run (--interleave runs)", file=sys.stderr, flush=True)
        manifest["status"] = "running"
        _run_pairs(args, manifest, manifest_path, out, setups, envs, pytest_args)
        manifest["status"] = "gating"
        write_json_atomic(manifest_path, manifest)
        status = _gate(args, manifest, out)
        manifest.update(status="done", gate={"exit_status": status, "metric": args.metric,
                                             "threshold": args.threshold, "alpha": args.alpha})
        manifest["exit_status"] = status
        return status
    except _RunFailed:
        manifest.update(status="failed", exit_status=EXIT_BAD_INPUT)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        manifest.update(status="interrupted", exit_status=EXIT_INTERRUPTED)
        raise
    except FerBenchError:
        manifest.update(status="error", exit_status=EXIT_BAD_INPUT)
        raise
    finally:
        manifest["finished"] = _now()
        if not args.keep_worktree:
            remove_worktree(repo, worktree)
        manifest["baseline"]["worktree_kept"] = bool(args.keep_worktree)
        write_json_atomic(manifest_path, manifest)


def _run_pairs(args: argparse.Namespace, manifest: dict, manifest_path: Path, out: Path,
               setups: Mapping[str, SideSetup], envs: Mapping[str, Mapping[str, str]],
               pytest_args: Sequence[str]) -> None:
    from fer_bench.plugin.budget import format_duration  # torch-free: the benchmark run's own wording

    order = list_run_order(args.pairs)
    rounds = manifest["interleave"] == "rounds"
    total = args.pairs if rounds else len(order)
    pairs: dict[int, dict] = {}
    n = 0
    for pair in range(1, args.pairs + 1):
        sides = [s for p, s in order if p == pair]
        pairs[pair] = {"pair": pair, "order": sides}
        manifest["pairs"].append(pairs[pair])
        paths = {side: (out / side / f"ab-{pair:02d}.json", out / "logs" / f"{side}-{pair:02d}.log") for side in sides}
        cmds = {side: create_pytest_command(setups[side].python, paths[side][0], pytest_args) for side in sides}
        if rounds:
            for json_path, _ in paths.values():
                json_path.parent.mkdir(parents=True, exist_ok=True)
            n += 1
            codes, seconds, turns = _run_pair_in_turns(setups, envs, cmds, paths, sides)
            label = f"pair {pair}: {setups['baseline'].label} and {setups['current'].label}, {turns} turns"
            results = [(side, n, codes[side], seconds[side]) for side in sides]
            pairs[pair]["turns"] = turns
            for side, run, rc, secs in results:
                pairs[pair][side] = _run_record(run, paths[side], out, rc, secs)
        else:
            results = []
            for side in sides:
                n += 1
                paths[side][0].parent.mkdir(parents=True, exist_ok=True)
                started = time.monotonic()
                rc = _run_side(setups[side], cmds[side], envs[side], paths[side][1])
                results.append((side, n, rc, time.monotonic() - started))
                pairs[pair][side] = _run_record(n, paths[side], out, rc, results[-1][3])
                write_json_atomic(manifest_path, manifest)
                print(f"fer-bench ab: [{n}/{total}] {setups[side].label} {format_duration(results[-1][3])}",
                      file=sys.stderr, flush=True)
                if rc != 0:
                    break
            label = None
        write_json_atomic(manifest_path, manifest)  # an interrupted job still shows how far it got
        if label is not None:
            print(f"fer-bench ab: [{n}/{total}] {label} {format_duration(max(s for *_, s in results))}",
                  file=sys.stderr, flush=True)
        for side, run, rc, _ in results:
            if rc != 0:
                print(f"fer-bench ab: error: the {side} run of pair {pair} failed (pytest exit {rc}); see "
                      f"{paths[side][1]}", file=sys.stderr)
                raise _RunFailed


def _run_record(run: int, paths: tuple[Path, Path], out: Path, rc: int, seconds: float) -> dict:
    return {"run": run, "json": _relative(paths[0], out), "log": _relative(paths[1], out), "exit_code": rc,
            "seconds": round(seconds, 3)}


def _run_pair_in_turns(setups: Mapping[str, SideSetup], envs: Mapping[str, Mapping[str, str]],
                       cmds: Mapping[str, list[str]], paths: Mapping[str, tuple[Path, Path]],
                       sides: Sequence[str]) -> tuple[dict, dict, int]:
    """Both sides' runs at once, taking turns (fer_bench.measure.turns): exit codes, seconds, turns handed out."""
    import tempfile

    from fer_bench.measure.turns import TURNS_ENV, TurnServer

    # a Unix socket path must stay short (about 100 bytes): a private temporary folder, not the output folder
    folder = tempfile.mkdtemp(prefix="fer-bench-ab-")
    procs: dict[str, Any] = {}
    logs = []
    codes, seconds = {}, {}
    try:
        with TurnServer(os.path.join(folder, "turns.sock")) as server:
            started = time.monotonic()
            for side in sides:
                env = {**envs[side], TURNS_ENV: server.path}
                procs[side], log = _start_side(setups[side], cmds[side], env, paths[side][1])
                logs.append(log)
            pending = dict(procs)
            while pending:
                for side, proc in list(pending.items()):
                    rc = proc.poll()
                    if rc is not None:
                        codes[side], seconds[side] = rc, time.monotonic() - started
                        del pending[side]
                if pending:
                    time.sleep(0.05)
            turns = len(server.grants)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
        shutil.rmtree(folder, ignore_errors=True)
    return codes, seconds, turns


# ----------------------------------------------------------------------------------------------- CLI


def add_ab_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `fer-bench ab` (the gate's validators: the paired gate decides)."""
    from fer_bench.results.gate import add_verdict_arguments

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.usage = ("%(prog)s --baseline REF [--pairs N] [--out DIR] [--threshold 5%%] [--alpha 0.01] "
                    "[--metric ...]\n                    [--interleave rounds|runs] [--allow-inconclusive] "
                    "[--allow-missing] [--keep-worktree]\n                    [--inject-slowdown F] "
                    "[-- PYTEST_ARGS...]")
    parser.description = (
        "Check REF out beside this checkout (git worktree) and run both benchmark suites alternately in this job\n"
        "(ABBA pairs), so the machine's drift touches both alike; then gate the pairs with the paired gate.\n"
        "The current side is the working tree, uncommitted changes included. docs/ab.md has the CI recipe."
    )
    parser.epilog = ("exit status: 0 no regression, 1 regression, 2 not comparable, 3 bad input or a failed run "
                     "(one line\non stderr naming its log), 4 inconclusive (--allow-inconclusive: 0), 130 "
                     "interrupted.")
    parser.add_argument("--baseline", required=True, metavar="REF",
                        help="the commit to compare with: a branch, tag or sha (origin/main)")
    parser.add_argument("--pairs", type=_positive_int, default=None, metavar="N", help=f"pairs of runs (2 runs "
                        f"each, at least 2). Default: {DEFAULT_PAIRS}; {INSTRUCTION_PAIRS} with --metric instructions")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help=f"the runs, logs, ab.json and the baseline's worktree. Default: <repo>/{DEFAULT_OUT}")
    add_verdict_arguments(parser)
    parser.add_argument("--interleave", choices=INTERLEAVE_MODES, default="rounds",
                        help="rounds: each pair's two runs start together and take turns round by round (one "
                             "process works at a time); runs: one run after the other, ABBA. A baseline older "
                             "than turn-taking falls back to runs. Default: %(default)s")
    parser.add_argument("--keep-worktree", action="store_true",
                        help="leave the baseline's worktree in DIR/baseline-src (reused by the next job at that "
                             "commit)")
    parser.add_argument("--inject-slowdown", type=parse_slowdown, default=None, metavar="F",
                        help=f"calibration: set {INJECT_ENV}=F (0.10 or 10%%) for the current side's runs only, a "
                             f"known real slowdown the gate should find. Default: unset on both sides")
    parser.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARGS",
                        help=f"after --: what both sides' pytest gets. Default: {' '.join(DEFAULT_PYTEST_ARGS)}; "
                             f"--metric instructions: {' '.join(INSTRUCTION_PYTEST_ARGS)} (and adds the option)")


def cmd_ab(args: argparse.Namespace) -> int:
    """Run the job; the exit status is the gate's verdict. Bad input or a failed run: one line, 3; Ctrl-C: 130."""
    try:
        return run_ab(args)
    except FerBenchError as exc:
        print(f"fer-bench ab: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("fer-bench ab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
