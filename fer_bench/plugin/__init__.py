"""The fer_bench pytest plugin: hooks only.

Installed with fer_bench as a ``pytest11`` entry point, so a user's own benchmark modules get the axes and
fixtures; this repository's conftest.py also names it. The hooks call into modules of one job each: ``options``
declares the options (one per axis of fer_bench.axes), ``session`` reads them once into a frozen ``FerOptions``
beside the run's state (``FerSession``, kept in config.stash by ``state``); ``activate`` sets a session up,
``selection`` chooses and orders the items, ``baseline`` is the native gate, ``ledger`` and ``budget`` (its
arithmetic in ``allowance``) keep the time budget, ``progress`` words the progress line, ``summary`` writes what
follows a run, ``presets`` holds the matrices, ``keeper`` (with ``journal``, ``resume`` and ``interrupt``) makes a
run lose nothing to a signal or a kill, and ``storage`` is all that reaches into pytest-benchmark beyond
its hooks. The benchmark bodies (fer_bench.measure) get the options and a recorder as fixtures, never this
session.

The plugin stays inert (no malloc change, no fingerprint, machine_info and storage as pytest-benchmark makes them)
in a session that passes no ``--fer-*`` option, does not name the plugin (``-p fer_bench.plugin`` or a conftest's
``pytest_plugins``) and collects no benchmark that uses its axes or fixtures.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import pytest

from fer_bench.axes import AXES, case_id, case_unavailable_reason, order_axes
from fer_bench.errors import FerBenchError
from fer_bench.measure.context import BenchOptions, Recorder
from fer_bench.plugin import storage
from fer_bench.plugin.activate import activate, named_explicitly
from fer_bench.plugin.baseline import check_baseline_cases
from fer_bench.plugin.options import add_fer_options, option_dests
from fer_bench.plugin.selection import (
    benchmark_group,
    emulated_here,
    check_same_cases,
    explicitly_parametrized,
    item_group,
    leave_out_emulated,
    order_for_budget,
    skip_unless_launched_ddp,
    start_budget,
)
from fer_bench.plugin.session import FerSession
from fer_bench.plugin.state import FER_FIXTURES, PLUGIN_NAME, SESSION_KEY, get_session, is_active
from fer_bench.plugin.summary import (  # noqa: F401  (pytest_terminal_summary is a hook of this plugin)
    describe_collected_cost,
    load_budget_prior,
    pytest_terminal_summary,
)

__all__ = ["FER_FIXTURES", "PLUGIN_NAME", "SESSION_KEY", "describe_collected_cost", "get_session", "is_active",
           "load_budget_prior"]


def pytest_addoption(parser):
    group = parser.getgroup("fer_bench", "fer_bench: FER training benchmarks")
    add_fer_options(group)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Build the session; when fer_bench is asked for, set it up before pytest-benchmark (trylast) opens its
    storage."""
    config.addinivalue_line("markers", "fer_emulated(precision, why): a preset's CPU case of a precision this CPU "
                                       "emulates; fer_bench deselects it (--fer-precisions runs it)")
    config.addinivalue_line("markers", "fer_instructions: a step benchmark whose CPU cases --fer-instructions "
                                       "counts under Valgrind (skipped with the reason where it cannot)")
    session = FerSession.from_config(config)
    config.stash[SESSION_KEY] = session
    asked = any(config.getoption(dest) is not None for dest in option_dests())
    if asked or named_explicitly(config):
        activate(config, session, at_configure=True)


def pytest_sessionstart(session):
    """pytest-benchmark's session is built by now: name its storage folder by the hardware. Under `fer-bench ab`
    (FER_BENCH_TURNS set) take the first turn before collection: this side's collection and model building stay
    out of the other side's timed rounds (fer_bench.measure.turns)."""
    fer = get_session(session.config)
    if fer.storage_slug is not None:
        storage.name_storage_folder(session.config, fer.storage_slug)
    from fer_bench.measure import turns

    turns.take_turn()


