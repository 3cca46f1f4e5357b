"""The fer_bench pytest plugin: hooks only.

Installed with fer_bench as a ``pytest11`` entry point, so a user's own benchmark modules get the axes and
fixtures; this repository's conftest.py also names it. Options are declared in ``options`` (one per axis of
fer_bench.axes), read once into ``session.FerSession``; presets live in ``presets``; what reaches into
pytest-benchmark beyond its hooks lives in ``storage``; the measurement itself is in fer_bench.measure. The run's
time budget (its arithmetic and ledger) is in ``budget``, the progress line's wording in ``progress``; RunLedger
below feeds them per item.

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
from fer_bench.engine import availability  # noqa: F401  (the engine's checks, registered with the axes)
from fer_bench.plugin import storage
from fer_bench.plugin.options import add_fer_options, option_dests
from fer_bench.plugin.session import FerSession

SESSION_KEY = pytest.StashKey[FerSession]()
PLUGIN_NAME = "fer_bench.plugin"
#: Fixtures that make a test a fer_bench benchmark (besides the axes).
FER_FIXTURES = frozenset({"fer_session", "run_config"})


def get_session(config) -> FerSession:
    return config.stash[SESSION_KEY]


def is_active(config) -> bool:
    return get_session(config).active


def pytest_addoption(parser):
    group = parser.getgroup("fer_bench", "fer_bench: FER training benchmarks")
    add_fer_options(group)


def _named_explicitly(config) -> bool:
    """``-p fer_bench.plugin``, or a conftest loaded before configure that lists it in ``pytest_plugins``."""
    if PLUGIN_NAME in (getattr(config.known_args_namespace, "plugins", None) or []):
        return True
    for plugin in config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", "").endswith("conftest.py"):
            declared = getattr(plugin, "pytest_plugins", ())
            if PLUGIN_NAME in ([declared] if isinstance(declared, str) else list(declared)):
                return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Build the session; when fer_bench is asked for, set it up before pytest-benchmark (trylast) opens its
    storage."""
    session = FerSession.from_config(config)
    config.stash[SESSION_KEY] = session
    asked = any(config.getoption(dest) is not None for dest in option_dests())
    if asked or _named_explicitly(config):
        _activate(config, session, at_configure=True)


def _activate(config, session: FerSession, *, at_configure: bool) -> None:
    """Everything fer_bench changes in a session, done once: its malloc, and (before pytest-benchmark opens its
    storage) the folder of --benchmark-json and the storage keyed by hardware."""
    if session.active:
        return
    session.active = True
    problem = storage.unsupported_pair() if config.pluginmanager.hasplugin("benchmark") else None
    if problem:
        raise pytest.UsageError(f"fer_bench: {problem}")
    session.check_options()
    _check_artifact_options(config, session)
    _join_launch(config, session)
    ledger = RunLedger(config)
    config.pluginmanager.register(ledger, "fer_bench-run-ledger")
    session.undo.append(lambda: config.pluginmanager.unregister(ledger))
    _configure_malloc(session.malloc)
    if not config.pluginmanager.hasplugin("benchmark") or not at_configure:
        return
    _make_json_folder(storage.benchmark_json_path(config))
    session.undo.append(storage.skip_legacy_sidecars())
    if session.save:
        config.option.benchmark_autosave = config.option.benchmark_autosave or _autosave_tag()
        config.option.benchmark_save_data = True  # the statistical gate needs every round
    if storage.storage_in_use(config):
        storage.key_storage_by_hardware(config, session.rootpath / "results", session.get_fingerprint()["slug"])
    root = storage.file_storage_root(config)
    if config.option.benchmark_compare and root is not None:
        _select_same_hardware_baseline(config, session, root)


def _check_artifact_options(config, session: FerSession) -> None:
    """--fer-curve-tsv and --fer-profile-ops write files beside the results JSON, so they need one."""
    asked = [name for name, on in (("--fer-curve-tsv", session.curve_tsv), ("--fer-profile-ops", session.profile_ops))
             if on]
    json_path = storage.benchmark_json_path(config) if config.pluginmanager.hasplugin("benchmark") else None
    if asked and json_path is None:
        raise pytest.UsageError(f"fer_bench: {' and '.join(asked)} write{'s' if len(asked) == 1 else ''} beside the "
                                f"results JSON: add --benchmark-json PATH")
    session.json_path = json_path


