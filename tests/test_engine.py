"""The training engine: config, devices, precisions, the phases of a step, the epoch loop's time split."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from fer_bench.engine import (
    RunConfig, TrainStep, apply_backend_settings, create_optimizer, create_train_step, evaluate, resolve_device,
    resolve_precision, synchronize, train_epoch, unavailable_reason,
)
from fer_bench.engine.metrics import ClassificationReport, confusion_matrix
from fer_bench.engine.precision import PrecisionPolicy
from fer_bench.errors import FerBenchError

torch.set_num_threads(2)


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                         nn.Linear(64, 7))


def make_step(precision: str = "fp32", optimizer: str = "sgd") -> TrainStep:
    model = tiny_model()
    policy = resolve_precision(precision, "cpu")
    model = model.to(dtype=policy.param_dtype)
    return TrainStep(model, create_optimizer(optimizer, model.parameters(), 0.1), policy, torch.device("cpu"))


def batch(n: int = 8, size: int = 48):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, size, size, generator=g), torch.randint(0, 7, (n,), generator=g)


# --- RunConfig -------------------------------------------------------------------------------------------------

def test_run_config_axes_come_from_the_registry():
    cfg = RunConfig(model="efficientnet_b0", device="CPU", batch_size=64, num_workers=2, optimizer="SGD")
    assert cfg.device == "cpu" and cfg.optimizer == "sgd"
    assert list(cfg.axes()) == ["model", "device", "batch_size", "num_workers", "precision", "num_gpus",
                                "optimizer", "lr_scaling", "memory_format", "parallel", "scaling", "pipeline", "compile"]
    assert not cfg.channels_last and RunConfig(model="x", memory_format="channels_last").channels_last


@pytest.mark.parametrize("kwargs, fragment", [
    ({"batch_size": 0}, "batch_size"),
    ({"num_workers": -1}, "num_workers"),
    ({"precision": "fp8"}, "precision: 'fp8' is not a precision; valid: fp32"),
    ({"optimizer": "lion"}, "optimizer: 'lion' is not an optimizer"),
    ({"memory_format": "nhwc"}, "memory_format: 'nhwc' is not a memory format; valid: contiguous, channels_last"),
    ({"pipeline": "dali"}, "pipeline: 'dali' is not a data pipeline; valid: batched, per_image"),
    ({"lr_scaling": "cubic"}, "lr_scaling: 'cubic' is not a learning-rate rule; valid: none, linear, sqrt"),
    ({"device": "tpu"}, "device: 'tpu' is not a device"),
    ({"num_gpus": 0}, "num_gpus"),
    ({"lr": 0.0}, "lr"),
])
def test_run_config_rejects_bad_values(kwargs, fragment):
    with pytest.raises(FerBenchError, match=fragment):
        RunConfig(model="m", **kwargs)


# --- devices ---------------------------------------------------------------------------------------------------

def test_resolve_device_cpu():
    r = resolve_device("cpu")
    assert r.available and r.device == torch.device("cpu") and r.reason is None
    assert "needs a GPU" in resolve_device("cpu", num_gpus=2).reason


def test_resolve_device_without_cuda_gives_reason(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = resolve_device("cuda")
    assert not r.available and r.reason == "no CUDA device on this machine"


def test_resolve_device_counts_fake_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1").device == torch.device("cuda", 1)
    assert "only 2 CUDA device(s)" in resolve_device("cuda:2").reason
    assert resolve_device("cuda", num_gpus=2).available
    assert "num_gpus=4" in resolve_device("cuda", num_gpus=4).reason
    assert "num_gpus=2" in resolve_device("cuda:1", num_gpus=2).reason


def test_synchronize_calls_the_device_sync(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    synchronize("cpu")
    synchronize(None)
    assert calls == []
    synchronize("cuda:1")
    assert calls == [torch.device("cuda", 1)]


# --- precision -------------------------------------------------------------------------------------------------

def test_amp_fp16_refused_on_cpu_with_reason():
    with pytest.raises(FerBenchError, match="amp_fp16 is a GPU precision"):
        resolve_precision("amp_fp16", "cpu")
    assert "amp_fp16" in unavailable_reason(RunConfig(model="fer_cnn_2block", precision="amp_fp16"))


def test_bf16_refused_on_gpu_without_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    with pytest.raises(FerBenchError, match="compute capability 8.0"):
        resolve_precision("bf16", "cuda:0")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert resolve_precision("amp_bf16", "cuda:0").autocast_dtype == torch.bfloat16
    fp16 = resolve_precision("amp_fp16", "cuda:0")
    assert fp16.grad_scaler and fp16.autocast_dtype == torch.float16 and fp16.param_dtype == torch.float32


@pytest.mark.parametrize("precision, out_dtype, param_dtype", [
    ("fp32", torch.float32, torch.float32),
    ("amp_bf16", torch.bfloat16, torch.float32),
    ("bf16", torch.bfloat16, torch.bfloat16),
])
def test_every_cpu_precision_trains(precision, out_dtype, param_dtype):
    step = make_step(precision)
    x, y = batch()
    x = step.prepare_input(x)
    assert step.forward(x).dtype == out_dtype
    before = [p.detach().clone() for p in step.model.parameters()]
    loss = step.step(x, y)
    assert torch.isfinite(loss)
    assert all(p.dtype == param_dtype for p in step.model.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, step.model.parameters()))


def test_grad_scaler_path_runs_on_cpu():
    """The amp_fp16 code path (fp16 autocast + GradScaler) exercised with CPU kernels."""
    model = tiny_model()
    policy = PrecisionPolicy("amp_fp16", "cpu", torch.float16, torch.float32, True)
    step = TrainStep(model, create_optimizer("sgd", model.parameters(), 0.1), policy, torch.device("cpu"))
    assert isinstance(step.scaler, torch.amp.GradScaler)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = batch()
    loss = step.step(x, y)
    assert torch.isfinite(loss)
    assert step.scaler.get_scale() > 0
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_backend_settings_are_explicit():
    assert apply_backend_settings(tf32=True, cudnn_benchmark=False) == {"tf32": True, "cudnn_benchmark": False}
    assert torch.backends.cudnn.benchmark is False
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    apply_backend_settings(tf32=False, cudnn_benchmark=True)
    assert torch.backends.cudnn.benchmark is True
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"


# --- optimizers and phases -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sgd", "sgd_momentum", "adam", "adamw", "rmsprop"])
def test_every_optimizer_updates(name):
    step = make_step(optimizer=name)
    x, y = batch()
    before = [p.detach().clone() for p in step.model.parameters()]
    step.step(x, y)
    assert any(not torch.equal(b, p) for b, p in zip(before, step.model.parameters()))


def test_unknown_optimizer():
    with pytest.raises(FerBenchError, match="lion"):
        create_optimizer("lion", tiny_model().parameters(), 0.1)


def test_phases_do_what_they_say():
    step = make_step()
    x, y = batch()
    before = [p.detach().clone() for p in step.model.parameters()]
    logits = step.forward(x)
    assert not logits.requires_grad and not step.model.training
    assert all(p.grad is None for p in step.model.parameters())
    step.forward_backward(x, y)
    assert step.model.training
    assert all(p.grad is not None for p in step.model.parameters())
    assert all(torch.equal(b, p) for b, p in zip(before, step.model.parameters()))
    step.step(x, y)
    assert any(not torch.equal(b, p) for b, p in zip(before, step.model.parameters()))


# --- the epoch loop --------------------------------------------------------------------------------------------

class SlowLoader:
    """Yields ``n`` batches, sleeping ``delay`` seconds before each: a loader that starves the step."""

    def __init__(self, n: int, delay: float):
        self.n, self.delay = n, delay

    def __iter__(self):
        for _ in range(self.n):
            time.sleep(self.delay)
            yield batch(4)


def test_epoch_splits_data_wait_from_compute():
    step = make_step()
    stats = train_epoch(step, SlowLoader(5, 0.05))
    assert stats.num_batches == 5 and stats.num_samples == 20
    # the sleeps are counted as waiting for data, and the step's own time is not
    assert 5 * 0.05 <= stats.data_wait_s < 5 * 0.05 + 0.2
    assert stats.data_wait_fraction == pytest.approx(stats.data_wait_s / stats.epoch_time_s)
    assert stats.compute_s == pytest.approx(stats.epoch_time_s - stats.data_wait_s)
    assert stats.first_batch_s >= 0.05
    assert stats.samples_per_s == pytest.approx(20 / stats.epoch_time_s)


def test_epoch_with_instant_loader_is_compute_bound():
    step = make_step()
    batches = [batch(64, 48) for _ in range(4)]
    stats = train_epoch(step, batches)
    assert stats.data_wait_s < 0.01 and stats.data_wait_fraction < 0.2
    assert train_epoch(step, batches, max_batches=2).num_batches == 2


def test_epoch_syncs_each_step_on_async_devices(monkeypatch):
    calls = []
    monkeypatch.setattr("fer_bench.engine.loop.synchronize", lambda d: calls.append(d))
    step = make_step()
    train_epoch(step, [batch(4)] * 3, sync_each_step=True)
    assert len(calls) == 2 + 3
    calls.clear()
    train_epoch(step, [batch(4)] * 3)  # cpu: only around the epoch
    assert len(calls) == 2


# --- evaluation metrics ----------------------------------------------------------------------------------------

def test_metrics_on_a_known_confusion():
    targets = np.array([0, 0, 0, 1, 1, 2])
    preds = np.array([0, 0, 1, 1, 2, 2])
    report = ClassificationReport(confusion_matrix(targets, preds, 3))
    assert report.accuracy == pytest.approx(4 / 6)
    np.testing.assert_allclose(report.per_class_recall, [2 / 3, 1 / 2, 1.0])
    # F1: class0 p=1 r=2/3 -> 0.8; class1 p=1/2 r=1/2 -> 0.5; class2 p=1/2 r=1 -> 2/3
    assert report.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_metrics_leave_out_absent_classes():
    report = ClassificationReport(confusion_matrix(np.array([0, 1]), np.array([0, 1]), 7))
    assert report.macro_f1 == 1.0
    d = report.as_dict(("a", "b", "c", "d", "e", "f", "g"))
    assert d["per_class_recall"]["c"] is None and d["per_class_recall"]["a"] == 1.0


def test_evaluate_constant_predictor():
    """A model that always says class 3 scores the share of class 3, and macro-F1 shows it is useless."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([0, 0, 0, 5.0, 0, 0, 0]))
    step = TrainStep(model, create_optimizer("sgd", model.parameters(), 0.1), resolve_precision("fp32", "cpu"),
                     torch.device("cpu"))
    y = torch.tensor([3, 3, 3, 0, 1, 2, 4, 5])
    report = evaluate(step, [(torch.randn(8, 1, 48, 48), y)])
    assert report.accuracy == pytest.approx(3 / 8)
    assert report.per_class_recall[3] == 1.0 and report.per_class_recall[0] == 0.0
    assert report.macro_f1 == pytest.approx((2 * 3 / (3 + 8)) / 6)


