"""The studies preset and the new axes: parameter sets per benchmark, options that replace an axis in every study,
the benchmark groups a preset leaves out, the pipeline and lr_scaling ids, and --fer-profile-ops end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fer_bench.axes import AXES, case_id, match_params, split_case_name
from fer_bench.plugin.presets import PRESETS, Preset
from fer_bench.plugin.session import FerOptions
from fer_bench.workload import create_workload, workload_differences

ROOT = Path(__file__).resolve().parents[1]
TTA_AXES = ["model", "device", "batch_size", "precision", "optimizer", "lr_scaling"]


def _session(preset: str, **overrides) -> FerOptions:
    return FerOptions(preset=PRESETS[preset], overrides=overrides, data_path=None, epoch_images=2048, save=False,
                      rootpath=ROOT)


def test_studies_preset_runs_each_study_not_their_product():
    cases = _session("studies").cases("time_to_accuracy", TTA_AXES)
    ids = [case_id(c) for c in cases if c["device"] == "cpu" and c["precision"] == "fp32"]
    # the optimizer study (5 optimizers at bs 64) and the batch study (adam at 4 batch sizes, 2 rules): adam at
    # bs 64 without a rule is in both, once
    assert len(ids) == 5 + 4 * 2 - 1 == len(set(ids))
    assert "fer_cnn_2block-cpu-bs64-fp32-opt_sgd" in ids
    assert "fer_cnn_2block-cpu-bs256-fp32-lr_sqrt" in ids
    assert "fer_cnn_2block-cpu-bs256-fp32-opt_sgd" not in ids  # not the product
    assert ids[0] == "fer_cnn_2block-cpu-bs64-fp32-opt_sgd"  # study order kept


def test_an_option_replaces_its_axis_in_every_study():
    cases = _session("studies", optimizer=["sgd"]).cases("time_to_accuracy", TTA_AXES)
    assert {c["optimizer"] for c in cases} == {"sgd"}
    assert {c["batch_size"] for c in cases} == {32, 64, 128, 256}


def test_a_preset_without_studies_is_one_product():
    preset = Preset("x", "x", per_benchmark={"epoch": {"num_workers": [0, 2]}})
    assert preset.studies("epoch") == [{"num_workers": [0, 2]}]
    assert preset.studies("forward") == [{}]
    assert preset.axis_values("epoch", "num_workers") == [0, 2]


def test_pipeline_study_values():
    session = _session("studies")
    assert session.axis_values("dataloader", "pipeline") == ["batched", "per_image"]
    assert session.axis_values("epoch", "num_workers") == [0, 1, 2, 4]
    assert _session("default").axis_values("epoch", "pipeline") == ["batched"]


def test_added_axes_keep_old_ids_and_match_keys():
    case = {"model": "fer_cnn_2block", "device": "cpu", "batch_size": 64, "num_workers": 2, "precision": "fp32",
            "num_gpus": 1, "optimizer": "adam", "lr_scaling": "none", "pipeline": "batched"}
    assert case_id(case) == "fer_cnn_2block-cpu-bs64-w2-fp32-g1"
    assert match_params(case) == {k: v for k, v in case.items() if k not in ("optimizer", "lr_scaling", "pipeline")}
    assert case_id({**case, "pipeline": "per_image", "lr_scaling": "sqrt"}) == \
        "fer_cnn_2block-cpu-bs64-w2-fp32-g1-lr_sqrt-per_image"
    with pytest.raises(ValueError, match="'dali' is not a data pipeline"):
        AXES["pipeline"].parse("dali")


def test_a_target_is_part_of_the_workload():
    a = create_workload({"kind": "synthetic"}, train_images=2048, target_accuracy=0.7, max_epochs=15)
    b = create_workload({"kind": "synthetic"}, train_images=2048, target_accuracy=0.6, max_epochs=15)
    assert workload_differences(a, b)


def _collect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "--collect-only", "-q", "-p",
                           "no:cacheprovider", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_presets_deselect_the_groups_they_leave_out():
    quick = _collect("--fer-preset", "quick")
    assert quick.returncode == 0, quick.stdout[-2000:]
    assert "test_time_to_accuracy" not in quick.stdout and "deselected" in quick.stdout
    studies = _collect("--fer-preset", "studies")
    names = {split_case_name(line)[0] for line in studies.stdout.splitlines() if "::" in line}
    assert names == {"test_dataloader", "test_epoch", "test_time_to_accuracy"}, names


def test_preset_costs_list_the_studies_preset():
    from fer_bench.plugin.summary import list_preset_costs

    (line,) = list_preset_costs(str(ROOT / "benchmarks"), ["studies"])
    assert line.startswith("preset studies: ") and "time_to_accuracy" in line and "budget 30 min" in line


def test_profile_ops_writes_the_trace_and_tables_beside_the_json(tmp_path):
    out = tmp_path / "run" / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/test_step.py", "-q", "-p", "no:cacheprovider",
         "-k", "test_train_step and not reference", "--fer-preset", "quick", "--fer-devices", "cpu",
         "--fer-precisions", "fp32", "--fer-profile-ops", "--benchmark-json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    (case,) = json.loads(out.read_text())["benchmarks"]
    info = case["extra_info"]
    shares = info["op_category_shares"]
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-9) and shares["convolution"] > 0
    files = info["op_profile_files"]
    assert set(files) == {"trace", "ops", "categories"}
    for kind, rel in files.items():
        path = out.parent / rel
        assert path.parent == out.parent / "out.ops" and path.stat().st_size > 0
    json.loads((out.parent / files["trace"]).read_text())
    with open(out.parent / files["categories"]) as fh:
        rows = list(csv.DictReader(fh))
    assert {r["category"] for r in rows} >= {"convolution", "optimizer", "loss"}
    assert all(isinstance(v, int) and v > 0 for v in info["peak_memory_by_phase"].values())
