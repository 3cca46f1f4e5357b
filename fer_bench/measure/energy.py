"""Energy over a benchmark's timed rounds: joules from NVML on NVIDIA GPUs and from RAPL on Linux CPUs.

A meter is started before the timed rounds and stopped after them (``with meter.window() as w: ...`` then
``w.result()``, or ``start()`` / ``stop()``); the result is one window's dict (``WINDOW_KEYS``)::

    {"energy_j": 812.4, "energy_source": "nvml_total_energy_counter", "energy_sampling_period_s": None,
     "energy_domains": {"cuda:0": 406.0, "cuda:1": 406.4}, "energy_reason": None}

and ``per_step_fields(window, steps=..., samples=...)`` turns it into a result's ``energy_j_per_step`` and
``samples_per_joule``. A meter never raises into the timed code because of the hardware: whatever cannot be
measured gives ``energy_j`` None and a one-line ``energy_reason`` naming the cause (no NVML, no powercap tree,
RAPL readable only by root, a counter that did not advance, a failed power reading...). Misuse (``stop()``
before ``start()``) raises RuntimeError.

What is measured, and when each source is used:

* CUDA cases (``NvmlEnergy``): the GPUs the case uses, summed. CUDA device ``i`` is the ``i``-th GPU that
  CUDA_VISIBLE_DEVICES exposes, resolved as ``fer_bench.machine.nvml`` does (``resolve_visible_gpus``,
  NVML's PCI order: on machines of mixed GPU models set CUDA_DEVICE_ORDER=PCI_BUS_ID so CUDA agrees).

  - ``"nvml_total_energy_counter"``: ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver
    loaded; Volta and newer) read at start and stop. Preferred: it integrates in the board itself.
  - ``"nvml_power_sampling"``: ``nvmlDeviceGetPowerUsage`` (milliwatts) read at start, every
    ``sampling_period_s`` (20 ms by default) from a background thread, and at stop, integrated with the
    trapezoid rule; ``energy_sampling_period_s`` says the period. Used when the counter is missing from the
    binding, raises (NotSupported: boards older than Volta), or did not advance over the window. Because the
    counter may not advance over a short window, the sampling thread also runs beside the counter by default
    (``backup_sampling``): one NVML call per GPU per period, off the timed thread. On Ampere and newer boards
    other than the A100 (GA100), NVML documents this reading as an average over the last second (instantaneous
    on GA100 and older), so sampling smears windows shorter than a few seconds.

* CPU cases (``RaplEnergy``): ``/sys/class/powercap/intel-rapl:N`` (package) zones and their ``dram``
  subzones, ``energy_uj`` read at start and stop, a counter that went down counted as one wrap at
  ``max_energy_range_uj`` (a package counter wraps after some 262 kJ: windows longer than a wrap period, tens of
  minutes at full load, would be undercounted). AMD processors expose the same ``intel-rapl`` tree on recent
  kernels; domains are read by their ``name`` (package-N, dram, core, uncore, psys). ``energy_j`` sums the
  packages and dram; every domain's joules are recorded, ``core``/``uncore`` (already inside their package) and
  ``psys`` (the whole platform) beside it, never added. Since Linux 5.10 ``energy_uj`` is root-only on most
  distributions: then energy is not measured and the reason says so.

A too-short window: a counter that did not advance between start and stop says nothing about the energy, so
NVML falls back to power sampling and RAPL reports no energy, with the window's length in the reason.

Energy covers the whole GPU board or CPU package (and its memory), not only this process: idle power and other
processes on the same device count too, so compare energies of runs on otherwise idle machines.

torch is never imported here.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, runtime_checkable

#: The keys of one window's result, in order.
WINDOW_KEYS = ("energy_j", "energy_source", "energy_sampling_period_s", "energy_domains", "energy_reason")
SOURCE_NVML_COUNTER = "nvml_total_energy_counter"
SOURCE_NVML_POWER = "nvml_power_sampling"
SOURCE_RAPL = "rapl_energy_counter"
DEFAULT_SAMPLING_PERIOD_S = 0.02
#: A module attribute so tests can point RaplEnergy's default at a fake tree.
POWERCAP_ROOT = Path("/sys/class/powercap")
NO_NVML = "no NVML (pynvml not installed or no NVIDIA driver)"

_RAPL_ZONE = re.compile(r"intel-rapl:(\d+)(?::(\d+))?")
_SUMMED_SUBDOMAINS = ("dram",)


# ----------------------------------------------------------------------------------------------- window dicts
def unavailable_window(reason: str) -> dict:
    """A window that measured nothing, with the one-line ``reason``."""
    return {"energy_j": None, "energy_source": None, "energy_sampling_period_s": None, "energy_domains": None,
            "energy_reason": _one_line(reason)}


def _measured_window(joules: float, source: str, domains: dict[str, float | None],
                     period_s: float | None = None) -> dict:
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


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _describe(exc: BaseException) -> str:
    """An exception as "Type: message" (our own failures: their message); NVMLError.__str__ calls into NVML, so it
    may itself fail."""
    if isinstance(exc, (_NvmlFailure, _RaplFailure)):
        return _one_line(str(exc))
    try:
        message = str(exc)
    except Exception:
        message = ""
    return _one_line(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


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


class _Meter:
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
        except (_NvmlFailure, _RaplFailure) as exc:
            self._failure = str(exc)
        except Exception as exc:
            self._failure = f"energy measurement failed at start: {_describe(exc)}"

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
            except (_NvmlFailure, _RaplFailure) as exc:
                self._cleanup()
                self._result = unavailable_window(str(exc))
            except Exception as exc:
                self._cleanup()
                self._result = unavailable_window(f"energy measurement failed at stop: {_describe(exc)}")
        return dict(self._result)

    def result(self) -> dict:
        """The last stopped window's result."""
        if self._running:
            raise RuntimeError("energy window still open: result() is ready after stop()")
        if self._result is None:
            raise RuntimeError("no energy window measured yet")
        return dict(self._result)

    @contextlib.contextmanager
    def window(self) -> Iterator[_Meter]:
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


