"""The pytest plugin end to end with pytester: options and their errors, ids, skips, the JSON and the sidecar."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_benchmark

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]

AXES_TEST = """
import pytest

@pytest.mark.benchmark(group="train_step")
def test_case(benchmark, run_config, model, device, batch_size, precision, num_gpus):
    benchmark.pedantic(lambda: None, rounds=1)
    assert (run_config.model, run_config.batch_size, run_config.precision) == (model, batch_size, precision)
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
    (["--fer-preset", "huge"], "--fer-preset: 'huge' is not a preset; valid: quick, default, studies, full, ci"),
    (["--fer-data", "/no/such/file.csv"], "--fer-data: '/no/such/file.csv' does not exist"),
    (["--fer-malloc", "fast"], "--fer-malloc: 'fast' is not a mode; valid: steady, system"),
    (["--fer-optimizers", "lbfgs"], "--fer-optimizers: 'lbfgs' is not an optimizer; valid: sgd, sgd_momentum, adam, *"),
    (["--fer-memory-formats", "nhwc"], "--fer-memory-formats: 'nhwc' is not a memory format; valid: contiguous, *"),
    (["--fer-round-time", "0"], "--fer-round-time: '0' is not a time in seconds from above 0 to 600 (0.3, 2s)"),
    (["--fer-round-time", "soon"], "--fer-round-time: 'soon' is not a time in seconds *"),
    (["--fer-ddp-bucket-cap-mb", "0"], "--fer-ddp-bucket-cap-mb: '0' is not a size in MiB from above 0 to 4096 *"),
    (["--fer-parallel", "fsdp"], "--fer-parallel: 'fsdp' is not a parallel mode; valid: none, dp, ddp"),
    (["--fer-scaling", "both"], "--fer-scaling: 'both' is not a scaling mode; valid: weak, strong"),
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
                 "--fer-budget", "none",  # the overhead pass is an extra a loaded machine's budget may leave out
                 "--benchmark-json", "out.json")
    assert result.ret == 0, result.stdout.str()
    data = json.loads((pytester.path / "out.json").read_text())
    names = sorted(b["name"] for b in data["benchmarks"])
    assert names == ["test_train_step[fer_cnn_2block-cpu-bs4-fp32-g1]",
                     "test_train_step_reference[fer_cnn_2block-cpu-bs4-fp32-g1]"]
    step = next(b for b in data["benchmarks"] if b["name"].startswith("test_train_step["))
    assert step["group"] == "train_step"
    assert step["params"] == {"model": "fer_cnn_2block", "device": "cpu", "batch_size": 4, "precision": "fp32",
                              "num_gpus": 1, "optimizer": "adam", "memory_format": "contiguous", "compile": "eager"}
    extra = step["extra_info"]
    for key in ("samples_per_s", "step_time_ms", "host_time_ms", "peak_memory_bytes", "flops_per_step",
                "achieved_tflops", "rel_iqr", "cold_start_ms", "autocast_dtype", "grad_scaler", "tf32",
                "cudnn_benchmark", "channels_last", "torch_num_threads", "telemetry", "workload"):
        assert key in extra, key
    median = step["stats"]["median"]
    assert extra["samples_per_s"] == pytest.approx(4 / median)
    assert extra["step_time_ms"] == pytest.approx(median * 1e3)
    assert extra["rounds"] == step["stats"]["rounds"] >= 7
    assert len(step["stats"]["data"]) == step["stats"]["rounds"]
    assert extra["workload"]["data"]["kind"] == "synthetic" and extra["workload"]["input_size"] == 48
    fer = data["machine_info"]["fer_bench"]
    assert "telemetry" not in fer and "hostname" not in fer and fer["identity"]
    assert "torch" not in json.dumps(fer["identity"]), "the software stack is not part of the machine"
    assert data["fer_bench"]["stack"]["torch"] and data["fer_bench"]["run"]["preset"] == "quick"
    sidecar = json.loads((pytester.path / "out.fingerprint").read_text())
    assert sidecar["identity_hash"] == fer["identity_hash"]
    assert "telemetry_start" in sidecar["run"] and sidecar["run"]["preset"] == "quick"
    ref = next(b for b in data["benchmarks"] if "reference" in b["name"])
    assert "harness_overhead_fraction" in ref["extra_info"]
    result.stdout.fnmatch_lines(["*harness overhead*", "*fingerprint written to*out.fingerprint"])
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
    fer = json.loads((pytester.path / "out.json").read_text())["fer_bench"]
    assert fer["stack"]["malloc"] == malloc


