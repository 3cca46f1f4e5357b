"""FerSession: every --fer-* option read once, plus what a run shares (data, fingerprint, overheads)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fer_bench.engine.config import AXES
from fer_bench.plugin.options import PRESETS, Preset


@dataclass
class FerSession:
    """Built once in pytest_configure and kept in config.stash; the only reader of config.getoption."""

    preset_name: str
    preset: Preset
    overrides: dict[str, list]
    data_path: Path | None
    epoch_images: int
    save: bool
    rootpath: Path
    allow_missing_baseline: bool = False
    allow_other_machine: bool = False
    malloc: str = "steady"
    _data: Any = None
    fingerprint: dict | None = None
    overheads: dict[str, float] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)
    sidecars: list[Path] = field(default_factory=list)
    release_pending: bool = False
    baseline_path: Path | None = None
    gate_problems: list[str] = field(default_factory=list)
    telemetry: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config) -> "FerSession":
        preset_name = config.getoption("fer_preset") or "default"
        preset = PRESETS[preset_name]
        overrides = {axis: config.getoption(f"fer_{axis}") for axis in AXES}
        return cls(
            preset_name=preset_name,
            preset=preset,
            overrides={k: v for k, v in overrides.items() if v is not None},
            data_path=config.getoption("fer_data"),
            epoch_images=config.getoption("fer_epoch_images") or preset.epoch_images,
            save=bool(config.getoption("fer_save")),
            allow_missing_baseline=bool(config.getoption("fer_allow_missing_baseline")),
            allow_other_machine=bool(config.getoption("fer_allow_other_machine")),
            malloc=config.getoption("fer_malloc") or "steady",
            rootpath=Path(config.rootpath),
        )

    def axis_values(self, benchmark: str, axis: str) -> list:
        """Values of ``axis`` for ``benchmark``: an explicit option wins, then the preset's per-benchmark values."""
        if axis in self.overrides:
            return list(self.overrides[axis])
        per = self.preset.per_benchmark.get(benchmark, {})
        return list(per.get(axis, self.preset.axes[axis]))

    def cases(self, benchmark: str, axes: list[str]) -> list[dict]:
        """The product of the given axes' values, in AXES order, as dicts."""
        ordered = [a for a in AXES if a in axes]
        values = [self.axis_values(benchmark, a) for a in ordered]
        return [dict(zip(ordered, combo)) for combo in itertools.product(*values)]

    @property
    def data(self):
        """The FER data for this run (the synthetic set unless --fer-data), loaded once, through the cache."""
        if self._data is None:
            if self.data_path is None:
                from fer_bench.data.synthetic import create_synthetic

                self._data = create_synthetic()
            else:
                from fer_bench.data.fer2013 import load_fer2013

                self._data = load_fer2013(self.data_path)
        return self._data

    def get_fingerprint(self) -> dict:
        """This machine's fingerprint, collected once per session."""
        if self.fingerprint is None:
            from fer_bench.machine.fingerprint import collect_fingerprint

            self.fingerprint = collect_fingerprint()
        return self.fingerprint

    def record_telemetry(self, when: str) -> None:
        """Volatile readings (clocks, temperatures, load) at the session's start or end, for the sidecar."""
        if when not in self.telemetry:
            from fer_bench.machine.fingerprint import collect_telemetry

            self.telemetry[when] = collect_telemetry()

    @property
    def data_description(self) -> str:
        return "synthetic" if self.data_path is None else str(self.data_path)


STABLE_FINGERPRINT_KEYS = ("schema", "fer_bench_version", "slug", "identity_hash", "identity")


def stable_fingerprint(fp: dict) -> dict:
    """The identity part of the fingerprint: what goes into machine_info["fer_bench"].

    pytest-benchmark warns when a stored run's machine_info differs from the current one; keeping only the
    identity there (CPU, memory, OS, GPUs, driver and library versions) makes that warning fire for different
    hardware, not for a warmer GPU, another hostname or a sibling node's GPU UUIDs. The full fingerprint, with
    readings, UUIDs and the environment, goes into the sidecar file beside the results.
    """
    return {k: fp[k] for k in STABLE_FINGERPRINT_KEYS if k in fp}
