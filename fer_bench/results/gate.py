"""`fer-bench gate`: a statistical regression gate between stored pytest-benchmark runs.

Pure functions over JSON (numpy and scipy.stats; never torch). docs/gate.md explains the decision and its
measured calibration. In short, per case matched by function and params:

* the effect is the ratio of medians of the raw per-round times (current over baseline, each side's runs pooled);
* a two-sided Mann-Whitney U test (scipy.stats.mannwhitneyu: normal approximation, tie and continuity
  corrections) gives a p-value, corrected for the number of cases with Holm-Bonferroni;
* a percentile bootstrap gives a confidence interval of the ratio of medians at 1 - alpha/m (Bonferroni, so the
  intervals hold together); where a side has several runs, the interval also carries the run-to-run noise, pooled
  over cases and sides and widened for its degrees of freedom;
* a case is a *significant regression* when its corrected p-value is below alpha, its ratio is beyond the threshold
  (the minimum effect that matters) and its whole interval lies beyond no change;
* every tested case gets its *minimum detectable effect* (MDE): the smallest change its interval could have put
  wholly beyond no change, exp(w) - 1 with w the half-width of the interval of the log ratio (infinite where the
  rank test cannot reach alpha/m at all). A case that is not a regression (nor a significant improvement) and
  whose MDE exceeds the threshold is *inconclusive*: this machine's noise hides changes of the threshold's size.

**Paired** (``--paired``, what ``fer-bench ab`` runs): baseline run i and current run i were made one after the
other in the same job (A B B A ...), so the runner's drift over minutes touches both alike. Per case the effect is
the geometric mean of the per-pair ratios of medians; a one-sample t test on the log ratios (scipy.stats.ttest_1samp)
gives the p-value (Holm over cases) and a t interval at 1 - alpha/m gives the interval and the MDE. Drift between
pairs cancels; only the noise within a pair is left.

**Suite scope** (``--scope suite``, paired only; ``fer-bench ab``'s default): one pre-declared test of the whole
suite. Per pair, the suite's log ratio is the mean over the tested cases of their log ratios (a geometric mean of
ratios); the t test and t interval at 1 - alpha over the pairs decide the job. A process's own offset (its memory
layout, where its threads landed) moves its cases independently, a few percent each, so the mean over cases is
several times steadier than any one case, and a change that touches the suite shows at a noise where no single
case resolves the threshold. The case rows follow as a second step of a fixed-sequence (hierarchical) procedure:
only when the suite is a significant regression are the cases' Holm-corrected verdicts gated too (naming which
cases moved); otherwise they are shown, not gated, and the exit status is the suite row's.

Exit status: 0 no regression, 1 regression, 2 no comparable baseline, 3 bad input, 4 inconclusive (no regression,
but a tested case's noise hides changes of the threshold's size; 0 with --allow-inconclusive). 2 wins over 1, and
1 over 4.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
from scipy import stats

from fer_bench.errors import FerBenchError
from fer_bench.machine.identity import stack_change_notes
from fer_bench.results.runs import CaseKey, CaseResult, RunResult, format_case, load_results
from fer_bench.results.format import describe_ratio, format_text_table
from fer_bench.workload import workload_differences

METRICS = ("time", "samples_per_s", "peak_memory_bytes", "samples_per_joule")
#: Metrics recorded once per run (not per round): judged by the threshold on the runs' median, no test.
RUN_VALUE_METRICS = ("peak_memory_bytes", "samples_per_joule")
#: Metrics that are better higher.
HIGHER_BETTER = ("samples_per_s", "samples_per_joule")
EXIT_OK, EXIT_REGRESSION, EXIT_NO_BASELINE, EXIT_BAD_INPUT, EXIT_INCONCLUSIVE = 0, 1, 2, 3, 4
#: Fewer rounds than this on either side, pooled over the side's runs: no test, the threshold alone judges the case.
MIN_ROUNDS = 5
#: Memory growth below this is allocator and RSS noise, never a regression.
MIN_MEMORY_DELTA_BYTES = 1 << 20
#: Bootstrap resamples: about 20 beyond each end of the interval, at least MIN, at most MAX (20 per end up to
#: 1 - confidence = 4e-5, e.g. 250 tested cases at alpha 0.01).
MIN_RESAMPLES, MAX_RESAMPLES = 2000, 1_000_000
#: Resamples drawn at once: keeps the bootstrap's memory near 20 MB whatever the count.
RESAMPLE_CHUNK = 250_000
BOOTSTRAP_SEED = 20240601
SCOPES = ("cases", "suite")
#: The runs-a-side estimate stops here ("over 1000 runs a side": no practical number resolves the threshold).
MAX_RUNS_ESTIMATE = 1000


# ----------------------------------------------------------------------------------------------- statistics


def small_sample_factor(confidence: float, df: int) -> float:
    """t over z at the interval's two-sided confidence: how much wider an interval gets when its noise level
    is estimated from ``df`` degrees of freedom instead of known. 1 for df of 200 or more."""
    if df >= 200:
        return 1.0
    q = 1.0 - (1.0 - confidence) / 2.0
    return float(stats.t.ppf(q, df) / stats.norm.ppf(q))


def mann_whitney_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p-value of the Mann-Whitney U test, from ``scipy.stats.mannwhitneyu`` by the normal approximation
    with tie and continuity corrections (``method="asymptotic"``, as the gate used before scipy: the exact method
    would change with the number of rounds and ties). 1.0 when every value is tied."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) == 0 or len(y) == 0:
        raise ValueError("both samples need at least one value")
    p = stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic", use_continuity=True).pvalue
    return float(min(1.0, p)) if math.isfinite(p) else 1.0


def rank_test_floor(n1: int, n2: int) -> float:
    """The smallest two-sided p-value :func:`mann_whitney_p` can give for ``n1`` and ``n2`` distinct values: that of
    complete separation (U = 0). With 5 and 5 rounds it is 0.012, so such a case can never be significant at
    alpha 0.01, whatever the change."""
    mean, sd = n1 * n2 / 2.0, math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12.0)
    return min(1.0, math.erfc((mean - 0.5) / sd / math.sqrt(2.0))) if sd > 0 else 1.0


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1). scipy.stats has no Holm
    (``false_discovery_control`` is Benjamini-Hochberg/Yekutieli, another error rate), hence this."""
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
    """Enough resamples to put about 20 of them beyond each end of the interval, 40 / (1 - confidence), within
    [MIN_RESAMPLES, MAX_RESAMPLES]: 260,000 for 65 tested cases at alpha 0.01."""
    tail = (1.0 - confidence) / 2.0
    wanted = math.ceil(20.0 / tail) if tail > 0 else MAX_RESAMPLES
    return int(min(MAX_RESAMPLES, max(MIN_RESAMPLES, wanted)))