#: pytest-benchmark before 5.3 opens --benchmark-json (argparse.FileType) while pytest parses the command line,
#: before any plugin runs: the folder must exist then, and a bad one is argparse's error, not the plugin's.
JSON_OPENED_AT_PARSE = tuple(int(p) for p in pytest_benchmark.__version__.split(".")[:2]) < (5, 3)


@pytest.mark.parametrize("where", ["sub/out.json", "ABSOLUTE"])
def test_sidecar_beside_a_json_in_another_folder(pytester, run, tmp_path, where):
    """The sidecar goes beside the JSON wherever it is, not into the working directory (the H100 run lost its
    sidecar to pytest-benchmark 5.2's open file); a missing folder is created before the run (pytest-benchmark
    would fail to write the file at the very end)."""
    target = tmp_path / "elsewhere" / "out.json" if where == "ABSOLUTE" else pytester.path / where
    if JSON_OPENED_AT_PARSE:
        target.parent.mkdir(parents=True, exist_ok=True)
    pytester.makepyfile(test_x=AXES_TEST)
    result = run("--fer-preset", "quick", "--fer-devices", "cpu", "--fer-precisions", "fp32",
                 "--benchmark-json", str(target if where == "ABSOLUTE" else where))
    assert result.ret == 0, result.stdout.str()
    assert target.is_file() and target.with_name("out.fingerprint").is_file()
    assert not (pytester.path / "out.fingerprint").exists()


