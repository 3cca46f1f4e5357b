"""torch.compile of a TrainStep: availability, the compiled step's numbers, and the bookkeeping that catches graph
breaks, recompiles and a silent fall back to eager (fer_bench.engine.compile).

One real inductor compile (fer_cnn_2block, batch 8, fp32, mode default) is shared by the module; the graph-break
and fallback cases use dynamo's ``eager`` backend, which traces like inductor but generates no kernels.
"""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from fer_bench.engine import RunConfig, TrainStep, create_optimizer, create_train_step, resolve_precision
from fer_bench.engine import compile as fcompile
from fer_bench.engine.compile import (
    CompiledFellBack, CompileWatch, check_compiled, compile_report, compile_snapshot, compile_train_step,
    compile_unavailable_reason, compile_warm_calls, warm_compile, warm_compiled_step,
)
from fer_bench.errors import FerBenchError

torch.set_num_threads(2)

MODEL, BATCH = "fer_cnn_2block", 8


def _config(mode: str, **kw) -> RunConfig:
    return RunConfig(model=MODEL, batch_size=BATCH, precision="fp32", compile=mode, **kw)


@pytest.fixture(scope="module")
def compiled():
    """The compiled step and an eager twin (same seed, same batch), each run for two training steps; the first
    compiled call runs under a CompileWatch."""
    import torch._dynamo

    eager = create_train_step(_config("eager"))
    training = create_train_step(_config("default"))
    x, y = eager.example_batch()
    eager_losses = [eager.step.step(x, y) for _ in range(2)]
    step = training.step
    losses = []
    with CompileWatch(step) as watch:
        compile_time_s = warm_compile(lambda: losses.append(step.step(x, y)), step.device)
    report = watch.report(compile_time_s)
    losses.append(step.step(x, y))
    with CompileWatch(step) as again:  # a warm call: nothing compiles any more
        step.step(x, y)
    yield types.SimpleNamespace(training=training, step=step, eager=eager, losses=losses,
                                eager_losses=eager_losses, report=report, again=again.report(0.0, expect_compile=False))
    torch._dynamo.reset()


@pytest.fixture
def dynamo_reset():
    import torch._dynamo

    yield
    torch._dynamo.reset()


# ---------------------------------------------------------------------------------------------------- availability


def test_unavailable_reasons():
    assert compile_unavailable_reason("eager", "cpu") is None
    assert compile_unavailable_reason("eager", "cuda:3") is None
    assert compile_unavailable_reason("reduce-overhead", "cpu") == (
        "reduce-overhead captures CUDA graphs: CUDA only (use default or max-autotune-no-cudagraphs on cpu)")
    assert compile_unavailable_reason("default", "cpu") is None  # g++ and Python.h are installed here
    assert compile_unavailable_reason("max-autotune-no-cudagraphs", "cpu") is None
    assert "mps" in compile_unavailable_reason("default", "mps")
    with pytest.raises(ValueError):
        compile_unavailable_reason("fast", "cpu")


def test_missing_cpp_compiler_is_a_reason(monkeypatch):
    import torch._inductor.config as inductor_config

    monkeypatch.delenv("TORCH_INDUCTOR_INSTALL_GXX", raising=False)
    with inductor_config.patch({"cpp.cxx": (None, "no-such-cxx-fer-bench")}):
        reason = fcompile._cpu_toolchain_missing()
    assert inductor_config.cpp.cxx != (None, "no-such-cxx-fer-bench")
    assert reason and "C++ compiler" in reason and "no-such-cxx-fer-bench" in reason


def test_dynamo_unsupported_is_a_reason(monkeypatch):
    fcompile._unavailable.cache_clear()
    monkeypatch.setattr(fcompile, "_dynamo_unsupported", lambda: "torch.compile is not supported here: Python 3.99")
    try:
        assert compile_unavailable_reason("default", "cpu") == "torch.compile is not supported here: Python 3.99"
    finally:
        fcompile._unavailable.cache_clear()


def test_warm_calls():
    assert compile_warm_calls("default") == 1
    assert compile_warm_calls("reduce-overhead") == 3


# ---------------------------------------------------------------------------------------------- the compiled step


def test_compiled_step_keeps_the_eager_module(compiled):
    step, eager = compiled.step, compiled.eager.step
    assert step.compile_mode == "default"
    assert step.model is not step.eager_model
    assert step.model._orig_mod is step.eager_model
    assert isinstance(step.eager_model, nn.Module) and not hasattr(step.eager_model, "_orig_mod")
    assert eager.model is eager.eager_model and eager.compile_mode == "eager"
    assert compiled.training.settings["compile"] == "default"
    settings = {k: v for k, v in step.compile_settings.items() if k != "inductor_cache_dir_for_isa_cap"}
    assert settings == {"backend": "inductor", "dynamic": False, "dynamo_reset": True}


def test_compiled_loss_matches_eager(compiled):
    got = torch.stack(compiled.losses[:2])
    want = torch.stack(compiled.eager_losses)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_report_of_a_clean_compile(compiled):
    r = compiled.report
    assert r["compile_mode"] == "default"
    assert r["compile_time_s"] > 0
    assert r["compile_graphs"] >= 1
    assert r["compile_graph_breaks"] == 0 and r["compile_break_reasons"] == []
    assert r["compile_recompiles"] == 0
    assert r["compile_frames_failed"] == 0
    assert r["compile_fell_back"] is False and r["compile_fallback_reason"] is None
    knobs = r["compile_dynamo_config"]
    assert knobs["dynamic"] is False and knobs["backend"] == "inductor"
    assert knobs["recompile_limit"] == torch._dynamo.config.recompile_limit
    cache = r["compile_cache"]
    assert {"fx_graph_cache", "autograd_cache", "dir", "state"} <= set(cache)
    assert cache["state"] in ("cold", "warm", "unused")
    check_compiled(r)  # does not raise


