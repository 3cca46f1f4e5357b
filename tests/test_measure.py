"""fer_bench.measure.timing: round budget, paired overhead, measure() on CPU and on a faked CUDA device, peak memory,
OOM detection. Time is a fake clock throughout: no assertion here depends on how fast this machine is."""

from __future__ import annotations

import math
import statistics
import types

import pytest
import torch

from fer_bench.measure import timing
from fer_bench.measure.timing import PeakMemory, choose_rounds, is_out_of_memory, measure, paired_overhead


class FakeClock:
    """Stands in for ``time.perf_counter`` inside timing; callables advance it by what they cost."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    # Replace the module's reference to ``time``, not the global time.perf_counter that pytest itself uses.
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=fake))
    return fake


@pytest.fixture
def log(monkeypatch) -> list:
    """A shared call log; timing.synchronize and the heap trim write into it instead of touching the machine."""
    calls: list = []
    monkeypatch.setattr(timing, "synchronize", lambda device: calls.append(("sync", torch.device(device).type)))
    monkeypatch.setattr(timing, "release_free_heap", lambda: calls.append("trim"))
    return calls


@pytest.fixture
def fake_proc(monkeypatch, tmp_path):
    """/proc/self/clear_refs and /proc/self/status as plain files: VmRSS 1000 KiB at reset, VmHWM 5000 KiB."""
    clear_refs = tmp_path / "clear_refs"
    clear_refs.write_text("")
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t    5000 kB\nVmRSS:\t    1000 kB\nThreads:\t2\n")
    monkeypatch.setattr(timing, "RSS_CLEAR_REFS", clear_refs)
    monkeypatch.setattr(timing, "RSS_STATUS", status)
    return types.SimpleNamespace(clear_refs=clear_refs, status=status)


class FakeStats:
    def __init__(self, median: float, iqr: float) -> None:
        self.median = median
        self.iqr = iqr


class FakeBenchmark:
    """What measure() uses of pytest-benchmark's fixture: pedantic(), .stats.stats and .extra_info."""

    def __init__(self, log: list, median: float | None = 0.125, iqr: float = 0.0125) -> None:
        self.log = log
        self.extra_info: dict = {"preexisting": 1}
        self.stats = None if median is None else types.SimpleNamespace(stats=FakeStats(median, iqr))
        self.pedantic_args: dict | None = None
        self.timing = False

    def pedantic(self, target, rounds, iterations, warmup_rounds):
        self.pedantic_args = {"rounds": rounds, "iterations": iterations, "warmup_rounds": warmup_rounds}
        self.timing = True
        for _ in range(rounds):
            self.log.append("round-start")
            target()
            self.log.append("round-end")
        self.timing = False


def costed_step(clock: FakeClock, bench: FakeBenchmark, costs: list[float], steady: float):
    """A step costing ``costs[i]`` on its i-th untimed call, ``steady`` inside pedantic; logs timed or not."""
    untimed = iter(costs)

    def step() -> None:
        if bench.timing:
            bench.log.append("timed")
            clock.advance(steady)
        else:
            bench.log.append("untimed")
            clock.advance(next(untimed))

    return step


# ---------------------------------------------------------------- choose_rounds

@pytest.mark.parametrize("estimate, target, expected", [
    (0.1, 1.0, 10),      # fills the target exactly
    (0.3, 1.0, 4),       # 3.33 rounds -> ceil, not round or floor
    (0.25, 2.0, 8),
])
def test_choose_rounds_fills_the_target(estimate, target, expected):
    assert choose_rounds(estimate, target, min_rounds=1, max_rounds=1000) == expected


def test_choose_rounds_is_ceil_of_target_over_estimate():
    for estimate in (0.013, 0.07, 0.0041, 0.9):
        assert choose_rounds(estimate, 1.0, 1, 10_000) == math.ceil(1.0 / estimate)


