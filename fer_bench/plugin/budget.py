"""The run's time budget: every case's rounds planned so the whole run fits, and a skip that says why.

    pytest benchmarks --fer-budget 20m

A preset has a budget (quick 30 s, default 10 min, full none) and ``--fer-budget`` overrides it. Before a case is
timed, measure() has made its cold call and its first warm call; with that estimate the case is given its rounds:

* **Fair shares.** The time left (the budget less what the run has spent since the process started, less a small
  reserve for writing the results) is shared among the benchmark items still to run, the current one included, so
  early cases cannot eat the budget: a case's rounds beyond its minimum come out of its share only. Time spent
  outside measure() (building the model, starting loaders, counting FLOPs, the paired-overhead pass) counts,
  because the ledger times each item's whole wall clock.
* **The minimum or nothing.** A case whose minimum rounds cannot fit is skipped with the time it would need and the
  budget that would run it; it is never cut to fewer rounds. A median and IQR over fewer than the minimum rounds is
  a result the regression gates cannot trust, and a stored number that looks like the others but is not is worse
  than a visible gap. Its minimum may fill the time left less what the items after it are expected to take
  (RunBudget.room_for: stored times scaled to this run, or what this run's items took), and at least ``BORROW``
  shares (never more than the time left), so one slow case among cheap ones still runs; whatever it borrows shrinks
  the shares of the cases after it.
* **Every benchmark measured once.** A budgeted run takes the cheapest item of each benchmark first (budget_order:
  by this or another machine's stored times where they cover the benchmark, else its first item, which the presets
  make the cheapest: the smallest model, batch, worker and GPU count, fp32), then the rest in their own order. A
  first item leaves room only for the other benchmarks' first items: a 2-core AVX2 CPU's epoch case needs about 2
  minutes, four times a fair share of the default preset, and was skipped on every run there before. A benchmark
  whose cheapest case does not fit even so is the only one left without a result, and the summary says what it
  needs.
* **Extras last.** The paired-overhead pass and rounds beyond the minimum get what the case's fair share leaves;
  they never borrow.
* **Probes that cost little.** The estimate is paid for, and a skipped case wastes it, so it is skipped as early as
  the facts allow: before its fixtures build anything when nothing of the budget is left; right after its cold
  call when that call alone spent its allowance; and, for a step case, before its model is built when a cheaper
  phase of the same model, batch and precision already took too long a call (a forward pass is part of a training
  step). An emulated bf16 step on an AVX2-only CPU takes tens of seconds a call: probing each of its phases would
  spend the budget on skips.

The pure functions (parse_duration, format_duration, plan_rounds, suggest_budget) hold the arithmetic, in
fer_bench.plugin.allowance (re-exported here); RunBudget is the session's ledger (which items are left, when the
current one started, how long each took); CasePlanner is measure()'s side of it for one case. No torch here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from fer_bench.axes import split_case_name
from fer_bench.plugin.allowance import (
    Allowance,
    BORROW,
    create_allowance,
    describe_over_budget,
    describe_spent,
    fit_calls,
    format_budget_option,
    format_duration,
    NO_BUDGET,
    parse_duration,
    plan_rounds,
    process_age_s,
    reserve_for,
    RESERVE_FRACTION,
    RESERVE_MAX_S,
    RoundsPlan,
    suggest_budget,
)

# ------------------------------------------------------------------------------------------------ the ledger


def benchmark_name(nodeid: str) -> str:
    """``test_train_step`` of ``benchmarks/test_step.py::test_train_step[resnet18-cpu-bs64-fp32-g1]``."""
    return split_case_name(nodeid)[0]


def case_key(nodeid: str) -> str:
    """``resnet18-cpu-bs64-fp32-g1`` of ``...::test_train_step[resnet18-cpu-bs64-fp32-g1]``: the case's id, which
    the step benchmarks share (a forward pass, a forward and backward pass and a training step of one model)."""
    return split_case_name(nodeid)[1]


def _time_table(took: dict[str, float]) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for nodeid, seconds in took.items():
        table.setdefault(benchmark_name(nodeid), {})[case_key(nodeid)] = seconds
    return table


def _geomean(values: Sequence[float]) -> float:
    values = [max(v, 1e-6) for v in values]
    return math.exp(sum(math.log(v) for v in values) / len(values))


def guess_item_s(nodeid: str, table: dict[str, dict[str, float]]) -> float | None:
    """What an item should take, from what others took (``table``: benchmark -> case key -> seconds).

    A case's time is about its benchmark's cost times its case's cost (a VGG step is slow in every benchmark, and
    the reference step, with its paired pass, is slower than the harness's step for every model). So where the
    same case ran in another benchmark, and the two benchmarks share cases that ran in both, the guess is that
    time scaled by the benchmarks' ratio over their shared cases (geometric means over every such benchmark);
    else the mean of its own benchmark's cases; else the mean of its own case in the other benchmarks; else None.
    """
    bench, key = benchmark_name(nodeid), case_key(nodeid)
    own = table.get(bench, {})
    same_case = {other: cases[key] for other, cases in table.items() if other != bench and key in cases}
    scaled = []
    for other, seconds in same_case.items():
        shared = [k for k in own if k in table[other]]
        if shared:
            scaled.append(seconds * _geomean([own[k] / max(table[other][k], 1e-6) for k in shared]))
    if scaled:
        return _geomean(scaled)
    if own:
        return sum(own.values()) / len(own)
    if same_case:
        return sum(same_case.values()) / len(same_case)
    return None


def budget_order(nodeids: Sequence[str], runnable: Iterable[str] | None = None,
                 prior: Mapping[str, float] | None = None) -> tuple[list[str], list[str]]:
    """The order a budgeted run takes its items in, and its first pass.

    The first pass is the cheapest runnable item of each benchmark: by ``prior`` (stored seconds per item) where it
    covers every runnable item of that benchmark, else the benchmark's first item (the presets list each axis's
    cheapest value first). The cheap ones run first (by their prior; those without one after them, in the order
    their benchmarks first appear), so the slow first items start with what the others took known here. Then every
    other item in its own order, so within a benchmark the order is what it was, and every benchmark is measured
    once before any is measured twice.

    Args:
        nodeids: every collected item, in collection order.
        runnable: the items that will run (the rest are marked skip: they keep their place); all by default.
    """
    prior = prior or {}
    if runnable is None:
        runnable = list(nodeids)
    else:
        wanted = set(runnable)
        runnable = [n for n in nodeids if n in wanted]
    kinds: dict[str, list[str]] = {}
    for nodeid in runnable:
        kinds.setdefault(benchmark_name(nodeid), []).append(nodeid)
    firsts = []
    for items in kinds.values():
        if all(prior.get(n) for n in items):
            firsts.append(min(items, key=lambda n: (prior[n], items.index(n))))
        else:
            firsts.append(items[0])
    firsts.sort(key=lambda n: (not prior.get(n), prior.get(n, 0.0)))  # stable: unknown ones keep their order
    chosen = set(firsts)
    return firsts + [n for n in nodeids if n not in chosen], firsts


@dataclass
class RunBudget:
    """The session's ledger: the benchmark items still to run, when the current one started, what each took.

    Args:
        budget_s: None for no budget.
        clock: monotonic seconds.
        started_at: the clock's reading when the run started (the process's start: imports count).
    """

    budget_s: float | None
    clock: Callable[[], float] = time.monotonic
    started_at: float | None = None
    planned: list[str] = field(default_factory=list)
    left: set[str] = field(default_factory=set)
    took: dict[str, float] = field(default_factory=dict)
    current: str | None = None
    current_start: float = 0.0
    current_allowance: Allowance | None = None
    current_planned: bool = False
    skipped: dict[str, str] = field(default_factory=dict)
    #: per family of related cases (one model, batch, precision...): the fastest call seen, per phase rank
    floors: dict = field(default_factory=dict)
    #: what each item took in the latest stored run of the preset (nodeid -> seconds), this machine's or, before it
    #: has one, another machine's: the first guess of an item's time, scaled by how this run compares with it so far
    prior: dict[str, float] = field(default_factory=dict)
    #: the first item of each benchmark (budget_order's first pass): each may fill the time left less the other
    #: first items' estimates
    firsts: set[str] = field(default_factory=set)
    #: per item, the seconds of the run's shared setup it paid (add_shared)
    shared: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.started_at is None:
            self.started_at = self.clock()

    def expect(self, nodeids: Iterable[str]) -> None:
        """The benchmark items that will run (collected, not skipped), in order."""
        self.planned = list(nodeids)
        self.left = set(self.planned)

    def elapsed(self) -> float:
        return self.clock() - self.started_at

    @property
    def remaining(self) -> int:
        return len(self.left)

    def start(self, nodeid: str) -> None:
        now = self.clock()
        self.current, self.current_start, self.current_planned = nodeid, now, False
        self.current_allowance = None
        if self.budget_s is not None and nodeid in self.left:
            self.current_allowance = create_allowance(self.budget_s, now - self.started_at, self.remaining,
                                                      self.room_for(nodeid))

    def spent(self) -> float:
        """Wall time of the current item so far."""
        return self.clock() - self.current_start if self.current is not None else 0.0

    def finish(self, nodeid: str) -> float:
        """Close the item; returns its wall time."""
        wall = self.clock() - self.current_start if nodeid == self.current else 0.0
        if nodeid in self.left:
            self.left.discard(nodeid)
            self.took[nodeid] = wall
        if nodeid == self.current:
            self.current, self.current_allowance = None, None
        return wall

    def plan(self, *, final: bool = False, **kwargs) -> RoundsPlan:
        """plan_rounds for the current item, with its allowance and what it has spent so far.

        Args:
            final: the re-plan after the whole warm-up, with its better estimate: it only caps the rounds; a case
                that went on past the first plan keeps its minimum rounds (its warm-up is paid).
        """
        self.current_planned = True
        plan = plan_rounds(self.current_allowance, spent_s=self.spent(), **kwargs)
        if plan.skip_reason and final:
            return RoundsPlan(kwargs["min_rounds"], None, 0, plan.info)
        if plan.skip_reason and self.current is not None:
            self.skipped[self.current] = plan.skip_reason
        return plan

    def fit_calls(self, **kwargs) -> int:
        return fit_calls(self.current_allowance, spent_s=self.spent(), **kwargs)

    def _ran(self) -> dict[str, float]:
        """What each item that ran took, less the run's shared setup it happened to pay (skipped ones excluded:
        their time was a probe)."""
        return {n: max(0.0, t - self.shared.get(n, 0.0)) for n, t in self.took.items() if n not in self.skipped}

    def add_shared(self, seconds: float) -> None:
        """Charge the current item with ``seconds`` of setup the whole run shares (the data set loaded, a
        session-scoped fixture built): whichever item comes first pays it, in this run and in the stored one, so it
        is left out of what the item tells of its own cost."""
        if self.current is not None and seconds > 0:
            self.shared[self.current] = self.shared.get(self.current, 0.0) + seconds

    def scales(self) -> tuple[dict[str, float], float]:
        """How this run compares with the prior: per benchmark, the geometric mean of this run's time over the
        prior's for its items that ran; overall, the same over every such item (1.0 before any).

        The run's first item is left out of the overall ratio (its own benchmark's keeps it): besides the shared
        setup (add_shared) it pays the process's own warm-up (torch's first kernels, oneDNN's code generation), a
        second or two that an item of a second's cost would turn into a factor of two on the estimate of every
        benchmark not yet timed (measured: the first line of a new machine's run said 8 to 10 minutes for a run
        of 5).
        """
        first = next(iter(self.took), None)
        ratios: dict[str, list[float]] = {}
        others: list[float] = []
        for nodeid, seconds in self._ran().items():
            if self.prior.get(nodeid):
                ratio = seconds / self.prior[nodeid]
                ratios.setdefault(benchmark_name(nodeid), []).append(ratio)
                if nodeid != first:
                    others.append(ratio)
        overall = _geomean(others) if others else 1.0
        return {bench: _geomean(rs) for bench, rs in ratios.items()}, overall

    def guess(self, nodeid: str, *, table=None, scales=None) -> float | None:
        """What an item should take: its prior scaled by its benchmark's ratio to the prior (the overall ratio
        before one of its benchmark's items has run); without a prior, :func:`guess_item_s` from the items that ran
        here; else None (the cheap items that run first say little of a benchmark none of whose items has run:
        :meth:`expected` counts a fair share)."""
        per, overall = scales if scales is not None else self.scales()
        if self.prior.get(nodeid):
            return self.prior[nodeid] * per.get(benchmark_name(nodeid), overall)
        return guess_item_s(nodeid, _time_table(self._ran()) if table is None else table)

    def expected(self, nodeids: Sequence[str]) -> float:
        """What ``nodeids`` should take: each at :meth:`guess`, or at a fair share of the time left where nothing
        tells (no budget: nothing)."""
        share = 0.0
        if self.budget_s is not None:
            share = create_allowance(self.budget_s, self.elapsed(), self.remaining).share_s
        scales, table = self.scales(), _time_table(self._ran())
        return sum(g if (g := self.guess(n, table=table, scales=scales)) is not None else share for n in nodeids)

    def room_for(self, nodeid: str) -> float:
        """What the items that ``nodeid`` must leave room for are expected to take: for a benchmark's first item,
        the other benchmarks' first items still to run; for any other item, every item still to run after it."""
        others = [n for n in self.planned if n in self.left and n != nodeid
                  and (nodeid not in self.firsts or n in self.firsts)]
        return self.expected(others)

    def estimate_left(self, exclude: Sequence[str] = ()) -> float:
        """Seconds the items still to run should take under the plan: :meth:`expected` of them, at most what is
        left of the budget, which the plan keeps to."""
        todo = [n for n in self.planned if n in self.left and n not in exclude]
        if not todo:
            return 0.0
        total = self.expected(todo)
        if self.budget_s is not None:
            total = min(total, create_allowance(self.budget_s, self.elapsed(), len(todo)).time_left_s)
        return total

    def spent_reason(self) -> str | None:
        """Why the current item is skipped before it starts: nothing of the budget is left."""
        allowance = self.current_allowance
        if allowance is None or allowance.time_left_s > 0:
            return None
        ran = [t for n, t in self.took.items() if n not in self.skipped]
        reason = describe_spent(allowance, sum(ran) / len(ran) if ran else None)
        self.skipped[self.current] = reason
        return reason

    def skip_now(self, reason: str) -> str:
        if self.current is not None:
            self.skipped[self.current] = reason
        return reason

    def record_floor(self, family, rank: int, seconds: float) -> None:
        known = self.floors.setdefault(family, {})
        known[rank] = min(seconds, known.get(rank, math.inf))

    def floor_for(self, family, rank: int) -> tuple[float, int] | None:
        """The slowest (per call) phase of ``family`` at or below ``rank``: a call of this phase takes at least
        that long (a forward pass is part of a forward and backward pass, which is part of a training step)."""
        known = [(s, r) for r, s in self.floors.get(family, {}).items() if r <= rank]
        return max(known) if known else None


