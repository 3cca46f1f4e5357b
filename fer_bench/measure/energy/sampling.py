"""Power sampling: a daemon thread that reads watts every period and integrates them (the trapezoid rule), for a
source whose energy counter is missing or did not advance."""

from __future__ import annotations

import threading
import time
from typing import Callable

from fer_bench.measure.energy.window import describe


class PowerSampler:
    """Reads ``read()`` (watts, one per device) at start, every ``period_s`` in a daemon thread, and at stop.

    The thread appends to ``samples`` and the caller reads them only after ``stop()`` has joined it. An exception
    in any reading ends sampling and is kept in ``error`` (never raised); ``joules()`` integrates the samples
    with the trapezoid rule.
    """

    def __init__(self, read: Callable[[], list[float]], period_s: float,
                 clock: Callable[[], float] = time.perf_counter, join_timeout_s: float | None = None):
        if not period_s > 0:
            raise ValueError(f"sampling period must be positive, got {period_s}")
        self._read, self.period_s, self._clock = read, float(period_s), clock
        self._join_timeout_s = join_timeout_s if join_timeout_s is not None else max(2.0, 20 * self.period_s)
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples: list[tuple[float, list[float]]] = []
        self.error: str | None = None

    def _sample(self) -> None:
        t = self._clock()
        self.samples.append((t, [float(w) for w in self._read()]))

    def _run(self) -> None:
        while not self._stop_event.wait(self.period_s):
            try:
                self._sample()
            except BaseException as exc:  # never let it escape: the timed code must not see it
                self.error = f"power sampling failed: {describe(exc)}"
                return

    def start(self) -> None:
        self.samples, self.error = [], None
        self._stop_event.clear()
        try:
            self._sample()
        except Exception as exc:
            self.error = f"power sampling failed: {describe(exc)}"
            return
        self._thread = threading.Thread(target=self._run, name="fer-bench-power-sampler", daemon=True)
        try:
            self._thread.start()
        except Exception as exc:  # e.g. "can't start new thread"
            self._thread = None
            self.error = f"power sampling thread did not start: {describe(exc)}"

    def stop(self) -> None:
        """Join the thread, then take the last reading (at the window's end)."""
        self._stop_event.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(self._join_timeout_s)
            if thread.is_alive():
                self.error = self.error or (f"power sampling thread did not stop within {self._join_timeout_s:g} s "
                                            "(an NVML call hung)")
                return
        if self.error is None and self.samples:
            try:
                self._sample()
            except Exception as exc:
                self.error = f"power sampling failed: {describe(exc)}"

    def joules(self) -> list[float] | None:
        """Energy per device over the samples (trapezoid rule); None with fewer than 2 samples or an error."""
        if self.error is not None or len(self.samples) < 2:
            return None
        n = len(self.samples[0][1])
        out = [0.0] * n
        for (t0, w0), (t1, w1) in zip(self.samples, self.samples[1:]):
            dt = t1 - t0
            for i in range(n):
                out[i] += (w0[i] + w1[i]) / 2 * dt
        return out