def collect_run_effects(run_medians: Sequence[float]) -> np.ndarray | None:
    """Each baseline run's log-median deviation from their mean, scaled so its variance is the unbiased one.

    None with fewer than two runs: run-to-run noise cannot be measured from one run.
    """
    with np.errstate(divide="ignore"):
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


def resample_medians(ordered: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """``size`` draws of the median of a bootstrap resample (n draws with replacement) of the sorted sample
    ``ordered``, without drawing the n values.

    The j-th smallest of n draws from positions 1..n is ceil(n U_(j)), U_(j) the j-th smallest of n uniforms,
    and U_(j) ~ Beta(j, n - j + 1); given it, U_(j+1) = U_(j) + (1 - U_(j)) Beta(1, n - j). So the resampled
    median (the middle order statistic, or the mean of the two middle ones as numpy's median for an even n) has
    exactly the distribution of ``np.median(ordered[rng.integers(0, n, n)])``, at 2 draws instead of n.
    """
    n = len(ordered)
    h = (n + 1) // 2
    u1 = rng.beta(h, n - h + 1, size=size)
    first = ordered[np.clip(np.ceil(n * u1).astype(np.int64), 1, n) - 1]
    if n % 2:
        return first
    u2 = u1 + (1.0 - u1) * -np.expm1(np.log(rng.random(size)) / (n - h))  # Beta(1, n - h) by inversion
    return 0.5 * (first + ordered[np.clip(np.ceil(n * u2).astype(np.int64), 1, n) - 1])


def _tail_quantiles(values: np.ndarray, tail: float) -> tuple[float, float]:
    """The tail and 1 - tail quantiles; next to an infinite value (a zero median) the nearest value, not NaN."""
    with np.errstate(invalid="ignore"):
        low, high = np.quantile(values, [tail, 1.0 - tail])
    if math.isnan(low):
        low = np.quantile(values, tail, method="lower")
    if math.isnan(high):
        high = np.quantile(values, 1.0 - tail, method="higher")
    return float(low), float(high)


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
    s^2 (1/k_current + 1/k_baseline), that the rounds cannot show. A zero median over a zero median is a ratio of 1.

    The resampled medians come from :func:`resample_medians` (the same distribution as resampling every round, at
    2 random draws instead of n). This stays by hand rather than ``scipy.stats.bootstrap``: that resamples the
    rounds one by one (0.47 s for one case of 50 and 30 rounds at 260,000 resamples, the count 65 cases need;
    this takes 0.03 s, measured on the 2-core VM), and it has no place for the run-effect shift, which is not a
    statistic of the resampled rounds.

    A fixed seed per call keeps the gate's answer reproducible and independent of the order of cases.
    """
    rng = np.random.default_rng(seed)
    baseline = np.sort(np.asarray(baseline, dtype=float))
    current = np.sort(np.asarray(current, dtype=float))
    ratios = np.empty(n_resamples)
    n_effects = 0 if run_effects is None else len(run_effects)
    k_base = n_baseline_runs or n_effects
    for start in range(0, n_resamples, RESAMPLE_CHUNK):
        k = min(RESAMPLE_CHUNK, n_resamples - start)
        med_b = resample_medians(baseline, rng, k)
        med_c = resample_medians(current, rng, k)
        with np.errstate(divide="ignore", invalid="ignore"):
            chunk = np.where((med_b == 0) & (med_c == 0), 1.0, med_c / med_b)
        if run_effects is not None:
            shift = (run_effects[rng.integers(0, n_effects, size=(k, n_current_runs))].mean(axis=1)
                     - run_effects[rng.integers(0, n_effects, size=(k, k_base))].mean(axis=1))
            chunk *= np.exp(shift)
        ratios[start:start + k] = chunk
    return _tail_quantiles(ratios, (1.0 - confidence) / 2.0)


def _log_half_width(low: float, high: float) -> float:
    """Half the width of the interval [low, high] of a time ratio on the log scale; 0 for a point (also an
    infinite one, from a zero baseline median), infinite when an end is 0 or infinite."""
    if low == high:
        return 0.0
    if low > 0 and math.isfinite(high):
        return (math.log(high) - math.log(low)) / 2.0
    return math.inf


def _log_threshold(threshold: float, metric: str) -> float:
    """The threshold as a change of the log time ratio: ln(1 + t) for a slowdown, -ln(1 - t) for a throughput
    drop (infinite for a drop of 100% or more)."""
    if metric == "samples_per_s":
        return -math.log1p(-threshold) if threshold < 1 else math.inf
    return math.log1p(threshold)


def minimum_detectable_effect(low: float, high: float, metric: str) -> float:
    """The smallest change, in the metric's own terms, that an interval [low, high] of the *time* ratio (current
    over baseline) of this width could have put wholly beyond no change.

    With w the half-width of the interval of the log ratio, a true slowdown r moves the interval to about
    [ln r - w, ln r + w] (the rounds' scale moves with r; the width does not), whose lower end clears 0 only for
    ln r > w. So the MDE is exp(w) - 1 for time (a slowdown of that fraction), and 1 - exp(-w) for samples_per_s
    (a throughput drop of that fraction). Infinite when the interval is unbounded.
    """
    w = _log_half_width(low, high)
    if not math.isfinite(w):
        return math.inf
    return -math.expm1(-w) if metric == "samples_per_s" else math.expm1(w)


def estimate_runs_to_resolve(half_width: float, threshold: float, metric: str, *, k_baseline: int, k_current: int,
                             n_baseline: int, n_current: int, m: int, alpha: float) -> int | None:
    """About how many runs (processes) a side would bring a case's MDE down to the threshold: an estimate.

    ``half_width`` is the half-width of the case's interval of the log ratio, measured with ``k_baseline`` and
    ``k_current`` runs of ``n_baseline`` and ``n_current`` pooled rounds. The variance of the log ratio goes like
    1/k_current + 1/k_baseline, for the run-to-run part and, with the rounds per run fixed, for the rounds too; so
    with k runs a side the half-width is about half_width sqrt((2/k) / (1/k_current + 1/k_baseline)). The pooled
    rounds of k runs must also let the rank test reach alpha/m (:func:`rank_test_floor`). None when the interval is
    unbounded or even MAX_RUNS_ESTIMATE runs would not do. The estimate ignores that the t factor and the measured
    run-to-run noise change with more runs, and that one run a side does not measure the run-to-run noise at all.
    """
    if not math.isfinite(half_width):
        return None
    target = _log_threshold(threshold, metric)
    harmonic = 1.0 / k_current + 1.0 / k_baseline
    per_run_b, per_run_c = n_baseline / k_baseline, n_current / k_current
    start = 2 if half_width == 0 else max(2, math.floor(2.0 * (half_width / target) ** 2 / harmonic))
    for k in range(start, MAX_RUNS_ESTIMATE + 1):
        narrow = half_width * math.sqrt((2.0 / k) / harmonic) <= target * (1 + 1e-9)
        if narrow and m * rank_test_floor(round(k * per_run_b), round(k * per_run_c)) < alpha:
            return k
    return None


def paired_log_ratios(baseline: Sequence[RunResult], current: Sequence[RunResult], key: CaseKey) -> np.ndarray:
    """ln(median of current run i / median of baseline run i) for every pair i that holds the case with rounds on
    both sides (a zero median on either side drops the pair: no ratio)."""
    out = []
    for base_run, cur_run in zip(baseline, current):
        b = next((c for c in base_run.cases if c.key == key), None)
        c = next((c for c in cur_run.cases if c.key == key), None)
        if b is None or c is None or b.data is None or c.data is None or not len(b.data) or not len(c.data):
            continue
        mb, mc = float(np.median(b.data)), float(np.median(c.data))
        if mb > 0 and mc > 0:
            out.append(math.log(mc / mb))
    return np.asarray(out, dtype=float)


def suite_log_ratios(baseline: Sequence[RunResult], current: Sequence[RunResult],
                     keys: Sequence[CaseKey]) -> np.ndarray:
    """Per pair that holds every one of ``keys``, the mean of the cases' ln ratios (a suite's geometric mean of
    ratios, in logs); a pair missing a case is left out rather than averaged over fewer cases."""
    per_case = {k: [paired_log_ratios([b], [c], k) for b, c in zip(baseline, current)] for k in keys}
    out = []
    for i in range(min(len(baseline), len(current))):
        values = [per_case[k][i] for k in keys]
        if keys and all(len(v) == 1 for v in values):
            out.append(float(np.mean([v[0] for v in values])))
    return np.asarray(out, dtype=float)


def paired_t(log_ratios: np.ndarray, confidence: float) -> tuple[float, float, float, float]:
    """(p-value, mean, low, high) of the log ratios: scipy.stats.ttest_1samp against 0 and the t interval of the
    mean at ``confidence``. Identical ratios (no spread) give p 0 (or 1 when they are all 0) and a point interval."""
    d = np.asarray(log_ratios, dtype=float)
    mean = float(np.mean(d))
    sd = float(np.std(d, ddof=1)) if len(d) > 1 else math.inf
    if sd <= 1e-12:  # identical ratios up to rounding: scipy would warn of catastrophic cancellation
        return (1.0 if abs(mean) <= 1e-12 else 0.0), mean, mean, mean
    p = float(stats.ttest_1samp(d, 0.0).pvalue)
    half = float(stats.t.ppf(1.0 - (1.0 - confidence) / 2.0, len(d) - 1)) * sd / math.sqrt(len(d))
    return (min(1.0, p) if math.isfinite(p) else 1.0), mean, mean - half, mean + half


def estimate_pairs_to_resolve(sd: float, threshold: float, metric: str, confidence: float) -> int | None:
    """About how many pairs bring a paired case's MDE (t(conf, n-1) sd / sqrt(n)) down to the threshold, at the
    measured pair-to-pair spread ``sd`` of the log ratios; None beyond MAX_RUNS_ESTIMATE or for an unknown sd."""
    if not math.isfinite(sd):
        return None
    target = _log_threshold(threshold, metric)
    q = 1.0 - (1.0 - confidence) / 2.0
    for n in range(2, MAX_RUNS_ESTIMATE + 1):
        if float(stats.t.ppf(q, n - 1)) * sd / math.sqrt(n) <= target * (1 + 1e-9):
            return n
    return None


# ----------------------------------------------------------------------------------------------- the gate


@dataclass
class GateRow:
    """The verdict on one case. Ratios are current over baseline in the metric's own terms."""

    case: str
    group: str | None
    status: str  # regression | improvement | unchanged | inconclusive | no baseline | not comparable
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
    #: minimum detectable effect of a tested case, as a fraction in the metric's worse direction (0.12: a 12%
    #: slowdown, or a 12% throughput drop); inf where nothing is detectable (JSON null, as for an untested case)
    mde: float | None = None
    #: for an inconclusive case, about how many runs a side (pairs, when paired) would bring its MDE to the
    #: threshold (an estimate)
    runs_to_resolve: int | None = None
    #: paired gate: the pairs that hold the case
    n_pairs: int = 0
    #: decided outside the statistics (a time-to-accuracy case that stopped reaching its target): gated in every
    #: scope
    always_gated: bool = False


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
    allow_inconclusive: bool = False
    #: about how many runs a side would resolve the threshold for every inconclusive case (an estimate; None
    #: when there is none, or when no practical number would)
    runs_to_resolve: int | None = None
    #: the runs were paired (baseline i with current i): runs_to_resolve counts pairs
    paired: bool = False
    #: cases: every tested case gates (Holm); suite: the suite row gates, then the cases (fixed sequence)
    scope: str = "cases"
    #: the suite row (paired gate): the geometric mean of the tested cases' per-pair ratios
    suite: GateRow | None = None

    @property
    def gated_rows(self) -> list[GateRow]:
        """The rows whose verdicts decide the exit status: every case, or under the suite scope the suite row and,
        once it is a significant regression, the cases."""
        if self.scope != "suite" or self.suite is None:
            return self.rows
        return [self.suite] + (self.rows if self.suite.status == "regression"
                               else [r for r in self.rows if r.always_gated])

    @property
    def regressions(self) -> list[GateRow]:
        return [r for r in self.gated_rows if r.status == "regression"]

    @property
    def inconclusive(self) -> list[GateRow]:
        return [r for r in self.gated_rows if r.status == "inconclusive"]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["n_regressions"] = len(self.regressions)
        out["n_inconclusive"] = len(self.inconclusive)
        return out


