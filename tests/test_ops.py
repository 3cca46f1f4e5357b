"""fer_bench.measure.ops: operator categories, the phased step, the profile's shares, files and per-phase memory."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from fer_bench.engine.build import create_train_step
from fer_bench.engine.config import RunConfig
from fer_bench.errors import FerBenchError
from fer_bench.measure.ops import (
    OP_CATEGORIES, PHASES, breakdown, categorize, category_shares, cpu_phase_peaks, event_self_time_us,
    format_category_line, profile_train_step, run_phased_step, safe_file_stem,
)

MODEL = "fer_cnn_2block"
BATCH = 16
PYTEST_ID = f"test_train_step[{MODEL}-cpu-bs64-fp32-g1]"


def build(precision: str = "fp32", optimizer: str = "adam"):
    training = create_train_step(RunConfig(model=MODEL, batch_size=BATCH, precision=precision, optimizer=optimizer))
    x, y = training.example_batch()
    return training.step, x, y


@pytest.fixture(scope="module")
def adam_profile(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One profile of the 2-block CNN with Adam, fp32, shared by the tests that read its result."""
    step, x, y = build()
    return profile_train_step(step, x, y, steps=2, warmup=1, out_dir=tmp_path_factory.mktemp("ops"), name=PYTEST_ID)


# --- categorize ----------------------------------------------------------------------------------------------------

