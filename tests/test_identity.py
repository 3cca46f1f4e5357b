"""Tests of fer_bench.machine.identity: hardware identity and software stack, the schema 1 split, stack changes,
the sidecar's name, and how the results readers (runs, the native gate's baseline) use them.

Run: python -m pytest tests/test_identity.py -q
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fer_bench.machine import identity
from fer_bench.results import baseline
from fer_bench.results.runs import Machine, collect_result_paths, load_result, parse_fingerprint
from result_factory import create_fingerprint, create_run, create_stack, create_train_cases, write_run

REPO = Path(__file__).resolve().parent.parent
# the 2-core development VM's folder (named by its schema 1 slug, xeon-2c__cpu__torch2.14-cu13, or its new one)
XEON_2C = next(p for p in sorted((REPO / "results").glob("xeon-2c__cpu*")) if p.is_dir())


def _committed_fingerprints() -> list[Path]:
    """The committed sidecars of the 2-core development VM, under their legacy or their new name."""
    return sorted(p for p in XEON_2C.glob("*") if identity.is_sidecar(p))


# The facts fer_bench collected on that VM (its committed schema 1 fingerprints), as collect_* functions gather them.
XEON_2C_INFO = {
    "cpu": {"brand": "Intel(R) Xeon(R) Processor", "arch": "x86_64", "vendor": "GenuineIntel", "family": 6,
            "model": 167, "flags": ["sse4_2", "fma", "avx", "avx2", "avx512f", "avx512_bf16", "avx512_vnni",
                                    "amx_bf16", "amx_tile"],
            "sockets": 1, "physical_cores": 2, "logical_cores": 2, "effective_cpus": 2, "cgroup_cpu_quota": None,
            "governor": None, "usable_cpus": 2},
    "memory": {"total_bytes": 25 * 2**30, "total_gib": 24},
    "system": {"os": "Linux", "kernel": "6.18.44-fc-v669", "distro": "Debian GNU/Linux 12 (bookworm)",
               "python_version": "3.11.2", "python_implementation": "CPython"},
    "software": {"torch": "2.14.1+cu130", "torch_cuda": "13.0", "torch_hip": None, "cudnn": "9.24.0",
                 "malloc": "glibc-steady", "nvidia_driver_version": None, "numpy": "2.3.0"},
    "gpus": [],
}


# ------------------------------------------------------------------------------------------------ building
def test_hardware_identity_and_stack_from_collected_info():
    hardware, stack = identity.create_hardware_identity(XEON_2C_INFO), identity.create_stack(XEON_2C_INFO)
    assert set(hardware) == {"cpu", "memory_gib", "gpu_count", "gpus"}
    assert set(hardware["cpu"]) == set(identity.CPU_KEYS) and "governor" not in hardware["cpu"]
    assert hardware["memory_gib"] == 24 and hardware["gpu_count"] == 0
    assert stack == {"os": {"os": "Linux", "kernel": "6.18.44-fc-v669", "distro": "Debian GNU/Linux 12 (bookworm)"},
                     "python": "3.11", "python_implementation": "CPython", "gpu_driver_version": None,
                     "torch": "2.14.1+cu130", "torch_cuda": "13.0", "torch_hip": None, "cudnn": "9.24.0",
                     "malloc": "glibc-steady"}
    assert identity.make_slug(hardware) == "xeon-2c__cpu"


def test_an_isa_cap_makes_another_machine_and_uncapped_identities_keep_their_hash():
    """ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 on an AVX-512 machine runs like an AVX2 one: its runs must
    not share a storage folder or a gate with the machine's native runs; a machine without a cap hashes as before."""
    env = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": " AVX2 ", "OMP_NUM_THREADS": "2", "DNNL_MAX_CPU_ISA": ""}
    cap = identity.collect_isa_cap(env)
    assert cap == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert identity.collect_isa_cap({"OMP_NUM_THREADS": "2"}) == {}
    native = identity.create_hardware_identity(XEON_2C_INFO)
    capped = identity.create_hardware_identity({**XEON_2C_INFO, "cpu": {**XEON_2C_INFO["cpu"], "isa_cap": cap}})
    assert "isa_cap" not in native["cpu"]
    assert capped["cpu"]["isa_cap"] == cap and identity.hash_identity(capped) != identity.hash_identity(native)
    assert identity.make_slug(capped) == "xeon-2c-isa-avx2__cpu"
    mixed = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "ATEN_CPU_CAPABILITY": "avx2"}
    assert identity.isa_cap_label(mixed) == "isa-avx512-core-avx2" and identity.isa_cap_label({}) is None
    # the committed schema 1 runs of this VM (no cap recorded) still hash to the schema 2 hardware hash
    legacy, _ = identity.split_legacy_identity({"cpu": XEON_2C_INFO["cpu"], "memory_gib": 24, "gpus": []})
    assert identity.hash_identity(legacy) == identity.hash_identity(native)


