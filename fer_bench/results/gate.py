"""`fer-bench gate`: a statistical regression gate between stored pytest-benchmark runs.

Pure functions over JSON (numpy only; never torch, never scipy). docs/gate.md explains the decision and its
measured calibration. In short, per case matched by function and params:

* the effect is the ratio of medians of the raw per-round times (current over baseline, baseline runs pooled);
* a two-sided Mann-Whitney U test (normal approximation, tie and continuity corrections) gives a p-value, corrected
  for the number of cases with Holm-Bonferroni;
* a percentile bootstrap gives a confidence interval of the ratio of medians at 1 - alpha/m (Bonferroni, so the
  intervals hold together); where a side has several runs, the interval also carries the run-to-run noise, pooled
  over cases and sides and widened for its degrees of freedom;
* a case is a *significant regression* when its corrected p-value is below alpha, its ratio is beyond the threshold
  (the minimum effect that matters) and its whole interval lies beyond no change.

Exit status: 0 no regression, 1 regression, 2 no comparable baseline, 3 bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Sequence

import numpy as np

from fer_bench.errors import FerBenchError
from fer_bench.results.runs import CaseKey, CaseResult, RunResult, format_case, load_results

METRICS = ("time", "samples_per_s", "peak_memory_bytes")
EXIT_OK, EXIT_REGRESSION, EXIT_NO_BASELINE, EXIT_BAD_INPUT = 0, 1, 2, 3
#: Fewer rounds than this on either side: no test, the threshold alone judges the case.
MIN_ROUNDS = 5
#: Memory growth below this is allocator and RSS noise, never a regression.
MIN_MEMORY_DELTA_BYTES = 1 << 20
#: Bootstrap resamples: at least this many, more for the far tails of a Bonferroni interval, at most the cap.
MIN_RESAMPLES, MAX_RESAMPLES = 2000, 20000
BOOTSTRAP_SEED = 20240601


# ----------------------------------------------------------------------------------------------- statistics


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for aa in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                   -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_quantile(q: float, df: float) -> float:
    """The q quantile (q > 0.5) of Student's t with ``df`` degrees of freedom, by bisection on its tail."""
    tail = 1.0 - q
    low, high = 0.0, 1.0
    while 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + high * high)) > tail:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + mid * mid)) > tail:
            low = mid
        else:
            high = mid
        if high - low < 1e-10 * high:
            break
    return 0.5 * (low + high)


def small_sample_factor(confidence: float, df: int) -> float:
    """t over z at the interval's two-sided confidence: how much wider an interval gets when its noise level
    is estimated from ``df`` degrees of freedom instead of known. 1 for df of 200 or more."""
    if df >= 200:
        return 1.0
    q = 1.0 - (1.0 - confidence) / 2.0
    return student_t_quantile(q, df) / NormalDist().inv_cdf(q)


def rank_average(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties sharing their average rank (as scipy.stats.rankdata's default)."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts) - 1
    bounds = np.r_[np.flatnonzero(starts), len(ordered)]
    average = (bounds[:-1] + 1 + bounds[1:]) / 2.0
    ranks = np.empty(len(values), dtype=float)
    ranks[order] = average[group]
    return ranks


def mann_whitney_u(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test by the normal approximation with tie and continuity corrections.

    Returns:
        (U of x, two-sided p-value). p is 1.0 when every value is tied.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one value")
    combined = np.concatenate([x, y])
    ranks = rank_average(combined)
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2.0)
    n = n1 + n2
    _, counts = np.unique(combined, return_counts=True)
    tie_term = float((counts.astype(float) ** 3 - counts).sum()) / (n * (n - 1)) if n > 1 else 0.0
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term)
    if variance <= 0:
        return u1, 1.0
    z = max(abs(u1 - n1 * n2 / 2.0) - 0.5, 0.0) / math.sqrt(variance)
    return u1, min(1.0, math.erfc(z / math.sqrt(2.0)))


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="mergesort")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def resolve_resamples(confidence: float) -> int:
    """Enough resamples to put about 20 of them beyond each end of the interval, within the bounds."""
    tail = (1.0 - confidence) / 2.0
    wanted = math.ceil(20.0 / tail) if tail > 0 else MAX_RESAMPLES
    return int(min(MAX_RESAMPLES, max(MIN_RESAMPLES, wanted)))


