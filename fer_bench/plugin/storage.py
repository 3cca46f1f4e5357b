"""Where fer_bench reaches into pytest-benchmark beyond its hooks: the one module that does.

pytest-benchmark has hooks for machine_info and the JSON it writes (fer_bench.plugin uses those), but none for
what follows; each reach below names the pytest-benchmark versions it holds for (setup.cfg allows >= 5.1; each is
tested against every allowed version, ``python3 dev.py compat``), why no hook serves, and how it is undone:

* the storage folder's machine id (pytest-benchmark issue #185), 5.1 to 5.3.1: its name comes from
  ``get_machine_id()`` (OS and Python only), so two machines with different GPUs would share a folder.
  :func:`key_storage_by_hardware` points the storage option at ``results/`` (configure, before pytest-benchmark's
  trylast pytest_configure) and :func:`name_storage_folder` sets the built session's ``machine_id`` and its
  storage's ``default_machine_id`` to the hardware slug at session start, before anything is saved. Attributes of
  this session's own objects: nothing process-wide is patched, nothing outlives the session.
* how a run is saved, 5.1 to 5.3.1: pytest-benchmark's ``FileStorage.save`` numbers the file after the newest one
  and writes it in place, so two runs saving into one folder at once (an autosave per job of an array on a shared
  file system) can pick the same name and one overwrites the other, and a kill mid-write leaves half a file.
  :func:`track_saved_files` replaces this session's ``storage.save`` (an attribute of the instance, once) by
  :func:`save_exclusively`: the number is taken under a lock on the folder, the file is written beside and
  hard-linked into place, which fails rather than overwrite (then the next number is taken); and it learns the path,
  so the fingerprint sidecar can go beside it. :func:`write_json_atomically` does the same for ``--benchmark-json``
  (``save_json`` of this session, 5.3 and later, where the option is a path): temporary file, fsync, rename.
* which file ``--benchmark-compare`` compares with: pytest-benchmark takes the newest file of the slug folder; the
  plugin replaces the option's value by the path of the run it chose (the newest of this hardware) before
  pytest-benchmark loads it (an option's value, no patch).
* sidecars written by fer_bench before 0.2 were named ``NAME.fingerprint.json``, and pytest-benchmark (5.1 to
  5.3.1) loads every ``*.json`` of a storage folder, warning (an error under ``filterwarnings = error``) on each one
  that is not a run: :func:`skip_legacy_sidecars` leaves those out of ``FileStorage.query``, the one class-level
  patch: applied once (a patched query is not patched again) and undone at session end.
* every pedantic round taking its turn under `fer-bench ab`, and the budget's guard of a benchmark's own pedantic
  calls: :func:`wrap_pedantic` wraps one fixture instance's ``pedantic`` (it dies with the test).
* ``--benchmark-json`` is an open file (argparse.FileType) before pytest-benchmark 5.3 and a path since:
  :func:`benchmark_json_path` reads both. (Before 5.3 argparse opens the file while pytest parses the command
  line, so its folder must exist; from 5.3 the plugin creates it.)
* pytest 9.2 with pytest-benchmark before 5.3.1 fails in every benchmark: :func:`unsupported_pair` says so.
* a case's rounds replaced by times measured otherwise (time to accuracy's runs), 5.1 to 5.3.1: no hook sets
  them, so :func:`replace_rounds` sets the fixture's ``stats.stats.data`` and drops the statistics cached from the
  old rounds; a launch's follower ranks are kept out of the results by the fixture's ``disabled`` flag
  (:func:`leave_unrecorded`). The benchmark bodies get both through their Recorder.
* the run's benchmarks and compared runs (``config._benchmarksession``): :func:`benchmark_session` is the one
  reader of that attribute.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

from fer_bench.machine.identity import LEGACY_SIDECAR_SUFFIX

DEFAULT_STORAGE = "file://./.benchmarks"


def unsupported_pair() -> str | None:
    """Why this pytest and pytest-benchmark cannot run together, or None. pytest 9.2 removed ``Node._nodeid``,
    which pytest-benchmark before 5.3.1 reads in every benchmark fixture; pip cannot express that rule."""
    import pytest
    import pytest_benchmark

    def release(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", version)[:3])

    if release(pytest.__version__) >= (9, 2) and release(pytest_benchmark.__version__) < (5, 3, 1):
        return (f"pytest-benchmark {pytest_benchmark.__version__} does not work with pytest {pytest.__version__} "
                f"(it reads Node._nodeid, removed in pytest 9.2): install pytest-benchmark>=5.3.1 or pytest<9.2")
    return None


def storage_in_use(config) -> bool:
    """Whether this session reads or writes pytest-benchmark's storage folder."""
    opt = config.option
    return bool(getattr(opt, "benchmark_save", None) or getattr(opt, "benchmark_autosave", None)
                or getattr(opt, "benchmark_compare", None))


