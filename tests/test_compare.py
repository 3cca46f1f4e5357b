"""Tests of fer_bench.results.compare and fer_bench.results.plots (`fer-bench compare`), on result files from result_factory."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fer_bench.cli import main
from fer_bench.results.compare import create_view, format_frame
from fer_bench.errors import FerBenchError
from fer_bench.machine.identity import create_hardware_identity
from fer_bench.results.runs import load_results
from result_factory import (
    create_batch_cases,
    create_fingerprint,
    create_old_data_parallel_cases,
    create_precision_cases,
    create_run,
    create_scaling_cases,
    create_scaling_step,
    create_stack,
    create_train_cases,
    create_workers_cases,
    write_run,
)

REPO = Path(__file__).resolve().parent.parent
SLOW = create_fingerprint("laptop-i5-4c", {"cpu": {"brand": "Intel i5", "cores": 4}, "gpus": []})
FAST = create_fingerprint("hpc-epyc-64c__h100-x1", {"cpu": {"brand": "AMD EPYC", "cores": 64},
                                                    "gpus": [{"name": "H100"}]})


@pytest.fixture
def two_machines(tmp_path) -> Path:
    """A laptop around 10 ms per step and an HPC node 5x faster on CPU and 50x faster on its GPU."""
    write_run(tmp_path / "laptop" / "run.json", create_run(create_train_cases(0.010, seed=1, sigma=0.01), SLOW))
    hpc = (create_train_cases(0.010, factor=0.2, seed=2, sigma=0.01)
           + create_train_cases(0.010, factor=0.02, device="cuda", seed=3, sigma=0.01))
    write_run(tmp_path / "hpc" / "run.json", create_run(hpc, FAST))
    return tmp_path


def _compare(capsys, *argv) -> tuple[int, str, str]:
    status = main(["compare", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def _csv(capsys, *argv) -> pd.DataFrame:
    status, out, _ = _compare(capsys, *argv, "--format", "csv")
    assert status == 0
    return pd.read_csv(io.StringIO(out))


def test_platforms_view_shows_the_known_speed_ratio(two_machines, capsys):
    status, out, _ = _compare(capsys, two_machines)
    assert status == 0
    # the laptop is the slowest by geometric mean, so it is the baseline; the HPC CPU is 5x faster
    assert "Baseline: `laptop-i5-4c/cpu`" in out
    rows = [line for line in out.splitlines() if line.startswith("| train_step |")]
    assert len(rows) == 4
    assert all("5.0x faster" in row and "(baseline)" in row for row in rows)
    assert all(("49." in row or "50." in row) and "x faster" in row for row in rows)


def test_csv_speedup_column_is_numeric(two_machines, capsys):
    frame = _csv(capsys, two_machines)
    assert frame["speedup"].dtype.kind == "f"
    cases = frame[frame["kind"] == "case"]
    by_platform = cases.groupby("platform")["speedup"]
    assert by_platform.min()["hpc-epyc-64c__h100-x1/cpu"] > 4.8
    assert by_platform.max()["hpc-epyc-64c__h100-x1/cpu"] < 5.2
    assert set(cases.loc[cases["platform"] == "laptop-i5-4c/cpu", "speedup"]) == {1.0}
    assert set(cases["batch_size"]) == {32, 64}  # params keep their type: no 32.0


def test_geometric_mean_row(two_machines, capsys):
    frame = _csv(capsys, two_machines)
    geo = frame[frame["kind"] == "geomean"].set_index("platform")
    assert set(geo.index) == {"laptop-i5-4c/cpu", "hpc-epyc-64c__h100-x1/cpu", "hpc-epyc-64c__h100-x1/cuda"}
    assert geo.loc["hpc-epyc-64c__h100-x1/cpu", "speedup"] == pytest.approx(5.0, rel=0.03)
    assert geo.loc["hpc-epyc-64c__h100-x1/cuda", "speedup"] == pytest.approx(50.0, rel=0.03)
    assert (geo["n_cases"] == 4).all()
    _, out, _ = _compare(capsys, two_machines)
    assert "**geometric mean** (over the 4 case(s) all platforms share)" in out


def test_explicit_baseline_turns_the_words_around(two_machines, capsys):
    status, out, _ = _compare(capsys, two_machines, "--baseline", "hpc-epyc-64c__h100-x1/cpu")
    assert status == 0
    assert "5.0x slower" in out and "Baseline: `hpc-epyc-64c__h100-x1/cpu` (--baseline)" in out
    frame = _csv(capsys, two_machines, "--baseline", "laptop-i5-4c")
    assert frame.loc[frame["kind"] == "geomean", "baseline"].eq("laptop-i5-4c/cpu").all()


def test_baseline_errors(two_machines):
    runs = load_results([two_machines])
    with pytest.raises(FerBenchError, match="several devices"):
        create_view("platforms", runs, baseline="hpc-epyc-64c__h100-x1")
    with pytest.raises(FerBenchError, match="no such machine"):
        create_view("platforms", runs, baseline="nope")


def test_samples_per_s_metric(two_machines, capsys):
    frame = _csv(capsys, two_machines, "--metric", "samples_per_s")
    geo = frame[frame["kind"] == "geomean"].set_index("platform")
    assert geo.loc["hpc-epyc-64c__h100-x1/cpu", "speedup"] == pytest.approx(5.0, rel=0.03)
    assert (frame["unit"] == "samples/s").all()


def test_identity_differences_listed_above_the_table(two_machines, capsys):
    _, out, _ = _compare(capsys, two_machines)
    head = out.split("| group |")[0]
    assert "`cpu.brand`: " in head and "Intel i5" in head and "AMD EPYC" in head
    assert "`gpus.0.name`" in head and "`cpu.cores`" in head


def test_identities_sharing_a_slug_keep_their_own_labels(tmp_path, capsys):
    """Two machines that differ only in memory: same slug, two hardware identities, both named apart."""
    small = create_fingerprint("box-2c", {"cpu": {"brand": "Xeon"}, "memory_gib": 24})
    large = create_fingerprint("box-2c", {"cpu": {"brand": "Xeon"}, "memory_gib": 48})
    write_run(tmp_path / "a.json", create_run(create_train_cases(0.010, seed=1, sigma=0.01), small))
    write_run(tmp_path / "b.json", create_run(create_train_cases(0.010, factor=0.8, seed=2, sigma=0.01), large))
    _, out, _ = _compare(capsys, tmp_path)
    head = out.split("| group |")[0]
    line = next(x for x in head.splitlines() if x.startswith("- `memory_gib`"))
    assert f"box-2c~{small['identity_hash'][:6]}: 24" in line
    assert f"box-2c~{large['identity_hash'][:6]}: 48" in line
    assert "Software stack differences" not in head


def test_one_machine_with_two_stacks_gets_a_platform_per_stack(tmp_path, capsys):
    """A torch upgrade and the malloc on one machine: one hardware identity, two stacks side by side, and the
    notes name what changed in the stack."""
    hardware = {"cpu": {"brand": "Xeon"}, "gpus": []}
    old = create_fingerprint("box-2c", hardware, stack=create_stack(malloc="glibc"))
    new = create_fingerprint("box-2c", hardware, stack=create_stack(torch="2.15.0+cu130"))
    assert old["identity_hash"] == new["identity_hash"]
    write_run(tmp_path / "a.json", create_run(create_train_cases(0.010, seed=1, sigma=0.01), old,
                                              when="2026-01-01T00:00:00"))
    write_run(tmp_path / "b.json", create_run(create_train_cases(0.010, factor=0.8, seed=2, sigma=0.01), new,
                                              when="2026-02-01T00:00:00"))
    _, out, _ = _compare(capsys, tmp_path)
    head = out.split("| group |")[0]
    old_label, new_label = f"box-2c@{old['stack_hash'][:6]}", f"box-2c@{new['stack_hash'][:6]}"
    assert f"`{old_label}/cpu`" in out and f"`{new_label}/cpu`" in out and "older entr" not in out
    assert "Identity differences" not in head
    lines = head.split("Software stack differences between the machines:")[1].splitlines()
    assert f"- `malloc`: {old_label}: glibc; {new_label}: glibc-steady" in lines
    assert f"- `torch`: {old_label}: 2.14.1+cu130; {new_label}: 2.15.0+cu130" in lines
    assert f"stack {new['stack_hash']}" in head


def test_legacy_schema_1_run_is_the_same_hardware_as_a_schema_2_run(tmp_path):
    """A run from before the split and one after, same hardware and stack: one machine, one stack."""
    hardware = create_hardware_identity({"cpu": {"brand": "Xeon", "effective_cpus": 2}, "memory": {"total_gib": 24}})
    write_run(tmp_path / "old.json", create_run(create_train_cases(0.01, seed=1), create_fingerprint(
        "box-2c__cpu__torch2.14-cu13", hardware, schema=1)), legacy_sidecar=True)
    write_run(tmp_path / "new.json", create_run(create_train_cases(0.01, seed=2), create_fingerprint(
        "xeon-2c__cpu", hardware)))
    old, new = sorted(load_results([tmp_path]), key=lambda r: r.path.name, reverse=True)
    assert old.machine == new.machine and old.machine.slug == "xeon-2c__cpu"
    assert old.machine.stack == new.machine.stack and old.machine.stack_hash == new.machine.stack_hash


def test_json_format(two_machines, capsys):
    _, out, _ = _compare(capsys, two_machines, "--format", "json")
    records = json.loads(out)
    assert {r["kind"] for r in records} == {"case", "geomean"}
    assert all(r["speedup"] is None or isinstance(r["speedup"], float) for r in records)


def test_plain_pytest_benchmark_file_is_an_unknown_machine(tmp_path, capsys):
    plain = create_run(create_train_cases(0.01, seed=1, sigma=0.01), None, node="gpu-node-7")
    write_run(tmp_path / "plain.json", plain)
    write_run(tmp_path / "fer.json", create_run(create_train_cases(0.01, factor=0.5, seed=2, sigma=0.01), FAST))
    status, out, _ = _compare(capsys, tmp_path)
    assert status == 0
    assert "`unknown-gpu-node-7/cpu`" in out and "Baseline: `unknown-gpu-node-7/cpu`" in out
    assert out.count("2.0x faster") >= 3


@pytest.mark.parametrize("legacy", [False, True])
def test_sidecar_fingerprint_is_read(tmp_path, capsys, legacy):
    """The sidecar NAME.fingerprint, or the legacy NAME.fingerprint.json; neither is taken for a run."""
    write_run(tmp_path / "a.json", create_run(create_train_cases(0.01, seed=1), SLOW), sidecar=not legacy,
              legacy_sidecar=legacy)
    assert (tmp_path / ("a.fingerprint.json" if legacy else "a.fingerprint")).is_file()
    runs = load_results([tmp_path])
    assert [r.path.name for r in runs] == ["a.json"]
    assert runs[0].machine.stack == SLOW["stack"] and runs[0].machine.stack_hash == SLOW["stack_hash"]
    _, out, _ = _compare(capsys, tmp_path)
    assert "`laptop-i5-4c/cpu`" in out and "unknown" not in out


def test_latest_run_of_a_machine_wins(tmp_path, capsys):
    write_run(tmp_path / "old.json", create_run(create_train_cases(0.02, seed=1), SLOW, when="2026-01-01T00:00:00"))
    write_run(tmp_path / "new.json", create_run(create_train_cases(0.01, seed=2), SLOW, when="2026-02-01T00:00:00"))
    write_run(tmp_path / "fast.json", create_run(create_train_cases(0.01, factor=0.5, seed=3), FAST))
    frame = _csv(capsys, tmp_path)
    laptop = frame[(frame["platform"] == "laptop-i5-4c/cpu") & (frame["kind"] == "case")]
    assert laptop["run"].str.endswith("new.json").all()
    geo = frame[frame["kind"] == "geomean"].set_index("platform")
    assert geo.loc["hpc-epyc-64c__h100-x1/cpu", "speedup"] == pytest.approx(2.0, rel=0.03)
    _, out, _ = _compare(capsys, tmp_path)
    assert "4 older entries" in out


def test_group_filter(tmp_path, capsys):
    write_run(tmp_path / "a.json", create_run(create_train_cases(0.01) + create_workers_cases(), SLOW))
    frame = _csv(capsys, tmp_path, "--group", "epoch")
    assert set(frame.loc[frame["kind"] == "case", "group"]) == {"epoch"}
    with pytest.raises(FerBenchError, match="no such group"):
        create_view("platforms", load_results([tmp_path]), groups=["nope"])


@pytest.fixture
def views_dir(tmp_path) -> Path:
    cases = create_workers_cases() + create_precision_cases() + create_batch_cases() + create_scaling_cases()
    write_run(tmp_path / "ws.json", create_run(cases, FAST))
    write_run(tmp_path / "laptop.json", create_run(create_workers_cases(speed=0.5), SLOW))
    return tmp_path


def test_workers_view_marks_the_best_worker_count(views_dir, capsys):
    frame = _csv(capsys, views_dir, "--view", "workers")
    best = frame[frame["best"]]
    # one best per (platform, batch size), and it is the 4-worker case the factory made fastest
    assert len(best) == 4 and set(best["num_workers"]) == {4}
    assert set(frame["data_wait_fraction"].round(2)) == {0.6, 0.3, 0.1, 0.08}
    _, out, _ = _compare(capsys, views_dir, "--view", "workers")
    assert out.count(" best**") == 4 and "| w=0 | w=2 | w=4 | w=8 |" in out


def test_precision_view_speedups_over_fp32(views_dir, capsys):
    frame = _csv(capsys, views_dir, "--view", "precision").set_index("precision")
    train = frame[frame["benchmark"] == "test_train_step"]
    assert train.loc["amp_bf16", "speedup"] == pytest.approx(2.0, rel=0.02)
    assert train.loc["bf16", "speedup"] == pytest.approx(4.0, rel=0.02)
    assert train.loc["fp32", "speedup_text"] == "reference"


def test_batch_view_throughput_rises_with_batch(views_dir, capsys):
    frame = _csv(capsys, views_dir, "--view", "batch")
    fwd = frame[frame["benchmark"] == "test_forward"].sort_values("batch_size")
    assert list(fwd["batch_size"]) == [16, 32, 64, 128]
    assert fwd["samples_per_s"].is_monotonic_increasing
    assert fwd["throughput_gain"].iloc[-1] == pytest.approx((128 / 0.054) / (16 / 0.010), rel=0.02)


def test_scaling_view_weak_and_strong(views_dir, capsys):
    frame = _csv(capsys, views_dir, "--view", "scaling")
    eff = frame.set_index(["scaling_mode", "num_gpus"])["efficiency"]
    assert eff[("weak", 1)] == pytest.approx(1.0)
    assert eff[("weak", 2)] == pytest.approx(0.100 / 0.105, rel=1e-3)
    assert eff[("weak", 4)] == pytest.approx(0.8, rel=1e-3)
    assert eff[("strong", 2)] == pytest.approx(0.400 / 0.220 / 2, rel=1e-3)
    assert eff[("strong", 4)] == pytest.approx(0.8, rel=1e-3)
    speed = frame.set_index(["scaling_mode", "num_gpus"])["speedup"]
    assert speed[("strong", 4)] == pytest.approx(3.2, rel=1e-3)


def _scaling(capsys, folder) -> tuple[pd.DataFrame, str]:
    """The scaling view's records (csv) and its markdown."""
    frame = _csv(capsys, folder, "--view", "scaling")
    status, out, _ = _compare(capsys, folder, "--view", "scaling")
    assert status == 0
    return frame, out


