"""The run's journal: every finished case on disk the moment it completes, so that no interruption (SIGTERM at a
SLURM walltime, Ctrl-C, the OOM killer's SIGKILL, a power cut) loses it.

A journal is JSON lines. The first line is the header: the format, when the run started, the run's identity (what
``--fer-resume`` must find unchanged: hardware, software, workload, options, commit) and the interruptions of the
runs it continues. Each later line is one finished case (its node id, its outcome and its pytest-benchmark
results, exactly as the results JSON holds them) or the record of an interruption. Each line is written, flushed
and fsynced before the next case starts; a line cut short by a kill is the last one and is ignored on reading.

Where it goes: ``--fer-journal PATH``; else beside ``--benchmark-json`` (``run.json``: ``run.journal.jsonl``); else,
when the run saves into a storage folder, in that folder (``journal-<tag>.jsonl``: pytest-benchmark reads only
``*.json`` there, and numbers only ``NNNN_*`` files). A run that ends complete removes its journal: its results file
holds everything.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from fer_bench._atomic import write_blocks_atomic
from fer_bench.errors import FerBenchError

FORMAT = "fer_bench.journal/1"
SUFFIX = ".journal.jsonl"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def journal_beside(json_path: Path) -> Path:
    """``run.json`` -> ``run.journal.jsonl`` (a name without ``.json`` gets the suffix added)."""
    return json_path.with_name(json_path.name.removesuffix(".json") + SUFFIX)


def choose_path(*, explicit: Path | None, json_path: Path | None, storage_folder: Path | None,
                tag: str | None) -> Path | None:
    """Where this run's journal goes (None: the run writes no results, so there is nothing to keep)."""
    if explicit is not None:
        return explicit
    if json_path is not None:
        return journal_beside(json_path)
    if storage_folder is not None:
        return storage_folder / f"journal-{tag or 'run'}{SUFFIX.removeprefix('.journal')}"
    return None


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT, SIGTERM and SIGUSR1 (main thread, POSIX) while a line is written; they arrive after it."""
    import signal
    import threading

    held = {getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, n)}
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _line(obj: dict) -> bytes:
    return (json.dumps(obj, default=str, ensure_ascii=True) + "\n").encode()


class Journal:
    """One run's journal file: started once (header and the continued run's cases, written atomically), then
    appended to line by line, each line fsynced."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fh: IO[bytes] | None = None
        self.lines = 0
        #: written (and not removed): the file exists and holds this run
        self.started = False

    def start(self, header: dict, entries: list[dict] = ()) -> None:
        """Write the header and ``entries`` (a resumed run's finished cases) as a new file, replacing any old one
        in one rename; later lines are appended."""
        write_blocks_atomic(self.path, [_line({"journal": FORMAT, **header})] + [_line(e) for e in entries])
        self._fh = open(self.path, "ab")
        self.lines = 1 + len(entries)
        self.started = True

    def append(self, entry: dict) -> None:
        """One line, on disk before this returns."""
        if self._fh is None:
            raise FerBenchError(f"journal {self.path}: appended to before it was started")
        line = _line(entry)
        with _signals_held():  # a Ctrl-C now waits for the line to be whole on disk
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        self.lines += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def remove(self) -> None:
        self.close()
        self.started = False
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def read_journal(path: Path) -> tuple[dict, list[dict], list[dict]]:
    """A journal's header, its finished cases (in order; a case journaled twice counts once, the last time) and its
    interruptions (the header's, from the runs it continued, then its own).

    Raises:
        FerBenchError: one line naming the file and what is wrong with it.
    """
    try:
        raw = Path(path).read_bytes().splitlines()
    except OSError as exc:
        raise FerBenchError(f"{path}: cannot read the journal: {exc.strerror or exc}") from None
    records: list[Any] = []
    for number, line in enumerate(raw, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            if number == len(raw):  # the last line, cut short by a kill while it was being written
                break
            raise FerBenchError(f"{path}: line {number} is not JSON: the journal is damaged") from None
    if not records or not isinstance(records[0], dict) or records[0].get("journal") != FORMAT:
        raise FerBenchError(f"{path}: not a fer_bench journal (its first line should name {FORMAT})")
    header = records[0]
    cases: dict[str, dict] = {}
    interruptions = list(header.get("interruptions") or [])
    for record in records[1:]:
        if not isinstance(record, dict):
            continue
        if "interrupted" in record:
            interruptions.append(record["interrupted"])
        elif "nodeid" in record:
            cases.pop(record["nodeid"], None)
            cases[record["nodeid"]] = record
    return header, list(cases.values()), interruptions
