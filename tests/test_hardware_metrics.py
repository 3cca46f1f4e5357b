"""Energy and utilisation in the stored-run tools: `fer-bench gate --metric samples_per_joule` (one value per run,
threshold only) and `fer-bench compare --metric samples_per_joule|mfu` (the platforms view)."""

from __future__ import annotations

import pytest

from fer_bench.axes import split_case_name
from fer_bench.results import gate
from fer_bench.results.compare import create_view, format_view
from fer_bench.results.runs import load_results
from tests.result_factory import create_benchmark, create_fingerprint, create_rounds, create_run, write_run


def _case(median_s: float, *, per_joule: float | None, mfu: float | None = None, seed: int = 0) -> dict:
    extra = {"samples_per_joule": per_joule, "energy_source": "nvml_total_energy_counter" if per_joule else None,
             "energy_reason": None if per_joule else "no NVML (pynvml not installed or no NVIDIA driver)",
             "mfu": mfu, "mfu_reason": None if mfu is not None else "no datasheet peak for CPUs"}
    return create_benchmark("test_train_step", {"model": "fer_cnn_2block", "device": "cuda", "batch_size": 64,
                                                "precision": "fp32", "num_gpus": 1},
                            create_rounds(median_s, seed=seed), extra_info=extra)


def _write(tmp_path, name: str, slug: str, cases: list[dict], when: str = "2026-01-01T12:00:00+00:00"):
    return write_run(tmp_path / f"{name}.json", create_run(cases, create_fingerprint(slug), when=when))


@pytest.mark.parametrize("current, status, words", [
    (800.0, "regression", "1.25x fewer images per joule, above the 5% threshold"),
    (1300.0, "improvement", "1.30x more images per joule, improvement"),
    (1010.0, "unchanged", "within the 5% threshold (one value per run"),
])
def test_gate_on_images_per_joule(tmp_path, current, status, words):
    base = _write(tmp_path, "base", "h100", [_case(0.002, per_joule=1000.0)])
    cur = _write(tmp_path, "cur", "h100", [_case(0.002, per_joule=current, seed=1)], when="2026-01-02T12:00:00+00:00")
    report = gate.evaluate_gate(load_results([base]), load_results([cur]), metric="samples_per_joule")
    (row,) = report.rows
    assert row.status == status and words in row.verdict
    assert report.exit_status == (gate.EXIT_REGRESSION if status == "regression" else gate.EXIT_OK)
    assert "/J" in gate.format_gate_text(report)


def test_gate_on_energy_where_none_was_measured_says_so(tmp_path):
    base = _write(tmp_path, "base", "epyc", [_case(0.05, per_joule=None)])
    cur = _write(tmp_path, "cur", "epyc", [_case(0.05, per_joule=None, seed=1)], when="2026-01-02T12:00:00+00:00")
    report = gate.evaluate_gate(load_results([base]), load_results([cur]), metric="samples_per_joule")
    assert report.rows[0].verdict.startswith("no samples_per_joule recorded (energy not measured here")
    assert report.exit_status == gate.EXIT_OK


def test_energy_metric_refuses_the_suite_scope(tmp_path):
    runs = [_write(tmp_path, f"r{i}", "h100", [_case(0.002, per_joule=1000.0, seed=i)]) for i in range(4)]
    from fer_bench.errors import FerBenchError

    with pytest.raises(FerBenchError, match="--scope suite"):
        gate.evaluate_gate(load_results(runs[:2]), load_results(runs[2:]), metric="samples_per_joule",
                           paired=True, scope="suite")


def test_compare_platforms_by_energy_and_mfu(tmp_path):
    a = _write(tmp_path, "a", "h100", [_case(0.002, per_joule=2000.0, mfu=0.02)])
    b = _write(tmp_path, "b", "a100", [_case(0.004, per_joule=1000.0, mfu=0.03)])
    runs = load_results([a, b])
    energy = format_view(create_view("platforms", runs, metric="samples_per_joule"))
    assert "2,000 images/J (2.0x more images per joule)" in energy and "1000 images/J (baseline)" in energy
    mfu = format_view(create_view("platforms", runs, metric="mfu"))
    assert "3.0% MFU (1.50x the baseline's MFU)" in mfu and "2.0% MFU (baseline)" in mfu  # the lowest is the baseline


def test_compare_by_energy_without_any_says_why(tmp_path):
    runs = load_results([_write(tmp_path, "a", "epyc", [_case(0.05, per_joule=None)])])
    text = format_view(create_view("platforms", runs, metric="samples_per_joule"))
    assert "no result carries samples_per_joule (energy is measured on NVIDIA GPUs" in text


# ------------------------------------------------------------------------------------------ launch-bound


