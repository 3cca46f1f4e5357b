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

What is measured, and when each source is used (``open_energy_meter`` picks the source):

* CUDA cases (``NvmlEnergy``, fer_bench.measure.energy.nvml): the GPUs the case uses, summed, from the boards'
  energy counters (``"nvml_total_energy_counter"``), else from power sampling (``"nvml_power_sampling"``, the
  thread of fer_bench.measure.energy.sampling).
* CPU cases (``RaplEnergy``, fer_bench.measure.energy.rapl): the packages and their DRAM, from the powercap
  tree's counters (``"rapl_energy_counter"``); often root-only, and then the reason says so.

The window's dict, the result fields and the start/stop bookkeeping every meter shares are in
fer_bench.measure.energy.window.

A too-short window: a counter that did not advance between start and stop says nothing about the energy, so
NVML falls back to power sampling and RAPL reports no energy, with the window's length in the reason.

Energy covers the whole GPU board or CPU package (and its memory), not only this process: idle power and other
processes on the same device count too, so compare energies of runs on otherwise idle machines.

torch is never imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from fer_bench.measure.energy.nvml import (
    DEFAULT_SAMPLING_PERIOD_S,
    NO_NVML,
    SOURCE_NVML_COUNTER,
    SOURCE_NVML_POWER,
    NvmlEnergy,
)
from fer_bench.measure.energy.rapl import SOURCE_RAPL, RaplDomain, RaplEnergy
from fer_bench.measure.energy.sampling import PowerSampler
from fer_bench.measure.energy.window import (
    WINDOW_KEYS,
    EnergyMeter,
    UnavailableEnergy,
    describe,
    per_step_fields,
    unavailable_window,
)

__all__ = [
    "DEFAULT_SAMPLING_PERIOD_S", "NO_NVML", "SOURCE_NVML_COUNTER", "SOURCE_NVML_POWER", "SOURCE_RAPL", "WINDOW_KEYS",
    "EnergyMeter", "NvmlEnergy", "PowerSampler", "RaplDomain", "RaplEnergy", "UnavailableEnergy",
    "open_energy_meter", "per_step_fields", "unavailable_window",
]


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
        return UnavailableEnergy(f"energy meter for {name} failed to open: {describe(exc)}")
    return UnavailableEnergy(f"no energy source for device {name!r} (NVML covers cuda, RAPL covers cpu)")
