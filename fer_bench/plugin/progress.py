"""A progress line per benchmark case, with the time left under the run's plan.

    fer_bench: [37/148] test_train_step[resnet18-cpu-bs64-amp_bf16-g1] 3.1 s, 4:12 elapsed, about 6 min left

pytest prints a dot per case; a run of the default preset takes minutes, so the plugin adds these lines through
its terminal reporter (fer_bench.plugin's pytest_runtest_logfinish). On a terminal every case gets one; in a log
(CI) a line comes at most every ``INTERVAL_S`` seconds or every ``EVERY_N`` cases, and for the last case, so a
long run stays readable. ``--fer-progress`` chooses: auto (that rule), every, sparse, off.

The time left is RunBudget.estimate_left(): the cases still to run, each at what its benchmark's cases took so
far, capped by its fair share of the budget. Pure formatting and throttling here; no pytest.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from fer_bench.plugin.budget import format_duration

PROGRESS_MODES = ("auto", "every", "sparse", "off")
INTERVAL_S = 30.0
EVERY_N = 10


def parse_progress(text: str) -> str:
    name = str(text).strip().lower()
    if name not in PROGRESS_MODES:
        raise argparse.ArgumentTypeError(f"--fer-progress: {text!r} is not a mode; valid: {', '.join(PROGRESS_MODES)}")
    return name


def format_clock(seconds: float) -> str:
    """``4:12``, ``1:02:03``: elapsed wall time."""
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_left(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds <= 0:
        return "nothing left"
    return f"about {format_duration(seconds)} left"


def format_progress(index: int, total: int, name: str, case_s: float, elapsed_s: float, left_s: float | None,
                    note: str = "") -> str:
    """``fer_bench: [37/148] NAME 3.1 s, 4:12 elapsed, about 6 min left``; ``note`` (a skip) after the time."""
    parts = [f"{format_duration(case_s)}" + (f" ({note})" if note else ""), f"{format_clock(elapsed_s)} elapsed"]
    left = format_left(left_s)
    if left:
        parts.append(left)
    return f"fer_bench: [{index}/{total}] {name} " + ", ".join(parts)


@dataclass
class Throttle:
    """Decides which cases get a line: every case, or (sparse) one every ``interval_s`` or ``every_n`` cases, and
    the last."""

    every: bool
    interval_s: float = INTERVAL_S
    every_n: int = EVERY_N
    last_at: float | None = None
    since: int = 0

    @classmethod
    def for_mode(cls, mode: str, isatty: bool) -> "Throttle | None":
        if mode == "off":
            return None
        return cls(every=mode == "every" or (mode == "auto" and isatty))

    def should_print(self, now: float, last: bool) -> bool:
        self.since += 1
        due = (self.every or last or self.since >= self.every_n
               or self.last_at is None or now - self.last_at >= self.interval_s)
        if due:
            self.last_at, self.since = now, 0
        return due
