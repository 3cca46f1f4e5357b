"""The named presets: which values of each axis a run takes, how big its rounds are and how long it may take.

Each axis declares its own values per preset in fer_bench.axes; a preset adds what is not an axis (epoch size,
round time, time budget) and may narrow an axis for one benchmark (the default preset runs test_epoch on one model).
The budget is what a run of the preset may take on any machine (fer_bench.plugin.budget plans the rounds to fit
and skips, with the reason, a case whose minimum rounds do not); ``--fer-budget`` overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from fer_bench.axes import OPTIMIZERS, PRESET_NAMES, option_axes, split_case_name


@dataclass(frozen=True)
class Preset:
    """A named matrix: narrower axis values per benchmark, the epoch size, the time a round should fill and the
    time the whole run may take (None: no budget).

    ``per_benchmark`` maps a benchmark group to its narrowing: a dict of axis values (one product of cases), or a
    list of such dicts, the *studies* of that benchmark (the union of their products, repeats dropped): the
    optimizer study and the batch-size study are two parameter sets of test_time_to_accuracy, not their product.
    ``groups`` lists the benchmark groups the preset runs (None: every one); the others are deselected.
    ``repeats`` and ``max_epochs`` are the seeded runs of a time-to-accuracy case and its epoch cap.
    """

    name: str
    description: str
    per_benchmark: dict[str, dict[str, list] | list[dict[str, list]]] = field(default_factory=dict)
    epoch_images: int = 2048
    eval_images: int = 512
    target_round_s: float = 1.0
    budget_s: float | None = None
    groups: tuple[str, ...] | None = None
    repeats: int = 3
    max_epochs: int = 15

    @property
    def axes(self) -> dict[str, list]:
        """Every optioned axis's values in this preset, from the registry."""
        return {axis.name: list(axis.presets[self.name]) for axis in option_axes()}

    def studies(self, benchmark: str) -> list[dict[str, list]]:
        """The parameter sets of ``benchmark``: each a dict of narrowed axes (one empty dict: no narrowing)."""
        narrowed = self.per_benchmark.get(benchmark, {})
        return [dict(s) for s in narrowed] if isinstance(narrowed, (list, tuple)) else [dict(narrowed)]

    def axis_values(self, benchmark: str, axis: str) -> list:
        """The values of ``axis`` for ``benchmark`` over all its studies (first seen first)."""
        values: list = []
        for study in self.studies(benchmark):
            for value in (study[axis] if axis in study else self.axes[axis]):
                if value not in values:
                    values.append(value)
        return values

    def runs_group(self, group: str) -> bool:
        return self.groups is None or group in self.groups


# Every preset lists cuda and amp_fp16 so that runs on different machines collect the same cases; what a machine
# cannot run is reported as skipped with the reason.
#: The HPC/FER paper's four CNNs of different depth.
PAPER_CNNS = ("fer_cnn_2block", "fer_cnn_3block", "fer_cnn_4block", "fer_cnn_5block")
#: The time-to-accuracy case of the quick and default presets: one small paper CNN at the default batch.
_TTA = {"model": ["fer_cnn_2block"], "precision": ["fp32", "amp_fp16"], "optimizer": ["adam"]}
#: The studies preset's three studies (the EfficientNet FER study's, at sizes a 2-core CPU finishes in about 20
#: minutes): optimizers at one batch size; batch sizes with Adam, without and with the square-root learning-rate
#: rule; the data pipelines against worker counts (loader alone and whole epochs).
_STUDY_MODEL = {"model": ["fer_cnn_2block"], "precision": ["fp32", "amp_fp16"]}
_STUDIES = {
    "time_to_accuracy": [
        {**_STUDY_MODEL, "optimizer": list(OPTIMIZERS), "batch_size": [64],
         "lr_scaling": ["none"]},
        {**_STUDY_MODEL, "optimizer": ["adam"], "batch_size": [32, 64, 128, 256], "lr_scaling": ["none", "sqrt"]},
    ],
    "dataloader": {"num_workers": [0, 1, 2, 4], "batch_size": [64]},
    "epoch": {**_STUDY_MODEL, "num_workers": [0, 1, 2, 4], "batch_size": [64]},
}

