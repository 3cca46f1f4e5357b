"""The time budget's arithmetic: durations as text, the reserve, a case's allowance (its fair share and what it
may borrow), its rounds plan and the wording of a skip. Pure functions over numbers; the ledger that feeds them is
fer_bench.plugin.budget, whose docstring says how the budget is shared."""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

#: A case's minimum rounds may take up to this many fair shares (capped by the time left). Most cases take far
#: less than their share (the default preset's first run here: a median of 4 s against a 25 s share), and what
#: they leave only reaches the cases after them: at 2 shares both epochs of the default preset were skipped on a
#: native 2-core CPU that then finished in 5.5 of its 10 minutes; at 4 they run, and one case still takes at most
#: 8% of what is left when 50 are to go.
BORROW = 4.0
#: Kept back from the budget for what follows the last case (pytest-benchmark's JSON, the sidecar, teardown).
RESERVE_FRACTION = 0.05
RESERVE_MAX_S = 20.0
NO_BUDGET = math.inf

_DURATION_RE = re.compile(r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m(?:in)?)?(?:(?P<s>\d+(?:\.\d+)?)s)?$")


# ------------------------------------------------------------------------------------------------ durations


def parse_duration(text: str) -> float:
    """``90s``, ``2m``, ``1h``, ``10m30s`` or a bare number of seconds, in seconds; ``none`` is NO_BUDGET (inf).

    Raises:
        argparse.ArgumentTypeError: one line naming --fer-budget, the text and the accepted forms.
    """
    raw = str(text).strip().lower().replace(" ", "")
    if raw in ("none", "off", "inf"):
        return NO_BUDGET
    seconds = None
    try:
        seconds = float(raw)
    except ValueError:
        match = _DURATION_RE.match(raw)
        if match and raw:
            parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
            seconds = parts.get("h", 0.0) * 3600 + parts.get("m", 0.0) * 60 + parts.get("s", 0.0)
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"--fer-budget: {text!r} is not a duration; use e.g. 90s, 2m, 1h, 10m30s "
                                         "or none")
    return seconds


def format_duration(seconds: float) -> str:
    """For people: ``3.1 s``, ``42 s``, ``7 min``, ``1 h 5 min``."""
    if seconds < 9.95:
        return f"{max(seconds, 0.0):.1f} s"
    if seconds < 119.5:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


def format_budget_option(seconds: float) -> str:
    """A --fer-budget value of at least ``seconds``, rounded up to a round figure: ``50s``, ``14m``, ``1h30m``."""
    if seconds <= 110:
        return f"{max(10, math.ceil(seconds / 10) * 10)}s"
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"{minutes}m"
    minutes = math.ceil(minutes / 10) * 10
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h" + (f"{minutes}m" if minutes else "")


def reserve_for(budget_s: float) -> float:
    return min(RESERVE_FRACTION * budget_s, RESERVE_MAX_S)


