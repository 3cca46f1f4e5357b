"""A stored case's contention record (``extra_info["contention"]``, written by fer_bench.measure.contention) read
back: whether the case was measured on a contended machine, and its figures in words. Torch-free: the gate,
compare and the terminal summary share it."""

from __future__ import annotations

from typing import Any


def contention_record(extra_info: dict) -> dict | None:
    """The case's contention record, or None where the run predates it or the field is not a record."""
    record = extra_info.get("contention")
    return record if isinstance(record, dict) else None


def is_contended(extra_info: dict) -> bool:
    """True when the case was measured while other work took more than the record's threshold."""
    record = contention_record(extra_info)
    return bool(record and record.get("measured", True) and record.get("contended") is True)


def _share(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def describe_contention(record: dict) -> str:
    """``other processes took 34% of the machine's CPU time, steal 0%, 3.1 tasks runnable on 2 CPUs (threshold
    10%)``; a record that was not measured gives its reason."""
    if record.get("measured") is False:
        return f"contention not measured: {record.get('why', 'no reason recorded')}"
    runnable = record.get("runnable_mean")
    crowd = (f", {runnable:g} tasks runnable on {record.get('cpus', '?')} CPUs"
             if isinstance(runnable, (int, float)) else "")
    text = (f"other processes took {_share(record.get('other_cpu_share'))} of the machine's CPU time, steal "
            f"{_share(record.get('steal_share'))}{crowd} (threshold {_share(record.get('threshold'))})")
    again = record.get("remeasure")
    if isinstance(again, dict):
        text += ("; re-measured once the machine was quiet" if again.get("done")
                 else f"; not re-measured: {again.get('why', 'no reason recorded')}")
    return text


__all__ = ["contention_record", "describe_contention", "is_contended"]
