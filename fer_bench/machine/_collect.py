"""What every collector of fer_bench.machine shares: a file's text or None, a call's value or None, the time, and
strict JSON."""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Any, Callable

GIB = 2**30


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError):
        return None


def try_call(fn: Callable[[], Any]) -> Any:
    """``fn()``, or None when it raises: one missing fact must not cost the others."""
    try:
        return fn()
    except Exception:
        return None


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def sanitize(obj: Any) -> Any:
    """Make ``obj`` strict JSON: str keys, lists for tuples, no NaN, no newline inside a string."""
    if isinstance(obj, dict):
        return {str(k): sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [sanitize(v) for v in obj]
    if isinstance(obj, bytes):
        obj = obj.decode("utf-8", errors="replace")
    if isinstance(obj, str):
        return " ".join(obj.split()) if ("\n" in obj or "\r" in obj) else obj
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    return str(obj)
