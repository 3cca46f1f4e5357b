"""torch.compile for a TrainStep: whether a mode can run here, compiling the step's model, timing the compile, and
the bookkeeping that tells a compiled case from one that silently fell back to eager.

What the rest of the suite relies on (see ../shared/design/METHOD.md, "torch.compile and CUDA graphs"):

- Only the model is compiled (``step.model = torch.compile(step.eager_model)``); the loss, ``backward()``'s
  launch and the optimizer update stay eager, as in most users' scripts. Compiling the whole step would also fuse
  the optimizer, but ``loss.backward()`` inside a compiled function is a graph break (unless compiled autograd is
  on), so the "whole step" would be three graphs plus Python glue, and the optimizer's foreach kernels are already
  few: the model is what the compile axis measures. ``step.eager_model`` keeps the eager module for FLOP counting
  (FlopCounterMode under a compiled module would trace again) and for the reference loop.
- The compile is paid before measure()'s cold call: :func:`warm_compile` runs the first call(s), and its time is
  ``compile_time_s``. ``cold_start_ms`` is then the first compiled call that compiles nothing.
- Shapes never change inside a step case, so the model is compiled with ``dynamic=False``: a shape change (an
  epoch's partial last batch) recompiles a static graph instead of switching to a dynamic-shape one, which
  would time different kernels. Every compile starts from ``torch._dynamo.reset()`` so one case's cache entries
  (and recompile count) never leak into the next; ``reset()`` does not touch the on-disk inductor caches (FX graph
  cache, AOTAutograd cache), so whichever case compiles a graph first pays the cold cost: ``compile_cache``
  in the report says whether this case hit or missed them.
- After ``recompile_limit`` recompiles of a frame (or when a frame cannot be compiled at all) torch.compile
  runs the frame eager from then on, with only a log warning. :class:`CompileWatch` snapshots
  ``torch._dynamo.utils.counters`` and the compilation metrics around the compiling calls, :func:`compile_report`
  turns the difference into result keys, and :func:`check_compiled` raises :class:`CompiledFellBack` so such a
  case is never timed as compiled.

reduce-overhead (CUDA graphs, CUDA only): a captured graph replays fixed kernels on fixed shapes and addresses, so
a new input shape records another graph (an epoch's partial last batch re-records) and a host sync inside the
model (``.item()``, a data-dependent branch) cannot be captured: the graph splits there or is skipped. TrainStep
calls no ``.item()`` (it returns the detached loss tensor; whoever reads it as a number syncs outside the timed
step). ``optimizer.step`` stays outside the compiled model, so the update runs eager after the replayed forward
and backward graphs. CUDA graph trees warm up and record on the calls after the compile, which is why
:func:`compile_warm_calls` asks for three calls in that mode.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import sys
import sysconfig
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from fer_bench.axes import COMPILE_MODES
from fer_bench.errors import FerBenchError

if TYPE_CHECKING:  # torch stays unimported until a compiled case needs it
    import torch

    from fer_bench.engine.step import TrainStep

REDUCE_OVERHEAD_CPU = ("reduce-overhead captures CUDA graphs: CUDA only (use default or max-autotune-no-cudagraphs "
                       "on {device})")
#: How many break or recompile reasons a result keeps.
MAX_REASONS = 5
#: The reason strings are dynamo's multi-line messages: a result keeps their first lines, this long at most.
REASON_CHARS = 240
#: The gb_type dynamo gives the Unsupported it raises when a frame hits the recompile limit
#: (torch/_dynamo/convert_frame.py, ``raise_unimplemented_cache_limit_exceeded``).
RECOMPILE_LIMIT_GB = "Dynamo recompile limit exceeded"
#: The torch.compile arguments every compiled step uses (recorded in the report).
COMPILE_DYNAMIC = False


class CompiledFellBack(FerBenchError):
    """A compiled case whose model (or part of it) ran eager: it must not be timed as compiled."""


# ----------------------------------------------------------------------------------------------------------------
# availability


def compile_unavailable_reason(mode: str, device: str) -> str | None:
    """Why torch.compile in ``mode`` cannot run on ``device`` here, or None.

    Called for every collected case: the answer is cached per (mode, device type and index), and torch (and
    torch._dynamo, about a second to import) is only imported for a non-eager mode. A device this machine lacks is
    not reported here (the device axis says so).
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {COMPILE_MODES}, got {mode!r}")
    if mode == "eager":
        return None
    return _unavailable(mode, str(device))


