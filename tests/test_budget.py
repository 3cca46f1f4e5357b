"""The time budget (fer_bench.plugin.budget): the duration parser, the planner's rounds and skips, the ledger's fair
shares and time left, and the guard of a benchmark that calls benchmark.pedantic itself. Pure functions and a fake
clock: nothing here sleeps."""

from __future__ import annotations

import argparse
import math

import pytest

from fer_bench.axes import split_case_name
from fer_bench.plugin.budget import (
    case_key,
    guess_item_s,
    BORROW,
    NO_BUDGET,
    RunBudget,
    create_allowance,
    fit_calls,
    format_budget_option,
    format_duration,
    guard_pedantic,
    parse_duration,
    plan_rounds,
    process_age_s,
    reserve_for,
    suggest_budget,
)
from fer_bench.plugin.presets import PRESETS, count_cases, describe_preset_cost, expected_time, stored_case_seconds


# ------------------------------------------------------------------------------------------------ durations


@pytest.mark.parametrize("text, seconds", [
    ("90s", 90), ("2m", 120), ("1h", 3600), ("10m30s", 630), ("1h5m", 3900), ("45", 45), ("1.5m", 90),
    (" 2M ", 120), ("3min", 180),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_parse_duration_none_is_no_budget():
    assert parse_duration("none") == NO_BUDGET == math.inf


@pytest.mark.parametrize("text", ["", "abc", "10x", "-5s", "0", "0s", "m", "5s10m", "nan"])
def test_parse_duration_rejects_with_one_line_naming_the_option(text):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse_duration(text)
    message = str(info.value)
    assert message.startswith(f"--fer-budget: {text!r} is not a duration") and "10m30s" in message
    assert "\n" not in message


@pytest.mark.parametrize("seconds, text", [
    (3.14, "3.1 s"), (42, "42 s"), (119, "119 s"), (420, "7 min"), (600, "10 min"), (3900, "1 h 5 min"),
    (7200, "2 h"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds, text", [
    (3, "10s"), (41, "50s"), (110, "110s"), (111, "2m"), (845, "15m"), (3600, "1h"), (3601, "1h10m"),
])
def test_format_budget_option_rounds_up_and_parses_back(seconds, text):
    assert format_budget_option(seconds) == text
    assert parse_duration(text) >= seconds


def test_reserve_is_small_and_capped():
    assert reserve_for(30) == pytest.approx(1.5)
    assert reserve_for(600) == 20.0
    assert reserve_for(36000) == 20.0


def test_process_age_reads_proc(tmp_path):
    assert 0 <= process_age_s() < 86400
    assert process_age_s(tmp_path) == 0.0  # no /proc: the clock starts now


def test_presets_have_budgets():
    assert PRESETS["quick"].budget_s == 30 and PRESETS["default"].budget_s == 600
    assert PRESETS["full"].budget_s is None


# ------------------------------------------------------------------------------------------------ planning

# the default preset's 10 min with 10 cases left at the start: 580 s left after the 20 s reserve, 58 s a share,
# and up to 232 s (BORROW shares) for a case's minimum
START = create_allowance(600, 0.0, 10)


def test_allowance_shares_the_time_left_among_the_cases_still_to_run():
    assert START.time_left_s == 580 and START.share_s == 58 and START.cap_s == BORROW * 58 == 232
    later = create_allowance(600, 400.0, 8)  # late in the run: what is left, shared by what is left
    assert later.time_left_s == 180 and later.share_s == 22.5 and later.cap_s == 90
    last = create_allowance(600, 560.0, 1)
    assert last.cap_s == last.time_left_s == 20  # never more than the time left
    assert create_allowance(600, 700.0, 3).time_left_s == 0


def test_no_budget_caps_nothing():
    plan = plan_rounds(None, estimate_s=5.0, spent_s=100.0, calls_left=2, min_rounds=7, extra_calls=18)
    assert (plan.max_rounds, plan.skip_reason, plan.extra_calls) == (None, None, 18)
    assert plan.info == {"estimate_s": 5.0, "budget_s": None}


def test_cheap_case_is_capped_far_above_its_round_time_target():
    plan = plan_rounds(START, estimate_s=0.01, spent_s=1.0, calls_left=2, min_rounds=7)
    assert plan.max_rounds == 5698 and plan.skip_reason is None  # (58 - 1 - 0.02) / 0.01
    assert plan.info == {"estimate_s": 0.01, "budget_s": 600, "allowance_s": 232.0}


def test_rounds_beyond_the_minimum_fill_the_share_only():
    # 1 s a call: 2 s spent, 2 warm-up calls to come -> 54 s of the 58 s share for rounds
    plan = plan_rounds(START, estimate_s=1.0, spent_s=2.0, calls_left=2, min_rounds=7)
    assert plan.max_rounds == 54
    # the paired pass's minimum (18 calls) is kept beside the rounds when it fits the share
    plan = plan_rounds(START, estimate_s=1.0, spent_s=2.0, calls_left=2, min_rounds=7, extra_calls=18)
    assert plan.max_rounds == 36 and plan.extra_calls == 18
    # calls made after the rounds whatever the budget (a FLOP count) are part of the need
    plan = plan_rounds(START, estimate_s=1.0, spent_s=2.0, calls_left=2, min_rounds=7, after_calls=2)
    assert plan.max_rounds == 52
    assert not plan_rounds(START, estimate_s=26.0, spent_s=2.0, calls_left=0, min_rounds=7).skip_reason  # 184 s
    assert plan_rounds(START, estimate_s=26.0, spent_s=2.0, calls_left=0, min_rounds=7, after_calls=2).skip_reason


def test_minimum_may_borrow_but_gets_no_extra_rounds():
    # 10 s a call: the minimum (10 + 20 + 70 = 100 s) is over the 58 s share, within the 232 s cap
    plan = plan_rounds(START, estimate_s=10.0, spent_s=10.0, calls_left=2, min_rounds=7, extra_calls=18)
    assert plan.max_rounds == 7 and plan.skip_reason is None
    assert plan.extra_calls == 0  # 18 more calls (280 s) go over the cap: the extra pass is dropped, not the case


def test_case_over_its_allowance_is_skipped_with_the_time_it_needs_and_the_budget_that_runs_it():
    plan = plan_rounds(START, estimate_s=30.0, spent_s=60.0, calls_left=2, min_rounds=7)
    assert plan.max_rounds == 0
    # 60 + 9 x 30 = 330 s; a budget of 330 x 10 / BORROW + 20 s of reserve gives it 330 s
    assert plan.skip_reason == ("over the time budget: would take 6 min for 7 rounds, over the 4 min one case may "
                                "take now (10 min of the 10 min budget left for 10 cases): --fer-budget 15m runs it")


def test_skip_reason_names_the_tests_own_rounds():
    plan = plan_rounds(create_allowance(30, 20.0, 2), estimate_s=5.0, spent_s=6.0, calls_left=0, min_rounds=2,
                       described_rounds=3)
    assert "would take 16 s for 3 rounds" in plan.skip_reason


@pytest.mark.parametrize("elapsed, remaining, need", [(0, 10, 165), (300, 3, 500), (590, 1, 5), (10, 40, 42)])
def test_suggested_budget_runs_the_case(elapsed, remaining, need):
    before = create_allowance(600, elapsed, remaining)
    suggested = parse_duration(format_budget_option(suggest_budget(before, need)))
    assert create_allowance(suggested, elapsed, remaining).cap_s >= need


def test_fit_calls_for_the_pass_after_the_rounds():
    assert fit_calls(None, per_call_s=1.0, spent_s=0, minimum=9, wanted=40) == 40
    assert fit_calls(START, per_call_s=1.0, spent_s=20.0, minimum=9, wanted=40) == 38  # 58 s share
    assert fit_calls(START, per_call_s=1.0, spent_s=20.0, minimum=9, wanted=30) == 30
    assert fit_calls(START, per_call_s=4.0, spent_s=20.0, minimum=9, wanted=30) == 9
    # an extra never borrows: 9 calls of 10 s are over the 38 s left of the 58 s share (within the 232 s cap)
    assert fit_calls(START, per_call_s=10.0, spent_s=20.0, minimum=9, wanted=30) == 0


# ------------------------------------------------------------------------------------------------ the ledger


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ledger_shares_what_is_left_and_early_cases_cannot_eat_it():
    clock = Clock()
    ledger = RunBudget(100.0, clock=clock, started_at=clock.now - 5.0)  # 5 s of imports before the first case
    ledger.expect([f"t.py::test_a[{i}]" for i in range(4)])
    ledger.start("t.py::test_a[0]")
    first = ledger.current_allowance
    assert first.elapsed_s == 5.0 and first.share_s == pytest.approx((100 - 5 - 5) / 4)
    clock.now += 3.0
    # rounds of 1 s: what its share holds after the 3 s it spent and 2 warm-up calls
    plan = ledger.plan(estimate_s=1.0, calls_left=2, min_rounds=7)
    assert plan.max_rounds == math.floor(first.share_s - 3 - 2)
    clock.now += 20.0
    assert ledger.finish("t.py::test_a[0]") == 23.0 and ledger.remaining == 3
    ledger.start("t.py::test_a[1]")
    assert ledger.current_allowance.share_s == pytest.approx((100 - 5 - 28) / 3)


def test_ledger_records_skips_and_estimates_the_time_left_under_the_plan():
    clock = Clock()
    ledger = RunBudget(60.0, clock=clock, started_at=clock.now)
    names = ["t.py::test_fast[0]", "t.py::test_slow[0]", "t.py::test_fast[1]", "t.py::test_slow[1]"]
    ledger.expect(names)
    ledger.start(names[0])
    clock.now += 2.0
    ledger.finish(names[0])
    ledger.start(names[1])
    clock.now += 1.0
    plan = ledger.plan(estimate_s=20.0, calls_left=0, min_rounds=7)
    assert plan.skip_reason and names[1] in ledger.skipped
    ledger.finish(names[1])
    # the next fast case at what fast cases took (2 s); the slow one, none of whose kind has run, at a fair share
    # of the time left
    share = (60.0 - reserve_for(60.0) - 3.0) / 2
    assert ledger.estimate_left() == pytest.approx(2.0 + share)
    ledger_none = RunBudget(None, clock=clock)
    ledger_none.expect(names[:1])
    ledger_none.start(names[0])
    assert ledger_none.current_allowance is None
    assert ledger_none.plan(estimate_s=99.0, calls_left=0, min_rounds=7).max_rounds is None


def test_time_left_is_capped_by_the_budget():
    clock = Clock()
    ledger = RunBudget(30.0, clock=clock, started_at=clock.now)
    ledger.expect([f"t.py::test_x[{i}]" for i in range(3)])
    ledger.start("t.py::test_x[0]")
    clock.now += 20.0
    ledger.finish("t.py::test_x[0]")  # one case took 20 s: two more at that pace would be 40 s
    assert ledger.estimate_left() == pytest.approx(30 - 1.5 - 20)


def test_an_item_not_expected_is_not_budgeted():
    clock = Clock()
    ledger = RunBudget(10.0, clock=clock)
    ledger.expect(["t.py::test_x"])
    ledger.start("t.py::test_plain")
    assert ledger.current_allowance is None
    assert ledger.finish("t.py::test_plain") == 0.0 and ledger.remaining == 1


# ------------------------------------------------------------------------------------------------ the guard


class FakeFixture:
    """pytest-benchmark's pedantic as far as the guard sees it: setup before every call, warm-ups first."""

    def __init__(self, clock: Clock, cost: float) -> None:
        self.clock, self.cost = clock, cost
        self.extra_info: dict = {}
        self.stats = object()
        self.calls = 0

    def pedantic(self, target, args=(), kwargs=None, setup=None, teardown=None, rounds=1, warmup_rounds=0,
                 iterations=1):
        for _ in range(warmup_rounds + rounds):
            made = setup() if setup else None
            target(*(made[0] if made else args))
            self.calls += 1
            self.clock.now += self.cost
        return "done"


def _guarded(budget_s: float, cost: float):
    clock = Clock()
    ledger = RunBudget(budget_s, clock=clock, started_at=clock.now)
    ledger.expect(["t.py::test_inspect"])
    ledger.start("t.py::test_inspect")
    fixture = FakeFixture(clock, cost)
    dropped = []
    guard_pedantic(fixture, ledger, dropped.append)
    return fixture, ledger, dropped


def test_guard_runs_a_case_that_fits_and_records_the_plan():
    fixture, ledger, dropped = _guarded(60.0, 2.0)
    seen = []
    assert fixture.pedantic(seen.append, args=("x",), rounds=3, warmup_rounds=1) == "done"
    assert fixture.calls == 4 and seen == ["x"] * 4 and not dropped
    assert fixture.extra_info == {"estimate_s": 2.0, "budget_s": 60.0, "allowance_s": 57.0, "planned_rounds": 3}


def test_guard_skips_after_the_first_call_and_drops_the_partial_result():
    fixture, ledger, dropped = _guarded(10.0, 6.0)
    with pytest.raises(pytest.skip.Exception, match="would take 18 s for 3 rounds"):
        fixture.pedantic(lambda: None, setup=lambda: ((), {}), rounds=3)
    assert fixture.calls == 1 and dropped == [fixture.stats]


def test_guard_passes_through_when_measure_planned_the_case():
    fixture, ledger, dropped = _guarded(10.0, 6.0)
    ledger.current_planned = True
    fixture.pedantic(lambda: None, rounds=3)
    assert fixture.calls == 3 and fixture.extra_info == {}


# ------------------------------------------------------------------------------------------- what presets cost


def test_count_cases_per_benchmark():
    counts = count_cases([("test_forward[a]", True), ("test_forward[b]", False), ("test_epoch[a]", True)])
    assert counts == {"forward": [2, 1], "epoch": [1, 1]}


def test_stored_case_seconds():
    assert stored_case_seconds({"case_wall_s": 12.5}, {"median": 1.0, "rounds": 7}) == 12.5
    # median x (rounds + warm-up) + cold start, where the run did not record its wall time
    assert stored_case_seconds({"cold_start_ms": 2000, "warmup_rounds": 3}, {"median": 0.5, "rounds": 7}) == 7.0
    assert stored_case_seconds({}, {}) is None


class _Case:
    def __init__(self, name, seconds, preset=None):
        self.name, self.stats = name, {}
        self.extra_info = {"case_wall_s": seconds, **({"preset": preset} if preset else {})}


class _Run:
    def __init__(self, identity, cases, path):
        self.machine = type("M", (), {"identity_hash": identity})()
        self.cases, self.path = cases, path


def test_expected_time_from_the_latest_run_of_this_hardware():
    runs = [_Run("me", [_Case("test_a[1]", 10.0), _Case("test_b[1]", 5.0)], "old.json"),
            _Run("other", [_Case("test_a[1]", 1.0)], "other.json"),
            _Run("me", [_Case("test_a[1]", 20.0)], "new.json")]
    expected = expected_time(["test_a[1]", "test_b[1]", "test_c[1]"], runs, "me")
    assert (expected.seconds, expected.found, expected.wanted) == (25.0, 2, 3)
    assert expected.sources == ("new.json", "old.json")
    assert expected_time(["test_a[1]"], runs, "nobody") is None
    # one name is other work in another preset: only this preset's cases (and those that record none) count
    by_preset = [_Run("me", [_Case("test_a[1]", 10.0, "default"), _Case("test_b[1]", 3.0)], "d.json"),
                 _Run("me", [_Case("test_a[1]", 99.0, "full")], "f.json")]
    assert expected_time(["test_a[1]", "test_b[1]"], by_preset, "me", "default").seconds == 13.0
    assert expected_time(["test_a[1]"], by_preset, "me", "quick") is None
    line = describe_preset_cost("default", {"forward": [30, 10]}, 600.0, expected, "epyc-2c__cpu")
    assert line == ("preset default: 30 cases, 10 run here (forward 10/30); budget 10 min; expected about 25 s "
                    "here (2 of 3 cases timed in results/epyc-2c__cpu, the rest not counted)")
    assert describe_preset_cost("full", {"forward": [1, 1]}, None, None, "x").endswith(
        "budget none; expected time: no stored run of this machine in results/x/ yet")


def test_final_replan_caps_but_never_skips():
    clock = Clock()
    ledger = RunBudget(60.0, clock=clock, started_at=clock.now)
    ledger.expect(["t.py::test_x"])
    ledger.start("t.py::test_x")
    clock.now += 50.0  # the warm-up turned out slow: the minimum no longer fits, but it was paid for
    plan = ledger.plan(estimate_s=5.0, calls_left=0, min_rounds=7, final=True)
    assert plan.max_rounds == 7 and plan.skip_reason is None and not ledger.skipped


# ------------------------------------------------------------------------------------ measure() with a planner


class _Bench:
    def __init__(self) -> None:
        self.extra_info: dict = {}
        self.stats = None  # as under --benchmark-disable: measure leaves the timing keys out
        self.rounds = None

    def pedantic(self, target, rounds, iterations, warmup_rounds):
        self.rounds = rounds
        target()


class _Planner:
    """A CasePlanner as measure() sees it, recording when it is asked."""

    def __init__(self, calls: list, skip_at: str | None = None) -> None:
        self.calls, self.skip_at, self.asked = calls, skip_at, []

    def _ask(self, what: str, **kwargs):
        self.asked.append((what, len(self.calls), kwargs))
        if what == self.skip_at:
            pytest.skip("over the time budget")

    def after_cold(self, cold_s, **kwargs):
        self._ask("after_cold", cold_s=cold_s, **kwargs)

    def plan(self, **kwargs):
        from fer_bench.plugin.budget import RoundsPlan

        self._ask("plan", **kwargs)
        return RoundsPlan(50, info={"budget_s": 600, "estimate_s": 0.1})

    def replan(self, **kwargs):
        from fer_bench.plugin.budget import RoundsPlan

        self._ask("replan", **kwargs)
        return RoundsPlan(9, info={"budget_s": 600})


def test_measure_plans_after_the_first_warm_call_and_caps_after_the_warm_up():
    from fer_bench.measure.timing import measure

    calls = []
    planner = _Planner(calls)
    bench = _Bench()
    info = measure(bench, lambda: calls.append(1), device="cpu", samples_per_call=1, phase="x", target_s=10.0,
                   min_rounds=7, warmup_rounds=3, planner=planner)
    (cold, at_cold, c), (plan, at_plan, p), (replan, at_replan, r) = planner.asked
    assert (cold, at_cold, c["calls_left"]) == ("after_cold", 1, 3)
    assert (plan, at_plan, p["calls_left"], p["min_rounds"]) == ("plan", 2, 2, 7)  # cold + first warm call
    assert (replan, at_replan, r["min_rounds"]) == ("replan", 4, 7)
    assert bench.rounds == info["rounds"] == info["planned_rounds"] == 9
    assert info["budget_s"] == 600 and info["estimate_s"] == 0.1


@pytest.mark.parametrize("skip_at, calls_made", [("after_cold", 1), ("plan", 2)])
def test_measure_skipped_by_its_planner_stops_there(skip_at, calls_made):
    from fer_bench.measure.timing import measure

    calls = []
    bench = _Bench()
    with pytest.raises(pytest.skip.Exception):
        measure(bench, lambda: calls.append(1), device="cpu", samples_per_call=1, phase="x", warmup_rounds=3,
                planner=_Planner(calls, skip_at))
    assert len(calls) == calls_made and bench.rounds is None




# ------------------------------------------------------------------------------------ the case planner


def _planner_for(budget_s: float, remaining: int, **kwargs):
    from fer_bench.plugin.budget import CasePlanner

    clock = Clock()
    ledger = RunBudget(budget_s, clock=clock, started_at=clock.now)
    names = [f"t.py::test_x[{i}]" for i in range(remaining)]
    ledger.expect(names)
    ledger.start(names[0])
    reasons = []

    def skip(reason):
        reasons.append(reason)
        pytest.skip(reason)

    return ledger, clock, reasons, lambda **more: CasePlanner(ledger, skip, **{**kwargs, **more})


def test_a_cold_call_over_the_allowance_ends_the_case_without_a_warm_call():
    ledger, clock, reasons, make = _planner_for(600.0, 10, family=("vgg_fer", "amp_bf16"), rank=0)
    planner = make()
    clock.now += 10.0
    planner.after_cold(10.0, calls_left=3, min_rounds=7)  # within the 232 s cap: goes on
    clock.now += 230.0
    with pytest.raises(pytest.skip.Exception):
        planner.after_cold(230.0, calls_left=3, min_rounds=7)
    assert reasons[0].startswith("over the time budget: would take up to ") and "for 7 rounds (its first call " \
        "took 4 min), over the 4 min one case may take now (10 min of the 10 min budget" in reasons[0]
    assert ledger.floor_for(("vgg_fer", "amp_bf16"), 2) == (115.0, 0)  # half the cold call, for the next phases


def test_a_cheaper_phase_skips_the_next_before_it_builds_anything():
    ledger, clock, reasons, make = _planner_for(600.0, 10, phase_names={0: "forward"})
    family = ("vgg_fer", "cpu", 64, "amp_bf16")
    make(family=family, rank=1).start(min_rounds=7, calls_before=4)  # nothing known yet: not checked
    ledger.record_floor(family, 0, 30.0)  # its forward pass took 30 s a call
    with pytest.raises(pytest.skip.Exception):
        make(family=family, rank=1).start(min_rounds=7, calls_before=4)
    assert "would take at least 6 min for 7 rounds (its forward call took 30 s)" in reasons[0]
    assert ledger.skipped[ledger.current] == reasons[0]
    # another model, or a cheap enough forward pass, is not skipped
    make(family=("fer_cnn_2block",), rank=1).start(min_rounds=7, calls_before=4)
    ledger.floors[family][0] = 0.5
    make(family=family, rank=2).start(min_rounds=7, calls_before=4)


def test_nothing_left_skips_before_the_build():
    ledger, clock, reasons, make = _planner_for(60.0, 3)
    ledger.took["t.py::test_done"] = 20.0
    clock.now += 100.0
    ledger.start("t.py::test_x[1]")
    assert ledger.spent_reason() == ("over the time budget: nothing is left of the 60 s budget (3 cases to go): "
                                     "--fer-budget 3m runs them")


# ------------------------------------------------------------------------------------------------ time left
# A default-preset-like run: step benchmarks whose cost is the benchmark's (the reference step, with its paired
# pass, about 3x the harness's step) times the model's (VGG about 15x the 2-block CNN), with +-20% noise.
_BENCH_COST = {"test_forward": 1.0, "test_forward_backward": 2.5, "test_train_step": 2.5,
               "test_train_step_reference": 8.0}
_MODEL_COST = {"fer_cnn_2block": 0.4, "fer_cnn_4block": 3.0, "vgg_fer": 6.0, "efficientnet_b0": 2.0,
               "resnet18": 1.5}


def _step_trace() -> list[tuple[str, float]]:
    import random

    rng = random.Random(7)
    items = []
    for bench, a in _BENCH_COST.items():
        for model, b in _MODEL_COST.items():
            for precision, c in (("fp32", 1.0), ("amp_bf16", 1.3)):
                items.append((f"benchmarks/test_step.py::{bench}[{model}-cpu-bs64-{precision}-g1]",
                              a * b * c * rng.uniform(0.8, 1.2)))
    return items


def _replay(items, budget_s=None, prior=None) -> list[float]:
    """Relative errors of estimate_left after each item (while over 10% of the run is left)."""
    clock = Clock()
    ledger = RunBudget(budget_s, clock=clock, started_at=clock.now)
    ledger.expect([n for n, _ in items])
    ledger.prior = dict(prior or {})
    total = sum(t for _, t in items)
    errors = []
    for i, (name, seconds) in enumerate(items):
        ledger.start(name)
        clock.now += seconds
        ledger.finish(name)
        actual = sum(t for _, t in items[i + 1:])
        if actual > 0.1 * total:
            errors.append((ledger.estimate_left() - actual) / actual)
    return errors


def test_case_key_is_the_id_the_step_benchmarks_share():
    assert case_key("b/test_step.py::test_forward[vgg_fer-cpu-bs64-fp32-g1]") == "vgg_fer-cpu-bs64-fp32-g1"
    assert case_key("b/test_data_inspect.py::test_data_inspect_cold") == ""


def test_guess_scales_a_case_seen_elsewhere_by_the_benchmarks_ratio():
    table = {"test_forward": {"a": 1.0, "b": 4.0}, "test_train_step": {"a": 3.0}}
    # b's train step: its forward (4 s) times train_step/forward over the shared case a (3x)
    assert guess_item_s("t.py::test_train_step[b]", table) == pytest.approx(12.0)
    # nothing shared: its own benchmark's mean; then its own case elsewhere; else nothing
    assert guess_item_s("t.py::test_train_step[c]", table) == pytest.approx(3.0)
    assert guess_item_s("t.py::test_epoch[b]", table) == pytest.approx(4.0)
    assert guess_item_s("t.py::test_epoch[z]", table) is None


def test_time_left_follows_the_cost_of_each_model_and_benchmark():
    """Replayed over a run whose cases differ 60-fold: once a benchmark's first cases have run, its later cases
    are estimated from the same models' cases in the benchmarks before it, within 15% here; the mean per
    benchmark (the estimate before) took every later VGG step for an average one and was off by over 30%. (A
    benchmark none of whose cases has run is guessed from the same cases elsewhere: on a first run the time left
    is low until the slow benchmarks start; a stored run of this machine fixes that, as the next test shows.)"""
    items = _step_trace()
    start = 32  # the reference step's first two cases have run
    errors = _replay(items)[start:]
    assert errors and sum(map(abs, errors)) / len(errors) < 0.15
    naive_errors = []
    total = sum(t for _, t in items)
    for i in range(start, len(items)):
        ran = items[:i + 1]
        same = [t for n, t in ran if split_case_name(n)[0] == split_case_name(items[-1][0])[0]]
        guess = sum(same) / len(same) * (len(items) - i - 1)
        actual = sum(t for _, t in items[i + 1:])
        if actual > 0.1 * total:
            naive_errors.append((guess - actual) / actual)
    assert naive_errors and sum(map(abs, naive_errors)) / len(naive_errors) > 0.3


def test_a_stored_run_is_the_first_guess_scaled_to_this_run():
    """With this machine's last run as the prior, a run 1.5x slower throughout is estimated within 10% from its
    second case on."""
    items = _step_trace()
    prior = {n: t for n, t in items}
    slower = [(n, 1.5 * t) for n, t in items]
    errors = _replay(slower, prior=prior)
    assert max(map(abs, errors[1:])) < 0.1


def test_time_left_never_exceeds_what_is_left_of_the_budget():
    items = _step_trace()
    clock = Clock()
    ledger = RunBudget(60.0, clock=clock, started_at=clock.now)
    ledger.expect([n for n, _ in items])
    ledger.start(items[0][0])
    clock.now += 30.0
    ledger.finish(items[0][0])
    assert ledger.estimate_left() <= 60.0 - reserve_for(60.0) - 30.0 + 1e-9


def _prior_session(tmp_path, mine):
    from types import SimpleNamespace

    return SimpleNamespace(options=SimpleNamespace(rootpath=tmp_path), preset_name="default",
                           get_fingerprint=lambda: {"slug": "box-2c__cpu", "identity_hash": mine["identity_hash"]})


def _stored_forward_run(fp, walls, preset="default", when="2026-01-01T12:00:00+00:00"):
    from result_factory import create_benchmark, create_run

    cases = [create_benchmark("test_forward", {"model": m}, [0.01] * 7,
                              extra_info={"case_wall_s": w, "preset": preset}) for m, w in walls.items()]
    return create_run(cases, fp, when=when)


def test_the_session_takes_its_prior_from_this_machines_latest_stored_run(tmp_path):
    """load_budget_prior: the planned items that this machine's stored run of the preset holds get their
    case_wall_s; another machine's run, another preset's cases and items not planned get nothing while this
    machine has a run of its own."""
    from fer_bench.plugin import load_budget_prior
    from result_factory import create_fingerprint, write_run

    mine, other = create_fingerprint("box-2c__cpu"), create_fingerprint("big-64c__cpu")
    folder = tmp_path / "results" / "box-2c__cpu"
    write_run(folder / "0001.json", _stored_forward_run(mine, {"a": 9.0, "b": 9.0}))
    write_run(folder / "0002.json", _stored_forward_run(mine, {"a": 2.0}, when="2026-01-02T12:00:00+00:00"))
    write_run(folder / "0003.json", _stored_forward_run(mine, {"c": 5.0}, preset="quick"))
    write_run(tmp_path / "results" / "big-64c__cpu" / "0001.json", _stored_forward_run(other, {"d": 1.0}))
    planned = [(f"b/test_step.py::test_forward[{m}]", f"test_forward[{m}]") for m in "abcd"]
    prior = load_budget_prior(_prior_session(tmp_path, mine), planned)
    assert prior.times == {"test_forward[a]": 2.0, "test_forward[b]": 9.0}
    assert prior.same_machine and prior.describe() == "2 cases timed in this machine's stored runs"
    # no results folder at all: nothing is read, not even the fingerprint
    bare = _prior_session(tmp_path / "elsewhere", mine)
    bare.get_fingerprint = lambda: pytest.fail("the fingerprint was collected")
    assert load_budget_prior(bare, planned) is None


def test_a_new_machine_takes_the_prior_of_the_other_machine_that_covers_most(tmp_path):
    """Before this machine has a stored run of the preset, the other machine whose runs hold the most planned
    cases gives the first guesses (this run scales them to itself as its cases are timed)."""
    from fer_bench.plugin import load_budget_prior
    from result_factory import create_fingerprint, write_run

    mine = create_fingerprint("box-2c__cpu")
    small, big = create_fingerprint("small-2c__cpu"), create_fingerprint("big-64c__cpu")
    write_run(tmp_path / "results" / "small-2c__cpu" / "0001.json", _stored_forward_run(small, {"a": 3.0}))
    write_run(tmp_path / "results" / "big-64c__cpu" / "0001.json",
              _stored_forward_run(big, {"a": 1.0, "b": 2.0}))
    write_run(tmp_path / "results" / "big-64c__cpu" / "0002.json",
              _stored_forward_run(big, {"a": 1.0, "b": 2.0, "c": 4.0}, preset="quick"))
    planned = [(f"b/test_step.py::test_forward[{m}]", f"test_forward[{m}]") for m in "abc"]
    prior = load_budget_prior(_prior_session(tmp_path, mine), planned)
    assert prior.times == {"test_forward[a]": 1.0, "test_forward[b]": 2.0}
    assert not prior.same_machine and prior.slug == "big-64c__cpu"
    assert prior.describe() == "2 cases timed in big-64c__cpu's (another machine) stored runs"


def test_round_time_option_overrides_the_presets_round_target_only():
    import types

    from fer_bench.plugin.options import parse_round_time
    from fer_bench.plugin.presets import PRESETS
    from fer_bench.plugin.session import FerOptions

    assert parse_round_time("2s") == parse_round_time("2") == 2.0
    options = {"fer_preset": "quick", "fer_round_time": 1.5}
    config = types.SimpleNamespace(getoption=lambda name: options.get(name), rootpath=".")
    session = FerOptions.from_config(config)
    assert session.preset.target_round_s == 1.5
    assert session.preset.name == "quick" and session.budget_s == PRESETS["quick"].budget_s
    assert session.preset.per_benchmark == PRESETS["quick"].per_benchmark
    options["fer_round_time"] = None
    assert FerOptions.from_config(config).preset is PRESETS["quick"]


# ------------------------------------------------------------------------------------------------ the first pass


def test_budget_order_takes_each_benchmarks_cheapest_item_first():
    """The first pass is one item per benchmark: the cheapest by the prior where it covers the benchmark, else
    its first; cheap first items run first, unknown ones after them in their benchmarks' order; then every other
    item in its own order."""
    from fer_bench.plugin.budget import budget_order

    ids = ["m::test_epoch[a]", "m::test_epoch[b]", "m::test_step[a]", "m::test_step[b]", "m::test_step[c]",
           "m::test_scaling[a]", "m::test_tta[a]"]
    order, firsts = budget_order(ids)
    assert firsts == ["m::test_epoch[a]", "m::test_step[a]", "m::test_scaling[a]", "m::test_tta[a]"]
    assert order == firsts + ["m::test_epoch[b]", "m::test_step[b]", "m::test_step[c]"]
    prior = {"m::test_epoch[a]": 40.0, "m::test_epoch[b]": 30.0, "m::test_step[a]": 2.0, "m::test_step[b]": 1.0,
             "m::test_step[c]": 3.0, "m::test_tta[a]": 5.0}
    order, firsts = budget_order(ids, prior=prior)
    assert firsts == ["m::test_step[b]", "m::test_tta[a]", "m::test_epoch[b]", "m::test_scaling[a]"]
    assert order == firsts + ["m::test_epoch[a]", "m::test_step[a]", "m::test_step[c]"]
    # an item that will not run (marked skip) is never a first and keeps its place among the rest
    order, firsts = budget_order(ids, runnable=[i for i in ids if i != "m::test_epoch[a]"])
    assert firsts[0] == "m::test_epoch[b]" and order[len(firsts)] == "m::test_epoch[a]"


def test_a_benchmarks_first_item_may_fill_what_the_other_first_items_leave():
    """A first item's minimum may fill the time left less the other first items' guesses (here 2 x 10 s of
    stored time, and a share for the one nothing is known of), not only its BORROW shares."""
    clock = Clock()
    ledger = RunBudget(600.0, clock=clock, started_at=clock.now)
    names = ([f"m::test_step[{i}]" for i in range(20)] + ["m::test_epoch[0]", "m::test_epoch[1]",
                                                          "m::test_loader[0]", "m::test_tta[0]"])
    ledger.expect(names)
    ledger.firsts = {"m::test_step[0]", "m::test_epoch[0]", "m::test_loader[0]", "m::test_tta[0]"}
    ledger.prior = {"m::test_step[0]": 10.0, "m::test_loader[0]": 10.0}
    ledger.start("m::test_epoch[0]")
    allowance = ledger.current_allowance
    time_left = 600.0 - reserve_for(600.0)
    share = time_left / len(names)
    assert allowance.others_s == pytest.approx(20.0 + share)
    assert allowance.cap_s == pytest.approx(time_left - 20.0 - share) and allowance.cap_s > 4 * share
    assert ledger.plan(estimate_s=100.0, calls_left=1, min_rounds=3).skip_reason is None
    ledger.finish("m::test_epoch[0]")
    # the benchmark's second item leaves room for every item after it, each at its guess (the steps at what the
    # first step took, the rest at the mean of what ran), and has at least its BORROW shares
    clock.now += 300.0
    ledger.start("m::test_epoch[1]")
    allowance = ledger.current_allowance
    assert allowance.others_s == pytest.approx(ledger.expected(names[:20] + names[22:]))
    assert allowance.cap_s == pytest.approx(max(BORROW * allowance.share_s, allowance.time_left_s - allowance.others_s))
    plan = ledger.plan(estimate_s=100.0, calls_left=1, min_rounds=3)
    assert plan.skip_reason.startswith("over the time budget: would take 7 min for 3 rounds")


def _simulate(costs: dict[str, float], budget_s: float, order: list[str], firsts: set[str],
              shares_only: bool = False) -> dict[str, bool]:
    """A budgeted run of items that each take their cost, or are skipped after a probe of a tenth of it when that
    is over what they may take (``shares_only``: BORROW shares, the rule before the first pass): item -> ran."""
    clock = Clock()
    ledger = RunBudget(budget_s, clock=clock, started_at=clock.now - 15.0)  # imports and collection
    ledger.expect(order)
    ledger.firsts = set(firsts)
    ran = {}
    for name in order:
        ledger.start(name)
        allowance = ledger.current_allowance
        if shares_only:
            allowance = create_allowance(budget_s, allowance.elapsed_s, allowance.remaining)
        fits = costs[name] <= allowance.cap_s
        clock.now += costs[name] if fits else costs[name] / 10
        if not fits:
            ledger.skip_now("over the time budget")
        ledger.finish(name)
        ran[name] = fits
    return ran


def test_a_slow_cpus_default_preset_measures_every_benchmark():
    """The default preset's shape on a 2-core AVX2 CPU (its amp_bf16 cases left out): 31 cases that need about
    8 minutes, two of them 2-minute epochs and one 80 s time to accuracy. Taken in collection order with BORROW
    shares alone, both epochs were skipped (as measured on such a VM); with the first pass every benchmark has a
    result and nothing is skipped."""
    from fer_bench.plugin.budget import budget_order

    costs = {"b::test_data_inspect_cold": 5.0, "b::test_data_inspect_warm": 2.0}
    costs.update({f"b::test_dataloader[{i}]": 2.0 for i in range(6)})
    costs.update({"b::test_epoch[w0]": 110.0, "b::test_epoch[w2]": 115.0})
    costs.update({"b::test_scaling_step[g1]": 8.0, "b::test_scaling_step[g2]": 12.0})
    for bench in ("test_forward", "test_forward_backward", "test_train_step", "test_train_step_reference"):
        for model, cost in (("a", 1.0), ("b", 6.0), ("c", 8.0), ("d", 4.0), ("e", 3.0)):
            costs[f"b::{bench}[{model}]"] = cost * (0.5 if bench == "test_forward" else 1.0)
    costs["b::test_time_to_accuracy[a]"] = 80.0
    names = list(costs)
    assert 420 < sum(costs.values()) < 520
    old = _simulate(costs, 600.0, names, set(), shares_only=True)
    assert not old["b::test_epoch[w0]"] and not old["b::test_epoch[w2]"]
    order, firsts = budget_order(names)
    new = _simulate(costs, 600.0, order, set(firsts))
    assert all(new.values()), [n for n, ran in new.items() if not ran]


def test_time_left_from_another_machines_run_scales_each_benchmark_by_its_own_first_item():
    """A new machine whose steps are 3x slower than the stored machine's and whose loader passes are as fast:
    scaled by one overall ratio the estimate is off by a third or more; scaled per benchmark, by each benchmark's
    cheapest item once it has run (the first pass runs them all early), it is within 15% from the fourth item on."""
    from fer_bench.plugin.budget import budget_order

    prior = {}
    for i in range(8):
        prior[f"b::test_dataloader[{i}]"] = 2.0
    for bench in ("test_forward", "test_train_step"):
        for i, cost in enumerate((1.0, 4.0, 6.0, 3.0)):
            prior[f"b::{bench}[{i}]"] = cost
    here = {n: t * (1.0 if "dataloader" in n else 3.0) for n, t in prior.items()}
    order, firsts = budget_order(list(prior), prior=prior)
    clock = Clock()
    ledger = RunBudget(None, clock=clock, started_at=clock.now)
    ledger.expect(order)
    ledger.firsts, ledger.prior = set(firsts), dict(prior)
    errors = []
    for i, name in enumerate(order):
        ledger.start(name)
        clock.now += here[name]
        ledger.finish(name)
        actual = sum(here[n] for n in order[i + 1:])
        if actual:
            errors.append((ledger.estimate_left() - actual) / actual)
    assert max(map(abs, errors[3:])) < 0.15, errors
    per, overall = ledger.scales()
    assert per["test_dataloader"] == pytest.approx(1.0) and per["test_train_step"] == pytest.approx(3.0)


def test_the_runs_shared_setup_is_left_out_of_what_an_item_tells():
    """Whichever item comes first pays the run's shared setup (the data set, a session fixture); the ratio to the
    prior and the guesses leave it out, so the first item does not scale every estimate by its setup."""
    clock = Clock()
    ledger = RunBudget(None, clock=clock, started_at=clock.now)
    names = ["m::test_step[a]", "m::test_step[b]", "m::test_epoch[a]"]
    ledger.expect(names)
    ledger.prior = {"m::test_step[a]": 1.0, "m::test_step[b]": 2.0, "m::test_epoch[a]": 10.0}
    ledger.start(names[0])
    clock.now += 6.0
    ledger.add_shared(5.0)  # the data set loaded inside the first item
    ledger.finish(names[0])
    assert ledger.took[names[0]] == 6.0 and ledger.shared == {names[0]: 5.0}
    per, overall = ledger.scales()
    assert per["test_step"] == pytest.approx(1.0) and overall == pytest.approx(1.0)
    assert ledger.estimate_left() == pytest.approx(12.0)
    ledger.add_shared(1.0)  # between items: nobody pays
    assert ledger.shared == {names[0]: 5.0}


def test_a_stored_case_leaves_out_the_shared_setup_it_paid():
    assert stored_case_seconds({"case_wall_s": 7.0, "case_shared_s": 5.0}, {}) == pytest.approx(2.0)
    assert stored_case_seconds({"case_wall_s": 7.0}, {}) == pytest.approx(7.0)


def test_the_first_items_warm_up_does_not_scale_the_benchmarks_not_yet_timed():
    """The run's first item pays the process's warm-up (here 1.5 s on a 1 s item): its own benchmark's scale keeps
    it, the overall one, which guesses the benchmarks not yet timed, leaves it out."""
    clock = Clock()
    ledger = RunBudget(None, clock=clock, started_at=clock.now)
    names = ["m::test_forward[a]", "m::test_forward[b]", "m::test_epoch[a]", "m::test_epoch[b]", "m::test_epoch[c]"]
    ledger.expect(names)
    ledger.prior = {"m::test_forward[a]": 1.0, "m::test_forward[b]": 1.0, **{n: 20.0 for n in names[2:]}}
    ledger.start(names[0])
    clock.now += 2.5
    ledger.finish(names[0])
    per, overall = ledger.scales()
    assert per["test_forward"] == pytest.approx(2.5) and overall == 1.0
    assert ledger.estimate_left() == pytest.approx(2.5 + 60.0)  # the run left takes 61 s
