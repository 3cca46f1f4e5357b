#!/usr/bin/env python3
"""Run fer_bench from a fresh checkout with nothing but Python 3.10+ and pip.

    python3 dev.py bench [PYTEST_ARGS...]   # the default benchmark run on this machine, results under results/
    python3 dev.py test  [PYTEST_ARGS...]   # the test suite
    python3 dev.py compat [PAIR...] [PYTEST_ARGS...]  # the plugin tests with older pytest + pytest-benchmark pairs
    python3 dev.py setup                    # only create or refresh .venv, and print the line that activates it
    python3 dev.py docs [--check]           # regenerate (or check) README.md's and docs/*.md's generated blocks

All create (or refresh) a virtual environment in .venv with `pip install -e .[dev]`, then run pytest inside it.
`test` installs and starts no system software: a test that would (the SLURM recipe's single-node SLURM, Chromium for
the report) skips with the command that allows it, FER_BENCH_SYSTEM_INSTALL=1 (CI=true allows it too).
`compat` also installs each pair (pt81-pb51: pytest 8.1, pytest-benchmark 5.1; every pair by default) once into
.venv/compat/<pair>/ and puts that folder first on PYTHONPATH. FER_BENCH_VENV names another environment folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("FER_BENCH_VENV", ROOT / ".venv"))
STAMP = VENV / ".fer_bench-installed"

# (pytest, pytest-benchmark) pairs that `compat` and tox.ini's environments of the same names test the plugin with,
# besides .venv's own (the newest that setup.cfg allows, tested by `dev.py test`): the oldest pytest with the oldest
# pytest-benchmark, and pytest-benchmark 5.2 with the newest pytest it works with. pytest 9.2 removed Node._nodeid,
# which pytest-benchmark before 5.3.1 reads; pip cannot express that pair rule, so the plugin refuses the pair with
# one line when pytest configures. tests/test_compat.py checks this list against setup.cfg and tox.ini.
COMPAT_PAIRS = [
    ("8.1.2", "5.1.0"),
    ("9.1.1", "5.2.3"),
]
COMPAT_TESTS = ["tests/test_plugin.py", "tests/test_native_gate.py"]  # and every tests/test_compat*.py


def _python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _requirements_digest() -> str:
    h = hashlib.sha256()
    for name in ("setup.cfg", "pyproject.toml"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def ensure_venv() -> Path:
    """Create .venv and install the project into it, unless it is already installed from this setup.cfg."""
    if sys.version_info < (3, 10):
        sys.exit(f"dev.py: error: fer_bench needs Python 3.10 or newer, this is {sys.version.split()[0]}")
    digest = _requirements_digest()
    if _python().exists() and STAMP.exists() and STAMP.read_text().strip() == digest:
        return _python()
    if not _python().exists():
        print(f"dev.py: creating virtual environment {VENV}", flush=True)
        try:
            venv.EnvBuilder(with_pip=True).create(VENV)
        except Exception as exc:  # ensurepip missing on some distributions
            sys.exit(f"dev.py: error: could not create {VENV} ({exc}); install your distribution's python3-venv")
    print("dev.py: installing fer_bench and its dependencies (torch is large: this takes a few minutes once)",
          flush=True)
    pip = [str(_python()), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run(pip + ["install", "-q", "--upgrade", "pip"], check=False)
    subprocess.run(pip + ["install", "-q", "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(digest + "\n")
    return _python()


def pair_name(pytest_version: str, benchmark_version: str) -> str:
    """``pt81-pb51`` for pytest 8.1.x with pytest-benchmark 5.1.x: the name in `dev.py compat` and in tox.ini."""
    def short(version: str) -> str:
        return "".join(version.split(".")[:2])
    return f"pt{short(pytest_version)}-pb{short(benchmark_version)}"


def _compat_overlay(python: Path, pins: list[str], folder: Path) -> None:
    """Install the pair alone (--no-deps: their small dependencies come from .venv) into folder, once."""
    stamp = folder / ".fer_bench-installed"
    if stamp.exists() and stamp.read_text().split() == pins:
        return
    shutil.rmtree(folder, ignore_errors=True)
    print(f"dev.py: installing {' '.join(pins)} into {folder}", flush=True)
    subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "install", "-q", "--no-deps",
                    "--target", str(folder), *pins], check=True)
    stamp.write_text(" ".join(pins) + "\n")


def compat(python: Path, args: list[str]) -> int:
    """The plugin tests once per pair, one pair after another (the gate tests time sleeps: no parallel runs)."""
    pairs = {pair_name(*pair): pair for pair in COMPAT_PAIRS}
    named = [a for a in args if re.fullmatch(r"pt\d+-pb\d+", a)]
    pytest_args = [a for a in args if a not in named]
    chosen = named or list(pairs)
    unknown = [name for name in chosen if name not in pairs]
    if unknown:
        print(f"dev.py: error: {', '.join(unknown)}: not a pair; valid: {', '.join(pairs)}", file=sys.stderr)
        return 2
    tests = COMPAT_TESTS + sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").glob("test_compat*.py"))
    summary = []
    for name in chosen:
        pins = [f"pytest=={pairs[name][0]}", f"pytest-benchmark=={pairs[name][1]}"]
        folder = VENV / "compat" / name
        try:
            _compat_overlay(python, pins, folder)
        except subprocess.CalledProcessError as exc:
            summary.append((name, f"FAILED: installing {' '.join(pins)} failed (exit {exc.returncode})"))
            continue
        env = dict(os.environ, FER_BENCH_COMPAT_PAIR=" ".join(pins),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))
        cmd = [str(python), "-m", "pytest", *tests, *pytest_args]
        print(f"dev.py: {name}: PYTHONPATH={env['PYTHONPATH']} " + " ".join(cmd[1:]), flush=True)
        start = time.monotonic()
        returncode = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        result = "passed" if returncode == 0 else f"FAILED (pytest exit {returncode})"
        summary.append((name, f"{result} in {time.monotonic() - start:.0f}s ({' '.join(pins)})"))
    for name, line in summary:
        print(f"dev.py: compat {name}: {line}", flush=True)
    return 0 if all(line.startswith("passed") for _, line in summary) else 1


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"bench", "test", "setup", "compat", "docs"}:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    try:
        python = ensure_venv()
    except subprocess.CalledProcessError as exc:
        print(f"dev.py: error: installing dependencies failed (exit {exc.returncode})", file=sys.stderr)
        return 1
    if command == "setup":
        activate = VENV / ("Scripts/activate" if os.name == "nt" else "bin/activate")
        print(f"dev.py: {VENV} is ready; to put fer-bench and pytest on PATH: source {activate}", flush=True)
        return 0
    if command == "docs":
        return subprocess.run([str(python), str(ROOT / "scripts" / "docs.py"), *rest], cwd=ROOT).returncode
    if command == "compat":
        return compat(python, rest)
    if command == "test":
        cmd = [str(python), "-m", "pytest", "tests", *rest]
    else:
        cmd = [str(python), "-m", "pytest", "benchmarks", "--fer-save", *rest]
    print("dev.py: " + " ".join(cmd[1:]), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