def benchmark_json_path(config) -> Path | None:
    """--benchmark-json as a path: a path in pytest-benchmark >= 5.3, an open file (argparse.FileType) before.
    (A Path's ``.name`` would be only its last part.)"""
    value = config.getoption("benchmark_json", None)
    if not value:
        return None
    return Path(value) if isinstance(value, (str, os.PathLike)) else Path(value.name)


def key_storage_by_hardware(config, results_root: Path) -> None:
    """Saved runs go to ``results/`` instead of ``.benchmarks/`` (their folder, named by name_storage_folder, is the
    hardware's slug); an explicit --benchmark-storage is respected (runs then go to ``URI/<slug>/``)."""
    if config.option.benchmark_storage == DEFAULT_STORAGE:
        config.option.benchmark_storage = "file://" + str(results_root)


def name_storage_folder(config, slug: str) -> None:
    """Name this session's storage folder by the hardware slug instead of pytest-benchmark's OS-and-Python id:
    after pytest-benchmark built its session, before anything is saved."""
    bs = benchmark_session(config)
    if bs is None:
        return
    bs.machine_id = slug
    if hasattr(bs.storage, "default_machine_id"):
        bs.storage.default_machine_id = slug


def benchmark_session(config):
    """pytest-benchmark's session object (its benchmarks, storage, compared runs), or None without the plugin."""
    return getattr(config, "_benchmarksession", None)


def skip_legacy_sidecars() -> Callable[[], None]:
    """Leave ``*.fingerprint.json`` out of pytest-benchmark's file storage queries; returns the undo."""
    from pytest_benchmark.storage.file import FileStorage

    original = FileStorage.query
    if getattr(original, "_fer_bench_filtered", False):
        return lambda: None

    def query(self, *globs_or_files):
        return [f for f in original(self, *globs_or_files) if not Path(f).name.endswith(LEGACY_SIDECAR_SUFFIX)]

    query._fer_bench_filtered = True
    FileStorage.query = query

    def undo() -> None:
        FileStorage.query = original

    return undo


def track_saved_files(bs, on_saved: Callable[[Path], None]) -> None:
    """Save runs with :func:`save_exclusively` and call ``on_saved(path)`` for each run file it writes."""
    storage = getattr(bs, "storage", None)
    if storage is None or not hasattr(storage, "save") or not hasattr(storage, "get"):
        return  # not file storage (elasticsearch): no file to put a sidecar beside
    if getattr(storage.save, "_fer_bench_tracked", False):
        return

    def save(output_json, save_name):
        path = save_exclusively(Path(storage.get("x")).parent, output_json, save_name)
        logger = getattr(storage, "logger", None)
        if logger is not None:
            logger.info(f"Saved benchmark data in: {path}")
        on_saved(path)

    save._fer_bench_tracked = True
    storage.save = save


RUN_NAME = re.compile(r"^(\d{4})_")