@dataclass(frozen=True)
class _Pooled:
    case: CaseResult  # the latest entry, for names and params
    data: np.ndarray | None
    values: tuple[float, ...]  # one value per run (peak memory)
    samples_per_round: float | None
    run_medians: tuple[float, ...] = ()  # median of each run's rounds
    workloads: tuple[dict | None, ...] = ()  # each entry's workload record (fer_bench.workload)
    inferred: int = 0  # entries from runs older than the workload record


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
        if metric not in RUN_VALUE_METRICS:
            missing = [(r, c) for r, c in entries if c.data is None]
            if missing:
                run, case = missing[0]
                raise FerBenchError(
                    f"{run.path}: {case.name} has no raw round data (stats.data); save runs with "
                    f"--benchmark-json or --benchmark-save-data"
                )
            data = np.concatenate([c.data for _, c in entries])
        value_key = metric if metric in RUN_VALUE_METRICS else "peak_memory_bytes"
        values = tuple(
            float(c.extra_info[value_key])
            for _, c in entries
            if isinstance(c.extra_info.get(value_key), (int, float)) and not isinstance(c.extra_info[value_key], bool)
        )
        per_round = None
        if metric == "samples_per_s":
            sps = latest.samples_per_s
            per_round = sps * latest.median_s if sps else None
        medians = tuple(float(np.median(c.data)) for _, c in entries if c.data is not None and len(c.data))
        pooled[key] = _Pooled(latest, data, values, per_round, medians, tuple(c.workload for _, c in entries),
                              sum(c.workload_inferred for _, c in entries))
    return pooled