def test_benchmark_json_folder_that_cannot_be_made(pytester, run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    pytester.makepyfile(test_x=AXES_TEST)
    result = run("--fer-preset", "quick", "--benchmark-json", str(blocker / "out.json"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    if JSON_OPENED_AT_PARSE:  # argparse may open the file first: then its one-line error names the path
        output = result.stdout.str() + result.stderr.str()  # pytest 8.1 prints usage errors to stdout
        assert (f"argument --benchmark-json: can't open '{blocker}/out.json'" in output
                or f"--benchmark-json {blocker}/out.json: cannot create its folder" in output), output
        return
    result.stderr.fnmatch_lines(
        [f"*--benchmark-json {blocker}/out.json: cannot create its folder {blocker}: a file is in the way"])


def test_save_goes_to_results_slug_with_sidecar(pytester, run):
    pytester.makepyfile(test_x=AXES_TEST)
    result = run("--fer-preset", "quick", "--fer-devices", "cpu", "--fer-precisions", "fp32", "--fer-save")
    assert result.ret == 0, result.stdout.str()
    saved = list((pytester.path / "results").glob("*/*.json"))
    assert len(saved) == 1, "the sidecar is not a *.json pytest-benchmark would load"
    run_file = saved[0]
    assert run_file.name.startswith("0001_")
    sidecar = run_file.with_name(run_file.stem + ".fingerprint")
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


def test_new_axes_from_the_command_line(pytester, run):
    pytester.makepyfile(test_x="""
        import pytest

        @pytest.mark.benchmark(group="train_step")
        def test_case(benchmark, run_config, model, device, batch_size, precision, num_gpus, optimizer,
                      memory_format):
            benchmark.pedantic(lambda: None, rounds=1)
            assert (run_config.optimizer, run_config.memory_format) == (optimizer, memory_format)
            assert run_config.channels_last == (memory_format == "channels_last")
        """)
    result = run("--fer-preset", "quick", "--fer-devices", "cpu", "--fer-precisions", "fp32",
                 "--fer-optimizers", "adam,sgd", "--fer-memory-formats", "contiguous,channels_last",
                 "-v", "--benchmark-json", "out.json")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([
        "*test_case?fer_cnn_2block-cpu-bs32-fp32-g1? PASSED*",
        "*test_case?fer_cnn_2block-cpu-bs32-fp32-g1-channels_last? PASSED*",
        "*test_case?fer_cnn_2block-cpu-bs32-fp32-g1-opt_sgd? PASSED*",
        "*test_case?fer_cnn_2block-cpu-bs32-fp32-g1-opt_sgd-channels_last? PASSED*",
    ])
    params = [b["params"] for b in json.loads((pytester.path / "out.json").read_text())["benchmarks"]]
    assert {(p["optimizer"], p["memory_format"]) for p in params} == {
        ("adam", "contiguous"), ("adam", "channels_last"), ("sgd", "contiguous"), ("sgd", "channels_last")}


PLAIN_BENCHMARK = """
def test_plain(benchmark):
    benchmark(sum, range(10))
"""


def test_plugin_is_inert_where_fer_bench_is_not_used(pytester, monkeypatch, tmp_path):
    """Installed as an entry point, the plugin loads in every pytest session of the environment: one that
    neither names it nor uses its axes gets pytest-benchmark as it is (no malloc change, no fingerprint)."""
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "cache"))
    pytester.makepyfile(test_plain=PLAIN_BENCHMARK)
    pytester.makeconftest("""
        def pytest_sessionfinish(session):
            from fer_bench.machine.allocator import describe_malloc
            print("MALLOC", describe_malloc())
        """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", "--benchmark-json", "out.json")
    assert result.ret == 0, result.stdout.str()
    assert "fer_bench:" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*MALLOC glibc"])
    data = json.loads((pytester.path / "out.json").read_text())
    assert "fer_bench" not in data["machine_info"] and "fer_bench" not in data
    assert not list(pytester.path.glob("out.fingerprint*"))


def test_plugin_activates_for_a_benchmark_that_uses_its_axes(pytester, monkeypatch, tmp_path):
    """Through the entry point alone (no -p, no --fer-* option): a module that asks for the axes gets them, and
    the run gets its fingerprint."""
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "cache"))
    pytester.makepyfile(test_x=AXES_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--benchmark-json", "out.json")
    assert result.ret == 0, result.stdout.str()
    assert (pytester.path / "out.fingerprint").is_file()
    assert "fer_bench" in json.loads((pytester.path / "out.json").read_text())["machine_info"]


def test_users_own_model_joins_through_register_model(pytester, monkeypatch, tmp_path):
    """A user's conftest registers a model; --fer-models names it and the real step benchmark trains it."""
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "cache"))
    pytester.makeconftest("""
        from torch import nn
        from fer_bench.models import register_model

        @register_model(input_size=48, in_chans=1, family="user", description="a user's tiny CNN")
        def my_tiny_cnn(num_classes=7, **kwargs):
            return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(4, num_classes))
        """)
    (pytester.path / "test_step.py").write_text((ROOT / "benchmarks" / "test_step.py").read_text())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--fer-models", "my_tiny_cnn",
                                           "--fer-devices", "cpu", "--fer-precisions", "fp32",
                                           "--fer-batch-sizes", "4", "-k", "test_train_step[", "-v")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*test_train_step?my_tiny_cnn-cpu-bs4-fp32-g1? PASSED*"])
    bad = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--fer-models", "not_mine", "--collect-only")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--fer-models: 'not_mine' is not a registered model; valid: *my_tiny_cnn*"])


HELP_SECTION = """fer_bench: FER training benchmarks:
  --fer-models=LIST     models to benchmark (see `fer-bench models`); comma
                        list, overrides the preset's values. Default: from
                        --fer-preset
"""


def test_help_section_is_pinned(pytester):
    """The fer_bench part of `pytest --help`: every option, in order. A change here is a change users see."""
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--help")
    text = result.stdout.str()
    start = text.index("fer_bench: FER training benchmarks:")
    assert text[start:].startswith(HELP_SECTION)
    options = [line.split()[0].split("=")[0] for line in text[start:].splitlines()[1:]
               if line.startswith("  --")]
    section_end = next(i for i, o in enumerate(options) if not o.startswith("--fer-"))
    assert options[:section_end] == [
        "--fer-models", "--fer-devices", "--fer-batch-sizes", "--fer-num-workers", "--fer-precisions",
        "--fer-num-gpus", "--fer-optimizers", "--fer-lr-scaling", "--fer-memory-formats", "--fer-parallel",
        "--fer-scaling", "--fer-pipelines", "--fer-compile", "--fer-preset", "--fer-data", "--fer-epoch-images",
        "--fer-allow-missing-baseline", "--fer-allow-other-machine", "--fer-allow-other-workload", "--fer-malloc",
        "--fer-save", "--fer-node", "--fer-budget", "--fer-round-time", "--fer-ddp-bucket-cap-mb",
        "--fer-ddp-gradient-as-bucket-view", "--fer-ddp-static-graph", "--fer-ddp-verify", "--fer-repeats",
        "--fer-target-accuracy", "--fer-max-epochs", "--fer-curve-tsv", "--fer-profile-ops", "--fer-instructions",
        "--fer-peak-tflops",
        "--fer-resume", "--fer-journal", "--fer-ddp-timeout", "--fer-remeasure-contended", "--fer-progress"]