def pytest_sessionstart(session):
    """Under `fer-bench ab` (FER_BENCH_TURNS set) take the first turn before collection: this side's collection
    and model building stay out of the other side's timed rounds (fer_bench.measure.turns)."""
    from fer_bench.measure import turns

    turns.take_turn()


def _join_launch(config, session: FerSession) -> None:
    """Under torchrun or srun (fer_bench.engine.launch): join the world, let rank 0 alone write, turn the time
    budget off (a case one rank skipped and another ran would leave the other waiting in a collective), and learn
    every rank's host and hardware."""
    from fer_bench.engine import launch
    from fer_bench.errors import FerBenchError

    try:
        info = launch.detect_launch()
    except FerBenchError as exc:
        raise pytest.UsageError(f"fer_bench: {exc}") from None
    if info is None:
        return
    launch.join_group(info)
    session.undo.append(launch.leave_group)
    session.launch = info
    session.budget_s = None
    if info.rank != 0:
        config.option.benchmark_json = None
        config.option.benchmark_autosave = False
        config.option.benchmark_save = None
        session.save = False
    fp = session.get_fingerprint()
    session.launch_nodes = launch.describe_nodes(launch.gather(
        {"host": launch.this_host(), "identity_hash": fp.get("identity_hash"), "slug": fp.get("slug")}))


def pytest_unconfigure(config):
    from fer_bench.measure import turns

    turns.end_turns()  # the other side runs alone from here
    session = config.stash.get(SESSION_KEY, None)
    while session is not None and session.undo:
        session.undo.pop()()


def _make_json_folder(json_path: Path | None) -> None:
    """Create the folder of --benchmark-json now, as pytest does for --junitxml: pytest-benchmark writes the file
    only after every benchmark has run, and a missing folder would lose the run to a traceback at the end."""
    if json_path is None:
        return
    folder = json_path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = "a file is in the way" if isinstance(exc, FileExistsError) else (exc.strerror or str(exc))
        raise pytest.UsageError(f"--benchmark-json {json_path}: cannot create its folder {folder}: {why}") from None


def _configure_malloc(mode: str) -> None:
    """Before anything is timed or fingerprinted: the fingerprint records the malloc this run used."""
    from fer_bench.machine.allocator import configure_malloc

    try:
        configure_malloc(mode)
    except RuntimeError as exc:
        raise pytest.UsageError(f"--fer-malloc {mode}: {exc}; pass --fer-malloc system") from None


def _autosave_tag() -> str:
    from pytest_benchmark.utils import get_tag

    return get_tag()


# ---------------------------------------------------------------------------------------------- collection


def _benchmark_name(metafunc) -> str:
    marker = metafunc.definition.get_closest_marker("benchmark")
    if marker and marker.kwargs.get("group"):
        return marker.kwargs["group"]
    return metafunc.function.__name__.removeprefix("test_")


def _explicitly_parametrized(metafunc) -> set[str]:
    names: set[str] = set()
    for marker in metafunc.definition.iter_markers("parametrize"):
        argnames = marker.args[0] if marker.args else marker.kwargs.get("argnames", ())
        if isinstance(argnames, str):
            argnames = [n.strip() for n in argnames.split(",")]
        names.update(argnames)
    return names


def pytest_generate_tests(metafunc):
    """Expand the axes a benchmark asks for (as fixture names) into cases; a test's own parametrize wins."""
    explicit = _explicitly_parametrized(metafunc)
    axes = order_axes(a for a in AXES if a in metafunc.fixturenames and a not in explicit)
    if not axes:
        return
    session = get_session(metafunc.config)
    params = []
    for case in session.cases(_benchmark_name(metafunc), axes):
        reason = case_unavailable_reason(case)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(*[case[a] for a in axes], id=case_id(case), marks=marks))
    metafunc.parametrize(axes, params)


def pytest_collection_modifyitems(session, config, items):
    """A session that did not ask for fer_bench becomes active once it collects a benchmark that uses it; an
    active session deselects the benchmark groups its preset leaves out (the quick preset has no time-to-accuracy
    case, the studies preset only its studies)."""
    fer = get_session(config)
    if not fer.active:
        for item in items:
            names = set(getattr(item, "fixturenames", ()))
            if names & FER_FIXTURES or names & set(AXES):
                _activate(config, fer, at_configure=False)
                break
    if not fer.active:
        return
    if fer.preset.groups is not None:
        kept, dropped = [], []
        suite = fer.rootpath / "benchmarks"
        for item in items:
            group = _item_group(item, suite)
            (kept if group is None or fer.preset.runs_group(group) else dropped).append(item)
        if dropped:
            fer.deselected_groups = sorted({_item_group(item, suite) for item in dropped})
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept
    _leave_out_emulated(config, fer, items)
    if fer.budget_s is not None and fer.launch is None and not config.option.collectonly:
        _order_for_budget(fer, items)


