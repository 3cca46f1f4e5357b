"""Where the time of a training step goes: a few steps under torch.profiler, self time broken down by operator
category, plus the peak memory of each phase.

Why the profiled steps are not the timed ones: the profiler records every operator call (and, with
``profile_memory``, every allocation), which costs microseconds per call and slows a small model's step by a
large, op-count-dependent fraction. A profiled step therefore says how a step's time *divides* between kinds of
work, not how long a step takes; the timed rounds stay profiler-free and these steps run apart from them (after
them, or in a case of their own).

What the figures are:

* Every operator event that runs inside a profiled step's phases (zero_grad, forward with the loss, backward,
  optimizer update) contributes its *self* time: its own time minus that of the operators it called, so nothing is
  counted twice. On CUDA that is device (kernel) self time, the GPU's work attributed to the operator that launched
  it; on the CPU it is CPU self time. The profiler's own ranges around the phases (``fer_bench::*``) are not
  operators: their self time (Python and module-call overhead between operators) is reported apart, as
  ``unattributed_self_time_ms_per_step``, and is not in the shares.
* ``op_category_shares`` are shares of the sum of those self times over all operators of the profiled steps; they
  add up to 1. ``op_self_time_ms_per_step`` is the same sum per category divided by the number of profiled steps.
* Categories (OP_CATEGORIES): *convolution* (forward and backward convolutions, whichever backend), *matmul*
  (linear layers, mm/addmm/bmm), *normalisation* (batch/layer/group norm, forward and backward), *elementwise and
  activation* (ReLU and friends, arithmetic, clamp, dropout), *pooling* (max/avg/adaptive pools and the spatial
  ``mean`` of global-pool heads), *data movement and copies* (copies, casts, allocations, fills, views, cat/stack,
  the gradient's AccumulateGrad), *optimizer* (everything inside torch's ``Optimizer.step#...`` and
  ``Optimizer.zero_grad#...`` ranges, and the foreach/fused optimizer kernels wherever they run), *loss*
  (everything inside the ``fer_bench::loss`` range, and the loss ops' backward) and *other* (the rest, e.g. the
  autograd engine's bookkeeping that no rule names). An operator takes the category of the innermost rule that
  names it or one of the operators around it (``aten::empty`` inside a convolution is a copy/allocation, an
  unnamed helper inside a convolution is convolution), except that the optimizer and loss ranges win over names.
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import io
import math
import os
import re
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Iterator, Mapping

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from fer_bench._atomic import apply_default_mode, write_text_atomic
from fer_bench.engine.step import TrainStep
from fer_bench._atomic import safe_file_stem
from fer_bench.op_categories import OP_CATEGORIES
from fer_bench.errors import FerBenchError

__all__ = [
    "OP_CATEGORIES",
    "PHASES",
    "breakdown",
    "categorize",
    "category_shares",
    "cpu_phase_peaks",
    "event_self_time_us",
    "format_category_line",
    "profile_train_step",
    "run_phased_step",
    "safe_file_stem",
]

#: The phases whose peak memory is reported, in step order.
PHASES: tuple[str, ...] = ("forward", "backward", "optimizer")

#: Our profiler ranges: ``fer_bench::<phase>`` around each phase, ``fer_bench::loss`` inside forward.
RANGE_PREFIX = "fer_bench::"
LOSS_RANGE = "fer_bench::loss"
#: torch.optim's own ranges (``Optimizer.step#Adam.step``, ``Optimizer.zero_grad#Adam.zero_grad``).
OPTIMIZER_RANGE_PREFIXES = ("Optimizer.step#", "Optimizer.zero_grad#")

# The rule table, checked in order on a squashed name (see _squash): loss and optimizer come first because their
# names overlap the generic ones (log_softmax is not an elementwise log, addcdiv_ is an Adam update).
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple((category, re.compile(pattern)) for category, pattern in (
    ("optimizer", r"^(optimizer\.|foreach|fused(adam|adamw|sgd|adagrad|rmsprop|lamb)|(adam|adamw|sgd|rmsprop|adagrad)"
                  r"(step|update)?$|addcdiv|addcmul|lerp|amp(foreach|updatescale))"),
    ("loss", r"(loss|crossentropy|logsoftmax|nllloss|binarycrossentropy|kldiv|ctc)"),
    ("convolution", r"(conv(olution|\dd|depthwise|transpose|tbc|dilated)|^(slow|thnn)conv|^convbackward)"),
    ("matmul", r"^(addmm|mm|bmm|baddbmm|addbmm|addmv|mv|linear|mkldnnlinear|matmul|dot|vdot|einsum|tensordot|"
               r"outer|ger|addmmactivation|scaledmm|fusedaddmm|int\dmm|cublas.*|gemm.*)$"),
    ("normalisation", r"(batchnorm|layernorm|groupnorm|instancenorm|rmsnorm|localresponsenorm)"),
    ("pooling", r"(maxpool|avgpool|adaptiveavgpool|adaptivemaxpool|maxunpool|lppool|^mean$)"),
    ("data movement and copies",
     r"^(copy|copyfrom|copyfromandresize|to|tocopy|todense|contiguous|cat|concat|concatenate|clone|empty|emptylike|"
     r"emptystrided|newempty|newemptystrided|zero|zeros|zeroslike|newzeros|ones|oneslike|newones|fill|full|fulllike|"
     r"view|unsafeview|reshape|reshapealias|permute|transpose|t|numpyt|expand|expandas|squeeze|unsqueeze|flatten|"
     r"unflatten|slice|select|narrow|split|splitwithsizes|chunk|unbind|asstrided|indexselect|index|indexput|gather|"
     r"scatter|stack|pad|constantpadnd|reflectionpad\dd|replicationpad\dd|repeat|detach|alias|lift|liftfresh|"
     r"resize|item|localscalardense|accumulategrad|mkldnnreorder|memcpy.*|memset.*|pinmemory|set)$"),
    ("elementwise and activation",
     r"^(relu|relu6|leakyrelu|prelu|rrelu|threshold|silu|sigmoid|logsigmoid|gelu|hardswish|hardsigmoid|hardtanh|"
     r"elu|selu|celu|mish|softplus|softsign|tanh|glu|softmax|add|mul|div|sub|rsub|neg|clamp|clampmin|clampmax|clip|"
     r"where|maskedfill|dropout|nativedropout|fuseddropout|featuredropout|alphadropout|bernoulli|exp|exp2|expm1|log|"
     r"log2|log10|log1p|pow|sqrt|rsqrt|square|abs|sign|sgn|reciprocal|maximum|minimum|max|min|eq|ne|lt|gt|le|ge|"
     r"logicaland|logicalor|logicalnot|bitwiseand|bitwiseor|bitwisenot|sin|cos|erf|erfinv|floor|ceil|round|trunc|"
     r"frac|fmod|remainder|nantonum|isnan|isinf|isfinite)$"),
))

_CATEGORY_SET = frozenset(OP_CATEGORIES)


def _squash(op_name: str) -> str:
    """``aten::max_pool2d_with_indices_backward`` and the autograd node ``MaxPool2DWithIndicesBackward0`` both
    become ``maxpool2dwithindices``: one rule then names an op, its in-place and its backward variants."""
    name = op_name.strip()
    if ": " in name:  # "autograd::engine::evaluate_function: ConvolutionBackward0"
        name = name.rsplit(": ", 1)[1]
    if name.startswith(OPTIMIZER_RANGE_PREFIXES):
        return "optimizer." + name.lower()
    name = name.rsplit("::", 1)[-1].lower().replace("_", "")
    name = re.sub(r"backward(data|input|weight|elemt|reduce)?\d*$", "", name) or name
    return name


def categorize(op_name: str) -> str:
    """The category (one of OP_CATEGORIES) that the rule table gives an operator by its name alone; "other" when no
    rule names it. Range-based attribution (optimizer and loss ranges, the innermost named operator around an
    unnamed one) is profile_train_step's, on top of this."""
    squashed = _squash(op_name)
    for category, pattern in _RULES:
        if pattern.search(squashed):
            return category
    return "other"