# ---------------------------------------------------------------- the time budget and progress (issue 9)

BUDGET_TEST = """
import time

import pytest

from fer_bench.measure.timing import measure


@pytest.mark.parametrize("cost", [0.001, 8.0] + [0.001] * 18, ids=["fast0", "slow"] + [f"fast{i}" for i in range(1, 19)])
def test_tiny(benchmark, fer_session, cost):
    calls = []

    def step():
        if calls:  # a cheap cold call, then `cost` a call
            time.sleep(cost)
        calls.append(1)

    measure(benchmark, step, device="cpu", samples_per_call=1, phase="x", target_s=0.05, min_rounds=7,
            warmup_rounds=1, planner=fer_session.round_planner())
"""


def test_budget_skips_a_case_that_cannot_fit_and_progress_says_how_long_is_left(pytester, run):
    """20 cases share a 1 min budget: the slow one needs over a minute for its minimum 7 rounds and is skipped with
    the reason; the others run. Not a terminal: the sparse progress lines."""
    pytester.makepyfile(test_tiny=BUDGET_TEST)
    result = run("--fer-budget", "1m", "-rs", "--benchmark-json", "out.json")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([
        "fer_bench: preset default, data synthetic, epoch images *, budget 60 s",
        "*fer_bench: [[]1/20] test_tiny[[]fast0] *, 0:* elapsed, about * left",
        "*fer_bench: [[]20/20] test_tiny[[]fast18] * elapsed, nothing left*",
        "fer_bench: budget 60 s: 20 cases in *, 1 skipped for the budget (reasons with -rs)",
        "  test_tiny[[]slow]: would take * s for 7 rounds",
        "SKIPPED [[]1] test_tiny.py:*: over the time budget: would take * s for 7 rounds, over the * s one case may "
        "take now (* s of the 60 s budget left for 19 cases): --fer-budget * runs it",
    ])
    assert result.stdout.str().count("fer_bench: [") < 20, "a log gets a line every 10 cases, not every case"
    result.assert_outcomes(passed=19, skipped=1)
    data = json.loads((pytester.path / "out.json").read_text())
    assert len(data["benchmarks"]) == 19 and data["fer_bench"]["run"]["budget_s"] == 60
    extra = data["benchmarks"][0]["extra_info"]
    assert extra["budget_s"] == 60 and extra["planned_rounds"] == extra["rounds"] >= 7
    assert 0 < extra["estimate_s"] < 1.0 and extra["allowance_s"] > 0 and extra["case_wall_s"] > 0


def test_budget_of_3s_and_progress_on_every_case(pytester, run):
    """3 s is about what start-up takes: the slow case is skipped with the reason (the fast one runs if start-up
    left it the time), and with --fer-progress every each case gets its line."""
    pytester.makepyfile(test_tiny=BUDGET_TEST)
    result = run("--fer-budget", "3s", "--fer-progress", "every", "-rs", "-k", "slow or fast0")
    result.stdout.fnmatch_lines([
        "*fer_bench: [[]1/2] test_tiny[[]fast0] *, 0:0* elapsed, *",
        "*fer_bench: [[]2/2] test_tiny[[]slow] * (skipped: over the time budget), 0:0* elapsed, nothing left*",
        "SKIPPED * over the time budget: would take * for 7 rounds, over the * one case may take now (* of the "
        "3.0 s budget left for 1 case): --fer-budget * runs it",
    ])
    assert result.parseoutcomes()["skipped"] >= 1