def test_choose_rounds_clamps_to_min_and_max():
    assert choose_rounds(10.0, 1.0, min_rounds=7, max_rounds=500) == 7      # slow call: 1 round would do, min wins
    assert choose_rounds(1e-6, 1.0, min_rounds=7, max_rounds=500) == 500    # fast call: a million, max wins
    assert choose_rounds(0.01, 1.0, min_rounds=7, max_rounds=500) == 100    # inside the bounds: untouched


@pytest.mark.parametrize("estimate", [0.0, -0.5])
def test_choose_rounds_without_an_estimate_takes_max_rounds(estimate):
    assert choose_rounds(estimate, 1.0, min_rounds=7, max_rounds=123) == 123


# ---------------------------------------------------------------- paired_overhead

def fake_pair(clock: FakeClock, order: list, drift_per_call: float = 0.0):
    """Candidate costs 1.25 x reference; with drift every call costs (1 + drift * n) more, n counting all calls."""
    count = [0]

    def cost(base: float) -> float:
        c = base * (1.0 + drift_per_call * count[0])
        count[0] += 1
        return c

    def candidate() -> None:
        order.append("C")
        clock.advance(cost(1.25e-3))

    def reference() -> None:
        order.append("R")
        clock.advance(cost(1e-3))

    return candidate, reference


def test_paired_overhead_reports_the_cost_ratio(clock, log):
    order: list = []
    candidate, reference = fake_pair(clock, order)
    out = paired_overhead(candidate, reference, device=torch.device("cpu"), pairs=9)
    assert out["harness_overhead_fraction"] == pytest.approx(0.25, abs=1e-9)
    assert out["harness_overhead_pairs"] == 9
    assert out["harness_overhead_iqr"] == pytest.approx(0.0, abs=1e-9)
    assert len(order) == 2 + 2 * 9
    # each timed call is followed by a device synchronisation before the clock is read
    assert log.count(("sync", "cpu")) == len(order)


def test_paired_overhead_alternates_abba(clock, log):
    order: list = []
    candidate, reference = fake_pair(clock, order)
    paired_overhead(candidate, reference, device="cpu", pairs=4)
    # one untimed call of each first, then C R | R C | C R | R C
    assert order == ["C", "R", "C", "R", "R", "C", "C", "R", "R", "C"]


def test_paired_overhead_cancels_linear_drift(clock, log):
    """Every call costs 5% more than the one before. Two separate medians are off by a factor, always-AB pairs by
    about 2.5%; ABBA pairs leave the ratio within 0.5% of the true 1.25."""
    drift, pairs = 0.05, 20
    order: list = []
    candidate, reference = fake_pair(clock, order, drift_per_call=drift)
    out = paired_overhead(candidate, reference, device="cpu", pairs=pairs)
    assert out["harness_overhead_pairs"] == pairs
    assert abs(out["harness_overhead_fraction"] - 0.25) < 0.005

    # The same drifting machine measured the naive way: all candidate calls, then all reference calls.
    naive_clock, naive_order = FakeClock(), []
    cand2, ref2 = fake_pair(naive_clock, naive_order, drift_per_call=drift)

    def timed(fn):
        t0 = naive_clock()
        fn()
        return naive_clock() - t0

    a = statistics.median(timed(cand2) for _ in range(pairs))
    b = statistics.median(timed(ref2) for _ in range(pairs))
    naive_error = abs(a / b - 1.25)
    assert naive_error > 0.1  # the drift really is large enough to matter ...
    assert abs(out["harness_overhead_fraction"] - 0.25) < naive_error / 20  # ... and pairing removes it


# ---------------------------------------------------------------- measure on the CPU