class CasePlanner:
    """The budget's side of measure() for one case: FerSession.round_planner makes one, measure() calls it.

    Args:
        budget: the run's ledger.
        skip: raises pytest's Skipped with a reason.
        after_calls: calls made after the rounds whatever the budget (a FLOP count): part of the need.
        extra_calls: calls of an optional pass after the rounds at its minimum (the paired overhead), kept beside
            the minimum rounds where they fit the fair share.
        family: what related cases share (model, device, batch, precision...); None: none.
        rank: this case's phase among its family's (forward 0, forward and backward 1, a training step 2).
        phase_names: rank -> name, for a skip reason.
    """

    #: a call after the cold one is assumed no faster than this fraction of the cold call when the cold call
    #: alone was over the allowance (CPU: about 1; a GPU's cold call holds autotuning, never that long)
    COLD_FLOOR = 0.5

    def __init__(self, budget: RunBudget, skip: Callable[[str], None], *, after_calls: int = 0,
                 extra_calls: int = 0, family=None, rank: int = 0, phase_names: dict | None = None) -> None:
        self.budget, self.skip = budget, skip
        self.after_calls, self.extra_calls = after_calls, extra_calls
        self.family, self.rank, self.phase_names = family, rank, phase_names or {}

    def start(self, *, min_rounds: int, calls_before: int) -> None:
        """Before the case builds anything: skip it when a cheaper phase of its family shows that its minimum
        (``calls_before`` cold and warm-up calls, then ``min_rounds``) cannot fit."""
        found = self.budget.floor_for(self.family, self.rank) if self.family is not None else None
        if found is not None:
            per_call, rank = found
            self.check_floor(per_call, calls_before=calls_before + self.after_calls, min_rounds=min_rounds,
                             why=f"its {self.phase_names.get(rank, 'a related')} call took "
                                 f"{format_duration(per_call)}")

    def check_floor(self, per_call_s: float, *, calls_before: int, min_rounds: int, why: str) -> None:
        """Skip now when ``per_call_s``, a lower bound of a call, already puts the minimum over the allowance."""
        allowance = self.budget.current_allowance
        if allowance is None:
            return
        need = self.budget.spent() + (calls_before + min_rounds) * per_call_s
        if need > allowance.cap_s:
            self.skip(self.budget.skip_now(describe_over_budget(allowance, need, min_rounds, "at least", why)))

    def after_cold(self, cold_s: float, *, calls_left: int, min_rounds: int) -> None:
        """Skip at once when the cold call alone took the case past its allowance (no warm call is spent)."""
        allowance = self.budget.current_allowance
        spent = self.budget.spent()
        if allowance is None or spent <= allowance.cap_s:
            return
        if self.family is not None:
            self.budget.record_floor(self.family, self.rank, cold_s * self.COLD_FLOOR)
        need = spent + (calls_left + min_rounds) * cold_s
        self.skip(self.budget.skip_now(describe_over_budget(
            allowance, need, min_rounds, "up to", f"its first call took {format_duration(cold_s)}")))

    def plan(self, *, estimate_s: float, calls_left: int, min_rounds: int) -> RoundsPlan:
        """The rounds, from the first warm call; skips when the minimum does not fit."""
        if self.family is not None:
            self.budget.record_floor(self.family, self.rank, estimate_s)
        plan = self.budget.plan(estimate_s=estimate_s, calls_left=calls_left, min_rounds=min_rounds,
                                after_calls=self.after_calls, extra_calls=self.extra_calls)
        if plan.skip_reason:
            self.skip(plan.skip_reason)
        return plan

    def replan(self, *, estimate_s: float, min_rounds: int) -> RoundsPlan:
        """The cap again with the warm-up's median: never a skip (the warm-up is paid)."""
        return self.budget.plan(estimate_s=estimate_s, calls_left=0, min_rounds=min_rounds,
                                after_calls=self.after_calls, extra_calls=self.extra_calls, final=True)