# --- building from a RunConfig ---------------------------------------------------------------------------------

def test_create_train_step_from_config():
    training = create_train_step(RunConfig(model="fer_cnn_2block", batch_size=4, precision="amp_bf16",
                                           memory_format="channels_last"))
    x, y = training.example_batch()
    assert x.shape == (4, training.in_chans, training.input_size, training.input_size)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.isfinite(training.step.step(x, y))
    s = training.settings
    assert s["autocast_dtype"] == "bfloat16" and s["channels_last"] is True and s["parallel"] == "none"
    assert s["tf32"] is False and s["cudnn_benchmark"] is True


def test_create_train_step_refuses_unavailable_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(FerBenchError, match="no CUDA device"):
        create_train_step(RunConfig(model="fer_cnn_2block", device="cuda"))


# ---------------------------------------------------------------- native or emulated precision


from fer_bench.engine.precision import describe_precision_native, find_isa_cap, resolve_precision_native  # noqa: E402

AVX512_BF16 = ["sse4_2", "avx", "avx2", "avx512f", "avx512_bf16", "avx512_vnni"]
AMX = ["avx2", "avx512f", "amx_bf16", "amx_tile"]
AVX2_ONLY = ["sse4_2", "fma", "avx", "avx2"]


@pytest.mark.parametrize("flags, env, native", [
    (AVX512_BF16, {}, True),
    (AMX, {}, True),
    (AVX2_ONLY, {}, False),
    (AVX512_BF16, {"ATEN_CPU_CAPABILITY": "avx2"}, False),
    (AVX512_BF16, {"ATEN_CPU_CAPABILITY": "default"}, False),
    (AVX512_BF16, {"ATEN_CPU_CAPABILITY": "avx512"}, True),
    (AVX512_BF16, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, False),
    (AVX512_BF16, {"ONEDNN_MAX_CPU_ISA": "avx512_core"}, False),  # AVX-512 without its bf16 instructions
    (AVX512_BF16, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, True),
    (AMX, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, True),
    (AVX512_BF16, {"DNNL_MAX_CPU_ISA": "AVX2"}, False),
    (AVX512_BF16, {"ONEDNN_MAX_CPU_ISA": "ALL"}, True),
])
@pytest.mark.parametrize("precision", ["amp_bf16", "bf16"])
def test_bf16_on_a_cpu_is_native_only_with_the_flags_and_no_isa_cap(precision, flags, env, native):
    is_native, note = resolve_precision_native(precision, "cpu", cpu_flags=flags, env=env)
    assert is_native is native
    if native:
        assert note is None
    else:
        assert note.startswith(f"{precision} is emulated on this CPU (")
        assert note.endswith("): slower than fp32 here is expected, not a bug")