def test_launch_bound_verdicts():
    from fer_bench.measure.utilisation import launch_bound

    # the committed H100 run's fer_cnn_2block step: 2.2 ms for a few hundred kernels, host time = device time
    tight = launch_bound(device_type="cuda", host_ms=2.2, device_ms=2.2, ops=300)
    assert tight["launch_bound"] is True and tight["device_us_per_op"] == pytest.approx(7.33, rel=1e-2)
    assert "reduce-overhead" in tight["launch_bound_reason"] and "larger batch" in tight["launch_bound_reason"]
    behind = launch_bound(device_type="cuda", host_ms=13.0, device_ms=10.0, ops=200)  # 50 us an op, host behind
    assert behind["launch_bound"] is True and "1.30x the device time" in behind["launch_bound_reason"]
    busy = launch_bound(device_type="cuda", host_ms=9.1, device_ms=9.06, ops=300)  # resnet18: 30 us an op
    assert busy["launch_bound"] is False
    cpu = launch_bound(device_type="cpu", host_ms=60.0, device_ms=None, ops=None)
    assert cpu["launch_bound"] is None and "not judged" in cpu["launch_bound_reason"]


def test_dispatched_ops_are_counted():
    import torch

    from fer_bench.measure.utilisation import count_dispatched_ops

    x = torch.ones(4)
    assert count_dispatched_ops(lambda: (x + 1) * 2) == 2


def test_platforms_view_says_which_steps_are_launch_bound(tmp_path):
    case = _case(0.0022, per_joule=None)
    case["extra_info"].update(launch_bound=True, launch_bound_reason="7.3 us of device time per operator (300 a "
                                                                        "step) is about what launching a kernel costs")
    runs = load_results([_write(tmp_path, "a", "h100", [case])])
    text = format_view(create_view("platforms", runs))
    assert "Launch-bound on `h100/cuda` (1 case: `test_train_step" in text and "7.3 us of device time" in text


# ------------------------------------------------------------------------------------------ compile view


def _step(compile_mode: str | None, median_s: float, **extra) -> dict:
    params = {"model": "fer_cnn_2block", "device": "cuda", "batch_size": 64, "precision": "fp32", "num_gpus": 1}
    if compile_mode is not None:
        params["compile"] = compile_mode
    return create_benchmark("test_train_step", params, create_rounds(median_s), extra_info=extra)


def test_compile_view_shows_speedup_over_eager_with_compile_time(tmp_path):
    cases = [_step(None, 0.0022),  # a run from before the compile axis: eager
             _step("default", 0.0011, compile_time_s=41.0, compile_graph_breaks=0),
             _step("reduce-overhead", 0.0004, compile_time_s=55.0, compile_graph_breaks=2)]
    runs = load_results([_write(tmp_path, "a", "h100", cases)])
    text = format_view(create_view("compile", runs))
    assert "(reference)" in text
    assert "(2.0x faster, compile 41.0 s)" in text
    assert "(5.5x faster, compile 55.0 s, 2 graph breaks)" in text


def test_compile_view_without_compiled_cases_says_how_to_get_them(tmp_path):
    runs = load_results([_write(tmp_path, "a", "h100", [_step(None, 0.0022)])])
    assert "--fer-compile eager,default" in format_view(create_view("compile", runs))


# ------------------------------------------------------------------------------------------ end to end


def test_every_step_result_carries_mfu_and_energy_with_reasons(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/test_step.py", "-q", "-p", "no:cacheprovider", "-k",
         "train_step", "--fer-preset", "quick", "--fer-devices", "cpu", "--fer-precisions", "fp32",
         "--fer-peak-tflops", "2", "--benchmark-json", str(out)], cwd=root, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    cases = {split_case_name(b["name"])[0]: b["extra_info"] for b in json.loads(out.read_text())["benchmarks"]}
    assert set(cases) == {"test_train_step", "test_train_step_reference"}
    step = cases["test_train_step"]
    assert step["peak_tflops"] == 2.0 and step["peak_source"] == "--fer-peak-tflops"
    assert step["mfu"] == pytest.approx(step["achieved_tflops"] / 2.0)
    reference = cases["test_train_step_reference"]  # no FLOP count of its own: null with the reason
    assert reference["mfu"] is None and reference["mfu_reason"]
    for info in cases.values():
        assert "energy_j_per_step" in info and "samples_per_joule" in info
        if info["energy_j_per_step"] is None:  # this VM exposes no RAPL
            assert info["energy_reason"]
        assert info["launch_bound"] is None and "not judged" in info["launch_bound_reason"]


def test_compile_axis_end_to_end_on_the_cpu(tmp_path):
    """A paper CNN eager and compiled: two results, the compiled one with its compile time and graph counts;
    reduce-overhead skipped here with its reason."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/test_step.py", "-q", "-p", "no:cacheprovider", "-rs", "-k",
         "test_train_step and not reference", "--fer-preset", "quick", "--fer-budget", "none", "--fer-devices", "cpu",
         "--fer-precisions", "fp32", "--fer-batch-sizes", "8", "--fer-compile", "eager,default,reduce-overhead",
         "--benchmark-json", str(out)], cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "reduce-overhead captures CUDA graphs: CUDA only" in proc.stdout
    cases = {b["params"]["compile"]: b["extra_info"] for b in json.loads(out.read_text())["benchmarks"]}
    assert set(cases) == {"eager", "default"}
    compiled = cases["default"]
    assert compiled["compile_mode"] == "default" and compiled["compile_time_s"] > 0
    assert compiled["compile_graphs"] >= 1 and compiled["compile_graph_breaks"] == 0
    assert compiled["compile_fell_back"] is False
    assert compiled["flops_per_step"] == cases["eager"]["flops_per_step"]  # counted on the eager model
    assert "compile_time_s" not in cases["eager"]