def test_measure_runs_cold_and_warmup_calls_before_the_timed_rounds(clock, log, fake_proc):
    bench = FakeBenchmark(log)
    # cold 0.5 s, warm-up 0.125 / 0.0625 / 0.25 s: warm median 0.125 -> ceil(2.0 / 0.125) = 16 rounds
    # (the cold call would give 4, the warm mean 14, the fastest 32, the slowest 8)
    step = costed_step(clock, bench, [0.5, 0.125, 0.0625, 0.25], steady=0.125)
    info = measure(bench, step, device="cpu", samples_per_call=32, phase="train_step", target_s=2.0,
                   min_rounds=3, max_rounds=500, warmup_rounds=3)

    calls = [c for c in log if c in ("untimed", "timed")]
    assert calls == ["untimed"] * 4 + ["timed"] * 16
    assert bench.pedantic_args == {"rounds": 16, "iterations": 1, "warmup_rounds": 0}
    assert info["rounds"] == 16
    assert info["warmup_rounds"] == 3
    assert info["cold_start_ms"] == pytest.approx(500.0)
    # the CPU target synchronises inside the timed round
    first = log.index("round-start")
    assert log[first:first + 4] == ["round-start", "timed", ("sync", "cpu"), "round-end"]
    # the heap is trimmed and the peak reset after the cold call, before the warm-up
    assert log.index("trim") == log.index("untimed") + 2  # untimed, sync, trim
    assert fake_proc.clear_refs.read_text() == "5"


def test_measure_rounds_are_clamped_by_min_and_max(clock, log, fake_proc):
    bench = FakeBenchmark(log)
    step = costed_step(clock, bench, [1.0, 0.5, 0.5], steady=0.5)
    measure(bench, step, device="cpu", samples_per_call=1, phase="x", target_s=1.0, min_rounds=5, warmup_rounds=2)
    assert bench.pedantic_args["rounds"] == 5

    log.clear()
    bench = FakeBenchmark(log)
    step = costed_step(clock, bench, [1.0, 2.0 ** -20], steady=0.0)
    measure(bench, step, device="cpu", samples_per_call=1, phase="x", target_s=1.0, max_rounds=11, warmup_rounds=1)
    assert bench.pedantic_args["rounds"] == 11


def test_measure_without_warmup_estimates_from_the_cold_call(clock, log, fake_proc):
    bench = FakeBenchmark(log)
    step = costed_step(clock, bench, [0.25], steady=0.25)
    info = measure(bench, step, device="cpu", samples_per_call=1, phase="x", target_s=2.0, min_rounds=1,
                   warmup_rounds=0)
    assert info["rounds"] == 8
    assert [c for c in log if c == "untimed"] == ["untimed"]


def test_measure_fills_extra_info(clock, log, fake_proc):
    bench = FakeBenchmark(log, median=0.125, iqr=0.025)
    step = costed_step(clock, bench, [0.5, 0.125], steady=0.125)
    info = measure(bench, step, device="cpu", samples_per_call=64, phase="train_step", warmup_rounds=1,
                   flops_per_call=3_000_000_000_000, extra={"batch_size": 64})

    assert info["step_time_ms"] == pytest.approx(125.0)
    assert info["host_time_ms"] == pytest.approx(125.0)
    assert info["samples_per_s"] == pytest.approx(64 / 0.125)
    assert info["rel_iqr"] == pytest.approx(0.2)
    assert info["cold_start_ms"] == pytest.approx(500.0)
    assert info["flops_per_step"] == 3_000_000_000_000
    assert isinstance(info["flops_per_step"], int)
    assert info["achieved_tflops"] == pytest.approx(3.0 / 0.125)
    assert info["phase"] == "train_step"
    assert info["samples_per_call"] == 64
    assert info["batch_size"] == 64
    assert info["peak_memory_bytes"] == (5000 - 1000) * 1024
    assert "device_time_ms" not in info  # no CUDA events on the CPU
    assert isinstance(info["gc_enabled_while_timing"], bool)
    # everything returned is also in extra_info, which keeps what was there before
    assert bench.extra_info == {"preexisting": 1, **info}


def test_measure_leaves_out_flops_rates_when_flops_unknown(clock, log, fake_proc):
    bench = FakeBenchmark(log)
    info = measure(bench, costed_step(clock, bench, [0.5, 0.125], 0.125), device="cpu", samples_per_call=1,
                   phase="x", warmup_rounds=1)
    assert "flops_per_step" not in info and "achieved_tflops" not in info
    assert "step_time_ms" in info


