#!/usr/bin/env python3
"""Run fer_bench from a fresh checkout with nothing but Python 3.10+ and pip.

    python3 dev.py bench [PYTEST_ARGS...]   # the default benchmark run on this machine, results under results/
    python3 dev.py test  [PYTEST_ARGS...]   # the test suite

Both create (or refresh) a virtual environment in .venv with `pip install -e .[dev]`, then run pytest inside it.
FER_BENCH_VENV names another environment folder.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("FER_BENCH_VENV", ROOT / ".venv"))
STAMP = VENV / ".fer_bench-installed"


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


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"bench", "test", "setup"}:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    try:
        python = ensure_venv()
    except subprocess.CalledProcessError as exc:
        print(f"dev.py: error: installing dependencies failed (exit {exc.returncode})", file=sys.stderr)
        return 1
    if command == "setup":
        return 0
    if command == "test":
        cmd = [str(python), "-m", "pytest", "tests", *rest]
    else:
        cmd = [str(python), "-m", "pytest", "benchmarks", "--fer-save", *rest]
    print("dev.py: " + " ".join(cmd[1:]), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
