"""The gate on instruction counts (``--metric instructions``): what --fer-instructions recorded per case.

A run records, per counted case, the denoised instructions of one call in each of a few repeats made in one
Valgrind process (``instructions_repeats``; ``instructions_per_call`` is their median). The count is nearly
deterministic: two processes of the same code agreed repeat by repeat to within 0.01% in the calibration
(docs/calibration.md), where wall time on the same runner moves by 10-20%. Within a process a training step's
repeats drift by about 0.1% a step, the same drift in every process (the weights change with every step, and the
count follows the values a little where a kernel branches on them; a forward pass, which changes nothing, spreads
by 0.01%). So the decision is a plain interval on the log ratio, wide enough for the noise this metric has:

* per run, its value is the median of its repeats; per side, the mean of its runs' logs; the ratio is current over
  baseline (more instructions: a regression);
* the noise is the largest of: the sd of the runs' values about their side's mean (where a side has two runs or
  more), the sd of the repeats about their run's value, and RUN_NOISE_FLOOR, a margin ten times the difference
  between processes of the same code measured in the calibration, which one run a side cannot show;
* the interval is the ratio times exp(+-q se), se = sd sqrt(1/runs_baseline + 1/runs_current), q the normal
  quantile at 1 - alpha/m over the m judged cases (Bonferroni: the intervals hold together), or Student's t with
  the runs' degrees of freedom where that sd decides;
* a regression is a ratio above 1 + threshold whose whole interval lies above 1; an improvement likewise below;
  the MDE is exp(q se) - 1, and a case that is neither and whose MDE exceeds the threshold is inconclusive.

Paired runs (``fer-bench ab``) are pooled the same way: a count does not drift with the runner, so pairing buys
nothing. Torch-free, like the rest of the gate.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
from scipy import stats as st

from fer_bench.results.gate.text import format_fraction
from fer_bench.results.gate.verdict import GateRow

METRIC = "instructions"
#: The default threshold of the instruction gate: a change of 1% more work in a case counts (wall time: 5%).
DEFAULT_THRESHOLD = 0.01
#: The noise (sd of the log count) the gate assumes at least: ten times the difference between Valgrind processes
#: of the same code in the calibration (under 0.01% on the 2-core EPYC VM, docs/calibration.md), a margin for the
#: states of a machine it did not see; about the drift between a training step's repeats.
RUN_NOISE_FLOOR = 0.001


def instruction_repeats(extra_info: dict) -> tuple[float, ...]:
    """A case's per-repeat counts (``instructions_repeats``, else its ``instructions_per_call``), positive finite
    numbers only; empty when it recorded none."""
    values = extra_info.get("instructions_repeats")
    if not isinstance(values, (list, tuple)):
        values = [extra_info.get("instructions_per_call")]
    return tuple(float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
                 and math.isfinite(v) and v > 0)


def _pooled_sd(groups: Iterable[np.ndarray]) -> tuple[float, int]:
    """The sd of values about their own group's mean, pooled over the groups, and its degrees of freedom."""
    ss, df = 0.0, 0
    for g in groups:
        if len(g) > 1:
            ss += float(np.sum((g - g.mean()) ** 2))
            df += len(g) - 1
    return (math.sqrt(ss / df), df) if df else (0.0, 0)


def describe_instructions(ratio: float) -> str:
    """'+2.04% instructions', '-0.31% instructions', 'same instructions'."""
    change = ratio - 1.0
    return "same instructions" if abs(change) < 5e-5 else f"{change:+.2%} instructions"


def judge_instructions(row: GateRow, baseline: Sequence[Sequence[float]], current: Sequence[Sequence[float]], *,
                       threshold: float, alpha: float, n_judged: int,
                       noise_floor: float = RUN_NOISE_FLOOR) -> GateRow:
    """Fill ``row`` (a case) from each side's runs, each run its repeats' counts."""
    base = [np.log(np.asarray(r, dtype=float)) for r in baseline if len(r)]
    cur = [np.log(np.asarray(r, dtype=float)) for r in current if len(r)]
    row.n_baseline, row.n_current = sum(map(len, base)), sum(map(len, cur))
    if not base or not cur:
        side = "either side" if not base and not cur else "the baseline" if not base else "the current run"
        row.verdict = f"no instruction count in {side} (--fer-instructions counts CPU step cases): not judged"
        return row
    b_runs = np.array([np.median(r) for r in base])
    c_runs = np.array([np.median(r) for r in cur])
    row.baseline_value, row.current_value = float(np.exp(b_runs.mean())), float(np.exp(c_runs.mean()))
    diff = float(c_runs.mean() - b_runs.mean())
    row.ratio = math.exp(diff)
    between, between_df = _pooled_sd([b_runs, c_runs])
    within, within_df = _pooled_sd(base + cur)
    sd, df = max((between, between_df), (within, within_df), (noise_floor, 0), key=lambda t: t[0])
    se = sd * math.sqrt(1.0 / len(b_runs) + 1.0 / len(c_runs))
    tail = alpha / (2 * max(1, n_judged))
    q = float(st.t.ppf(1 - tail, df)) if df else float(st.norm.ppf(1 - tail))
    row.ci_low, row.ci_high = math.exp(diff - q * se), math.exp(diff + q * se)
    row.mde = math.expm1(q * se)
    row.tested = True
    if se > 0:
        z = abs(diff) / se
        row.p_value = float(2 * (st.t.sf(z, df) if df else st.norm.sf(z)))
    words = describe_instructions(row.ratio)
    noise = f"noise sd {format_fraction(sd)}" + (" (the floor)" if sd == noise_floor else "")
    if row.ratio > 1 + threshold and row.ci_low > 1:
        row.status, row.verdict = "regression", f"{words}, above the {format_fraction(threshold)} threshold ({noise})"
    elif row.ratio < 1 - threshold and row.ci_high < 1:
        row.status, row.verdict = "improvement", f"{words}, improvement ({noise})"
    elif row.mde > threshold:
        row.status = "inconclusive"
        # se shrinks like sqrt(2/n) with n runs a side
        row.runs_to_resolve = math.ceil(2 * (q * sd / math.log1p(threshold)) ** 2)
        row.verdict = f"{words}, inconclusive: a noise sd of {format_fraction(sd)} hides changes below " \
                      f"{format_fraction(row.mde)}"
    else:
        row.verdict = f"{words}, within the {format_fraction(threshold)} threshold ({noise})"
    return row
