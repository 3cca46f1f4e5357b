"""pytest hooks of fer_bench (registered by the root conftest.py): options, parametrization, fingerprint, storage.

Only hooks live here; options are parsed in options.py, read once into session.FerSession, and the measurement
itself is in bench.py and measure.py.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import pytest

from fer_bench.engine.config import AXES
from fer_bench.plugin.options import add_fer_options
from fer_bench.plugin.session import FerSession, stable_fingerprint

SESSION_KEY = pytest.StashKey[FerSession]()
DEFAULT_STORAGE = "file://./.benchmarks"
AXIS_ID_PREFIX = {"batch_size": "bs", "num_workers": "w", "num_gpus": "g"}


def get_session(config) -> FerSession:
    return config.stash[SESSION_KEY]


def pytest_addoption(parser):
    group = parser.getgroup("fer_bench", "fer_bench: FER training benchmarks")
    add_fer_options(group)


def _storage_in_use(config) -> bool:
    opt = config.option
    return bool(getattr(opt, "benchmark_save", None) or getattr(opt, "benchmark_autosave", None)
                or getattr(opt, "benchmark_compare", None))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Build the session, and key pytest-benchmark's storage by hardware before pytest-benchmark (trylast) opens it."""
    session = FerSession.from_config(config)
    config.stash[SESSION_KEY] = session
    _configure_malloc(session.malloc)
    if not config.pluginmanager.hasplugin("benchmark"):
        return
    _make_json_folder(_benchmark_json_path(config))
    if session.save:
        config.option.benchmark_autosave = config.option.benchmark_autosave or _autosave_tag()
        config.option.benchmark_save_data = True  # the statistical gate needs every round
    if _storage_in_use(config):
        _use_hardware_storage(config, session)


def _benchmark_json_path(config) -> Path | None:
    """--benchmark-json as a path: a path in pytest-benchmark >= 5.3, an open file (argparse.FileType) before.
    (A Path's ``.name`` would be only its last part.)"""
    value = config.getoption("benchmark_json", None)
    if not value:
        return None
    return Path(value) if isinstance(value, (str, os.PathLike)) else Path(value.name)


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


def _use_hardware_storage(config, session: FerSession) -> None:
    """Saved runs go to results/<slug>/ instead of .benchmarks/<OS-Python>/, which mixes different GPUs.

    pytest-benchmark has no hook for its machine id (issue #185); its session module looks the function up at
    configure time, so replacing that name here, before its trylast pytest_configure, is enough.
    """
    if config.option.benchmark_storage == DEFAULT_STORAGE:
        config.option.benchmark_storage = "file://" + str(session.rootpath / "results")
    slug = session.get_fingerprint()["slug"]
    import pytest_benchmark.session as pb_session

    pb_session.get_machine_id = lambda: slug


def case_id(case: dict) -> str:
    """``efficientnet_b0-cpu-bs64-w2-fp32-g1``: stable, since stored baselines are matched by it."""
    parts = []
    for axis, value in case.items():
        if axis == "pin_memory":
            parts.append("pin" if value else "nopin")
        else:
            parts.append(f"{AXIS_ID_PREFIX.get(axis, '')}{value}")
    return "-".join(parts)


def case_skip_reason(case: dict) -> str | None:
    """Why this machine cannot run the case (the case is still collected, and reported as skipped)."""
    from fer_bench.engine.device import resolve_device
    from fer_bench.engine.precision import precision_unavailable_reason

    if "device" not in case:
        return None
    resolved = resolve_device(case["device"], case.get("num_gpus", 1))
    if not resolved.available:
        return resolved.reason
    if "precision" in case:
        return precision_unavailable_reason(case["precision"], resolved.device)
    if case.get("pin_memory") and resolved.device.type != "cuda":
        return "pin_memory only matters for copies to a CUDA device"
    return None


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
    axes = [a for a in AXES if a in metafunc.fixturenames and a not in explicit]
    if not axes:
        return
    session = get_session(metafunc.config)
    cases = session.cases(_benchmark_name(metafunc), axes)
    argnames = list(axes)
    if "pin_memory" in metafunc.fixturenames:
        argnames.append("pin_memory")
        cases = [{**c, "pin_memory": pin} for c in cases
                 for pin in ((False, True) if str(c.get("device", "cpu")).startswith("cuda") else (False,))]
    params = []
    for case in cases:
        reason = case_skip_reason(case)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(*[case[a] for a in argnames], id=case_id(case), marks=marks))
    metafunc.parametrize(argnames, params)


@pytest.fixture(scope="session")
def fer_session(request) -> FerSession:
    """The run's shared state: options, the data set, the fingerprint."""
    session = get_session(request.config)
    session.record_telemetry("start")
    return session


@pytest.fixture
def run_config(request):
    """The case's RunConfig, built from the axis parameters pytest_generate_tests gave this test."""
    from fer_bench.engine.config import RunConfig

    params = getattr(request.node, "callspec", None)
    values = {a: params.params[a] for a in AXES if params is not None and a in params.params}
    return RunConfig(**{"model": values.pop("model", "none"), **values})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """An out-of-memory error is the case's result: skipped with the batch size, memory released, run goes on."""
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


