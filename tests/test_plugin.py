"""The pytest plugin end to end with pytester: options and their errors, ids, skips, the JSON and the sidecar."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]

AXES_TEST = """
import pytest

@pytest.mark.benchmark(group="train_step")
def test_case(benchmark, run_config, model, device, batch_size, precision, num_gpus):
    benchmark.pedantic(lambda: None, rounds=1)
    assert run_config.case_id().startswith(model)
"""


@pytest.fixture
def run(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "cache"))

    def _run(*args):
        return pytester.runpytest_subprocess("-p", "fer_bench.plugin", "-p", "no:cacheprovider", *args)
    return _run


@pytest.mark.parametrize("args, message", [
    (["--fer-models", "fer_cnn_2block,nope"], "--fer-models: 'nope' is not a registered model; valid: *"),
    (["--fer-devices", "gpu"], "--fer-devices: 'gpu' is not a device; valid: cpu, cuda, cuda:N, mps"),
    (["--fer-batch-sizes", "32,0"], "--fer-batch-sizes: '0' is not a positive integer"),
    (["--fer-num-workers", "-1"], "--fer-num-workers: '-1' is not an integer >= 0"),
    (["--fer-precisions", "fp16"], "--fer-precisions: 'fp16' is not a precision; valid: fp32, amp_fp16, amp_bf16, bf16"),
    (["--fer-num-gpus", "x"], "--fer-num-gpus: 'x' is not a positive integer"),
    (["--fer-preset", "huge"], "--fer-preset: 'huge' is not a preset; valid: quick, default, full"),
    (["--fer-data", "/no/such/file.csv"], "--fer-data: '/no/such/file.csv' does not exist"),
    (["--fer-malloc", "fast"], "--fer-malloc: invalid choice: 'fast' (choose from *steady*, *system*)"),
])
def test_bad_option_stops_the_run(pytester, run, args, message):
    pytester.makepyfile(test_x=AXES_TEST)
    result = run(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}"])


def test_ids_and_skips_with_reasons(pytester, run, monkeypatch):
    pytester.makepyfile(test_x=AXES_TEST)
    result = run("--fer-models", "fer_cnn_2block,resnet18", "--fer-devices", "cpu,cuda",
                 "--fer-batch-sizes", "8", "--fer-precisions", "fp32,amp_fp16", "--fer-num-gpus", "1,2",
                 "-rs", "-v", "--benchmark-disable")
    result.stdout.fnmatch_lines([
        "*test_case?fer_cnn_2block-cpu-bs8-fp32-g1? PASSED*",
        "*test_case?resnet18-cuda-bs8-amp_fp16-g2? SKIPPED*",
    ])
    out = result.stdout.str()
    assert "amp_fp16 is a GPU precision" in out
    assert "num_gpus=2 needs a GPU device, not cpu" in out
    if "no CUDA device on this machine" not in out:  # a machine with a GPU runs the cuda cases
        assert "cuda" in out
    outcomes = result.parseoutcomes()
    # 2 models x 2 devices x 2 precisions x 2 GPU counts: every case collected on every machine
    assert outcomes.get("passed", 0) + outcomes.get("skipped", 0) == 16


def test_preset_values_and_explicit_override(pytester, run):
    pytester.makepyfile(test_x=AXES_TEST)
    quick = run("--fer-preset", "quick", "--collect-only", "-q")
    quick.stdout.fnmatch_lines(["*test_case?fer_cnn_2block-cpu-bs32-fp32-g1?*"])
    override = run("--fer-preset", "quick", "--fer-batch-sizes", "16,8", "--collect-only", "-q")
    override.stdout.fnmatch_lines(["*test_case?fer_cnn_2block-cpu-bs16-fp32-g1?*",
                                   "*test_case?fer_cnn_2block-cpu-bs8-fp32-g1?*"])
    assert "bs32" not in override.stdout.str()


def test_defaults_from_ini_addopts(pytester, run):
    pytester.makepyfile(test_x=AXES_TEST)
    pytester.makeini("[pytest]\naddopts = --fer-batch-sizes 12 --fer-devices cpu --fer-precisions bf16\n")
    result = run("--fer-preset", "quick", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*test_case?fer_cnn_2block-cpu-bs12-bf16-g1?*"])


def test_out_of_memory_is_the_case_result(pytester, run):
    pytester.makepyfile(test_oom="""
        import pytest, torch

        @pytest.mark.parametrize("batch_size", [4096])
        def test_big(batch_size):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

        def test_after():
            pass
    """)
    result = run("-rs")
    result.stdout.fnmatch_lines(["*SKIPPED*out of memory at batch size 4096*"])
    result.assert_outcomes(skipped=1, passed=1)


def test_out_of_memory_case_releases_what_it_held(pytester, run):
    """The OOM case's locals (its model and batches) are gone before the next case starts."""
    pytester.makepyfile(test_oom="""
        import gc, weakref
        import pytest, torch

        HELD = []

        class Big:
            pass

        @pytest.mark.parametrize("batch_size", [4096])
        def test_big(batch_size):
            model_and_batch = Big()
            HELD.append(weakref.ref(model_and_batch))
            raise torch.OutOfMemoryError("CUDA out of memory")

        def test_next_case_starts_clean():
            assert HELD and HELD[0]() is None
    """)
    result = run("-rs", "-p", "no:randomly")
    result.assert_outcomes(skipped=1, passed=1)