def event_self_time_us(event: Any, use_device: bool) -> float:
    """One profiler event's self time in microseconds, the figure the shares add up.

    On CUDA (``use_device``) the device self time of host-side operator events: their kernels' time, already net of
    the kernels of the operators they called. The kernels themselves also appear as events of device type CUDA;
    counting those too would count every kernel twice, so device-type events (kernels, memcpys, GPU-side user
    annotations) give 0 here, as do async events. On the CPU, CPU self time.
    """
    if getattr(event, "is_async", False):
        return 0.0
    device_type = getattr(event, "device_type", None)
    on_host = device_type is None or getattr(device_type, "name", str(device_type)).upper().endswith("CPU")
    if not on_host:
        return 0.0
    value = event.self_device_time_total if use_device else event.self_cpu_time_total
    return max(0.0, float(value or 0.0))


def category_shares(times: Mapping[str, float]) -> dict[str, float]:
    """Every category's share of the total of ``times`` (categories missing from ``times`` get 0.0); they add up to
    1. FerBenchError when the total is not positive: shares of nothing are not a breakdown."""
    unknown = set(times) - _CATEGORY_SET
    if unknown:
        raise FerBenchError(f"unknown op categories: {', '.join(sorted(unknown))}")
    total = math.fsum(max(0.0, float(times.get(c, 0.0))) for c in OP_CATEGORIES)
    if not total > 0:
        raise FerBenchError("the profiler recorded no operator self time inside the profiled steps")
    return {c: max(0.0, float(times.get(c, 0.0))) / total for c in OP_CATEGORIES}


