"""FER_BENCH_INJECT_SLOWDOWN: a known, real slowdown inside the timed region, for calibrating the gate."""

from __future__ import annotations

import time
import types

import pytest
import torch

from fer_bench.errors import FerBenchError
from fer_bench.measure import timing
from fer_bench.measure.timing import (
    INJECT_ENV,
    inject_slowdown,
    measure,
    paired_overhead,
    parse_slowdown,
    resolve_injected_slowdown,
)

CPU = torch.device("cpu")
CALL_S = 0.02


def busy(seconds: float = CALL_S):
    """A deterministic stand-in for a step: spins on the CPU for ``seconds`` (real work, as the injection does)."""
    def call() -> str:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            pass
        return "done"

    return call


def best_of(fn, repeats: int = 5) -> float:
    """The fastest of a few calls: another process's load only ever adds time."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


@pytest.fixture(autouse=True)
def no_injection(monkeypatch):
    """Tests start without the knob, whatever the shell running them has set."""
    monkeypatch.delenv(INJECT_ENV, raising=False)


@pytest.fixture
def quiet_machine(monkeypatch, tmp_path):
    """measure() without touching the process's heap or /proc: synchronisation and the trim are no-ops."""
    monkeypatch.setattr(timing, "release_free_heap", lambda: None)
    monkeypatch.setattr(timing, "RSS_CLEAR_REFS", tmp_path / "no-such-dir" / "clear_refs")


class TimingBenchmark:
    """pytest-benchmark's fixture as measure() uses it, timing each round with the real clock."""

    def __init__(self) -> None:
        self.extra_info: dict = {}
        self.rounds: list[float] = []
        self.stats = None

    def pedantic(self, target, rounds, iterations, warmup_rounds):
        for _ in range(rounds):
            t0 = time.perf_counter()
            target()
            self.rounds.append(time.perf_counter() - t0)
        median = sorted(self.rounds)[len(self.rounds) // 2]
        self.stats = types.SimpleNamespace(stats=types.SimpleNamespace(median=median, iqr=0.0))


# ---------------------------------------------------------------- parsing

@pytest.mark.parametrize("text, expected", [
    ("0.10", 0.10), ("10%", 0.10), (" 25% ", 0.25), ("0", 0.0), ("0%", 0.0), ("", 0.0), ("1.5", 1.5),
    ("9.99", 9.99), ("150%", 1.5),
])
def test_parse_slowdown_accepts_fractions_and_percentages(text, expected):
    assert parse_slowdown(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["abc", "-0.1", "-5%", "10", "1000%", "12", "nan", "inf", "%", "0.1.2"])
def test_parse_slowdown_rejects_bad_values_in_one_line(text):
    with pytest.raises(FerBenchError) as info:
        parse_slowdown(text)
    message = str(info.value)
    assert INJECT_ENV in message and repr(text) in message and "\n" not in message


def test_resolve_reads_the_environment(monkeypatch):
    assert resolve_injected_slowdown() == 0.0
    monkeypatch.setenv(INJECT_ENV, "20%")
    assert resolve_injected_slowdown() == pytest.approx(0.2)
    assert resolve_injected_slowdown({INJECT_ENV: "0.05"}) == pytest.approx(0.05)
    assert resolve_injected_slowdown({}) == 0.0


# ---------------------------------------------------------------- the wrapped call

def test_zero_means_no_wrapping():
    fn = busy()
    assert inject_slowdown(fn, 0.0) is fn


def test_wrapped_call_takes_one_plus_f_times_as_long():
    fn = busy()
    slowed = inject_slowdown(fn, 0.5, CPU)
    assert slowed() == "done"  # the call's result passes through
    ratio = best_of(slowed) / best_of(fn)
    assert 1.3 < ratio < 1.9


def test_measure_times_the_slowed_calls_and_records_the_fraction(monkeypatch, quiet_machine):
    monkeypatch.setenv(INJECT_ENV, "50%")
    calls = []
    fn = busy()
    bench = TimingBenchmark()
    info = measure(bench, lambda: calls.append(fn()), device=CPU, samples_per_call=1, phase="train_step",
                   target_s=0.01, min_rounds=3, warmup_rounds=1)
    assert len(calls) == 1 + 1 + 3  # cold, warm-up, timed: every call is the wrapped one
    assert bench.extra_info["injected_slowdown"] == info["injected_slowdown"] == pytest.approx(0.5)
    assert 1.3 * CALL_S < min(bench.rounds) < 1.9 * CALL_S + 0.01
    assert info["cold_start_ms"] > 1.3 * CALL_S * 1e3


def test_measure_without_the_knob_records_nothing(quiet_machine):
    bench = TimingBenchmark()
    measure(bench, busy(0.002), device=CPU, samples_per_call=1, phase="forward", target_s=0.001, min_rounds=3,
            warmup_rounds=1)
    assert "injected_slowdown" not in bench.extra_info
    assert max(bench.rounds) < 0.002 * 1.3 + 0.01


def test_measure_rejects_a_bad_value_before_any_call(monkeypatch, quiet_machine):
    monkeypatch.setenv(INJECT_ENV, "abc")
    calls = []
    with pytest.raises(FerBenchError, match=INJECT_ENV):
        measure(TimingBenchmark(), lambda: calls.append(1), device=CPU, samples_per_call=1, phase="forward")
    assert calls == []


def test_paired_overhead_slows_both_sides_alike(monkeypatch):
    monkeypatch.setenv(INJECT_ENV, "0.5")
    seen = []

    def candidate():
        seen.append("C")
        busy(0.006)()

    def reference():
        seen.append("R")
        busy(0.004)()

    t0 = time.perf_counter()
    result = paired_overhead(candidate, reference, device=CPU, pairs=4)
    elapsed = time.perf_counter() - t0
    assert len(seen) == 2 + 2 * 4
    assert elapsed > 1.3 * 5 * (0.006 + 0.004)  # the slowed calls ran
    assert 0.2 < result["harness_overhead_fraction"] < 0.8  # the ratio stays about 1.5