def test_gpu_identity_keeps_model_memory_cc_and_mig_only():
    info = {**XEON_2C_INFO, "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1",
                                      "memory_total_gib": 80, "compute_capability": "9.0", "mig_mode": "disabled",
                                      "power_limit_w": 700.0}]}
    hardware = identity.create_hardware_identity(info)
    assert hardware["gpus"] == [{"name": "NVIDIA H100 80GB HBM3", "memory_total_gib": 80,
                                 "compute_capability": "9.0", "mig_mode": "disabled"}]
    assert identity.make_slug(hardware) == "xeon-2c__h100-80gb-x1"


# ------------------------------------------------------------------------------------------ schema 1 split
@pytest.mark.parametrize("path", _committed_fingerprints(), ids=lambda p: p.name[:4])
def test_committed_schema_1_fingerprint_splits_to_the_schema_2_hardware_hash(path):
    """An old run of this machine matches a new run of the same hardware: the committed identity, split, hashes
    as a schema 2 identity built from the same facts."""
    fp = json.loads(path.read_text())
    assert fp["schema"] == 1
    hardware, stack = identity.split_legacy_identity(fp["identity"])
    built = identity.create_hardware_identity(XEON_2C_INFO)
    assert hardware == built
    assert identity.hash_identity(hardware) == identity.hash_identity(built)
    assert identity.make_slug(hardware) == "xeon-2c__cpu"
    assert stack["torch"] == "2.14.1+cu130" and stack["os"]["kernel"] == "6.18.44-fc-v669"
    machine = parse_fingerprint(fp, str(path))
    assert machine.identity_hash == identity.hash_identity(built) != fp["identity_hash"]
    assert machine.slug == "xeon-2c__cpu" and machine.stack == stack
    assert machine.stack_hash == identity.hash_identity(stack)


def test_both_committed_runs_are_one_hardware_with_two_stacks():
    """0001 predates the malloc field, 0002 ran with the steady malloc: same hardware now, and the stack says why
    they differ."""
    runs = sorted((load_result(p) for p, _ in collect_result_paths([XEON_2C])), key=lambda r: r.path.name)
    assert [r.path.name[:4] for r in runs] == ["0001", "0002"]
    assert runs[0].machine == runs[1].machine and runs[0].machine.slug == "xeon-2c__cpu"
    assert identity.stack_changes(runs[0].machine, runs[1].machine) == ["malloc none -> glibc-steady"]
    built = identity.create_stack(XEON_2C_INFO)
    assert runs[1].machine.stack == built and runs[1].machine.stack_hash == identity.hash_identity(built)


def test_committed_gpu_run_without_sidecar_resolves_from_machine_info():
    path = next((REPO / "results").glob("xeon-16c__h100*/0001_*.json"))
    machine = load_result(path).machine
    assert machine.slug == "xeon-16c__h100-80gb-x1" and machine.identity["gpu_count"] == 1
    assert machine.stack["torch"] == "2.11.0+cu130" and machine.stack["gpu_driver_version"] == "580.159.04"