def test_emulated_notes_say_why():
    _, note = resolve_precision_native("amp_bf16", "cpu", cpu_flags=AVX2_ONLY, env={})
    assert note == ("amp_bf16 is emulated on this CPU (no avx512_bf16/amx_bf16): slower than fp32 here is expected, "
                    "not a bug")
    _, note = resolve_precision_native("amp_bf16", "cpu", cpu_flags=AVX512_BF16, env={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert "(ONEDNN_MAX_CPU_ISA=AVX2 keeps torch off avx512_bf16)" in note
    assert find_isa_cap({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}) == "ATEN_CPU_CAPABILITY=avx2"
    assert find_isa_cap({}) is None


@pytest.mark.parametrize("precision, device, flags, capability, native", [
    ("fp32", "cpu", AVX2_ONLY, None, True),
    ("amp_fp16", "cpu", AVX512_BF16, None, False),  # CPU fp16 needs avx512_fp16 / amx_fp16
    ("amp_fp16", "cpu", ["avx512_fp16"], None, True),
    ("amp_bf16", "cuda", (), (8, 0), True),
    ("bf16", "cuda", (), (7, 5), False),
    ("amp_fp16", "cuda", (), (7, 0), True),
    ("amp_bf16", "mps", (), None, False),
    ("amp_fp16", "mps", (), None, True),
])
def test_precision_native_by_device(precision, device, flags, capability, native):
    assert resolve_precision_native(precision, device, cpu_flags=flags, env={},
                                    cuda_capability=capability)[0] is native


def test_cpu_flags_only_count_for_the_cpu_and_env_caps_only_for_bf16():
    assert resolve_precision_native("amp_fp16", "cpu", cpu_flags=["amx_fp16"],
                                    env={"ATEN_CPU_CAPABILITY": "avx2"})[0] is True
    assert resolve_precision_native("amp_bf16", "cuda", cpu_flags=AVX2_ONLY, env={"ATEN_CPU_CAPABILITY": "avx2"},
                                    cuda_capability=(9, 0))[0] is True


def test_describe_precision_native_for_extra_info(monkeypatch):
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert describe_precision_native("amp_bf16", "cpu", AVX512_BF16) == {"precision_native": True}
    info = describe_precision_native("amp_bf16", "cpu", AVX2_ONLY)
    assert info["precision_native"] is False and "no avx512_bf16/amx_bf16" in info["precision_note"]
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert describe_precision_native("bf16", "cpu", AVX512_BF16)["precision_native"] is False
