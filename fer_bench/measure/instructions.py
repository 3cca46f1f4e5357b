"""Instruction counts of one call of a step case, through torch.utils.benchmark's Callgrind support.

Wall time on a shared 2-core runner moves by 10-20% from run to run; the instructions a training step executes
move by a fraction of a percent, so they tell a 2% change in the code's own work from the weather. What they do
not see is in docs/gate.md ("What instructions cannot see"): memory bandwidth, cache misses and threading are not
instructions, GPU kernels run outside the CPU, and Valgrind emulates a CPU without AVX-512, so torch dispatches its
AVX2 kernels under it even on an AVX-512 machine (``instructions_cpu_capability`` records what it chose).

``collect_instructions(config, phase)`` builds the case again inside one Valgrind process
(``Timer.collect_callgrind``: torch is imported once, then ``repeats`` collections of ``number`` calls each, after
warm-up calls), single-threaded, with the deterministic synthetic batch of the case's input shape
(``Training.example_batch``, seeded by the config), and returns an InstructionCount: per repeat the denoised
instructions of one call (``CallgrindStats.counts(denoise=True) / number``: the statement's exclusive counts
summed, CPython's noisy dict lookups removed; the same sum as ``as_standardized().stats(inclusive=False)
.denoise()``), the Valgrind version, the thread count and torch's CPU capability inside Valgrind.

No pytest here: the plugin turns ``instructions_unavailable()`` into a skip and the bodies call
``count_step_instructions`` after their timed rounds.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from typing import Any, Callable

from fer_bench.errors import FerBenchError

#: Collections per case (one Valgrind process: torch imported once) and calls per collection.
DEFAULT_REPEATS = 5
DEFAULT_NUMBER = 1
#: Calls made in the Valgrind process before the first collection (besides the Timer's own warm-up call): the
#: optimizer's state and the allocator's pools exist by then, as in a timed round.
WARMUP_CALLS = 2
#: The phases counted: what bench_step times.
PHASES = ("forward", "forward_backward", "train_step")
#: The programs torch's Callgrind support runs.
VALGRIND_TOOLS = ("valgrind", "callgrind_control", "callgrind_annotate")
VALGRIND_MISSING = "valgrind not found: install valgrind (apt install valgrind) to count instructions"

_STMTS = {"forward": "step.forward(x)", "forward_backward": "step.forward_backward(x, y)",
          "train_step": "step.step(x, y)"}


@dataclass(frozen=True)
class InstructionCount:
    """The instructions of one call, per repeat, and how they were counted."""

    per_call: tuple[float, ...]
    number: int
    threads: int
    valgrind_version: str
    cpu_capability: str | None = None
    cpu_capability_native: str | None = None

    @property
    def median(self) -> float:
        return float(statistics.median(self.per_call))

    @property
    def spread(self) -> float:
        """(max - min) / median over the repeats."""
        return (max(self.per_call) - min(self.per_call)) / self.median if self.median else 0.0

    def extra_info(self) -> dict[str, Any]:
        """The keys a result records (docs/results-schema.md)."""
        return {
            "instructions_per_call": self.median,
            "instructions_min": float(min(self.per_call)),
            "instructions_max": float(max(self.per_call)),
            "instructions_spread": self.spread,
            "instructions_repeats": [float(v) for v in self.per_call],
            "instructions_number": self.number,
            "instructions_threads": self.threads,
            "instructions_denoised": True,
            "valgrind_version": self.valgrind_version,
            "instructions_cpu_capability": self.cpu_capability,
            "cpu_capability_native": self.cpu_capability_native,
        }


def instructions_unavailable(which: Callable[[str], str | None] = shutil.which) -> str | None:
    """Why instructions cannot be counted here (one line naming what to install), or None."""
    missing = [tool for tool in VALGRIND_TOOLS if which(tool) is None]
    if "valgrind" in missing:
        return VALGRIND_MISSING
    if missing:
        return (f"{', '.join(missing)} not found: install valgrind's callgrind tools (apt install valgrind) to "
                f"count instructions")
    try:
        from torch.utils.benchmark import Timer  # noqa: F401
        import torch._C as bindings
    except ImportError as exc:
        return f"torch.utils.benchmark is not importable ({exc}): instructions are not counted"
    if not getattr(bindings, "_valgrind_supported_platform", lambda: False)():
        return "this torch build has no Callgrind support (torch._C._valgrind_supported_platform() is False)"
    return None


def case_unsupported(device: str, compile_mode: str, parallel_mode: str) -> str | None:
    """Why a step case's instructions are not counted (they count eager work on one CPU), or None."""
    if not str(device).startswith("cpu"):
        return f"instructions are counted for CPU cases only (this case runs on {device}: GPU work is not counted)"
    if compile_mode != "eager":
        return f"instructions are counted for eager steps only (compile {compile_mode} would compile under Valgrind)"
    if parallel_mode != "none":
        return f"instructions are counted for one-process steps only (parallel {parallel_mode})"
    return None