def pytest_unconfigure(config):
    from fer_bench.measure import turns

    turns.end_turns()  # the other side runs alone from here
    session = config.stash.get(SESSION_KEY, None)
    while session is not None and session.undo:
        session.undo.pop()()


def countable(case: dict) -> bool:
    """Whether --fer-instructions counts this step case (one CPU, eager, one process)."""
    from fer_bench.measure.instructions import case_unsupported

    parallel = case.get("parallel", "none")
    if parallel == "none" and case.get("num_gpus", 1) > 1:
        parallel = "dp"
    return case_unsupported(case.get("device", "cpu"), case.get("compile", "eager"), parallel) is None


def pytest_generate_tests(metafunc):
    """Expand the axes a benchmark asks for (as fixture names) into cases; a test's own parametrize wins."""
    explicit = explicitly_parametrized(metafunc)
    axes = order_axes(a for a in AXES if a in metafunc.fixturenames and a not in explicit)
    if not axes:
        return
    from fer_bench.engine import availability  # noqa: F401  (the engine registers its checks with the axes)

    session = get_session(metafunc.config)
    params = []
    uncountable = session.instructions_unavailable() if metafunc.definition.get_closest_marker(
        "fer_instructions") else None
    for case in session.options.cases(benchmark_group(metafunc), axes):
        reason = case_unavailable_reason(case) or (uncountable if uncountable and countable(case) else None)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        if not reason and "precision" in axes and "precision" not in session.options.overrides:
            why = emulated_here(session, case)
            if why:
                marks.append(pytest.mark.fer_emulated(case["precision"], why))
        params.append(pytest.param(*[case[a] for a in axes], id=case_id(case), marks=marks))
    metafunc.parametrize(axes, params)


@pytest.hookimpl(trylast=True)  # after -k, -m and --benchmark-skip have chosen the items: the budget plans those
def pytest_collection_modifyitems(session, config, items):
    """A session that did not ask for fer_bench becomes active once it collects a benchmark that uses it; an
    active session deselects the benchmark groups its preset leaves out (the quick preset has no time-to-accuracy
    case, the studies preset only its studies)."""
    fer = get_session(config)
    if not fer.active:
        for item in items:
            names = set(getattr(item, "fixturenames", ()))
            if names & FER_FIXTURES or names & set(AXES):
                activate(config, fer, at_configure=False)
                break
    if not fer.active:
        return
    if fer.options.preset.groups is not None:
        kept, dropped = [], []
        suite = fer.options.rootpath / "benchmarks"
        for item in items:
            group = item_group(item, suite)
            (kept if group is None or fer.options.preset.runs_group(group) else dropped).append(item)
        if dropped:
            fer.deselected_groups = sorted({item_group(item, suite) for item in dropped})
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept
    if fer.keeper is not None:
        fer.keeper.leave_out_done(items)  # --fer-resume: the resumed run's finished cases
    leave_out_emulated(config, fer, items)
    if fer.options.budget_s is not None and fer.launch is None and not config.option.collectonly:
        order_for_budget(fer, items)


@pytest.fixture(scope="session")
def fer_session(request) -> FerSession:
    """The run's state: its options, its recorder, what the plugin's hooks accumulate (a user's own benchmark may
    ask it for ``round_planner()``)."""
    session = get_session(request.config)
    session.record_telemetry("start")
    return session


@pytest.fixture(scope="session")
def fer_options(fer_session) -> BenchOptions:
    """The options a benchmark body reads, read once (fer_bench.measure.context.BenchOptions)."""
    return fer_session.bench_options


@pytest.fixture(scope="session")
def fer_recorder(fer_session) -> Recorder:
    """What the run shares with its benchmark bodies and collects from them (fer_bench.measure.context.Recorder)."""
    return fer_session.recorder


