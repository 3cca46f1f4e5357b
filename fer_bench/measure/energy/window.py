"""One energy window: the dict it yields, the fields a result takes from it, and the start/stop bookkeeping that
every source's meter shares (``BaseMeter``), which never lets a hardware failure reach the timed code."""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator, Protocol, runtime_checkable

#: The keys of one window's result, in order.
WINDOW_KEYS = ("energy_j", "energy_source", "energy_sampling_period_s", "energy_domains", "energy_reason")


class SourceFailure(Exception):
    """A reading of a source that cannot be used; str() is the one-line reason."""


def unavailable_window(reason: str) -> dict:
    """A window that measured nothing, with the one-line ``reason``."""
    return {"energy_j": None, "energy_source": None, "energy_sampling_period_s": None, "energy_domains": None,
            "energy_reason": one_line(reason)}


def measured_window(joules: float, source: str, domains: dict[str, float | None],
                    period_s: float | None = None) -> dict:
    """A window that measured ``joules`` in all from ``source``, per domain (a device or a RAPL zone)."""
    return {"energy_j": float(joules), "energy_source": source, "energy_sampling_period_s": period_s,
            "energy_domains": dict(domains), "energy_reason": None}


def per_step_fields(window: dict, *, steps: int, samples: int) -> dict:
    """A result's energy fields from one window over ``steps`` timed steps that processed ``samples`` images.

    Returns ``energy_j`` (the window's total), ``energy_j_per_step``, ``samples_per_joule``, ``energy_source``,
    ``energy_sampling_period_s``, ``energy_domains`` and ``energy_reason``; the figures are None, with the
    reason, when the window measured nothing (or measured no energy at all).
    """
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    if samples < 0:
        raise ValueError(f"samples must be non-negative, got {samples}")
    joules = window.get("energy_j")
    reason = window.get("energy_reason")
    out = {"energy_j": joules, "energy_j_per_step": None, "samples_per_joule": None,
           "energy_source": window.get("energy_source"),
           "energy_sampling_period_s": window.get("energy_sampling_period_s"),
           "energy_domains": window.get("energy_domains"), "energy_reason": reason}
    if joules is None:
        out["energy_reason"] = reason or "energy not measured"
    elif joules <= 0:
        out.update(energy_j=None, energy_reason=f"the window measured {joules} J (no energy): not a measurement")
    else:
        out["energy_j_per_step"] = joules / steps
        out["samples_per_joule"] = samples / joules
    return out


def one_line(text: str) -> str:
    """``text`` with its runs of whitespace, newlines included, as single spaces."""
    return " ".join(str(text).split())


def describe(exc: BaseException) -> str:
    """An exception as "Type: message" (our own failures: their message); NVMLError.__str__ calls into NVML, so it
    may itself fail."""
    if isinstance(exc, SourceFailure):
        return one_line(str(exc))
    try:
        message = str(exc)
    except Exception:
        message = ""
    return one_line(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


# ------------------------------------------------------------------------------------------------------ meters
@runtime_checkable
class EnergyMeter(Protocol):
    """Joules over one window: ``start()`` before the timed rounds, ``stop()`` after (or ``window()``).

    ``reason`` is why the meter cannot measure at all, known when it is opened (None: it expects to measure;
    a window may still fail, and its result says why)."""

    reason: str | None

    def start(self) -> None: ...

    def stop(self) -> dict: ...

    def result(self) -> dict: ...

    def window(self) -> contextlib.AbstractContextManager[EnergyMeter]: ...


class BaseMeter:
    """start/stop bookkeeping shared by the meters; subclasses implement ``_start`` and ``_stop``."""

    reason: str | None = None

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self._clock = clock
        self._running = False
        self._result: dict | None = None
        self._failure: str | None = None
        self._t0 = 0.0
        self.window_s: float | None = None

    @property
    def available(self) -> bool:
        return self.reason is None

    def start(self) -> None:
        """Begin a window. Never raises because of the hardware: a failure here is reported by ``stop()``."""
        if self._running:
            raise RuntimeError("energy meter already started: stop() it first")
        self._running, self._result, self._failure, self.window_s = True, None, None, None
        if self.reason is not None:
            return
        try:
            self._t0 = self._clock()
            self._start()
        except SourceFailure as exc:
            self._failure = str(exc)
        except Exception as exc:
            self._failure = f"energy measurement failed at start: {describe(exc)}"

    def stop(self) -> dict:
        """End the window and return its result (also kept for ``result()``)."""
        if not self._running:
            raise RuntimeError("energy meter not started: call start() first")
        self._running = False
        if self.reason is not None:
            self._result = unavailable_window(self.reason)
        elif self._failure is not None:
            self._cleanup()
            self._result = unavailable_window(self._failure)
        else:
            try:
                self._result = self._stop()
            except SourceFailure as exc:
                self._cleanup()
                self._result = unavailable_window(str(exc))
            except Exception as exc:
                self._cleanup()
                self._result = unavailable_window(f"energy measurement failed at stop: {describe(exc)}")
        return dict(self._result)

    def result(self) -> dict:
        """The last stopped window's result."""
        if self._running:
            raise RuntimeError("energy window still open: result() is ready after stop()")
        if self._result is None:
            raise RuntimeError("no energy window measured yet")
        return dict(self._result)

    @contextlib.contextmanager
    def window(self) -> Iterator[BaseMeter]:
        """``with meter.window() as w: <timed rounds>`` then ``w.result()``; stops even if the body raises."""
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def _elapsed(self) -> float:
        self.window_s = max(0.0, self._clock() - self._t0)
        return self.window_s

    def _start(self) -> None:
        raise NotImplementedError

    def _stop(self) -> dict:
        raise NotImplementedError

    def _cleanup(self) -> None:
        """Release what ``_start`` began (a thread) after a failure."""


class UnavailableEnergy(BaseMeter):
    """A meter for a device no source covers: every window is None with ``reason``."""

    def __init__(self, reason: str):
        super().__init__()
        self.reason = one_line(reason)
