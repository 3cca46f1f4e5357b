"""The records every compare view starts from: one per (platform, case) of stored runs, taken from the latest run
that holds it, with cases that did different work told apart and --platform-name applied. Never imports torch.

A *platform* is a machine and a device: ``<slug>/<device>`` (``laptop-i7/cpu``, ``hpc-node/cuda``). The device axis
belongs to the platform, so the platforms view puts "resnet18, bs 64, fp32, train_step" on one row with a column per
platform, whichever device ran it. A benchmark without a device axis (a data-loader pipeline) runs on the host and is
labelled ``/cpu``. Two machines whose slugs agree but whose (hardware) identity hashes differ get the hash's first
six digits; one machine that ran several software stacks (a torch upgrade) gets a platform per stack, named by
``@`` and the stack hash's first six digits, and the notes list what differs in the stacks.

Several runs of one machine: each (platform, case) takes its entry from the latest run by the JSON's datetime, so a
partial rerun replaces only the cases it ran.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Iterable, Sequence

from fer_bench.axes import AXES, implied_params
from fer_bench.results.contention import contention_record, describe_contention, is_contended
from fer_bench.errors import FerBenchError
from fer_bench.results.format import float_or_nan, is_number
from fer_bench.results.runs import CaseKey, CaseResult, RunResult, format_case, label_machines, parse_params_key
from fer_bench.workload import COUNT_FIELDS, describe_workload, workload_differences


HOST_DEVICE = "cpu"
#: Axes at the value runs made before the axis existed ran (the registry's implied axes, fer_bench.axes), so that
#: a run naming the value is the same case as one that does not.
IMPLIED_PARAMS: dict[str, Any] = implied_params()
#: The value an absent axis stands for (fer_bench.axes' since_default, and IMPLIED_PARAMS).
AXIS_DEFAULTS: dict[str, Any] = {**{a.name: a.since_default for a in AXES.values() if a.has_since_default},
                                 **IMPLIED_PARAMS}


def _count_label(workload: dict | None) -> str:
    workload = workload or {}
    if workload.get("images_per_round") is not None:
        return f"{workload['images_per_round']} images/round"
    if workload.get("train_images") is not None:
        return f"{workload['train_images']} train + {workload.get('eval_images', '?')} eval images"
    return "unknown image count"


def label_workloads(cases: Sequence[CaseResult], per_image: bool) -> tuple[dict[int, str], list[str]]:
    """Tell apart cases of one function and params that did different work (fer_bench.workload).

    Cases whose workloads differ in more than image counts are different cases. Cases that differ only in image
    counts are one case when compared ``per_image`` (throughput: exact), else different cases. Returns a label
    per case (by ``id``; empty where the function and params did one kind of work) and notes saying which.
    """
    groups: dict[CaseKey, list[CaseResult]] = {}
    for case in cases:
        groups.setdefault(_case_key(case), []).append(case)
    labels: dict[int, str] = {}
    split: dict[str, set[str]] = {}
    per_image_merged: dict[str, set[str]] = {}
    count_split: dict[str, set[str]] = {}
    for key, members in groups.items():
        classes: list[tuple[dict | None, list[CaseResult]]] = []
        for case in members:
            for rep, same in classes:
                if not workload_differences(rep, case.workload, ignore_counts=True):
                    same.append(case)
                    break
            else:
                classes.append((case.workload, [case]))
        for rep, same in classes:
            counts = {_count_label(c.workload) for c in same}
            base = ""
            if len(classes) > 1:
                stripped = {k: v for k, v in (rep or {}).items() if k not in COUNT_FIELDS}
                base = describe_workload(stripped)
                split.setdefault(key.function, set()).update(
                    workload_differences(classes[0][0], rep, ignore_counts=True))
            if len(counts) > 1:
                (per_image_merged if per_image else count_split).setdefault(key.function, set()).update(counts)
            for c in same:
                count = _count_label(c.workload) if len(counts) > 1 and not per_image else ""
                labels[id(c)] = ", ".join(p for p in (base, count) if p)
    notes = []
    for function, diffs in sorted(split.items()):
        notes.append(f"`{function}`: runs did different work ({'; '.join(sorted(diffs))}): shown as separate "
                     f"cases (the `workload` column), never compared.")
    for function, counts in sorted(count_split.items()):
        notes.append(f"`{function}`: runs over different image counts ({', '.join(sorted(counts))}): shown as "
                     f"separate cases; `--metric samples_per_s` compares them per image.")
    for function, counts in sorted(per_image_merged.items()):
        notes.append(f"`{function}`: runs over different image counts ({', '.join(sorted(counts))}) compared per "
                     f"image (samples/s), which is exact for a loader pass or an epoch.")
    return labels, notes


#: extra_info figures that make a case what it is, like a param: a time to 60% and one to 65% are two cases.
CASE_DEFINING_EXTRA = ("target_accuracy",)


def _case_key(case: CaseResult) -> CaseKey:
    """The case's key without its device (the platform's) and without an implied axis at its default value; a
    case-defining extra_info figure (the target accuracy) joins it as a param."""
    key = case.key.without("device")
    params = [(k, v) for k, v in key.params if not (k in IMPLIED_PARAMS and json.loads(v) == IMPLIED_PARAMS[k])]
    names = {k for k, _ in params}
    params += [(k, json.dumps(case.extra_info[k])) for k in CASE_DEFINING_EXTRA
               if k not in names and is_number(case.extra_info.get(k))]
    return dataclasses.replace(key, params=tuple(sorted(params)))


def parse_platform_names(items: Iterable[str] | None) -> dict[str, str]:
    """``--platform-name SLUG=NAME`` values as a dict (the last of a repeated SLUG wins).

    Raises:
        FerBenchError: an item without ``=``, or with an empty side.
    """
    out: dict[str, str] = {}
    for item in items or ():
        slug, sep, name = str(item).partition("=")
        if not sep or not slug.strip() or not name.strip():
            raise FerBenchError(f"--platform-name {item!r}: write SLUG=NAME (a machine slug or slug/device, "
                                f"then the name to show)")
        out[slug.strip()] = name.strip()
    return out


def _rename_platforms(labels: dict[tuple, str], runs: Sequence[RunResult],
                      names: dict[str, str]) -> dict[tuple[tuple, str], str]:
    """Apply ``--platform-name``: a SLUG naming a machine (its label or its slug) renames that machine's label, the
    ``/device`` kept; one naming a whole platform (``slug/device``) renames that platform.

    Returns:
        the shown platform per ((identity hash, stack hash), device), for the renamed ones.

    Raises:
        FerBenchError: a SLUG that matches no machine or platform, or two platforms renamed to one name.
    """
    if not names:
        return {}
    devices: dict[tuple, set[str]] = {}
    slugs: dict[tuple, str] = {}
    for run in runs:
        k = (run.machine.identity_hash, run.machine.stack_hash)
        slugs[k] = run.machine.slug
        devices.setdefault(k, set()).update(str(c.params.get("device", HOST_DEVICE)) for c in run.cases)
    original = {(k, d): f"{labels[k]}/{d}" for k, devs in devices.items() for d in devs}
    shown: dict[tuple[tuple, str], str] = {}
    whole: dict[tuple[tuple, str], str] = {}
    for slug, name in names.items():
        platforms = [kd for kd, platform in original.items() if platform == slug]
        machines = [k for k in devices if slug in (labels[k], slugs[k])]
        if not platforms and not machines:
            raise FerBenchError(f"--platform-name {slug}={name}: no machine or platform {slug!r} in these results "
                                f"(have {', '.join(sorted(set(original.values())))})")
        whole.update((kd, name) for kd in platforms)
        for k in machines:
            # several hardware identities or stacks under one slug keep their ~hash / @stack suffixes apart
            label = name if len(machines) == 1 or labels[k] == slug else f"{name}{labels[k][len(slugs[k]):]}"
            shown.update(((k, d), f"{label}/{d}") for d in devices[k])
    shown.update(whole)  # a whole platform's name wins over its machine's
    final: dict[str, set[str]] = {}
    for kd, platform in original.items():
        final.setdefault(shown.get(kd, platform), set()).add(platform)
    clash = next(((n, sorted(o)) for n, o in sorted(final.items()) if len(o) > 1), None)
    if clash:
        raise FerBenchError(f"--platform-name: {' and '.join(clash[1])} would both be called {clash[0]!r}")
    return shown


def collect_records(runs: Sequence[RunResult], groups: Sequence[str] | None = None, *,
                    per_image: bool = False,
                    platform_names: dict[str, str] | None = None,
                    note_superseded: bool = True) -> tuple[list[dict], list[str]]:
    """One record per (platform, case), from the latest run that holds it.

    ``per_image``: cases that differ only in their image counts are one case (the view compares throughput);
    else they are separate cases. Cases that did other work are always separate (label_workloads).

    Returns:
        (records, notes). Each record carries platform, slug, device, machine, group, benchmark, params (without
        device), case (a stable label), median_ms, samples_per_s and the extra_info figures the views use.

    ``platform_names``: ``--platform-name`` (parse_platform_names): shown names for machines or platforms.
    ``note_superseded``: say how many older entries the latest run replaced (not for a view of every run).

    Raises:
        FerBenchError: --group names no group present; --platform-name names no machine or platform.
    """
    labels = label_machines([run.machine for run in runs])
    renamed = _rename_platforms(labels, runs, platform_names or {})
    present_groups = sorted({c.group or "" for r in runs for c in r.cases})
    if groups:
        unknown = [g for g in groups if g not in present_groups]
        if len(unknown) == len(groups):
            raise FerBenchError(f"--group {' '.join(groups)}: no such group in these results "
                                f"(present: {', '.join(g or '(none)' for g in present_groups)})")
    work, notes = label_workloads([c for r in runs for c in r.cases
                                   if not groups or (c.group or "") in groups], per_image)
    latest: dict[tuple, dict] = {}
    superseded = 0
    for run in sorted(runs, key=lambda r: r.sort_key):
        machine = run.machine
        label = labels[(machine.identity_hash, machine.stack_hash)]
        for case in run.cases:
            if groups and (case.group or "") not in groups:
                continue
            device = str(case.params.get("device", HOST_DEVICE))
            key = dataclasses.replace(_case_key(case), work=work[id(case)])
            params = parse_params_key(key)
            if key.work:
                params["workload"] = key.work
            record = {
                "platform": renamed.get(((machine.identity_hash, machine.stack_hash), device), f"{label}/{device}"),
                "slug": machine.slug,
                "device": device,
                "machine": machine.identity_hash,
                "group": case.group or "",
                "benchmark": key.function,
                "case": format_case(key),
                "params": params,
                "_key": key,
                "median_ms": case.median_s * 1e3,
                "iqr_ms": float(case.stats["iqr"]) * 1e3 if is_number(case.stats.get("iqr")) else math.nan,
                "rounds": case.rounds,
                "samples_per_s": case.samples_per_s if case.samples_per_s is not None else math.nan,
                "data_wait_fraction": float_or_nan(case.extra_info.get("data_wait_fraction")),
                "samples_per_joule": float_or_nan(case.extra_info.get("samples_per_joule")),
                "mfu": float_or_nan(case.extra_info.get("mfu")),
                "_launch_bound": case.extra_info.get("launch_bound"),
                "compile_time_s": float_or_nan(case.extra_info.get("compile_time_s")),
                "_compile_graph_breaks": case.extra_info.get("compile_graph_breaks"),
                "_launch_bound_reason": case.extra_info.get("launch_bound_reason"),
                "global_batch_size": case.global_batch_size,
                **_scaling_fields(case),
                "_precision_native": case.extra_info.get("precision_native"),
                "_extra": case.extra_info,
                "contended": is_contended(case.extra_info),
                "run": str(run.path),
                "datetime": run.datetime.isoformat() if run.datetime else "",
            }
            slot = (record["platform"], machine.identity_hash, machine.stack_hash, key)
            superseded += slot in latest
            latest[slot] = record
    notes.extend(_contended_notes(latest.values()))
    if superseded and note_superseded:
        notes.append(f"{superseded} older entr{'y' if superseded == 1 else 'ies'} of the same platform and case "
                     f"left out: the latest run by datetime wins.")
    return list(latest.values()), notes


def _contended_notes(records: Iterable[dict]) -> list[str]:
    """One note naming the records measured on a contended machine (their ``contended`` column is true): their
    times are no evidence of speed."""
    contended = [r for r in records if r["contended"]]
    if not contended:
        return []
    named = "; ".join(f"`{r['case']}` on `{r['platform']}` ({describe_contention(contention_record(r['_extra']))})"
                      for r in contended[:3]) + (f"; and {len(contended) - 3} more" if len(contended) > 3 else "")
    return [f"Contended: {len(contended)} result(s) were measured while other processes took the machine, so their "
            f"times are unreliable (the `contended` column; the gate gives them no verdict): {named}."]


def _scaling_fields(case: CaseResult) -> dict:
    """What the scaling view reads of a case: the parallel mode, world size, scaling mode and the recorded
    throughput (None / NaN for a case with no GPU count, world size or parallel mode: a loader pass)."""
    extra = case.extra_info
    scaled = "num_gpus" in case.params or "parallel" in case.params or "world_size" in extra
    recorded = extra.get("samples_per_s")
    return {
        "world_size": case.world_size if scaled else None,
        "parallel": case.parallel if scaled else None,
        "scaling_mode": case.scaling_mode if scaled else None,
        "recorded_samples_per_s": float(recorded) if case.samples_per_s_recorded else math.nan,
        "_throughput_inferred": not case.samples_per_s_recorded,
        "_dp_split_inferred": scaled and case.parallel == "dp" and case.global_batch_inferred
        and case.world_size > 1,
        "_parallel_inferred": scaled and not case.parallel_recorded and case.world_size > 1,
        "_rank_skew": float_or_nan(extra.get("rank_skew")),
        "_comm_exposed_ms": float_or_nan(extra.get("comm_exposed_ms")),
    }
