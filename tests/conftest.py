"""The test suite's own settings: warnings are errors in the tests, never in a benchmark run.

tox.ini's [pytest] section is the only config file pytest reads, for `pytest tests` and `pytest benchmarks` alike. An
`error` filter there turned pytest-benchmark's own warnings into tracebacks in benchmark runs ('Not saving anything'
after an all-skipped run, 'Benchmark fixture was not used at all' after a failed case), so the ini keeps only the
targeted ignores and this conftest, which pytest loads only for items under tests/, makes the rest errors here.

Tests that would install packages or start daemons (SLURM, a browser) ask first, through the system_install fixture.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def pytest_itemcollected(item: pytest.Item) -> None:
    # item.ihook calls this hook only for items under tests/, however pytest was invoked. pytest applies the ini's
    # filters, then each filterwarnings mark of the item, closest first, the last applied winning: so this mark goes
    # first of all (append=False), and after `error` it applies the ini's ignores again, which a mark outranks.
    # A test's own filterwarnings mark still outranks both.
    filters = ["error", *item.config.getini("filterwarnings")]
    item.add_marker(pytest.mark.filterwarnings(*filters), append=False)


SYSTEM_INSTALL = "FER_BENCH_SYSTEM_INSTALL"


def system_install_allowed(environ: dict[str, str]) -> bool:
    """True under CI (CI=true, as GitHub Actions and .ci/run's CI set it) or with FER_BENCH_SYSTEM_INSTALL=1."""
    return environ.get("CI", "").lower() in ("true", "1") or environ.get(SYSTEM_INSTALL) == "1"


@pytest.fixture
def system_install(request):
    """Call it with what a test would install or start on this machine before doing so: it skips the test, naming
    that and the command that allows it, unless CI=true or FER_BENCH_SYSTEM_INSTALL=1.

        def test_x(system_install):
            system_install("apt-get install chromium (scripts/install_browser.sh)")
    """
    def ask(what: str) -> None:
        if not system_install_allowed(os.environ):
            command = f"{SYSTEM_INSTALL}=1 python3 dev.py test -k {request.node.originalname}"
            pytest.skip(f"this test would change the machine ({what}); allow it with {command} (CI=true allows it too)")
    return ask


LOCAL_SLURM_MARK = "# Written by scripts/slurm/setup_local.sh"  # the first line of the slurm.conf it writes
SLURM_SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "slurm"


def slurm_conf() -> Path:
    return Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"))


def is_local_test_slurm(conf: Path) -> bool:
    try:
        return conf.read_text(errors="replace").startswith(LOCAL_SLURM_MARK)
    except OSError:
        return False


def slurm_daemons_running() -> bool:
    return any(subprocess.run(["pgrep", "-x", name], capture_output=True).returncode == 0
               for name in ("slurmctld", "slurmd", "munged"))


@pytest.fixture
def local_slurm(system_install):
    """The single-node test SLURM of scripts/slurm/setup_local.sh, installed and started for the test (asked
    first: system_install) and stopped after it if it was not running before. Skips on a machine with a SLURM of
    its own (the tests submit to the local test cluster only), without apt-get, or without root."""
    sbatch, conf = shutil.which("sbatch"), slurm_conf()
    if sbatch is not None and not is_local_test_slurm(conf):
        pytest.skip(f"this machine has a SLURM of its own ({sbatch}; {conf} is not setup_local.sh's): the test "
                    "submits only to the local test SLURM; scripts/slurm/run_recipe.sh submits the recipe to this one")
    if sbatch is None and shutil.which("apt-get") is None:
        pytest.skip("no SLURM and no apt-get to install it (scripts/slurm/setup_local.sh needs Debian)")
    if os.geteuid() != 0:
        pytest.skip("installing and starting SLURM needs root (scripts/slurm/setup_local.sh)")
    system_install("scripts/slurm/setup_local.sh: apt-get install slurm-wlm munge, /etc/slurm and /etc/munge, "
                   "slurmctld, slurmd and munged started")
    started_here = not slurm_daemons_running()
    try:
        setup = subprocess.run([str(SLURM_SCRIPTS / "setup_local.sh")], capture_output=True, text=True, timeout=600)
        assert setup.returncode == 0, setup.stdout[-2000:] + setup.stderr[-2000:]
        yield
    finally:
        if started_here:  # leave the machine's daemons as the test found them
            subprocess.run([str(SLURM_SCRIPTS / "setup_local.sh"), "--stop"], capture_output=True, timeout=120)