PRESETS: dict[str, Preset] = {
    "quick": Preset(
        "quick", "smoke run, within 30 seconds on a 2-core CPU (no time-to-accuracy case)",
        per_benchmark={"dataloader": {"num_workers": [0, 2]},
                       "scaling": {"num_gpus": [2], "precision": ["fp32"], "parallel": ["ddp"]},
                       "time_to_accuracy": {**_TTA, "precision": ["fp32"]}},
        epoch_images=512, eval_images=256, target_round_s=0.3, budget_s=30.0,
        groups=("forward", "forward_backward", "train_step", "dataloader", "epoch", "scaling"), repeats=1,
        max_epochs=5,
    ),
    "default": Preset(
        "default", "what a bare `pytest benchmarks` runs: under 10 minutes on a 2-core CPU",
        per_benchmark={
            "dataloader": {"num_workers": [0, 1, 2], "batch_size": [64, 256]},
            "epoch": {"model": ["fer_cnn_3block"], "num_workers": [0, 2], "precision": ["fp32", "amp_fp16"]},
            "scaling": {"model": ["fer_cnn_2block"], "num_gpus": [1, 2], "precision": ["fp32"],
                        "parallel": ["ddp"]},
            "time_to_accuracy": _TTA,
        },
        epoch_images=2048, eval_images=512, target_round_s=0.6, budget_s=600.0,
    ),
    "studies": Preset(
        "studies", "the seeds' studies (optimizers, batch sizes, data pipelines against workers): about 20 minutes "
                   "on a 2-core CPU",
        per_benchmark=_STUDIES, epoch_images=2048, eval_images=512, target_round_s=0.6, budget_s=1800.0,
        groups=tuple(_STUDIES),
    ),
    "full": Preset(
        "full", "the whole matrix and the studies at full size (every training image an epoch), for a GPU node; "
                "no time budget",
        per_benchmark={"epoch": {"batch_size": [64, 256]}, "scaling": {"parallel": ["dp", "ddp"]},
                       "time_to_accuracy": [
                           # the paper's four CNNs of different depth, for `fer-bench compare --view paper`
                           {"model": list(PAPER_CNNS), "optimizer": ["adam"], "batch_size": [64],
                            "lr_scaling": ["none"]},
                           {"model": ["fer_cnn_3block"], "optimizer": list(OPTIMIZERS),
                            "batch_size": [64], "lr_scaling": ["none"]},
                           {"model": ["fer_cnn_3block"], "optimizer": ["adam"], "batch_size": [32, 64, 128, 256],
                            "lr_scaling": ["none", "linear", "sqrt"]}]},
        epoch_images=28709, eval_images=3589, target_round_s=2.0, repeats=5, max_epochs=60,
    ),
    # Instruction counts for a CI job on a shared 2-core runner: the forward pass and the training step of the
    # smallest paper CNN, on the CPU in fp32 (the cases --fer-instructions counts), plus the bare reference step
    # beside them for the wall time. A Valgrind process per counted case (a few minutes each), so no time budget:
    # the budget would spend the rounds' time on them.
    "ci": Preset(
        "ci", "with --fer-instructions: the forward pass and the training step of fer_cnn_2block (CPU, fp32, batch "
              "16), counted under Valgrind and timed, in about 10 minutes on 2 cores; no time budget",
        epoch_images=512, eval_images=256, target_round_s=0.5, budget_s=None, groups=("forward", "train_step"),
        repeats=1, max_epochs=5,
    ),
}
assert tuple(PRESETS) == PRESET_NAMES, "every axis declares values for exactly these presets"


# ----------------------------------------------------------------------------------------- what a preset costs


def count_cases(cases: Iterable[tuple[str, bool]]) -> dict[str, list[int]]:
    """``{benchmark: [collected, to run here]}`` from (test name, runs here) pairs, in first-seen order; the
    benchmark is the test function's name without ``test_``."""
    counts: dict[str, list[int]] = {}
    for name, runs in cases:
        entry = counts.setdefault(split_case_name(name)[0].removeprefix("test_"), [0, 0])
        entry[0] += 1
        entry[1] += bool(runs)
    return counts


def stored_case_seconds(extra_info: dict, stats: dict) -> float | None:
    """What one stored case took: its whole wall time where the run recorded it (``case_wall_s``) less the run's
    shared setup it paid (``case_shared_s``) and its instruction count's Valgrind process
    (``instructions_wall_s``), else its rounds at the median plus its cold start and warm-up,
    roughly (build and extras not counted)."""
    wall = extra_info.get("case_wall_s")
    if isinstance(wall, (int, float)) and wall >= 0:
        # the run's shared setup, and a Valgrind process of --fer-instructions, are not the case's own time
        spent = [extra_info.get(k) for k in ("case_shared_s", "instructions_wall_s")]
        return max(0.0, float(wall) - sum(s for s in spent if isinstance(s, (int, float)) and s > 0))
    median, rounds = stats.get("median"), stats.get("rounds")
    if not isinstance(median, (int, float)) or not isinstance(rounds, (int, float)):
        return None
    cold = extra_info.get("cold_start_ms")
    warmup = extra_info.get("warmup_rounds")
    return (median * (rounds + (warmup if isinstance(warmup, (int, float)) else 0))
            + (cold / 1e3 if isinstance(cold, (int, float)) else 0.0))