@functools.lru_cache(maxsize=None)
def _unavailable(mode: str, device: str) -> str | None:
    device_type = device.split(":", 1)[0]
    reason = _dynamo_unsupported()
    if reason:
        return reason
    if device_type == "mps":
        return "torch.compile on mps (inductor's Metal backend) is a prototype: not benchmarked; use eager"
    if mode == "reduce-overhead" and device_type != "cuda":
        return REDUCE_OVERHEAD_CPU.format(device=device_type)
    if device_type == "cpu":
        return _cpu_toolchain_missing()
    if device_type == "cuda":
        return _cuda_toolchain_missing(device)
    return None


@functools.lru_cache(maxsize=None)
def _dynamo_unsupported() -> str | None:
    """torch.compile's own verdict on this interpreter (Python version, free-threaded builds, Windows support)."""
    try:
        from torch._dynamo.eval_frame import check_if_dynamo_supported
    except Exception as exc:  # a torch without dynamo, or one that fails to import it here
        return f"torch.compile is unavailable in this torch: {type(exc).__name__}: {exc}"
    try:
        check_if_dynamo_supported()
    except Exception as exc:
        return f"torch.compile is not supported here: {exc}"
    return None


def inductor_cxx_candidates() -> tuple[str, ...]:
    """The C++ compilers inductor's CPU backend tries, in order (``torch._inductor.config.cpp.cxx``; its ``None``
    entry, a conda-installed g++, only counts with TORCH_INDUCTOR_INSTALL_GXX)."""
    try:
        from torch._inductor import config as inductor_config

        cxx = inductor_config.cpp.cxx
    except Exception:
        cxx = (None, os.environ.get("CXX", "clang++" if sys.platform == "darwin" else "g++"))
    search = tuple(cxx) if isinstance(cxx, (list, tuple)) else (cxx,)
    return tuple(c for c in search if c)


def _cpu_toolchain_missing() -> str | None:
    """Inductor's CPU kernels are C++ built at compile time: a compiler and Python's headers must be there. Checked
    with ``shutil.which`` (inductor itself runs ``<cxx> --version``, too slow for every collected case)."""
    if sys.platform == "win32":
        return None  # MSVC's cl: inductor checks it itself, and this suite does not run its CPU cases on Windows
    candidates = inductor_cxx_candidates()
    if not any(shutil.which(c.split()[0]) for c in candidates):
        if os.getenv("TORCH_INDUCTOR_INSTALL_GXX"):
            return None  # inductor installs g++ through conda on its first compile
        names = ", ".join(candidates) or "none configured"
        return (f"torch.compile on cpu needs a C++ compiler for inductor: {names} not found on PATH "
                f"(install g++ or set CXX)")
    include = sysconfig.get_paths().get("include")
    if include and not os.path.exists(os.path.join(include, "Python.h")):
        return (f"torch.compile on cpu builds C++ kernels against Python's headers: {include}/Python.h is missing "
                f"(install python3-dev)")
    return None


