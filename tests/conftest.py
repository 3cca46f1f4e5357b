"""The test suite's own settings: warnings are errors in the tests, never in a benchmark run.

tox.ini's [pytest] section is the only config file pytest reads, for `pytest tests` and `pytest benchmarks` alike. An
`error` filter there turned pytest-benchmark's own warnings into tracebacks in benchmark runs ('Not saving anything'
after an all-skipped run, 'Benchmark fixture was not used at all' after a failed case), so the ini keeps only the
targeted ignores and this conftest, which pytest loads only for items under tests/, makes the rest errors here.
"""

from __future__ import annotations

import pytest


def pytest_itemcollected(item: pytest.Item) -> None:
    # item.ihook calls this hook only for items under tests/, however pytest was invoked. pytest applies the ini's
    # filters, then each filterwarnings mark of the item, closest first, the last applied winning: so this mark goes
    # first of all (append=False), and after `error` it applies the ini's ignores again, which a mark outranks.
    # A test's own filterwarnings mark still outranks both.
    filters = ["error", *item.config.getini("filterwarnings")]
    item.add_marker(pytest.mark.filterwarnings(*filters), append=False)
