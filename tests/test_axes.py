"""The axis registry and the workload record: ids, matching of old and new runs, comparability."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

import fer_bench.engine.availability  # noqa: F401  (the engine's checks, registered with the axes)
from fer_bench.axes import AXES, axis_names, case_id, case_unavailable_reason, match_params, option_axes
from fer_bench.plugin.presets import PRESETS
from fer_bench.workload import (
    create_workload,
    describe_workload,
    workload_differences,
    workload_of,
)

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = sorted((ROOT / "results" / "xeon-2c__cpu").glob("0002_*.json"))
H100 = ROOT / "results" / "xeon-16c__h100-80gb-x1" / "0001_h100_quick_gpu_run.json"


def test_registry_is_torch_free_and_complete():
    code = ("import sys, fer_bench.axes, fer_bench.workload, fer_bench.results.compare, fer_bench.results.gate; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
    for axis in option_axes():
        assert axis.option.startswith("--fer-") and set(axis.presets) == set(PRESETS), axis.name
    assert axis_names()[:6] == ("model", "device", "batch_size", "num_workers", "precision", "num_gpus")


@pytest.mark.parametrize("case, expected", [
    ({"model": "efficientnet_b0", "device": "cpu", "batch_size": 64, "num_workers": 2, "precision": "fp32",
      "num_gpus": 1}, "efficientnet_b0-cpu-bs64-w2-fp32-g1"),
    ({"model": "resnet18", "device": "cuda", "batch_size": 64, "precision": "amp_fp16", "num_gpus": 1,
      "optimizer": "adam", "memory_format": "contiguous"}, "resnet18-cuda-bs64-amp_fp16-g1"),
    ({"model": "resnet18", "device": "cpu", "batch_size": 64, "precision": "fp32", "num_gpus": 1,
      "optimizer": "sgd_momentum", "memory_format": "channels_last"},
     "resnet18-cpu-bs64-fp32-g1-opt_sgd_momentum-channels_last"),
    ({"device": "cuda", "batch_size": 64, "num_workers": 4, "pin_memory": True}, "cuda-bs64-w4-pin"),
    # registry order wins over the dict's order
    ({"num_gpus": 2, "precision": "bf16", "model": "vgg_fer", "device": "cpu", "batch_size": 8}, "vgg_fer-cpu-bs8-bf16-g2"),
])
def test_case_ids(case, expected):
    assert case_id(case) == expected


def test_match_params_drops_added_axes_at_their_original_value():
    old = {"model": "resnet18", "batch_size": 64}
    assert match_params({**old, "optimizer": "adam", "memory_format": "contiguous"}) == old
    assert match_params({**old, "optimizer": "sgd"}) == {**old, "optimizer": "sgd"}


def test_option_parsing_names_the_option_and_values():
    assert AXES["optimizer"].parse_list("adam, sgd,adam") == ["adam", "sgd"]
    assert AXES["memory_format"].parse_list("CHANNELS_LAST") == ["channels_last"]
    with pytest.raises(argparse.ArgumentTypeError, match=r"--fer-optimizers: 'lbfgs' is not an optimizer; valid: sgd"):
        AXES["optimizer"].parse_list("lbfgs")
    with pytest.raises(argparse.ArgumentTypeError, match="--fer-batch-sizes: '1.5' is not a positive integer"):
        AXES["batch_size"].parse_list("1.5")
    # models are checked at configure, after a user's conftest registered its own
    assert AXES["model"].parse_list("mine,resnet18") == ["mine", "resnet18"]
    with pytest.raises(ValueError, match="--fer-models: 'mine' is not a registered model"):
        AXES["model"].check(["mine"])


def test_unavailable_reasons_in_registry_order():
    assert case_unavailable_reason({"device": "cpu", "precision": "amp_fp16"}).startswith("amp_fp16 is a GPU")
    assert "GPU device" in case_unavailable_reason({"device": "cpu", "num_gpus": 2, "precision": "amp_fp16"})
    assert case_unavailable_reason({"device": "cpu", "pin_memory": True}).startswith("pin_memory only")
    assert case_unavailable_reason({"device": "cpu", "precision": "fp32", "optimizer": "sgd"}) is None


def test_committed_reference_ids_are_still_generated():
    """Every case of the committed reference run is collected again, under the same name, by the default
    preset: stored baselines keep matching after the registry and the new axes."""
    names = {b["name"] for b in json.loads(REFERENCE[-1].read_text())["benchmarks"]}
    proc = subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "--collect-only", "-q", "-p",
                           "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, check=True)
    collected = {line.split("::", 1)[1] for line in proc.stdout.splitlines() if "::" in line}
    assert names and names <= collected, sorted(names - collected)


def test_workload_records_and_differences():
    data = {"kind": "synthetic", "size": 35887, "seed": 0, "generator_version": 1}
    a = create_workload(data, images_per_round=2048)
    b = create_workload(data, images_per_round=4096)
    assert a == {"data": data, "images_per_round": 2048}
    assert workload_differences(b, a) == ["images_per_round 4096 vs 2048"]
    assert workload_differences(a, b, ignore_counts=True) == [] and workload_differences(a, a) == []
    c = create_workload({**data, "seed": 1}, images_per_round=2048)
    assert workload_differences(a, c) == ["data.seed 0 vs 1"] == workload_differences(a, c, ignore_counts=True)
    assert describe_workload(a) == "synthetic 35887 seed 0, 2048 images/round"


def test_workload_of_an_older_result_is_read_from_its_keys():
    old = {"data": "synthetic", "images_per_round": 4096, "input_size": 48, "pin_memory": False}
    record, inferred = workload_of(old)
    assert inferred and record == {"data": {"kind": "synthetic"}, "input_size": 48, "images_per_round": 4096}
    new = create_workload({"kind": "synthetic", "size": 35887, "seed": 0}, images_per_round=4096, input_size=48)
    assert workload_differences(record, new) == []  # only facts both hold are compared
    assert workload_of({"data": "/data/fer2013.csv"}) == (None, True)  # a path says nothing of the content
    assert workload_of({"workload": new}) == (new, False)


def test_committed_h100_and_vm_loader_runs_are_told_apart():
    """The H100 node passed 4,096 images a round, the VM 2,048: their loader times are different cases, and per
    image they compare."""
    from fer_bench.results.compare import create_view
    from fer_bench.results.runs import load_results

    runs = load_results([H100, REFERENCE[-1]])
    table = create_view("platforms", runs, groups=["dataloader"])
    assert any("different image counts" in note for note in table.notes)
    rows = table.records[table.records["kind"] == "case"]
    shared = rows[(rows["batch_size"] == 64) & (rows["num_workers"] == 0) & (rows["pin_memory"] == False)]  # noqa: E712
    # the VM's loader pass and the H100 node's on its cpu and its cuda device: never one row
    assert sorted(shared["workload"]) == ["2048 images/round", "4096 images/round", "4096 images/round"]
    assert set(rows[rows["platform"].str.startswith("xeon-2c")]["speedup_text"]) == {"no baseline"}
    per_image = create_view("platforms", runs, metric="samples_per_s", groups=["dataloader"])
    assert "workload" not in per_image.records.columns
    assert any("compared per image" in note for note in per_image.notes)


THROWAWAY_AXIS = '''
from fer_bench.axes import Axis, choice_parser, register_axis

register_axis(Axis(
    "warmth", choice_parser(("cold", "warm"), "a warmth"), "--fer-warmths", "cold or warm (a throw-away axis)",
    {"quick": ("cold",), "default": ("cold",), "studies": ("cold",), "full": ("cold", "warm")},
    format_id=lambda v: f"warmth_{v}", since_default="cold", implied=True, config_default="cold",
    choices=("cold", "warm"), unavailable=lambda v, case: "too warm here" if v == "warm" and case.get("batch_size") == 8
    else None, engine="nothing: a test's axis"))
'''


@pytest.fixture
def throwaway_axis():
    """The axis THROWAWAY_AXIS registers, registered in this process, and taken out again."""
    from fer_bench.axes import remove_axis

    namespace: dict = {}
    exec(THROWAWAY_AXIS, namespace)
    try:
        yield AXES["warmth"]
    finally:
        remove_axis("warmth")
    assert "warmth" not in AXES


def test_a_throw_away_axis_is_one_registry_entry(throwaway_axis):
    """Registered, an axis is in the registry's order, ids, match keys, implied params and skip reasons."""
    from fer_bench.axes import implied_params

    assert axis_names()[-1] == "warmth" and throwaway_axis in option_axes()
    case = {"model": "m", "device": "cpu", "batch_size": 8, "warmth": "warm"}
    assert case_id(case) == "m-cpu-bs8-warmth_warm"
    assert case_id({**case, "warmth": "cold"}) == "m-cpu-bs8"  # at its original value: old ids stay
    assert match_params({"model": "m", "warmth": "cold"}) == {"model": "m"}
    assert implied_params()["warmth"] == "cold"
    assert case_unavailable_reason(case) == "too warm here"
    assert throwaway_axis.parse_list("WARM,cold") == ["warm", "cold"]
    with pytest.raises(argparse.ArgumentTypeError, match="--fer-warmths: 'hot' is not a warmth; valid: cold, warm"):
        throwaway_axis.parse_list("hot")