def _cuda_toolchain_missing(device: str) -> str | None:
    """Inductor's CUDA kernels are Triton kernels: Triton must be installed and the GPU sm_70 or newer."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        return None  # the device axis reports the missing GPU
    if importlib.util.find_spec("triton") is None:
        return "torch.compile on cuda needs Triton for inductor's kernels: not installed (pip install triton)"
    if torch.version.hip is None:
        index = torch.device(device).index or 0
        try:
            major, minor = torch.cuda.get_device_capability(index)
        except Exception:
            return None  # an index this machine lacks: the device axis reports it
        if major < 7:
            return f"torch.compile on cuda needs compute capability 7.0+ for Triton: {device} is {major}.{minor}"
    return None


# ----------------------------------------------------------------------------------------------------------------
# compiling a step


def compile_warm_calls(mode: str) -> int:
    """Calls that finish compiling in ``mode``: one compiles (forward, and backward at its first run); CUDA graph
    trees run the compiled graph once more to warm up and record on the next call, so reduce-overhead needs three
    before its calls are replays."""
    return 3 if mode == "reduce-overhead" else 1


def compile_train_step(step: "TrainStep", mode: str, *, backend: str | Callable = "inductor",
                       reset: bool = True) -> None:
    """Make ``step`` run its model under torch.compile in ``mode`` (no-op for eager).

    ``step.eager_model`` keeps the eager module (FLOP counting, the reference loop) and ``step.model`` becomes
    ``torch.compile(step.eager_model, mode=..., dynamic=False)``; parameters are shared, so the optimizer built on
    the eager module updates the compiled one. Nothing compiles until the first call (:func:`warm_compile`).

    Args:
        backend: ``inductor`` (what the axis measures); ``aot_eager`` or ``eager`` compile without generating
            kernels (debugging, and tests of the bookkeeping that need no C++ compiler). ``mode`` only applies to
            inductor.
        reset: ``torch._dynamo.reset()`` first, so this step's frames, recompile counts and guards start fresh
            (on-disk caches stay).

    Raises FerBenchError when the mode cannot run on the step's device, or the model is nn.DataParallel (its
    per-call replication defeats the compiled graph: use parallel=ddp).
    """
    if mode not in COMPILE_MODES:
        raise FerBenchError(f"compile: must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    if mode == "eager":
        return
    import torch
    from torch import nn

    eager = step.eager_model
    if isinstance(eager, nn.DataParallel):
        raise FerBenchError("torch.compile with nn.DataParallel is not supported: use parallel=ddp")
    if backend == "inductor":
        reason = compile_unavailable_reason(mode, str(step.device))
        if reason:
            raise FerBenchError(f"compile={mode} on {step.device}: {reason}")
    import torch._dynamo

    if reset:
        torch._dynamo.reset()
    isa_cache = separate_cache_for_isa_cap() if backend == "inductor" else None
    kwargs: dict[str, Any] = {"backend": backend, "dynamic": COMPILE_DYNAMIC}
    if backend == "inductor" and mode != "default":
        kwargs["mode"] = mode
    step.model = torch.compile(eager, **kwargs)
    step.compile_mode = mode
    name = backend if isinstance(backend, str) else getattr(backend, "__name__", repr(backend))
    step.compile_settings = {"backend": name, "dynamic": COMPILE_DYNAMIC, "dynamo_reset": reset}
    if isa_cache:
        step.compile_settings["inductor_cache_dir_for_isa_cap"] = isa_cache


def separate_cache_for_isa_cap(env: dict | None = None) -> str | None:
    """Under ``ATEN_CPU_CAPABILITY`` / ``ONEDNN_MAX_CPU_ISA`` (fer_bench's AVX2-laptop stand-in), give inductor an
    on-disk cache of its own: its cache key does not include the cap, and a graph cached by an uncapped run of the
    same machine, loaded by a capped one, computed garbage here (a max-pool backward indexing out of bounds). Left
    alone when the user named ``TORCHINDUCTOR_CACHE_DIR``. Returns the folder it set, or None."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    from fer_bench.machine.identity import collect_isa_cap

    env = os.environ if env is None else env
    cap = collect_isa_cap(env)
    default = os.path.abspath(default_cache_dir())
    current = env.get("TORCHINDUCTOR_CACHE_DIR")
    if not cap or (current is not None and os.path.abspath(current) != default):
        return None  # uncapped, or the user's own folder (or one already set for the cap)
    suffix = "-".join(f"{k.lower()}-{v.lower()}" for k, v in sorted(cap.items()))
    folder = f"{default}-{re.sub(r'[^a-z0-9_.-]+', '_', suffix)}"
    env["TORCHINDUCTOR_CACHE_DIR"] = folder
    return folder


@contextlib.contextmanager
def torch_warnings_not_errors():
    """Warnings that torch's own modules raise (``module`` torch.*) are shown, not raised, inside the block.

    The compiler inspects tensors the way no user code would (dynamo reads ``.grad`` of non-leaf tensors while
    building a resume function after a graph break, and hides the UserWarning that raises only through
    ``warnings.showwarning``); under pytest's ``filterwarnings = error`` such a warning becomes an exception inside
    dynamo (InternalTorchDynamoError) and the compile fails. Warnings attributed to the caller's code stay errors.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("default", module=r"torch\.")
        yield


def warm_compile(call: Callable[[], Any], device: "torch.device | str", *, calls: int = 1) -> float:
    """Run ``call`` ``calls`` times (the ones that compile: :func:`compile_warm_calls`) and return the seconds they
    took, device work included: ``compile_time_s``, tracing, code generation, the C++/Triton builds and the first
    executions (CUDA graph recording under reduce-overhead). Run it before measure(), whose cold call then compiles
    nothing. Torch-internal warnings raised while compiling are not errors (:func:`torch_warnings_not_errors`)."""
    from fer_bench.engine.device import synchronize

    with torch_warnings_not_errors():
        t0 = time.perf_counter()
        for _ in range(max(1, calls)):
            call()
        synchronize(device)
        return time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------------------------
# bookkeeping


@dataclass
class CompileSnapshot:
    """Dynamo's counters (a copy of ``torch._dynamo.utils.counters``, category -> key -> count) and the compilation
    metrics records (one per frame compile attempt) at one moment, plus the config knobs then in force."""

    counters: dict[str, dict[str, int]]
    metrics: list = field(default_factory=list)
    knobs: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)


def compile_snapshot() -> CompileSnapshot:
    from torch._dynamo import utils as dynamo_utils

    counters = {category: dict(values) for category, values in dynamo_utils.counters.items()}
    get_metrics = getattr(dynamo_utils, "get_compilation_metrics", None)
    metrics = list(get_metrics()) if get_metrics is not None else []
    return CompileSnapshot(counters, metrics, dynamo_knobs(), compile_cache_settings())


def dynamo_knobs() -> dict[str, Any]:
    """The ``torch._dynamo.config`` settings that decide whether a compiled step stays compiled."""
    from torch._dynamo import config

    names = ("recompile_limit", "accumulated_recompile_limit", "fail_on_recompile_limit_hit", "suppress_errors",
             "automatic_dynamic_shapes", "assume_static_by_default",
             "capture_scalar_outputs")
    out = {}
    for name in names:
        value = getattr(config, name, None)
        out[name] = value if isinstance(value, (bool, int, float, str)) or value is None else str(value)
    return out


def compile_cache_settings() -> dict[str, Any]:
    """Whether inductor's on-disk caches are on and where they live (computed without creating the folder)."""
    out: dict[str, Any] = {}
    try:
        import torch._functorch.config as functorch_config
        import torch._inductor.config as inductor_config
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir

        forced_off = bool(getattr(inductor_config, "force_disable_caches", False))
        out["fx_graph_cache"] = bool(inductor_config.fx_graph_cache) and not forced_off
        out["autograd_cache"] = bool(getattr(functorch_config, "enable_autograd_cache", False)) and not forced_off
        out["dir"] = os.path.abspath(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or default_cache_dir())
    except Exception as exc:  # a torch that moved these: say so rather than fail the case
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def _delta(before: CompileSnapshot, after: CompileSnapshot, category: str) -> dict[str, int]:
    old, new = before.counters.get(category, {}), after.counters.get(category, {})
    out = {key: count - old.get(key, 0) for key, count in new.items()}
    return {key: n for key, n in out.items() if n > 0}


def short_reason(message: str, *, lines: int = 1) -> str:
    """Dynamo's multi-line graph-break message as one line: its title (its first ``lines`` lines) and
    explanation."""
    parts = [line.strip() for line in str(message).splitlines() if line.strip()]
    if not parts:
        return ""
    text = " ".join(parts[:lines])
    explanation = next((line[len("Explanation:"):].strip() for line in parts[1:]
                        if line.startswith("Explanation:")), None)
    if explanation and explanation not in text:
        text = f"{text}: {explanation}"
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS - 3] + "..."


