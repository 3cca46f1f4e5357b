"""What fer_bench writes after a run or a --collect-only: the budget's summary, the cost of a preset, the stored
times the budget starts from."""

from __future__ import annotations

from typing import Sequence

from fer_bench.plugin.presets import PRESETS
from fer_bench.plugin.session import FerSession
from fer_bench.plugin.state import get_session


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = get_session(config)
    if not session.active:
        return
    if session.baseline_path is not None:
        terminalreporter.write_sep("-", "fer_bench: baseline")
        terminalreporter.write_line(f"compared with {session.baseline_path} (newest stored run of this hardware)")
    for line in session.gate_problems:
        terminalreporter.write_line(f"fer_bench: {line}", red=line.startswith("FAILED"))
    if session.recorder.overheads:
        terminalreporter.write_sep("-", "fer_bench: harness overhead (train step vs bare loop, paired)")
        for case, overhead in session.recorder.overheads.items():
            terminalreporter.write_line(f"{case}: {overhead:+.1%}")
    for note in session.recorder.emulated:
        terminalreporter.write_line(f"fer_bench: {note}", yellow=True)
    for line in describe_left_out_emulated(session):
        terminalreporter.write_line(f"fer_bench: {line}", yellow=True)
    for line in session.recorder.missed_targets:
        terminalreporter.write_line(f"fer_bench: {line}", yellow=True)
    summarize_contention(terminalreporter, config)
    if session.recorder.launch_bound:
        terminalreporter.write_sep("-", "fer_bench: launch-bound steps (the GPU waits for kernel launches)")
        for line in session.recorder.launch_bound:
            terminalreporter.write_line(line)
    if session.deselected_groups:
        terminalreporter.write_line(f"fer_bench: preset {session.preset_name} leaves out "
                                    f"{', '.join(session.deselected_groups)} (deselected; another preset runs them)")
    summarize_budget(terminalreporter, config, session)
    if session.keeper is not None:
        interrupted = session.keeper.incomplete is not None
        for line in session.keeper.summary_lines():
            terminalreporter.write_line(line, yellow=interrupted)
    for path in session.sidecars:
        terminalreporter.write_line(f"fer_bench: fingerprint written to {path}")
    if session.fingerprint is not None and (session.recorder.overheads or session.sidecars):
        fp = session.fingerprint
        terminalreporter.write_line(f"fer_bench: machine {fp['slug']} (identity {fp['identity_hash']})")


def summarize_contention(reporter, config) -> None:
    """The cases timed while other processes took the machine (their results say contended, and the gate gives
    them no verdict), and once, where the machine could not be read, that contention was not measured."""
    from fer_bench.plugin import storage
    from fer_bench.results.contention import contention_record, describe_contention, is_contended

    benches = getattr(storage.benchmark_session(config), "benchmarks", None) or []
    records = [(b.name, contention_record(getattr(b, "extra_info", None) or {})) for b in benches]
    contended = [(name, r) for name, r in records if r is not None and is_contended({"contention": r})]
    if contended:
        reporter.write_sep("-", f"fer_bench: contended cases ({len(contended)} of {len(records)}: unreliable, "
                                f"no gate verdict)", yellow=True)
        for name, record in contended:
            reporter.write_line(f"{name}: {describe_contention(record)}", yellow=True)
    unmeasured = [r for _, r in records if r is not None and r.get("measured") is False]
    if unmeasured:
        reporter.write_line(f"fer_bench: contention not measured for {len(unmeasured)} case(s): "
                            f"{unmeasured[0].get('why', 'no reason recorded')}", yellow=True)


def summarize_budget(reporter, config, session: FerSession) -> None:
    """After a run: its wall time against the budget and what the budget left out. After --collect-only: what
    the preset costs (its cases, its budget, its expected time on this machine from results/<slug>/)."""
    from fer_bench.plugin.budget import format_duration
    from fer_bench.plugin.progress import format_clock

    budget = session.budget
    if budget is None:
        return
    if config.option.collectonly:
        reporter.write_line(f"fer_bench: {describe_collected_cost(session)}")
        return
    if not budget.took:
        return
    limit = "no budget" if session.options.budget_s is None else f"budget {format_duration(session.options.budget_s)}"
    parts = [f"fer_bench: {limit}: {len(budget.took)} cases in {format_clock(budget.elapsed())}"]
    if budget.skipped:
        parts.append(f"{len(budget.skipped)} skipped for the budget (reasons with -rs)")
    if session.recorder.overhead_skipped:
        parts.append(f"the harness-overhead pass left out of {len(session.recorder.overhead_skipped)}")
    if session.prior_source:
        parts.append(f"time left first guessed from {session.prior_source}")
    reporter.write_line(", ".join(parts), yellow=bool(budget.skipped))
    for nodeid, reason in budget.skipped.items():  # -rs groups skips by location: name each case here
        need = reason.removeprefix("over the time budget: ").split(", over the ")[0]
        reporter.write_line(f"  {nodeid.split('::')[-1]}: {need}")
    from fer_bench.plugin.budget import benchmark_name

    measured = {benchmark_name(n) for n in budget.took if n not in budget.skipped}
    for nodeid in budget.planned:
        if nodeid in budget.firsts and nodeid in budget.skipped and benchmark_name(nodeid) not in measured:
            reporter.write_line(f"fer_bench: no {benchmark_name(nodeid)} result: not even its cheapest case fits "
                                f"the budget ({nodeid.split('::')[-1]}: {budget.skipped[nodeid]})", yellow=True)


