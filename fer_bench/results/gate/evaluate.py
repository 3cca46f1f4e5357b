"""The gate's decision: pool stored runs per case and judge each case, and a paired suite, against the baseline.

Pure functions over runs read from JSON (numpy; the statistics are fer_bench.results.gate.stats). docs/gate.md
explains the decision and its measured calibration. In short, per case matched by function and params:

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

**Contended entries** (measured while other processes took more than the recorded threshold of the machine's CPU,
fer_bench.measure.contention) are set aside for time, throughput and energy before anything is pooled: a case
judged on its other runs says so in a note; one with no uncontended entry on a side gets no verdict, an
inconclusive row gated in every scope (exit 4, or 0 with --allow-inconclusive) and a message naming its figures.

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

The exit statuses: fer_bench.results.gate.verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fer_bench.errors import FerBenchError
from fer_bench.results.format import describe_ratio
from fer_bench.results.gate.comparable import (
    NoBaseline,
    check_machines,
    contended_row,
    describe_workload_difference,
    list_baseline_stack_notes,
    set_aside_contended,
)
from fer_bench.results.gate.stats import (
    bootstrap_ratio_ci,
    estimate_pairs_to_resolve,
    estimate_runs_to_resolve,
    holm_adjust,
    log_half_width,
    mann_whitney_p,
    minimum_detectable_effect,
    paired_t,
    pool_run_effects,
    rank_test_floor,
    resolve_resamples,
    small_sample_factor,
)
from fer_bench.results.gate.instructions import instruction_repeats, judge_instructions
from fer_bench.results.gate.text import format_fraction
from fer_bench.results.gate.verdict import (
    CONTENTION_METRICS,
    COUNT_METRICS,
    EXIT_INCONCLUSIVE,
    EXIT_NO_BASELINE,
    EXIT_OK,
    EXIT_REGRESSION,
    HIGHER_BETTER,
    METRICS,
    RUN_VALUE_METRICS,
    SCOPES,
    GateReport,
    GateRow,
)
from fer_bench.results.runs import CaseKey, CaseResult, RunResult, format_case

#: Fewer rounds than this on either side, pooled over the side's runs: no test, the threshold alone judges the case.
MIN_ROUNDS = 5
#: Memory growth below this is allocator and RSS noise, never a regression.
MIN_MEMORY_DELTA_BYTES = 1 << 20


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


@dataclass(frozen=True)
class _Pooled:
    case: CaseResult  # the latest entry, for names and params
    data: np.ndarray | None
    values: tuple[float, ...]  # one value per run (peak memory)
    samples_per_round: float | None
    run_medians: tuple[float, ...] = ()  # median of each run's rounds
    workloads: tuple[dict | None, ...] = ()  # each entry's workload record (fer_bench.workload)
    inferred: int = 0  # entries from runs older than the workload record
    counts: tuple[tuple[float, ...], ...] = ()  # each run's instruction counts (its repeats), where it has any


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
        if metric not in RUN_VALUE_METRICS + COUNT_METRICS:
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
        counts = tuple(r for r in (instruction_repeats(c.extra_info) for _, c in entries) if r)
        pooled[key] = _Pooled(latest, data, values, per_round, medians, tuple(c.workload for _, c in entries),
                              sum(c.workload_inferred for _, c in entries), counts)
    return pooled


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
    words = (describe_ratio(row.ratio, metric) if 0 < row.ratio < math.inf
             else f"{c:.0f} from 0" if row.ratio == math.inf else f"0 from {b:.0f}")
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


def _missed_target(pooled: _Pooled) -> bool:
    """A time-to-accuracy case whose latest run missed its target: its rounds are times to the epoch cap."""
    return pooled.case.extra_info.get("reached_target") is False


def _target_row(key: CaseKey, base: _Pooled, cur: _Pooled) -> GateRow:
    """A time-to-accuracy case that missed its target on either side has no time to compare: one that stopped
    reaching it is a regression in every scope; one that now reaches it, an improvement."""
    def missed(p: _Pooled) -> str:
        info = p.case.extra_info
        return (f"{info.get('runs_missed', '?')} of {info.get('repeats', '?')} runs missed "
                f"{format_fraction(info.get('target_accuracy') or math.nan)}")

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
        row.verdict = f"{words}, inconclusive: this machine's noise hides changes below {format_fraction(row.mde)}"
    if log_ratios is not None:
        row.runs_to_resolve = estimate_pairs_to_resolve(float(np.std(log_ratios, ddof=1)), threshold, metric,
                                                        confidence)
        return
    row.runs_to_resolve = estimate_runs_to_resolve(
        log_half_width(time_low, time_high), threshold, metric, k_baseline=k_base, k_current=k_cur,
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


def _judge_counts(report: GateReport, rows: dict, common: Sequence[CaseKey], base_pool: dict, cur_pool: dict,
                  threshold: float, alpha: float) -> None:
    """--metric instructions (fer_bench.results.gate.instructions): every case with counts on both sides is judged,
    Bonferroni over them; paired runs are pooled (a count does not drift with the runner)."""
    judged = [k for k in common if base_pool[k].counts and cur_pool[k].counts]
    if not judged:
        raise FerBenchError("no case records instruction counts on both sides (instructions_per_call): count them "
                            "with --fer-instructions")
    report.n_tested = len(judged)
    report.confidence = 1.0 - alpha / len(judged)
    for key in common:
        row = GateRow(case=format_case(key), group=cur_pool[key].case.group, status="unchanged", verdict="")
        rows[key] = judge_instructions(row, base_pool[key].counts, cur_pool[key].counts, threshold=threshold,
                                       alpha=alpha, n_judged=len(judged))
    unresolved = [r.runs_to_resolve for r in rows.values() if r.status == "inconclusive"]
    report.runs_to_resolve = max(unresolved) if unresolved and all(unresolved) else None
    unjudged = len(common) - len(judged)
    if unjudged:
        report.notes.append(f"{unjudged} case(s) without instruction counts on both sides: not judged")
    if report.paired:
        report.notes.append("instructions: the pairs' runs are pooled per side (a count does not drift with the "
                            "runner)")


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
    if scope == "suite" and (not paired or metric in RUN_VALUE_METRICS + COUNT_METRICS):
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
        baseline, messages = check_machines(baseline, current_runs, allow_other_machine)
        if paired and len(baseline) != n_given:
            raise NoBaseline(f"{n_given - len(baseline)} baseline run(s) of the pairs come from other hardware "
                              f"({messages[0].removeprefix('note: ')})")
        report.messages.extend(messages)
        report.baseline = [str(r.path) for r in baseline]
        report.notes.extend(list_baseline_stack_notes(baseline, current_runs))
    except NoBaseline as exc:
        report.exit_status = EXIT_NO_BASELINE
        report.messages.append(f"no comparable baseline: {exc}")
        return report
    order = list(dict.fromkeys(c.key for r in current_runs for c in r.cases))
    aside: dict[CaseKey, list[str]] = {}
    if metric in CONTENTION_METRICS:  # a contended entry is no evidence: the rest of a case's entries judge it
        baseline, aside = set_aside_contended(baseline)
        current_runs, aside_current = set_aside_contended(current_runs)
        for key, lines in aside_current.items():
            aside[key] = lines + aside.get(key, [])
    cur_pool, base_pool = _pool(current_runs, metric), _pool([r for r in baseline if r.cases], metric)
    contended = {k: lines for k, lines in aside.items() if k in order and (k not in cur_pool or k not in base_pool)}
    missing = [k for k in cur_pool if k not in base_pool and k not in contended]
    report.baseline_only = [format_case(k) for k in base_pool if k not in cur_pool and k not in contended]
    other_work = {k: d for k in cur_pool if k in base_pool
                  for d in [describe_workload_difference(base_pool[k].workloads, cur_pool[k].workloads)] if d}
    common = [k for k in cur_pool if k in base_pool and k not in other_work]
    target_rows = {k: _target_row(k, base_pool[k], cur_pool[k]) for k in common
                   if _missed_target(base_pool[k]) or _missed_target(cur_pool[k])}
    common = [k for k in common if k not in target_rows]
    if not common and not other_work and not target_rows and not contended:
        raise FerBenchError("the current run and the baseline share no case (matched by function and params)")
    partly = {k: lines for k, lines in aside.items() if k in common}
    if partly:
        key, lines = next(iter(partly.items()))
        report.notes.append(f"contended: {sum(map(len, partly.values()))} entr(ies) of {len(partly)} case(s) set "
                            f"aside, judged on their other runs (first: {format_case(key)}: {lines[0]})")
    inferred = sum(p.inferred for p in (*cur_pool.values(), *base_pool.values()))
    if inferred:
        report.notes.append(f"{inferred} case result(s) come from runs older than the workload record: their work "
                            f"(image counts, input size, data) is read from older extra_info keys")
    rows: dict[CaseKey, GateRow] = {}
    if metric in COUNT_METRICS:
        _judge_counts(report, rows, common, base_pool, cur_pool, threshold, alpha)
    elif metric in RUN_VALUE_METRICS:
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
    for key, lines in contended.items():
        group = next(c.group for r in (*current, *baseline) for c in r.cases if c.key == key)
        rows[key] = contended_row(format_case(key), group, lines)
        report.messages.append(f"contended: {format_case(key)}: {lines[0]}: no verdict")
    report.rows = [rows[k] for k in order if k in rows]
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
        noisy = [r for r in report.inconclusive if not r.contended]
        if noisy:
            report.messages.append(
                f"inconclusive: {len(noisy)} case(s) cannot show a {format_fraction(threshold)} change at "
                f"this noise (first: {noisy[0].case}); "
                + ("run more pairs" if paired else "pool more runs a side")
                + (" or gate the suite (--scope suite)" if paired and scope == "cases" else "")
                + ", or pass --allow-inconclusive to let them pass"
            )
        if contended:
            report.messages.append(
                f"inconclusive: {len(contended)} case(s) were measured while other processes took the machine "
                f"(contended): measure them again on a quiet machine (--fer-remeasure-contended waits for one), or "
                f"pass --allow-inconclusive to let them pass")
    return report

