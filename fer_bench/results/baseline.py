"""The native gate's baseline: the latest stored run of the same hardware, and fail-closed checks.

pytest-benchmark's ``--benchmark-compare`` takes the newest file of its storage folder, whatever machine made it,
and ``--benchmark-compare-fail`` passes silently for a case the baseline lacks. Here the baseline is the newest
stored run whose fingerprint has this machine's identity hash (searched under the whole storage root, so a
renamed slug still matches), and a case without a baseline entry fails the session unless the user opts out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StoredRun:
    path: Path
    datetime: str
    identity_hash: str | None
    slug: str | None


def _identity(path: Path, data: dict) -> tuple[str | None, str | None]:
    fer = (data.get("machine_info") or {}).get("fer_bench") or {}
    if not fer.get("identity_hash"):
        sidecar = path.with_name(path.stem + ".fingerprint.json")
        try:
            fer = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            fer = {}
    return fer.get("identity_hash"), fer.get("slug")


def list_stored_runs(root: Path, name_filter: str | None = None) -> list[StoredRun]:
    """Every stored results file under ``root`` (sidecars and unreadable files left out), oldest first."""
    runs = []
    for path in sorted(Path(root).rglob("*.json")):
        if path.name.endswith(".fingerprint.json"):
            continue
        if name_filter and not path.name.startswith(name_filter):
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or "benchmarks" not in data:
            continue
        identity_hash, slug = _identity(path, data)
        runs.append(StoredRun(path, str(data.get("datetime", "")), identity_hash, slug))
    return sorted(runs, key=lambda r: (r.datetime, str(r.path)))


def select_baseline(runs: list[StoredRun], identity_hash: str, *, allow_other_machine: bool
                    ) -> tuple[StoredRun | None, str | None]:
    """The newest run of this identity; else (when allowed) the newest of any. Returns (run, problem)."""
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


def missing_cases(current: list[str], baseline: set[str]) -> list[str]:
    """Current benchmark fullnames the baseline has no entry for, in run order."""
    return [name for name in current if name not in baseline]