def test_measure_with_a_zero_median_gives_no_rates(clock, log, fake_proc):
    bench = FakeBenchmark(log, median=0.0, iqr=0.0)
    info = measure(bench, costed_step(clock, bench, [0.5, 0.125], 0.125), device="cpu", samples_per_call=8,
                   phase="x", warmup_rounds=1, flops_per_call=10)
    assert info["samples_per_s"] is None and info["rel_iqr"] is None and info["achieved_tflops"] is None


def test_measure_with_benchmark_disabled_leaves_timing_keys_out(clock, log, fake_proc):
    bench = FakeBenchmark(log, median=None)  # --benchmark-disable: benchmark.stats is None
    step = costed_step(clock, bench, [0.5, 0.125, 0.125, 0.125], steady=0.125)
    info = measure(bench, step, device="cpu", samples_per_call=8, phase="x", flops_per_call=1000)
    for key in ("step_time_ms", "host_time_ms", "samples_per_s", "rel_iqr", "achieved_tflops", "device_time_ms"):
        assert key not in info
    assert info["flops_per_step"] == 1000
    assert info["cold_start_ms"] == pytest.approx(500.0)
    assert "peak_memory_bytes" in info
    assert bench.extra_info == {"preexisting": 1, **info}


# ---------------------------------------------------------------- measure on a faked CUDA device

class FakeCuda:
    """torch.cuda's Event, current_stream and memory counters, enough for measure() on a CPU-only machine."""

    def __init__(self, log: list, elapsed_ms: list[float]) -> None:
        self.log = log
        self.elapsed = iter(elapsed_ms)
        self.stream = object()
        self.events: list = []
        cuda = self

        class Event:
            def __init__(self, enable_timing: bool = False) -> None:
                assert enable_timing, "device time needs timing events"
                self.index = len(cuda.events)
                self.recorded_on = None
                self.synchronized = False
                cuda.events.append(self)

            def record(self, stream=None) -> None:
                assert stream is cuda.stream
                self.recorded_on = stream
                cuda.log.append(("record", self.index))

            def synchronize(self) -> None:
                self.synchronized = True
                cuda.log.append(("event-sync", self.index))

            def elapsed_time(self, end) -> float:
                assert end.index == self.index + 1 and end.recorded_on is not None
                return next(cuda.elapsed)

        self.Event = Event

    def current_stream(self, device):
        self.log.append(("current_stream", torch.device(device)))
        return self.stream

    def reset_peak_memory_stats(self, device) -> None:
        self.log.append(("reset_peak", torch.device(device).type))

    def max_memory_allocated(self, device) -> int:
        self.log.append(("max_memory", torch.device(device).type))
        return 123_456_789


@pytest.fixture
def fake_cuda(monkeypatch, log):
    cuda = FakeCuda(log, elapsed_ms=[3.0, 1.0, 9.0, 2.0, 4.0])
    for name in ("Event", "current_stream", "reset_peak_memory_stats", "max_memory_allocated"):
        monkeypatch.setattr(torch.cuda, name, getattr(cuda, name))
    return cuda