def _leave_out_emulated(config, fer: FerSession, items) -> None:
    """The preset's CPU cases of a precision this CPU emulates (bf16 without avx512_bf16 or AMX, or under an ISA
    cap) are deselected: a call takes tens of seconds where fp32 takes a fraction of one, so they would spend the
    budget that the fp32 cases and the epochs need, to measure the emulation. ``--fer-precisions`` naming the
    precision runs them (flagged as emulated, as before); the terminal summary names what was left out."""
    if "precision" in fer.overrides or fer.launch is not None:
        return  # asked for by name; or under a launcher, whose ranks must collect the same cases on any CPU
    verdicts: dict[str, str | None] = {}

    def emulated(precision: str) -> str | None:
        if precision not in verdicts:
            from fer_bench.engine.precision import resolve_precision_native

            flags = fer.get_fingerprint().get("cpu", {}).get("flags") or ()
            native, note = resolve_precision_native(precision, "cpu", cpu_flags=flags)
            verdicts[precision] = None if native else (note or precision).split(":")[0]
        return verdicts[precision]

    kept, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        precision = params.get("precision")
        left_out = (precision not in (None, "fp32") and params.get("device") == "cpu"
                    and not item.get_closest_marker("skip") and emulated(precision))
        (dropped if left_out else kept).append(item)
        if left_out:
            fer.left_out_emulated.setdefault(precision, [verdicts[precision], 0])[1] += 1
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _order_for_budget(fer: FerSession, items) -> None:
    """Under a time budget, each benchmark's cheapest item runs before any benchmark's second
    (fer_bench.plugin.budget.budget_order), with the stored times that choose it and guess the time left."""
    from fer_bench.plugin.budget import budget_order

    runnable = [item.nodeid for item in items if _will_run_benchmark(item)]
    prior = load_budget_prior(fer, [(item.nodeid, item.name) for item in items if item.nodeid in set(runnable)])
    fer.budget_prior = {} if prior is None else {nodeid: prior.times[name] for nodeid, name in
                                                  ((item.nodeid, item.name) for item in items) if name in prior.times}
    fer.prior_source = None if prior is None else prior.describe()
    order, fer.budget_firsts = budget_order([item.nodeid for item in items], runnable, fer.budget_prior)
    position = {nodeid: i for i, nodeid in enumerate(order)}
    items.sort(key=lambda item: position[item.nodeid])


def _item_group(item, suite: Path) -> str | None:
    """The benchmark group (its marker's group, else its name) of a fer_bench benchmark: one that uses the plugin's
    fixtures or axes, or any benchmark of the project's own suite folder; None for anything else (a user's own
    benchmark is never deselected by a preset)."""
    names = set(getattr(item, "fixturenames", ()))
    if "benchmark" not in names:
        return None
    ours = bool(names & FER_FIXTURES or names & set(AXES))
    if not ours:
        try:
            ours = Path(item.path).resolve().is_relative_to(suite.resolve())
        except (OSError, ValueError, AttributeError):
            ours = False
    if not ours:
        return None
    marker = item.get_closest_marker("benchmark")
    if marker and marker.kwargs.get("group"):
        return marker.kwargs["group"]
    return getattr(item, "originalname", item.name).removeprefix("test_")


@pytest.fixture(scope="session")
def fer_session(request) -> FerSession:
    """The run's shared state: options, the data set, the fingerprint."""
    session = get_session(request.config)
    session.record_telemetry("start")
    return session


@pytest.fixture
def run_config(request):
    """The case's RunConfig, built from the axis parameters pytest_generate_tests gave this test."""
    from fer_bench.engine.config import AXES as CONFIG_AXES, RunConfig

    callspec = getattr(request.node, "callspec", None)
    values = {a: callspec.params[a] for a in CONFIG_AXES if callspec is not None and a in callspec.params}
    return RunConfig(**{"model": values.pop("model", "none"), **values})


