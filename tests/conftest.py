"""The test suite's own settings: warnings are errors in the tests, never in a benchmark run.

tox.ini's [pytest] section is the only config file pytest reads, for `pytest tests` and `pytest benchmarks` alike. An
`error` filter there turned pytest-benchmark's own warnings into tracebacks in benchmark runs ('Not saving anything'
after an all-skipped run, 'Benchmark fixture was not used at all' after a failed case), so the ini keeps only the
targeted ignores and this conftest, which pytest loads only for items under tests/, makes the rest errors here.

Tests that would install packages or start daemons (SLURM, a browser) ask first, through the system_install fixture.
"""

from __future__ import annotations

import os

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
