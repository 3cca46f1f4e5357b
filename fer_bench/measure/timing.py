"""Measure one benchmark case honestly with pytest-benchmark's pedantic mode.

What this module guarantees (see ../shared/design/METHOD.md):
- the callable is built by the caller, outside the timed call;
- a cold-start call and explicit warm-up calls run before timing (cuDNN autotune, lazy initialisation and
  allocator growth stay out of the timed rounds) and the cold start is reported as its own figure;
- on CUDA the device is synchronised inside the timed region, and CUDA-event device time is recorded beside the
  host time;
- the number of rounds fills a round-time target, bounded below so the median and IQR mean something, and, under
  a run's time budget, bounded above by the case's share of it (fer_bench.plugin.budget); the relative IQR is
  recorded so a noisy result says so;
- how busy the machine was with other work over the timed rounds is recorded beside them
  (``extra_info["contention"]``, fer_bench.measure.contention): a contended case says so, and with
  ``ContentionPolicy.remeasure`` its rounds are timed once more when the machine is quiet again.

For calibrating the regression gate, FER_BENCH_INJECT_SLOWDOWN (a fraction, 0.10 or 10%) makes every call this
module times do real extra CPU work worth that fraction of the call's own duration, inside the timed region: a
known slowdown that competes for the CPU like a slower kernel would. Such results say so in
``extra_info["injected_slowdown"]``.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from fer_bench.machine.allocator import release_free_heap
from fer_bench.engine.device import synchronize
from fer_bench.measure import turns
from fer_bench.measure.contention import ContentionPolicy, ContentionWindow, resolve_own_pid, wait_for_quiet
from fer_bench.measure.turns import take_turn
from fer_bench.measure.slowdown import (  # noqa: F401 (the knob's parser lives torch-free, for fer-bench ab)
    INJECT_ENV,
    MAX_INJECTED_SLOWDOWN,
    parse_slowdown,
    resolve_injected_slowdown,
)

#: measure()'s defaults: the fewest timed rounds (a median and IQR over fewer mean little) and the warm-up calls.
MIN_ROUNDS = 7
WARMUP_ROUNDS = 3
RSS_CLEAR_REFS = Path("/proc/self/clear_refs")
RSS_STATUS = Path("/proc/self/status")


def _status_kib(field: str) -> int | None:
    try:
        for line in RSS_STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class PeakMemory:
    """Peak memory of one case: CUDA's allocator peak, or on the CPU the growth of the process's peak RSS.

    The CPU figure resets the kernel's high-water mark through /proc/self/clear_refs (Linux); where that file is
    not writable the figure is None rather than a number that belongs to an earlier case. Before the reset, free
    heap memory is handed back (``malloc_trim``): the steady malloc of ``fer_bench.machine.allocator`` keeps freed buffers
    resident, and without the trim a case's activations would already count in the baseline RSS.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.baseline = 0
        self.available = True

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = 0
            return
        release_free_heap()
        try:
            RSS_CLEAR_REFS.write_text("5")
        except OSError:
            self.available = False
            return
        rss = _status_kib("VmRSS")
        self.available = rss is not None
        self.baseline = (rss or 0) * 1024

    def peak_bytes(self) -> int | None:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        if not self.available:
            return None
        hwm = _status_kib("VmHWM")
        return None if hwm is None else max(0, hwm * 1024 - self.baseline)


def choose_rounds(estimate_s: float, target_s: float, min_rounds: int, max_rounds: int) -> int:
    """Rounds that fill ``target_s`` at ``estimate_s`` per call, clamped to [min_rounds, max_rounds]."""
    if estimate_s <= 0:
        return max_rounds
    return max(min_rounds, min(max_rounds, math.ceil(target_s / estimate_s)))


def _burn(seconds: float) -> int:
    """Busy arithmetic until ``seconds`` have passed: CPU work that competes with the machine's other load as a
    slower kernel would (time.sleep would give the CPU away, and a drifting runner would not slow it down)."""
    deadline = time.perf_counter() + seconds
    x = 1
    while time.perf_counter() < deadline:
        for _ in range(64):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


def inject_slowdown(fn: Callable[[], Any], fraction: float, device: torch.device | None = None) -> Callable[[], Any]:
    """``fn`` followed by busy work for ``fraction`` of that call's own duration; ``fn`` itself when fraction is 0.

    The call's duration includes a device synchronisation, so queued CUDA work counts; the extra work runs on the
    host, so the injection models a slower CPU-side step (the calibration it serves runs on the CPU).
    """
    if not fraction:
        return fn

    def slowed() -> Any:
        t0 = time.perf_counter()
        result = fn()
        synchronize(device)
        _burn((time.perf_counter() - t0) * fraction)
        return result

    return slowed