# ---------------------------------------------------------------------------------------------- running


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """An out-of-memory error is the case's result: skipped with the batch size, memory released, run goes on."""
    _guard_budget(item)
    _take_turns_per_round(item)
    try:
        return (yield)
    except Exception as exc:
        from fer_bench.measure.timing import is_out_of_memory

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


def _guard_budget(item) -> None:
    """A benchmark that calls benchmark.pedantic itself (not measure()) is planned after its first call."""
    session = get_session(item.config)
    fixture = (getattr(item, "funcargs", None) or {}).get("benchmark")
    session.case_benchmark = fixture
    if not session.active or session.budget is None or fixture is None or not hasattr(fixture, "pedantic"):
        return
    from fer_bench.plugin.budget import guard_pedantic

    def drop_partial_stats(stats) -> None:  # a skipped case leaves no one-round result in the JSON
        held = getattr(getattr(item.config, "_benchmarksession", None), "benchmarks", None)
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
        _skip_unless_launched_ddp(item, session)
    if session.release_pending:
        session.release_pending = False
        _release_memory()


def _skip_unless_launched_ddp(item, session: FerSession) -> None:
    """Under a launcher only parallel=ddp cases of the launch's world size run: the ranks are the case's
    processes (the same decision on every rank, from the case's params alone)."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    world = session.launch.world_size
    if params.get("parallel") != "ddp":
        pytest.skip(f"under {session.launch.launcher} ({world} ranks) only parallel=ddp cases run; run the others "
                    f"without a launcher")
    if params.get("num_gpus") != world:
        pytest.skip(f"this launch has {world} ranks; the case asks num_gpus={params.get('num_gpus')}")


# ---------------------------------------------------------------------------------------------- results


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
    """The software stack and how the run was made, beside machine_info (they are not the machine)."""
    if not is_active(config):
        return
    output_json["fer_bench"] = get_session(config).run_record()


def pytest_collection_finish(session):
    """Give every run pytest-benchmark saves its sidecar; open the time budget's ledger."""
    bs = getattr(session.config, "_benchmarksession", None)
    fer = get_session(session.config)
    if fer.active and fer.launch is not None:
        _check_same_cases(fer, session.items)
    if fer.active:
        _start_budget(fer, session.items)
    if bs is not None and fer.active:
        storage.track_saved_files(bs, fer.written.append)


def _check_same_cases(fer: FerSession, items) -> None:
    """Every rank of a launch must run the same cases in the same order, or a collective waits forever."""
    from fer_bench.engine import launch

    mine = [item.nodeid for item in items]
    every = launch.gather(mine)
    for rank, theirs in enumerate(every):
        if theirs != every[0]:
            first = next((a for a, b in zip(every[0], theirs) if a != b), None) or f"{len(theirs)} vs " \
                f"{len(every[0])} cases"
            pytest.exit(f"fer_bench: rank {rank} collected other cases than rank 0 (first difference: {first}); "
                        f"every rank must run the same pytest command", returncode=pytest.ExitCode.USAGE_ERROR)


def _start_budget(fer: FerSession, items) -> None:
    """The items the budget is shared among: benchmarks that will run (collected, not marked skip)."""
    fer.total_items = len(items)
    fer.collected = [(item.nodeid, item.name) for item in items]
    fer.item_index = {item.nodeid: i for i, item in enumerate(items, 1)}
    fer.start_budget([item.nodeid for item in items if _will_run_benchmark(item)])
    fer.budget.prior = dict(fer.budget_prior)
    fer.budget.firsts = set(fer.budget_firsts)


def _will_run_benchmark(item) -> bool:
    if "benchmark" not in getattr(item, "fixturenames", ()) or item.get_closest_marker("skip"):
        return False
    return not any(m.args and m.args[0] is True for m in item.iter_markers("skipif"))


class RunLedger:
    """Per-item hooks of an active session (registered when fer_bench activates): the budget's ledger, each
    result's wall time, the progress line. The log hooks get no config, so this object holds it."""

    def __init__(self, config):
        self.config = config

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self, nodeid, location):
        budget = get_session(self.config).budget
        if budget is not None:
            budget.start(nodeid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        """Nothing of the budget left: skip before the case's fixtures build anything."""
        budget = get_session(self.config).budget
        if budget is not None and budget.current == item.nodeid:
            reason = budget.spent_reason()
            if reason:
                from fer_bench.plugin.budget import skip_case

                skip_case(reason)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self, nodeid, location):
        """Close the item in the ledger, record its wall time, and print the progress line."""
        fer = get_session(self.config)
        budget = fer.budget
        if budget is None or nodeid not in budget.left:
            return
        wall = budget.finish(nodeid)
        fixture, fer.case_benchmark = fer.case_benchmark, None
        if fixture is not None and isinstance(getattr(fixture, "extra_info", None), dict):
            fixture.extra_info["case_wall_s"] = round(wall, 3)  # setup, build and teardown included
        _print_progress(self.config, fer, nodeid, wall)


