"""The gate's statistics: rank test, Holm correction, bootstrap and t intervals, MDE and run-count estimates.

Numbers in, numbers out (numpy and scipy.stats): no runs, no cases, no verdicts. Where scipy has the method it is
used (the rank test, the t test, the t and normal quantiles); where this keeps its own, the docstring says why.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats

#: Bootstrap resamples: about 20 beyond each end of the interval, at least MIN, at most MAX (20 per end up to
#: 1 - confidence = 4e-5, e.g. 250 tested cases at alpha 0.01).
MIN_RESAMPLES, MAX_RESAMPLES = 2000, 1_000_000
#: Resamples drawn at once: keeps the bootstrap's memory near 20 MB whatever the count.
RESAMPLE_CHUNK = 250_000
BOOTSTRAP_SEED = 20240601
#: The runs-a-side estimate stops here ("over 1000 runs a side": no practical number resolves the threshold).
MAX_RUNS_ESTIMATE = 1000


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
    alpha 0.01, whatever the change. The normal approximation's closed form, by hand: scipy gives the p-value of
    two samples, not the floor of a sample size (building separated samples to ask it would be the long way)."""
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


def log_half_width(low: float, high: float) -> float:
    """Half the width of the interval [low, high] of a time ratio on the log scale; 0 for a point (also an
    infinite one, from a zero baseline median), infinite when an end is 0 or infinite."""
    if low == high:
        return 0.0
    if low > 0 and math.isfinite(high):
        return (math.log(high) - math.log(low)) / 2.0
    return math.inf


def log_threshold(threshold: float, metric: str) -> float:
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
    w = log_half_width(low, high)
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
    target = log_threshold(threshold, metric)
    harmonic = 1.0 / k_current + 1.0 / k_baseline
    per_run_b, per_run_c = n_baseline / k_baseline, n_current / k_current
    start = 2 if half_width == 0 else max(2, math.floor(2.0 * (half_width / target) ** 2 / harmonic))
    for k in range(start, MAX_RUNS_ESTIMATE + 1):
        narrow = half_width * math.sqrt((2.0 / k) / harmonic) <= target * (1 + 1e-9)
        if narrow and m * rank_test_floor(round(k * per_run_b), round(k * per_run_c)) < alpha:
            return k
    return None


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
    target = log_threshold(threshold, metric)
    q = 1.0 - (1.0 - confidence) / 2.0
    for n in range(2, MAX_RUNS_ESTIMATE + 1):
        if float(stats.t.ppf(q, n - 1)) * sd / math.sqrt(n) <= target * (1 + 1e-9):
            return n
    return None

