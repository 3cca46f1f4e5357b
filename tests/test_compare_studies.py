"""Tests of `fer-bench compare`'s study views: convergence (time to accuracy), ops (op-category shares), paper (the
HPC/FER paper's table), the workers view's batched-against-per_image notes, and --platform-name; on result files
from result_factory.

The data (studies_dir): three platforms, epyc-2c/cpu (slowest), laptop-i7-8c/cpu and hpc-node/cuda (fastest).

- fer_cnn_2block, time to 60%: adam bs64 reaches it at epoch 4 (120 s, 40 s, 4 s; one hpc run missed), adam bs128
  at epoch 5 (125 s, 35 s, 4.5 s), sgd bs64 never (best 59%, cap 6 epochs). Epochs (test_epoch, bs64 fp32):
  epyc 32 s at w=0 and 28 s at w=2, laptop 9 s and 8 s, hpc 0.8 s and 1.0 s (and an amp_bf16 case, 0.5 s).
- vgg_fer, time to 65% (adam bs64): epyc misses it (best 62%, cap 10), laptop 300 s, hpc 15 s. Epochs: 120 s, 40 s,
  2 s.
- epyc's loader: batched 21,000/s at w=0 (20,000/s at w=2), per_image 1,500/s at w=0 and 3,300/s at w=2.
- op shares of profiled steps on epyc (train step and forward) and hpc (both models).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from fer_bench.cli import main
from fer_bench.errors import FerBenchError
from fer_bench.op_categories import OP_CATEGORIES
from fer_bench.results.compare import create_view, format_view
from fer_bench.results.views import list_views
from fer_bench.results.runs import load_results
from result_factory import (
    create_epoch_case,
    create_fingerprint,
    create_loader_case,
    create_profiled_step,
    create_run,
    create_time_to_accuracy,
    create_train_cases,
    write_run,
)

EPYC = create_fingerprint("epyc-2c", {"cpu": {"brand": "AMD EPYC 7763", "cores": 2}, "gpus": []})
LAPTOP = create_fingerprint("laptop-i7-8c", {"cpu": {"brand": "Intel i7", "cores": 8}, "gpus": []})
HPC = create_fingerprint("hpc-node", {"cpu": {"brand": "Xeon", "cores": 64}, "gpus": [{"name": "H100"}]})
E, L, H = "epyc-2c/cpu", "laptop-i7-8c/cpu", "hpc-node/cuda"

FAST = [0.35, 0.48, 0.56, 0.61, 0.64, 0.66]  # 60% at epoch 4
SLOW = [0.30, 0.42, 0.52, 0.57, 0.61, 0.63]  # 60% at epoch 5
NEVER = [0.30, 0.40, 0.50, 0.55, 0.58, 0.59]  # never 60%: best 59%
VGG = [0.30, 0.45, 0.55, 0.60, 0.63, 0.66, 0.67, 0.68]  # 65% at epoch 6
VGG_NEVER = [0.30, 0.40, 0.48, 0.53, 0.56, 0.58, 0.60, 0.61, 0.62, 0.62]  # never 65%: best 62%, cap 10

CONV = {"convolution": 0.62, "matmul": 0.05, "normalisation": 0.08, "elementwise and activation": 0.12,
        "pooling": 0.04, "data movement and copies": 0.03, "optimizer": 0.04, "loss": 0.01}


def _convergence(device: str, epoch_64: float, epoch_128: float, *, vgg_epoch: float, vgg_curve: list[float],
                 missed_runs: int = 0) -> list[dict]:
    return [
        create_time_to_accuracy("fer_cnn_2block", device, FAST, epoch_64, missed_runs=missed_runs),
        create_time_to_accuracy("fer_cnn_2block", device, SLOW, epoch_128, batch_size=128, lr_scaling="none"),
        create_time_to_accuracy("fer_cnn_2block", device, NEVER, epoch_64, optimizer="sgd"),
        create_time_to_accuracy("vgg_fer", device, vgg_curve, vgg_epoch, target=0.65),
    ]


def _epochs(device: str, w0: float, w2: float, vgg: float, accuracy: float) -> list[dict]:
    return [create_epoch_case("fer_cnn_2block", device, w0, num_workers=0, accuracy=accuracy),
            create_epoch_case("fer_cnn_2block", device, w2, num_workers=2, accuracy=accuracy),
            create_epoch_case("vgg_fer", device, vgg, accuracy=accuracy + 0.05, macro_f1=0.5)]


def write_studies(folder: Path) -> Path:
    """The three platforms' runs (module docstring) under ``folder``."""
    epyc = (_convergence("cpu", 30.0, 25.0, vgg_epoch=100.0, vgg_curve=VGG_NEVER)
            + _epochs("cpu", 32.0, 28.0, 120.0, 0.58)
            + [create_epoch_case("fer_cnn_2block", "cpu", 40.0, batch_size=32)]  # only epyc ran bs32
            + [create_loader_case(64, 0, 21000.0), create_loader_case(64, 2, 20000.0),
               create_loader_case(64, 0, 1500.0, pipeline="per_image"),
               create_loader_case(64, 2, 3300.0, pipeline="per_image")]
            + [create_profiled_step("fer_cnn_2block", "cpu", CONV),
               create_profiled_step("fer_cnn_2block", "cpu", {**CONV, "convolution": 0.66, "optimizer": 0.0},
                                    function="test_forward")])
    laptop = (_convergence("cpu", 10.0, 7.0, vgg_epoch=50.0, vgg_curve=VGG)
              + _epochs("cpu", 9.0, 8.0, 40.0, 0.60))
    hpc = (_convergence("cuda", 1.0, 0.9, vgg_epoch=2.5, vgg_curve=VGG, missed_runs=1)
           + _epochs("cuda", 0.8, 1.0, 2.0, 0.61)
           + [create_epoch_case("fer_cnn_2block", "cuda", 0.5, precision="amp_bf16")]
           + [create_profiled_step("fer_cnn_2block", "cuda",
                                   {"convolution": 0.35, "matmul": 0.10, "normalisation": 0.10,
                                    "elementwise and activation": 0.20, "pooling": 0.05,
                                    "data movement and copies": 0.10, "optimizer": 0.06, "loss": 0.02}),
              create_profiled_step("vgg_fer", "cuda", {**CONV, "convolution": 0.55, "matmul": 0.12})])
    write_run(folder / "epyc" / "run.json", create_run(epyc, EPYC))
    write_run(folder / "laptop" / "run.json", create_run(laptop, LAPTOP))
    write_run(folder / "hpc" / "run.json", create_run(hpc, HPC))
    return folder


