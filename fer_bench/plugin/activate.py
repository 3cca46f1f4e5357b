"""What fer_bench changes in a session that asks for it, done once: its options checked, a launcher's world
joined, the run ledger registered, the malloc set, the results JSON's folder made, storage keyed by hardware and
the baseline chosen."""

from __future__ import annotations

from pathlib import Path

import pytest

from fer_bench.plugin import storage
from fer_bench.plugin.baseline import select_same_hardware_baseline
from fer_bench.plugin.ledger import RunLedger
from fer_bench.plugin.session import FerSession
from fer_bench.plugin.state import PLUGIN_NAME


def named_explicitly(config) -> bool:
    """``-p fer_bench.plugin``, or a conftest loaded before configure that lists it in ``pytest_plugins``."""
    if PLUGIN_NAME in (getattr(config.known_args_namespace, "plugins", None) or []):
        return True
    for plugin in config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", "").endswith("conftest.py"):
            declared = getattr(plugin, "pytest_plugins", ())
            if PLUGIN_NAME in ([declared] if isinstance(declared, str) else list(declared)):
                return True
    return False


def activate(config, session: FerSession, *, at_configure: bool) -> None:
    """Everything fer_bench changes in a session, done once: its malloc, and (before pytest-benchmark opens its
    storage) the folder of --benchmark-json and the storage keyed by hardware."""
    if session.active:
        return
    session.active = True
    problem = storage.unsupported_pair() if config.pluginmanager.hasplugin("benchmark") else None
    if problem:
        raise pytest.UsageError(f"fer_bench: {problem}")
    from fer_bench.engine import availability  # noqa: F401  (registers the model names the options are checked by)

    session.options = session.options.checked()
    check_artifact_options(config, session)
    join_launch(config, session)
    ledger = RunLedger(config)
    config.pluginmanager.register(ledger, "fer_bench-run-ledger")
    session.undo.append(lambda: config.pluginmanager.unregister(ledger))
    configure_malloc(session.options.malloc)
    if not config.pluginmanager.hasplugin("benchmark") or not at_configure:
        return
    make_json_folder(storage.benchmark_json_path(config))
    session.undo.append(storage.skip_legacy_sidecars())
    if session.options.save:
        config.option.benchmark_autosave = config.option.benchmark_autosave or autosave_tag()
        # pytest-benchmark names a saved run NNNN_<commit>_<date to the second>: sibling nodes saving one commit
        # into one shared folder would make the same name, so the node goes into it (--benchmark-save NAME)
        config.option.benchmark_save = config.option.benchmark_save or save_name(config.option.benchmark_autosave,
                                                                                 session.options.node)
        config.option.benchmark_save_data = True  # the statistical gate needs every round
    if storage.storage_in_use(config):
        storage.key_storage_by_hardware(config, session.options.rootpath / "results")
        session.storage_slug = choose_storage_slug(storage.file_storage_root(config), session.get_fingerprint())
    root = storage.file_storage_root(config)
    check_outputs(config, session, root)
    keep_run(config, session, root)
    if config.option.benchmark_compare and root is not None:
        select_same_hardware_baseline(config, session, root)


def keep_run(config, session: FerSession, root: Path | None) -> None:
    """The journal, the signal handlers and --fer-resume (fer_bench.plugin.keeper)."""
    from fer_bench.plugin.keeper import RunKeeper

    saving = bool(config.option.benchmark_save or config.option.benchmark_autosave)
    folder = root / session.storage_slug if saving and root is not None and session.storage_slug else None
    keeper = session.keeper = RunKeeper(config, session)
    config.pluginmanager.register(keeper, "fer_bench-run-keeper")  # its pytest_keyboard_interrupt
    session.undo.append(lambda: config.pluginmanager.unregister(keeper))
    keeper.setup(json_path=storage.benchmark_json_path(config), storage_folder=folder)