def test_other_errors_still_fail(pytester, run):
    pytester.makepyfile(test_err="""
        import pytest

        @pytest.mark.parametrize("batch_size", [8])
        def test_bad(batch_size):
            raise RuntimeError("shape mismatch")
    """)
    run().assert_outcomes(failed=1)


def test_real_step_json_sidecar_and_pytest_benchmark_compare(pytester, run):
    """A real (tiny) train-step benchmark: extra_info, the sidecar fingerprint, and pytest-benchmark's compare."""
    pytester.syspathinsert(ROOT)
    (pytester.path / "test_step.py").write_text((ROOT / "benchmarks" / "test_step.py").read_text())
    result = run("--fer-preset", "quick", "--fer-devices", "cpu", "--fer-precisions", "fp32",
                 "--fer-batch-sizes", "4", "--fer-epoch-images", "64", "-k", "train_step",
                 "--benchmark-json", "out.json")
    assert result.ret == 0, result.stdout.str()
    data = json.loads((pytester.path / "out.json").read_text())
    names = sorted(b["name"] for b in data["benchmarks"])
    assert names == ["test_train_step[fer_cnn_2block-cpu-bs4-fp32-g1]",
                     "test_train_step_reference[fer_cnn_2block-cpu-bs4-fp32-g1]"]
    step = next(b for b in data["benchmarks"] if b["name"].startswith("test_train_step["))
    assert step["group"] == "train_step"
    assert step["params"] == {"model": "fer_cnn_2block", "device": "cpu", "batch_size": 4, "precision": "fp32",
                              "num_gpus": 1}
    extra = step["extra_info"]
    for key in ("samples_per_s", "step_time_ms", "host_time_ms", "peak_memory_bytes", "flops_per_step",
                "achieved_tflops", "rel_iqr", "cold_start_ms", "autocast_dtype", "grad_scaler", "tf32",
                "cudnn_benchmark", "channels_last", "torch_num_threads", "telemetry"):
        assert key in extra, key
    median = step["stats"]["median"]
    assert extra["samples_per_s"] == pytest.approx(4 / median)
    assert extra["step_time_ms"] == pytest.approx(median * 1e3)
    assert extra["rounds"] == step["stats"]["rounds"] >= 7
    assert len(step["stats"]["data"]) == step["stats"]["rounds"]
    fer = data["machine_info"]["fer_bench"]
    assert "telemetry" not in fer and "hostname" not in fer and fer["identity"]
    sidecar = json.loads((pytester.path / "out.fingerprint.json").read_text())
    assert sidecar["identity_hash"] == fer["identity_hash"]
    assert "telemetry_start" in sidecar["run"] and sidecar["run"]["preset"] == "quick"
    ref = next(b for b in data["benchmarks"] if "reference" in b["name"])
    assert "harness_overhead_fraction" in ref["extra_info"]
    result.stdout.fnmatch_lines(["*harness overhead*", "*fingerprint written to*out.fingerprint.json*"])
    # pytest-benchmark's own compare command reads the file
    cmp = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", "out.json"],
                         cwd=pytester.path, capture_output=True, text=True)
    assert cmp.returncode == 0, cmp.stderr
    assert "test_train_step" in cmp.stdout


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the steady malloc settings are glibc's")
@pytest.mark.parametrize("args, malloc", [((), "glibc-steady"), (("--fer-malloc", "system"), "glibc")])
def test_malloc_mode_is_applied_and_in_the_identity(pytester, run, args, malloc):
    pytester.makepyfile(test_x=AXES_TEST)
    result = run("--fer-preset", "quick", "--fer-devices", "cpu", "--fer-precisions", "fp32",
                 "--benchmark-json", "out.json", *args)
    assert result.ret == 0, result.stdout.str()
    fer = json.loads((pytester.path / "out.json").read_text())["machine_info"]["fer_bench"]
    assert fer["identity"]["software"]["malloc"] == malloc