def test_budget_none_and_bad_values(pytester, run):
    pytester.makepyfile(test_tiny=BUDGET_TEST)
    result = run("--fer-budget", "none", "--fer-progress", "off", "-k", "fast0", "--benchmark-json", "out.json")
    assert result.ret == 0, result.stdout.str()
    assert "fer_bench: [" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*budget none", "fer_bench: no budget: 1 cases in *"])
    extra = json.loads((pytester.path / "out.json").read_text())["benchmarks"][0]["extra_info"]
    assert extra["budget_s"] is None and "allowance_s" not in extra and extra["rounds"] >= 7
    for args, message in ((["--fer-budget", "10 minutes"], "--fer-budget: '10 minutes' is not a duration; use e.g. "
                                                            "90s, 2m, 1h, 10m30s or none"),
                          (["--fer-progress", "loud"], "--fer-progress: 'loud' is not a mode; valid: auto, every, "
                                                       "sparse, off")):
        bad = run(*args)
        assert bad.ret == pytest.ExitCode.USAGE_ERROR
        bad.stderr.fnmatch_lines([f"*{message}"])


def test_collect_only_says_what_the_preset_costs(pytester, run):
    pytester.makepyfile(test_x=AXES_TEST)
    result = run("--fer-preset", "quick", "--fer-precisions", "fp32,amp_fp16", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["fer_bench: preset quick: 4 cases, * run here (case */4); budget 30 s; expected "
                                 "time: no stored run of this machine in results/*/ yet"])