def _print_progress(config, fer: FerSession, nodeid: str, wall: float) -> None:
    from fer_bench.plugin.progress import Throttle, format_progress

    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    budget = fer.budget
    if fer.progress_throttle is None:
        fer.progress_throttle = Throttle.for_mode(fer.progress, bool(getattr(reporter, "isatty", False))) or False
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


def _select_same_hardware_baseline(config, fer: FerSession, root: Path) -> None:
    """Point --benchmark-compare at the newest stored run of this hardware (pytest-benchmark would take the
    newest file of the slug folder, whatever made it) before pytest-benchmark loads it. Fails closed: with no
    such run the session stops before running anything, unless --fer-allow-other-machine."""
    from fer_bench.results.baseline import list_stack_notes, list_stored_runs, select_baseline

    compare = config.option.benchmark_compare
    name_filter = None if compare is True else str(compare)
    runs = list_stored_runs(root, name_filter)
    fp = fer.get_fingerprint()
    chosen, problem = select_baseline(runs, fp["identity_hash"], allow_other_machine=fer.allow_other_machine)
    if problem:
        raise pytest.UsageError(f"fer_bench: --benchmark-compare: {problem} (looked in {root})")
    config.option.benchmark_compare = str(chosen.path)
    fer.baseline_path = chosen.path
    if chosen.identity_hash != fp["identity_hash"]:
        fer.gate_problems.append(f"note: comparing with {chosen.path}, made on other hardware ({chosen.slug})")
    fer.gate_problems.extend(f"note: {line}" for line in list_stack_notes(chosen, fp))


def pytest_sessionfinish(session, exitstatus):
    """pytest-benchmark has written its files by now (its hookwrapper saves first): fail the session for cases
    the baseline lacks or measured other work, and add the sidecars."""
    fer = get_session(session.config)
    bs = getattr(session.config, "_benchmarksession", None)
    if bs is None or not fer.active or not getattr(bs, "benchmarks", None):
        return
    if fer.baseline_path is not None:
        _check_baseline_cases(session, bs, fer)
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


