"""Tests of the fleet check: `fer-bench compare --view nodes` (fer_bench.results.views.nodes, the test in
fer_bench.results.fleet), `--view stragglers` (fer_bench.results.views.stragglers) and their report sections, on runs
from result_factory."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from fer_bench.cli import main
from fer_bench.results.compare import create_view
from fer_bench.results.fleet import FAMILY_ALPHA, _scores, calibrate_threshold, judge_fleet
from fer_bench.results.runs import load_results
from result_factory import (
    FLEET_NODES as NODES,
    create_fingerprint,
    create_fleet_cases as _cases,
    create_run,
    create_scaling_step,
    write_fleet,
    write_run,
)

EPYC = create_fingerprint("epyc-2c", {"cpu": {"brand": "AMD EPYC", "cores": 2}, "gpus": []})
XEON = create_fingerprint("xeon-2c", {"cpu": {"brand": "Intel Xeon", "cores": 2}, "gpus": []})


def _nodes_json(capsys, *paths) -> list[dict]:
    assert main(["compare", *map(str, paths), "--view", "nodes", "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def _flagged(rows: list[dict]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in rows:
        if r["flagged"]:
            out.setdefault(f"{r['machine']}:{r['node']}", set()).add(r["case"])
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_only_the_slow_node_is_flagged_on_every_case(tmp_path, capsys, seed):
    folder = write_fleet(tmp_path / "fleet", EPYC, slow={"node-3": 0.15}, seed=seed)
    rows = _nodes_json(capsys, folder)
    cases = {r["case"] for r in rows}
    assert len(cases) == 6 and {r["node"] for r in rows} == set(NODES)
    assert _flagged(rows) == {"epyc-2c:node-3": cases}
    slow = [r for r in rows if r["node"] == "node-3"]
    assert all(0.12 < r["deviation"] < 0.18 and r["verdict"] == "slow" for r in slow)
    assert all(r["verdict"] == "ok" for r in rows if r["node"] != "node-3")

    assert main(["compare", str(folder), "--view", "nodes"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"- `node-3`: slow: 6 of 6 cases \+1\d\.\d% to \+1\d\.\d% beyond the fleet's noise", out), out
    for node in ("node-1", "node-2", "node-4"):
        assert f"- `{node}`: ok (6 cases within the fleet's noise, largest " in out
    # the test, its threshold and the arithmetic of the false-alarm rate, for 4 nodes x 6 cases
    assert ("a fleet of 4 healthy nodes x 6 cases (24 comparisons) flags any node in 0.5% of fleets, 1% for the two "
            "tests together" in out)
    assert "0.5% / 24 = 0.021% per (node, case)" in out and "Bonferroni" in out and "Node test:" in out
    assert out.count("**slow** |") == 6 and "older entries" not in out  # every run counts, none left out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_slowdown_flags_no_node(tmp_path, capsys, seed):
    rows = _nodes_json(capsys, write_fleet(tmp_path / "fleet", EPYC, seed=seed))
    assert len(rows) == 4 * 6 and _flagged(rows) == {} and {r["verdict"] for r in rows} == {"ok"}


def test_mixed_identities_are_judged_apart(tmp_path, capsys):
    write_fleet(tmp_path / "runs" / "epyc", EPYC, slow={"node-2": 0.15}, seed=1)
    # the Xeon fleet is twice as fast: pooled with the EPYC fleet, half the nodes would be "off"
    write_fleet(tmp_path / "runs" / "xeon", XEON, slow={"x-4": -0.5}, seed=2, nodes=("x-1", "x-2", "x-3", "x-4"))
    rows = _nodes_json(capsys, tmp_path / "runs")
    flagged = _flagged(rows)
    assert set(flagged) == {"epyc-2c:node-2", "xeon-2c:x-4"} and all(len(c) == 6 for c in flagged.values())
    assert {r["verdict"] for r in rows if r["node"] == "x-4"} == {"fast"}
    assert {(r["machine"], r["identity_hash"]) for r in rows} == {("epyc-2c", EPYC["identity_hash"]),
                                                                  ("xeon-2c", XEON["identity_hash"])}
    assert main(["compare", str(tmp_path / "runs"), "--view", "nodes"]) == 0
    out = capsys.readouterr().out
    assert "2 hardware identities, each judged against its own nodes only (never pooled)." in out
    assert "Verdicts for `epyc-2c`:" in out and "Verdicts for `xeon-2c`:" in out
    assert re.search(r"- `x-4`: fast: 6 of 6 cases -(49|50)\.\d% to -(49|50)\.\d% beyond the fleet's noise", out), out
    assert "| machine | case |" in out


def test_a_node_is_judged_on_all_its_runs(tmp_path, capsys):
    """node-4 ran three times: its median is over all three (one of them slow, two not: it stays ok), and the
    rows say how many runs each node has."""
    folder = write_fleet(tmp_path / "fleet", EPYC, runs_per_node={"node-4": 3}, seed=3)
    slow_run = create_run(_cases(1.3, seed=99), EPYC, when="2026-01-05T12:00:00+00:00", run={"node": "node-4"})
    write_run(folder / "node-4-late.json", slow_run)
    rows = _nodes_json(capsys, folder)
    assert {r["runs"] for r in rows if r["node"] == "node-4"} == {4}
    assert {r["runs"] for r in rows if r["node"] != "node-4"} == {1}
    assert _flagged(rows) == {}
    # all of node-4's runs slow: flagged
    for k in range(3):
        write_run(folder / f"node-4-{k}.json", create_run(_cases(1.2, seed=50 + k), EPYC, run={"node": "node-4"}))
    assert set(_flagged(_nodes_json(capsys, folder))) == {"epyc-2c:node-4"}


def test_node_names_fall_back_to_the_hostname_then_the_file(tmp_path, capsys):
    for n in range(3):
        path = write_run(tmp_path / "fleet" / f"run{n}.json", create_run(_cases(1.0, seed=n + 1), EPYC),
                         sidecar=True)
        sidecar = path.with_suffix(".fingerprint")
        sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "hostname": f"host-{n}"}))
    run = create_run(_cases(1.0, seed=9), EPYC, node="")
    write_run(tmp_path / "fleet" / "nameless.json", run)
    runs = load_results([tmp_path / "fleet"])
    assert sorted((r.node, r.node_source) for r in runs) == [
        ("host-0", "sidecar hostname"), ("host-1", "sidecar hostname"), ("host-2", "sidecar hostname"),
        ("nameless", "file name")]
    table = create_view("nodes", runs)
    assert "node names from: sidecar hostname (3), file name (1)." in " ".join(table.notes)


def test_two_nodes_are_shown_not_judged_and_one_node_is_no_fleet(tmp_path, capsys):
    write_fleet(tmp_path / "two", EPYC, slow={"node-2": 0.3}, nodes=("node-1", "node-2"))
    rows = _nodes_json(capsys, tmp_path / "two")
    assert _flagged(rows) == {} and {r["verdict"] for r in rows} == {"not judged"}
    assert main(["compare", str(tmp_path / "two"), "--view", "nodes"]) == 0
    assert "none judged (a node outside the noise needs 3 or more nodes" in capsys.readouterr().out
    write_fleet(tmp_path / "one", EPYC, nodes=("node-1",))
    assert main(["compare", str(tmp_path / "one"), "--view", "nodes"]) == 0
    assert "no hardware identity has runs from several nodes" in capsys.readouterr().out


def test_the_threshold_holds_its_family_wise_false_alarm_rate():
    """Fresh healthy fleets (another seed than the calibration's): about 1% of them flag anything, the case test
    and the node test together (each at half of it)."""
    for nodes, cases in ((4, 6), (10, 8)):
        threshold = calibrate_threshold(np.ones((nodes, cases), bool), range(nodes))
        assert threshold.comparisons == nodes * cases and threshold.z > threshold.bonferroni_z > 3
        x = np.random.default_rng(7).standard_normal((20000, nodes, cases))
        *_, z = _scores(x, [np.array([n]) for n in range(nodes)])
        case_alarm = np.abs(z).max(axis=(1, 2)) > threshold.z
        node_alarm = np.abs(np.median(z, axis=2)).max(axis=1) > threshold.node_z
        assert 0.25 * FAMILY_ALPHA < case_alarm.mean() < 0.8 * FAMILY_ALPHA, (nodes, cases, case_alarm.mean())
        rate = float((case_alarm | node_alarm).mean())
        assert 0.5 * FAMILY_ALPHA < rate < 1.3 * FAMILY_ALPHA, (nodes, cases, rate)


@pytest.mark.parametrize("seed", range(3))
def test_a_node_slow_on_every_case_within_each_case_noise_is_flagged_by_the_node_test(seed):
    """Four nodes, eight cases with 3% run-to-run noise, one node 12% slow: each of its cases alone is within the
    case test's allowance (about 7 noise units), all of them together are not."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.005, 0.05, 8)
    values = base * np.exp(rng.normal(0, 0.03, (4, 8)))
    values[2] *= 1.12
    judged = judge_fleet(values, [0, 1, 2, 3])
    assert judged.node_flagged.tolist() == [False, False, True, False]
    assert judged.flagged[2].sum() >= 1 and not judged.flagged[[0, 1, 3]].any()
    healthy = judge_fleet(base * np.exp(rng.normal(0, 0.03, (4, 8))), [0, 1, 2, 3])
    assert not healthy.node_flagged.any() and not healthy.flagged.any()


def test_a_case_a_node_did_not_run_is_left_out():
    values = np.array([[0.010, 0.020], [0.0101, np.nan], [0.0099, 0.0201], [0.0100, 0.0199]])
    judged = judge_fleet(values, [0, 1, 2, 3])
    assert judged.runs[1].tolist() == [1, 0] and np.isnan(judged.z[1, 1]) and not judged.flagged.any()
    assert judged.threshold.comparisons == 7


def test_nodes_plot_and_report_section(tmp_path, capsys):
    folder = write_fleet(tmp_path / "fleet", EPYC, slow={"node-3": 0.15})
    assert main(["compare", str(folder), "--view", "nodes", "--plots", str(tmp_path / "png")]) == 0
    capsys.readouterr()
    assert (tmp_path / "png" / "nodes.png").stat().st_size > 5000
    out = tmp_path / "report.html"
    assert main(["report", str(folder), "-o", str(out)]) == 0
    page = out.read_text()
    section = re.search(r'<section id="view-nodes".*?</section>', page, re.S).group(0)
    assert 'data-charts="1"' in section and "<svg" in section and "<table" in section
    assert "slow, outside the noise" in section and "node-3" in section and "slow: 6 of 6 cases" in section


def test_no_nodes_section_for_one_node_a_machine(tmp_path, capsys):
    write_run(tmp_path / "runs" / "a.json", create_run(_cases(1.0, 1), EPYC, run={"node": "a"}))
    write_run(tmp_path / "runs" / "b.json", create_run(_cases(2.0, 2), XEON, run={"node": "b"}))
    out = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "runs"), "-o", str(out)]) == 0
    page = out.read_text()
    assert 'id="view-nodes"' not in page and "no hardware identity has runs from several nodes" in page