def _timed_call(fn: Callable[[], Any], device: torch.device) -> float:
    take_turn()  # under `fer-bench ab`: wait for this side's turn, outside the timed region
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def measure(benchmark, fn: Callable[[], Any], *, device: torch.device, samples_per_call: int, phase: str,
            target_s: float = 1.0, min_rounds: int = MIN_ROUNDS, max_rounds: int = 500,
            warmup_rounds: int = WARMUP_ROUNDS,
            flops_per_call: int | Callable[[], int | None] | None = None, extra: dict | None = None,
            planner: Any = None, contention: ContentionPolicy | None = None) -> dict:
    """Time ``fn`` (one step, one epoch...) with ``benchmark.pedantic`` and fill ``benchmark.extra_info``.

    Args:
        flops_per_call: FLOPs of one call, or a callable that counts them (called once, after the timed rounds
            and the peak-memory reading).
        planner: the run's time budget (FerSession.round_planner, a fer_bench.plugin.budget.CasePlanner).
            ``after_cold(cold_s, calls_left=, min_rounds=)`` follows the cold call and may skip the case (pytest's
            Skipped) when that call alone spent its allowance; ``plan(estimate_s=, calls_left=, min_rounds=)``
            follows the first warm call (the cold call without a warm-up) and returns a plan with ``max_rounds``
            (None: no cap) and ``info`` (recorded in extra_info), or skips when the minimum rounds do not fit;
            ``replan(estimate_s=, min_rounds=)`` caps the rounds again with the warm-up's median. The rounds fill
            ``target_s``, at most ``max_rounds``.
        contention: what to do with a contended case (Recorder.contention); None: record it, nothing more.

    Returns the figures it recorded (also when pytest-benchmark is disabled, with the timing keys left out).
    """
    device = torch.device(device)
    info: dict[str, Any] = {"phase": phase, "samples_per_call": samples_per_call}
    info.update(extra or {})
    injected = resolve_injected_slowdown()
    if injected:  # every call below (cold, warm-up, timed) is slowed; the result says so, so it never passes as real
        fn = inject_slowdown(fn, injected, device)
        info["injected_slowdown"] = injected
    cold = _timed_call(fn, device)
    if planner is not None:  # a cold call that alone spent the case's allowance ends it here
        planner.after_cold(cold, calls_left=warmup_rounds, min_rounds=min_rounds)
    # The peak covers the warm-up and timed rounds: parameters and optimizer state are live after the cold call,
    # and on the CPU the free heap goes back to the kernel first, so the warm-up faults the activations in again.
    memory = PeakMemory(device)
    memory.reset()
    warm = [_timed_call(fn, device) for _ in range(min(1, warmup_rounds))]
    plan = None
    if planner is not None:
        # the cheap estimate: a case that cannot fit is skipped before the rest of its warm-up
        first = warm[0] if warm else cold
        plan = planner.plan(estimate_s=first, calls_left=warmup_rounds - len(warm), min_rounds=min_rounds)
    more = warmup_rounds - len(warm)
    warm += [_timed_call(fn, device) for _ in range(more)]
    estimate = statistics.median(warm) if warm else cold
    rounds = choose_rounds(estimate, target_s, min_rounds, max_rounds)
    if plan is not None:
        info.update(plan.info)
        if more:  # one warm call can mislead (a cache, a neighbour's load): cap again with the warm-up's median
            plan = planner.replan(estimate_s=estimate, min_rounds=min_rounds)
        if plan.max_rounds is not None:
            rounds = max(min_rounds, min(rounds, plan.max_rounds))
    info.update(cold_start_ms=cold * 1e3, warmup_rounds=warmup_rounds, rounds=rounds, planned_rounds=rounds,
                gc_enabled_while_timing=gc.isenabled())

    events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
    if device.type == "cuda":
        stream = torch.cuda.current_stream(device)

        def target() -> None:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(stream)
            fn()
            end.record(stream)
            # wait for the queued kernels inside the timed region: a host timer alone sees only launches
            end.synchronize()
            events.append((start, end))
    else:
        def target() -> None:
            fn()
            synchronize(device)

    own_pid, own = resolve_own_pid(turns.active())

    def timed_block(run_rounds: Callable[[], Any]) -> tuple[dict, dict]:
        """Run the rounds inside the energy meter's and the contention window's span: (contention, energy)."""
        events.clear()
        meter = _open_energy_meter(device)
        if meter is not None:
            meter.start()
        window = ContentionWindow(own_pid=own_pid, own=own).start()
        run_rounds()
        busy = window.stop()
        return busy, _energy_fields(meter, rounds=rounds, samples=samples_per_call * rounds)

    busy, energy = timed_block(lambda: benchmark.pedantic(target, rounds=rounds, iterations=1, warmup_rounds=0))
    if busy.get("contended") and contention is not None and contention.remeasure:
        busy, energy = _remeasure(benchmark, target, rounds, busy, energy, contention, timed_block, own_pid)
    info.update(energy)
    info["contention"] = busy
    info["peak_memory_bytes"] = memory.peak_bytes()
    if callable(flops_per_call):  # counted after the rounds: a case the budget skips never pays for it
        flops_per_call = flops_per_call()

    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is not None:  # None under --benchmark-disable
        median = stats.median
        info.update(
            step_time_ms=median * 1e3,
            host_time_ms=median * 1e3,
            samples_per_s=samples_per_call / median if median > 0 else None,
            rel_iqr=stats.iqr / median if median > 0 else None,
        )
        if events:
            device_ms = [s.elapsed_time(e) for s, e in events]
            info["device_time_ms"] = statistics.median(device_ms)
        if flops_per_call:
            info["flops_per_step"] = int(flops_per_call)
            info["achieved_tflops"] = flops_per_call / median / 1e12 if median > 0 else None
    elif flops_per_call:
        info["flops_per_step"] = int(flops_per_call)
    benchmark.extra_info.update(info)
    return info


