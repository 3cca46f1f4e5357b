"""Which baseline runs and cases the gate may compare with the current run: the same hardware, the same work, a
quiet machine.

A baseline of other hardware is no baseline (exit status 2); one of this hardware with another software stack is,
with a note naming what changed; a case that did other work is "not comparable", never "slower"; a case measured
while other processes took the machine (contended, fer_bench.measure.contention) is no evidence either way.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from fer_bench.errors import FerBenchError
from fer_bench.machine.identity import stack_change_notes
from fer_bench.results.gate.verdict import GateRow
from fer_bench.results.contention import contention_record, describe_contention, is_contended
from fer_bench.results.runs import CaseKey, CaseResult, RunResult
from fer_bench.workload import workload_differences


class NoBaseline(Exception):
    """No comparable baseline: exit status 2."""


def check_machines(baseline: Sequence[RunResult], current: Sequence[RunResult],
                   allow_other: bool) -> tuple[Sequence[RunResult], list[str]]:
    """The baseline runs to use and the messages about the others.

    "Same machine" is the same hardware identity hash: a baseline of this hardware with another software stack
    (a torch, driver or kernel upgrade) is used, and :func:`list_baseline_stack_notes` says what changed.

    Raises:
        NoBaseline: no baseline run comes from the current hardware (and no --allow-other-machine).
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
    raise NoBaseline(lines[0] + "; pass --allow-other-machine to compare across machines")


def list_baseline_stack_notes(baseline: Sequence[RunResult], current: Sequence[RunResult]) -> list[str]:
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


def describe_workload_difference(base: Sequence[dict | None], cur: Sequence[dict | None]) -> str | None:
    """The first difference between the work records (fer_bench.workload) of the current and the baseline entries
    of a case (or within either side), as ``images_per_round 4096 vs 2048 (current vs baseline)``; None when all did
    the same work."""
    for side, entries in (("current", cur), ("baseline", base)):
        for other in entries[1:]:
            diffs = workload_differences(entries[0], other)
            if diffs:
                return f"{'; '.join(diffs)} between the {side} runs"
    if cur and base:
        diffs = workload_differences(cur[0], base[0])
        if diffs:
            return f"{'; '.join(diffs)} (current vs baseline)"
    return None


def set_aside_contended(runs: Sequence[RunResult]) -> tuple[list[RunResult], dict[CaseKey, list[str]]]:
    """``runs`` without their contended case entries (same runs, same order: the pairs stay pairs), and per case
    set aside a line per entry naming the run and the figures."""
    kept, aside = [], {}
    for run in runs:
        contended = [c for c in run.cases if is_contended(c.extra_info)]
        for case in contended:
            aside.setdefault(case.key, []).append(f"{run.path}: {_figures(case)}")
        dropped = {id(c) for c in contended}
        kept.append(dataclasses.replace(run, cases=tuple(c for c in run.cases if id(c) not in dropped))
                    if contended else run)
    return kept, aside


def contended_row(case: str, group: str | None, lines: Sequence[str]) -> GateRow:
    """The row of a case with no uncontended entry on a side: no verdict, inconclusive in every scope."""
    more = f" (and {len(lines) - 1} more contended entries)" if len(lines) > 1 else ""
    return GateRow(case=case, group=group, status="inconclusive", always_gated=True, contended=True,
                   verdict=f"contended: no verdict: {lines[0]}{more}")


def _figures(case: CaseResult) -> str:
    return describe_contention(contention_record(case.extra_info) or {})
