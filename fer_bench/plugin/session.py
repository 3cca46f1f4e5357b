"""FerSession: every --fer-* option read once, plus what a run shares (data, fingerprint, overheads, the time
budget's ledger)."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fer_bench.axes import AXES, option_axes, order_axes
from fer_bench.plugin.budget import NO_BUDGET, RunBudget, process_age_s
from fer_bench.plugin.options import DEFAULT_MALLOC, DEFAULT_PRESET
from fer_bench.plugin.presets import PRESETS, Preset


@dataclass
class FerSession:
    """Built once in pytest_configure and kept in config.stash; the only reader of config.getoption."""

    preset: Preset
    overrides: dict[str, list]
    data_path: Path | None
    epoch_images: int
    save: bool
    rootpath: Path
    allow_missing_baseline: bool = False
    allow_other_machine: bool = False
    allow_other_workload: bool = False
    malloc: str = DEFAULT_MALLOC
    _data: Any = None
    _data_identity: dict | None = None
    fingerprint: dict | None = None
    overheads: dict[str, float] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)
    sidecars: list[Path] = field(default_factory=list)
    release_pending: bool = False
    baseline_path: Path | None = None
    gate_problems: list[str] = field(default_factory=list)
    telemetry: dict[str, dict] = field(default_factory=dict)
    active: bool = False
    undo: list = field(default_factory=list)
    budget_s: float | None = None
    progress: str = "auto"
    budget: RunBudget | None = None
    item_index: dict[str, int] = field(default_factory=dict)
    total_items: int = 0
    collected: list[tuple[str, str]] = field(default_factory=list)
    emulated: dict[str, int] = field(default_factory=dict)
    overhead_skipped: list[str] = field(default_factory=list)
    case_benchmark: Any = None
    progress_throttle: Any = None
    #: DistributedDataParallel's knobs (fer_bench.engine.distributed.DDPOptions' fields)
    ddp_options: dict = field(default_factory=dict)
    #: under torchrun or srun: this rank's place (fer_bench.engine.launch.LaunchInfo) and every rank's hardware
    launch: Any = None
    launch_nodes: dict | None = None
    #: the benchmark groups this run's preset deselected
    deselected_groups: list[str] = field(default_factory=list)
    #: time to accuracy: seeded runs per case, the epoch cap, the target (None: the data's default)
    repeats: int = 3
    max_epochs: int = 15
    target_accuracy: float | None = None
    #: where per-case artefacts go (curves as TSV, profiler traces): beside the results JSON; None: not asked
    curve_tsv: bool = False
    profile_ops: bool = False
    json_path: Path | None = None
    #: time-to-accuracy cases that missed their target, and launch-bound steps, for the terminal summary
    missed_targets: list[str] = field(default_factory=list)
    launch_bound: list[str] = field(default_factory=list)
    #: --fer-peak-tflops: the peak MFU is computed against where no datasheet figure applies (a CPU)
    peak_tflops: float | None = None
    #: precision -> [why it is emulated here, CPU cases the preset left out for it] (not asked for by name)
    left_out_emulated: dict[str, list] = field(default_factory=dict)
    #: the time budget's stored times per item (nodeid -> seconds), whose runs they are, and each benchmark's
    #: first item (fer_bench.plugin.budget.budget_order)
    budget_prior: dict[str, float] = field(default_factory=dict)
    prior_source: str | None = None
    budget_firsts: list[str] = field(default_factory=list)

    def artifact_dir(self, kind: str) -> Path:
        """``<results JSON without .json>.<kind>/`` (``out.curves/``, ``out.ops/``), created on first use."""
        if self.json_path is None:
            raise RuntimeError(f"no results JSON to write {kind} beside")
        folder = self.json_path.with_name(self.json_path.name.removesuffix(".json") + f".{kind}")
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def artifact_path(self, kind: str, case: str, suffix: str) -> Path:
        """A case's file in ``artifact_dir(kind)``: its pytest name made safe for a file name."""
        from fer_bench._atomic import safe_file_stem

        return self.artifact_dir(kind) / (safe_file_stem(case) + suffix)

    @classmethod
    def from_config(cls, config) -> "FerSession":
        preset = PRESETS[config.getoption("fer_preset") or DEFAULT_PRESET]
        round_time = config.getoption("fer_round_time")
        if round_time is not None:  # the preset's matrix and budget, rounds filling another time
            preset = dataclasses.replace(preset, target_round_s=round_time)
        overrides = {axis.name: config.getoption(axis.dest) for axis in option_axes()}
        return cls(
            preset=preset,
            overrides={k: v for k, v in overrides.items() if v is not None},
            data_path=config.getoption("fer_data"),
            epoch_images=config.getoption("fer_epoch_images") or preset.epoch_images,
            save=bool(config.getoption("fer_save")),
            allow_missing_baseline=bool(config.getoption("fer_allow_missing_baseline")),
            allow_other_machine=bool(config.getoption("fer_allow_other_machine")),
            allow_other_workload=bool(config.getoption("fer_allow_other_workload")),
            malloc=config.getoption("fer_malloc") or DEFAULT_MALLOC,
            rootpath=Path(config.rootpath),
            budget_s=cls.resolve_budget(config.getoption("fer_budget"), preset),
            progress=config.getoption("fer_progress") or "auto",
            repeats=config.getoption("fer_repeats") or preset.repeats,
            max_epochs=config.getoption("fer_max_epochs") or preset.max_epochs,
            target_accuracy=config.getoption("fer_target_accuracy"),
            curve_tsv=bool(config.getoption("fer_curve_tsv")),
            profile_ops=bool(config.getoption("fer_profile_ops")),
            peak_tflops=config.getoption("fer_peak_tflops"),
            ddp_options={name: value for name, value in (
                ("bucket_cap_mb", config.getoption("fer_ddp_bucket_cap_mb")),
                ("gradient_as_bucket_view", config.getoption("fer_ddp_gradient_as_bucket_view")),
                ("static_graph", config.getoption("fer_ddp_static_graph"))) if value is not None},
        )

    @staticmethod
    def resolve_budget(option: float | None, preset: Preset) -> float | None:
        """--fer-budget wins (``none`` is no budget); else the preset's."""
        if option is None:
            return preset.budget_s
        return None if option == NO_BUDGET else option

    def start_budget(self, nodeids) -> None:
        """Open the ledger once the items are known: the clock started with the process (imports count)."""
        import time

        if self.budget is None:
            self.budget = RunBudget(self.budget_s, started_at=time.monotonic() - process_age_s())
        self.budget.expect(nodeids)

    def round_planner(self, extra_calls: int = 0, *, after_calls: int = 0, family=None, rank: int = 0,
                      phase_names: dict | None = None, min_rounds: int | None = None, calls_before: int = 0):
        """The budget's side of measure() for the current case (fer_bench.plugin.budget.CasePlanner): its rounds,
        or a skip with the reason. None outside an active session.

        Args:
            extra_calls: calls of an optional pass after the rounds at its minimum (the paired overhead).
            after_calls: calls made after the rounds whatever the budget (a FLOP count).
            family, rank, phase_names: related cases (one model, batch, precision...) and this one's phase rank;
                a case whose cheaper phase already showed it cannot fit is skipped before it builds anything.
            min_rounds, calls_before: for that check, made now when ``min_rounds`` is given.
        """
        if self.budget is None:
            return None
        from fer_bench.plugin.budget import CasePlanner, skip_case

        planner = CasePlanner(self.budget, skip_case, after_calls=after_calls, extra_calls=extra_calls,
                              family=family, rank=rank, phase_names=phase_names)
        if min_rounds is not None:
            planner.start(min_rounds=min_rounds, calls_before=calls_before)
        return planner

    def fit_calls(self, *, per_call_s: float, minimum: int, wanted: int) -> int:
        """Calls of a pass after the rounds that fit the current case's allowance (0: not even ``minimum``)."""
        if self.budget is None:
            return wanted
        return self.budget.fit_calls(per_call_s=per_call_s, minimum=minimum, wanted=wanted)

    def note_precision(self, info: dict) -> None:
        """Remember an emulated precision for the terminal summary."""
        note = info.get("precision_note")
        if info.get("precision_native") is False and note:
            self.emulated[note] = self.emulated.get(note, 0) + 1

    def check_options(self) -> None:
        """The checks that wait for configure (a user's conftest registers its models before it).

        Raises:
            pytest.UsageError: one line naming the option and the value.
        """
        import pytest

        for name, values in self.overrides.items():
            if AXES[name].check_at_configure:
                try:
                    self.overrides[name] = AXES[name].check(values)
                except ValueError as exc:
                    raise pytest.UsageError(str(exc)) from None

    def run_record(self) -> dict:
        """The JSON's top-level ``fer_bench`` key: the software stack the run used and how it was made."""
        from fer_bench.machine.identity import create_stack_record

        return {
            **create_stack_record(self.get_fingerprint()),
            "run": {"preset": self.preset_name, "data": self.data_description, "epoch_images": self.epoch_images,
                    "budget_s": self.budget_s, "telemetry_start": self.telemetry.get("start"),
                    "telemetry_end": self.telemetry.get("end"),
                    **({"launch": {**self.launch.as_dict(), **(self.launch_nodes or {})}} if self.launch else {})},
        }

    @property
    def preset_name(self) -> str:
        return self.preset.name

    def axis_values(self, benchmark: str, axis: str) -> list:
        """Values of ``axis`` for ``benchmark``: an explicit option wins, then the preset's values (over all of the
        benchmark's studies)."""
        if axis in self.overrides:
            return list(self.overrides[axis])
        return self.preset.axis_values(benchmark, axis)

    def cases(self, benchmark: str, axes: list[str]) -> list[dict]:
        """Every case of the given axes, in registry order, as dicts: for each of the preset's studies of the
        benchmark (one, unless the preset lists several parameter sets) the product of the optioned axes' values,
        an explicit option replacing that axis in every study; repeats dropped, first seen first. Then each
        derived axis (pin_memory) is expanded by the values that follow from the rest of the case."""
        ordered = order_axes(axes)
        optioned = [a for a in ordered if AXES[a].option]
        seen: dict[tuple, dict] = {}
        for study in self.preset.studies(benchmark):
            values = [list(self.overrides[a]) if a in self.overrides
                      else list(study[a]) if a in study else self.preset.axes[a] for a in optioned]
            for combo in itertools.product(*values):
                seen.setdefault(combo, dict(zip(optioned, combo)))
        cases = list(seen.values())
        for name in ordered:
            derive = AXES[name].values_for
            if derive is not None:
                cases = [{**case, name: value} for case in cases for value in derive(case)]
        return [{a: case[a] for a in ordered} for case in cases]

    @property
    def data(self):
        """The FER data for this run (the synthetic set unless --fer-data), loaded once, through the cache."""
        if self._data is None:
            from fer_bench.data.dataset import load_run_data

            self._data = load_run_data(self.data_path)
        return self._data

    @property
    def data_identity(self) -> dict:
        """What the data is, for the workload record: the synthetic set's size, seed and generator version, or a
        real copy's format, content hash and image count."""
        if self._data_identity is None:
            data = self.data
            if self.data_path is None:
                meta = data.meta
                self._data_identity = {"kind": "synthetic", "size": len(data), "seed": meta.get("seed"),
                                       "generator_version": meta.get("generator_version")}
            else:
                self._data_identity = {"kind": "file", "format": data.format, "content": data.content_digest(),
                                       "images": len(data)}
        return self._data_identity

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
