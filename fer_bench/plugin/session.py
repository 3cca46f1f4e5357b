"""The session's two halves: FerOptions, every --fer-* option read once at configure into a frozen object, and
FerSession, what a run holds and accumulates (its recorder, the time budget's ledger, the files it wrote)."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from fer_bench.axes import AXES, option_axes, order_axes
from fer_bench.measure.context import BenchOptions, Recorder
from fer_bench.plugin.budget import NO_BUDGET, RunBudget, process_age_s
from fer_bench.plugin.options import DEFAULT_DDP_TIMEOUT_S, DEFAULT_MALLOC, DEFAULT_PRESET
from fer_bench.plugin.presets import PRESETS, Preset


@dataclass(frozen=True)
class FerOptions:
    """Every --fer-* option, read once in pytest_configure (the only reader of config.getoption); what configure
    settles later (the results JSON, a launcher's rank) makes a new one with dataclasses.replace."""

    preset: Preset
    overrides: Mapping[str, list]
    data_path: Path | None
    epoch_images: int
    save: bool
    rootpath: Path
    allow_missing_baseline: bool = False
    allow_other_machine: bool = False
    allow_other_workload: bool = False
    malloc: str = DEFAULT_MALLOC
    budget_s: float | None = None
    progress: str = "auto"
    #: DistributedDataParallel's knobs (fer_bench.engine.distributed.DDPOptions' fields)
    ddp_options: Mapping[str, Any] = field(default_factory=dict)
    #: --fer-ddp-verify: check each DDP case's step against one process's before timing it
    ddp_verify: bool = False
    #: time to accuracy: seeded runs per case, the epoch cap, the target (None: the data's default)
    repeats: int = 3
    max_epochs: int = 15
    target_accuracy: float | None = None
    #: where per-case artefacts go (curves as TSV, profiler traces): beside the results JSON; None: not asked
    curve_tsv: bool = False
    profile_ops: bool = False
    json_path: Path | None = None
    #: --fer-peak-tflops: the peak MFU is computed against where no datasheet figure applies (a CPU)
    peak_tflops: float | None = None
    #: --fer-resume (the interrupted run's JSON or journal), --fer-journal, --fer-ddp-timeout
    resume: Path | None = None
    journal: Path | None = None
    ddp_timeout_s: float | None = None
    #: the node the run is recorded as, and where the name came from (fer_bench.machine.node): --fer-node here,
    #: the rest settled by checked()
    node: str | None = None
    node_source: str | None = None
    #: --fer-remeasure-contended: a contended case's rounds are timed once more when the machine is quiet again
    remeasure_contended: bool = False
    #: --fer-instructions: count the instructions of one call of each CPU step case under Valgrind
    instructions: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))
        object.__setattr__(self, "ddp_options", MappingProxyType(dict(self.ddp_options)))

    @classmethod
    def from_config(cls, config) -> "FerOptions":
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
            resume=config.getoption("fer_resume"),
            journal=config.getoption("fer_journal"),
            ddp_timeout_s=config.getoption("fer_ddp_timeout"),
            node=config.getoption("fer_node"),
            node_source="option" if config.getoption("fer_node") else None,
            remeasure_contended=bool(config.getoption("fer_remeasure_contended")),
            instructions=bool(config.getoption("fer_instructions")),
            ddp_options={name: value for name, value in (
                ("bucket_cap_mb", config.getoption("fer_ddp_bucket_cap_mb")),
                ("gradient_as_bucket_view", config.getoption("fer_ddp_gradient_as_bucket_view")),
                ("static_graph", config.getoption("fer_ddp_static_graph"))) if value is not None},
            ddp_verify=bool(config.getoption("fer_ddp_verify")),
        )

    @staticmethod
    def resolve_budget(option: float | None, preset: Preset) -> float | None:
        """--fer-budget wins (``none`` is no budget); else the preset's."""
        if option is None:
            return preset.budget_s
        return None if option == NO_BUDGET else option

    def checked(self) -> "FerOptions":
        """The options with the checks that wait for configure done (a user's conftest registers its models
        before it).

        Raises:
            pytest.UsageError: one line naming the option and the value.
        """
        import pytest

        overrides = dict(self.overrides)
        for name, values in overrides.items():
            if AXES[name].check_at_configure:
                try:
                    overrides[name] = AXES[name].check(values)
                except ValueError as exc:
                    raise pytest.UsageError(str(exc)) from None
        from fer_bench.machine.node import resolve_node

        try:
            node, node_source = resolve_node(self.node)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        return dataclasses.replace(self, overrides=overrides, node=node, node_source=node_source)

    def bench_options(self) -> BenchOptions:
        """What the benchmark bodies read (fer_bench.measure.context)."""
        return BenchOptions(preset_name=self.preset.name, target_round_s=self.preset.target_round_s,
                            eval_images=self.preset.eval_images, epoch_images=self.epoch_images,
                            data_path=self.data_path, repeats=self.repeats, max_epochs=self.max_epochs,
                            target_accuracy=self.target_accuracy, curve_tsv=self.curve_tsv,
                            profile_ops=self.profile_ops, peak_tflops=self.peak_tflops,
                            ddp_options=self.ddp_options, ddp_verify=self.ddp_verify, json_path=self.json_path,
                            ddp_timeout_s=self.ddp_timeout_s or DEFAULT_DDP_TIMEOUT_S,
                            instructions=self.instructions)

    @property
    def data_description(self) -> str:
        return "synthetic" if self.data_path is None else str(self.data_path)

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


