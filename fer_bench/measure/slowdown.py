"""FER_BENCH_INJECT_SLOWDOWN, the gate calibration's known slowdown: its name and its parser. Torch-free, so
`fer-bench ab` validates --inject-slowdown with the same rule the runs apply (fer_bench.measure.timing does the
injecting)."""

from __future__ import annotations

import math
import os
from typing import Any

from fer_bench.errors import FerBenchError

#: The calibration knob: a known slowdown injected into every timed call (fer_bench.measure.timing).
INJECT_ENV = "FER_BENCH_INJECT_SLOWDOWN"
#: Injected slowdowns stop below this (10 = eleven times slower): a larger one is a typo, not a calibration.
MAX_INJECTED_SLOWDOWN = 10.0


def parse_slowdown(text: str) -> float:
    """'0.10' or '10%' -> 0.1; '' -> 0. A fraction of each call's own duration, in [0, MAX_INJECTED_SLOWDOWN).

    Raises:
        FerBenchError: naming FER_BENCH_INJECT_SLOWDOWN and the value, for anything else.
    """
    raw = text.strip()
    if not raw:
        return 0.0
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        value = math.nan
    if not (0.0 <= value < MAX_INJECTED_SLOWDOWN):  # also NaN and inf
        raise FerBenchError(f"{INJECT_ENV}={text!r}: give a fraction from 0 to below {MAX_INJECTED_SLOWDOWN:g} "
                            f"(0.10) or a percentage (10%)")
    return value


def resolve_injected_slowdown(environ: Any = None) -> float:
    """The slowdown FER_BENCH_INJECT_SLOWDOWN asks for (0.0 when unset or empty)."""
    return parse_slowdown((os.environ if environ is None else environ).get(INJECT_ENV, ""))