def _row(out: str, *cells: str) -> str:
    """The one markdown table row holding all ``cells`` (as `| cell |`)."""
    rows = [line for line in out.splitlines() if line.startswith("|") and all(f"| {c} |" in line for c in cells)]
    assert len(rows) == 1, (cells, rows)
    return rows[0]


def test_scaling_view_ddp_weak_shows_the_recorded_throughput(tmp_path, capsys):
    """The recorded samples_per_s is the throughput, not batch / median: here 300/s and 540/s, where 32 / 0.1 s
    and 64 / 0.11 s would read 320/s and 582/s; E(2) = X_2 / (2 X_1) = 0.9."""
    cases = [create_scaling_step(1, 0.100, samples_per_s=300.0),
             create_scaling_step(2, 0.110, samples_per_s=540.0, rank_skew=1.15, comm_exposed_ms=3.2)]
    write_run(tmp_path / "ddp.json", create_run(cases, FAST))
    frame, out = _scaling(capsys, tmp_path)
    rows = frame.set_index("world_size")
    assert list(rows["throughput"]) == [300.0, 540.0] and list(rows["recorded_samples_per_s"]) == [300.0, 540.0]
    assert rows.loc[2, "efficiency"] == pytest.approx(540.0 / (2 * 300.0))
    assert set(rows["parallel"]) == {"ddp"} and set(rows["scaling_mode"]) == {"weak"}
    assert rows.loc[2, "rank_skew"] == pytest.approx(1.15)
    row = _row(out, "ddp", "weak")
    assert "| 100% (300/s) | 90% (540/s, skew 1.15) |" in row
    assert "| parallel | mode |" in out and "| N=1 | N=2 |" in out
    assert "Exposed communication per ddp case" in out and "(N=2): 3.20 ms" in out
    assert "no samples_per_s" not in out and "older DataParallel" not in out