@pytest.fixture(scope="module")
def studies_dir(tmp_path_factory) -> Path:
    return write_studies(tmp_path_factory.mktemp("studies"))


@pytest.fixture(scope="module")
def runs(studies_dir):
    return load_results([studies_dir])


def _compare(capsys, *argv) -> tuple[int, str, str]:
    status = main(["compare", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def _frame(runs, view: str, **kwargs) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(format_view(create_view(view, runs, **kwargs), "csv")))


def _md(runs, view: str, **kwargs) -> str:
    return format_view(create_view(view, runs, **kwargs), "md")


def _row(out: str, *cells: str) -> str:
    """The one markdown table row holding all ``cells`` (as `| cell |`)."""
    rows = [line for line in out.splitlines() if line.startswith("|") and all(f"| {c} |" in line for c in cells)]
    assert len(rows) == 1, (cells, rows)
    return rows[0]


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def _header(out: str) -> list[str]:
    return _cells(next(line for line in out.splitlines() if line.startswith("| ")))


# ----------------------------------------------------------------------------------------------- convergence


def test_convergence_view_cells_best_marks_and_notes(runs):
    out = _md(runs, "convergence")
    assert _header(out) == ["model", "batch_size", "precision", "optimizer", "lr scaling", "target", E, H, L]
    adam64 = _cells(_row(out, "fer_cnn_2block", "64", "adam"))
    assert adam64[6:] == ["**120 s, 4.0 ep best**", "**4.00 s, 4.0 ep (1 of 3 runs missed) best**", "40.0 s, 4.0 ep"]
    # laptop is the one platform where bs128 beats bs64 to the target
    assert _cells(_row(out, "fer_cnn_2block", "128", "adam"))[6:] == ["125 s, 5.0 ep", "4.50 s, 5.0 ep",
                                                                     "**35.0 s, 5.0 ep best**"]
    sgd = _row(out, "fer_cnn_2block", "sgd")
    assert _cells(sgd)[6:] == ["missed (cap 6 ep, best 59.0%)"] * 3 and " s," not in sgd
    vgg = _cells(_row(out, "vgg_fer"))
    assert vgg[5:] == ["65%", "missed (cap 10 ep, best 62.0%)", "15.0 s, 6.0 ep", "300 s, 6.0 ep"]
    assert "Target accuracy: 60% (fer_cnn_2block), 65% (vgg_fer); repeats: 3 seeded runs per case." in out
    assert "MLPerf's rule" in out and "dropping the fastest and the slowest" in out
    assert "at most one run missed" in out
    assert "4 cases missed the target (more than one run missed): no time." in out


def test_convergence_records(runs):
    frame = _frame(runs, "convergence")
    assert len(frame) == 12 and set(frame["platform"]) == {E, L, H}
    assert {"time_to_target_s", "epochs_to_target", "reached_target", "final_accuracy", "final_macro_f1",
            "target_accuracy", "runs_missed", "spread_min_s", "spread_median_s", "spread_max_s",
            "spread_cv"} <= set(frame.columns)
    missed = frame[~frame["reached_target"]]
    assert len(missed) == 4 and missed["time_to_target_s"].isna().all() and missed["epochs_to_target"].isna().all()
    hpc = frame.set_index(["platform", "model", "batch_size", "optimizer"]).loc[(H, "fer_cnn_2block", 64, "adam")]
    assert hpc["time_to_target_s"] == pytest.approx(4.0) and hpc["runs_missed"] == 1 and bool(hpc["reached_target"])
    assert hpc["spread_min_s"] == pytest.approx(3.6) and hpc["spread_max_s"] == pytest.approx(4.0)
    assert hpc["final_accuracy"] == pytest.approx(0.61) and hpc["final_macro_f1"] == pytest.approx(0.56)
    best = frame[frame["best"]]
    assert set(zip(best["platform"], best["batch_size"], best["optimizer"])) == {
        (E, 64, "adam"), (H, 64, "adam"), (L, 128, "adam")}
    assert set(frame["batch_size"]) == {64, 128}  # params keep their type
    records = json.loads(format_view(create_view("convergence", runs), "json"))
    vgg_epyc = next(r for r in records if r["platform"] == E and r["model"] == "vgg_fer")
    assert vgg_epyc["time_to_target_s"] is None and vgg_epyc["reached_target"] is False
    assert vgg_epyc["best_accuracy"] == pytest.approx(0.62) and vgg_epyc["target_accuracy"] == 0.65


def test_convergence_optimizer_and_target_rows(tmp_path):
    """A run made before the optimizer axis (no optimizer in its params) is the adam case of a newer run of the
    same machine; another target accuracy is another row."""
    write_run(tmp_path / "old.json", create_run([create_time_to_accuracy("fer_cnn_2block", "cpu", FAST, 20.0,
                                                                         optimizer=None)], EPYC,
                                                when="2026-01-01T00:00:00"))
    write_run(tmp_path / "new.json", create_run([create_time_to_accuracy("fer_cnn_2block", "cpu", FAST, 10.0)], EPYC,
                                                when="2026-02-01T00:00:00"))
    # the newest run, to another target: another case, which replaces neither
    write_run(tmp_path / "lower.json", create_run([create_time_to_accuracy("fer_cnn_2block", "cpu", FAST, 10.0,
                                                                           target=0.55)], EPYC,
                                                  when="2026-03-01T00:00:00"))
    out = _md(load_results([tmp_path]), "convergence")
    assert "1 older entry of the same platform and case left out" in out
    assert _cells(_row(out, "adam", "60%"))[-1] == "40.0 s, 4.0 ep"  # the newer run's
    assert _cells(_row(out, "adam", "55%"))[-1] == "30.0 s, 3.0 ep"
    assert "Target accuracy: 55% (fer_cnn_2block), 60% (fer_cnn_2block)" in out
    assert "**best**" not in out  # one optimizer and one batch size: nothing to choose between


# ----------------------------------------------------------------------------------------------- ops


def test_ops_view(runs):
    out = _md(runs, "ops")
    assert _header(out) == ["platform", "benchmark", "model", "batch_size", "precision", *OP_CATEGORIES, "top op"]
    row = _cells(_row(out, E, "test_train_step", "fer_cnn_2block"))
    assert row[5:] == ["62.0%", "5.0%", "8.0%", "12.0%", "4.0%", "3.0%", "4.0%", "1.0%", "1.0%",
                       "aten::convolution 49.6%"]
    assert "Shares of the self time of a profiled step (--fer-profile-ops), outside the timed rounds" in out
    assert "- fer_cnn_2block on epyc-2c/cpu: 62% of a step in convolution (test_train_step, bs 64, fp32)" in out
    assert "- fer_cnn_2block on hpc-node/cuda: 35% of a step in convolution" in out
    assert "- vgg_fer on hpc-node/cuda: 55% of a step in convolution" in out
    assert out.count(" of a step in ") == 3  # one line per (model, platform): the train step, not the forward
    frame = _frame(runs, "ops")
    assert len(frame) == 4 and frame["representative"].sum() == 3
    assert frame[list(OP_CATEGORIES)].sum(axis=1).round(6).eq(1.0).all()
    forward = frame[frame["benchmark"] == "test_forward"].iloc[0]
    assert forward["convolution"] == pytest.approx(0.66) and not forward["representative"]


def test_ops_view_folds_unknown_categories_into_other(tmp_path):
    step = create_profiled_step("fer_cnn_2block", "cpu", {"convolution": 0.5, "matmul": 0.2})
    step["extra_info"]["op_category_shares"] = {"convolution": 0.5, "matmul": 0.2, "fft": 0.1, "other": 0.2}
    write_run(tmp_path / "a.json", create_run([step], EPYC))
    out = _md(load_results([tmp_path]), "ops")
    assert _cells(_row(out, E))[-2] == "30.0%"
    assert "Categories outside the nine above counted as other: fft." in out


# ----------------------------------------------------------------------------------------------- paper


def test_paper_view_table(runs):
    out = _md(runs, "paper")
    assert _header(out) == ["model", "platform", "epoch time", "speedup", "time to target", "speedup (to target)",
                            "accuracy", "macro-F1"]
    rows = [_cells(line) for line in out.splitlines() if line.startswith("| fer_cnn_2block") or
            line.startswith("| vgg_fer")]
    assert rows == [
        # epoch time: each platform's fastest worker count at bs64 fp32 (hpc's amp_bf16 and epyc's bs32 left out)
        ["fer_cnn_2block", E, "28.0 s", "1.00x", "120 s", "1.00x", "61.0%", "0.560"],
        ["fer_cnn_2block", L, "8.00 s", "3.5x", "40.0 s", "3.0x", "61.0%", "0.560"],
        ["fer_cnn_2block", H, "0.8 s", "35.0x", "4.00 s", "30.0x", "61.0%", "0.560"],
        # epyc missed vgg's target: no time, and the time speedups are over the laptop, the slowest that reached it
        ["vgg_fer", E, "120 s", "1.00x", "missed", "-", "62.0%", "0.570"],
        ["vgg_fer", L, "40.0 s", "3.0x", "300 s", "1.00x", "66.0%", "0.610"],
        ["vgg_fer", H, "2.00 s", "60.0x", "15.0 s", "20.0x", "66.0%", "0.610"],
    ]
    assert f"Platforms from the slowest to the fastest by geometric mean epoch time over the models all of them " \
           f"ran: {E}, {L}, {H}." in out
    assert "- fer_cnn_2block: precision fp32 (of fp32, amp_bf16: preferred), batch_size 64 (of 32, 64, 128: " \
           "preferred), optimizer adam (of sgd, adam: preferred), pipeline batched, " \
           "target_accuracy 60%; num_workers: each platform's fastest epoch " \
           f"({E} w=2, {H} w=0, {L} w=2)" in out
    assert "Target accuracy: 60% (fer_cnn_2block), 65% (vgg_fer)." in out


def test_paper_view_records(runs):
    frame = _frame(runs, "paper").set_index(["model", "platform"])
    row = frame.loc[("fer_cnn_2block", H)]
    assert row["epoch_time_s"] == pytest.approx(0.8) and row["num_workers"] == 0 and row["batch_size"] == 64
    assert row["epoch_time_source"] == "test_epoch" and row["accuracy_source"] == "test_time_to_accuracy"
    assert row["epoch_speedup"] == pytest.approx(35.0) and row["time_to_target_speedup"] == pytest.approx(30.0)
    assert row["epoch_speedup_over"] == E
    vgg = frame.loc[("vgg_fer", E)]
    assert not vgg["reached_target"] and pd.isna(vgg["time_to_target_s"]) and pd.isna(vgg["time_to_target_speedup"])
    assert frame.loc[("vgg_fer", H), "time_to_target_speedup_over"] == L
    records = json.loads(format_view(create_view("paper", runs), "json"))
    assert [r["platform"] for r in records[:3]] == [E, L, H]
    assert next(r for r in records if r["model"] == "vgg_fer" and r["platform"] == E)["time_to_target_s"] is None


def test_paper_view_sources_fall_back(tmp_path):
    """Without a test_epoch case the epoch time is test_time_to_accuracy's; without a time-to-accuracy case the
    accuracy is test_epoch's; a platform that ran the model only at other settings is left out, and said so."""
    write_run(tmp_path / "a.json", create_run([
        create_time_to_accuracy("vgg_fer", "cpu", VGG, 50.0, target=0.65),
        create_epoch_case("fer_cnn_2block", "cpu", 9.0, accuracy=0.57, macro_f1=0.51)], EPYC))
    write_run(tmp_path / "b.json", create_run([
        create_time_to_accuracy("vgg_fer", "cuda", VGG, 5.0, target=0.65),
        create_epoch_case("fer_cnn_2block", "cuda", 3.0, accuracy=0.58, macro_f1=0.52),
        create_epoch_case("resnet18", "cuda", 3.0, precision="amp_bf16")], HPC))
    write_run(tmp_path / "c.json", create_run([create_epoch_case("resnet18", "cpu", 30.0)], LAPTOP))
    runs = load_results([tmp_path])
    frame = _frame(runs, "paper").set_index(["model", "platform"])
    assert frame.loc[("vgg_fer", E), "epoch_time_source"] == "test_time_to_accuracy"
    assert frame.loc[("vgg_fer", H), "epoch_speedup"] == pytest.approx(10.0)
    assert frame.loc[("fer_cnn_2block", H), "accuracy_source"] == "test_epoch"
    assert frame.loc[("fer_cnn_2block", H), "final_accuracy"] == pytest.approx(0.58)
    # resnet18: fp32 is preferred, so hpc's amp_bf16 case is not compared with the laptop's fp32 case
    assert list(frame.loc["resnet18"].index) == [L]
    out = _md(runs, "paper")
    assert "Left out (no case at the chosen settings): resnet18 on hpc-node/cuda." in out
    assert _cells(_row(out, "fer_cnn_2block", H))[4:] == ["-", "-", "58.0%", "0.520"]


def test_paper_through_the_cli_with_platform_names(studies_dir, capsys):
    status, out, _ = _compare(capsys, studies_dir, "--view", "paper", "--platform-name", "epyc-2c=ordinary computer",
                              "--platform-name", "hpc-node/cuda=H100 node")
    assert status == 0
    assert _cells(_row(out, "fer_cnn_2block", "ordinary computer/cpu"))[2:4] == ["28.0 s", "1.00x"]
    assert _cells(_row(out, "vgg_fer", "H100 node"))[2:4] == ["2.00 s", "60.0x"]
    assert "epyc-2c" not in out.split("| model |")[1] and "hpc-node" not in out.split("| model |")[1]
    status, out, _ = _compare(capsys, studies_dir, "--view", "convergence", "--platform-name",
                              "laptop-i7-8c=my laptop", "--format", "csv")
    assert status == 0 and "my laptop/cpu" in pd.read_csv(io.StringIO(out))["platform"].tolist()


def test_platform_name_errors(studies_dir, runs, capsys):
    status, _, err = _compare(capsys, studies_dir, "--view", "paper", "--platform-name", "nope=X")
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("fer-bench: error: --platform-name nope=X: no machine or platform 'nope'")
    with pytest.raises(FerBenchError, match="--platform-name: .* would both be called 'same/cpu'"):
        create_view("paper", runs, platform_names={"epyc-2c": "same", "laptop-i7-8c": "same"})
    status, _, err = _compare(capsys, studies_dir, "--platform-name", "no-equals-sign")
    assert status == 2 and "--platform-name 'no-equals-sign': write SLUG=NAME" in err


# ----------------------------------------------------------------------------------------------- workers


def test_workers_view_batched_against_per_image(runs):
    out = _md(runs, "workers")
    assert "Batched loader against per_image, each at its best worker count:" in out
    assert "- epyc-2c/cpu bs64: batched 21,000/s (w=0) is 6.4x per_image 3,300/s (w=2)" in out
    assert "| batched | False | **21,000/s best** | 20,000/s |" in _row(out, "test_dataloader", "batched")
    assert "| per_image | False | 1,500/s | **3,300/s best** |" in _row(out, "test_dataloader", "per_image")
    assert "wait 10%" in _row(out, L, "vgg_fer")  # the data-wait share stays in the cells


def test_pipeline_batched_named_or_not_is_one_case(tmp_path):
    """A run before the pipeline axis names no pipeline; a newer run may name batched: the same case."""
    write_run(tmp_path / "old.json", create_run([create_loader_case(64, 0, 9000.0)], EPYC, when="2026-01-01T00:00:00"))
    write_run(tmp_path / "new.json", create_run([create_loader_case(64, 0, 10000.0, pipeline="batched"),
                                                 create_loader_case(64, 0, 2000.0, pipeline="per_image")], EPYC,
                                                when="2026-02-01T00:00:00"))
    out = _md(load_results([tmp_path]), "workers")
    assert "1 older entry of the same platform and case left out" in out
    assert "- epyc-2c/cpu bs64: batched 10,000/s (w=0) is 5.0x per_image 2,000/s (w=0)" in out


# ----------------------------------------------------------------------------------------------- all views


def test_new_views_without_matching_results(tmp_path, capsys):
    write_run(tmp_path / "a.json", create_run(create_train_cases(0.01), EPYC))
    expected = {"convergence": "no time-to-accuracy results", "ops": "no op profiles",
                "paper": "no results for the paper's table"}
    for view, note in expected.items():
        status, out, _ = _compare(capsys, tmp_path, "--view", view)
        assert status == 0 and note in out and "| " not in out
        status, out, _ = _compare(capsys, tmp_path, "--view", view, "--format", "json")
        assert status == 0 and json.loads(out) == []
        status, out, _ = _compare(capsys, tmp_path, "--view", view, "--format", "csv")
        assert status == 0 and out.strip() == ""
    # a group filter that leaves the views nothing to show is the same
    status, out, _ = _compare(capsys, tmp_path, "--view", "convergence", "--group", "train_step")
    assert status == 0 and "no time-to-accuracy results" in out


def test_views_listed_for_the_cli():
    assert list_views()[-5:] == ("convergence", "ops", "paper", "compile", "nodes")
    from fer_bench.cli import create_parser

    text = create_parser().parse_args(["compare", "x", "--view", "paper"]).view
    assert text == "paper"


def test_plots_of_the_study_views(studies_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the plots extra (matplotlib) is not installed")
    out_dir = tmp_path / "plots"
    status, _, err = _compare(capsys, studies_dir, "--view", "paper", "--plots", out_dir)
    assert status == 0 and "plots:" in err
    names = {p.name for p in out_dir.iterdir()}
    assert {"convergence.png", "ops.png", "paper.png", "workers.png"} <= names
    for name in ("convergence.png", "ops.png", "paper.png"):
        data = (out_dir / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_convergence_lr_scaling_rows(tmp_path):
    """The lr scaling is a param (the axis), or extra_info's word in a run before the axis: each rule is a row of
    its own, and the fastest batch size is chosen within a rule."""
    write_run(tmp_path / "a.json", create_run([
        create_time_to_accuracy("fer_cnn_2block", "cpu", FAST, 10.0),
        create_time_to_accuracy("fer_cnn_2block", "cpu", FAST, 8.0, batch_size=128, lr_scaling="linear"),
        create_time_to_accuracy("fer_cnn_2block", "cpu", SLOW, 7.0, batch_size=128)], EPYC))
    write_run(tmp_path / "b.json", create_run([
        create_time_to_accuracy("fer_cnn_2block", "cpu", SLOW, 3.0, batch_size=128, lr_scaling="sqrt",
                                optimizer=None)], LAPTOP))
    runs = load_results([tmp_path])
    out = _md(runs, "convergence")
    assert _cells(_row(out, "128", "linear"))[-2:] == ["32.0 s, 4.0 ep", "-"]
    assert _cells(_row(out, "128", "sqrt"))[-2:] == ["-", "15.0 s, 5.0 ep"]
    assert _cells(_row(out, "128", "none"))[-2:] == ["**35.0 s, 5.0 ep best**", "-"]  # beats bs64's 40 s
    frame = _frame(runs, "convergence")
    assert sorted(frame["lr_scaling"]) == ["linear", "none", "none", "sqrt"]
    assert frame.loc[frame["lr_scaling"] == "linear", "lr"].iloc[0] == pytest.approx(2e-3)