@pytest.mark.parametrize("cap", [{"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
                                 {"ATEN_CPU_CAPABILITY": "default"}], ids=["avx2-cap", "native"])
def test_a_preset_leaves_out_the_precisions_this_cpu_emulates(pytester, run, monkeypatch, cap):
    """Under an AVX2 cap (as on an AVX2-only CPU) the default preset's amp_bf16 CPU cases are deselected, with one
    summary line naming --fer-precisions; on a CPU with native bf16 they stay; asking for them by name runs them."""
    from fer_bench.engine.precision import resolve_precision_native
    from fer_bench.machine.fingerprint import collect_fingerprint

    for name, value in cap.items():
        monkeypatch.setenv(name, value)
    flags = collect_fingerprint()["cpu"]["flags"]
    emulated = not resolve_precision_native("amp_bf16", "cpu", cpu_flags=flags, env=cap)[0]
    pytester.makepyfile(test_x=AXES_TEST)
    result = run("--fer-devices", "cpu", "--collect-only", "-q")
    line = ("fer_bench: amp_bf16 is emulated on this CPU (*): preset default leaves out its 5 cpu cases "
            "(deselected); --fer-precisions fp32,amp_bf16,amp_fp16 runs them, flagged as emulated")
    if emulated:
        result.stdout.fnmatch_lines([line, "fer_bench: preset default: 10 cases, 5 run here *; 5 cpu cases of "
                                           "amp_bf16 left out (emulated here)", "10/15 tests collected (5 deselected)*"])
    else:
        result.stdout.fnmatch_lines(["15 tests collected*"])
        assert "leaves out" not in result.stdout.str()
    asked = run("--fer-devices", "cpu", "--fer-precisions", "fp32,amp_bf16", "--collect-only", "-q")
    asked.stdout.fnmatch_lines(["10 tests collected*"])
    assert "leaves out" not in asked.stdout.str()
    # a test's own parametrize of the precision is never left out
    pytester.makepyfile(test_x="""
import pytest

@pytest.mark.parametrize("precision", ["amp_bf16"])
def test_own(benchmark, run_config, device, precision):
    pass
""")
    own = run("--fer-devices", "cpu", "--collect-only", "-q")
    own.stdout.fnmatch_lines(["1 test collected*"])
    assert "leaves out" not in own.stdout.str()


def test_the_item_that_builds_a_session_fixture_records_it_as_shared_setup(pytester, run):
    """case_wall_s is the item's whole wall time; case_shared_s the part of it that built a fixture wider than the
    test (here 0.5 s), which the next item that uses it does not pay."""
    pytester.makepyfile(test_x="""
import time

import pytest

@pytest.fixture(scope="session")
def slow_shared():
    time.sleep(0.5)

@pytest.mark.parametrize("n", [1, 2])
def test_a(benchmark, fer_session, slow_shared, n):
    benchmark.pedantic(lambda: None, rounds=1)
""")
    result = run("--fer-budget", "5m", "--benchmark-json", "out.json")
    assert result.ret == 0, result.stdout.str()
    extra = {b["name"]: b["extra_info"] for b in json.loads((pytester.path / "out.json").read_text())["benchmarks"]}
    first, second = extra["test_a[1]"], extra["test_a[2]"]
    assert 0.5 <= first["case_shared_s"] <= first["case_wall_s"]
    assert "case_shared_s" not in second and second["case_wall_s"] < first["case_wall_s"]


def test_each_benchmark_runs_its_first_case_before_any_runs_a_second(pytester, run):
    """Under a budget the first case of each benchmark runs first (by the stored times where they cover it), the
    rest after them in their own order; without a budget the order is pytest's."""
    pytester.makepyfile(test_x="""
import pytest

@pytest.mark.parametrize("n", [1, 2, 3])
def test_a(benchmark, fer_session, n):
    benchmark.pedantic(lambda: None, rounds=1)

@pytest.mark.parametrize("n", [1, 2])
def test_b(benchmark, fer_session, n):
    benchmark.pedantic(lambda: None, rounds=1)
""")
    budgeted = run("--fer-budget", "5m", "-v", "-p", "no:randomly")
    assert budgeted.ret == 0, budgeted.stdout.str()
    order = [line.split("::")[1].split(" ")[0] for line in budgeted.stdout.lines if "::test_" in line
             and ("PASSED" in line or "SKIPPED" in line)]
    assert order == ["test_a[1]", "test_b[1]", "test_a[2]", "test_a[3]", "test_b[2]"]
    assert "time left first guessed from" not in budgeted.stdout.str()  # nothing stored here
    free = run("--fer-budget", "none", "-v")
    order = [line.split("::")[1].split(" ")[0] for line in free.stdout.lines if "::test_" in line
             and "PASSED" in line]
    assert order == ["test_a[1]", "test_a[2]", "test_a[3]", "test_b[1]", "test_b[2]"]


def test_emulated_precision_is_recorded_and_flagged(pytester, run, monkeypatch):
    """amp_bf16 under an AVX2 cap (or on a CPU without avx512_bf16/amx_bf16) is emulated, on any machine."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    pytester.syspathinsert(ROOT)
    (pytester.path / "test_step.py").write_text((ROOT / "benchmarks" / "test_step.py").read_text())
    result = run("--fer-preset", "quick", "--fer-devices", "cpu", "--fer-precisions", "fp32,amp_bf16",
                 "--fer-batch-sizes", "2", "--fer-budget", "none", "-k", "test_forward[",
                 "--benchmark-json", "out.json")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["fer_bench: amp_bf16 is emulated on this CPU (*): slower than fp32 here is "
                                 "expected, not a bug"])
    extra = {b["params"]["precision"]: b["extra_info"]
             for b in json.loads((pytester.path / "out.json").read_text())["benchmarks"]}
    assert extra["fp32"]["precision_native"] is True and "precision_note" not in extra["fp32"]
    assert extra["amp_bf16"]["precision_native"] is False
    assert extra["amp_bf16"]["precision_note"].startswith("amp_bf16 is emulated on this CPU")
    assert extra["amp_bf16"]["cpu_isa_env"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}


@pytest.mark.parametrize("pytest_version, benchmark_version, refused", [
    ("9.2.0", "5.3.0", True), ("9.2.0", "5.3.1", False), ("9.1.1", "5.2.3", False), ("10.0.0", "5.1.0", True)])
def test_pairs_pip_cannot_rule_out_are_refused(monkeypatch, pytest_version, benchmark_version, refused):
    from fer_bench.plugin import storage

    monkeypatch.setattr(pytest, "__version__", pytest_version)
    monkeypatch.setattr(pytest_benchmark, "__version__", benchmark_version)
    problem = storage.unsupported_pair()
    assert (problem is not None) == refused
    if refused:
        assert problem.startswith(f"pytest-benchmark {benchmark_version} does not work with pytest {pytest_version}")