def test_scaling_view_ddp_strong(tmp_path, capsys):
    """Strong scaling keeps the global batch (batch_size) and splits it: S(N) = T_1 / T_N, efficiency S(N) / N."""
    cases = [create_scaling_step(n, t, scaling="strong", batch_size=256)
             for n, t in {1: 0.400, 2: 0.220, 4: 0.125}.items()]
    write_run(tmp_path / "ddp.json", create_run(cases, FAST))
    frame, out = _scaling(capsys, tmp_path)
    rows = frame.set_index("world_size")
    assert set(rows["scaling_mode"]) == {"strong"} and set(rows["global_batch_size"]) == {256}
    assert rows.loc[2, "efficiency"] == pytest.approx(0.400 / 0.220 / 2, rel=1e-3)
    assert rows.loc[4, "speedup"] == pytest.approx(3.2) and rows.loc[4, "efficiency"] == pytest.approx(0.8)
    assert list(rows["throughput"]) == pytest.approx([256 / 0.400, 256 / 0.220, 256 / 0.125])
    assert "| 100% (640/s) | 91% (1,164/s) | 80% (2,048/s) |" in _row(out, "ddp", "strong", "256")


def test_scaling_view_old_data_parallel_run_splits_batch_size(tmp_path, capsys):
    """A run from before the parallel axes: nn.DataParallel split batch_size over the GPUs, and no throughput,
    global batch or scaling mode recorded. Its global batch is batch_size (64, not 64 x num_gpus), so it is
    strong scaling, its throughput 64 / median, and the baseline the parallel none 1-GPU case."""
    write_run(tmp_path / "old.json", create_run(create_old_data_parallel_cases(), FAST))
    case = next(c for c in load_results([tmp_path])[0].cases if c.params["num_gpus"] == 2)
    assert case.parallel == "dp" and case.global_batch_size == 64 and case.scaling_mode == "strong"
    assert case.samples_per_s == pytest.approx(64 / 0.060)
    frame, out = _scaling(capsys, tmp_path)
    dp = frame[frame["parallel"] == "dp"].set_index("world_size")
    assert list(dp["global_batch_size"]) == [64, 64]
    assert dp.loc[2, "throughput"] == pytest.approx(64 / 0.060)
    assert dp["recorded_samples_per_s"].isna().all()
    assert dp.loc[2, "efficiency"] == pytest.approx(0.100 / 0.060 / 2, rel=1e-3)
    assert dp.loc[4, "efficiency"] == pytest.approx(0.100 / 0.040 / 4, rel=1e-3)
    assert "3 entries record no samples_per_s (older runs): throughput inferred" in out
    assert "2 older DataParallel entries record no global batch" in out
    assert "so the global batch is batch_size (not batch_size x num_gpus)" in out
    row = _row(out, "dp", "strong", "64")
    assert "| none: 640/s (baseline) | 83% (1,067/s) | 62% (1,600/s) |" in row