def _top(counts: dict[str, int]) -> list[str]:
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    return [short_reason(key) + (f" (x{n})" if n > 1 else "") for key, n in ranked[:MAX_REASONS]]


def _limit_type(message: str) -> str:
    marker = "Limit type:"
    for line in message.splitlines():
        if marker in line:
            return line.split(marker, 1)[1].strip() or "recompile_limit"
    return "recompile_limit"


def compile_report(before: CompileSnapshot, after: CompileSnapshot, compile_time_s: float, *,
                   mode: str = "default", settings: dict | None = None, expect_compile: bool = True) -> dict:
    """The result keys of one compiled case, from snapshots taken around its compiling calls.

    ``expect_compile``: the window held the calls that compile (zero graphs compiled then means the model ran
    eager); False for a window over calls that should compile nothing (the timed rounds).

    Keys: ``compile_mode``, ``compile_time_s``, ``compile_graphs``, ``compile_graph_breaks``,
    ``compile_break_reasons`` (at most 5), ``compile_recompiles``, ``compile_recompile_reasons``,
    ``compile_frames`` / ``compile_frames_failed``, ``compile_fell_back``, ``compile_fallback_reason``,
    ``compile_dynamo_config`` (the knobs, the backend and ``dynamic``) and ``compile_cache`` (inductor's on-disk
    caches: on/off, dir, hits and misses in this window, ``state`` cold/warm/unused).
    """
    frames = _delta(before, after, "frames")
    stats = _delta(before, after, "stats")
    breaks = _delta(before, after, "graph_break")
    unimplemented = _delta(before, after, "unimplemented")
    seen = {id(m) for m in before.metrics}
    new_metrics = [m for m in after.metrics if id(m) not in seen]
    recompiled = [m for m in new_metrics if getattr(m, "recompile_reason", None)]
    failed_metrics = [m for m in new_metrics if getattr(m, "fail_type", None)]

    graphs = stats.get("unique_graphs", 0)
    total, ok = frames.get("total", 0), frames.get("ok", 0)
    failed = max(0, total - ok)
    limit_msgs = [key for key in unimplemented if key.startswith(RECOMPILE_LIMIT_GB)]
    limit_msgs += [m.fail_reason for m in failed_metrics
                   if str(getattr(m, "fail_reason", "") or "").startswith(RECOMPILE_LIMIT_GB)]

    reason = None
    if limit_msgs:
        limit = _limit_type(limit_msgs[0])
        reason = (f"hit torch._dynamo.config.{limit} ({after.knobs.get(limit)}) after {len(recompiled)} "
                  f"recompile(s): the frame runs eager from then on")
    elif failed:
        cause = _top(unimplemented)[:1] or [f"{m.fail_type}: {short_reason(m.fail_reason or '', lines=2)}"
                                           for m in failed_metrics[:1]]
        suppressed = " (error suppressed by torch._dynamo.config.suppress_errors)" \
            if after.knobs.get("suppress_errors") and not unimplemented else ""
        reason = (f"{failed} of {total} frame(s) failed to compile and ran eager{suppressed}"
                  + (f": {cause[0]}" if cause else ""))
    elif expect_compile and mode != "eager" and graphs == 0:
        reason = "no graph was compiled: the model ran eager (nothing to trace, or the compiling calls did not run)"

    cache = dict(after.cache)
    fx, aot = _delta(before, after, "inductor"), _delta(before, after, "aot_autograd")
    cache.update(fx_graph_cache_hits=fx.get("fxgraph_cache_hit", 0),
                 fx_graph_cache_misses=fx.get("fxgraph_cache_miss", 0),
                 autograd_cache_hits=aot.get("autograd_cache_hit", 0),
                 autograd_cache_misses=aot.get("autograd_cache_miss", 0))
    hits = cache["fx_graph_cache_hits"] + cache["autograd_cache_hits"]
    misses = cache["fx_graph_cache_misses"] + cache["autograd_cache_misses"]
    cache["state"] = "cold" if misses else ("warm" if hits else "unused")

    return {
        "compile_mode": mode,
        "compile_time_s": compile_time_s,
        "compile_graphs": graphs,
        "compile_graph_breaks": sum(breaks.values()),
        "compile_break_reasons": _top(breaks),
        "compile_recompiles": len(recompiled),
        "compile_recompile_reasons": [short_reason(m.recompile_reason) for m in recompiled[:MAX_REASONS]],
        "compile_frames": total,
        "compile_frames_failed": failed,
        "compile_fell_back": reason is not None,
        "compile_fallback_reason": reason,
        "compile_dynamo_config": {**(settings or {}), **after.knobs},
        "compile_cache": cache,
    }