@pytest.mark.parametrize("where", ["sub/out.json", "ABSOLUTE"])
def test_sidecar_beside_a_json_in_another_folder(pytester, run, tmp_path, where):
    """The sidecar goes beside the JSON wherever it is, not into the working directory; a missing folder is
    created before the run (pytest-benchmark would fail to write the file at the very end)."""
    target = tmp_path / "elsewhere" / "out.json" if where == "ABSOLUTE" else pytester.path / where
    pytester.makepyfile(test_x=AXES_TEST)
    result = run("--fer-preset", "quick", "--fer-devices", "cpu", "--fer-precisions", "fp32",
                 "--benchmark-json", str(target if where == "ABSOLUTE" else where))
    assert result.ret == 0, result.stdout.str()
    assert target.is_file() and target.with_name("out.fingerprint.json").is_file()
    assert not (pytester.path / "out.fingerprint.json").exists()


def test_benchmark_json_folder_that_cannot_be_made(pytester, run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    pytester.makepyfile(test_x=AXES_TEST)
    result = run("--fer-preset", "quick", "--benchmark-json", str(blocker / "out.json"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*--benchmark-json {blocker}/out.json: cannot create its folder {blocker}: a file is in the way"])


def test_save_goes_to_results_slug_with_sidecar(pytester, run):
    pytester.makepyfile(test_x=AXES_TEST)
    result = run("--fer-preset", "quick", "--fer-devices", "cpu", "--fer-precisions", "fp32", "--fer-save")
    assert result.ret == 0, result.stdout.str()
    saved = [p for p in (pytester.path / "results").glob("*/*.json") if not p.name.endswith(".fingerprint.json")]
    assert len(saved) == 1
    run_file = saved[0]
    assert run_file.name.startswith("0001_")
    sidecar = run_file.with_name(run_file.stem + ".fingerprint.json")
    fp = json.loads(sidecar.read_text())
    assert run_file.parent.name == fp["slug"]
    stored = json.loads(run_file.read_text())
    assert stored["benchmarks"][0]["stats"]["data"], "saved runs keep every round for the gate"
    assert not (pytester.path / ".benchmarks").exists()


def test_explicit_storage_is_respected(pytester, run):
    pytester.makepyfile(test_x=AXES_TEST)
    result = run("--fer-preset", "quick", "--fer-devices", "cpu", "--fer-precisions", "fp32",
                 "--benchmark-autosave", "--benchmark-storage", "file://./mystore")
    assert result.ret == 0, result.stdout.str()
    assert list((pytester.path / "mystore").glob("*/0001_*.json"))
    assert not (pytester.path / "results").exists()
