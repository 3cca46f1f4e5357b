"""The native gate's two ends: choosing the stored run of this hardware that --benchmark-compare compares with, and
failing the session for cases the baseline lacks or measured other work."""

from __future__ import annotations

from pathlib import Path

import pytest

from fer_bench.plugin.session import FerSession


def select_same_hardware_baseline(config, fer: FerSession, root: Path) -> None:
    """Point --benchmark-compare at the newest stored run of this hardware (pytest-benchmark would take the
    newest file of the slug folder, whatever made it) before pytest-benchmark loads it. Fails closed: with no
    such run the session stops before running anything, unless --fer-allow-other-machine."""
    from fer_bench.results.baseline import list_stack_notes, list_stored_runs, select_baseline

    compare = config.option.benchmark_compare
    name_filter = None if compare is True else str(compare)
    runs = list_stored_runs(root, name_filter)
    fp = fer.get_fingerprint()
    chosen, problem = select_baseline(runs, fp["identity_hash"], allow_other_machine=fer.options.allow_other_machine)
    if problem:
        raise pytest.UsageError(f"fer_bench: --benchmark-compare: {problem} (looked in {root})")
    config.option.benchmark_compare = str(chosen.path)
    fer.baseline_path = chosen.path
    if chosen.identity_hash != fp["identity_hash"]:
        fer.gate_problems.append(f"note: comparing with {chosen.path}, made on other hardware ({chosen.slug})")
    fer.gate_problems.extend(f"note: {line}" for line in list_stack_notes(chosen, fp))


def check_baseline_cases(session, bs, fer: FerSession) -> None:
    """The native gate fails closed: a case the baseline lacks, one whose baseline did other work, or a
    time-to-accuracy case that no longer reaches the target its baseline reached (its rounds are then times to the
    epoch cap, which pytest-benchmark would compare as if they were times to the target)."""
    from fer_bench.results.baseline import missing_cases
    from fer_bench.workload import workload_differences, workload_of

    known = {name: entry for mapping in bs.compared_mapping.values() for name, entry in mapping.items()}
    missing = missing_cases([b.fullname for b in bs.benchmarks], set(known))
    other_work, missed = [], []
    for bench in bs.benchmarks:
        entry = known.get(bench.fullname)
        if entry is None:
            continue
        current, _ = workload_of(bench.extra_info)
        stored, _ = workload_of(entry.get("extra_info") or {})
        diffs = workload_differences(current, stored)
        if diffs:
            other_work.append(f"{bench.name} ({'; '.join(diffs)}, current vs baseline)")
        elif bench.extra_info.get("reached_target") is False and (entry.get("extra_info") or {}).get(
                "reached_target") is not False:
            missed.append(bench.name)
    failed = False
    if missed:
        fer.gate_problems.append(f"FAILED: {len(missed)} case(s) no longer reach the target accuracy their baseline "
                                 f"in {fer.baseline_path} reached: {', '.join(missed)}")
        failed = True
    for cases, what, allowed, flag in (
            (missing, "no baseline entry", fer.options.allow_missing_baseline, "--fer-allow-missing-baseline"),
            (other_work, "other work in the baseline", fer.options.allow_other_workload, "--fer-allow-other-workload")):
        if not cases:
            continue
        listed = ", ".join(cases)
        if allowed:
            fer.gate_problems.append(f"note: {what} in {fer.baseline_path} for {len(cases)} case(s), not "
                                     f"checked: {listed}")
        else:
            fer.gate_problems.append(f"FAILED: {what} in {fer.baseline_path} for {len(cases)} case(s): {listed} "
                                     f"(pass {flag} to accept)")
            failed = True
    if failed:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