@pytest.fixture
def run_config(request):
    """The case's RunConfig, built from the axis parameters pytest_generate_tests gave this test."""
    from fer_bench.engine.config import CONFIG_AXES, RunConfig

    callspec = getattr(request.node, "callspec", None)
    values = {a: callspec.params[a] for a in CONFIG_AXES if callspec is not None and a in callspec.params}
    return RunConfig(**{"model": values.pop("model", "none"), **values})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """An out-of-memory error is the case's result: skipped with the batch size, memory released, run goes on."""
    _guard_budget(item)
    _take_turns_per_round(item)
    try:
        return (yield)
    except pytest.fail.Exception:  # a body's own one-line failure: no second report at teardown
        storage.mark_failed((getattr(item, "funcargs", None) or {}).get("benchmark"))
        raise
    except FerBenchError as exc:  # the case's own failure, said in one line (a dead DDP rank, a timeout)
        storage.mark_failed((getattr(item, "funcargs", None) or {}).get("benchmark"))
        _stop_a_broken_world(item, exc)
        raise pytest.fail.Exception(str(exc), pytrace=False) from None
    except Exception as exc:
        from fer_bench.measure.timing import is_out_of_memory

        if _stop_a_broken_world(item, exc):
            storage.mark_failed((getattr(item, "funcargs", None) or {}).get("benchmark"))
            raise pytest.fail.Exception(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                                        pytrace=False) from None
        if not is_out_of_memory(exc):
            raise
        # the traceback's frames hold the case's model and batches, and pytest keeps the exception in
        # sys.last_value for post-mortem debugging: clear the frames so the memory can go back now
        traceback.clear_frames(exc.__traceback__)
        for name in ("last_exc", "last_type", "last_value", "last_traceback"):
            if hasattr(sys, name):
                setattr(sys, name, None)
        callspec = getattr(item, "callspec", None)
        batch = callspec.params.get("batch_size") if callspec else None
        device = callspec.params.get("device", "") if callspec else ""
    get_session(item.config).release_pending = True
    _release_memory()
    pytest.skip(f"out of memory at batch size {batch}" + (f" on {device}" if device else ""))


def _stop_a_broken_world(item, exc: BaseException) -> bool:
    """Under torchrun or srun, a collective that timed out or lost a peer leaves the ranks out of step: the session
    stops after this case (the journal and the results keep what finished) rather than hang in the next one."""
    session = get_session(item.config)
    if session.launch is None:
        return False
    text = str(exc)
    if not any(sign in text for sign in ("Timed out", "timed out", "Connection closed by peer", "Connection reset")):
        return False
    item.session.shouldstop = (f"fer_bench: a collective failed under the launcher ({text.splitlines()[0][:200]}): "
                               f"the ranks are out of step, the run stops after this case")
    return True


def _guard_budget(item) -> None:
    """A benchmark that calls benchmark.pedantic itself (not measure()) is planned after its first call."""
    session = get_session(item.config)
    fixture = (getattr(item, "funcargs", None) or {}).get("benchmark")
    session.case_benchmark = fixture
    if not session.active or session.budget is None or fixture is None or not hasattr(fixture, "pedantic"):
        return
    from fer_bench.plugin.budget import guard_pedantic

    def drop_partial_stats(stats) -> None:  # a skipped case leaves no one-round result in the JSON
        held = getattr(storage.benchmark_session(item.config), "benchmarks", None)
        if stats is not None and held is not None and stats in held:
            held.remove(stats)

    guard_pedantic(fixture, session.budget, drop_partial_stats)


def _take_turns_per_round(item) -> None:
    """Under `fer-bench ab`, every pedantic round (warm-up rounds too) first takes its turn, in pytest-benchmark's
    untimed setup: measure()'s rounds and a benchmark's own pedantic calls alike."""
    from fer_bench.measure import turns

    fixture = (getattr(item, "funcargs", None) or {}).get("benchmark")
    if fixture is None or not hasattr(fixture, "pedantic") or not turns.active():
        return

    def change(call: dict) -> dict:
        if call["iterations"] != 1:  # pytest-benchmark allows a setup with one iteration only
            return call
        return {**call, "setup": turns.with_turn(call["setup"])}

    storage.wrap_pedantic(fixture, change)


