"""The wording and tables compare, gate and the CLI share."""

from __future__ import annotations

import math

import pytest

from fer_bench.results.format import (
    describe_ratio,
    describe_speedup,
    format_markdown_table,
    format_number,
    format_text_table,
    geomean,
    is_number,
)


def test_speedup_and_ratio_wording():
    assert describe_speedup(12.44) == "12.4x faster"
    assert describe_speedup(1 / 1.3) == "1.30x slower"
    assert describe_speedup(1.001) == "same speed"
    assert describe_speedup(math.nan) == describe_speedup(None) == describe_speedup(0) == "-"
    # a current/baseline ratio in each metric's sense
    assert describe_ratio(1.18, "time") == "1.18x slower"
    assert describe_ratio(1.18, "samples_per_s") == "1.18x faster"
    assert describe_ratio(1.2, "peak_memory_bytes") == "1.20x more memory"
    assert describe_ratio(0.5, "peak_memory_bytes") == "2.0x less memory"
    assert describe_ratio(1.001, "peak_memory_bytes") == "same memory"


@pytest.mark.parametrize("value, text", [(1234.5, "1,234"), (123.4, "123"), (12.34, "12.3"), (1.234, "1.23"),
                                         (0.01234, "0.0123"), (math.inf, "-"), (None, "-")])
def test_format_number(value, text):
    assert format_number(value) == text


def test_numbers_and_geomean():
    assert is_number(1) and is_number(2.5) and not is_number(True) and not is_number(math.nan)
    assert not is_number("3")
    assert geomean([1, 4, None, -1, math.nan]) == pytest.approx(2.0)
    assert math.isnan(geomean([]))


def test_tables():
    assert format_markdown_table(["a|b", "n"], [["x|y", None], [1, math.nan]]).splitlines() == [
        "| a\\|b | n |", "| --- | --- |", "| x\\|y |  |", "| 1 |  |"]
    assert format_text_table(["name", "n"], [["ab", "1"], ["c", "123"]], right=[1]).splitlines() == [
        "name    n", "----  ---", "ab      1", "c     123"]