def process_age_s(proc: Path = Path("/proc")) -> float:
    """Seconds since this process started (interpreter start and imports count against the budget); 0 where
    /proc cannot tell."""
    try:
        import os

        stat = (proc / "self/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime, after the command name
        uptime = float((proc / "uptime").read_text().split()[0])
        age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0
    return age if 0 <= age < 86400 else 0.0


# ------------------------------------------------------------------------------------------------ planning


@dataclass(frozen=True)
class Allowance:
    """What one case may spend, fixed when it starts.

    Attributes:
        budget_s: the run's budget.
        elapsed_s: the run's wall time when the case started.
        time_left_s: budget less reserve less elapsed, when the case started.
        remaining: benchmark items still to run, this one included.
        share_s: the fair share, ``time_left_s / remaining``: what rounds beyond the minimum may fill.
        cap_s: what the minimum rounds may fill: the time left less ``others_s``, at least ``BORROW`` shares, at
            most the time left.
        others_s: what the items this case leaves room for are expected to take (None: not known; its shares).
    """

    budget_s: float
    elapsed_s: float
    time_left_s: float
    remaining: int
    share_s: float
    cap_s: float
    others_s: float | None = None


def create_allowance(budget_s: float, elapsed_s: float, remaining: int, others_s: float | None = None) -> Allowance:
    """The allowance of a case that starts now.

    Args:
        others_s: what the items this one must leave room for are expected to take (RunBudget.room_for): its
            minimum may fill the time left less that, when that is more than its ``BORROW`` shares. None: its
            shares alone.
    """
    time_left = max(0.0, budget_s - reserve_for(budget_s) - elapsed_s)
    remaining = max(1, remaining)
    share = time_left / remaining
    cap = min(time_left, BORROW * share)
    if others_s is not None:
        cap = max(cap, time_left - others_s)
    return Allowance(budget_s, elapsed_s, time_left, remaining, share, cap, others_s)


@dataclass(frozen=True)
class RoundsPlan:
    """The rounds a case gets, or why it gets none.

    Attributes:
        max_rounds: the most rounds its allowance holds (at least the minimum); 0 when skipped; None without a
            budget. measure() takes the rounds its round-time target asks for, at most these.
        skip_reason: one line for pytest's skip, with the time needed and the budget that would run it.
        extra_calls: calls kept for the pass after the rounds (0 where even its minimum does not fit).
        info: for extra_info: budget_s, allowance_s, estimate_s.
    """

    max_rounds: int | None
    skip_reason: str | None = None
    extra_calls: int = 0
    info: dict = field(default_factory=dict)


def suggest_budget(allowance: Allowance, need_s: float) -> float:
    """The smallest budget whose allowance for this case (same start, same cases left) holds ``need_s``."""
    floor = allowance.elapsed_s + need_s * max(1.0, allowance.remaining / BORROW)
    if allowance.others_s is not None:  # or room for what the items it leaves room for are expected to take
        floor = min(floor, allowance.elapsed_s + need_s + allowance.others_s)
    # the reserve is min(fraction x budget, cap): budget - reserve >= floor holds from whichever bound is lower
    return min(floor / (1 - RESERVE_FRACTION), floor + RESERVE_MAX_S)


def describe_over_budget(allowance: Allowance, need_s: float, rounds: int, qualifier: str = "",
                         why: str = "") -> str:
    """``over the time budget: would take 42 s for 7 rounds, over the 25 s one case may take now (3 min of the
    10 min budget left for 9 cases): --fer-budget 14m runs it``; ``qualifier`` (``up to``, ``at least``) and
    ``why`` (a parenthesis) say where the need comes from when it is a bound."""
    suggestion = format_budget_option(suggest_budget(allowance, need_s))
    cases = "case" if allowance.remaining == 1 else "cases"
    return (f"over the time budget: would take {qualifier + ' ' if qualifier else ''}{format_duration(need_s)} "
            f"for {rounds} rounds{' (' + why + ')' if why else ''}, over the {format_duration(allowance.cap_s)} "
            f"one case may take now ({format_duration(allowance.time_left_s)} of the "
            f"{format_duration(allowance.budget_s)} budget left for {allowance.remaining} {cases}): "
            f"--fer-budget {suggestion} runs it")


def describe_spent(allowance: Allowance, mean_case_s: float | None) -> str:
    """The reason of a case that starts when nothing of the budget is left (not even its build is tried)."""
    cases = "case" if allowance.remaining == 1 else "cases"
    text = (f"over the time budget: nothing is left of the {format_duration(allowance.budget_s)} budget "
            f"({allowance.remaining} {cases} to go)")
    if not mean_case_s:
        return text
    need = allowance.elapsed_s + allowance.remaining * mean_case_s
    return text + f": --fer-budget {format_budget_option(need / (1 - RESERVE_FRACTION))} runs them"


def plan_rounds(allowance: Allowance | None, *, estimate_s: float, spent_s: float, calls_left: int,
                min_rounds: int, after_calls: int = 0, extra_calls: int = 0,
                described_rounds: int | None = None) -> RoundsPlan:
    """The rounds of one case.

    Args:
        allowance: the case's allowance; None when the run has no budget (no cap on the rounds).
        estimate_s: seconds per call (its first warm call; the cold call where there is no warm-up).
        spent_s: what the case has spent so far (setup, build, FLOP count, its cold and first warm calls).
        calls_left: calls before the rounds that are still to come (the rest of the warm-up).
        min_rounds: the benchmark's minimum rounds; never cut.
        after_calls: calls the case makes after its rounds whatever the budget (a FLOP count): part of its need.
        extra_calls: calls of an optional pass after the rounds at its minimum (the paired overhead), kept out of
            the rounds when they fit beside the minimum within the fair share (an extra never borrows).
        described_rounds: the rounds a skip reason names (the test's own count, where some already ran).
    """
    info: dict = {"estimate_s": estimate_s}
    if allowance is None:
        return RoundsPlan(None, extra_calls=extra_calls, info={**info, "budget_s": None})
    info.update(budget_s=allowance.budget_s, allowance_s=round(allowance.cap_s, 3))
    estimate_s = max(estimate_s, 0.0)
    need = spent_s + (calls_left + min_rounds + after_calls) * estimate_s
    if need > allowance.cap_s:
        return RoundsPlan(0, describe_over_budget(allowance, need, described_rounds or min_rounds), 0, info)
    # extras (an optional pass, rounds beyond the minimum) come out of the fair share only, never out of what the
    # minimum borrowed
    kept = extra_calls if need + extra_calls * estimate_s <= allowance.share_s else 0
    room = max(allowance.share_s, need) - spent_s - (calls_left + after_calls + kept) * estimate_s
    fit = math.floor(room / estimate_s) if estimate_s > 0 else None
    return RoundsPlan(None if fit is None else max(min_rounds, fit), None, kept, info)


def fit_calls(allowance: Allowance | None, *, per_call_s: float, spent_s: float, minimum: int,
              wanted: int) -> int:
    """How many calls of an optional pass after the rounds fit what is left of the case's fair share (an extra
    never borrows): ``wanted`` without a budget, else between ``minimum`` and ``wanted``, or 0 when not even
    ``minimum`` fits."""
    if allowance is None:
        return wanted
    room = allowance.share_s - spent_s
    if per_call_s <= 0:
        return wanted
    fit = math.floor(room / per_call_s)
    return 0 if fit < minimum else min(wanted, fit)
