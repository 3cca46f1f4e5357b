"""The progress line (fer_bench.plugin.progress): its wording, and which cases get one on a terminal and in a log."""

from __future__ import annotations

import argparse

import pytest

from fer_bench.plugin.progress import (
    EVERY_N,
    INTERVAL_S,
    Throttle,
    format_clock,
    format_left,
    format_progress,
    parse_progress,
)


def test_the_line_of_the_issue():
    line = format_progress(37, 148, "test_train_step[resnet18-cpu-bs64-amp_bf16-g1]", 3.1, 252.0, 360.0)
    assert line == ("fer_bench: [37/148] test_train_step[resnet18-cpu-bs64-amp_bf16-g1] 3.1 s, 4:12 elapsed, "
                    "about 6 min left")


def test_a_skipped_case_says_so_and_the_last_says_nothing_is_left():
    line = format_progress(148, 148, "test_x[a]", 0.84, 3725.0, 0.0, note="skipped: over the time budget")
    assert line == "fer_bench: [148/148] test_x[a] 0.8 s (skipped: over the time budget), 1:02:05 elapsed, nothing left"


@pytest.mark.parametrize("seconds, text", [(0, "0:00"), (59.6, "1:00"), (252, "4:12"), (3725, "1:02:05")])
def test_format_clock(seconds, text):
    assert format_clock(seconds) == text


def test_format_left():
    assert format_left(None) == ""
    assert format_left(0.0) == "nothing left" and format_left(0.2) == "about 0.2 s left"
    assert format_left(42) == "about 42 s left"
    assert format_left(1500) == "about 25 min left"


def test_parse_progress():
    assert parse_progress("Every") == "every"
    with pytest.raises(argparse.ArgumentTypeError, match=r"^--fer-progress: 'loud' is not a mode; valid: auto, "):
        parse_progress("loud")


def test_terminal_gets_a_line_per_case():
    throttle = Throttle.for_mode("auto", isatty=True)
    assert all(throttle.should_print(now=float(i), last=False) for i in range(25))
    assert Throttle.for_mode("every", isatty=False).every
    assert Throttle.for_mode("off", isatty=True) is None


def test_log_gets_the_first_line_then_one_every_n_cases_or_interval_and_the_last():
    throttle = Throttle.for_mode("auto", isatty=False)
    assert not throttle.every
    printed = [i for i in range(25) if throttle.should_print(now=i * 0.1, last=False)]
    assert printed == [0, EVERY_N, 2 * EVERY_N]
    throttle = Throttle.for_mode("sparse", isatty=True)
    assert throttle.should_print(now=0.0, last=False)
    assert not throttle.should_print(now=1.0, last=False)
    assert throttle.should_print(now=1.0 + INTERVAL_S, last=False)  # a slow stretch still shows it is alive
    assert not throttle.should_print(now=2.0 + INTERVAL_S, last=False)
    assert throttle.should_print(now=3.0 + INTERVAL_S, last=True)