def test_scaling_view_keeps_dp_and_ddp_apart(tmp_path, capsys):
    """dp and ddp of the same model and batch are separate series, each against its own N=1 case."""
    cases = [create_scaling_step(1, 0.100, parallel="ddp"), create_scaling_step(2, 0.125, parallel="ddp"),
             create_scaling_step(1, 0.100, parallel="dp"), create_scaling_step(2, 0.200, parallel="dp")]
    write_run(tmp_path / "both.json", create_run(cases, FAST))
    frame, out = _scaling(capsys, tmp_path)
    eff = frame.set_index(["parallel", "world_size"])["efficiency"]
    assert eff[("ddp", 2)] == pytest.approx(0.8) and eff[("dp", 2)] == pytest.approx(0.5)
    assert frame.groupby("parallel")["baseline_case"].nunique().to_dict() == {"ddp": 1, "dp": 1}
    assert "| 100% (320/s) | 80% (512/s) |" in _row(out, "ddp", "weak")
    assert "| 100% (320/s) | 50% (320/s) |" in _row(out, "dp", "weak")
    assert "run another way" not in out


def test_scaling_view_borrows_the_parallel_none_baseline(tmp_path, capsys):
    """A ddp series without its own world-1 case is measured against the parallel none case of the same params on
    the same platform, and the notes say so; another platform's none case is never used."""
    cases = [create_scaling_step(1, 0.100, parallel="none"), create_scaling_step(2, 0.125, parallel="ddp"),
             create_scaling_step(4, 0.160, parallel="ddp"),
             create_scaling_step(1, 0.100, parallel="none", batch_size=64)]  # other work: not the baseline
    write_run(tmp_path / "hpc.json", create_run(cases, FAST))
    write_run(tmp_path / "laptop.json", create_run([create_scaling_step(1, 0.050, parallel="none"),
                                                    create_scaling_step(2, 0.125, parallel="ddp")], SLOW))
    frame, out = _scaling(capsys, tmp_path)
    hpc = frame[(frame["platform"] == "hpc-epyc-64c__h100-x1/cpu") & (frame["parallel"] == "ddp")]
    eff = hpc.set_index("world_size")["efficiency"]
    assert eff[2] == pytest.approx(0.8) and eff[4] == pytest.approx(0.625)
    # parallel none is the axis' original value: no part of the case label (fer_bench.axes.match_params)
    assert hpc["baseline_case"].str.endswith("batch_size=32, precision=fp32, num_gpus=1]").all()
    laptop = frame[(frame["platform"] == "laptop-i5-4c/cpu") & (frame["parallel"] == "ddp")]
    assert laptop["efficiency"].iloc[0] == pytest.approx(0.4)  # its own none case: 640/s, not hpc's 320/s
    assert "2 series have no N=1 case of their own; the baseline (X_1, T_1) is the N=1 case of the same " \
           "platform and params run another way (`parallel: none`" in out
    assert "on hpc-epyc-64c__h100-x1/cpu: `test_scaling_step[" in out and "(none, weak)" in out
    assert "| none: 320/s (baseline) | 80% (512/s) | 62% (800/s) |" in _row(out, "hpc-epyc-64c__h100-x1/cpu", "ddp")
    assert "| none: 640/s (baseline) | 40% (512/s) | - |" in _row(out, "laptop-i5-4c/cpu", "ddp")
    assert "series ran at N=1 only: no row in the table" in out


