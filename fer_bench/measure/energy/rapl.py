"""The RAPL source: joules of the CPU packages and their DRAM, from the Linux powercap tree's ``energy_uj`` counters.

``/sys/class/powercap/intel-rapl:N`` (package) zones and their ``dram`` subzones are read at start and stop, a
counter that went down counted as one wrap at ``max_energy_range_uj`` (a package counter wraps after some 262 kJ:
windows longer than a wrap period, tens of minutes at full load, would be undercounted). AMD processors expose the
same ``intel-rapl`` tree on recent kernels; domains are read by their ``name`` (package-N, dram, core, uncore,
psys). ``energy_j`` sums the packages and dram; every domain's joules are recorded, ``core``/``uncore`` (already
inside their package) and ``psys`` (the whole platform) beside it, never added. Since Linux 5.10 ``energy_uj`` is
root-only on most distributions: then energy is not measured and the reason says so.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fer_bench.measure.energy.window import BaseMeter, SourceFailure, describe, measured_window, unavailable_window

SOURCE_RAPL = "rapl_energy_counter"
#: A module attribute so tests can point RaplEnergy's default at a fake tree.
POWERCAP_ROOT = Path("/sys/class/powercap")

_RAPL_ZONE = re.compile(r"intel-rapl:(\d+)(?::(\d+))?")
_SUMMED_SUBDOMAINS = ("dram",)


@dataclass
class RaplDomain:
    """One powercap zone: ``key`` as recorded (``package-0``, ``package-0/dram``), whether it counts in the sum."""

    key: str
    name: str
    path: Path
    summed: bool
    max_range_uj: int | None


class RaplEnergy(BaseMeter):
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
            return f"cannot list {self.root}: {describe(exc)}"
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
        return measured_window(total, SOURCE_RAPL, joules)


class _RaplFailure(SourceFailure):
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
        raise _RaplFailure(f"cannot read {path}: {exc.strerror or describe(exc)}") from None
    text = text.strip()
    if not text.isdigit():
        raise _RaplFailure(f"{path} holds {text[:40]!r}, not a counter")
    return int(text)