def check_outputs(config, session: FerSession, root: Path | None) -> None:
    """Refuse at start, in one line, an output the run could not write at its end: the --benchmark-json file,
    the storage folder, the journal."""
    json_path = storage.benchmark_json_path(config)
    if json_path is not None:
        if json_path.is_dir():
            raise pytest.UsageError(f"--benchmark-json {json_path}: is a folder, not a file")
        _check_writable(json_path.parent, f"--benchmark-json {json_path}")
    if root is not None and (config.option.benchmark_save or config.option.benchmark_autosave):
        _check_writable(root / (session.storage_slug or ""), f"--benchmark-storage {root}")
    if session.options.journal is not None:
        _check_writable(session.options.journal.parent, f"--fer-journal {session.options.journal}")


def _check_writable(folder: Path, what: str) -> None:
    """Create ``folder`` and a file in it (a permission bit says nothing for root, a read-only mount or a full
    disk; trying does)."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".fer-bench-write-check-"):
            pass
    except OSError as exc:
        why = "a file is in the way" if isinstance(exc, (FileExistsError, NotADirectoryError)) else (
            exc.strerror or str(exc))
        raise pytest.UsageError(f"{what}: cannot write into {folder}: {why}") from None


def check_artifact_options(config, session: FerSession) -> None:
    """--fer-curve-tsv and --fer-profile-ops write files beside the results JSON, so they need one."""
    asked = [name for name, on in (("--fer-curve-tsv", session.options.curve_tsv),
                                   ("--fer-profile-ops", session.options.profile_ops)) if on]
    json_path = storage.benchmark_json_path(config) if config.pluginmanager.hasplugin("benchmark") else None
    if asked and json_path is None:
        raise pytest.UsageError(f"fer_bench: {' and '.join(asked)} write{'s' if len(asked) == 1 else ''} beside the "
                                f"results JSON: add --benchmark-json PATH")
    session.set_options(json_path=json_path)


def join_launch(config, session: FerSession) -> None:
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
    timeout_s = session.options.ddp_timeout_s  # None: the launcher's longer default (nodes start at their pace)
    launch.join_group(info, **({"timeout_s": timeout_s} if timeout_s else {}))
    session.undo.append(launch.leave_group)
    session.launch = session.recorder.launch = info
    session.set_options(budget_s=None)
    if info.rank != 0:
        config.option.benchmark_json = None
        config.option.benchmark_autosave = False
        config.option.benchmark_save = None
        session.set_options(save=False)
    fp = session.get_fingerprint()
    session.launch_nodes = session.recorder.launch_nodes = launch.describe_nodes(launch.gather(
        {"host": launch.this_host(), "identity_hash": fp.get("identity_hash"), "slug": fp.get("slug")}))


def make_json_folder(json_path: Path | None) -> None:
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


def configure_malloc(mode: str) -> None:
    """Before anything is timed or fingerprinted: the fingerprint records the malloc this run used."""
    from fer_bench.machine.allocator import configure_malloc

    try:
        configure_malloc(mode)
    except RuntimeError as exc:
        raise pytest.UsageError(f"--fer-malloc {mode}: {exc}; pass --fer-malloc system") from None


def autosave_tag() -> str:
    from pytest_benchmark.utils import get_tag

    return get_tag()


def save_name(tag: str, node: str | None) -> str:
    """``<commit>_<date>_<node>``: the name --fer-save saves under (pytest-benchmark prefixes a counter)."""
    from fer_bench.machine.node import node_file_part

    return f"{tag}_{node_file_part(node)}" if node else tag


def choose_storage_slug(root: Path | None, fingerprint: dict) -> str:
    """The storage folder's name: the hardware's slug, or where that folder already holds other hardware of the
    same slug, the slug with what tells them apart (fer_bench.results.folders)."""
    if root is None:  # not file storage: nothing to look into
        return fingerprint["slug"]
    from fer_bench.results.folders import choose_storage_folder

    return choose_storage_folder(root, fingerprint)
