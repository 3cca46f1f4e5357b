"""``--fer-resume``: go on with an interrupted run.

A run's identity is what must not change between the interrupted run and the run that finishes it: the hardware
(its identity hash), the software stack, the workload (preset, data, image counts), the options that decide what a
case measures, and the commit. It goes into the journal's header and the results JSON (``fer_bench.run.identity``).
A resume on anything else is refused in one line that names what differs: its results would mix two runs.

What the resumed run keeps of the old one: every case that finished (passed, or skipped for a reason); a case that
failed or never finished runs again. Its results go into this run's JSON in collection order, each case once, with
the old run's interruptions recorded beside (``fer_bench.run.interruptions``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fer_bench.errors import FerBenchError
from fer_bench.plugin.journal import SUFFIX, journal_beside, read_journal

#: outcomes that need no second run
DONE = ("passed", "skipped")


@dataclass
class ResumeSource:
    """What an interrupted run left: its identity, its finished cases (journal entries) and its interruptions."""

    path: Path
    identity: dict
    cases: list[dict]
    interruptions: list[dict] = field(default_factory=list)

    @property
    def done(self) -> dict[str, dict]:
        return {case["nodeid"]: case for case in self.cases if case.get("outcome") in DONE}

    def results(self) -> list[dict]:
        """The pytest-benchmark results of its finished cases."""
        return [bench for case in self.done.values() for bench in case.get("benchmarks") or ()]


def load_source(path: Path) -> ResumeSource:
    """Read an interrupted run from its journal or its results JSON (whose journal, when it is beside it, holds the
    skipped cases too and survives a JSON cut short by a second Ctrl-C).

    Raises:
        FerBenchError: one line naming the file and what is wrong.
    """
    path = Path(path)
    if path.name.endswith(SUFFIX) or path.suffix == ".jsonl":
        header, cases, interruptions = read_journal(path)
        return ResumeSource(path, header.get("identity") or {}, cases, interruptions)
    beside = journal_beside(path)
    if beside.exists():
        return load_source(beside)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FerBenchError(f"{path}: not a readable results JSON ({exc}) and no journal beside it "
                            f"({beside.name})") from None
    run = ((data.get("fer_bench") or {}).get("run") or {}) if isinstance(data, dict) else {}
    if "identity" not in run:
        raise FerBenchError(f"{path}: no run identity in it (fer_bench.run.identity): not a results JSON of "
                            f"fer_bench 0.3 or later, so it cannot be resumed")
    cases = [{"nodeid": bench.get("fullname"), "outcome": "passed", "benchmarks": [bench]}
             for bench in data.get("benchmarks") or () if bench.get("fullname")]
    interruptions = list(run.get("interruptions") or []) + ([run["incomplete"]] if run.get("incomplete") else [])
    return ResumeSource(path, run["identity"], cases, interruptions)


def _short(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def identity_differences(old: dict, new: dict) -> list[str]:
    """What differs between two run identities, one phrase per difference (empty: the same run)."""
    from fer_bench.machine.identity import stack_changes

    out = []
    old_hw, new_hw = old.get("hardware") or {}, new.get("hardware") or {}
    if old_hw.get("identity_hash") != new_hw.get("identity_hash"):
        out.append(f"hardware: {old_hw.get('slug')} ({old_hw.get('identity_hash')}) there, "
                   f"{new_hw.get('slug')} ({new_hw.get('identity_hash')}) here")
    old_sw, new_sw = old.get("software") or {}, new.get("software") or {}
    if old_sw.get("stack_hash") != new_sw.get("stack_hash"):
        changes = stack_changes(old_sw, new_sw)
        out.append("software: " + (", ".join(changes) if changes else "another stack"))
    for part in ("workload", "options"):
        old_part, new_part = old.get(part) or {}, new.get(part) or {}
        for key in sorted(set(old_part) | set(new_part)):
            if old_part.get(key) != new_part.get(key):
                out.append(f"{part} {key}: {_short(old_part.get(key))} there, {_short(new_part.get(key))} here")
    old_commit, new_commit = old.get("commit") or {}, new.get("commit") or {}
    if old_commit != new_commit:
        def show(c: dict) -> str:
            return f"{(c.get('id') or 'none')[:10]}{' (dirty)' if c.get('dirty') else ''}"

        out.append(f"commit: {show(old_commit)} there, {show(new_commit)} here")
    return out


def run_identity(*, fingerprint: dict, options, commit: dict | None) -> dict:
    """This run's identity (``options``: the session's FerOptions)."""
    from fer_bench.machine.identity import create_stack_record

    stack = create_stack_record(fingerprint)
    data = options.data_path
    workload = {"preset": options.preset.name, "data": options.data_description,
                "epoch_images": options.epoch_images, "eval_images": options.preset.eval_images}
    if data is not None and Path(data).is_file():
        workload["data_bytes"] = Path(data).stat().st_size
    return {
        "hardware": {"identity_hash": fingerprint.get("identity_hash"), "slug": fingerprint.get("slug")},
        "software": {"stack_hash": stack["stack_hash"], "stack": stack["stack"]},
        "workload": workload,
        "options": {
            **{axis: list(values) for axis, values in sorted(options.overrides.items())},
            "round_time_s": options.preset.target_round_s, "repeats": options.repeats,
            "max_epochs": options.max_epochs, "target_accuracy": options.target_accuracy,
            "malloc": options.malloc, "peak_tflops": options.peak_tflops,
            "ddp": ",".join(f"{k}={v}" for k, v in sorted(options.ddp_options.items())) or None,
        },
        "commit": {"id": (commit or {}).get("id"), "dirty": bool((commit or {}).get("dirty"))},
    }
