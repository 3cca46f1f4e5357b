"""Turn-taking between the two sides of `fer-bench ab`: their rounds interleave, one process runs at a time.

Two benchmark processes started together (the baseline commit's suite and the current one) would compete for the
CPU. Run one after the other, minutes apart, they meet a machine whose speed has drifted in between: on a shared
2-core VM the same code's run-to-run medians differ by 10-15%, mostly from drift on a scale of seconds. So
`fer-bench ab` starts both and lets them take turns: a coordinator (``TurnServer``, run by ``fer-bench ab``) holds
one turn, and a process works only while it has it. Each timed round, warm-up call and cold call first gives the
turn back and waits for its next one (``take_turn``); when both sides wait, the side that did not run last goes.
Round i of one side therefore runs between rounds i and i+1 of the other, and drift on the scale of seconds
touches both alike, as it does in the harness's own paired-overhead pass; what the rounds of a process measure
never overlaps the other process's work.

``FER_BENCH_TURNS`` names the coordinator's Unix socket. Unset (every run outside `fer-bench ab`), ``take_turn``
does nothing. The pytest plugin takes the first turn at session start, so collection and model building stay
out of the other side's timed rounds too, and gives it up for good when its session ends (closing the socket;
a process that dies gives it up the same way). A coordinator that goes away ends the turn-taking: the process
goes on alone and says so once on stderr.

Stdlib only: ``fer-bench ab`` imports the server without torch.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import threading
from typing import Callable

TURNS_ENV = "FER_BENCH_TURNS"
#: The one-byte messages: a process asks for its next turn (giving back the one it holds), the coordinator grants.
WAIT, GO = b"w", b"g"


class _Client:
    def __init__(self, path: str):
        self.path = path
        self.sock: socket.socket | None = None
        self.turns = 0

    def take_turn(self) -> None:
        try:
            if self.sock is None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(self.path)
            self.sock.sendall(WAIT)
            reply = self.sock.recv(1)
        except OSError as exc:
            self._give_up(f"the turn coordinator at {self.path} cannot be reached ({exc.strerror or exc})")
            return
        if reply != GO:
            self._give_up(f"the turn coordinator at {self.path} went away")
            return
        self.turns += 1

    def _give_up(self, why: str) -> None:
        global _client
        print(f"fer_bench: {TURNS_ENV}: {why}; running on without taking turns", file=sys.stderr, flush=True)
        self.close()
        _client = None

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None


_client: _Client | None = None
_resolved = False


def _get_client() -> _Client | None:
    global _client, _resolved
    if not _resolved:
        _resolved = True
        path = os.environ.get(TURNS_ENV)
        _client = _Client(path) if path else None
    return _client


def active() -> bool:
    """Whether this process takes turns (FER_BENCH_TURNS is set and the coordinator still answers)."""
    return _get_client() is not None


def take_turn() -> None:
    """Give the turn back (when held) and wait for the next one; nothing outside `fer-bench ab`. Never inside a
    timed region: the wait is the other side's work."""
    client = _get_client()
    if client is not None:
        client.take_turn()


def end_turns() -> None:
    """Give the turn up for good: the other side runs alone from here."""
    global _client
    client = _get_client()
    if client is not None:
        client.close()
        _client = None


def turns_taken() -> int:
    client = _get_client()
    return client.turns if client is not None else 0


def with_turn(setup: Callable | None) -> Callable:
    """A ``benchmark.pedantic`` setup that first takes a turn, then runs ``setup`` (its return value passed on):
    pytest-benchmark calls setup before every round, outside the timed region."""
    def turn_then_setup():
        take_turn()
        return setup() if setup is not None else None

    return turn_then_setup


def _reset_for_tests() -> None:
    global _client, _resolved
    if _client is not None:
        _client.close()
    _client, _resolved = None, False


class TurnServer:
    """The coordinator: one turn, handed to one waiting process at a time.

    A process sends ``w`` when it wants its next turn (giving back the one it holds); the server answers ``g``
    when that turn comes. When both sides wait, the one that did not run last goes, so two busy sides alternate
    turn by turn; a side that waits alone gets its turn back at once. A closed connection gives its turn back.
    ``grants`` counts the turns handed out per connection order (for the manifest and tests).
    """

    def __init__(self, path: str):
        self.path = path
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(8)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._waiting: list[socket.socket] = []
        self._holder: socket.socket | None = None
        self._last: socket.socket | None = None
        self._ids: dict[socket.socket, int] = {}
        self.grants: list[int] = []  # the connection number of each turn handed out, in order
        self._stop_r, self._stop_w = socket.socketpair()
        self._selector.register(self._stop_r, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._serve, name="fer-bench-turns", daemon=True)

    def start(self) -> "TurnServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        try:
            self._stop_w.send(b"x")
        except OSError:
            pass
        self._thread.join(timeout=10)
        for sock in list(self._ids) + [self._listener, self._stop_r, self._stop_w]:
            try:
                sock.close()
            except OSError:
                pass
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def __enter__(self) -> "TurnServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _serve(self) -> None:
        while True:
            for key, _ in self._selector.select():
                sock = key.fileobj
                if sock is self._stop_r:
                    return
                if sock is self._listener:
                    conn, _ = self._listener.accept()
                    self._ids[conn] = len(self._ids) + 1
                    self._selector.register(conn, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(64)
                except OSError:
                    data = b""
                if not data:
                    self._drop(sock)
                else:
                    for _ in range(data.count(WAIT)):
                        self._wants_turn(sock)
                self._grant()

    def _wants_turn(self, sock: socket.socket) -> None:
        if self._holder is sock:
            self._holder, self._last = None, sock
        if sock not in self._waiting:
            self._waiting.append(sock)

    def _drop(self, sock: socket.socket) -> None:
        self._selector.unregister(sock)
        if self._holder is sock:
            self._holder, self._last = None, sock
        if sock in self._waiting:
            self._waiting.remove(sock)
        sock.close()

    def _grant(self) -> None:
        if self._holder is not None or not self._waiting:
            return
        others = [s for s in self._waiting if s is not self._last]
        chosen = others[0] if others else self._waiting[0]
        self._waiting.remove(chosen)
        self._holder = chosen
        self.grants.append(self._ids.get(chosen, 0))
        try:
            chosen.sendall(GO)
        except OSError:
            self._drop(chosen)
            self._grant()
