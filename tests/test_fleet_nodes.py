"""The fleet's names: the node each run records (--fer-node, FER_BENCH_NODE, SLURMD_NODENAME, the hostname) and
saves under, and hardware identities that share a slug (two EPYC VM generations) told apart in folders and tables.

Run: python -m pytest tests/test_fleet_nodes.py -q
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from fer_bench.cli import main
from fer_bench.machine import identity
from fer_bench.machine.node import node_file_part, parse_node_name, resolve_node
from fer_bench.results.folders import choose_storage_folder
from fer_bench.results.runs import load_results, label_machines
from result_factory import create_fingerprint, create_run, create_train_cases, write_run

pytest_plugins = ["pytester"]

NODE_VARS = ("FER_BENCH_NODE", "SLURMD_NODENAME")


# ------------------------------------------------------------------------------------------------ node names
@pytest.mark.parametrize("option, env, expected", [
    ("n-opt", {"FER_BENCH_NODE": "n-env", "SLURMD_NODENAME": "n-slurm"}, ("n-opt", "option")),
    (None, {"FER_BENCH_NODE": "n-env", "SLURMD_NODENAME": "n-slurm"}, ("n-env", "env")),
    (None, {"FER_BENCH_NODE": " ", "SLURMD_NODENAME": "n-slurm"}, ("n-slurm", "slurm")),
])
def test_the_node_name_comes_from_the_option_the_variable_or_slurm(option, env, expected):
    assert resolve_node(option, env) == expected


def test_without_any_the_node_is_the_hostname(monkeypatch):
    monkeypatch.setattr("socket.gethostname", lambda: "host-7")
    assert resolve_node(None, {}) == ("host-7", "hostname")


@pytest.mark.parametrize("text", ["a/b", "-x", "node 1", "n" * 65, "n:1"])
def test_a_hand_given_node_name_fits_a_file_name(text):
    with pytest.raises(ValueError, match=r"^FER_BENCH_NODE: .* is not a node name \(letters, digits"):
        resolve_node(None, {"FER_BENCH_NODE": text})
    with pytest.raises(ValueError, match="^--fer-node: "):
        parse_node_name(text, "--fer-node")


def test_a_hostname_becomes_a_file_name_part():
    assert node_file_part("gpu-a01.cluster.local") == "gpu-a01.cluster.local"
    assert node_file_part("odd name/x") == "odd-name-x"


AXES_TEST = """
import pytest

@pytest.mark.benchmark(group="train_step")
def test_case(benchmark, run_config, model, device, batch_size, precision, num_gpus):
    benchmark.pedantic(lambda: None, rounds=3)