# Names from a real CPU profile of fer_cnn_2block with Adam (torch 2.x), plus the GPU and other-model names the rules
# are meant to cover.
CATEGORY_TABLE = [
    # convolution
    ("aten::conv2d", "convolution"), ("aten::convolution", "convolution"), ("aten::_convolution", "convolution"),
    ("aten::mkldnn_convolution", "convolution"), ("aten::convolution_backward", "convolution"),
    ("aten::cudnn_convolution", "convolution"), ("aten::cudnn_convolution_relu", "convolution"),
    ("aten::_slow_conv2d_forward", "convolution"), ("aten::thnn_conv2d", "convolution"),
    ("aten::_conv_depthwise2d", "convolution"), ("aten::conv_transpose2d", "convolution"),
    ("mkldnn::_convolution_pointwise", "convolution"), ("ConvolutionBackward0", "convolution"),
    ("autograd::engine::evaluate_function: ConvolutionBackward0", "convolution"),
    # matmul
    ("aten::addmm", "matmul"), ("aten::mm", "matmul"), ("aten::bmm", "matmul"), ("aten::linear", "matmul"),
    ("aten::matmul", "matmul"), ("aten::_addmm_activation", "matmul"), ("AddmmBackward0", "matmul"),
    ("autograd::engine::evaluate_function: AddmmBackward0", "matmul"), ("MmBackward0", "matmul"),
    # normalisation
    ("aten::batch_norm", "normalisation"), ("aten::_batch_norm_impl_index", "normalisation"),
    ("aten::native_batch_norm", "normalisation"), ("aten::native_batch_norm_backward", "normalisation"),
    ("aten::_native_batch_norm_legit", "normalisation"), ("aten::cudnn_batch_norm", "normalisation"),
    ("aten::layer_norm", "normalisation"), ("aten::native_layer_norm", "normalisation"),
    ("aten::group_norm", "normalisation"), ("NativeBatchNormBackward0", "normalisation"),
    ("CudnnBatchNormBackward0", "normalisation"),
    # elementwise and activation
    ("aten::relu", "elementwise and activation"), ("aten::relu_", "elementwise and activation"),
    ("aten::clamp_min_", "elementwise and activation"), ("aten::threshold_backward", "elementwise and activation"),
    ("ReluBackward0", "elementwise and activation"), ("aten::silu_", "elementwise and activation"),
    ("aten::sigmoid", "elementwise and activation"), ("aten::gelu", "elementwise and activation"),
    ("aten::hardswish_", "elementwise and activation"), ("aten::add", "elementwise and activation"),
    ("aten::add_", "elementwise and activation"), ("aten::mul", "elementwise and activation"),
    ("aten::div", "elementwise and activation"), ("aten::sub", "elementwise and activation"),
    ("aten::clamp", "elementwise and activation"), ("aten::where", "elementwise and activation"),
    ("aten::dropout", "elementwise and activation"), ("aten::native_dropout", "elementwise and activation"),
    ("aten::sqrt", "elementwise and activation"), ("MulBackward0", "elementwise and activation"),
    # pooling
    ("aten::max_pool2d", "pooling"), ("aten::max_pool2d_with_indices", "pooling"),
    ("aten::max_pool2d_with_indices_backward", "pooling"), ("MaxPool2DWithIndicesBackward0", "pooling"),
    ("aten::avg_pool2d", "pooling"), ("aten::adaptive_avg_pool2d", "pooling"),
    ("aten::_adaptive_avg_pool2d", "pooling"), ("aten::_adaptive_avg_pool2d_backward", "pooling"),
    ("AdaptiveAvgPool2DBackward0", "pooling"), ("aten::mean", "pooling"), ("MeanBackward1", "pooling"),
    # data movement and copies
    ("aten::copy_", "data movement and copies"), ("aten::to", "data movement and copies"),
    ("aten::_to_copy", "data movement and copies"), ("aten::contiguous", "data movement and copies"),
    ("aten::cat", "data movement and copies"), ("aten::clone", "data movement and copies"),
    ("aten::empty", "data movement and copies"), ("aten::empty_strided", "data movement and copies"),
    ("aten::empty_like", "data movement and copies"), ("aten::zero_", "data movement and copies"),
    ("aten::fill_", "data movement and copies"), ("aten::ones_like", "data movement and copies"),
    ("aten::view", "data movement and copies"), ("aten::reshape", "data movement and copies"),
    ("aten::permute", "data movement and copies"), ("aten::transpose", "data movement and copies"),
    ("aten::t", "data movement and copies"), ("aten::as_strided", "data movement and copies"),
    ("aten::as_strided_", "data movement and copies"), ("aten::expand", "data movement and copies"),
    ("aten::flatten", "data movement and copies"), ("aten::index_select", "data movement and copies"),
    ("aten::stack", "data movement and copies"), ("aten::detach", "data movement and copies"),
    ("detach", "data movement and copies"), ("aten::resize_", "data movement and copies"),
    ("aten::item", "data movement and copies"), ("aten::_local_scalar_dense", "data movement and copies"),
    ("TBackward0", "data movement and copies"), ("ViewBackward0", "data movement and copies"),
    ("torch::autograd::AccumulateGrad", "data movement and copies"),
    ("autograd::engine::evaluate_function: torch::autograd::AccumulateGrad", "data movement and copies"),
    ("Memcpy HtoD (Pageable -> Device)", "data movement and copies"),
    # optimizer
    ("Optimizer.step#Adam.step", "optimizer"), ("Optimizer.zero_grad#Adam.zero_grad", "optimizer"),
    ("Optimizer.step#SGD.step", "optimizer"), ("aten::_foreach_add_", "optimizer"),
    ("aten::_foreach_addcdiv_", "optimizer"), ("aten::_foreach_sqrt", "optimizer"),
    ("aten::_fused_adam_", "optimizer"), ("aten::_fused_adamw_", "optimizer"), ("aten::_fused_sgd_", "optimizer"),
    ("aten::addcdiv_", "optimizer"), ("aten::addcmul_", "optimizer"), ("aten::lerp_", "optimizer"),
    ("aten::_amp_foreach_non_finite_check_and_unscale_", "optimizer"), ("aten::_amp_update_scale_", "optimizer"),
    # loss
    ("aten::cross_entropy_loss", "loss"), ("aten::nll_loss", "loss"), ("aten::nll_loss_nd", "loss"),
    ("aten::nll_loss_forward", "loss"), ("aten::nll_loss_backward", "loss"), ("aten::log_softmax", "loss"),
    ("aten::_log_softmax", "loss"), ("aten::_log_softmax_backward_data", "loss"), ("NllLossBackward0", "loss"),
    ("LogSoftmaxBackward0", "loss"), ("aten::mse_loss", "loss"),
    # other
    ("aten::resolve_conj", "other"), ("aten::sum", "other"), ("aten::norm", "other"), ("cudaLaunchKernel", "other"),
    ("ProfilerStep#3", "other"), ("", "other"),
]