def _release_memory() -> None:
    from fer_bench.measure.timing import release_memory

    release_memory()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Release again before the next case: pytest drops its last references to an OOM case only after its call."""
    session = get_session(item.config)
    if session.release_pending:
        session.release_pending = False
        _release_memory()


@pytest.hookimpl(tryfirst=True)
def pytest_benchmark_generate_machine_info(config):
    """machine_info holds identity and slow-changing facts only, so pytest-benchmark's machine-difference warning
    fires for other hardware, not for a hotter GPU or another hostname (those go to the sidecar)."""
    import platform

    fp = get_session(config).get_fingerprint()
    return {
        "machine": platform.machine(),
        "processor": fp.get("identity", {}).get("cpu", {}).get("brand") or platform.processor(),
        "python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),  # as in the identity: no patch level
        "system": platform.system(),
        "fer_bench": stable_fingerprint(fp),
    }


def pytest_sessionstart(session):
    """Pick the same-hardware baseline for --benchmark-compare, and give every saved run its sidecar."""
    bs = getattr(session.config, "_benchmarksession", None)
    if bs is None:
        return
    fer = get_session(session.config)
    if bs.compare and hasattr(bs.storage, "path"):
        _select_same_hardware_baseline(bs, fer)
    storage = getattr(bs, "storage", None)
    if storage is None or not hasattr(storage, "save") or not hasattr(storage, "get"):
        return
    original = storage.save

    def save(output_json, save_name):
        folder = Path(storage.get("x")).parent
        before = set(folder.glob("*.json"))
        original(output_json, save_name)
        for path in sorted(set(folder.glob("*.json")) - before):
            if not path.name.endswith(".fingerprint.json"):
                fer.written.append(path)

    storage.save = save


def _select_same_hardware_baseline(bs, fer: FerSession) -> None:
    """Replace pytest-benchmark's choice (the newest file of the slug folder) by the newest run of this identity.

    Fails closed: with no such run the session stops before running anything, unless --fer-allow-other-machine.
    """
    from fer_bench.results.baseline import list_stored_runs, select_baseline

    name_filter = None if bs.compare is True else str(bs.compare)
    runs = list_stored_runs(Path(bs.storage.path), name_filter)
    fp = fer.get_fingerprint()
    chosen, problem = select_baseline(runs, fp["identity_hash"], allow_other_machine=fer.allow_other_machine)
    if problem:
        raise pytest.UsageError(f"fer_bench: --benchmark-compare: {problem} (looked in {bs.storage.path})")
    loaded = list(bs.storage.load(str(chosen.path)))
    bs.compared_mapping = {path: {b["fullname"]: b for b in data["benchmarks"]} for path, data in loaded}
    fer.baseline_path = chosen.path
    if chosen.identity_hash != fp["identity_hash"]:
        fer.gate_problems.append(f"note: comparing with {chosen.path}, made on other hardware ({chosen.slug})")


def pytest_sessionfinish(session, exitstatus):
    """pytest-benchmark has written its files by now (its hookwrapper saves first): add the sidecars, and fail
    the session for cases the baseline lacks."""
    fer = get_session(session.config)
    bs = getattr(session.config, "_benchmarksession", None)
    if bs is None or not getattr(bs, "benchmarks", None):
        return
    if fer.baseline_path is not None:
        _check_missing_baseline_cases(session, bs, fer)
    json_path = _benchmark_json_path(session.config)
    targets = list(fer.written)
    if json_path is not None:
        targets.insert(0, json_path)
    if not targets:
        return
    from fer_bench.machine.fingerprint import write_sidecar

    fer.record_telemetry("start")
    fer.record_telemetry("end")
    fp = dict(fer.get_fingerprint())
    fp["run"] = {"preset": fer.preset_name, "data": fer.data_description, "epoch_images": fer.epoch_images,
                 "telemetry_start": fer.telemetry.get("start"), "telemetry_end": fer.telemetry.get("end")}
    fer.sidecars = [write_sidecar(path, fp) for path in targets if Path(path).exists()]


def _check_missing_baseline_cases(session, bs, fer: FerSession) -> None:
    from fer_bench.results.baseline import missing_cases

    known = {name for mapping in bs.compared_mapping.values() for name in mapping}
    missing = missing_cases([b.fullname for b in bs.benchmarks], known)
    if not missing:
        return
    listed = ", ".join(missing)
    if fer.allow_missing_baseline:
        fer.gate_problems.append(f"note: no baseline entry in {fer.baseline_path} for {len(missing)} case(s), "
                                 f"not checked: {listed}")
        return
    fer.gate_problems.append(f"FAILED: no baseline entry in {fer.baseline_path} for {len(missing)} case(s): "
                             f"{listed} (pass --fer-allow-missing-baseline to accept)")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_report_header(config):
    session = get_session(config)
    return (f"fer_bench: preset {session.preset_name}, data {session.data_description}, "
            f"epoch images {session.epoch_images}")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = get_session(config)
    if session.baseline_path is not None:
        terminalreporter.write_sep("-", "fer_bench: baseline")
        terminalreporter.write_line(f"compared with {session.baseline_path} (newest stored run of this hardware)")
    for line in session.gate_problems:
        terminalreporter.write_line(f"fer_bench: {line}", red=line.startswith("FAILED"))
    if session.overheads:
        terminalreporter.write_sep("-", "fer_bench: harness overhead (train step vs bare loop, paired)")
        for case, overhead in session.overheads.items():
            terminalreporter.write_line(f"{case}: {overhead:+.1%}")
    for path in session.sidecars:
        terminalreporter.write_line(f"fer_bench: fingerprint written to {path}")
    if session.fingerprint is not None and (session.overheads or session.sidecars):
        fp = session.fingerprint
        terminalreporter.write_line(f"fer_bench: machine {fp['slug']} (identity {fp['identity_hash']})")