def _check_machines(baseline: Sequence[RunResult], current: Sequence[RunResult],
                    allow_other: bool) -> tuple[Sequence[RunResult], list[str]]:
    """The baseline runs to use and the messages about the others.

    "Same machine" is the same hardware identity hash: a baseline of this hardware with another software stack
    (a torch, driver or kernel upgrade) is used, and :func:`_stack_notes` says what changed.

    Raises:
        _NoBaseline: no baseline run comes from the current hardware (and no --allow-other-machine).
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
        f"{r.path}: measured on other hardware, {r.machine.slug} ({r.machine.identity_hash}), the current run on "
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


def _stack_notes(baseline: Sequence[RunResult], current: Sequence[RunResult]) -> list[str]:
    """A note per software stack change between the baseline runs and the current run (the newest current run's
    stack): ``software stack changed since the baseline: torch 2.14.1 -> 2.15.0``. Baseline runs with one stack
    are described once; where only some of them differ, the note says how many."""
    mine = current[-1].machine
    groups: dict[str | None, list[RunResult]] = {}
    for run in baseline:
        if run.machine.stack and run.machine.stack_hash != mine.stack_hash:
            groups.setdefault(run.machine.stack_hash, []).append(run)
    notes = []
    for runs in groups.values():
        changes = stack_change_notes(runs[0].machine, mine)
        if len(runs) < len(baseline):
            changes = [f"{line} ({len(runs)} of {len(baseline)} baseline runs, first {runs[0].path})"
                       for line in changes]
        notes.extend(changes)
    return notes


def _workload_difference(base: _Pooled, cur: _Pooled) -> str | None:
    """The first difference between the work of the current and the baseline entries of a case (or within
    either side), as ``images_per_round 4096 vs 2048 (current vs baseline)``; None when all did the same work."""
    for side, entries in (("current", cur.workloads), ("baseline", base.workloads)):
        for other in entries[1:]:
            diffs = workload_differences(entries[0], other)
            if diffs:
                return f"{'; '.join(diffs)} between the {side} runs"
    if cur.workloads and base.workloads:
        diffs = workload_differences(cur.workloads[0], base.workloads[0])
        if diffs:
            return f"{'; '.join(diffs)} (current vs baseline)"
    return None


class _NoBaseline(Exception):
    """No comparable baseline: exit status 2."""


def _beyond(ratio: float, threshold: float, metric: str) -> tuple[bool, bool]:
    """(worse beyond the threshold, better beyond the threshold) in the metric's own sense."""
    if metric in HIGHER_BETTER:
        return ratio < 1.0 - threshold, ratio > 1.0 + threshold
    return ratio > 1.0 + threshold, ratio < 1.0 - threshold


def _compare_run_values(key: CaseKey, base: _Pooled, cur: _Pooled, threshold: float, metric: str) -> GateRow:
    """A metric recorded once per run (peak memory, images per joule): the runs' medians against the threshold."""
    row = GateRow(case=format_case(key), group=cur.case.group, status="unchanged", verdict="")
    if not base.values or not cur.values:
        why = {"samples_per_joule": " (energy not measured here: see energy_reason)"}.get(metric, "")
        row.verdict = f"no {metric} recorded{why}: not judged"
        return row
    b, c = float(np.median(base.values)), float(np.median(cur.values))
    row.baseline_value, row.current_value = b, c
    row.n_baseline, row.n_current = len(base.values), len(cur.values)
    row.ratio = c / b if b > 0 else (1.0 if c == 0 else math.inf)
    worse, better = _beyond(row.ratio, threshold, metric)
    words = describe_ratio(row.ratio, metric) if math.isfinite(row.ratio) else f"{c:.0f} from 0"
    note = "one value per run: threshold only, no significance test"
    # memory: a change under 1 MiB is allocator noise, whatever its ratio
    big = metric != "peak_memory_bytes" or abs(c - b) >= MIN_MEMORY_DELTA_BYTES
    if worse and big:
        row.status, row.verdict = "regression", f"{words}, above the {threshold:.0%} threshold ({note})"
    elif better and big:
        row.status, row.verdict = "improvement", f"{words}, improvement ({note})"
    else:
        small = " or under 1 MiB" if metric == "peak_memory_bytes" else ""
        row.verdict = f"{words}, within the {threshold:.0%} threshold{small} ({note})"
    return row