def test_split_tolerates_a_partial_legacy_identity():
    hardware, stack = identity.split_legacy_identity({"cpu": {"brand": "x"}, "gpus": [{"name": "A"}]})
    assert hardware["cpu"]["brand"] == "x" and hardware["gpu_count"] == 1 and hardware["gpus"][0]["mig_mode"] is None
    assert stack["torch"] is None and stack["os"] == {"os": None, "kernel": None, "distro": None}
    assert identity.split_legacy_identity(None)[0]["gpus"] == []


def test_normalize_schema_2_keeps_the_stored_values():
    fp = create_fingerprint("box-2c")
    norm = identity.normalize_fingerprint(fp)
    assert norm == {"slug": "box-2c", "identity_hash": fp["identity_hash"], "identity": fp["identity"],
                    "stack": fp["stack"], "stack_hash": fp["stack_hash"]}
    bare = identity.normalize_fingerprint({k: v for k, v in fp.items() if k not in ("stack", "stack_hash")})
    assert bare["stack"] == {} and bare["stack_hash"] is None


# --------------------------------------------------------------------------------------------- stack changes
def test_stack_changes_are_readable_lines():
    old = create_stack(torch="2.14.1+cu130", kernel="6.1", malloc="glibc", gpu_driver_version="550.54.15")
    new = create_stack(torch="2.15.0", kernel="6.8", malloc="glibc-steady", gpu_driver_version="570.86.10")
    assert identity.stack_changes(old, new) == [
        "kernel 6.1 -> 6.8", "gpu driver 550.54.15 -> 570.86.10", "torch 2.14.1+cu130 -> 2.15.0",
        "malloc glibc -> glibc-steady",
    ]
    assert identity.stack_changes(old, old) == []
    assert identity.stack_change_notes(old, new)[0] == "software stack changed since the baseline: kernel 6.1 -> 6.8"


def test_stack_changes_take_machines_fingerprints_and_records():
    a, b = create_stack(), create_stack(torch="2.15.0")
    machine = Machine(slug="x", identity_hash="h", identity={}, stack=a, stack_hash=identity.hash_identity(a))
    fp = create_fingerprint("x", stack=b)
    line = ["torch 2.14.1+cu130 -> 2.15.0"]
    assert identity.stack_changes(machine, fp) == line
    assert identity.stack_changes(identity.create_stack_record(fp), machine) == ["torch 2.15.0 -> 2.14.1+cu130"]
    assert identity.stack_changes(machine, {}) == [] and identity.stack_changes(Machine("u", "h", {}), fp) == []


def test_machine_equality_ignores_the_stack():
    a = Machine("x", "h", {}, stack=create_stack(), stack_hash="s1")
    b = Machine("x", "h", {}, stack=create_stack(torch="2.15.0"), stack_hash="s2")
    assert a == b and hash(a) == hash(b)


# ---------------------------------------------------------------------------------------------------- sidecar
def test_new_sidecar_name_is_not_globbed_as_json(tmp_path):
    results = tmp_path / "0001_abc.json"
    assert identity.sidecar_path(results).name == "0001_abc.fingerprint"
    assert not identity.sidecar_path(results).name.endswith(".json")


@pytest.mark.parametrize("legacy", [False, True])
def test_runs_read_either_sidecar_and_folder_scans_skip_both(tmp_path, legacy):
    fp = create_fingerprint("box-2c")
    write_run(tmp_path / "a.json", create_run(create_train_cases(0.01, seed=1), fp), sidecar=not legacy,
              legacy_sidecar=legacy)
    (tmp_path / "b.fingerprint").write_text("{}")  # an orphan sidecar of either name is never a run
    (tmp_path / "c.fingerprint.json").write_text("{}")
    assert [p.name for p, _ in collect_result_paths([tmp_path])] == ["a.json"]
    named = sorted(tmp_path.glob("*.json"))  # a shell glob: a legacy sidecar given by name is no run either
    assert [p.name for p, _ in collect_result_paths(named)] == ["a.json"]
    machine = load_result(tmp_path / "a.json").machine
    assert machine.identity_hash == fp["identity_hash"] and machine.stack_hash == fp["stack_hash"]