@pytest.mark.parametrize(("name", "category"), CATEGORY_TABLE, ids=[n or "empty" for n, _ in CATEGORY_TABLE])
def test_categorize_table(name: str, category: str) -> None:
    assert categorize(name) == category


def test_categorize_returns_a_known_category() -> None:
    assert {categorize(name) for name, _ in CATEGORY_TABLE} == set(OP_CATEGORIES)


# --- shares and formatting -----------------------------------------------------------------------------------------

def test_category_shares_cover_every_category_and_add_up() -> None:
    shares = category_shares({"convolution": 3.0, "loss": 1.0})
    assert list(shares) == list(OP_CATEGORIES)
    assert shares["convolution"] == 0.75 and shares["loss"] == 0.25 and shares["other"] == 0.0
    assert math.isclose(sum(shares.values()), 1.0, abs_tol=1e-9)
    with pytest.raises(FerBenchError):
        category_shares({"convolution": 0.0})
    with pytest.raises(FerBenchError):
        category_shares({"gemm": 1.0})


def test_format_category_line_descending_without_zeros() -> None:
    shares = dict.fromkeys(OP_CATEGORIES, 0.0)
    shares.update({"convolution": 0.62, "elementwise and activation": 0.14, "optimizer": 0.237, "loss": 0.003})
    assert format_category_line(shares) == "62% convolution, 24% optimizer, 14% elementwise and activation, <1% loss"


# --- safe file stems -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "stem"), [
    (PYTEST_ID, "test_train_step_fer_cnn_2block-cpu-bs64-fp32-g1"),
    ("a/b\\c:d*e?f", "a_b_c_d_e_f"),
    ("../../etc/passwd", "etc_passwd"),
    (".hidden", "hidden"),
    ("spaces and  tabs\t", "spaces_and_tabs"),
    ("模型[cpu]", "cpu"),
    ("///", "case"),
])
def test_safe_file_stem(name: str, stem: str) -> None:
    assert safe_file_stem(name) == stem


def test_safe_file_stem_long_names_stay_distinct() -> None:
    a, b = "x" * 300 + "[a]", "x" * 300 + "[b]"
    assert safe_file_stem(a) != safe_file_stem(b)
    assert all(len(safe_file_stem(n)) <= 120 for n in (a, b))


# --- device-time selection (a fake CUDA profile) -------------------------------------------------------------------

def fake_event(name: str, *, cpu: float = 0.0, device: float = 0.0, device_type: str = "CPU", parent=None,
               start: float = 0.0, end: float = 1.0, is_async: bool = False) -> SimpleNamespace:
    return SimpleNamespace(name=name, self_cpu_time_total=cpu, self_device_time_total=device,
                           device_type=SimpleNamespace(name=device_type), cpu_parent=parent, is_async=is_async,
                           time_range=SimpleNamespace(start=start, end=end))


def test_event_self_time_picks_device_or_cpu_time() -> None:
    op = fake_event("aten::mkldnn_convolution", cpu=10.0, device=70.0)
    kernel = fake_event("sm90_xmma_fprop_implicit_gemm", device=70.0, device_type="CUDA")
    assert event_self_time_us(op, use_device=True) == 70.0
    assert event_self_time_us(op, use_device=False) == 10.0
    assert event_self_time_us(kernel, use_device=True) == 0.0  # its time is already its launching op's
    assert event_self_time_us(fake_event("x", cpu=5.0, device=5.0, is_async=True), use_device=True) == 0.0