"""
QUICK = ("--fer-preset", "quick", "--fer-devices", "cpu", "--fer-precisions", "fp32", "--fer-models",
         "fer_cnn_2block", "--fer-batch-sizes", "8")


@pytest.fixture
def run(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "cache"))
    for name in NODE_VARS:
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_x=AXES_TEST)

    def _run(*args, env: dict | None = None):
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        try:
            return pytester.runpytest_subprocess("-p", "fer_bench.plugin", "-p", "no:cacheprovider", "-W", "error",
                                                 *QUICK, *args)
        finally:
            for name in env or {}:
                monkeypatch.delenv(name)
    return _run


def test_each_saved_run_records_its_node_and_is_named_by_it(pytester, run):
    """Two nodes of one machine save into one folder: two files, each named by and recording its node."""
    assert run("--fer-save", "--fer-node", "node-a").ret == 0
    assert run("--fer-save", env={"SLURMD_NODENAME": "node-b"}).ret == 0
    saved = sorted((pytester.path / "results").glob("*/*.json"))
    assert [p.parent for p in saved] == [saved[0].parent] * 2
    by_node = {}
    for path in saved:
        record = json.loads(path.read_text())["fer_bench"]["run"]
        sidecar = json.loads(identity.sidecar_path(path).read_text())["run"]
        assert (sidecar["node"], sidecar["node_source"]) == (record["node"], record["node_source"])
        assert path.stem.endswith("_" + record["node"])
        by_node[record["node"]] = record["node_source"]
    assert by_node == {"node-a": "option", "node-b": "slurm"}


def test_a_json_run_records_the_variable_and_a_bad_name_is_one_line(pytester, run):
    assert run("--benchmark-json", "out.json", env={"FER_BENCH_NODE": "rack1-n07"}).ret == 0
    record = json.loads((pytester.path / "out.json").read_text())["fer_bench"]["run"]
    assert (record["node"], record["node_source"]) == ("rack1-n07", "env")
    bad = run("--benchmark-json", "out.json", env={"FER_BENCH_NODE": "rack1/n07"})
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*FER_BENCH_NODE: 'rack1/n07' is not a node name*"])
    assert "Traceback" not in bad.stdout.str() + bad.stderr.str()
    option = run("--fer-node", "a b")
    assert option.ret == pytest.ExitCode.USAGE_ERROR
    option.stderr.fnmatch_lines(["*--fer-node: 'a b' is not a node name*"])


# --------------------------------------------------------------------------------- identities sharing a slug
def _epyc(family: int, model: int, flags: list[str], memory_gib: int = 24) -> dict:
    """A 2-core cloud EPYC VM's hardware identity, as the fingerprint records it ("AMD EPYC" whatever the
    generation)."""
    return {"cpu": {"brand": "AMD EPYC", "arch": "x86_64", "vendor": "AuthenticAMD", "family": family,
                    "model": model, "flags": flags, "sockets": 1, "physical_cores": 2, "logical_cores": 2,
                    "effective_cpus": 2, "cgroup_cpu_quota": None},
            "memory_gib": memory_gib, "gpu_count": 0, "gpus": []}


AVX512 = ["sse4_2", "fma", "avx", "avx2", "avx512f", "avx512_bf16", "avx512_vnni"]
AVX2 = ["sse4_2", "fma", "avx", "avx2"]
GENOA = _epyc(25, 17, AVX512)  # the AVX-512 EPYC VM of results/epyc-2c__cpu/0001 (identity 6fc2912fdf9b4d0e)
MILAN = _epyc(25, 1, AVX2)  # an AVX2-only EPYC VM


def test_the_two_epyc_vms_share_a_slug_and_are_told_apart_by_family_and_model():
    assert identity.make_slug(GENOA) == identity.make_slug(MILAN) == "epyc-2c__cpu"
    assert identity.hash_identity(GENOA) == "6fc2912fdf9b4d0e"
    parts = identity.distinguish_identities({"g": GENOA, "m": MILAN})
    assert parts == {"g": "f25m17", "m": "f25m1"}


def test_the_isa_level_where_family_and_model_agree_else_the_hash():
    masked = _epyc(25, 17, AVX2)  # a hypervisor hiding AVX-512 from the same CPU
    assert identity.distinguish_identities({"g": GENOA, "x": masked}) == {"g": "avx512", "x": "avx2"}
    bigger = _epyc(25, 17, AVX512, memory_gib=48)
    h1, h2 = identity.hash_identity(GENOA), identity.hash_identity(bigger)
    assert identity.distinguish_identities({h1: GENOA, h2: bigger}) == {h1: h1[:6], h2: h2[:6]}
    # three where neither alone tells all apart: both together
    zen3_avx512 = _epyc(25, 1, AVX512)
    assert identity.distinguish_identities({"g": GENOA, "m": MILAN, "z": zen3_avx512}) == {
        "g": "f25m17-avx512", "m": "f25m1-avx2", "z": "f25m1-avx512"}


def _fingerprint(hardware: dict) -> dict:
    return create_fingerprint(identity.make_slug(hardware), hardware)


def test_two_identities_side_by_side_in_one_folder_tree_show_under_two_names(tmp_path, capsys):
    """As results/epyc-2c__cpu/ holds them: the same folder, both identities, two names in every table."""
    genoa, milan = _fingerprint(GENOA), _fingerprint(MILAN)
    folder = tmp_path / "results" / "epyc-2c__cpu"
    write_run(folder / "0001_a.json", create_run(create_train_cases(0.010, seed=1, sigma=0.01), genoa))
    write_run(folder / "0002_b.json", create_run(create_train_cases(0.010, factor=0.7, seed=2, sigma=0.01), milan),
              sidecar=True)
    runs = load_results([tmp_path / "results"])
    labels = set(label_machines([r.machine for r in runs]).values())
    assert labels == {"epyc-2c__cpu~f25m17", "epyc-2c__cpu~f25m1"}
    assert main(["compare", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| group |"))
    assert "epyc-2c__cpu~f25m17/cpu" in header and "epyc-2c__cpu~f25m1/cpu" in header
    assert "`cpu.model`: epyc-2c__cpu~f25m17: 17; epyc-2c__cpu~f25m1: 1" in out


def _store(root: Path, folder: str, fp: dict, n: int) -> None:
    write_run(root / folder / f"{n:04d}_run.json", create_run(create_train_cases(0.01, seed=n), fp))


def test_a_run_goes_to_its_slug_until_other_hardware_is_there(tmp_path):
    genoa, milan = _fingerprint(GENOA), _fingerprint(MILAN)
    assert choose_storage_folder(tmp_path, genoa) == "epyc-2c__cpu"  # nothing stored
    _store(tmp_path, "epyc-2c__cpu", genoa, 1)
    assert choose_storage_folder(tmp_path, genoa) == "epyc-2c__cpu"  # its own runs only
    assert choose_storage_folder(tmp_path, milan) == "epyc-2c__cpu~f25m1"  # another's runs there
    _store(tmp_path, "epyc-2c__cpu~f25m1", milan, 2)
    assert choose_storage_folder(tmp_path, milan) == "epyc-2c__cpu~f25m1"  # follows its folder
    assert choose_storage_folder(tmp_path, genoa) == "epyc-2c__cpu"
    # a third generation: the base folder holds another's runs, and family/model tells all three apart
    zen5 = _fingerprint(_epyc(26, 2, AVX512))
    assert choose_storage_folder(tmp_path, zen5) == "epyc-2c__cpu~f26m2"


def test_a_distinguished_name_another_machine_holds_falls_back_to_the_hash(tmp_path):
    genoa, milan = _fingerprint(GENOA), _fingerprint(MILAN)
    _store(tmp_path, "epyc-2c__cpu", genoa, 1)
    _store(tmp_path, "epyc-2c__cpu~f25m1", genoa, 2)  # a folder named by hand, holding the other machine's runs
    other_milan = _fingerprint(_epyc(25, 1, AVX2, memory_gib=48))
    _store(tmp_path, "epyc-2c__cpu", other_milan, 3)
    name = choose_storage_folder(tmp_path, milan)
    assert name not in ("epyc-2c__cpu", "epyc-2c__cpu~f25m1")
    assert name.startswith("epyc-2c__cpu~")


def test_a_saved_run_avoids_a_folder_of_other_hardware_and_the_gate_still_finds_it(pytester, run):
    """End to end: results/<this slug>/ holds another identity's run, so --fer-save stores this machine's run
    under the distinguished name; --benchmark-compare then finds it there (baselines go by identity)."""
    from fer_bench.machine.fingerprint import collect_fingerprint

    mine = collect_fingerprint()
    other = copy.deepcopy(mine["identity"])
    other["cpu"]["family"] = (other["cpu"].get("family") or 0) + 100
    other["cpu"]["model"] = other["cpu"].get("model") or 0
    other_fp = create_fingerprint(mine["slug"], other)
    assert other_fp["identity_hash"] != mine["identity_hash"]
    _store(pytester.path / "results", mine["slug"], other_fp, 1)
    part = identity.distinguish_identities({mine["identity_hash"]: mine["identity"],
                                            other_fp["identity_hash"]: other})[mine["identity_hash"]]
    expected = identity.distinguished_slug(mine["slug"], part)

    result = run("--fer-save", "--fer-node", "n1")
    assert result.ret == 0, result.stdout.str()
    saved = list((pytester.path / "results" / expected).glob("*.json"))
    assert len(saved) == 1 and saved[0].stem.endswith("_n1")
    assert len(list((pytester.path / "results" / mine["slug"]).glob("*.json"))) == 1  # the other's, untouched
    compared = run("--benchmark-compare", "--benchmark-compare-fail=median:1000%")
    assert compared.ret == 0, compared.stdout.str()
    compared.stdout.fnmatch_lines([f"*compared with*{expected}*_n1.json (newest stored run of this hardware)*"])