def test_scaling_plot_uses_the_view_efficiency(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the plots extra (matplotlib) is not installed")
    cases = [create_scaling_step(n, 0.1 * (1 + 0.1 * n), parallel=p) for p in ("dp", "ddp") for n in (1, 2, 4)]
    write_run(tmp_path / "runs" / "both.json", create_run(cases, FAST))
    status, _, err = _compare(capsys, tmp_path / "runs", "--view", "scaling", "--plots", tmp_path / "p")
    assert status == 0 and (tmp_path / "p" / "scaling.png").stat().st_size > 5000


def test_scaling_view_without_multi_gpu_results(two_machines, capsys):
    status, out, _ = _compare(capsys, two_machines, "--view", "scaling")
    assert status == 0 and "no multi-GPU results" in out


def test_plots_write_one_png_per_view_with_data(views_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the plots extra (matplotlib) is not installed")
    out_dir = tmp_path / "plots"
    status, _, err = _compare(capsys, views_dir, "--plots", out_dir)
    assert status == 0
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == ["batch.png", "platforms.png", "precision.png", "scaling.png", "workers.png"]
    for p in out_dir.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    assert "plots:" in err


def test_plots_skip_views_without_data(two_machines, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the plots extra (matplotlib) is not installed")
    _compare(capsys, two_machines, "--plots", tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["batch.png", "platforms.png"]


def test_plots_without_matplotlib_is_a_clear_error(two_machines, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    from fer_bench.results.plots import write_plots

    view = create_view("platforms", load_results([two_machines]))
    with pytest.raises(FerBenchError, match=r"fer_bench\[plots\]"):
        write_plots({"platforms": view}, tmp_path / "p")


def test_bad_input_is_a_fer_bench_error(tmp_path, capsys):
    (tmp_path / "bad.json").write_text('{"machine_info": {}, "benchmarks": [')
    status = main(["compare", str(tmp_path / "bad.json")])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("fer-bench: error: ") and "line 1" in err


def test_compare_never_imports_torch(two_machines):
    code = ("import sys; from fer_bench.cli import main; status = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'imported torch'; sys.exit(status)")
    proc = subprocess.run([sys.executable, "-c", code, "compare", str(two_machines), "--format", "csv"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "speedup" in proc.stdout.splitlines()[0]


def test_markdown_escaping():
    table = format_frame(pd.DataFrame([{"a|b": "x|y", "n": None}]))
    assert table.splitlines()[0] == "| a\\|b | n |"
    assert table.splitlines()[2] == "| x\\|y |  |"


def test_folder_scan_skips_json_that_is_not_a_result(two_machines, capsys):
    (two_machines / "laptop" / "summary.json").write_text(json.dumps({"false_alarm": 0.01}))
    status, out, _ = _compare(capsys, two_machines)
    assert status == 0 and "5.0x faster" in out
    # named on the command line, the same file is an error
    with pytest.raises(FerBenchError, match="not a pytest-benchmark result"):
        load_results([two_machines / "laptop" / "summary.json"])


def test_precision_view_marks_emulated_cells(tmp_path, capsys):
    """A run's extra_info says whether a precision ran natively; compare marks the cells that did not."""
    from result_factory import create_benchmark, create_rounds

    note = "amp_bf16 is emulated on this CPU (no avx512_bf16/amx_bf16): slower than fp32 here is expected, not a bug"
    cases = []
    for p, factor, native in (("fp32", 1.0, True), ("amp_bf16", 3.0, False), ("bf16", 0.8, True)):
        extra = {"precision_native": native, **({} if native else {"precision_note": note})}
        cases.append(create_benchmark(
            "test_train_step", {"model": "resnet18", "device": "cpu", "batch_size": 64, "precision": p},
            create_rounds(0.040 * factor, n=10, sigma=0.005), group="train_step", extra_info=extra))
    # a run made before precision_native was recorded says nothing: never marked
    old = [create_benchmark("test_forward", {"model": "resnet18", "device": "cpu", "batch_size": 64, "precision": p},
                            create_rounds(0.01, n=10, sigma=0.005), group="forward") for p in ("fp32", "amp_bf16")]
    write_run(tmp_path / "laptop.json", create_run(cases + old, SLOW))
    frame = _csv(capsys, tmp_path, "--view", "precision")
    emulated = frame.set_index(["benchmark", "precision"])["emulated"]
    assert emulated[("test_train_step", "amp_bf16")] == True  # noqa: E712 (a CSV boolean)
    assert not emulated[("test_train_step", "fp32")] and not emulated[("test_forward", "amp_bf16")]
    _, out, _ = _compare(capsys, tmp_path, "--view", "precision")
    assert "ms (3.0x slower, emulated) |" in out
    assert out.count("emulated)") == 1
    assert "emulated: amp_bf16 on laptop-i5-4c/cpu: no native hardware support" in out
