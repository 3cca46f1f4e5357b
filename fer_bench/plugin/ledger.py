"""RunLedger: the per-item hooks of an active session (the time budget's ledger, each result's wall time, the
progress line)."""

from __future__ import annotations

import pytest

from fer_bench.plugin.session import FerSession
from fer_bench.plugin.state import get_session


class RunLedger:
    """Per-item hooks of an active session (registered when fer_bench activates): the budget's ledger, each
    result's wall time, the progress line. The log hooks get no config, so this object holds it."""

    def __init__(self, config):
        self.config = config

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self, nodeid, location):
        fer = get_session(self.config)
        if fer.budget is not None:
            fer.budget.start(nodeid)
        if fer.keeper is not None:
            fer.keeper.case_started(nodeid)

    def pytest_runtest_logreport(self, report):
        keeper = get_session(self.config).keeper
        if keeper is not None:
            keeper.case_report(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        """Nothing of the budget left: skip before the case's fixtures build anything."""
        budget = get_session(self.config).budget
        if budget is not None and budget.current == item.nodeid:
            reason = budget.spent_reason()
            if reason:
                from fer_bench.plugin.budget import skip_case

                skip_case(reason)

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        """A fixture wider than one test (session, module) is built by whichever item needs it first: the budget
        leaves its time out of what that item tells of its own cost."""
        budget = get_session(self.config).budget
        if budget is None or fixturedef.scope == "function":
            return (yield)
        start = budget.clock()
        try:
            return (yield)
        finally:
            budget.add_shared(budget.clock() - start)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self, nodeid, location):
        """Close the item in the ledger, record its wall time, and print the progress line."""
        fer = get_session(self.config)
        budget = fer.budget
        if budget is None or nodeid not in budget.left:
            if fer.keeper is not None:
                fer.keeper.case_finished(nodeid)
            return
        wall = budget.finish(nodeid)
        fixture, fer.case_benchmark = fer.case_benchmark, None
        if fixture is not None and isinstance(getattr(fixture, "extra_info", None), dict):
            fixture.extra_info["case_wall_s"] = round(wall, 3)  # setup, build and teardown included
            if budget.shared.get(nodeid):  # of which the run's shared setup (the data set, a session fixture)
                fixture.extra_info["case_shared_s"] = round(budget.shared[nodeid], 3)
        if fer.keeper is not None:  # with its wall time: on disk before the next case starts
            fer.keeper.case_finished(nodeid)
        print_progress(self.config, fer, nodeid, wall)


def print_progress(config, fer: FerSession, nodeid: str, wall: float) -> None:
    from fer_bench.plugin.progress import Throttle, format_progress

    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    budget = fer.budget
    if fer.progress_throttle is None:
        tty = bool(getattr(reporter, "isatty", False))
        fer.progress_throttle = Throttle.for_mode(fer.options.progress, tty) or False
    throttle = fer.progress_throttle
    if not throttle or not throttle.should_print(budget.clock(), last=budget.remaining == 0):
        return
    name = nodeid.split("::")[-1]
    note = "skipped: over the time budget" if nodeid in budget.skipped else ""
    line = format_progress(fer.item_index.get(nodeid, 0), fer.total_items, name, wall, budget.elapsed(),
                           budget.estimate_left(), note)
    if reporter.verbosity < 0:  # -q writes its dots with no file name and keeps no line state: frame the line
        reporter.write("\n" + line + "\n")
        return
    # no newline after it: pytest starts its next line (a file's dots, a -v result, the summary) with one, so the
    # progress line adds no blank line
    reporter.ensure_newline()
    reporter.write(line)
