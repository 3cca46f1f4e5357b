"""Load and validate stored pytest-benchmark results, and match their cases across runs.

Shared by `fer-bench compare` and `fer-bench gate`. Reads JSON only: never imports torch.

A run is one pytest-benchmark JSON file (``--benchmark-json`` or ``--benchmark-autosave``). Its machine comes from
``machine_info["fer_bench"]`` (the hardware identity the plugin writes), else from the sidecar ``NAME.fingerprint``
(or the legacy ``NAME.fingerprint.json``) beside ``NAME.json``, else it is an *unknown* machine identified by
pytest-benchmark's own ``machine_info`` (node, architecture, CPU brand and count). Its software stack comes from the
document's top-level ``"fer_bench"`` key, else the sidecar, else (schema 1) the split of the old identity: see
fer_bench.machine.identity.

A case is matched across runs by the benchmark function (the name up to ``[``) and its ``params`` dict, never by
the parametrize id string, so a reordered or reworded id does not break matching.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fer_bench.axes import SCALING_MODES, match_params, order_axes, split_case_name
from fer_bench.errors import FerBenchError
from fer_bench.results.format import is_number
from fer_bench.workload import workload_of
from fer_bench.machine.identity import (
    _slugify,
    distinguish_identities,
    distinguished_slug,
    find_sidecar,
    hash_identity,
    is_sidecar,
    normalize_fingerprint,
)

#: fer_bench fingerprint schemas this version reads (1: one identity of hardware and software, split on reading).
SUPPORTED_SCHEMAS = frozenset({1, 2})
_TOP_LEVEL_KEYS = ("machine_info", "benchmarks")

ParamsKey = tuple[tuple[str, str], ...]
#: How a step was shared across devices, by the names runs have written (older runs: data_parallel).
PARALLEL_NAMES = {"none": "none", "dp": "dp", "data_parallel": "dp", "ddp": "ddp",
                  "distributed_data_parallel": "ddp"}


@dataclass(frozen=True)
class Machine:
    """The hardware a run was measured on, and the software stack it ran.

    Equal Machines are the same hardware (their identity hashes); the stack does not take part.

    Attributes:
        slug: readable name of the hardware, e.g. ``epyc-7763-2c__h100-80gb-x1``; ``unknown-<node>`` without a
            fer_bench fingerprint.
        identity_hash: the hash of the hardware identity; ``unknown:<hash of machine_info>`` without a fingerprint.
        identity: the nested hardware identity (pytest-benchmark's node/cpu facts for an unknown machine).
        known: whether the run carries a fer_bench fingerprint.
        stack: the software stack (OS, kernel, Python, driver, torch / CUDA / cuDNN, malloc); {} when unknown.
        stack_hash: the stack's hash; None when unknown.
    """

    slug: str
    identity_hash: str
    identity: dict = field(hash=False, compare=False)
    known: bool = True
    stack: dict = field(default_factory=dict, hash=False, compare=False)
    stack_hash: str | None = field(default=None, hash=False, compare=False)


@dataclass(frozen=True)
class CaseKey:
    """What matches a case across runs: the benchmark function and its params (an axis added later, at the value
    runs made before it used, left out: fer_bench.axes.match_params). ``work`` tells apart cases of one function
    and params that did different work (see fer_bench.workload); empty where a reader has not split them."""

    function: str
    params: ParamsKey
    work: str = ""

    def without(self, *axes: str) -> CaseKey:
        """The same key with some axes dropped (e.g. ``device`` when the device belongs to the platform)."""
        return CaseKey(self.function, tuple((k, v) for k, v in self.params if k not in axes), self.work)


@dataclass(frozen=True)
class CaseResult:
    """One benchmark entry of one run."""

    key: CaseKey
    name: str
    group: str | None
    fullname: str
    params: dict = field(hash=False, compare=False)
    extra_info: dict = field(hash=False, compare=False)
    stats: dict = field(hash=False, compare=False)
    data: np.ndarray | None = field(hash=False, compare=False, repr=False)
    workload: dict | None = field(default=None, hash=False, compare=False)
    workload_inferred: bool = field(default=False, hash=False, compare=False)

    @property
    def median_s(self) -> float:
        """Median seconds per round (one call of the timed function)."""
        return float(self.stats["median"])

    @property
    def rounds(self) -> int:
        return int(self.stats.get("rounds") or (0 if self.data is None else len(self.data)))

    @property
    def samples_per_s(self) -> float | None:
        """Throughput: ``extra_info["samples_per_s"]`` (global samples per second, as the run measured it), else,
        for an older run without it, the global batch over the median round time."""
        if self.samples_per_s_recorded:
            return float(self.extra_info["samples_per_s"])
        batch = self.global_batch_size
        if batch is None or self.median_s <= 0:
            return None
        return batch / self.median_s

    @property
    def samples_per_s_recorded(self) -> bool:
        """Whether the run recorded its throughput (else :attr:`samples_per_s` is inferred)."""
        value = self.extra_info.get("samples_per_s")
        return is_number(value) and value > 0

    @property
    def parallel(self) -> str:
        """How the step was shared: ``none``, ``dp`` (nn.DataParallel) or ``ddp`` (DistributedDataParallel).

        From ``params["parallel"]``, else ``extra_info["parallel"]`` (older runs wrote ``data_parallel`` for dp),
        else inferred: dp above one GPU (the only multi-GPU mode fer_bench had before ddp), none otherwise.
        """
        return self._recorded_parallel() or ("dp" if self.world_size > 1 else "none")

    @property
    def parallel_recorded(self) -> bool:
        """Whether params or extra_info name the parallel mode (else :attr:`parallel` is inferred)."""
        return self._recorded_parallel() is not None

    def _recorded_parallel(self) -> str | None:
        for value in (self.params.get("parallel"), self.extra_info.get("parallel")):
            if isinstance(value, str) and value.strip().lower() in PARALLEL_NAMES:
                return PARALLEL_NAMES[value.strip().lower()]
        return None

    @property
    def world_size(self) -> int:
        """Devices or processes sharing one step: ``extra_info["world_size"]``, else ``params["num_gpus"]``
        (for ddp the number of processes), else 1."""
        for value in (self.extra_info.get("world_size"), self.params.get("num_gpus")):
            if is_number(value) and value >= 1:
                return int(value)
        return 1

    @property
    def scaling_mode(self) -> str:
        """``weak`` (per-device batch fixed) or ``strong`` (global batch fixed, split over the devices).

        From ``params["scaling"]``, else ``extra_info["scaling_mode"]``; an older DataParallel run that recorded
        neither nor its global batch split batch_size over the GPUs, so it is strong; otherwise weak.
        """
        for value in (self.params.get("scaling"), self.extra_info.get("scaling_mode")):
            if value in SCALING_MODES:
                return value
        if self.parallel == "dp" and self.global_batch_inferred:
            return "strong"
        return "weak"

    @property
    def global_batch_size(self) -> int | None:
        """Samples per step over all devices: ``extra_info["global_batch_size"]``; for an older run without it,
        batch_size where the batch was split (nn.DataParallel, or strong scaling), else batch_size x world size."""
        value = self.extra_info.get("global_batch_size")
        if is_number(value) and value > 0:
            return int(value)
        batch = self.params.get("batch_size")
        if not is_number(batch):
            return None
        split = self.parallel == "dp" or self.params.get("scaling") == "strong" \
            or self.extra_info.get("scaling_mode") == "strong"
        return int(batch) if split else int(batch) * self.world_size

    @property
    def global_batch_inferred(self) -> bool:
        """Whether :attr:`global_batch_size` was inferred from the params (a run that did not record it)."""
        value = self.extra_info.get("global_batch_size")
        return not (is_number(value) and value > 0) and is_number(self.params.get("batch_size"))


@dataclass(frozen=True)
class RunResult:
    """One stored pytest-benchmark run."""

    path: Path
    machine: Machine
    datetime: datetime | None
    cases: tuple[CaseResult, ...]
    #: the JSON's ``fer_bench.run`` record (preset, data, launch, node ...); {} for a run without one
    run_info: dict = field(default_factory=dict, hash=False, compare=False)
    #: the node the run was made on (see :func:`resolve_node`), and where that name came from
    node: str = ""
    node_source: str = ""

    @property
    def sort_key(self) -> tuple:
        """Chronological order; runs without a datetime sort first, then by path."""
        stamp = self.datetime or datetime.min.replace(tzinfo=timezone.utc)
        return (stamp, str(self.path))


def collect_result_paths(paths: Sequence[str | Path]) -> list[tuple[Path, bool]]:
    """Expand files and folders (searched recursively) into result JSON paths, skipping fingerprint sidecars
    (``NAME.fingerprint`` and the legacy ``NAME.fingerprint.json``, named or found).

    Returns:
        (path, named) pairs: named is True for a file given by name, False for one found in a folder.

    Raises:
        FerBenchError: a path does not exist, or a folder holds no JSON file.
    """
    found: list[tuple[Path, bool]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*.json") if p.is_file() and not is_sidecar(p))
            if not inside:
                raise FerBenchError(f"{path}: folder holds no pytest-benchmark result (*.json)")
            found.extend((p, False) for p in inside)
        elif path.is_file():
            if not is_sidecar(path):  # a shell glob such as 0001_*.json also matches a legacy sidecar
                found.append((path, True))
        else:
            raise FerBenchError(f"{path}: no such file or folder")
    # the same file named twice (a file and its folder) would count its rounds twice
    unique: dict[Path, tuple[Path, bool]] = {}
    for p, named in found:
        key = p.resolve()
        unique[key] = (p, named or unique.get(key, (p, False))[1])
    return list(unique.values())


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FerBenchError(f"{path}: cannot read {what}: {exc}") from None
    if not text.strip():
        raise FerBenchError(f"{path}: empty file, not a {what} (a run with --benchmark-disable writes one)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FerBenchError(
            f"{path}: line {exc.lineno}: malformed or truncated JSON ({exc.msg}), not a {what}"
        ) from None


def parse_fingerprint(fp: Any, source: str) -> Machine:
    """Validate a fer_bench fingerprint dict and turn it into a :class:`Machine`.

    A schema 1 fingerprint is split into hardware and stack (``split_legacy_identity``), its identity hash and
    slug recomputed from the hardware, so an old run matches a new run of the same hardware.

    Raises:
        FerBenchError: not a dict, an unsupported schema, or no slug / identity_hash.
    """
    if not isinstance(fp, dict):
        raise FerBenchError(f"{source}: the fer_bench fingerprint is not a JSON object")
    schema = fp.get("schema")
    if schema not in SUPPORTED_SCHEMAS:
        raise FerBenchError(
            f"{source}: fer_bench fingerprint schema {schema!r} is not one this fer_bench reads "
            f"({', '.join(map(str, sorted(SUPPORTED_SCHEMAS)))}); use the fer_bench version that wrote it"
        )
    slug, identity_hash = fp.get("slug"), fp.get("identity_hash")
    if not isinstance(slug, str) or not slug or not isinstance(identity_hash, str) or not identity_hash:
        raise FerBenchError(f"{source}: the fer_bench fingerprint lacks a slug or identity_hash")
    norm = normalize_fingerprint(fp)
    return Machine(slug=norm["slug"], identity_hash=norm["identity_hash"], identity=norm["identity"],
                   stack=norm["stack"], stack_hash=norm["stack_hash"])


def _unknown_machine(machine_info: dict) -> Machine:
    """A machine known only from pytest-benchmark's machine_info (a plain pytest-benchmark file)."""
    cpu = machine_info.get("cpu") if isinstance(machine_info.get("cpu"), dict) else {}
    identity = {
        "node": machine_info.get("node"),
        "machine": machine_info.get("machine"),
        "system": machine_info.get("system"),
        "cpu": {"brand_raw": cpu.get("brand_raw"), "count": cpu.get("count")},
    }
    label = machine_info.get("node") or cpu.get("brand_raw") or "machine"
    return Machine(
        slug=f"unknown-{_slugify(str(label)) or 'machine'}",
        identity_hash=f"unknown:{hash_identity(identity)}",
        identity=identity,
        known=False,
    )


def _resolve_machine(path: Path, machine_info: dict, doc: dict | None = None) -> Machine:
    """The run's hardware (machine_info, else the sidecar) and its stack (the document's top-level ``fer_bench``,
    else the sidecar, else the schema 1 identity's split)."""
    sidecar = find_sidecar(path)
    sidecar_fp = None
    if "fer_bench" in machine_info:
        machine = parse_fingerprint(machine_info["fer_bench"], f"{path}: machine_info.fer_bench")
    elif sidecar is not None:
        sidecar_fp = _read_json(sidecar, "fer_bench fingerprint")
        machine = parse_fingerprint(sidecar_fp, str(sidecar))
    else:
        return _unknown_machine(machine_info)
    record = (doc or {}).get("fer_bench")
    if record is not None:
        if not isinstance(record, dict) or not isinstance(record.get("stack"), dict):
            raise FerBenchError(f"{path}: the top-level fer_bench key holds no software stack (a stack object)")
        return _with_stack(machine, record)
    if sidecar is not None and sidecar_fp is None:
        try:
            sidecar_fp = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            sidecar_fp = None  # the hardware came from machine_info: a bad sidecar costs only its stack
    if isinstance(sidecar_fp, dict) and isinstance(sidecar_fp.get("stack"), dict):
        return _with_stack(machine, sidecar_fp)
    return machine  # parse_fingerprint's: the schema 1 split, or {} for a schema 2 run without a stack


def _with_stack(machine: Machine, record: dict) -> Machine:
    """``machine`` with the stack of a stack record or fingerprint (its hash recomputed when absent)."""
    stack = record["stack"]
    stack_hash = record.get("stack_hash") if isinstance(record.get("stack_hash"), str) else None
    return dataclasses.replace(machine, stack=stack,
                               stack_hash=stack_hash or (hash_identity(stack) if stack else None))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _parse_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


def _parse_case(path: Path, index: int, bench: Any) -> CaseResult:
    where = f"{path}: benchmarks[{index}]"
    if not isinstance(bench, dict) or not isinstance(bench.get("name"), str):
        raise FerBenchError(f"{where} is not a pytest-benchmark entry (no name)")
    name = bench["name"]
    stats = bench.get("stats")
    if not isinstance(stats, dict) or not is_number(stats.get("median")):
        raise FerBenchError(f"{where} ({name}) is not a pytest-benchmark entry: no stats.median")
    params = bench.get("params") or {}
    extra = bench.get("extra_info") or {}
    if not isinstance(params, dict) or not isinstance(extra, dict):
        raise FerBenchError(f"{where} ({name}): params and extra_info must be JSON objects")
    data = stats.get("data")
    array = None
    if data is not None:
        if not isinstance(data, list) or not all(is_number(v) and v >= 0 for v in data):
            raise FerBenchError(f"{where} ({name}): stats.data must be a list of non-negative seconds")
        array = np.asarray(data, dtype=float)
    key = CaseKey(split_case_name(name)[0],
                  tuple(sorted((str(k), _canonical(v)) for k, v in match_params(params).items())))
    workload, inferred = workload_of(extra)
    group, fullname = bench.get("group"), bench.get("fullname")
    return CaseResult(
        key=key,
        name=name,
        group=group if isinstance(group, str) else None,
        fullname=fullname if isinstance(fullname, str) else name,
        params=params,
        extra_info=extra,
        stats=stats,
        data=array,
        workload=workload,
        workload_inferred=inferred,
    )


def load_result(path: str | Path, *, named: bool = True) -> RunResult | None:
    """Read and validate one pytest-benchmark JSON.

    Args:
        named: the user named this file. A file found in a folder that is valid JSON but plainly not a
            pytest-benchmark result (no machine_info and benchmarks keys, e.g. a summary) is skipped (None).

    Raises:
        FerBenchError: unreadable, empty, malformed or truncated JSON; not a pytest-benchmark result; an
            unsupported fer_bench schema; a malformed benchmark entry.
    """
    path = Path(path)
    doc = _read_json(path, "pytest-benchmark result")
    if not isinstance(doc, dict) or any(k not in doc for k in _TOP_LEVEL_KEYS):
        if not named and (not isinstance(doc, dict) or not any(k in doc for k in _TOP_LEVEL_KEYS)):
            return None
        raise FerBenchError(f"{path}: not a pytest-benchmark result (no machine_info and benchmarks keys)")
    machine_info, benchmarks = doc["machine_info"], doc["benchmarks"]
    if not isinstance(machine_info, dict) or not isinstance(benchmarks, list):
        raise FerBenchError(f"{path}: not a pytest-benchmark result (machine_info or benchmarks malformed)")
    machine = _resolve_machine(path, machine_info, doc)
    cases = [_parse_case(path, i, b) for i, b in enumerate(benchmarks)]
    cases = _disambiguate(cases)
    record = doc.get("fer_bench") if isinstance(doc.get("fer_bench"), dict) else {}
    run_info = record.get("run") if isinstance(record.get("run"), dict) else {}
    node, source = resolve_node(path, run_info, machine_info)
    return RunResult(path=path, machine=machine, datetime=_parse_datetime(doc.get("datetime")), cases=tuple(cases),
                     run_info=run_info, node=node, node_source=source)


def resolve_node(path: Path, run_info: dict, machine_info: dict) -> tuple[str, str]:
    """The name of the node a run was made on, and where it came from: the run record's ``node`` (SLURM's node
    name or --fer-node), else the sidecar's hostname, else pytest-benchmark's ``machine_info.node`` (the
    hostname too), else the file's name."""
    node = run_info.get("node")
    if isinstance(node, str) and node.strip():
        return node.strip(), "run record"
    sidecar = find_sidecar(path)
    if sidecar is not None:
        try:
            host = json.loads(sidecar.read_text(encoding="utf-8")).get("hostname")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            host = None
        if isinstance(host, str) and host.strip():
            return host.strip(), "sidecar hostname"
    host = machine_info.get("node")
    if isinstance(host, str) and host.strip():
        return host.strip(), "machine_info hostname"
    return path.stem, "file name"


def _disambiguate(cases: list[CaseResult]) -> list[CaseResult]:
    """Two modules may hold a function of the same name and params: key those by the module path too."""
    seen: dict[CaseKey, int] = {}
    for case in cases:
        seen[case.key] = seen.get(case.key, 0) + 1
    out = []
    for case in cases:
        if seen[case.key] > 1:
            module = case.fullname.split("::", 1)[0] if "::" in case.fullname else ""
            function = f"{module}::{case.key.function}" if module else case.key.function
            case = dataclasses.replace(case, key=CaseKey(function, case.key.params))
        out.append(case)
    return out


def load_results(paths: Sequence[str | Path], *, exclude: Sequence[Path] = ()) -> list[RunResult]:
    """Load every result under ``paths`` (files or folders), oldest first.

    Args:
        exclude: files to leave out (the gate's current run when it sits in the baseline folder).

    Raises:
        FerBenchError: as :func:`load_result`, or when no result holds any benchmark.
    """
    skip = {Path(p).resolve() for p in exclude}
    runs = []
    for path, named in collect_result_paths(paths):
        if path.resolve() in skip:
            continue
        run = load_result(path, named=named)
        if run is not None:
            runs.append(run)
    shown = ", ".join(str(p) for p in paths)
    if not runs:
        raise FerBenchError(f"{shown}: no pytest-benchmark result here")
    if not any(run.cases for run in runs):
        raise FerBenchError(f"{shown}: no benchmarks in these results (was the run made with --benchmark-disable?)")
    return sorted(runs, key=lambda r: r.sort_key)


def parse_params_key(key: CaseKey) -> dict[str, Any]:
    """The params dict back from a key."""
    return {k: json.loads(v) for k, v in key.params}


def format_case(key: CaseKey) -> str:
    """A readable, stable label: ``test_train_step[model=resnet18, batch_size=64, precision=fp32]``."""
    params = parse_params_key(key)
    if not params:
        return key.function
    return f"{key.function}[{', '.join(f'{k}={params[k]}' for k in order_axes(params))}]"


def flatten_dict(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists as ``{"cpu.brand": ..., "gpus.0.name": ...}``."""
    # empty containers flatten to nothing: "no GPU" then differs from "a GPU" at gpus.0.name, not at gpus
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten_dict(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, list):
        out = {}
        for i, v in enumerate(obj):
            out.update(flatten_dict(v, f"{prefix}.{i}" if prefix else str(i)))
        return out
    return {prefix: obj}


def label_hardware(machines: Sequence[Machine]) -> dict[str, str]:
    """A label per hardware identity hash: the slug; where identities share a slug, the slug with what tells them
    apart (``epyc-2c__cpu~f25m17``: the CPU family and model, else the instruction-set level, else the hash's first
    6 digits; fer_bench.machine.identity.distinguish_identities), the name their storage folders get too."""
    hardware: dict[str, Machine] = {}
    for m in machines:
        hardware.setdefault(m.identity_hash, m)
    by_slug: dict[str, dict[str, dict]] = {}
    for h, m in hardware.items():
        by_slug.setdefault(m.slug, {})[h] = m.identity
    labels = {}
    for slug, identities in by_slug.items():
        parts = distinguish_identities(identities) if len(identities) > 1 else {}
        labels.update({h: distinguished_slug(slug, parts[h]) if parts else slug for h in identities})
    return labels


def label_machines(machines: Sequence[Machine]) -> dict[tuple[str, str | None], str]:
    """A label per (identity_hash, stack_hash): the hardware's (:func:`label_hardware`), then ``@<first 6 stack
    hash digits>`` where one hardware ran several software stacks."""
    stacks: dict[str, list[str | None]] = {}
    for m in machines:
        if m.stack_hash not in stacks.setdefault(m.identity_hash, []):
            stacks[m.identity_hash].append(m.stack_hash)
    hardware = label_hardware(machines)
    labels = {}
    for h, base in hardware.items():
        for stack_hash in stacks[h]:
            several = len(stacks[h]) > 1
            labels[(h, stack_hash)] = f"{base}@{(stack_hash or 'unknown')[:6]}" if several else base
    return labels


def list_stack_differences(machines: Sequence[Machine]) -> list[tuple[str, dict[str, Any]]]:
    """Dotted software-stack paths whose values differ between the (hardware, stack) pairs, with each one's value
    (label from :func:`label_machines` -> value). Machines without a recorded stack are left out."""
    labels = label_machines(machines)
    unique: dict[tuple[str, str | None], Machine] = {}
    for m in machines:
        if m.stack:
            unique.setdefault((m.identity_hash, m.stack_hash), m)
    if len(unique) < 2:
        return []
    flat = {k: flatten_dict(m.stack) for k, m in unique.items()}
    diffs = []
    for path in sorted(set().union(*(f.keys() for f in flat.values()))):
        values = {labels[k]: flat[k].get(path) for k in unique}
        if len({_canonical(v) for v in values.values()}) > 1:
            diffs.append((path, values))
    return diffs


def list_identity_differences(machines: Sequence[Machine]) -> list[tuple[str, dict[str, Any]]]:
    """Dotted hardware identity paths whose values differ between machines, with each machine's value
    (label -> value).

    The label is :func:`label_hardware`'s (as in compare's columns). A path one machine lacks shows as None for it.
    """
    unique: dict[str, Machine] = {}
    for m in machines:
        unique.setdefault(m.identity_hash, m)
    if len(unique) < 2:
        return []
    labels = label_hardware(list(unique.values()))
    flat = {h: flatten_dict(m.identity) for h, m in unique.items()}
    paths = sorted(set().union(*(f.keys() for f in flat.values())))
    diffs = []
    for path in paths:
        values = {labels[h]: flat[h].get(path) for h in unique}
        if len({_canonical(v) for v in values.values()}) > 1:
            diffs.append((path, values))
    return diffs