def test_breakdown_uses_device_self_time_once_per_kernel() -> None:
    """A fake CUDA profile: kernels, GPU-side annotations and runtime calls must not add device time twice."""
    forward = fake_event("fer_bench::forward", cpu=30.0, start=0, end=100)
    conv = fake_event("aten::cudnn_convolution", cpu=5.0, device=60.0, parent=forward, start=1, end=20)
    launch = fake_event("cudaLaunchKernel", cpu=4.0, device=0.0, parent=conv, start=2, end=3)
    loss_range = fake_event("fer_bench::loss", cpu=2.0, parent=forward, start=40, end=60)
    nll = fake_event("aten::nll_loss_forward", cpu=1.0, device=5.0, parent=loss_range, start=41, end=42)
    add = fake_event("aten::add", cpu=1.0, device=3.0, parent=loss_range, start=43, end=44)  # loss by range
    optimizer = fake_event("fer_bench::optimizer", cpu=3.0, start=100, end=200)
    adam = fake_event("Optimizer.step#Adam.step", cpu=20.0, device=0.0, parent=optimizer, start=101, end=199)
    sqrt = fake_event("aten::sqrt", cpu=1.0, device=10.0, parent=adam, start=102, end=103)  # optimizer by range
    kernel = fake_event("sm90_xmma_fprop", device=60.0, device_type="CUDA", start=5, end=65)
    annotation = fake_event("fer_bench::forward", device=100.0, device_type="CUDA", start=0, end=100)
    outside = fake_event("aten::mm", cpu=9.0, device=9.0, start=300, end=301)  # not in any phase
    events = [forward, conv, launch, loss_range, nll, add, optimizer, adam, sqrt, kernel, annotation, outside]

    per_op, unattributed = breakdown(events, use_device=True)
    device = {key: t for key, (_calls, t) in per_op.items()}
    assert device == {("aten::cudnn_convolution", "convolution"): 60.0, ("cudaLaunchKernel", "convolution"): 0.0,
                      ("aten::nll_loss_forward", "loss"): 5.0, ("aten::add", "loss"): 3.0,
                      ("Optimizer.step#Adam.step", "optimizer"): 0.0, ("aten::sqrt", "optimizer"): 10.0}
    assert unattributed == 0.0

    per_op_cpu, unattributed_cpu = breakdown(events, use_device=False)
    assert per_op_cpu[("aten::cudnn_convolution", "convolution")][1] == 5.0
    assert per_op_cpu[("Optimizer.step#Adam.step", "optimizer")][1] == 20.0
    assert unattributed_cpu == 35.0  # our own ranges' self time is not an operator's


def test_cuda_phase_peaks_reset_and_read_per_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA memory probe with torch.cuda's counters faked: a reset before each phase, the peak read after it,
    reported absolute and above the phase's starting allocation."""
    from fer_bench.measure import ops

    step, x, y = build(optimizer="sgd")
    fake_step = SimpleNamespace(model=step.model, optimizer=step.optimizer, policy=step.policy, loss_fn=step.loss_fn,
                                scaler=step.scaler, device=torch.device("cuda", 0))
    allocated = iter([100, 100, 500, 300])  # at the start of zero_grad, forward, backward, optimizer
    peaks = iter([900, 700, 350])  # read after forward, backward, optimizer
    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: next(allocated))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: next(peaks))
    above, absolute = ops._cuda_phase_peaks(fake_step, x, y)
    assert above == {"forward": 800, "backward": 200, "optimizer": 50}
    assert absolute == {"forward": 900, "backward": 700, "optimizer": 350}
    assert calls.count("reset") == 4


# --- memory from allocation records --------------------------------------------------------------------------------