def format_category_line(shares: Mapping[str, float]) -> str:
    """"62% convolution, 14% elementwise and activation, ..." in descending order, zero shares left out; a non-zero
    share that rounds to 0% shows as "<1%" so the line does not claim an op category took nothing."""
    ranked = sorted((kv for kv in shares.items() if kv[1] > 0), key=lambda kv: -kv[1])  # stable: ties keep order
    return ", ".join(f"{'<1%' if share < 0.005 else f'{share:.0%}'} {category}" for category, share in ranked)


PhaseHook = Callable[[str], ContextManager]


def _annotate(phase: str) -> ContextManager:
    return record_function(RANGE_PREFIX + phase)


def run_phased_step(step: TrainStep, x: torch.Tensor, y: torch.Tensor, *,
                    phase: PhaseHook = _annotate) -> torch.Tensor:
    """TrainStep.step's arithmetic, split into phases the profiler (or a memory probe) can see.

    TrainStep computes the loss inside its forward call; here the loss runs inside ``fer_bench::loss``, nested in
    the forward phase, so its ops can be attributed to the loss. ``phase(name)`` wraps each of zero_grad, forward,
    backward and optimizer (default: a ``fer_bench::<name>`` profiler range). Returns the detached loss, the value
    TrainStep.step returns for the same state and batch.
    """
    if not step.model.training:
        step.model.train(True)
    with phase("zero_grad"):
        step.optimizer.zero_grad(set_to_none=True)
    with phase("forward"):
        with step.policy.autocast():
            logits = step.model(x)
            with record_function(LOSS_RANGE):
                loss = step.loss_fn(logits, y)
        del logits
    with phase("backward"):
        (step.scaler.scale(loss) if step.scaler is not None else loss).backward()
    with phase("optimizer"):
        if step.scaler is not None:
            step.scaler.step(step.optimizer)
            step.scaler.update()
        else:
            step.optimizer.step()
    return loss.detach()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- attribution over the event tree ----------------------------------------------------------------------------

def _interval_us(event: Any) -> tuple[float, float]:
    return float(event.time_range.start), float(event.time_range.end)