@dataclass
class FerSession:
    """A run's state, built once in pytest_configure and kept in config.stash: its options (frozen), its recorder
    (the data, the fingerprint, what the benchmark bodies collect) and what the plugin's hooks accumulate."""

    options: FerOptions
    recorder: Recorder | None = None
    written: list[Path] = field(default_factory=list)
    sidecars: list[Path] = field(default_factory=list)
    release_pending: bool = False
    baseline_path: Path | None = None
    #: the hardware slug that names pytest-benchmark's storage folder (None: fer_bench does not key the storage)
    storage_slug: str | None = None
    gate_problems: list[str] = field(default_factory=list)
    telemetry: dict[str, dict] = field(default_factory=dict)
    active: bool = False
    undo: list = field(default_factory=list)
    budget: RunBudget | None = None
    item_index: dict[str, int] = field(default_factory=dict)
    total_items: int = 0
    collected: list[tuple[str, str]] = field(default_factory=list)
    case_benchmark: Any = None
    progress_throttle: Any = None
    #: under torchrun or srun: this rank's place (fer_bench.engine.launch.LaunchInfo) and every rank's hardware
    launch: Any = None
    launch_nodes: dict | None = None
    #: the benchmark groups this run's preset deselected
    deselected_groups: list[str] = field(default_factory=list)
    #: precision -> [why it is emulated here, CPU cases the preset left out for it] (not asked for by name), and
    #: precision -> why this CPU emulates it (None: native), asked once
    left_out_emulated: dict[str, list] = field(default_factory=dict)
    emulated_verdicts: dict[str, str | None] = field(default_factory=dict)
    #: the time budget's stored times per item (nodeid -> seconds), whose runs they are, and each benchmark's
    #: first item (fer_bench.plugin.budget.budget_order)
    budget_prior: dict[str, float] = field(default_factory=dict)
    prior_source: str | None = None
    budget_firsts: list[str] = field(default_factory=list)
    #: the journal, the resumed run and the signals (fer_bench.plugin.keeper.RunKeeper), once active
    keeper: Any = None
    #: --fer-instructions: why this machine cannot count instructions ("" once asked and it can)
    instructions_reason: str | None = None

    def __post_init__(self) -> None:
        if self.recorder is None:
            from fer_bench.plugin import storage

            self.recorder = Recorder(self.options.data_path, plan_rounds=self.round_planner, fit_calls=self.fit_calls,
                                     replace_rounds=storage.replace_rounds,
                                     leave_unrecorded=storage.leave_unrecorded, shared_setup=self.shared_setup,
                                     remeasure_contended=self.options.remeasure_contended)

    def instructions_unavailable(self) -> str | None:
        """Under --fer-instructions, why instructions cannot be counted here (asked once); else None."""
        if not self.options.instructions:
            return None
        if self.instructions_reason is None:
            from fer_bench.measure.instructions import instructions_unavailable

            self.instructions_reason = instructions_unavailable() or ""
        return self.instructions_reason or None

    @classmethod
    def from_config(cls, config) -> "FerSession":
        return cls(FerOptions.from_config(config))

    @property
    def bench_options(self) -> BenchOptions:
        return self.options.bench_options()

    @property
    def preset_name(self) -> str:
        return self.options.preset.name

    def set_options(self, **changes) -> None:
        """What configure settles after reading the options (the results JSON, a launcher's rank)."""
        self.options = dataclasses.replace(self.options, **changes)

    def start_budget(self, nodeids) -> None:
        """Open the ledger once the items are known: the clock started with the process (imports count)."""
        import time

        if self.budget is None:
            self.budget = RunBudget(self.options.budget_s, started_at=time.monotonic() - process_age_s())
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

    def shared_setup(self, seconds: float) -> None:
        """The recorder's one-off setup (the data set loaded) goes to the budget as setup the run shares."""
        if self.budget is not None:
            self.budget.add_shared(seconds)

    def fit_calls(self, *, per_call_s: float, minimum: int, wanted: int) -> int:
        """Calls of a pass after the rounds that fit the current case's allowance (0: not even ``minimum``)."""
        if self.budget is None:
            return wanted
        return self.budget.fit_calls(per_call_s=per_call_s, minimum=minimum, wanted=wanted)

    def get_fingerprint(self) -> dict:
        """This machine's fingerprint, collected once per session."""
        return self.recorder.get_fingerprint()

    @property
    def fingerprint(self) -> dict | None:
        """The fingerprint if it was collected."""
        return self.recorder.fingerprint

    def run_record(self) -> dict:
        """The JSON's top-level ``fer_bench`` key: the software stack the run used and how it was made."""
        from fer_bench.machine.identity import create_stack_record

        return {
            **create_stack_record(self.get_fingerprint()),
            "run": {"preset": self.preset_name, "data": self.options.data_description,
                    "epoch_images": self.options.epoch_images, "budget_s": self.options.budget_s,
                    "node": self.options.node, "node_source": self.options.node_source,
                    "telemetry_start": self.telemetry.get("start"),
                    "telemetry_end": self.telemetry.get("end"),
                    **({"launch": {**self.launch.as_dict(), **(self.launch_nodes or {})}} if self.launch else {}),
                    **(self.keeper.run_facts() if self.keeper is not None else {})},
        }

    def record_telemetry(self, when: str) -> None:
        """Volatile readings (clocks, temperatures, load) at the session's start or end, for the sidecar."""
        if when not in self.telemetry:
            from fer_bench.machine.fingerprint import collect_telemetry

            self.telemetry[when] = collect_telemetry()