class CompileWatch:
    """Snapshots around the calls that compile a step::

        with CompileWatch(step) as watch:
            compile_time_s = warm_compile(fn, step.device, calls=compile_warm_calls(step.compile_mode))
        report = watch.report(compile_time_s)
        check_compiled(report)

    A watch can also span the timed rounds, to show that they compiled nothing more
    (``watch.report(0.0, expect_compile=False)``: ``compile_graphs`` and ``compile_recompiles`` 0, nothing fell
    back).
    """

    def __init__(self, step: "TrainStep | None" = None, *, mode: str | None = None, settings: dict | None = None):
        self.mode = mode or getattr(step, "compile_mode", None) or "default"
        self.settings = settings if settings is not None else dict(getattr(step, "compile_settings", None) or {})
        self.before: CompileSnapshot | None = None
        self.after: CompileSnapshot | None = None

    def __enter__(self) -> "CompileWatch":
        self.before = compile_snapshot()
        self.after = None
        return self

    def __exit__(self, *exc) -> None:
        self.after = compile_snapshot()

    def report(self, compile_time_s: float, *, expect_compile: bool = True) -> dict:
        if self.before is None:
            raise RuntimeError("CompileWatch.report() before the watch ran")
        return compile_report(self.before, self.after or compile_snapshot(), compile_time_s, mode=self.mode,
                              settings=self.settings, expect_compile=expect_compile)