def _is_memory_event(event: Any) -> bool:
    return event.name == "[memory]"


def _attribute(event: Any) -> str:
    """The event's category: optimizer or loss when a torch.optim range or our loss range encloses it (on the
    host thread that launched it), else the innermost rule that names it or an operator around it."""
    chain = []
    node = event
    while node is not None:
        chain.append(node.name)
        node = node.cpu_parent
    if any(name.startswith(OPTIMIZER_RANGE_PREFIXES) for name in chain):
        return "optimizer"
    if LOSS_RANGE in chain:
        return "loss"
    for name in chain:
        if name.startswith(RANGE_PREFIX):
            break
        category = categorize(name)
        if category != "other":
            return category
    return "other"


def _phase_windows(events: Iterable[Any]) -> list[tuple[str, float, float]]:
    """The intervals (us) of our top-level phase ranges, in time order."""
    windows = []
    for event in events:
        if event.name.startswith(RANGE_PREFIX) and event.cpu_parent is None and _on_host(event):
            start, end = _interval_us(event)
            windows.append((event.name[len(RANGE_PREFIX):], start, end))
    windows.sort(key=lambda w: w[1])
    return windows


def _on_host(event: Any) -> bool:
    device_type = getattr(event, "device_type", None)
    return device_type is None or getattr(device_type, "name", str(device_type)).upper().endswith("CPU")


def _inside(start: float, end: float, windows: list[tuple[str, float, float]]) -> bool:
    return any(ws <= start and end <= we for _, ws, we in windows)


def breakdown(events: Iterable[Any], use_device: bool) -> tuple[dict[tuple[str, str], list[float]], float]:
    """Self time (us) and calls per (operator, category) over the host-side events inside our phase ranges, and
    the self time of our own ranges (not operators). Events on other threads (CUDA's autograd thread) count by
    time: they lie inside the backward range's interval."""
    events = list(events)
    windows = _phase_windows(events)
    per_op: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    unattributed = 0.0
    for event in events:
        if _is_memory_event(event) or not _on_host(event):
            continue
        start, end = _interval_us(event)
        if not _inside(start, end, windows):
            continue
        self_us = event_self_time_us(event, use_device)
        if event.name.startswith(RANGE_PREFIX):
            unattributed += self_us
            continue
        row = per_op[(event.name, _attribute(event))]
        row[0] += 1
        row[1] += self_us
    return dict(per_op), unattributed


# --- memory ------------------------------------------------------------------------------------------------------

_CPU_MEMORY_BASIS = ("peak bytes allocated through torch's CPU allocator during the phase above what was allocated "
                     "at its start (running sum of the profiler's allocation and free records inside the phase's "
                     "range), the largest over the profiled steps after the first")
_CUDA_MEMORY_BASIS = ("peak bytes allocated on the device during the phase above what was allocated at its start "
                      "(torch.cuda.max_memory_allocated after reset_peak_memory_stats, minus memory_allocated at the "
                      "phase start), from one extra unprofiled step")


def _running_peak(deltas: Iterable[int]) -> int:
    level = peak = 0
    for delta in deltas:
        level += delta
        peak = max(peak, level)
    return peak


def cpu_phase_peaks(ranges: Iterable[tuple[str, int, int]], allocations: Iterable[tuple[int, int]]
                    ) -> dict[str, int | None]:
    """Per phase, the peak of the running sum of allocation records (ns timestamp, signed bytes) inside each of the
    phase's ranges (name, start ns, end ns), relative to the phase start; the largest over the phase's occurrences
    after the first when there are several. The first occurrence is left out because the profiler drops the frees
    of blocks allocated before it started (it does not know their size), which can only inflate that step's
    figure. None for a phase with no range."""
    allocations = sorted(allocations)
    times = [t for t, _ in allocations]
    by_phase: dict[str, list[int]] = defaultdict(list)
    for name, start, end in sorted(ranges, key=lambda r: r[1]):
        lo, hi = bisect.bisect_left(times, start), bisect.bisect_right(times, end)
        by_phase[name].append(_running_peak(b for _, b in allocations[lo:hi]))
    peaks: dict[str, int | None] = {}
    for phase in PHASES:
        values = by_phase.get(phase, [])
        usable = values[1:] if len(values) > 1 else values
        peaks[phase] = max(usable) if usable else None
    return peaks


