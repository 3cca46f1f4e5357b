"""Turn-taking (fer_bench.measure.turns): the coordinator hands one turn at a time and alternates two busy sides;
a closed side gives its turn back; a process without a coordinator runs on alone; the plugin takes a turn before
every pedantic round and measure() before every call it times."""

from __future__ import annotations

import threading
import time

import pytest

from fer_bench.measure import turns
from fer_bench.measure.turns import TURNS_ENV, TurnServer


@pytest.fixture(autouse=True)
def fresh_client(monkeypatch):
    monkeypatch.delenv(TURNS_ENV, raising=False)
    turns._reset_for_tests()
    yield
    turns._reset_for_tests()


@pytest.fixture
def server(tmp_path):
    with TurnServer(str(tmp_path / "t.sock")) as srv:
        yield srv


def _side(path: str, name: str, rounds: int, log: list, inside: list) -> None:
    client = turns._Client(path)
    client.take_turn()  # the first turn, as the plugin takes it at session start
    for _ in range(rounds):
        inside.append(1)
        assert len(inside) == 1, "two sides worked at once"
        log.append(name)
        time.sleep(0.002)
        inside.pop()
        client.take_turn()
    client.close()


def test_two_busy_sides_alternate_and_never_overlap(server):
    log, inside = [], []
    threads = [threading.Thread(target=_side, args=(server.path, name, 20, log, inside)) for name in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert sorted(log) == ["a"] * 20 + ["b"] * 20
    # from the second side's first round to the first side's last, the turn alternates strictly (before, the
    # second side may still be connecting; after, one side runs on alone)
    switches = [i for i in range(1, len(log)) if log[i] != log[i - 1]]
    middle = log[switches[0] - 1:switches[-1] + 1]
    assert all(x != y for x, y in zip(middle, middle[1:])), log
    assert len(middle) >= 30, log
    assert len(server.grants) == 42  # 2 first turns + 40 round turns


def test_a_lone_side_gets_its_turn_back_at_once(server):
    client = turns._Client(server.path)
    started = time.monotonic()
    for _ in range(50):
        client.take_turn()
    assert client.turns == 50 and time.monotonic() - started < 5
    client.close()


def test_a_closed_holder_gives_its_turn_to_the_waiting_side(server):
    holder, waiter = turns._Client(server.path), turns._Client(server.path)
    holder.take_turn()
    got = threading.Event()
    thread = threading.Thread(target=lambda: (waiter.take_turn(), got.set()))
    thread.start()
    assert not got.wait(0.3)  # the holder works: the other side waits
    holder.close()
    assert got.wait(5)
    thread.join()
    waiter.close()


def test_without_a_coordinator_the_process_runs_on_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(TURNS_ENV, str(tmp_path / "nobody.sock"))
    assert turns.active()
    turns.take_turn()
    turns.take_turn()
    err = capsys.readouterr().err
    assert err.count("running on without taking turns") == 1 and TURNS_ENV in err
    assert not turns.active()


def test_outside_fer_bench_ab_nothing_happens():
    assert not turns.active()
    turns.take_turn()
    turns.end_turns()
    assert turns.turns_taken() == 0


def test_with_turn_takes_a_turn_then_runs_the_setup(server, monkeypatch):
    monkeypatch.setenv(TURNS_ENV, server.path)
    setup = turns.with_turn(lambda: ((1,), {}))
    assert setup() == ((1,), {}) and turns.with_turn(None)() is None
    assert turns.turns_taken() == 2
    turns.end_turns()


class _FakeBenchmark:
    def __init__(self):
        self.calls = []

    def pedantic(self, target, args=(), kwargs=None, setup=None, rounds=1, warmup_rounds=0, iterations=1):
        self.calls.append(dict(setup=setup, rounds=rounds, iterations=iterations))
        for _ in range(warmup_rounds + rounds):
            if setup is not None:
                setup()
            target()


class _Item:
    def __init__(self, fixture):
        self.funcargs = {"benchmark": fixture}


def test_the_plugin_takes_a_turn_before_every_pedantic_round(server, monkeypatch):
    from fer_bench import plugin

    monkeypatch.setenv(TURNS_ENV, server.path)
    fake = _FakeBenchmark()
    plugin._take_turns_per_round(_Item(fake))
    fake.pedantic(lambda: None, rounds=5, warmup_rounds=2)
    assert turns.turns_taken() == 7
    fake.pedantic(lambda: None, rounds=3, iterations=4)  # pytest-benchmark allows no setup with iterations > 1
    assert fake.calls[-1]["setup"] is None and turns.turns_taken() == 7
    turns.end_turns()


def test_the_plugin_leaves_pedantic_alone_outside_fer_bench_ab():
    from fer_bench import plugin

    fake = _FakeBenchmark()
    original = fake.pedantic
    plugin._take_turns_per_round(_Item(fake))
    assert fake.pedantic == original


def test_measure_takes_a_turn_before_its_cold_and_warm_up_calls(server, monkeypatch):
    import torch

    from fer_bench.measure.timing import _timed_call

    monkeypatch.setenv(TURNS_ENV, server.path)
    for _ in range(4):
        _timed_call(lambda: None, torch.device("cpu"))
    assert turns.turns_taken() == 4
    turns.end_turns()
    assert len(server.grants) == 4