def skip_case(reason: str) -> None:
    """pytest.skip, reported at the test's own location (as a skip marker's is), not at this module's line."""
    import pytest

    exc = pytest.skip.Exception(reason)
    exc._use_item_location = True  # what pytest's own skip marks and skipping fixtures set
    raise exc


def guard_pedantic(fixture, budget: RunBudget, drop_stats: Callable[[object], None]) -> None:
    """Plan a benchmark that calls ``benchmark.pedantic`` with its own rounds (not through measure()).

    Its rounds are fixed by the test, so the budget can only run or skip it: the time from the first setup to the
    second (the first call, warm-up or timed) is the estimate, taken before the second call starts; a case whose
    calls do not fit is skipped then, and a timed round it already made is dropped (``drop_stats``) so no
    one-round result reaches the JSON. Passes through when measure() planned the case, with ``iterations`` above
    1 (pytest-benchmark allows no setup then) or a single call.
    """
    from fer_bench.plugin.storage import wrap_pedantic

    def change(call: dict) -> dict:
        rounds, warmup_rounds, setup = call["rounds"], call["warmup_rounds"], call["setup"]
        calls = warmup_rounds + rounds if isinstance(rounds, int) and isinstance(warmup_rounds, int) else 0
        if budget.current_planned or call["iterations"] != 1 or calls < 2:
            return call
        budget.current_planned = True
        starts: list[float] = []

        def guarded_setup():
            starts.append(budget.clock())
            if len(starts) == 2:
                plan = budget.plan(estimate_s=starts[1] - starts[0], calls_left=0, min_rounds=calls - 1,
                                   described_rounds=rounds)
                fixture.extra_info.update(plan.info, planned_rounds=rounds)
                if plan.skip_reason:
                    drop_stats(getattr(fixture, "stats", None))
                    skip_case(plan.skip_reason)
            return setup() if setup is not None else None

        return {**call, "setup": guarded_setup}

    wrap_pedantic(fixture, change)


__all__ = [  # the arithmetic (fer_bench.plugin.allowance) and the ledger
    "Allowance",
    "BORROW",
    "CasePlanner",
    "NO_BUDGET",
    "RESERVE_FRACTION",
    "RESERVE_MAX_S",
    "RoundsPlan",
    "RunBudget",
    "benchmark_name",
    "budget_order",
    "case_key",
    "create_allowance",
    "describe_over_budget",
    "describe_spent",
    "fit_calls",
    "format_budget_option",
    "format_duration",
    "guard_pedantic",
    "guess_item_s",
    "parse_duration",
    "plan_rounds",
    "process_age_s",
    "reserve_for",
    "skip_case",
    "suggest_budget",
]