def _kineto_cpu_memory(prof: profile) -> tuple[dict[str, int | None], str | None]:
    """Per-phase CPU peaks from the profiler's raw (kineto) records, or Nones and why not."""
    try:
        raw = prof.profiler.kineto_results.events()
    except Exception as exc:  # noqa: BLE001 - a private API: any failure means "no figure", said in the note
        return dict.fromkeys(PHASES), f"no CPU memory records from the profiler ({type(exc).__name__}: {exc})"
    ranges, allocations = [], []
    for ev in raw:
        name = ev.name()
        if name == "[memory]":
            if ev.device_type().name == "CPU":
                allocations.append((int(ev.start_ns()), int(ev.nbytes())))
        elif name.startswith(RANGE_PREFIX) and name[len(RANGE_PREFIX):] in PHASES:
            ranges.append((name[len(RANGE_PREFIX):], int(ev.start_ns()), int(ev.end_ns())))
    if not allocations:
        return dict.fromkeys(PHASES), "the profiler recorded no CPU allocations (profile_memory had no effect)"
    peaks = cpu_phase_peaks(ranges, allocations)
    missing = [p for p, v in peaks.items() if v is None]
    return peaks, (f"no profiler range for phase(s) {', '.join(missing)}" if missing else None)


def _cuda_phase_peaks(step: TrainStep, x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, int], dict[str, int]]:
    """One unprofiled phased step with the device's peak reset at each phase: (peak above the phase start, absolute
    peak during the phase) per phase."""
    device = step.device
    above: dict[str, int] = {}
    absolute: dict[str, int] = {}

    @contextlib.contextmanager
    def probe(name: str) -> Iterator[None]:
        _synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield
        _synchronize(device)
        if name in PHASES:
            peak = int(torch.cuda.max_memory_allocated(device))
            absolute[name] = peak
            above[name] = max(0, peak - int(base))

    run_phased_step(step, x, y, phase=probe)
    return above, absolute


# --- files -------------------------------------------------------------------------------------------------------