def _compare_rounds(key: CaseKey, base: _Pooled, cur: _Pooled, metric: str) -> GateRow:
    """Effect and p-value of one case; the verdict comes once every case has its p-value."""
    b_t, c_t = float(np.median(base.data)), float(np.median(cur.data))
    row = GateRow(case=format_case(key), group=cur.case.group, status="unchanged", verdict="")
    row.n_baseline, row.n_current = len(base.data), len(cur.data)
    # a zero median is a round faster than the timer: two of them are the same speed, one is no ratio at all
    time_ratio = c_t / b_t if b_t > 0 else (1.0 if c_t == 0 else math.inf)
    if metric == "time":
        row.baseline_value, row.current_value, row.ratio = b_t, c_t, time_ratio
    else:
        # Throughput is samples per round over the round time, and the workload check guarantees the same samples
        # per round on both sides: its ratio is the inverse of the time ratio, exactly. A case that records no
        # sample count (samples_per_s or a batch size) is judged the same way; it only lacks the rates to show.
        per_round = cur.samples_per_round or base.samples_per_round
        if per_round is not None:
            row.baseline_value = per_round / b_t if b_t > 0 else math.inf
            row.current_value = per_round / c_t if c_t > 0 else math.inf
        row.ratio = 1.0 / time_ratio if time_ratio > 0 else math.inf
    # Pooled rounds: 5 runs of a 3-round epoch give 15 rounds, tested, with their run-to-run noise in the interval
    row.tested = min(row.n_baseline, row.n_current) >= MIN_ROUNDS
    if row.tested:
        row.p_value = mann_whitney_p(base.data, cur.data)
    return row


def _compare_pairs(key: CaseKey, base: _Pooled, cur: _Pooled, metric: str, log_ratios: np.ndarray) -> GateRow:
    """A paired case: the pooled values for show, the ratio from the pairs, tested from 2 pairs up."""
    return _set_paired_effect(_compare_rounds(key, base, cur, metric), metric, log_ratios)


def _set_paired_effect(row: GateRow, metric: str, log_ratios: np.ndarray) -> GateRow:
    """A paired row's effect from its per-pair log ratios: their geometric mean as the ratio, and the t test's p
    from 2 pairs up."""
    row.n_pairs = len(log_ratios)
    row.tested = row.n_pairs >= 2
    row.p_value = None
    if len(log_ratios):
        time_ratio = math.exp(float(np.mean(log_ratios)))
        row.ratio = time_ratio if metric == "time" else 1.0 / time_ratio
    if row.tested:
        row.p_value = paired_t(log_ratios, 0.5)[0]
    return row


def _ratio_words(ratio: float, metric: str) -> str:
    """:func:`describe_ratio`, and words for the ratios a zero median gives (infinite or zero)."""
    if 0 < ratio < math.inf:
        return describe_ratio(ratio, metric)
    slower = ratio == (0.0 if metric == "samples_per_s" else math.inf)
    return "slower than a zero baseline median" if slower else "a zero current median (faster than the timer)"


def _format_fraction(value: float) -> str:
    """0.072 -> '7.2%', 0.05 -> '5%', 0.258 -> '26%'."""
    return (f"{value:.1%}" if value < 0.1 else f"{value:.0%}").replace(".0%", "%")


def _missed_target(pooled: _Pooled) -> bool:
    """A time-to-accuracy case whose latest run missed its target: its rounds are times to the epoch cap."""
    return pooled.case.extra_info.get("reached_target") is False


def _target_row(key: CaseKey, base: _Pooled, cur: _Pooled) -> GateRow:
    """A time-to-accuracy case that missed its target on either side has no time to compare: one that stopped
    reaching it is a regression in every scope; one that now reaches it, an improvement."""
    def missed(p: _Pooled) -> str:
        info = p.case.extra_info
        return (f"{info.get('runs_missed', '?')} of {info.get('repeats', '?')} runs missed "
                f"{_format_fraction(info.get('target_accuracy') or math.nan)}")

    row = GateRow(case=format_case(key), group=cur.case.group, status="unchanged", verdict="",
                  n_baseline=len(base.data) if base.data is not None else 0,
                  n_current=len(cur.data) if cur.data is not None else 0, always_gated=True)
    if _missed_target(cur) and not _missed_target(base):
        row.status, row.verdict = "regression", f"no longer reaches its target accuracy ({missed(cur)})"
    elif _missed_target(base) and not _missed_target(cur):
        row.status, row.verdict = "improvement", f"reaches its target accuracy now (the baseline: {missed(base)})"
    else:
        row.verdict = f"missed its target on both sides: no time to compare ({missed(cur)})"
    return row


def _decide(row: GateRow, base: _Pooled | None, cur: _Pooled | None, metric: str, threshold: float, alpha: float,
            confidence: float, n_resamples: int, effects: np.ndarray | None = None, n_tested: int = 1,
            log_ratios: np.ndarray | None = None) -> None:
    """The verdict of one case; ``log_ratios`` (the paired gate's per-pair ln ratios) replace the bootstrap of
    pooled rounds with a t interval of their mean."""
    worse, better = _beyond(row.ratio, threshold, metric)
    words = _ratio_words(row.ratio, metric)
    if not row.tested:
        if log_ratios is not None:
            holds = "1 pair holds" if row.n_pairs == 1 else f"{row.n_pairs} pairs hold"
            note = f"{holds} this case, too few for a test: judged by the {threshold:.0%} threshold only"
        else:
            n = min(row.n_baseline, row.n_current)
            note = f"too few rounds ({n} < {MIN_ROUNDS}) for a test: judged by the {threshold:.0%} threshold only"
        if worse:
            row.status, row.verdict = "regression", f"{words}, above the threshold ({note})"
        elif better:
            row.status, row.verdict = "improvement", f"{words}, improvement ({note})"
        else:
            row.verdict = f"{words}, within the threshold ({note})"
        return
    k_base = max(1, len(base.run_medians)) if base is not None else 1
    k_cur = max(1, len(cur.run_medians)) if cur is not None else 1
    if log_ratios is not None:
        _, _, log_low, log_high = paired_t(log_ratios, confidence)
        time_low, time_high = math.exp(log_low), math.exp(log_high)
    else:
        time_low, time_high = bootstrap_ratio_ci(base.data, cur.data, confidence, n_resamples, run_effects=effects,
                                                 n_current_runs=k_cur, n_baseline_runs=k_base)
    low, high = time_low, time_high
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
        why = ("within the run-to-run noise" if effects is not None or log_ratios is not None
               else "the interval includes no change")
        row.verdict = f"{words}, not significant ({why})"
    else:
        row.verdict = f"{words}, not significant"
    # The minimum detectable effect: what this interval's width lets through, and nothing at all where the rank
    # test cannot reach alpha/m even at complete separation (a lone regression's Holm factor is m).
    row.mde = minimum_detectable_effect(time_low, time_high, metric)
    # a t test reaches any p with enough agreement between pairs: no floor of its own
    floor = 0.0 if log_ratios is not None else n_tested * rank_test_floor(row.n_baseline, row.n_current)
    if floor >= alpha:
        row.mde = math.inf
    # A significant improvement's interval lies wholly on the faster side: it rules out a slowdown of any size.
    if row.status in ("regression", "improvement") or row.mde <= threshold:
        return
    row.status = "inconclusive"
    if floor >= alpha:
        row.verdict = (f"{words}, inconclusive: {row.n_baseline} and {row.n_current} rounds are too few for the "
                       f"rank test to reach alpha/{n_tested} (its smallest p is {floor / n_tested:.2g})")
    elif math.isinf(row.mde):
        row.verdict = f"{words}, inconclusive: this machine's noise hides changes of any size"
    else:
        row.verdict = f"{words}, inconclusive: this machine's noise hides changes below {_format_fraction(row.mde)}"
    if log_ratios is not None:
        row.runs_to_resolve = estimate_pairs_to_resolve(float(np.std(log_ratios, ddof=1)), threshold, metric,
                                                        confidence)
        return
    row.runs_to_resolve = estimate_runs_to_resolve(
        _log_half_width(time_low, time_high), threshold, metric, k_baseline=k_base, k_current=k_cur,
        n_baseline=row.n_baseline, n_current=row.n_current, m=n_tested, alpha=alpha)