def _check_baseline_cases(session, bs, fer: FerSession) -> None:
    """The native gate fails closed: a case the baseline lacks, one whose baseline did other work, or a
    time-to-accuracy case that no longer reaches the target its baseline reached (its rounds are then times to the
    epoch cap, which pytest-benchmark would compare as if they were times to the target)."""
    from fer_bench.results.baseline import missing_cases
    from fer_bench.workload import workload_differences, workload_of

    known = {name: entry for mapping in bs.compared_mapping.values() for name, entry in mapping.items()}
    missing = missing_cases([b.fullname for b in bs.benchmarks], set(known))
    other_work, missed = [], []
    for bench in bs.benchmarks:
        entry = known.get(bench.fullname)
        if entry is None:
            continue
        current, _ = workload_of(bench.extra_info)
        stored, _ = workload_of(entry.get("extra_info") or {})
        diffs = workload_differences(current, stored)
        if diffs:
            other_work.append(f"{bench.name} ({'; '.join(diffs)}, current vs baseline)")
        elif bench.extra_info.get("reached_target") is False and (entry.get("extra_info") or {}).get(
                "reached_target") is not False:
            missed.append(bench.name)
    failed = False
    if missed:
        fer.gate_problems.append(f"FAILED: {len(missed)} case(s) no longer reach the target accuracy their baseline "
                                 f"in {fer.baseline_path} reached: {', '.join(missed)}")
        failed = True
    for cases, what, allowed, flag in (
            (missing, "no baseline entry", fer.allow_missing_baseline, "--fer-allow-missing-baseline"),
            (other_work, "other work in the baseline", fer.allow_other_workload, "--fer-allow-other-workload")):
        if not cases:
            continue
        listed = ", ".join(cases)
        if allowed:
            fer.gate_problems.append(f"note: {what} in {fer.baseline_path} for {len(cases)} case(s), not "
                                     f"checked: {listed}")
        else:
            fer.gate_problems.append(f"FAILED: {what} in {fer.baseline_path} for {len(cases)} case(s): {listed} "
                                     f"(pass {flag} to accept)")
            failed = True
    if failed:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_report_header(config):
    session = get_session(config)
    if not session.active:
        return None
    from fer_bench.plugin.budget import format_duration

    budget = "none" if session.budget_s is None else format_duration(session.budget_s)
    return (f"fer_bench: preset {session.preset_name}, data {session.data_description}, "
            f"epoch images {session.epoch_images}, budget {budget}")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = get_session(config)
    if not session.active:
        return
    if session.baseline_path is not None:
        terminalreporter.write_sep("-", "fer_bench: baseline")
        terminalreporter.write_line(f"compared with {session.baseline_path} (newest stored run of this hardware)")
    for line in session.gate_problems:
        terminalreporter.write_line(f"fer_bench: {line}", red=line.startswith("FAILED"))
    if session.overheads:
        terminalreporter.write_sep("-", "fer_bench: harness overhead (train step vs bare loop, paired)")
        for case, overhead in session.overheads.items():
            terminalreporter.write_line(f"{case}: {overhead:+.1%}")
    for note in session.emulated:
        terminalreporter.write_line(f"fer_bench: {note}", yellow=True)
    for line in describe_left_out_emulated(session):
        terminalreporter.write_line(f"fer_bench: {line}", yellow=True)
    for line in session.missed_targets:
        terminalreporter.write_line(f"fer_bench: {line}", yellow=True)
    if session.launch_bound:
        terminalreporter.write_sep("-", "fer_bench: launch-bound steps (the GPU waits for kernel launches)")
        for line in session.launch_bound:
            terminalreporter.write_line(line)
    if session.deselected_groups:
        terminalreporter.write_line(f"fer_bench: preset {session.preset_name} leaves out "
                                    f"{', '.join(session.deselected_groups)} (deselected; another preset runs them)")
    _summarize_budget(terminalreporter, config, session)
    for path in session.sidecars:
        terminalreporter.write_line(f"fer_bench: fingerprint written to {path}")
    if session.fingerprint is not None and (session.overheads or session.sidecars):
        fp = session.fingerprint
        terminalreporter.write_line(f"fer_bench: machine {fp['slug']} (identity {fp['identity_hash']})")


def _summarize_budget(reporter, config, session: FerSession) -> None:
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
    limit = "no budget" if session.budget_s is None else f"budget {format_duration(session.budget_s)}"
    parts = [f"fer_bench: {limit}: {len(budget.took)} cases in {format_clock(budget.elapsed())}"]
    if budget.skipped:
        parts.append(f"{len(budget.skipped)} skipped for the budget (reasons with -rs)")
    if session.overhead_skipped:
        parts.append(f"the harness-overhead pass left out of {len(session.overhead_skipped)}")
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


def _stored_runs(session: FerSession) -> list:
    """This machine's stored runs (results/<slug>/, oldest first); [] where there are none or they cannot be read."""
    folder = session.rootpath / "results" / session.get_fingerprint()["slug"]
    if not folder.is_dir():
        return []
    from fer_bench.errors import FerBenchError
    from fer_bench.results.runs import load_results

    try:
        return load_results([folder])
    except FerBenchError:
        return []


def load_budget_prior(session: FerSession, planned: list[tuple[str, str]]):
    """What the planned items (nodeid, name) took in stored runs of the preset under results/: this machine's
    latest, else another machine's that holds the most of them (fer_bench.plugin.presets.select_prior), or None.
    The budget's first guesses: which item of a benchmark is cheapest, what the first items leave each other, the
    time left."""
    results = session.rootpath / "results"
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
    every = ",".join(session.preset.axes["precision"])
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
    runs = _stored_runs(session)
    expected = None
    if runs:
        expected = expected_time([name for nodeid, name in items if nodeid in planned], runs, fp["identity_hash"],
                                 session.preset_name)
    left_out = "".join(f"; {count} cpu case{'' if count == 1 else 's'} of {precision} left out (emulated here)"
                       for precision, (_, count) in session.left_out_emulated.items())
    return describe_preset_cost(session.preset_name, counts, session.budget_s, expected, fp["slug"]) + left_out