def test_top_level_stack_wins_over_the_sidecar(tmp_path):
    """The results JSON's own top-level stack is read first; the sidecar is the fallback."""
    fp = create_fingerprint("box-2c")
    doc = create_run(create_train_cases(0.01, seed=1), fp)
    path = write_run(tmp_path / "a.json", doc)
    other = create_stack(torch="9.9")
    identity.sidecar_path(path).write_text(json.dumps({**fp, "stack": other, "stack_hash": "x" * 16}))
    assert load_result(path).machine.stack == fp["stack"]
    del doc["fer_bench"]
    path.write_text(json.dumps(doc))
    machine = load_result(path).machine
    assert machine.stack == other and machine.stack_hash == "x" * 16


def test_schema_2_run_without_any_stack_has_an_unknown_stack(tmp_path):
    doc = create_run(create_train_cases(0.01, seed=1), create_fingerprint("box-2c"))
    del doc["fer_bench"]
    machine = load_result(write_run(tmp_path / "a.json", doc)).machine
    assert machine.stack == {} and machine.stack_hash is None and machine.known


# -------------------------------------------------------------------------------------- native gate baseline
def _store(root: Path, name: str, fp: dict, when: str, **kw) -> Path:
    return write_run(root / fp["slug"] / name, create_run(create_train_cases(0.01, seed=1), fp, when=when), **kw)


def test_baseline_matches_hardware_across_stacks_and_schemas(tmp_path):
    hardware = identity.create_hardware_identity(XEON_2C_INFO)
    legacy = create_fingerprint("xeon-2c__cpu", hardware, schema=1)
    old_stack = create_fingerprint("xeon-2c__cpu", hardware, stack=create_stack(torch="2.14.1+cu130"))
    other = create_fingerprint("epyc-64c__cpu", {"cpu": {"brand": "EPYC"}, "gpus": []})
    _store(tmp_path, "0001.json", legacy, "2026-01-01T00:00:00", legacy_sidecar=True)
    _store(tmp_path, "0002.json", old_stack, "2026-01-02T00:00:00", sidecar=True)
    _store(tmp_path, "0003.json", other, "2026-01-03T00:00:00")
    runs = baseline.list_stored_runs(tmp_path)
    assert [r.path.name for r in runs] == ["0001.json", "0002.json", "0003.json"]
    assert runs[0].identity_hash == runs[1].identity_hash == identity.hash_identity(hardware)
    assert runs[0].slug == "xeon-2c__cpu" and runs[0].stack == runs[1].stack

    upgraded = create_fingerprint("xeon-2c__cpu", hardware, stack=create_stack(torch="2.15.0+cu130"))
    chosen, problem = baseline.select_baseline(runs, upgraded["identity_hash"], allow_other_machine=False)
    assert problem is None and chosen.path.name == "0002.json"
    assert baseline.list_stack_notes(chosen, upgraded) == [
        "software stack changed since the baseline: torch 2.14.1+cu130 -> 2.15.0+cu130"]
    assert baseline.list_stack_notes(chosen, old_stack) == []

    new_gpu = create_fingerprint("xeon-2c__h100", {"cpu": {"brand": "Xeon"}, "gpus": [{"name": "H100"}]})
    chosen, problem = baseline.select_baseline(runs, new_gpu["identity_hash"], allow_other_machine=False)
    assert chosen is None and "no stored run of this hardware" in problem


def test_baseline_reads_the_top_level_stack(tmp_path):
    fp = create_fingerprint("box-2c", stack=create_stack(malloc="glibc"))
    _store(tmp_path, "0001.json", fp, "2026-01-01T00:00:00")
    (run,) = baseline.list_stored_runs(tmp_path)
    assert run.stack["malloc"] == "glibc" and run.stack_hash == fp["stack_hash"]


# ------------------------------------------------------------------------------------------------- torch-free
def test_identity_and_runs_import_no_torch():
    code = ("import sys, fer_bench.results.runs, fer_bench.results.baseline, fer_bench.machine.identity; "
            "print([m for m in ('torch', 'pynvml', 'cpuinfo') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