# ------------------------------------------------------------------------------------------------ stragglers


def _ddp_run(folder: Path, *, hosts: list[str] | None, launch_nodes: list[dict] | None, skew: float) -> Path:
    entry = create_scaling_step(4, 0.100, rank_skew=skew)
    if hosts is not None:
        for rank, host in zip(entry["extra_info"]["per_rank"], hosts):
            rank["host"] = host
    run = {"node": "login"} | ({"launch": {"launcher": "slurm", "world_size": 4, "nodes": launch_nodes}}
                               if launch_nodes else {})
    return write_run(folder / "ddp.json", create_run([entry], EPYC, run=run))


def test_stragglers_name_each_rank_host_and_the_slowest(tmp_path, capsys):
    _ddp_run(tmp_path / "a", hosts=["n1", "n1", "n2", "n2"], launch_nodes=None, skew=1.2)
    assert main(["compare", str(tmp_path / "a"), "--view", "stragglers", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["rank"], r["host"], r["slowest"]) for r in rows] == [
        (0, "n1", False), (1, "n1", False), (2, "n2", False), (3, "n2", True)]
    assert rows[3]["vs_median_rank"] == pytest.approx(0.2) and rows[0]["vs_median_rank"] == pytest.approx(0.0)
    assert main(["compare", str(tmp_path / "a"), "--view", "stragglers"]) == 0
    out = capsys.readouterr().out
    assert "4 ranks on 2 host(s); slowest rank 3 on `n2`, 120 ms, +20.0% over the median rank (rank skew 1.200)" \
        in out
    assert "| 3 | n2 | 120 ms | +20.0% **slowest** |" in out


def test_stragglers_hosts_from_the_launch_record_else_the_run_node(tmp_path, capsys):
    nodes = [{"host": "h0", "ranks": [0, 1]}, {"host": "h1", "ranks": [2, 3]}]
    _ddp_run(tmp_path / "b", hosts=None, launch_nodes=nodes, skew=1.0)
    rows = create_view("stragglers", load_results([tmp_path / "b"])).records
    assert rows["host"].tolist() == ["h0", "h0", "h1", "h1"]
    _ddp_run(tmp_path / "c", hosts=None, launch_nodes=None, skew=1.0)  # spawned: every rank where the run ran
    assert create_view("stragglers", load_results([tmp_path / "c"])).records["host"].tolist() == ["login"] * 4


def test_stragglers_without_multi_rank_results(tmp_path, capsys):
    write_run(tmp_path / "r" / "a.json", create_run(_cases(1.0, 1), EPYC))
    assert main(["compare", str(tmp_path / "r"), "--view", "stragglers"]) == 0
    assert "no multi-rank results" in capsys.readouterr().out