def _suite_row(baseline: Sequence[RunResult], current: Sequence[RunResult], keys: Sequence[CaseKey], metric: str,
               threshold: float, alpha: float) -> GateRow:
    """The paired suite's row: the geometric mean over ``keys`` of each pair's ratios, tested alone at alpha."""
    log_ratios = suite_log_ratios(baseline, current, keys)
    row = _set_paired_effect(GateRow(case=f"suite: geometric mean of {len(keys)} case{'s' * (len(keys) != 1)}",
                                     group=None, status="unchanged", verdict=""), metric, log_ratios)
    row.p_corrected = row.p_value  # one test: nothing to correct
    _decide(row, None, None, metric, threshold, alpha, 1.0 - alpha, 0, n_tested=1, log_ratios=log_ratios)
    return row


def evaluate_gate(
    baseline: Sequence[RunResult],
    current: Sequence[RunResult],
    *,
    metric: str = "time",
    threshold: float = 0.05,
    alpha: float = 0.01,
    allow_other_machine: bool = False,
    allow_missing: bool = False,
    allow_inconclusive: bool = False,
    paired: bool = False,
    scope: str = "cases",
) -> GateReport:
    """Gate the current runs against the pooled baseline runs (``paired``: baseline run i against current run i,
    the runs of ``fer-bench ab``).

    Exit status (``report.exit_status``): 2 for a case without a comparable baseline (unless ``allow_missing``
    for a missing one), else 1 for a regression, else 4 for an inconclusive case (unless ``allow_inconclusive``),
    else 0.

    Raises:
        FerBenchError: bad input (exit status 3): no round data, no common case, several current machines.
    """
    if metric not in METRICS:
        raise FerBenchError(f"--metric {metric!r}: choose one of {', '.join(METRICS)}")
    if scope not in SCOPES:
        raise FerBenchError(f"--scope {scope!r}: choose one of {', '.join(SCOPES)}")
    if scope == "suite" and (not paired or metric in RUN_VALUE_METRICS):
        raise FerBenchError("--scope suite gates the paired runs of fer-bench ab (--paired) on time or samples_per_s")
    current_runs = [r for r in current if r.cases]
    if not current_runs:
        raise FerBenchError("the current results hold no benchmark")
    if paired:
        baseline = [r for r in baseline if r.cases]
        if len(baseline) != len(current_runs) or len(baseline) < 2:
            raise FerBenchError(f"--paired: {len(baseline)} baseline and {len(current_runs)} current runs with "
                                f"benchmarks; pairs need the same number on both sides, at least 2")
    report = GateReport(
        exit_status=EXIT_OK, metric=metric, threshold=threshold, alpha=alpha,
        current=[str(r.path) for r in current], baseline=[str(r.path) for r in baseline],
        machine=f"{current_runs[0].machine.slug} ({current_runs[0].machine.identity_hash})",
        allow_inconclusive=allow_inconclusive, paired=paired, scope=scope,
    )
    try:
        n_given = len(baseline)
        baseline, messages = _check_machines(baseline, current_runs, allow_other_machine)
        if paired and len(baseline) != n_given:
            raise _NoBaseline(f"{n_given - len(baseline)} baseline run(s) of the pairs come from other hardware "
                              f"({messages[0].removeprefix('note: ')})")
        report.messages.extend(messages)
        report.baseline = [str(r.path) for r in baseline]
        report.notes.extend(_stack_notes(baseline, current_runs))
    except _NoBaseline as exc:
        report.exit_status = EXIT_NO_BASELINE
        report.messages.append(f"no comparable baseline: {exc}")
        return report
    cur_pool, base_pool = _pool(current_runs, metric), _pool([r for r in baseline if r.cases], metric)
    missing = [k for k in cur_pool if k not in base_pool]
    report.baseline_only = [format_case(k) for k in base_pool if k not in cur_pool]
    other_work = {k: d for k in cur_pool if k in base_pool
                  for d in [_workload_difference(base_pool[k], cur_pool[k])] if d}
    common = [k for k in cur_pool if k in base_pool and k not in other_work]
    target_rows = {k: _target_row(k, base_pool[k], cur_pool[k]) for k in common
                   if _missed_target(base_pool[k]) or _missed_target(cur_pool[k])}
    common = [k for k in common if k not in target_rows]
    if not common and not other_work and not target_rows:
        raise FerBenchError("the current run and the baseline share no case (matched by function and params)")
    inferred = sum(p.inferred for p in (*cur_pool.values(), *base_pool.values()))
    if inferred:
        report.notes.append(f"{inferred} case result(s) come from runs older than the workload record: their work "
                            f"(image counts, input size, data) is read from older extra_info keys")
    rows: dict[CaseKey, GateRow] = {}
    if metric in RUN_VALUE_METRICS:
        for key in common:
            rows[key] = _compare_run_values(key, base_pool[key], cur_pool[key], threshold, metric)
    else:
        pair_ratios = {k: paired_log_ratios(baseline, current_runs, k) for k in common} if paired else {}
        for key in common:
            if paired:
                rows[key] = _compare_pairs(key, base_pool[key], cur_pool[key], metric, pair_ratios[key])
            else:
                rows[key] = _compare_rounds(key, base_pool[key], cur_pool[key], metric)
        uncounted = [k for k in common if (cur_pool[k].samples_per_round or base_pool[k].samples_per_round) is None]
        if metric == "samples_per_s" and uncounted:
            report.notes.append(
                f"{len(uncounted)} case(s) record no samples_per_s or batch size (first: {format_case(uncounted[0])}):"
                f" judged on time, their throughput ratio being the inverse of the time ratio (the same work per "
                f"round on both sides, as the workload check guarantees)"
            )
        tested = [k for k in common if rows[k].tested]
        report.n_tested = len(tested)
        for key, p in zip(tested, holm_adjust([rows[k].p_value for k in tested])):
            rows[key].p_corrected = float(p)
        # Bonferroni-level intervals: all m of them hold together at 1 - alpha
        confidence = 1.0 - alpha / max(1, len(tested))
        report.confidence = confidence
        n_resamples = resolve_resamples(confidence)
        effects, df = (None, 0) if paired else pool_run_effects([base_pool[k].run_medians for k in tested]
                                                                 + [cur_pool[k].run_medians for k in tested])
        widened = None
        if effects is not None:
            # The pooled effects estimate the noise level from a few runs, so the estimate is itself uncertain:
            # widen them as a t interval would, with the pooled degrees of freedom (runs - 1 per case and side).
            widened = effects * small_sample_factor(confidence, df)
        for key in common:
            _decide(rows[key], base_pool[key], cur_pool[key], metric, threshold, alpha, confidence, n_resamples,
                    widened, n_tested=len(tested), log_ratios=pair_ratios.get(key))
        if paired and len(tested) >= 1:
            report.suite = _suite_row(baseline, current_runs, tested, metric, threshold, alpha)
        unresolved = [rows[k] for k in tested if rows[k].status == "inconclusive"]
        if unresolved and all(r.runs_to_resolve is not None for r in unresolved):
            report.runs_to_resolve = max(r.runs_to_resolve for r in unresolved)
        if paired and tested:
            spreads = [float(np.var(pair_ratios[k], ddof=1)) for k in tested]
            report.run_noise = float(np.sqrt(np.mean(spreads)))
            report.notes.append(
                f"paired: baseline run i against current run i ({len(baseline)} pairs); pair-to-pair noise "
                f"{report.run_noise:.1%} (sd of the per-pair log ratios, pooled over {len(tested)} case(s)); drift "
                f"between pairs cancels"
            )
        elif tested and effects is None:
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
    rows.update(target_rows)
    for key, diff in other_work.items():
        rows[key] = GateRow(case=format_case(key), group=cur_pool[key].case.group, status="not comparable",
                            verdict=f"not comparable: other work ({diff})")
    for key in missing:
        skipped = "skipped (--allow-missing)" if allow_missing else "fails closed"
        rows[key] = GateRow(case=format_case(key), group=cur_pool[key].case.group, status="no baseline",
                            verdict=f"no baseline: {skipped}")
    report.rows = [rows[k] for k in cur_pool]
    if report.suite is not None and scope == "suite":
        suite = report.suite
        if suite.status != "regression":  # else the cases gate, and the estimate stays theirs
            report.runs_to_resolve = suite.runs_to_resolve if suite.status == "inconclusive" else None
        gated = "gated too" if suite.status == "regression" else "shown, not gated"
        report.notes.append(
            f"scope suite: the job's verdict is the suite row's (one t test at alpha {alpha:g} over "
            f"{suite.n_pairs} pairs); the case rows are {gated} (fixed-sequence: the cases count only once the suite "
            f"is a significant regression)")
    if other_work:
        key, diff = next(iter(other_work.items()))
        report.exit_status = EXIT_NO_BASELINE
        report.messages.append(
            f"not comparable: {len(other_work)} case(s) of the current run did other work than the baseline "
            f"(first: {format_case(key)}: {diff}); a different workload is never a slower machine"
        )
    elif missing and not allow_missing:
        report.exit_status = EXIT_NO_BASELINE
        report.messages.append(
            f"no comparable baseline: {len(missing)} case(s) of the current run are not in the baseline "
            f"(first: {format_case(missing[0])}); pass --allow-missing to skip them"
        )
    elif report.regressions:
        report.exit_status = EXIT_REGRESSION
    elif report.inconclusive and not allow_inconclusive:
        report.exit_status = EXIT_INCONCLUSIVE
        report.messages.append(
            f"inconclusive: {len(report.inconclusive)} case(s) cannot show a {_format_fraction(threshold)} change at "
            f"this noise (first: {report.inconclusive[0].case}); "
            + ("run more pairs" if paired else "pool more runs a side")
            + (" or gate the suite (--scope suite)" if paired and scope == "cases" else "")
            + ", or pass --allow-inconclusive to let them pass"
        )
    return report


