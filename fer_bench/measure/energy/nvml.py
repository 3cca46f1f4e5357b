"""The NVML source: joules of the CUDA devices a case uses, from the boards' energy counters, else from power
sampling.

CUDA device ``i`` is the ``i``-th GPU that CUDA_VISIBLE_DEVICES exposes, resolved as ``fer_bench.machine.nvml``
does (``resolve_visible_gpus``, NVML's PCI order: on machines of mixed GPU models set CUDA_DEVICE_ORDER=PCI_BUS_ID
so CUDA agrees). NVML is the process's one session, opened by ``fer_bench.machine.nvml.open_nvml``.

- ``"nvml_total_energy_counter"``: ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver loaded;
  Volta and newer) read at start and stop. Preferred: it integrates in the board itself.
- ``"nvml_power_sampling"``: ``nvmlDeviceGetPowerUsage`` (milliwatts) read at start, every ``sampling_period_s``
  (20 ms by default) from a background thread, and at stop, integrated with the trapezoid rule;
  ``energy_sampling_period_s`` says the period. Used when the counter is missing from the binding, raises
  (NotSupported: boards older than Volta), or did not advance over the window. Because the counter may not advance
  over a short window, the sampling thread also runs beside the counter by default (``backup_sampling``): one NVML
  call per GPU per period, off the timed thread. On Ampere and newer boards other than the A100 (GA100), NVML
  documents this reading as an average over the last second (instantaneous on GA100 and older), so sampling smears
  windows shorter than a few seconds.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from fer_bench.measure.energy.sampling import PowerSampler
from fer_bench.measure.energy.window import BaseMeter, SourceFailure, describe, measured_window, unavailable_window

SOURCE_NVML_COUNTER = "nvml_total_energy_counter"
SOURCE_NVML_POWER = "nvml_power_sampling"
DEFAULT_SAMPLING_PERIOD_S = 0.02
NO_NVML = "no NVML (pynvml not installed or no NVIDIA driver)"


class NvmlEnergy(BaseMeter):
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
            return f"{NO_NVML}: {describe(exc)}"
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
                raise _NvmlFailure(f"{name} failed on {device}: {describe(exc)}") from exc
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
                return measured_window(sum(joules), SOURCE_NVML_COUNTER, dict(zip(names, joules)))
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
        return measured_window(sum(joules_sampled), SOURCE_NVML_POWER, dict(zip(names, joules_sampled)),
                               self.sampling_period_s)


class _NvmlFailure(SourceFailure):
    """An NVML reading that cannot be used; str() is the one-line reason."""