def check_compiled(report: dict) -> None:
    """Raise CompiledFellBack when ``report`` (compile_report's) shows the step did not stay compiled."""
    if report.get("compile_fell_back"):
        raise CompiledFellBack(f"torch.compile mode {report.get('compile_mode')} fell back to eager: "
                               f"{report.get('compile_fallback_reason')}; the case is not timed as compiled")


def warm_compiled_step(step: "TrainStep", call: Callable[[], Any]) -> dict:
    """For a benchmark body: compile ``step`` by running ``call`` (its timed callable) under a CompileWatch, check
    it stayed compiled (CompiledFellBack otherwise) and return the report for extra_info; ``{}`` for an eager
    step."""
    mode = getattr(step, "compile_mode", "eager")
    if mode == "eager":
        return {}
    with CompileWatch(step) as watch:
        compile_time_s = warm_compile(call, step.device, calls=compile_warm_calls(mode))
    report = watch.report(compile_time_s)
    check_compiled(report)
    return report


__all__ = ["COMPILE_MODES", "CompileSnapshot", "CompileWatch", "CompiledFellBack", "check_compiled",
           "compile_cache_settings", "compile_report", "compile_snapshot", "compile_train_step",
           "compile_unavailable_reason", "compile_warm_calls", "dynamo_knobs", "torch_warnings_not_errors",
           "warm_compile", "warm_compiled_step"]