def test_cpu_phase_peaks_running_sum_relative_to_phase_start() -> None:
    ranges = [("forward", 0, 10), ("backward", 10, 20), ("optimizer", 20, 30),
              ("forward", 100, 110), ("backward", 110, 120), ("optimizer", 120, 130)]
    allocations = [(1, 1000), (2, 500), (3, -200), (11, -1000), (12, 300), (21, -5),  # first step: left out
                   (101, 400), (102, 600), (103, -900), (104, 100),  # peak 1000
                   (111, -100), (112, 50),  # never above the start: 0
                   (121, 8), (122, -8), (123, 8)]  # 8
    assert cpu_phase_peaks(ranges, allocations) == {"forward": 1000, "backward": 0, "optimizer": 8}
    assert cpu_phase_peaks(ranges[:3], allocations) == {"forward": 1500, "backward": 0, "optimizer": 0}
    assert cpu_phase_peaks([], allocations) == dict.fromkeys(PHASES)


# --- the phased step -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("precision", "optimizer"), [("fp32", "adam"), ("amp_bf16", "sgd_momentum")])
def test_phased_step_matches_train_step(precision: str, optimizer: str) -> None:
    reference, x, y = build(precision, optimizer)
    phased, x2, y2 = build(precision, optimizer)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    for _ in range(3):
        expected = reference.step(x, y)
        got = run_phased_step(phased, x2, y2)
        assert torch.equal(got, expected), (got.item(), expected.item())
    for p, q in zip(reference.model.parameters(), phased.model.parameters()):
        assert torch.equal(p, q)
    assert phased.model.training


# --- profile_train_step --------------------------------------------------------------------------------------------

def test_profile_shares_add_up(adam_profile: dict) -> None:
    shares = adam_profile["op_category_shares"]
    assert list(shares) == list(OP_CATEGORIES)
    assert math.isclose(sum(shares.values()), 1.0, abs_tol=1e-9)
    assert all(shares[c] > 0 for c in ("convolution", "matmul", "pooling", "optimizer", "loss")), shares
    assert shares["normalisation"] == 0.0  # the 2-block net has no BatchNorm
    ms = adam_profile["op_self_time_ms_per_step"]
    assert list(ms) == list(OP_CATEGORIES) and all(v >= 0 for v in ms.values())
    assert adam_profile["profiled_steps"] == 2 and adam_profile["profiler_device_time"] is False
    top = adam_profile["top_ops"]
    assert 1 <= len(top) <= 10 and [o["share"] for o in top] == sorted((o["share"] for o in top), reverse=True)
    assert all(o["category"] in OP_CATEGORIES for o in top)
    json.dumps(adam_profile)


def test_convolution_leads_a_conv_net(tmp_path: Path) -> None:
    """Convolution is the largest category of a conv net whose convolutions carry the arithmetic: fer_cnn_3block
    (64-128-256 channels) on one thread leads the next category (pooling) by about 3x, also beside a competing load.
    One thread, because with two OpenMP threads on a 2-core machine that others share, a descheduled thread stalls
    every parallel op at its barrier and the shares measure the scheduler (a 2-thread profile under load once put
    Adam's many small ops first). Not fer_cnn_2block: its first conv has one input channel (9 MACs an output) and
    its NCHW max-pool with indices is slow on the CPU, so pooling comes close to convolution in fp32 there (within
    a few percent on one thread) and leads under amp_bf16."""
    training = create_train_step(RunConfig(model="fer_cnn_3block", batch_size=8, optimizer="adam"))
    x, y = training.example_batch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        shares = profile_train_step(training.step, x, y, steps=2, warmup=2, out_dir=tmp_path,
                                    name="3block")["op_category_shares"]
    finally:
        torch.set_num_threads(threads)
    assert max(shares, key=shares.get) == "convolution", format_category_line(shares)