def valgrind_version(run: Callable[..., Any] = subprocess.run) -> str:
    """``valgrind --version`` (valgrind-3.19.0), or ``unknown``."""
    try:
        done = run(["valgrind", "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def model_modules(model: str) -> list[str]:
    """The module that registered ``model`` (a user's or a calibration variant): the Valgrind process imports it,
    so the registry knows the name there too. Empty for the built-in models."""
    from fer_bench.models import _registry

    entry = _registry._entrypoints.get(model)
    module = getattr(entry, "__module__", None)
    if not module or module.startswith("fer_bench.models"):
        return []
    return [module]


def create_setup(config_fields: dict, phase: str, *, side_file: str, modules: list[str] | None = None,
                 path: list[str] | None = None, warmup_calls: int = WARMUP_CALLS) -> str:
    """The Timer's setup: the case built again from its RunConfig fields with its synthetic batch, a few warm-up
    calls, and a line in ``side_file`` saying what torch chose there (threads, CPU capability, under Valgrind)."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}")
    return "\n".join([
        "import json, os, sys",
        f"sys.path[:0] = [p for p in {path or []!r} if p not in sys.path]",
        "import importlib",
        "import torch",
        f"for _name in {modules or []!r}:",
        "    importlib.import_module(_name)",
        "from fer_bench.engine import RunConfig, create_train_step",
        f"_training = create_train_step(RunConfig(**{config_fields!r}))",
        "step = _training.step",
        "x, y = _training.example_batch()",
        f"for _ in range({warmup_calls}):",
        f"    {_STMTS[phase]}",
        f"with open({side_file!r}, 'a') as _f:",
        "    _f.write(json.dumps({'valgrind': 'vgpreload' in os.environ.get('LD_PRELOAD', ''),",
        "                         'threads': torch.get_num_threads(),",
        "                         'capability': torch.backends.cpu.get_cpu_capability()}) + '\\n')",
    ])


def read_side_file(path: str) -> tuple[dict | None, dict | None]:
    """(the Valgrind process's line, this process's line) of a setup's side file."""
    under, native = None, None
    try:
        with open(path) as f:
            for line in f:
                if line.strip():
                    entry = json.loads(line)
                    if entry.get("valgrind"):
                        under = entry
                    else:
                        native = entry
    except (OSError, ValueError):
        pass
    return under, native


def _python_on_path() -> dict[str, str]:
    """PATH with this interpreter's folder first: torch's Callgrind support runs ``python`` from PATH and fails
    unless it is this very interpreter (a virtual environment's, unactivated, is not on PATH)."""
    env = dict(os.environ)
    folder = os.path.dirname(sys.executable)
    env["PATH"] = folder + os.pathsep + env.get("PATH", "")
    return env


def count_instructions(stmt: str, setup: str, *, repeats: int = DEFAULT_REPEATS, number: int = DEFAULT_NUMBER,
                       timer_factory: Callable[..., Any] | None = None) -> list[float]:
    """Denoised instructions of one call of ``stmt`` per repeat, all repeats in one Valgrind process,
    single-threaded.

    Raises:
        FerBenchError: Valgrind failed (its error, first lines).
    """
    if timer_factory is None:
        from torch.utils.benchmark import Timer as timer_factory
    timer = timer_factory(stmt=stmt, setup=setup, num_threads=1)
    saved = os.environ.get("PATH")
    os.environ["PATH"] = _python_on_path()["PATH"]
    try:
        stats = timer.collect_callgrind(number=number, repeats=repeats, collect_baseline=False)
    except OSError as exc:
        lines = str(exc).strip().splitlines()
        raise FerBenchError("counting instructions under Valgrind failed: " + " | ".join(lines[:6])) from None
    finally:
        if saved is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = saved
    if not isinstance(stats, (tuple, list)):
        stats = (stats,)
    return [s.counts(denoise=True) / number for s in stats]


def collect_instructions(config, phase: str, *, repeats: int = DEFAULT_REPEATS, number: int = DEFAULT_NUMBER,
                         timer_factory: Callable[..., Any] | None = None,
                         version: Callable[[], str] = valgrind_version) -> InstructionCount:
    """Count one call of ``phase`` of the case ``config`` (a RunConfig) in one Valgrind process.

    Raises:
        FerBenchError: the case is not countable (GPU, compiled, several processes) or Valgrind failed.
    """
    why = case_unsupported(config.device, config.compile, config.parallel_mode)
    if why:
        raise FerBenchError(why)
    fields = {k: v for k, v in asdict(config).items()}
    fd, side_file = tempfile.mkstemp(prefix="fer-bench-instructions-", suffix=".jsonl")
    os.close(fd)
    try:
        setup = create_setup(fields, phase, side_file=side_file, modules=model_modules(config.model),
                             path=[p for p in sys.path if p and os.path.isdir(p)])
        per_call = count_instructions(_STMTS[phase], setup, repeats=repeats, number=number,
                                      timer_factory=timer_factory)
        under, native = read_side_file(side_file)
    finally:
        os.unlink(side_file)
    return InstructionCount(per_call=tuple(per_call), number=number,
                            threads=int(under["threads"]) if under else 1, valgrind_version=version(),
                            cpu_capability=under.get("capability") if under else None,
                            cpu_capability_native=native.get("capability") if native else None)


def record_instructions(config, phase: str, *, collect: Callable[..., InstructionCount] = collect_instructions,
                        clock: Callable[[], float] | None = None) -> dict[str, Any]:
    """What a step body adds to extra_info under --fer-instructions: the counts and their spread, or
    ``instructions_reason`` where the case is not countable (a GPU, a compiled or a multi-process step); also the
    seconds the Valgrind process took (``instructions_wall_s``), which the time budget's stored times leave out.

    Raises:
        FerBenchError: Valgrind failed on a countable case.
    """
    import time

    why = case_unsupported(config.device, config.compile, config.parallel_mode)
    if why:
        return {"instructions_reason": why}
    clock = clock or time.monotonic
    start = clock()
    count = collect(config, phase)
    return {**count.extra_info(), "instructions_wall_s": round(clock() - start, 3)}