class UnavailableEnergy(_Meter):
    """A meter for a device no source covers: every window is None with ``reason``."""

    def __init__(self, reason: str):
        super().__init__()
        self.reason = _one_line(reason)


# ---------------------------------------------------------------------------------------------------- sampling
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
                self.error = f"power sampling failed: {_describe(exc)}"
                return

    def start(self) -> None:
        self.samples, self.error = [], None
        self._stop_event.clear()
        try:
            self._sample()
        except Exception as exc:
            self.error = f"power sampling failed: {_describe(exc)}"
            return
        self._thread = threading.Thread(target=self._run, name="fer-bench-power-sampler", daemon=True)
        try:
            self._thread.start()
        except Exception as exc:  # e.g. "can't start new thread"
            self._thread = None
            self.error = f"power sampling thread did not start: {_describe(exc)}"

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
                self.error = f"power sampling failed: {_describe(exc)}"

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


# -------------------------------------------------------------------------------------------------------- NVML
class NvmlEnergy(_Meter):
    """Energy of the CUDA devices ``device_indices`` (CUDA's numbering, after CUDA_VISIBLE_DEVICES), summed.

    ``sampling_period_s``: the power-sampling period. ``backup_sampling``: also sample power while the energy
    counter works, so that a window too short to advance the counter still gets a figure (False: sample only
    where the counter cannot be used).
    """

    def __init__(self, device_indices: Iterable[int], *, sampling_period_s: float = DEFAULT_SAMPLING_PERIOD_S,
                 backup_sampling: bool = True, clock: Callable[[], float] = time.perf_counter):
        super().__init__(clock)
        if not sampling_period_s > 0:
            raise ValueError(f"sampling period must be positive, got {sampling_period_s}")
        self.device_indices = list(dict.fromkeys(int(i) for i in device_indices))
        self.sampling_period_s = float(sampling_period_s)
        self.backup_sampling = backup_sampling
        self._module: Any = None
        self._handles: list[tuple[str, Any]] = []  # (domain name "cuda:i", NVML handle)
        self.counter_reason: str | None = None  # why the energy counter is not used
        self.power_reason: str | None = None  # why power sampling is not possible
        self._counter_start: list[int] | None = None
        self._counter_failure: str | None = None  # why this window's start could not read the counter
        self._sampler: PowerSampler | None = None
        self.sample_count = 0
        self.reason = self._open()

    # -- opening
    def _open(self) -> str | None:
        if not self.device_indices:
            return "no CUDA device indices given to measure"
        from fer_bench.machine.nvml import nvml_error, open_nvml

        try:
            nvml, visible = open_nvml()
        except Exception as exc:
            return f"{NO_NVML}: {_describe(exc)}"
        if nvml is None:
            error = nvml_error()
            return f"{NO_NVML}: {error}" if error else NO_NVML
        self._module = nvml.module
        for index in self.device_indices:
            if not 0 <= index < len(visible):
                return (f"cuda:{index} is not among the {len(visible)} GPU(s) NVML sees through "
                        "CUDA_VISIBLE_DEVICES")
            self._handles.append((f"cuda:{index}", visible[index][1]))
        try:
            self._read_counters()
        except _NvmlFailure as exc:
            self.counter_reason = str(exc)
        try:
            self._read_power()
        except _NvmlFailure as exc:
            self.power_reason = str(exc)
        if self.counter_reason and self.power_reason:
            return f"{self.counter_reason} and {self.power_reason}"
        return None

    def _call_each(self, name: str) -> list[Any]:
        fn = getattr(self._module, name, None)
        if fn is None:
            raise _NvmlFailure(f"{name} is missing from this pynvml (an old binding)")
        out = []
        for device, handle in self._handles:
            try:
                out.append(fn(handle))
            except Exception as exc:
                raise _NvmlFailure(f"{name} failed on {device}: {_describe(exc)}") from exc
        return out

    def _read_counters(self) -> list[int]:
        values = self._call_each("nvmlDeviceGetTotalEnergyConsumption")
        for (device, _), value in zip(self._handles, values):
            if not isinstance(value, int) or isinstance(value, bool):
                raise _NvmlFailure(f"nvmlDeviceGetTotalEnergyConsumption gave {value!r} on {device}")
        return values

    def _read_power(self) -> list[float]:
        values = self._call_each("nvmlDeviceGetPowerUsage")
        for (device, _), value in zip(self._handles, values):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise _NvmlFailure(f"nvmlDeviceGetPowerUsage gave {value!r} on {device}")
        return [v / 1000 for v in values]

    # -- a window
    def _start(self) -> None:
        self._counter_start, self._counter_failure, self._sampler, self.sample_count = None, None, None, 0
        use_counter = self.counter_reason is None
        if self.power_reason is None and (not use_counter or self.backup_sampling):
            self._sampler = PowerSampler(self._read_power, self.sampling_period_s, self._clock)
            self._sampler.start()
        if use_counter:
            try:
                self._counter_start = self._read_counters()
            except _NvmlFailure as exc:
                self._counter_failure = str(exc)
        self._t0 = self._clock()

    def _cleanup(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()

    def _stop(self) -> dict:
        counter_end: list[int] | None = None
        counter_failure = self.counter_reason or self._counter_failure
        if self._counter_start is not None:
            try:
                counter_end = self._read_counters()
            except _NvmlFailure as exc:
                counter_failure = str(exc)
        elapsed = self._elapsed()
        sampler = self._sampler
        if sampler is not None:
            sampler.stop()
            self.sample_count = len(sampler.samples)
        names = [device for device, _ in self._handles]
        if self._counter_start is not None and counter_end is not None:
            deltas = [end - start for start, end in zip(self._counter_start, counter_end)]
            if all(d > 0 for d in deltas):
                joules = [d / 1000 for d in deltas]
                return _measured_window(sum(joules), SOURCE_NVML_COUNTER, dict(zip(names, joules)))
            if any(d < 0 for d in deltas):
                counter_failure = "the energy counter went backwards (the driver reloaded?)"
            else:
                counter_failure = f"the energy counter did not advance over a {elapsed:.3f} s window"
        if sampler is None:
            why = self.power_reason or "power sampling is off (backup_sampling=False)"
            return unavailable_window(f"{counter_failure} and {why}")
        joules_sampled = sampler.joules()
        if joules_sampled is None:
            why = sampler.error or "power sampling got fewer than 2 samples"
            return unavailable_window(f"{counter_failure} and {why}")
        return _measured_window(sum(joules_sampled), SOURCE_NVML_POWER, dict(zip(names, joules_sampled)),
                                self.sampling_period_s)


class _NvmlFailure(Exception):
    """An NVML reading that cannot be used; str() is the one-line reason."""


# -------------------------------------------------------------------------------------------------------- RAPL
@dataclass
class RaplDomain:
    """One powercap zone: ``key`` as recorded (``package-0``, ``package-0/dram``), whether it counts in the sum."""

    key: str
    name: str
    path: Path
    summed: bool
    max_range_uj: int | None


class RaplEnergy(_Meter):
    """Energy of the CPU packages and their DRAM from the powercap tree at ``root`` (``/sys/class/powercap``)."""

    def __init__(self, root: str | Path | None = None, *, clock: Callable[[], float] = time.perf_counter):
        super().__init__(clock)
        self.root = Path(root) if root is not None else POWERCAP_ROOT
        self.domains: list[RaplDomain] = []
        self._start_uj: list[int] = []
        self.reason = self._discover()

    def _discover(self) -> str | None:
        if not self.root.is_dir():
            return f"no {self.root} (this kernel or VM exposes no RAPL)"
        try:
            entries = [p for p in self.root.iterdir() if _RAPL_ZONE.fullmatch(p.name)]
        except OSError as exc:
            return f"cannot list {self.root}: {_describe(exc)}"
        if not entries:
            return f"no intel-rapl zones under {self.root} (this kernel or VM exposes no RAPL)"

        def order(p: Path) -> tuple[int, int]:
            m = _RAPL_ZONE.fullmatch(p.name)
            return int(m.group(1)), int(m.group(2)) if m.group(2) is not None else -1

        parents: dict[str, str] = {}
        for path in sorted(entries, key=order):
            package, sub = _RAPL_ZONE.fullmatch(path.name).groups()
            name = (_read_sysfs(path / "name") or path.name).strip() or path.name
            if sub is None:
                key = parents[package] = self._unique(name, path)
                summed = name.startswith("package")
            else:
                parent = parents.get(package, f"intel-rapl:{package}")
                key = self._unique(f"{parent}/{name}", path)
                summed = name in _SUMMED_SUBDOMAINS
            max_text = _read_sysfs(path / "max_energy_range_uj")
            max_range = int(max_text) if max_text and max_text.strip().isdigit() else None
            domain = RaplDomain(key=key, name=name, path=path, summed=summed, max_range_uj=max_range)
            try:
                _read_energy_uj(domain)
            except _RaplFailure as exc:
                if exc.permission or domain.summed:
                    return str(exc)
                continue  # a core/uncore/psys zone that does not answer: leave it out
            self.domains.append(domain)
        if not any(d.summed for d in self.domains):
            found = ", ".join(d.key for d in self.domains) or "none readable"
            return f"no package or dram zone among the RAPL zones under {self.root} (found: {found})"
        return None

    def _unique(self, key: str, path: Path) -> str:
        return f"{key}@{path.name}" if any(d.key == key for d in self.domains) else key

    def _start(self) -> None:
        self._start_uj = [_read_energy_uj(d) for d in self.domains]
        self._t0 = self._clock()

    def _stop(self) -> dict:
        end_uj: list[int | None] = []
        for domain in self.domains:
            try:
                end_uj.append(_read_energy_uj(domain))
            except _RaplFailure as exc:
                if domain.summed:
                    return unavailable_window(str(exc))
                end_uj.append(None)  # a core/uncore/psys reading lost: recorded as None, the sum is unaffected
        elapsed = self._elapsed()
        joules: dict[str, float | None] = {}
        total = 0.0
        for domain, start, end in zip(self.domains, self._start_uj, end_uj):
            if end is None:
                joules[domain.key] = None
                continue
            if end >= start:
                delta = end - start
            elif domain.max_range_uj is not None and domain.max_range_uj >= start:
                delta = domain.max_range_uj - start + end  # wrapped once
            else:
                if domain.summed:
                    return unavailable_window(f"{domain.path / 'energy_uj'} went down ({start} -> {end}) and "
                                              "max_energy_range_uj is unreadable, so the wrap cannot be undone")
                joules[domain.key] = None
                continue
            joules[domain.key] = delta / 1e6
            if domain.summed:
                total += delta / 1e6
        if total <= 0:
            return unavailable_window(f"the RAPL energy counters did not advance over a {elapsed:.3f} s window")
        return _measured_window(total, SOURCE_RAPL, joules)


class _RaplFailure(Exception):
    def __init__(self, message: str, permission: bool = False):
        super().__init__(message)
        self.permission = permission


def _read_sysfs(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except (OSError, ValueError):
        return None


def _read_energy_uj(domain: RaplDomain) -> int:
    path = domain.path / "energy_uj"
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read()
    except PermissionError:
        raise _RaplFailure(f"permission denied reading {path} (RAPL is root-only here)", permission=True) from None
    except OSError as exc:
        raise _RaplFailure(f"cannot read {path}: {exc.strerror or _describe(exc)}") from None
    text = text.strip()
    if not text.isdigit():
        raise _RaplFailure(f"{path} holds {text[:40]!r}, not a counter")
    return int(text)


# ---------------------------------------------------------------------------------------------------- choosing
def open_energy_meter(device: Any, *, device_indices: Iterable[int] | None = None,
                      sampling_period_s: float = DEFAULT_SAMPLING_PERIOD_S,
                      powercap_root: str | Path | None = None) -> EnergyMeter:
    """The meter for a case on ``device`` ("cpu", "cuda", "cuda:1" or a torch.device).

    CUDA: NVML over ``device_indices`` (default: the device's own index; pass every index a multi-GPU case
    uses). CPU: RAPL. Anything else, or a meter that cannot be opened, is an ``UnavailableEnergy`` whose reason
    says why. Never raises because of the hardware.
    """
    name = str(device)
    kind, _, index = name.partition(":")
    try:
        if kind == "cuda":
            if device_indices is None:
                device_indices = [int(index) if index else 0]
            return NvmlEnergy(device_indices, sampling_period_s=sampling_period_s)
        if kind == "cpu":
            return RaplEnergy(powercap_root)
    except ValueError:
        raise
    except Exception as exc:
        return UnavailableEnergy(f"energy meter for {name} failed to open: {_describe(exc)}")
    return UnavailableEnergy(f"no energy source for device {name!r} (NVML covers cuda, RAPL covers cpu)")