def _export_trace_atomic(prof: profile, path: Path) -> Path:
    """prof.export_chrome_trace into a temporary file beside ``path``, then an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        prof.export_chrome_trace(tmp)
        apply_default_mode(tmp, 0o666)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _per_step(calls: int, steps: int) -> int | float:
    """Calls per step: whole when every step made the same calls (the usual case), else their mean."""
    return calls // steps if calls % steps == 0 else calls / steps


def _csv_text(header: list[str], rows: Iterable[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


# --- the entry point ---------------------------------------------------------------------------------------------

def profile_train_step(step: TrainStep, x: torch.Tensor, y: torch.Tensor, *, steps: int = 3, warmup: int = 2,
                       out_dir: Path, name: str) -> dict:
    """Profile ``steps`` phased training steps (after ``warmup`` unprofiled ones) and break their operators' self
    time down by category; write ``<stem>.trace.json`` (Chrome trace), ``<stem>.ops.csv`` and
    ``<stem>.categories.csv`` into ``out_dir`` (``stem`` = safe_file_stem(name)). The ops file has one row per
    (operator, category) with its calls and self time per profiled step and its share; the categories file one row
    per category with its self time per step and share.

    The step trains on: its weights and optimizer state advance by every step run here (warmup + steps, plus one
    for the memory probe on CUDA), so profile after the timed rounds or on a step of its own.

    Peak memory by phase (forward including the loss, backward, optimizer): see ``peak_memory_basis`` in the result.
    On the CPU it comes from the profiler's allocation records of the profiled steps; on CUDA from one extra,
    unprofiled step, since the profiler's own allocations would perturb the device peak. A figure the run cannot
    give is None, with ``peak_memory_note`` saying why.

    Returns a JSON-ready dict: op_category_shares, op_self_time_ms_per_step, top_ops, peak_memory_by_phase,
    peak_memory_basis (and peak_memory_note when a figure is None; on CUDA also peak_memory_allocated_by_phase, the
    absolute peak), unattributed_self_time_ms_per_step, profiled_steps, warmup_steps, profiler_device_time,
    device, wall_s (this call's wall time: warm-up, profiled steps, memory probe and files) and files (absolute
    paths of trace, ops, categories).
    """
    if steps < 1:
        raise FerBenchError(f"steps must be at least 1, got {steps}")
    if warmup < 0:
        raise FerBenchError(f"warmup must be 0 or more, got {warmup}")
    device = step.device
    use_device = device.type == "cuda"
    out_dir = Path(out_dir)
    stem = safe_file_stem(name)
    started = time.perf_counter()

    for _ in range(warmup):
        run_phased_step(step, x, y, phase=lambda _name: contextlib.nullcontext())
    _synchronize(device)

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if use_device else [])
    with profile(activities=activities, record_shapes=False, profile_memory=True, with_stack=False) as prof:
        for _ in range(steps):
            run_phased_step(step, x, y)
            _synchronize(device)
    events = prof.events()
    per_op, unattributed_us = breakdown(events, use_device)

    by_category: dict[str, float] = dict.fromkeys(OP_CATEGORIES, 0.0)
    for (_op, category), (_calls, self_us) in per_op.items():
        by_category[category] += self_us
    shares = category_shares(by_category)
    total_us = math.fsum(by_category.values())

    if use_device:
        peaks, absolute = _cuda_phase_peaks(step, x, y)
        memory: dict[str, Any] = {"peak_memory_by_phase": {p: peaks.get(p) for p in PHASES},
                                  "peak_memory_allocated_by_phase": {p: absolute.get(p) for p in PHASES},
                                  "peak_memory_basis": _CUDA_MEMORY_BASIS}
        note = None
    else:
        cpu_peaks, note = _kineto_cpu_memory(prof)
        memory = {"peak_memory_by_phase": cpu_peaks, "peak_memory_basis": _CPU_MEMORY_BASIS}
    if note or any(v is None for v in memory["peak_memory_by_phase"].values()):
        memory["peak_memory_note"] = note or "no figure for some phases"

    ops_sorted = sorted(per_op.items(), key=lambda kv: (-kv[1][1], kv[0]))
    trace_path = _export_trace_atomic(prof, out_dir / f"{stem}.trace.json")
    ops_path = write_text_atomic(out_dir / f"{stem}.ops.csv", _csv_text(
        ["op", "category", "calls", "self_time_ms", "share"],
        ([op, category, _per_step(calls, steps), self_us / 1000.0 / steps, self_us / total_us]
         for (op, category), (calls, self_us) in ops_sorted)))
    categories_path = write_text_atomic(out_dir / f"{stem}.categories.csv", _csv_text(
        ["category", "self_time_ms", "share"],
        ([c, by_category[c] / 1000.0 / steps, shares[c]] for c in OP_CATEGORIES)))
    wall = time.perf_counter() - started

    return {
        "op_category_shares": shares,
        "op_self_time_ms_per_step": {c: by_category[c] / 1000.0 / steps for c in OP_CATEGORIES},
        "top_ops": [{"op": op, "category": category, "share": self_us / total_us}
                    for (op, category), (_calls, self_us) in ops_sorted[:10]],
        **memory,
        "unattributed_self_time_ms_per_step": unattributed_us / 1000.0 / steps,
        "profiled_steps": steps,
        "warmup_steps": warmup,
        "profiler_device_time": use_device,
        "device": str(device),
        "wall_s": wall,
        "files": {"trace": str(trace_path.resolve()), "ops": str(ops_path.resolve()),
                  "categories": str(categories_path.resolve())},
    }
