"""The native gate's baseline: the latest stored run of the same hardware, and fail-closed checks.

pytest-benchmark's ``--benchmark-compare`` takes the newest file of its storage folder, whatever machine made it,
and ``--benchmark-compare-fail`` passes silently for a case the baseline lacks. Here the baseline is the newest
stored run whose fingerprint has this machine's (hardware) identity hash (searched under the whole storage root, so
a renamed slug still matches: a schema 1 run's hash is recomputed from its hardware), and a case without a baseline
entry fails the session unless the user opts out. A baseline of the same hardware with another software stack is
used; :func:`list_stack_notes` says what changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fer_bench.machine.identity import (
    find_sidecar,
    hash_identity,
    is_sidecar,
    normalize_fingerprint,
    stack_change_notes,
)


@dataclass(frozen=True)
class StoredRun:
    path: Path
    datetime: str
    identity_hash: str | None
    slug: str | None
    stack: dict = field(default_factory=dict, compare=False)
    stack_hash: str | None = None
    identity: dict = field(default_factory=dict, compare=False)


def _read_fingerprint(path: Path | None) -> dict:
    try:
        fp = json.loads(path.read_text()) if path is not None else {}
    except (OSError, ValueError):
        return {}
    return fp if isinstance(fp, dict) else {}


def _identity(path: Path, data: dict) -> dict[str, Any]:
    """The run's slug, identity_hash, stack and stack_hash (a schema 1 fingerprint split and rehashed); {} without
    a fingerprint. The hardware comes from machine_info["fer_bench"], else the sidecar; the stack from the
    document's top-level "fer_bench" key, else the sidecar, else the schema 1 identity."""
    fer = (data.get("machine_info") or {}).get("fer_bench") or {}
    sidecar = find_sidecar(path)
    sidecar_fp = None
    if not isinstance(fer, dict) or not fer.get("identity_hash"):
        fer = sidecar_fp = _read_fingerprint(sidecar)
    if not fer.get("identity_hash"):
        return {}
    found = normalize_fingerprint(fer)
    record = data.get("fer_bench")
    if not (isinstance(record, dict) and isinstance(record.get("stack"), dict)):
        record = sidecar_fp if sidecar_fp is not None else _read_fingerprint(sidecar)
    if isinstance(record.get("stack"), dict):
        stack, stack_hash = record["stack"], record.get("stack_hash")
        found["stack"] = stack
        found["stack_hash"] = stack_hash if isinstance(stack_hash, str) else hash_identity(stack) if stack else None
    return found


def list_stored_runs(root: Path, name_filter: str | None = None) -> list[StoredRun]:
    """Every stored results file under ``root`` (sidecars and unreadable files left out), oldest first."""
    runs = []
    for path in sorted(Path(root).rglob("*.json")):
        if is_sidecar(path):
            continue
        if name_filter and not path.name.startswith(name_filter):
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or "benchmarks" not in data:
            continue
        found = _identity(path, data)
        runs.append(StoredRun(path, str(data.get("datetime", "")), found.get("identity_hash"), found.get("slug"),
                              found.get("stack") or {}, found.get("stack_hash"), found.get("identity") or {}))
    return sorted(runs, key=lambda r: (r.datetime, str(r.path)))


def select_baseline(runs: list[StoredRun], identity_hash: str, *, allow_other_machine: bool
                    ) -> tuple[StoredRun | None, str | None]:
    """The newest run of this hardware identity, whatever its software stack; else (when allowed) the newest of
    any. Returns (run, problem)."""
    same = [r for r in runs if r.identity_hash == identity_hash]
    if same:
        return same[-1], None
    if not runs:
        return None, "no stored run to compare with"
    others = ", ".join(sorted({r.slug or "unknown" for r in runs}))
    if allow_other_machine:
        return runs[-1], None
    return None, (f"no stored run of this hardware (identity {identity_hash}); the stored runs come from other "
                  f"hardware ({others}): pass --fer-allow-other-machine to compare with them anyway")


def list_stack_notes(baseline: StoredRun, fingerprint: dict) -> list[str]:
    """What changed in the software stack between the chosen baseline and this run's fingerprint, a line each:
    ``software stack changed since the baseline: torch 2.14.1 -> 2.15.0`` (the lines `fer-bench gate` prints).
    [] when the stacks agree or either is unknown."""
    return stack_change_notes(baseline.stack, fingerprint)


def missing_cases(current: list[str], baseline: set[str]) -> list[str]:
    """Current benchmark fullnames the baseline has no entry for, in run order."""
    return [name for name in current if name not in baseline]