def stored_runs(session: FerSession) -> list:
    """The stored runs of this machine's slug (results/<slug>/ and results/<slug>~.../, oldest first); [] where
    there are none or they cannot be read."""
    from fer_bench.results.folders import list_slug_folders

    folders = list_slug_folders(session.options.rootpath / "results", session.get_fingerprint()["slug"])
    if not folders:
        return []
    from fer_bench.errors import FerBenchError
    from fer_bench.results.runs import load_results

    try:
        return load_results(folders)
    except FerBenchError:
        return []


def load_budget_prior(session: FerSession, planned: list[tuple[str, str]]):
    """What the planned items (nodeid, name) took in stored runs of the preset under results/: this machine's
    latest, else another machine's that holds the most of them (fer_bench.plugin.presets.select_prior), or None.
    The budget's first guesses: which item of a benchmark is cheapest, what the first items leave each other, the
    time left."""
    results = session.options.rootpath / "results"
    if not planned or not results.is_dir():
        return None  # (before the fingerprint is collected, which takes a second or two: nothing stored, no prior)
    from fer_bench.errors import FerBenchError
    from fer_bench.plugin.presets import select_prior
    from fer_bench.results.runs import load_results

    try:
        runs = load_results([results])
    except FerBenchError:
        return None
    return select_prior(runs, session.get_fingerprint()["identity_hash"], [name for _, name in planned],
                        session.preset_name)


def describe_left_out_emulated(session: FerSession) -> list[str]:
    """One line per precision the preset left out because this CPU emulates it, with the option that runs it."""
    if not session.left_out_emulated:
        return []
    every = ",".join(session.options.preset.axes["precision"])
    return [f"{why}: preset {session.preset_name} leaves out its {count} cpu case{'' if count == 1 else 's'} "
            f"(deselected); --fer-precisions {every} runs them, flagged as emulated"
            for why, count in session.left_out_emulated.values()]


def describe_collected_cost(session: FerSession) -> str:
    """describe_preset_cost for the collected items, with the expected time from this machine's stored runs."""
    from fer_bench.plugin.presets import count_cases, describe_preset_cost, expected_time

    planned = set(session.budget.planned)
    items = session.collected
    counts = count_cases((name, nodeid in planned) for nodeid, name in items)
    fp = session.get_fingerprint()
    runs = stored_runs(session)
    expected = None
    if runs:
        expected = expected_time([name for nodeid, name in items if nodeid in planned], runs, fp["identity_hash"],
                                 session.preset_name)
    left_out = "".join(f"; {count} cpu case{'' if count == 1 else 's'} of {precision} left out (emulated here)"
                       for precision, (_, count) in session.left_out_emulated.items())
    return describe_preset_cost(session.preset_name, counts, session.options.budget_s, expected, fp["slug"]) + left_out


def list_preset_costs(path: str, names: Sequence[str] = ()) -> list[str]:
    """describe_preset_cost for each preset (all by default), from collecting ``path`` with pytest in this
    process (``--collect-only``: nothing runs), so the counts are what this machine would run and skip.

    Raises:
        FerBenchError: no such path, or collecting it failed.
    """
    import contextlib
    import io
    from pathlib import Path

    import pytest

    from fer_bench.errors import FerBenchError

    if not Path(path).exists():
        raise FerBenchError(f"{path}: no such file or folder (name the folder of the benchmark modules)")
    lines = []
    for name in names or list(PRESETS):

        class Grab:
            line: str | None = None

            @pytest.hookimpl(trylast=True)
            def pytest_sessionfinish(self, session):
                fer = get_session(session.config)
                if fer.active and fer.budget is not None:
                    Grab.line = describe_collected_cost(fer)

        output = io.StringIO()
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            # --assert=plain: fer_bench is imported already, and its rewrite warning is an error under the
            # project's filterwarnings
            code = pytest.main([str(path), "--collect-only", "-q", "--assert=plain", "--fer-preset", name,
                                "-p", "fer_bench.plugin", "-p", "no:cacheprovider"], plugins=[Grab()])
        if code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED) or Grab.line is None:
            tail = "\n".join(output.getvalue().strip().splitlines()[-5:])
            raise FerBenchError(f"collecting {path} with --fer-preset {name} failed (exit {int(code)}):\n{tail}")
        lines.append(Grab.line)
    return lines