def test_warm_calls_compile_nothing(compiled):
    r = compiled.again
    assert r["compile_graphs"] == 0 and r["compile_recompiles"] == 0 and r["compile_frames"] == 0
    assert r["compile_fell_back"] is False


def test_eager_step_has_no_compile_report():
    training = create_train_step(_config("eager"))
    assert warm_compiled_step(training.step, lambda: None) == {}


# ---------------------------------------------------------------------------------- graph breaks and fallbacks


class BreakNet(nn.Module):
    """A model with a deliberate graph break in its forward."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 7)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        torch._dynamo.graph_break()
        return self.head(torch.flatten(x, 1))


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 7)

    def forward(self, x):
        return self.head(torch.flatten(torch.relu(self.conv(x)), 1))


def _step(model: nn.Module) -> TrainStep:
    torch.manual_seed(0)
    return TrainStep(model, create_optimizer("sgd", model.parameters(), 0.1), resolve_precision("fp32", "cpu"),
                     torch.device("cpu"))


def _batch(n: int):
    g = torch.Generator().manual_seed(n)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 7, (n,), generator=g)


def test_graph_break_is_counted(dynamo_reset):
    step = _step(BreakNet())
    compile_train_step(step, "default", backend="eager")
    x, y = _batch(4)
    with CompileWatch(step) as watch:
        seconds = warm_compile(lambda: step.step(x, y), step.device)
    r = watch.report(seconds)
    assert r["compile_graph_breaks"] >= 1
    assert any("graph_break()" in reason for reason in r["compile_break_reasons"])
    assert r["compile_graphs"] >= 2  # the graphs before and after the break
    assert r["compile_fell_back"] is False
    check_compiled(r)


def test_recompile_limit_fallback_fails_the_case(monkeypatch, dynamo_reset):
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)
    step = _step(SmallNet())
    compile_train_step(step, "default", backend="eager")
    (x4, y4), (x6, y6) = _batch(4), _batch(6)
    with CompileWatch(step) as watch:  # a new batch size under dynamic=False recompiles: the second hits limit 1
        step.step(x4, y4)
        step.step(x6, y6)
    r = watch.report(0.1)
    assert r["compile_fell_back"] is True
    assert "recompile_limit (1)" in r["compile_fallback_reason"]
    assert r["compile_recompiles"] >= 1
    assert r["compile_frames_failed"] >= 1
    with pytest.raises(CompiledFellBack, match="fell back to eager.*recompile_limit.*not timed as compiled"):
        check_compiled(r)


def test_no_graph_compiled_is_a_fallback():
    snap = compile_snapshot()
    r = compile_report(snap, compile_snapshot(), 0.0, mode="default")
    assert r["compile_fell_back"] is True and "no graph was compiled" in r["compile_fallback_reason"]
    with pytest.raises(CompiledFellBack, match="not timed as compiled"):
        check_compiled(r)


def test_failed_frame_is_a_fallback(monkeypatch, dynamo_reset):
    """A frame whose compile raises (here a backend that fails) is run eager under suppress_errors: caught."""
    import torch._dynamo

    def broken_backend(gm, example_inputs):
        raise RuntimeError("backend exploded")

    monkeypatch.setattr(torch._dynamo.config, "suppress_errors", True)
    step = _step(SmallNet())
    compile_train_step(step, "default", backend=broken_backend)
    x, y = _batch(4)
    with CompileWatch(step) as watch:
        step.step(x, y)
    r = watch.report(0.1)
    assert r["compile_fell_back"] is True
    assert "failed to compile and ran eager" in r["compile_fallback_reason"]
    with pytest.raises(CompiledFellBack):
        check_compiled(r)


# ------------------------------------------------------------------------------------------------ DataParallel


def test_data_parallel_with_compile_is_refused():
    with pytest.raises(FerBenchError, match="torch.compile with nn.DataParallel is not supported: use parallel=ddp"):
        create_train_step(_config("default", parallel="dp", num_gpus=2))
    step = _step(nn.DataParallel(SmallNet()))
    with pytest.raises(FerBenchError, match="nn.DataParallel"):
        compile_train_step(step, "default")
    assert step.model is step.eager_model


def test_eager_mode_is_a_no_op():
    step = _step(SmallNet())
    compile_train_step(step, "eager")
    assert step.model is step.eager_model and step.compile_mode == "eager"


def test_an_isa_capped_run_gets_its_own_inductor_cache():
    """Inductor's cache key ignores ATEN_CPU_CAPABILITY: a graph cached uncapped and loaded capped computed garbage
    on this machine, so a capped run compiles into a folder of its own (unless the user named one)."""
    import os

    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    from fer_bench.engine.compile import separate_cache_for_isa_cap

    assert separate_cache_for_isa_cap({}) is None
    env = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    folder = separate_cache_for_isa_cap(env)
    assert folder == env["TORCHINDUCTOR_CACHE_DIR"]
    assert folder.startswith(os.path.abspath(default_cache_dir()) + "-") and "avx2" in folder
    assert separate_cache_for_isa_cap(env) is None  # set once
    mine = {"ATEN_CPU_CAPABILITY": "avx2", "TORCHINDUCTOR_CACHE_DIR": "/my/cache"}
    assert separate_cache_for_isa_cap(mine) is None and mine["TORCHINDUCTOR_CACHE_DIR"] == "/my/cache"
