"""What a benchmark body is handed besides its case: BenchOptions (the run's options, read once, frozen) and a
Recorder (what the run shares and what it collects).

The pytest plugin builds both at configure and gives them to the benchmarks as the ``fer_options`` and
``fer_recorder`` fixtures; a user's script builds them directly. Neither knows pytest: the budget's planner
arrives as a callback, so the measurement layer never imports the plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class BenchOptions:
    """The options the benchmark bodies read.

    Attributes:
        preset_name: the preset the run uses (recorded with every result).
        target_round_s: how long a timed round should take (rounds are chosen to fill it).
        eval_images: images of an evaluation pass (epoch, time to accuracy).
        epoch_images: training images a loader pass or epoch goes through.
        data_path: --fer-data (None: the synthetic set).
        repeats, max_epochs, target_accuracy: time to accuracy's seeded runs, epoch cap and target (None: the
            data's default).
        curve_tsv, profile_ops: per-case files beside the results JSON (``json_path``).
        peak_tflops: the peak MFU is computed against where no datasheet figure applies.
        ddp_options: DistributedDataParallel's knobs (fer_bench.engine.distributed.DDPOptions' fields).
        ddp_verify: check a DDP case's step against one process's before timing it (fer_bench.engine.ddp_check).
        json_path: --benchmark-json, where per-case files go beside.
        ddp_timeout_s: how long a DDP rank may take to start or answer a round (the process group's timeout).
        instructions: --fer-instructions, count a call's instructions under Valgrind after the timed rounds
            (fer_bench.measure.instructions).
    """

    preset_name: str = "default"
    target_round_s: float = 1.0
    eval_images: int = 512
    epoch_images: int = 2048
    data_path: Path | None = None
    repeats: int = 3
    max_epochs: int = 15
    target_accuracy: float | None = None
    curve_tsv: bool = False
    profile_ops: bool = False
    peak_tflops: float | None = None
    ddp_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    ddp_verify: bool = False
    json_path: Path | None = None
    ddp_timeout_s: float = 300.0
    instructions: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "ddp_options", MappingProxyType(dict(self.ddp_options)))

    @property
    def data_description(self) -> str:
        return "synthetic" if self.data_path is None else str(self.data_path)

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


class Recorder:
    """What a run's benchmark bodies share (the data, loaded once; the machine's fingerprint; the time budget) and
    what they collect for the run's summary (overheads, launch-bound steps, missed targets, emulated precisions).

    Args:
        data_path: the run's data (None: the synthetic set).
        plan_rounds: makes the budget's planner of a case (the plugin's ``FerSession.round_planner``); None: no
            budget.
        fit_calls: how many calls of a pass after the rounds fit the case's allowance; None: all wanted.
        fingerprint: collects this machine's fingerprint (default fer_bench.machine.fingerprint's), called once.
        launch, launch_nodes: under torchrun or srun, this rank's place (fer_bench.engine.launch.LaunchInfo) and
            every rank's hardware.
        shared_setup: told the seconds of each one-off setup the run shares (loading the data), which whichever
            case comes first pays; None: not told.
        remeasure_contended: time a contended case's rounds once more when the machine is quiet again
            (--fer-remeasure-contended; measure() gets it as ``contention=recorder.contention``).
        replace_rounds: makes given times a case's rounds in pytest-benchmark's result (time to accuracy's runs);
            leave_unrecorded: keeps a case out of pytest-benchmark's results (a launch's follower ranks). Both
            reach into pytest-benchmark, so the plugin supplies them (fer_bench.plugin.storage); None: not done.
    """

    def __init__(self, data_path: Path | None = None, *, plan_rounds: Callable[..., Any] | None = None,
                 fit_calls: Callable[..., int] | None = None, fingerprint: Callable[[], dict] | None = None,
                 launch: Any = None, launch_nodes: dict | None = None,
                 replace_rounds: Callable[[Any, list], None] | None = None,
                 leave_unrecorded: Callable[[Any], None] | None = None,
                 shared_setup: Callable[[float], None] | None = None, remeasure_contended: bool = False) -> None:
        self.data_path = data_path
        self.remeasure_contended = remeasure_contended
        self._shared_setup = shared_setup
        self.launch = launch
        self.launch_nodes = launch_nodes
        self._plan_rounds = plan_rounds
        self._fit_calls = fit_calls
        self._collect_fingerprint = fingerprint
        self._replace_rounds = replace_rounds
        self._leave_unrecorded = leave_unrecorded
        self._data: Any = None
        self._data_identity: dict | None = None
        self.fingerprint: dict | None = None
        #: train_step_reference's harness overhead per case, and the cases the budget left it out of
        self.overheads: dict[str, float] = {}
        self.overhead_skipped: list[str] = []
        #: launch-bound steps and time-to-accuracy cases that missed their target, for the terminal summary
        self.launch_bound: list[str] = []
        self.missed_targets: list[str] = []
        #: why a precision is emulated here -> how many results say so
        self.emulated: dict[str, int] = {}

    @property
    def data(self):
        """The FER data for this run (the synthetic set unless a path), loaded once, through the cache."""
        if self._data is None:
            import time

            from fer_bench.data.dataset import load_run_data

            start = time.monotonic()
            self._data = load_run_data(self.data_path)
            if self._shared_setup is not None:
                self._shared_setup(time.monotonic() - start)
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
        """This machine's fingerprint, collected once per run."""
        if self.fingerprint is None:
            if self._collect_fingerprint is None:
                from fer_bench.machine.fingerprint import collect_fingerprint

                self.fingerprint = collect_fingerprint()
            else:
                self.fingerprint = self._collect_fingerprint()
        return self.fingerprint

    def round_planner(self, extra_calls: int = 0, **kwargs):
        """The budget's planner of the current case (measure()'s ``planner``), or None without a budget."""
        return None if self._plan_rounds is None else self._plan_rounds(extra_calls, **kwargs)

    @property
    def contention(self):
        """What measure() does with a contended case (fer_bench.measure.contention.ContentionPolicy)."""
        from fer_bench.measure.contention import ContentionPolicy

        return ContentionPolicy(remeasure=self.remeasure_contended, replace_rounds=self._replace_rounds)

    def fit_calls(self, *, per_call_s: float, minimum: int, wanted: int) -> int:
        """Calls of a pass after the rounds that fit the current case's allowance (0: not even ``minimum``)."""
        if self._fit_calls is None:
            return wanted
        return self._fit_calls(per_call_s=per_call_s, minimum=minimum, wanted=wanted)

    def note_precision(self, info: dict) -> None:
        """Remember an emulated precision for the terminal summary."""
        note = info.get("precision_note")
        if info.get("precision_native") is False and note:
            self.emulated[note] = self.emulated.get(note, 0) + 1

    def replace_rounds(self, benchmark, times: list[float]) -> None:
        """Make ``times`` the rounds pytest-benchmark reports for this case."""
        if self._replace_rounds is not None:
            self._replace_rounds(benchmark, list(times))

    def leave_unrecorded(self, benchmark) -> None:
        """Keep this case out of pytest-benchmark's results (its calls still run)."""
        if self._leave_unrecorded is not None:
            self._leave_unrecorded(benchmark)