def test_profile_files_exist_and_parse(adam_profile: dict) -> None:
    files = adam_profile["files"]
    assert set(files) == {"trace", "ops", "categories"}
    stem = "test_train_step_fer_cnn_2block-cpu-bs64-fp32-g1"
    paths = {k: Path(v) for k, v in files.items()}
    assert paths["trace"].name == f"{stem}.trace.json" and paths["ops"].name == f"{stem}.ops.csv"
    assert paths["categories"].name == f"{stem}.categories.csv" and all(p.is_absolute() for p in paths.values())
    trace = json.loads(paths["trace"].read_text())
    names = {e.get("name") for e in trace["traceEvents"]}
    assert {"fer_bench::forward", "fer_bench::backward", "fer_bench::optimizer", "fer_bench::loss"} <= names
    ops = pd.read_csv(paths["ops"])
    assert list(ops.columns) == ["op", "category", "calls", "self_time_ms", "share"]
    assert set(ops["category"]) <= set(OP_CATEGORIES) and (ops["calls"] > 0).all()
    per_step_calls = ops.set_index(["op", "category"])["calls"]
    assert per_step_calls[("aten::mkldnn_convolution", "convolution")] == 2  # two convs a step: calls are per step
    assert per_step_calls[("aten::cross_entropy_loss", "loss")] == 1
    assert math.isclose(ops["share"].sum(), 1.0, abs_tol=1e-9)
    categories = pd.read_csv(paths["categories"])
    assert list(categories["category"]) == list(OP_CATEGORIES)
    assert math.isclose(categories["share"].sum(), 1.0, abs_tol=1e-9)
    by_category = ops.groupby("category")["self_time_ms"].sum()
    for row in categories.itertuples():
        assert math.isclose(by_category.get(row.category, 0.0), row.self_time_ms, rel_tol=1e-9, abs_tol=1e-9)
    leftovers = [p.name for p in paths["trace"].parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no temporary files left behind


def test_profile_peak_memory_by_phase_on_cpu(adam_profile: dict) -> None:
    """The honest contract: an int of bytes per phase from the profiler's allocation records, or None with a note.
    Adam allocates temporaries (sqrt, div) in its update, and forward and backward allocate activations and
    gradients, so all three are positive here."""
    peaks = adam_profile["peak_memory_by_phase"]
    assert set(peaks) == set(PHASES)
    if any(v is None for v in peaks.values()):
        assert adam_profile["peak_memory_note"]
    else:
        assert "peak_memory_note" not in adam_profile
        assert all(isinstance(v, int) and v > 0 for v in peaks.values()), peaks
        # the forward keeps the first conv's output (N x 32 x 48 x 48 fp32) for backward, at least
        assert peaks["forward"] >= BATCH * 32 * 48 * 48 * 4
    assert "above" in adam_profile["peak_memory_basis"]


def test_profile_sgd_has_optimizer_time(tmp_path: Path) -> None:
    step, x, y = build(optimizer="sgd")
    result = profile_train_step(step, x, y, steps=1, warmup=1, out_dir=tmp_path, name="sgd")
    assert result["op_category_shares"]["optimizer"] > 0 and result["op_category_shares"]["loss"] > 0
    assert math.isclose(sum(result["op_category_shares"].values()), 1.0, abs_tol=1e-9)
    peaks = result["peak_memory_by_phase"]
    assert all(v is None or (isinstance(v, int) and v >= 0) for v in peaks.values())  # plain SGD updates in place


def test_profile_amp_bf16_on_cpu(tmp_path: Path) -> None:
    """Autocast bf16 runs on any CPU (emulated where the CPU lacks bf16 instructions): the breakdown still holds."""
    step, x, y = build(precision="amp_bf16")
    result = profile_train_step(step, x, y, steps=1, warmup=1, out_dir=tmp_path, name="bf16 [amp]")
    shares = result["op_category_shares"]
    assert math.isclose(sum(shares.values()), 1.0, abs_tol=1e-9)
    assert shares["convolution"] > 0 and shares["optimizer"] > 0 and shares["loss"] > 0
    assert Path(result["files"]["trace"]).name == "bf16_amp.trace.json"


def test_profile_rejects_bad_counts(tmp_path: Path) -> None:
    step, x, y = build()
    with pytest.raises(FerBenchError):
        profile_train_step(step, x, y, steps=0, out_dir=tmp_path, name="x")
    with pytest.raises(FerBenchError):
        profile_train_step(step, x, y, warmup=-1, out_dir=tmp_path, name="x")