def test_a_throw_away_axis_reaches_options_cases_and_run_config(pytester):
    """End to end, in a fresh process where the axis is registered before the plugin and the engine load: its
    option, its cases and ids, its skip reason, its RunConfig field with the registry's default."""
    pytester.makepyfile(throwaway_axis_plugin=THROWAWAY_AXIS)
    pytester.makepyfile(test_x="""
        def test_x(run_config, batch_size, warmth):
            assert run_config.warmth == warmth and run_config.batch_size == batch_size

        def test_default():
            from fer_bench.engine.config import RunConfig
            assert RunConfig(model="m").warmth == "cold"
    """)
    args = ["-p", "throwaway_axis_plugin", "-p", "fer_bench.plugin", "-p", "no:cacheprovider", "--fer-devices",
            "cpu", "--fer-batch-sizes", "8,16"]
    result = pytester.runpytest_subprocess(*args, "--fer-warmths", "cold,warm", "-v", "-rs")
    result.stdout.fnmatch_lines(["*test_x[[]bs8[]] PASSED*", "*test_x[[]bs8-warmth_warm[]] SKIPPED*",
                                 "*test_x[[]bs16[]] PASSED*", "*test_x[[]bs16-warmth_warm[]] PASSED*",
                                 "*test_default PASSED*", "*too warm here*"])
    assert result.ret == 0
    bad = pytester.runpytest_subprocess(*args, "--fer-warmths", "hot")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--fer-warmths: 'hot' is not a warmth; valid: cold, warm"])
    assert "--fer-warmths=LIST" in pytester.runpytest_subprocess(*args, "--help").stdout.str()