def test_measure_on_cuda_times_each_round_with_events(clock, log, fake_cuda):
    bench = FakeBenchmark(log, median=0.125, iqr=0.0)
    step = costed_step(clock, bench, [0.5, 0.125, 0.125], steady=0.125)
    info = measure(bench, step, device=torch.device("cuda"), samples_per_call=16, phase="train_step",
                   target_s=0.625, min_rounds=1, warmup_rounds=2)
    assert info["rounds"] == 5

    # every timed round: start recorded, the step, end recorded, the host waits on the end event, then returns
    rounds, current = [], None
    for entry in log:
        if entry == "round-start":
            current = []
        elif entry == "round-end":
            rounds.append(current)
            current = None
        elif current is not None:
            current.append(entry)
    assert len(rounds) == 5
    for r, calls in enumerate(rounds):
        start, end = 2 * r, 2 * r + 1
        assert calls == [("record", start), "timed", ("record", end), ("event-sync", end)]
    assert len(fake_cuda.events) == 10
    assert all(e.recorded_on is fake_cuda.stream for e in fake_cuda.events)
    # the untimed calls synchronise the device through timing.synchronize; the timed rounds need not
    assert log.count(("sync", "cuda")) == 3

    assert info["device_time_ms"] == pytest.approx(3.0)  # median of 3, 1, 9, 2, 4
    assert info["step_time_ms"] == pytest.approx(125.0)
    assert info["peak_memory_bytes"] == 123_456_789
    assert ("current_stream", torch.device("cuda")) in log
    # the peak is reset after the cold call and read after the timed rounds
    untimed = [i for i, e in enumerate(log) if e == "untimed"]
    assert untimed[0] < log.index(("reset_peak", "cuda")) < untimed[1]
    assert log.index(("max_memory", "cuda")) > max(i for i, e in enumerate(log) if e == "round-end")
    assert "trim" not in log  # the CPU heap trim is not a CUDA matter


def test_measure_on_cuda_with_benchmark_disabled_has_no_device_time(clock, log, fake_cuda):
    bench = FakeBenchmark(log, median=None)
    step = costed_step(clock, bench, [0.5, 0.125], steady=0.125)
    info = measure(bench, step, device="cuda", samples_per_call=16, phase="x", target_s=0.25, min_rounds=1,
                   warmup_rounds=1)
    assert "device_time_ms" not in info and "step_time_ms" not in info
    assert info["peak_memory_bytes"] == 123_456_789


# ---------------------------------------------------------------- PeakMemory on the CPU

def test_cpu_peak_is_none_when_clear_refs_cannot_be_written(monkeypatch, tmp_path, log):
    monkeypatch.setattr(timing, "RSS_CLEAR_REFS", tmp_path / "no-such-dir" / "clear_refs")
    memory = PeakMemory(torch.device("cpu"))
    memory.reset()
    assert memory.available is False
    assert memory.peak_bytes() is None


def test_cpu_peak_is_growth_of_the_high_water_mark_over_rss_at_reset(monkeypatch, fake_proc):
    seen_at_trim = []
    monkeypatch.setattr(timing, "release_free_heap", lambda: seen_at_trim.append(fake_proc.clear_refs.read_text()))
    memory = PeakMemory(torch.device("cpu"))
    memory.reset()
    assert seen_at_trim == [""]  # free heap handed back once, before the high-water mark is reset
    assert fake_proc.clear_refs.read_text() == "5"  # "5" resets the kernel's VmHWM
    assert memory.baseline == 1000 * 1024
    fake_proc.status.write_text("VmHWM:\t 21480 kB\nVmRSS:\t 2000 kB\n")  # 20 MiB over the baseline
    assert memory.peak_bytes() == 20 << 20


def test_cpu_peak_is_none_when_status_lacks_the_fields(fake_proc, log):
    fake_proc.status.write_text("Name:\tpython\n")
    memory = PeakMemory(torch.device("cpu"))
    memory.reset()
    assert memory.available is False
    assert memory.peak_bytes() is None


# ---------------------------------------------------------------- is_out_of_memory

def test_out_of_memory_error_type_is_oom():
    # the message does not say "out of memory": the type alone must decide
    assert is_out_of_memory(torch.OutOfMemoryError("Tried to allocate 2.00 GiB")) is True


def test_old_style_cuda_oom_runtime_error_is_oom():
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB")) is True
    assert is_out_of_memory(RuntimeError("CUDA error: OUT OF MEMORY")) is True


@pytest.mark.parametrize("exc", [ValueError("out of memory"), RuntimeError("CUDA error: device-side assert"),
                                 MemoryError()])
def test_other_errors_are_not_oom(exc):
    assert is_out_of_memory(exc) is False