def _remeasure(benchmark, target: Callable[[], None], rounds: int, first: dict, first_energy: dict,
               policy: ContentionPolicy, timed_block: Callable, own_pid: int) -> tuple[dict, dict]:
    """A contended case's rounds timed once more once the machine is quiet (a short sample below the threshold,
    waited for at most ``policy.max_wait_s``); their times replace the contended ones. Returns the contention
    record and energy fields of the rounds the result keeps; the record's ``remeasure`` says what happened."""
    shown = {k: first[k] for k in ("other_cpu_share", "steal_share", "runnable_mean") if k in first}
    if policy.replace_rounds is None or getattr(getattr(benchmark, "stats", None), "stats", None) is None:
        first["remeasure"] = {"done": False, "why": "no pytest-benchmark result whose rounds can be replaced"}
        return first, first_energy
    wait = wait_for_quiet(own_pid=own_pid, threshold=first["threshold"], max_wait_s=policy.max_wait_s)
    if not wait["quiet"]:
        last = wait["last"]
        seen = (f"other processes {last['other_cpu_share']:.0%}, steal {last['steal_share']:.0%} in the last sample"
                if last.get("measured") else last.get("why", "no sample"))
        first["remeasure"] = {"done": False, "waited_s": wait["waited_s"],
                              "why": f"the machine stayed busy for {wait['waited_s']:.0f} s ({seen})"}
        return first, first_energy
    times: list[float] = []

    def run_rounds() -> None:
        for _ in range(rounds):
            take_turn()  # as the plugin does before each pedantic round under `fer-bench ab`
            t0 = time.perf_counter()
            target()
            times.append(time.perf_counter() - t0)

    second, energy = timed_block(run_rounds)
    policy.replace_rounds(benchmark, times)
    second["remeasure"] = {"done": True, "waited_s": wait["waited_s"], "first": shown}
    return second, energy


def _open_energy_meter(device: torch.device):
    """The device's energy meter (NVML on CUDA, RAPL on a Linux CPU), or None when opening one failed outright
    (the reason then comes from _energy_fields)."""
    from fer_bench.measure.energy import open_energy_meter

    try:
        return open_energy_meter(device)
    except Exception:  # energy is best effort: it must never fail a measurement
        return None


def _energy_fields(meter, *, rounds: int, samples: int) -> dict:
    """``energy_j_per_step``, ``samples_per_joule``, the source and period, or nulls with ``energy_reason``."""
    from fer_bench.measure.energy import per_step_fields

    if meter is None:
        window = {"energy_j": None, "energy_reason": "no energy meter could be opened for this device"}
    else:
        try:
            window = meter.stop()
        except Exception as exc:  # best effort, as above
            window = {"energy_j": None, "energy_reason": f"reading the energy meter failed: {exc}"}
    from fer_bench.measure import turns

    fields = per_step_fields(window, steps=rounds, samples=samples)
    if turns.active() and fields.get("energy_j_per_step") is not None:
        # under fer-bench ab the other side's rounds run inside this window: the device's energy is not this step's
        fields.update(energy_j_per_step=None, samples_per_joule=None,
                      energy_reason="fer-bench ab interleaves two processes' rounds: the device's energy over the "
                                    "window is not this case's")
    return fields


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a device allocation failure (CUDA's OutOfMemoryError, or the RuntimeError older code raises)."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def release_memory() -> None:
    """Give cached device memory back after an OOM so the next case starts clean."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def paired_overhead(candidate: Callable[[], Any], reference: Callable[[], Any], *, device: torch.device,
                    pairs: int) -> dict:
    """Relative cost of ``candidate`` over ``reference``, timed in alternating pairs.

    Two medians taken minutes apart differ by the machine's drift (frequency, other load) as much as by the code;
    alternating the two callables (ABBA order) and taking the median of the per-pair ratios cancels that drift.
    """
    device = torch.device(device)
    injected = resolve_injected_slowdown()
    if injected:  # both sides slowed alike, as measure() slows their timed rounds: the ratio stays the harness's own
        candidate = inject_slowdown(candidate, injected, device)
        reference = inject_slowdown(reference, injected, device)
    for fn in (candidate, reference):
        _timed_call(fn, device)
    ratios = []
    for i in range(pairs):
        if i % 2:
            b = _timed_call(reference, device)
            a = _timed_call(candidate, device)
        else:
            a = _timed_call(candidate, device)
            b = _timed_call(reference, device)
        ratios.append(a / b)
    ratios.sort()
    q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
    return {"harness_overhead_fraction": statistics.median(ratios) - 1.0, "harness_overhead_pairs": pairs,
            "harness_overhead_iqr": q3 - q1}