@dataclass(frozen=True)
class ExpectedTime:
    """A preset's expected time on this machine from its stored runs."""

    seconds: float
    found: int
    wanted: int
    sources: tuple[str, ...]


def stored_case_times(runs: Sequence, identity_hash: str, preset: str | None = None) -> dict[str, tuple[float, str]]:
    """Per case name (``test_forward[...]``), what it took (stored_case_seconds) in the latest of ``runs``
    (oldest first) of this hardware that holds it, and that run's path; ``preset`` as in expected_time."""
    latest: dict[str, tuple[float, str]] = {}
    for run in runs:
        if run.machine.identity_hash != identity_hash:
            continue
        for case in run.cases:
            if preset is not None and case.extra_info.get("preset", preset) != preset:
                continue
            seconds = stored_case_seconds(case.extra_info, case.stats)
            if seconds is not None:
                latest[case.name] = (seconds, str(run.path))
    return latest


@dataclass(frozen=True)
class Prior:
    """What each planned case took in stored runs of the preset: the time budget's first guesses.

    Attributes:
        times: case name (``test_forward[...]``) -> seconds (stored_case_seconds).
        slug: the machine whose runs they are.
        same_machine: this machine's (its hardware identity), or another's.
    """

    times: dict[str, float]
    slug: str
    same_machine: bool

    def describe(self) -> str:
        whose = "this machine's" if self.same_machine else f"{self.slug}'s (another machine)"
        return f"{len(self.times)} case{'' if len(self.times) == 1 else 's'} timed in {whose} stored runs"


def select_prior(runs: Sequence, identity_hash: str, names: Sequence[str], preset: str | None = None) -> Prior | None:
    """The stored times of ``names`` (stored_case_times): this machine's where its runs hold any of them; else the
    other machine whose runs hold the most of them (the newest on a tie), whose times this run then scales to itself
    as its cases are timed (fer_bench.plugin.budget.RunBudget); None when no run holds any."""
    wanted = set(names)

    def hits(identity: str) -> dict[str, float]:
        return {n: seconds for n, (seconds, _) in stored_case_times(runs, identity, preset).items() if n in wanted}

    mine = hits(identity_hash)
    slugs = {run.machine.identity_hash: run.machine.slug for run in runs}
    if mine:
        return Prior(mine, slugs.get(identity_hash, ""), True)
    best: tuple[int, int, str] | None = None
    for order, identity in enumerate(dict.fromkeys(run.machine.identity_hash for run in runs)):
        if identity == identity_hash:
            continue
        found = hits(identity)
        if found and (best is None or (len(found), order) > best[:2]):
            best = (len(found), order, identity)
    if best is None:
        return None
    return Prior(hits(best[2]), slugs.get(best[2], ""), False)


def expected_time(names: Sequence[str], runs: Sequence, identity_hash: str,
                  preset: str | None = None) -> ExpectedTime | None:
    """The sum of the stored times (stored_case_seconds) of ``names`` from the latest run of this hardware that
    holds each (``runs``: fer_bench.results.runs.RunResult, oldest first); None when no run of it holds any.

    Args:
        preset: only cases a run of this preset made (one name is other work in another preset: the full preset's
            loader pass covers 28,709 images, the default's 2,048); a case that records no preset counts.
    """
    latest = stored_case_times(runs, identity_hash, preset)
    hits = [latest[n] for n in names if n in latest]
    if not hits:
        return None
    return ExpectedTime(sum(s for s, _ in hits), len(hits), len(names), tuple(sorted({p for _, p in hits})))


def describe_preset_cost(name: str, counts: dict[str, list[int]], budget_s: float | None,
                         expected: ExpectedTime | None, slug: str | None = None) -> str:
    """One line: ``preset default: 148 cases, 50 run here (forward 10/30, ...); budget 10 min; expected about
    8 min here (50 of 50 cases timed in results/epyc-2c__cpu)``."""
    from fer_bench.plugin.budget import format_duration

    collected = sum(c for c, _ in counts.values())
    runnable = sum(r for _, r in counts.values())
    per = ", ".join(f"{k} {r}/{c}" for k, (c, r) in counts.items())
    text = (f"preset {name}: {collected} cases, {runnable} run here ({per}); budget "
            f"{'none' if budget_s is None else format_duration(budget_s)}")
    if expected is None:
        where = f"results/{slug}/" if slug else "results/"
        return text + f"; expected time: no stored run of this machine in {where} yet"
    seconds = expected.seconds if budget_s is None else min(expected.seconds, budget_s)
    capped = " (the budget's)" if budget_s is not None and expected.seconds > budget_s else ""
    where = f"results/{slug}" if slug else "stored runs"
    partial = "" if expected.found == expected.wanted else ", the rest not counted"
    return (text + f"; expected about {format_duration(seconds)}{capped} here ({expected.found} of "
            f"{expected.wanted} cases timed in {where}{partial})")