def save_exclusively(folder: Path, output_json: dict, save_name: str) -> Path:
    """Write a run as ``NNNN_<save_name>.json`` in ``folder``, NNNN one above the highest number there, without
    ever overwriting: the numbering runs under an exclusive lock on ``folder/.save.lock`` (flock: local file systems,
    NFSv4, Lustre and GPFS with locking on), and the file, written and fsynced beside, is hard-linked into place,
    which fails on an existing name (then the next number is tried)."""
    import fcntl

    from pytest_benchmark.utils import safe_dumps

    from fer_bench._atomic import write_bytes_atomic

    folder.mkdir(parents=True, exist_ok=True)
    data = safe_dumps(output_json, ensure_ascii=True, indent=4).encode()
    staged = write_bytes_atomic(folder / f".saving-{os.getpid()}-{save_name}.tmp", data)
    try:
        with open(folder / ".save.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            taken = [int(m.group(1)) for p in folder.iterdir() if (m := RUN_NAME.match(p.name))]
            number = max(taken, default=0) + 1
            while True:
                target = folder / f"{number:04d}_{save_name}.json"
                try:
                    os.link(staged, target)
                    return target
                except FileExistsError:
                    number += 1
    finally:
        staged.unlink(missing_ok=True)


def write_json_atomically(bs) -> None:
    """Make this session's ``--benchmark-json`` write atomic (pytest-benchmark 5.3 and later; before, argparse has
    the file open already)."""
    target = getattr(bs, "json", None)
    if not isinstance(target, (str, os.PathLike)) or getattr(bs.save_json, "_fer_bench_atomic", False):
        return

    def save_json(output_json):
        from pytest_benchmark.utils import safe_dumps

        from fer_bench._atomic import write_bytes_atomic

        write_bytes_atomic(target, safe_dumps(output_json, ensure_ascii=True, indent=4).encode())
        bs.logger.info(f"Wrote benchmark data in: {target}", purple=True)

    save_json._fer_bench_atomic = True
    bs.save_json = save_json


def save_without_new_cases(config, bs) -> None:
    """Write the results JSON (and the storage save) of a resumed run that measured no case of its own:
    pytest-benchmark writes nothing then, so this does what its ``handle_saving`` does, with no benchmarks of this
    session (``pytest_benchmark_update_json`` adds the resumed ones)."""
    save = bs.save or bs.autosave
    if not (save or bs.json):
        return
    machine_info = bs.get_machine_info()
    commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    config.hook.pytest_benchmark_update_commit_info(config=config, commit_info=commit_info)
    for include_data, write in ((True, bs.save_json if bs.json else None),
                                (bs.save_data, (lambda out: bs.storage.save(out, save)) if save else None)):
        if write is None:
            continue
        output_json = config.hook.pytest_benchmark_generate_json(config=config, benchmarks=[], include_data=include_data,
                                                                 machine_info=machine_info, commit_info=commit_info)
        config.hook.pytest_benchmark_update_json(config=config, benchmarks=[], output_json=output_json)
        write(output_json)


def drop_results_since(bs, count: int) -> None:
    """Forget the results recorded after the first ``count``: a case interrupted half-way leaves partial rounds."""
    held = getattr(bs, "benchmarks", None)
    if held is not None:
        del held[count:]


def stop_saving(bs) -> None:
    """No run file in the storage folder for this session (an interrupted run: stored runs are complete runs)."""
    bs.save = None
    bs.autosave = None


def mark_failed(fixture) -> None:
    """A case that failed before its fixture timed anything: pytest-benchmark would warn at teardown that the
    fixture was not used (an error under ``-W error``: a second report for the same failure). That warning fires
    when ``_mode`` (how the fixture was called) is unset, 5.1 to 5.3.1; the test is over, so nothing else reads
    it."""
    if fixture is not None and hasattr(fixture, "_mode"):
        fixture.has_error = True
        if not fixture._mode:
            fixture._mode = "fer_bench: the case failed before its rounds"


def file_storage_root(config) -> Path | None:
    """The folder of --benchmark-storage (``file://PATH`` or a bare path), or None for other storage."""
    uri = str(config.option.benchmark_storage or "")
    if "://" in uri and not uri.startswith("file://"):
        return None
    return Path(uri.removeprefix("file://")).expanduser()


def wrap_pedantic(fixture, change: Callable[[dict], dict]) -> None:
    """Route every ``fixture.pedantic(...)`` call through ``change``: it gets the call's arguments as a dict and
    returns the dict to call pytest-benchmark with. pytest-benchmark before 5.2 has no ``teardown`` argument, so
    it is passed only when given."""
    original = fixture.pedantic

    def pedantic(target, args=(), kwargs=None, setup=None, teardown=None, rounds=1, warmup_rounds=0,
                 iterations=1):
        call = dict(args=args, kwargs=kwargs, setup=setup, rounds=rounds, warmup_rounds=warmup_rounds,
                    iterations=iterations)
        if teardown is not None:
            call["teardown"] = teardown
        return original(target, **change(call))

    fixture.pedantic = pedantic


def replace_rounds(fixture, times: list[float]) -> None:
    """Make ``times`` the rounds pytest-benchmark reports for this case (its statistics are computed lazily from
    ``data`` and cached, so the cache goes with the old rounds)."""
    stats = getattr(getattr(fixture, "stats", None), "stats", None)
    if stats is None:
        return
    stats.__dict__.clear()
    stats.data = list(times)


def leave_unrecorded(fixture) -> None:
    """The fixture's calls run, but pytest-benchmark records no result for the case."""
    fixture.disabled = True