# ----------------------------------------------------------------------------------------------- output


def format_gate_value(value: float | None, metric: str) -> str:
    """A gate row's baseline or current value in the metric's unit (the text table and the HTML report)."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "inf"
    if metric == "time":
        ms = value * 1e3
        return f"{ms:.4g} ms"
    if metric == "samples_per_s":
        return f"{value:.4g}/s"
    if metric == "samples_per_joule":
        return f"{value:.4g}/J"
    return f"{value / 2**20:.4g} MiB"


def format_gate_text(report: GateReport) -> str:
    """The report as a plain-text table with a summary line."""
    n_base = len(report.baseline)
    against = (f"{n_base} baseline runs, paired" if report.paired
               else f"{n_base} baseline run{'s' * (n_base != 1)}")
    head = (
        f"fer-bench gate: {', '.join(report.current)} vs {against} on {report.machine}; metric {report.metric}, threshold {report.threshold:.1%}, alpha {report.alpha:g}"
    )
    if report.metric not in RUN_VALUE_METRICS:
        head += f" (Holm over {report.n_tested} tested case{'s' * (report.n_tested != 1)})"
    lines = [head]
    if report.rows:
        ci_head = f"{report.confidence:.2%} CI" if report.confidence is not None else "CI"
        table = []
        for r in report.rows:
            ci = f"[{r.ci_low:.3f}, {r.ci_high:.3f}]" if r.ci_low is not None else "-"
            p = f"{r.p_corrected:.2g}" if r.p_corrected is not None else "-"
            ratio = f"{r.ratio:.3f}" if r.ratio is not None else "-"
            mde = "-" if r.mde is None else "any" if math.isinf(r.mde) else f"{r.mde:.1%}"
            table.append([r.case, format_gate_value(r.baseline_value, report.metric),
                          format_gate_value(r.current_value, report.metric), ratio, ci, mde, p, r.verdict])
        lines.append(format_text_table(
            ["case", "baseline", "current", "ratio", ci_head, "MDE", "p (Holm)", "verdict"], table))
    if report.suite is not None:
        r = report.suite
        ci = f", {1 - report.alpha:.0%} CI [{r.ci_low:.3f}, {r.ci_high:.3f}]" if r.ci_low is not None else ""
        mde = "" if r.mde is None else ", MDE any" if math.isinf(r.mde) else f", MDE {r.mde:.1%}"
        p = f", p {r.p_value:.2g}" if r.p_value is not None else ""
        ratio = f"ratio {r.ratio:.3f}" if r.ratio is not None else "no ratio"
        gated = "gated" if report.scope == "suite" else "not gated (--scope suite gates it)"
        lines.append(f"{r.case} over {r.n_pairs} pairs: {ratio}{ci}{mde}{p}: {r.verdict} [{gated}]")
    lines.extend(f"note: {n}" for n in report.notes)
    if report.baseline_only:
        lines.append(f"{len(report.baseline_only)} baseline case(s) not in the current run: "
                     + ", ".join(report.baseline_only[:5]) + (" ..." if len(report.baseline_only) > 5 else ""))
    n_reg, n_inc = len(report.regressions), len(report.inconclusive)
    outcome = {EXIT_OK: "no regression", EXIT_REGRESSION: f"{n_reg} regression{'s' * (n_reg != 1)}",
               EXIT_NO_BASELINE: "no comparable baseline", EXIT_INCONCLUSIVE: "no regression"}[report.exit_status]
    if n_inc:
        outcome += f", {n_inc} inconclusive" + (" (--allow-inconclusive)" if report.allow_inconclusive else "")
    line = f"result: {outcome} in {len(report.rows)} case(s) -> exit {report.exit_status}"
    if report.scope == "suite" and report.suite is not None:
        line = f"result: {outcome} (scope suite: the suite row decides) in {len(report.rows)} case(s) -> exit {report.exit_status}"
    if n_inc:
        unit = "pairs" if report.paired else "runs a side"
        runs = (f"about {report.runs_to_resolve} {unit}" if report.runs_to_resolve is not None
                else f"no practical number of {unit} (over {MAX_RUNS_ESTIMATE}, or an unbounded interval)")
        suite_decides = report.scope == "suite" and report.suite is not None and report.suite.status != "regression"
        where = "the suite" if suite_decides else "every inconclusive case"
        line += (f"; {runs} would resolve {_format_fraction(report.threshold)} in {where} (an estimate: the "
                 f"interval narrows like 1/sqrt({unit}))")
    lines.append(line)
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


def add_verdict_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that shape the verdict, shared by `fer-bench gate` and `fer-bench ab`."""
    parser.add_argument("--threshold", type=parse_threshold, default=0.05,
                        help="smallest change that counts, as 5%% or 0.05. Default: 5%%")
    parser.add_argument("--alpha", type=parse_alpha, default=0.01,
                        help="significance level after Holm's correction over cases. Default: %(default)r")
    parser.add_argument("--metric", choices=METRICS, default="time", help="Default: %(default)r")
    parser.add_argument("--allow-missing", action="store_true",
                        help="skip current cases that the baseline lacks instead of failing (exit 2)")
    parser.add_argument("--scope", choices=SCOPES, default=None,
                        help="paired runs only: cases (every case gates, Holm over cases) or suite (one test of the "
                             "geometric mean over cases decides; the cases gate once it is a significant "
                             "regression). Default: suite for fer-bench ab, cases for fer-bench gate")
    parser.add_argument("--allow-inconclusive", action="store_true",
                        help="exit 0, not 4, when the only finding is inconclusive cases (their noise hides a change "
                             "of the threshold's size); the rows stay marked inconclusive")


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `fer-bench gate`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Gate the current run (the last argument) against pooled baseline runs: per case, the ratio of medians,\n"
        "a Mann-Whitney U test (Holm-corrected) and a bootstrap interval that carries run-to-run noise when the\n"
        "baseline has several runs. How it decides and its measured calibration: docs/gate.md."
    )
    parser.epilog = ("exit status: 0 no regression, 1 regression, 2 no comparable baseline (other machine or "
                     "missing case),\n3 bad input (one line on stderr), 4 inconclusive: no regression, but a tested "
                     "case's minimum\ndetectable effect (MDE) exceeds the threshold (--allow-inconclusive: 0). "
                     "2 wins over 1, 1 over 4.")
    parser.add_argument("runs", nargs="+", metavar="RUN_OR_DIR",
                        help="baseline runs (files or folders, pooled) then, last, the current run")
    add_verdict_arguments(parser)
    parser.add_argument("--allow-other-machine", action="store_true",
                        help="gate against a baseline measured on other hardware (a different identity hash)")
    parser.add_argument("--paired", action="store_true",
                        help="the two arguments are folders of runs made in pairs (fer-bench ab): the i-th oldest "
                             "baseline run against the i-th oldest current run, a t test on the per-pair ratios")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="Default: %(default)r")


def cmd_gate(args: argparse.Namespace) -> int:
    """Run the gate; the exit status is the verdict. Bad input prints one line and returns 3."""
    try:
        if len(args.runs) < 2:
            raise FerBenchError("give at least one baseline and the current run (the last argument)")
        paired = getattr(args, "paired", False)
        if paired and len(args.runs) != 2:
            raise FerBenchError(f"--paired takes two folders (baseline runs, current runs), not {len(args.runs)} "
                                f"arguments")
        current = load_results(args.runs[-1:])
        baseline = load_results(args.runs[:-1], exclude=[r.path for r in current])
        report = evaluate_gate(
            baseline, current, metric=args.metric, threshold=args.threshold, alpha=args.alpha,
            allow_other_machine=args.allow_other_machine, allow_missing=args.allow_missing,
            allow_inconclusive=args.allow_inconclusive, paired=paired, scope=args.scope or "cases",
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