def _release_memory() -> None:
    from fer_bench.measure.timing import release_memory

    release_memory()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Release again before the next case: pytest drops its last references to an OOM case only after its call."""
    session = get_session(item.config)
    if session.launch is not None:
        skip_unless_launched_ddp(item, session)
    if session.release_pending:
        session.release_pending = False
        _release_memory()


@pytest.hookimpl(tryfirst=True)
def pytest_benchmark_generate_machine_info(config):
    """machine_info holds the hardware identity only, so pytest-benchmark's machine-difference warning fires for
    other hardware, not for a torch upgrade, a hotter GPU or another hostname (those go to the JSON's top-level
    ``fer_bench`` key and the sidecar). Inert sessions get pytest-benchmark's own machine_info."""
    if not is_active(config):
        return None
    import platform

    fp = get_session(config).get_fingerprint()
    return {
        "machine": platform.machine(),
        "processor": fp.get("identity", {}).get("cpu", {}).get("brand") or platform.processor(),
        "system": platform.system(),
        "fer_bench": stable_fingerprint(fp),
    }


STABLE_FINGERPRINT_KEYS = ("schema", "fer_bench_version", "slug", "identity_hash", "identity")


def stable_fingerprint(fp: dict) -> dict:
    """The hardware identity part of the fingerprint: what goes into machine_info["fer_bench"]."""
    return {k: fp[k] for k in STABLE_FINGERPRINT_KEYS if k in fp}


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """The software stack and how the run was made, beside machine_info (they are not the machine); a resumed run's
    cases join this run's."""
    if not is_active(config):
        return
    fer = get_session(config)
    output_json["fer_bench"] = fer.run_record()
    if fer.keeper is not None:
        fer.keeper.merge_results(output_json)


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session):
    """Once the cases are over, a first signal no longer interrupts: the run is complete, its files are being
    written."""
    fer = get_session(session.config)
    if fer.keeper is not None:
        fer.keeper.guard.start_loop()
    try:
        return (yield)
    finally:
        if fer.keeper is not None:
            fer.keeper.guard.finishing = True
            fer.keeper.loop_ended(session)


def pytest_collection_finish(session):
    """Give every run pytest-benchmark saves its sidecar; open the time budget's ledger."""
    bs = storage.benchmark_session(session.config)
    fer = get_session(session.config)
    if fer.active and fer.launch is not None:
        check_same_cases(fer, session.items)
    if fer.active:
        start_budget(fer, session.items)
        if fer.keeper is not None:
            fer.keeper.planned = [item.nodeid for item in session.items]
    if bs is not None and fer.active:
        storage.track_saved_files(bs, fer.written.append)
        storage.write_json_atomically(bs)


def pytest_sessionfinish(session, exitstatus):
    """pytest-benchmark has written its files by now (its hookwrapper saves first): fail the session for cases
    the baseline lacks or measured other work, and add the sidecars."""
    fer = get_session(session.config)
    bs = storage.benchmark_session(session.config)
    if fer.active and fer.keeper is not None:
        fer.keeper.finish(session, exitstatus)
    resumed = fer.keeper is not None and fer.keeper.source is not None
    if bs is None or not fer.active or not (getattr(bs, "benchmarks", None) or resumed):
        return
    if fer.baseline_path is not None and bs.benchmarks:
        check_baseline_cases(session, bs, fer)
    targets = list(fer.written)
    json_path = storage.benchmark_json_path(session.config)
    if json_path is not None:
        targets.insert(0, json_path)
    if not targets:
        return
    from fer_bench.machine.fingerprint import write_sidecar

    fer.record_telemetry("start")
    fer.record_telemetry("end")
    fp = dict(fer.get_fingerprint())
    fp["run"] = fer.run_record()["run"]
    fer.sidecars = [write_sidecar(path, fp) for path in targets if Path(path).exists()]


def pytest_report_header(config):
    session = get_session(config)
    if not session.active:
        return None
    from fer_bench.plugin.budget import format_duration

    budget = "none" if session.options.budget_s is None else format_duration(session.options.budget_s)
    return (f"fer_bench: preset {session.preset_name}, data {session.options.data_description}, "
            f"epoch images {session.options.epoch_images}, budget {budget}")