def collect_run_effects(run_medians: Sequence[float]) -> np.ndarray | None:
    """Each baseline run's log-median deviation from their mean, scaled so its variance is the unbiased one.

    None with fewer than two runs: run-to-run noise cannot be measured from one run.
    """
    logs = np.log(np.asarray(run_medians, dtype=float))
    k = len(logs)
    if k < 2 or not np.all(np.isfinite(logs)):
        return None
    return (logs - logs.mean()) * math.sqrt(k / (k - 1))


def pool_run_effects(groups: Sequence[Sequence[float]]) -> tuple[np.ndarray | None, int]:
    """The run effects of every group of run medians (one group per case and side) with two or more runs, pooled,
    and their degrees of freedom; (None, 0) when no group has two runs.

    Run-to-run noise is a property of the machine and the suite more than of one case; 3 baseline runs give a
    case only 2 degrees of freedom, so one case's own estimate is often far too small (a false alarm) or too
    large. Pooled over cases and both sides, the estimate has (runs - 1) degrees of freedom per group.
    """
    effects = [e for e in (collect_run_effects(g) for g in groups) if e is not None]
    if not effects:
        return None, 0
    return np.concatenate(effects), sum(len(e) - 1 for e in effects)


def bootstrap_ratio_ci(
    baseline: np.ndarray,
    current: np.ndarray,
    confidence: float,
    n_resamples: int,
    seed: int = BOOTSTRAP_SEED,
    run_effects: np.ndarray | None = None,
    n_current_runs: int = 1,
    n_baseline_runs: int | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of median(current) / median(baseline), each sample resampled on its own.

    Rounds inside one process understate the noise between processes (a busy machine shifts a whole run). With
    ``run_effects`` (log deviations of run medians from their mean), each resample also moves the current level
    by the mean of ``n_current_runs`` drawn effects and the baseline level by the mean of ``n_baseline_runs``
    (default: as many as there are effects): the interval then carries the run-to-run variance,
    s^2 (1/k_current + 1/k_baseline), that the rounds cannot show.

    A fixed seed per call keeps the gate's answer reproducible and independent of the order of cases.
    """
    rng = np.random.default_rng(seed)
    baseline, current = np.asarray(baseline, dtype=float), np.asarray(current, dtype=float)
    # chunks keep memory near 16 MB for a pooled baseline of thousands of rounds
    chunk = max(1, int(2_000_000 // max(len(baseline), len(current))))
    ratios = np.empty(n_resamples)
    for start in range(0, n_resamples, chunk):
        k = min(chunk, n_resamples - start)
        med_b = np.median(baseline[rng.integers(0, len(baseline), size=(k, len(baseline)))], axis=1)
        med_c = np.median(current[rng.integers(0, len(current), size=(k, len(current)))], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios[start:start + k] = med_c / med_b
    if run_effects is not None:
        n_effects = len(run_effects)
        k_base = n_baseline_runs or n_effects
        shift = (run_effects[rng.integers(0, n_effects, size=(n_resamples, n_current_runs))].mean(axis=1)
                 - run_effects[rng.integers(0, n_effects, size=(n_resamples, k_base))].mean(axis=1))
        ratios *= np.exp(shift)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return float(low), float(high)


# ----------------------------------------------------------------------------------------------- the gate


@dataclass
class GateRow:
    """The verdict on one case. Ratios are current over baseline in the metric's own terms."""

    case: str
    group: str | None
    status: str  # regression | improvement | unchanged | no baseline
    verdict: str
    baseline_value: float | None = None
    current_value: float | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_corrected: float | None = None
    n_baseline: int = 0
    n_current: int = 0
    tested: bool = False


@dataclass
class GateReport:
    """Everything the gate decided, ready to print as text or JSON."""

    exit_status: int
    metric: str
    threshold: float
    alpha: float
    current: list[str]
    baseline: list[str]
    machine: str
    rows: list[GateRow] = field(default_factory=list)
    baseline_only: list[str] = field(default_factory=list)
    confidence: float | None = None
    n_tested: int = 0
    run_noise: float | None = None
    notes: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[GateRow]:
        return [r for r in self.rows if r.status == "regression"]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["n_regressions"] = len(self.regressions)
        return out


@dataclass(frozen=True)
class _Pooled:
    case: CaseResult  # the latest entry, for names and params
    data: np.ndarray | None
    values: tuple[float, ...]  # one value per run (peak memory)
    samples_per_round: float | None
    run_medians: tuple[float, ...] = ()  # median of each run's rounds


def _pool(runs: Sequence[RunResult], metric: str) -> dict[CaseKey, _Pooled]:
    """Per case, the raw rounds of every run concatenated (and the per-run values for peak memory)."""
    grouped: dict[CaseKey, list[tuple[RunResult, CaseResult]]] = {}
    for run in runs:
        for case in run.cases:
            grouped.setdefault(case.key, []).append((run, case))
    pooled = {}
    for key, entries in grouped.items():
        latest = entries[-1][1]
        data = None
        if metric != "peak_memory_bytes":
            missing = [(r, c) for r, c in entries if c.data is None]
            if missing:
                run, case = missing[0]
                raise FerBenchError(
                    f"{run.path}: {case.name} has no raw round data (stats.data); save runs with "
                    f"--benchmark-json or --benchmark-save-data"
                )
            data = np.concatenate([c.data for _, c in entries])
        values = tuple(
            float(c.extra_info["peak_memory_bytes"])
            for _, c in entries
            if isinstance(c.extra_info.get("peak_memory_bytes"), (int, float))
        )
        per_round = None
        if metric == "samples_per_s":
            sps = latest.samples_per_s
            per_round = sps * latest.median_s if sps else None
        medians = tuple(float(np.median(c.data)) for _, c in entries if c.data is not None and len(c.data))
        pooled[key] = _Pooled(latest, data, values, per_round, medians)
    return pooled


def _check_machines(baseline: Sequence[RunResult], current: Sequence[RunResult],
                    allow_other: bool) -> tuple[Sequence[RunResult], list[str]]:
    """The baseline runs to use and the messages about the others.

    Raises:
        _NoBaseline: no baseline run comes from the current machine (and no --allow-other-machine).
    """
    hashes = {r.machine.identity_hash for r in current}
    if len(hashes) > 1:
        slugs = sorted({r.machine.slug for r in current})
        raise FerBenchError(f"the current results come from {len(hashes)} machines ({', '.join(slugs)}); gate one")
    mine = current[0].machine
    others = [r for r in baseline if r.machine.identity_hash != mine.identity_hash]
    if not others:
        return baseline, []
    lines = [
        f"{r.path}: measured on {r.machine.slug} ({r.machine.identity_hash}), the current run on "
        f"{mine.slug} ({mine.identity_hash})"
        for r in others
    ]
    if allow_other:
        return baseline, [f"warning: {line} (--allow-other-machine)" for line in lines]
    if len(others) < len(baseline):
        # a results folder holds every machine's runs: keep this machine's, say which were left out
        kept = [r for r in baseline if r.machine.identity_hash == mine.identity_hash]
        return kept, [f"note: {len(others)} baseline run(s) from other machines left out (first: {lines[0]})"]
    raise _NoBaseline(lines[0] + "; pass --allow-other-machine to compare across machines")


class _NoBaseline(Exception):
    """No comparable baseline: exit status 2."""


def _speed_words(ratio: float, metric: str) -> str:
    """'1.18x slower' / '1.07x faster' / '1.20x more memory' from a current/baseline ratio."""
    if metric == "peak_memory_bytes":
        return f"{ratio:.2f}x more memory" if ratio >= 1 else f"{1 / ratio:.2f}x less memory"
    slowdown = ratio if metric == "time" else 1.0 / ratio
    if slowdown >= 1:
        return f"{slowdown:.2f}x slower"
    return f"{1 / slowdown:.2f}x faster"


def _beyond(ratio: float, threshold: float, metric: str) -> tuple[bool, bool]:
    """(worse beyond the threshold, better beyond the threshold) in the metric's own sense."""
    if metric == "samples_per_s":
        return ratio < 1.0 - threshold, ratio > 1.0 + threshold
    return ratio > 1.0 + threshold, ratio < 1.0 - threshold


def _compare_memory(key: CaseKey, base: _Pooled, cur: _Pooled, threshold: float) -> GateRow:
    row = GateRow(case=format_case(key), group=cur.case.group, status="unchanged", verdict="")
    if not base.values or not cur.values:
        row.verdict = "no peak_memory_bytes recorded: not judged"
        return row
    b, c = float(np.median(base.values)), float(np.median(cur.values))
    row.baseline_value, row.current_value = b, c
    row.n_baseline, row.n_current = len(base.values), len(cur.values)
    row.ratio = c / b if b > 0 else (1.0 if c == 0 else math.inf)
    worse, better = _beyond(row.ratio, threshold, "peak_memory_bytes")
    words = _speed_words(row.ratio, "peak_memory_bytes") if math.isfinite(row.ratio) else f"{c:.0f} bytes from 0"
    note = "one value per run: threshold only, no significance test"
    if worse and c - b >= MIN_MEMORY_DELTA_BYTES:
        row.status, row.verdict = "regression", f"{words}, above the {threshold:.0%} threshold ({note})"
    elif better and b - c >= MIN_MEMORY_DELTA_BYTES:
        row.status, row.verdict = "improvement", f"{words}, improvement ({note})"
    else:
        row.verdict = f"{words}, within the {threshold:.0%} threshold or under 1 MiB ({note})"
    return row


def _compare_rounds(key: CaseKey, base: _Pooled, cur: _Pooled, metric: str) -> GateRow:
    """Effect and p-value of one case; the verdict comes once every case has its p-value."""
    b_t, c_t = float(np.median(base.data)), float(np.median(cur.data))
    row = GateRow(case=format_case(key), group=cur.case.group, status="unchanged", verdict="")
    row.n_baseline, row.n_current = len(base.data), len(cur.data)
    time_ratio = c_t / b_t if b_t > 0 else math.inf
    if metric == "time":
        row.baseline_value, row.current_value, row.ratio = b_t, c_t, time_ratio
    else:
        per_round = cur.samples_per_round or base.samples_per_round
        if per_round is None:
            raise FerBenchError(
                f"{cur.case.name}: no samples_per_s or batch_size to derive throughput; use --metric time"
            )
        row.baseline_value = per_round / b_t if b_t > 0 else math.inf
        row.current_value = per_round / c_t if c_t > 0 else math.inf
        row.ratio = 1.0 / time_ratio if time_ratio > 0 else math.inf
    row.tested = min(row.n_baseline, row.n_current) >= MIN_ROUNDS
    if row.tested:
        row.p_value = mann_whitney_u(base.data, cur.data)[1]
    return row


def _decide(row: GateRow, base: _Pooled, cur: _Pooled, metric: str, threshold: float, alpha: float,
            confidence: float, n_resamples: int, effects: np.ndarray | None = None) -> None:
    worse, better = _beyond(row.ratio, threshold, metric)
    words = _speed_words(row.ratio, metric)
    if not row.tested:
        n = min(row.n_baseline, row.n_current)
        note = f"too few rounds ({n} < {MIN_ROUNDS}) for a test: judged by the {threshold:.0%} threshold only"
        if worse:
            row.status, row.verdict = "regression", f"{words}, above the threshold ({note})"
        elif better:
            row.status, row.verdict = "improvement", f"{words}, improvement ({note})"
        else:
            row.verdict = f"{words}, within the threshold ({note})"
        return
    k_base, k_cur = max(1, len(base.run_medians)), max(1, len(cur.run_medians))
    low, high = bootstrap_ratio_ci(base.data, cur.data, confidence, n_resamples, run_effects=effects,
                                   n_current_runs=k_cur, n_baseline_runs=k_base)
    if metric == "samples_per_s":  # the interval of the throughput ratio is the inverse of the time ratio's
        low, high = (1.0 / high if high > 0 else math.inf), (1.0 / low if low > 0 else math.inf)
    row.ci_low, row.ci_high = low, high
    significant = row.p_corrected is not None and row.p_corrected < alpha
    slower_ci = high < 1.0 if metric == "samples_per_s" else low > 1.0
    faster_ci = low > 1.0 if metric == "samples_per_s" else high < 1.0
    if significant and worse and slower_ci:
        row.status, row.verdict = "regression", f"{words}, significant"
    elif significant and better and faster_ci:
        row.status, row.verdict = "improvement", f"{words}, significant improvement"
    elif significant and (slower_ci or faster_ci):
        row.verdict = f"{words}, significant but within the {threshold:.0%} threshold"
    elif significant:
        # the rounds differ, but the interval of the ratio still holds 1
        why = ("within the run-to-run noise" if effects is not None else "the interval includes no change")
        row.verdict = f"{words}, not significant ({why})"
    else:
        row.verdict = f"{words}, not significant"


def evaluate_gate(
    baseline: Sequence[RunResult],
    current: Sequence[RunResult],
    *,
    metric: str = "time",
    threshold: float = 0.05,
    alpha: float = 0.01,
    allow_other_machine: bool = False,
    allow_missing: bool = False,
) -> GateReport:
    """Gate the current runs against the pooled baseline runs.

    Raises:
        FerBenchError: bad input (exit status 3): no round data, no common case, several current machines.
    """
    if metric not in METRICS:
        raise FerBenchError(f"--metric {metric!r}: choose one of {', '.join(METRICS)}")
    current_runs = [r for r in current if r.cases]
    if not current_runs:
        raise FerBenchError("the current results hold no benchmark")
    report = GateReport(
        exit_status=EXIT_OK, metric=metric, threshold=threshold, alpha=alpha,
        current=[str(r.path) for r in current], baseline=[str(r.path) for r in baseline],
        machine=f"{current_runs[0].machine.slug} ({current_runs[0].machine.identity_hash})",
    )
    try:
        baseline, messages = _check_machines(baseline, current_runs, allow_other_machine)
        report.messages.extend(messages)
        report.baseline = [str(r.path) for r in baseline]
    except _NoBaseline as exc:
        report.exit_status = EXIT_NO_BASELINE
        report.messages.append(f"no comparable baseline: {exc}")
        return report
    cur_pool, base_pool = _pool(current_runs, metric), _pool([r for r in baseline if r.cases], metric)
    common = [k for k in cur_pool if k in base_pool]
    missing = [k for k in cur_pool if k not in base_pool]
    report.baseline_only = [format_case(k) for k in base_pool if k not in cur_pool]
    if not common:
        raise FerBenchError("the current run and the baseline share no case (matched by function and params)")
    rows: dict[CaseKey, GateRow] = {}
    if metric == "peak_memory_bytes":
        for key in common:
            rows[key] = _compare_memory(key, base_pool[key], cur_pool[key], threshold)
    else:
        for key in common:
            rows[key] = _compare_rounds(key, base_pool[key], cur_pool[key], metric)
        tested = [k for k in common if rows[k].tested]
        report.n_tested = len(tested)
        for key, p in zip(tested, holm_adjust([rows[k].p_value for k in tested])):
            rows[key].p_corrected = float(p)
        # Bonferroni-level intervals: all m of them hold together at 1 - alpha
        confidence = 1.0 - alpha / max(1, len(tested))
        report.confidence = confidence
        n_resamples = resolve_resamples(confidence)
        effects, df = pool_run_effects([base_pool[k].run_medians for k in tested]
                                       + [cur_pool[k].run_medians for k in tested])
        widened = None
        if effects is not None:
            # The pooled effects estimate the noise level from a few runs, so the estimate is itself uncertain:
            # widen them as a t interval would, with the pooled degrees of freedom (runs - 1 per case and side).
            widened = effects * small_sample_factor(confidence, df)
        for key in common:
            _decide(rows[key], base_pool[key], cur_pool[key], metric, threshold, alpha, confidence, n_resamples,
                    widened)
        if tested and effects is None:
            report.notes.append(
                "one baseline run and one current run: run-to-run noise is not measured, only the noise between "
                "rounds; pool several runs (pass folders) so the interval includes it"
            )
        elif tested:
            report.run_noise = float(np.sqrt(np.mean(effects ** 2)))
            report.notes.append(
                f"run-to-run noise: {report.run_noise:.1%} (sd of log run medians, pooled over {len(effects)} case "
                f"runs of {len(tested)} case(s), {df} degrees of freedom)"
            )
    for key in missing:
        skipped = "skipped (--allow-missing)" if allow_missing else "fails closed"
        rows[key] = GateRow(case=format_case(key), group=cur_pool[key].case.group, status="no baseline",
                            verdict=f"no baseline: {skipped}")
    report.rows = [rows[k] for k in cur_pool]
    if missing and not allow_missing:
        report.exit_status = EXIT_NO_BASELINE
        report.messages.append(
            f"no comparable baseline: {len(missing)} case(s) of the current run are not in the baseline "
            f"(first: {format_case(missing[0])}); pass --allow-missing to skip them"
        )
    elif report.regressions:
        report.exit_status = EXIT_REGRESSION
    return report


# ----------------------------------------------------------------------------------------------- output


def _format_value(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "inf"
    if metric == "time":
        ms = value * 1e3
        return f"{ms:.4g} ms"
    if metric == "samples_per_s":
        return f"{value:.4g}/s"
    return f"{value / 2**20:.4g} MiB"


def format_text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned plain-text columns, two spaces apart."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
    return "\n".join(lines)


def format_gate_text(report: GateReport) -> str:
    """The report as a plain-text table with a summary line."""
    n_base = len(report.baseline)
    head = (
        f"fer-bench gate: {', '.join(report.current)} vs {n_base} baseline run{'s' * (n_base != 1)} on "
        f"{report.machine}; metric {report.metric}, threshold {report.threshold:.1%}, alpha {report.alpha:g}"
    )
    if report.metric != "peak_memory_bytes":
        head += f" (Holm over {report.n_tested} tested case{'s' * (report.n_tested != 1)})"
    lines = [head]
    if report.rows:
        ci_head = f"{report.confidence:.2%} CI" if report.confidence is not None else "CI"
        table = []
        for r in report.rows:
            ci = f"[{r.ci_low:.3f}, {r.ci_high:.3f}]" if r.ci_low is not None else "-"
            p = f"{r.p_corrected:.2g}" if r.p_corrected is not None else "-"
            ratio = f"{r.ratio:.3f}" if r.ratio is not None else "-"
            table.append([r.case, _format_value(r.baseline_value, report.metric),
                          _format_value(r.current_value, report.metric), ratio, ci, p, r.verdict])
        lines.append(format_text_table(["case", "baseline", "current", "ratio", ci_head, "p (Holm)", "verdict"],
                                       table))
    lines.extend(f"note: {n}" for n in report.notes)
    if report.baseline_only:
        lines.append(f"{len(report.baseline_only)} baseline case(s) not in the current run: "
                     + ", ".join(report.baseline_only[:5]) + (" ..." if len(report.baseline_only) > 5 else ""))
    n_reg = len(report.regressions)
    outcome = {EXIT_OK: "no regression", EXIT_REGRESSION: f"{n_reg} regression{'s' * (n_reg != 1)}",
               EXIT_NO_BASELINE: "no comparable baseline"}[report.exit_status]
    lines.append(f"result: {outcome} in {len(report.rows)} case(s) -> exit {report.exit_status}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- CLI


def parse_threshold(text: str) -> float:
    """'5%' or '0.05' -> 0.05."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage (5%) or a fraction (0.05)") from None
    if not raw.endswith("%") and value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: write a percentage (5%) or a fraction below 1 (0.05)")
    if not (0 <= value < 10) or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0% and 1000%")
    return value


def parse_alpha(text: str) -> float:
    """A significance level strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1 (e.g. 0.01)")
    return value


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `fer-bench gate`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Gate the current run (the last argument) against pooled baseline runs: per case, the ratio of medians,\n"
        "a Mann-Whitney U test (Holm-corrected) and a bootstrap interval that carries run-to-run noise when the\n"
        "baseline has several runs. How it decides and its measured calibration: docs/gate.md."
    )
    parser.epilog = ("exit status: 0 no regression, 1 regression, 2 no comparable baseline (other machine or "
                     "missing case),\n3 bad input (one line on stderr)")
    parser.add_argument("runs", nargs="+", metavar="RUN_OR_DIR",
                        help="baseline runs (files or folders, pooled) then, last, the current run")
    parser.add_argument("--threshold", type=parse_threshold, default=0.05,
                        help="smallest change that counts, as 5%% or 0.05. Default: 5%%")
    parser.add_argument("--alpha", type=parse_alpha, default=0.01,
                        help="significance level after Holm's correction over cases. Default: %(default)r")
    parser.add_argument("--metric", choices=METRICS, default="time", help="Default: %(default)r")
    parser.add_argument("--allow-other-machine", action="store_true",
                        help="gate against a baseline measured on other hardware (a different identity hash)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="skip current cases that the baseline lacks instead of failing (exit 2)")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="Default: %(default)r")


def cmd_gate(args: argparse.Namespace) -> int:
    """Run the gate; the exit status is the verdict. Bad input prints one line and returns 3."""
    try:
        if len(args.runs) < 2:
            raise FerBenchError("give at least one baseline and the current run (the last argument)")
        current = load_results(args.runs[-1:])
        baseline = load_results(args.runs[:-1], exclude=[r.path for r in current])
        report = evaluate_gate(
            baseline, current, metric=args.metric, threshold=args.threshold, alpha=args.alpha,
            allow_other_machine=args.allow_other_machine, allow_missing=args.allow_missing,
        )
    except FerBenchError as exc:
        print(f"fer-bench gate: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.format == "json":
        print(json.dumps(_finite(report.to_dict()), indent=2, allow_nan=False))
    elif report.rows:
        print(format_gate_text(report))
    for message in report.messages:
        print(f"fer-bench gate: {message}", file=sys.stderr)
    return report.exit_status


def _finite(obj):
    """Strict JSON: an infinite or undefined ratio becomes null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
