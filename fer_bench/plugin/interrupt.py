"""Signals that end a run early: SIGINT (Ctrl-C), SIGTERM (a SLURM walltime, `kill`, a container stop) and SIGUSR1
(what ``sbatch --signal=B:USR1@120`` sends ahead of the walltime).

The first one stops the case that is running: the handler raises :class:`RunInterrupted` (a KeyboardInterrupt) in
the main thread, so pytest ends the session the way Ctrl-C does: the case's DDP ranks and DataLoader workers are
stopped by their context managers, the partial case is dropped, and the finished cases are written (the results
JSON, its sidecar, the journal) with a record of what is missing; pytest exits 2. The time that takes is the torch
operation under way (Python runs a handler between operations), then at most 6 s to stop DDP ranks.

A second signal exits at once (status 128 + the signal), after killing the run's child processes: the journal,
fsynced case by case, is intact, and every results file is written atomically, so nothing is half-written.

A signal during start-up or collection is noted and stops the run where its test loop starts (raising in the
middle of an import helps no one). Once the session is writing its results (the test loop is over), a first
signal is noted and does not interrupt: the run is complete, and cutting its writing short would lose it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Callable

from fer_bench.plugin.journal import now

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name))


class RunInterrupted(KeyboardInterrupt):
    """A signal other than SIGINT stopped the run; pytest treats it as Ctrl-C."""


class SignalGuard:
    """The run's handlers of SIGINT, SIGTERM and SIGUSR1, installed once; ``received`` records the first signal."""

    def __init__(self, on_exit_now: Callable[[str], None] | None = None):
        self.received: dict | None = None
        self.finishing = False
        #: the test loop is running: a signal interrupts at once (before it, the loop's start raises it)
        self.looping = False
        self._previous: dict[int, object] = {}
        self._on_exit_now = on_exit_now

    def install(self) -> Callable[[], None]:
        """Install the handlers (main thread only: elsewhere Python allows none); returns the undo."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self.uninstall

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            try:
                signal.signal(sig, previous)
            except (TypeError, ValueError):
                pass
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            self.exit_now(signum, name)
        self.received = {"signal": name, "at": now(), "monotonic": time.monotonic()}
        if self.finishing or not self.looping:
            return  # writing a complete run's files, or still collecting (the loop's start raises it)
        self.raise_it()

    def raise_it(self) -> None:
        """Stop the run the way Ctrl-C does."""
        name = (self.received or {}).get("signal", "SIGINT")
        if name == "SIGINT":
            raise KeyboardInterrupt
        raise RunInterrupted(f"{name}: fer_bench stops the run (the finished cases are kept)")

    def start_loop(self) -> None:
        """The test loop starts: a signal that came during collection stops the run here."""
        self.looping = True
        if self.received is not None:
            self.raise_it()

    def exit_now(self, signum: int, name: str) -> None:
        """The second signal: end the child processes (DDP ranks, DataLoader workers) and this process now."""
        try:
            if self._on_exit_now is not None:
                self._on_exit_now(name)
        finally:
            kill_children()
            os._exit(128 + signum)


def drop_unnumbered_frames(excinfo) -> None:
    """A signal handler raises at whatever instruction runs, and Python 3.11+ has instructions without a line
    number: pytest (up to 9.2 at least) fails with a TypeError while it words such a frame of the interruption's
    traceback, and the run ends with exit 1 instead of its own report. Leave those frames out of what it words."""
    try:
        entries = list(excinfo.traceback)
        kept = [e for e in entries if getattr(getattr(e, "_rawentry", None), "tb_lineno", 0) is not None]
        if len(kept) != len(entries):
            excinfo.traceback = type(excinfo.traceback)(kept)
    except (AttributeError, TypeError):
        pass


def kill_children() -> None:
    """SIGKILL every child process this process started through multiprocessing (DDP ranks, DataLoader workers)."""
    import multiprocessing

    for child in multiprocessing.active_children():
        try:
            os.kill(child.pid, signal.SIGKILL)
        except (OSError, TypeError):
            pass


def say(text: str) -> None:
    """One line on stderr, from a signal handler (no terminal reporter there)."""
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
