"""The axis registry: every benchmark axis declared once, importable without torch.

An axis is one entry of ``AXES`` (the built-in ones below, others through ``register_axis``). Its name is the
fixture name a benchmark asks for, the key of the result's ``params``, the RunConfig field and
``--benchmark-group-by=param:<name>``; the entry also holds its id prefix, its ``--fer-*`` option and validator,
the values each preset runs, why a machine cannot run a value, and the engine setting it drives. What only the
hardware can tell (is there a CUDA device, can this torch compile) the engine registers here at start-up
(``register_check``), and the model registry its names (``register_known_values``): this module imports neither,
nor torch. The pytest plugin (options, parametrization, ids, ``run_config``), ``fer-bench compare`` and
``fer-bench gate`` (parameter order, matching old runs, ``implied_params``) and the tests all read it, so a new
axis is one entry here plus the engine code that applies it. ``split_case_name`` is the one place a case name
(``test_step[resnet18-cpu-bs64]``) is split.

A new axis touches, file by file: this module (its ``Axis`` entry: parser, option, help, the presets' values,
id format, ``since_default``, ``implied``, ``config_default``, the reason a value cannot run that needs no
hardware); fer_bench/engine/availability.py only when the hardware decides whether a value runs; the engine code
that applies ``config.<name>`` (RunConfig's field comes from the entry); and the signatures of the benchmarks under
benchmarks/ that vary over it (the fixture is the axis's name). Options, presets, parametrization, ids, skips,
``run_config``, the result's params and compare's implied values follow from the entry (tests/test_axes.py
registers a throw-away axis to show it).

Ids read ``efficientnet_b0-cpu-bs64-w2-fp32-g1`` and never change once published: stored baselines are matched by
them. An axis added later (``optimizer``, ``memory_format``) declares ``since_default``: at that value it adds
nothing to an id and nothing to a case's match key, so runs made before the axis existed still match new ones.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

PRECISIONS = ("fp32", "amp_fp16", "amp_bf16", "bf16")
OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "adamw", "rmsprop")
MEMORY_FORMATS = ("contiguous", "channels_last")
#: The learning-rate rule for a batch larger (or smaller) than the optimizer's base batch: lr x 1, lr x b/b0
#: (Goyal et al.), lr x sqrt(b/b0) (Krizhevsky; the usual rule for Adam). fer_bench.engine.convergence.
LR_SCALINGS = ("none", "linear", "sqrt")
#: How a step is spread over devices or processes: one device, nn.DataParallel, DistributedDataParallel.
PARALLEL_MODES = ("none", "dp", "ddp")
#: Batch semantics over N devices: weak keeps batch_size per device (global = batch_size x N), strong keeps the
#: global batch (batch_size, split N ways).
SCALING_MODES = ("weak", "strong")
#: How images reach a step: whole uint8 batches gathered from memory (batched), or the pipeline most users run,
#: a file per image decoded and transformed in the workers (per_image; fer_bench.data.per_image).
PIPELINES = ("batched", "per_image")
#: How the step runs: eager PyTorch, or torch.compile in one of its modes (reduce-overhead adds CUDA graphs).
COMPILE_MODES = ("eager", "default", "reduce-overhead", "max-autotune-no-cudagraphs")
PRESET_NAMES = ("quick", "default", "studies", "full", "ci")
_DEVICE_RE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
_UNSET = object()


def parse_device_name(text: str) -> str:
    """A device string (cpu, cuda, cuda:N, mps), lower-cased, validated without touching the hardware.

    Raises:
        ValueError: not a device.
    """
    name = str(text).strip().lower()
    if not _DEVICE_RE.match(name):
        raise ValueError(f"{text!r} is not a device; valid: cpu, cuda, cuda:N, mps")
    return name


def int_parser(minimum: int) -> Callable[[str], int]:
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text: Any) -> int:
        try:
            value = int(text)
        except (TypeError, ValueError):
            value = None
        if value is None or isinstance(text, bool) or value < minimum or (isinstance(text, float)
                                                                          and text != value):
            raise ValueError(f"{text!r} is not {what}")
        return value

    return parse


def choice_parser(choices: tuple[str, ...], what: str) -> Callable[[str], str]:
    def parse(text: Any) -> str:
        name = str(text).strip().lower()
        if name not in choices:
            raise ValueError(f"{text!r} is not {what}; valid: {', '.join(choices)}")
        return name

    return parse


def _parse_model(text: Any) -> str:
    known = list_known_values("model")
    if text not in known:
        raise ValueError(f"{text!r} is not a registered model; valid: {', '.join(known)}")
    return str(text)


# --------------------------------------------------------------------------------------------- skip reasons
# Each takes the axis value and the whole case. Only what the vocabulary alone decides is here; what needs the
# hardware or torch (is there a CUDA device, can this torch compile) the engine registers at start-up
# (register_check, from fer_bench.engine.availability), so this module never imports the engine.


def devices_needed(case: Mapping[str, Any]) -> int:
    """The devices a case occupies: num_gpus, except DistributedDataParallel on the CPU, whose num_gpus counts
    processes (gloo) sharing the one CPU device."""
    if case.get("parallel") == "ddp" and str(case.get("device", "cpu")) == "cpu":
        return 1
    return int(case.get("num_gpus", 1))


def _parallel_unavailable(value: str, case: Mapping[str, Any]) -> str | None:
    """The vocabulary's part; whether this machine can start a process group is the engine's check."""
    device = str(case.get("device", "cpu"))
    if value == "dp" and not device.startswith("cuda"):
        return f"nn.DataParallel replicates over CUDA devices, not {device} (parallel=ddp runs on the CPU over gloo)"
    if value == "ddp" and device == "mps":
        return "DistributedDataParallel runs on cuda (NCCL) or cpu (gloo), not mps"
    return None


def _scaling_unavailable(value: str, case: Mapping[str, Any]) -> str | None:
    n, batch = int(case.get("num_gpus", 1)), case.get("batch_size")
    if value == "strong" and isinstance(batch, int) and batch % n:
        return f"strong scaling splits the global batch {batch} over {n}: not a whole batch each"
    return None


def _compile_unavailable(value: str, case: Mapping[str, Any]) -> str | None:
    """The vocabulary's part; whether this torch and device can compile is the engine's check."""
    if value == "eager":
        return None
    if case.get("parallel") == "ddp":
        return "torch.compile of DistributedDataParallel ranks is not built yet: their steps would run eager"
    if case.get("parallel") == "dp" or int(case.get("num_gpus", 1)) > 1:
        return "torch.compile with nn.DataParallel is not supported (use one device, or parallel=ddp eager)"
    return None


def _pin_memory_unavailable(value: bool, case: Mapping[str, Any]) -> str | None:
    if value and not str(case.get("device", "cpu")).startswith("cuda"):
        return "pin_memory only matters for copies to a CUDA device"
    return None


def _pin_memory_values(case: Mapping[str, Any]) -> list[bool]:
    """Pinned host memory is a CUDA knob: both values on a CUDA device, unpinned elsewhere."""
    return [False, True] if str(case.get("device", "cpu")).startswith("cuda") else [False]


# --------------------------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Axis:
    """One benchmark axis. See the module docstring for where each field is read.

    Attributes:
        name: fixture name, ``params`` key, RunConfig field, ``param:<name>`` for grouping.
        parse: validates one value (text from the command line, or a Python value), returns it normalised;
            raises ValueError with a message that names the value and the valid ones.
        option: the ``--fer-*`` option (None: the axis has no option, its values follow from other axes).
        help: what the option's values are, for ``pytest --help``.
        presets: the values each preset runs (every benchmark with this axis, unless the preset narrows it).
        id_prefix: put before the value in a case id (``bs`` + 64 -> ``bs64``).
        format_id: renders a value for the id instead of the prefix (pin_memory: ``pin``/``nopin``).
        since_default: for an axis added after ids were published, the value that adds nothing to an id or to a
            case's match key (a run made before the axis existed ran at this value).
        unavailable: why this machine cannot run a value of a case (the case is still collected, and skipped).
        values_for: values that follow from the rest of a case, for an axis without an option.
        choices: the closed set of values, where there is one (compare's column order).
        engine: what the axis sets in the engine, for the docs.
        check_at_configure: option values are checked by ``parse`` when pytest configures, not while it parses
            the command line: a user's conftest registers its own models after pytest's first look at the
            options, and before configure.
        implied: runs made before the axis existed recorded no value for it, and ran at ``since_default``:
            compare fills that value in (implied_params).
        config_default: the axis is a RunConfig field with this default (fer_bench.engine.config builds RunConfig's
            axis fields from the registry); unset: not a field (``model`` is the one required field).
    """

    name: str
    parse: Callable[[Any], Any]
    option: str | None
    help: str
    presets: Mapping[str, tuple] = field(default_factory=dict)
    id_prefix: str = ""
    format_id: Callable[[Any], str] | None = None
    since_default: Any = _UNSET
    unavailable: Callable[[Any, Mapping[str, Any]], str | None] | None = None
    values_for: Callable[[Mapping[str, Any]], list] | None = None
    choices: tuple | None = None
    engine: str = ""
    check_at_configure: bool = False
    implied: bool = False
    config_default: Any = _UNSET

    @property
    def in_config(self) -> bool:
        """Whether the axis is a RunConfig field."""
        return self.name == "model" or self.config_default is not _UNSET

    @property
    def dest(self) -> str:
        """The argparse destination of the option (``fer_<name>``)."""
        return f"fer_{self.name}"

    @property
    def has_since_default(self) -> bool:
        return self.since_default is not _UNSET

    def id_part(self, value: Any) -> str | None:
        """This axis's part of a case id; None when it adds nothing (an added axis at its original value)."""
        if self.has_since_default and value == self.since_default:
            return None
        if self.format_id is not None:
            return self.format_id(value)
        return f"{self.id_prefix}{value}"

    def unavailable_reason(self, value: Any, case: Mapping[str, Any]) -> str | None:
        """Why this machine cannot run ``value`` in ``case``: the vocabulary's own reason, then the engine's
        registered check (register_check); None when it can."""
        for check in (self.unavailable, _CHECKS.get(self.name)):
            reason = check(value, case) if check is not None else None
            if reason:
                return reason
        return None

    def parse_list(self, text: str) -> list:
        """A comma-separated option value, each item validated, repeats dropped (order kept).

        Raises:
            argparse.ArgumentTypeError: naming the option, the offending item and the valid values.
        """
        items = [item.strip() for item in str(text).split(",")]
        if not str(text).strip() or any(not item for item in items):
            raise argparse.ArgumentTypeError(f"{self.option}: {text!r} is not a comma-separated list of values")
        if self.check_at_configure:
            return list(dict.fromkeys(items))
        try:
            return self.check(items)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    def check(self, values: Iterable) -> list:
        """Each value parsed, repeats dropped (order kept); ValueError naming the option and the value."""
        out = []
        for value in values:
            try:
                out.append(self.parse(value))
            except ValueError as exc:
                raise ValueError(f"{self.option}: {exc}") from None
        return list(dict.fromkeys(out))


def _presets(quick: Iterable, default: Iterable, full: Iterable, studies: Iterable | None = None,
             ci: Iterable | None = None) -> dict[str, tuple]:
    """Each preset's values; the studies preset takes the default's and the ci preset the quick one's unless they
    say otherwise (their benchmarks narrow the axes, fer_bench.plugin.presets)."""
    quick = tuple(quick)
    return {"quick": quick, "default": tuple(default),
            "studies": tuple(default if studies is None else studies), "full": tuple(full),
            "ci": quick if ci is None else tuple(ci)}


_BUILT_IN: tuple[Axis, ...] = (
    Axis("model", _parse_model, "--fer-models", "models to benchmark (see `fer-bench models`)",
         _presets(["fer_cnn_2block"],
                  ["fer_cnn_2block", "fer_cnn_4block", "vgg_fer", "efficientnet_b0", "resnet18"],
                  ["fer_cnn_2block", "fer_cnn_3block", "fer_cnn_4block", "fer_cnn_5block", "vgg_fer",
                   "efficientnet_b0", "efficientnet_b0_rgb224", "resnet18", "hrnet_w18_small"]),
         engine="the network create_model builds (fer_bench.models registry)", check_at_configure=True),
    Axis("device", parse_device_name, "--fer-devices", "devices: cpu, cuda, cuda:N, mps",
         _presets(["cpu", "cuda"], ["cpu", "cuda"], ["cpu", "cuda"], ci=["cpu"]),
         engine="the torch.device the model, batches and loader target", config_default="cpu"),
    Axis("batch_size", int_parser(1), "--fer-batch-sizes", "batch sizes (per GPU)",
         _presets([32], [64], [32, 64, 128, 256], ci=[16]), id_prefix="bs",
         engine="images per step (per GPU), and the loader's batch", config_default=64),
    Axis("num_workers", int_parser(0), "--fer-num-workers",
         "DataLoader worker counts (test_dataloader, test_epoch)",
         _presets([0], [0], [0, 2, 4, 8, 16]), id_prefix="w", engine="the DataLoader's num_workers", config_default=0),
    Axis("precision", choice_parser(PRECISIONS, "a precision"), "--fer-precisions",
         f"precisions: {', '.join(PRECISIONS)}",
         _presets(["fp32", "amp_fp16"], ["fp32", "amp_bf16", "amp_fp16"], ["fp32", "amp_fp16", "amp_bf16", "bf16"],
                  ci=["fp32"]),
         choices=PRECISIONS,
         engine="autocast dtype, parameter dtype and GradScaler (engine.precision.resolve_precision)",
         config_default="fp32"),
    Axis("num_gpus", int_parser(1), "--fer-num-gpus", "GPU counts (nn.DataParallel when above 1)",
         _presets([1], [1], [1, 2, 4, 8]), id_prefix="g",
         engine="nn.DataParallel over this many consecutive devices", config_default=1),
    Axis("optimizer", choice_parser(OPTIMIZERS, "an optimizer"), "--fer-optimizers",
         f"optimizers: {', '.join(OPTIMIZERS)} (test_train_step, test_train_step_reference, test_epoch)",
         _presets(["adam"], ["adam"], ["adam"]), format_id=lambda v: f"opt_{v}", since_default="adam",
         choices=OPTIMIZERS, implied=True, config_default="adam",
         engine="the torch.optim optimizer of the step (engine.optim.create_optimizer)"),
    Axis("lr_scaling", choice_parser(LR_SCALINGS, "a learning-rate rule"), "--fer-lr-scaling",
         "learning rate for batch sizes other than the optimizer's base batch 64: none (the base rate), linear "
         "(x batch/64), sqrt (x sqrt(batch/64)) (test_time_to_accuracy)",
         _presets(["none"], ["none"], ["none"]), format_id=lambda v: f"lr_{v}", since_default="none",
         choices=LR_SCALINGS, implied=True, config_default="none",
         engine="the learning rate of the optimizer (engine.convergence.scaled_lr)"),
    Axis("memory_format", choice_parser(MEMORY_FORMATS, "a memory format"), "--fer-memory-formats",
         f"memory formats of weights and inputs: {', '.join(MEMORY_FORMATS)} (step and epoch benchmarks)",
         _presets(["contiguous"], ["contiguous"], ["contiguous"]), since_default="contiguous",
         choices=MEMORY_FORMATS, engine="torch.channels_last for the model's weights and each input batch",
         config_default="contiguous"),
    Axis("parallel", choice_parser(PARALLEL_MODES, "a parallel mode"), "--fer-parallel",
         "how the step spreads over num_gpus: dp (nn.DataParallel, CUDA), ddp (DistributedDataParallel: NCCL on "
         "CUDA, gloo on the CPU, where num_gpus counts processes), none (one device) (test_scaling_step, "
         "test_epoch)",
         _presets(["none"], ["none"], ["none"]), format_id=lambda v: v, since_default="none",
         unavailable=_parallel_unavailable, choices=PARALLEL_MODES,
         engine="nn.DataParallel, or DistributedDataParallel workers started once per case "
                "(engine.distributed)", config_default="none"),
    Axis("scaling", choice_parser(SCALING_MODES, "a scaling mode"), "--fer-scaling",
         "batch semantics over num_gpus: weak (batch_size per device, global = batch_size x N), strong (global "
         "batch batch_size, split) (test_scaling_step, test_epoch)",
         _presets(["weak"], ["weak"], ["weak", "strong"]), format_id=lambda v: v, since_default="weak",
         unavailable=_scaling_unavailable, choices=SCALING_MODES,
         engine="the per-device and global batch (RunConfig.global_batch_size)", config_default="weak"),
    Axis("pipeline", choice_parser(PIPELINES, "a data pipeline"), "--fer-pipelines",
         "data pipelines: batched (whole uint8 batches gathered from memory, transformed per batch), per_image (an "
         "image-folder dataset: each PNG opened, decoded and transformed in the workers, then collated) "
         "(test_dataloader, test_epoch)",
         _presets(["batched"], ["batched"], ["batched", "per_image"], studies=["batched", "per_image"]),
         format_id=lambda v: v, since_default="batched", choices=PIPELINES, implied=True,
         engine="create_loader(pipeline=...): the batched loader, or fer_bench.data.per_image's dataset",
         config_default="batched"),
    Axis("compile", choice_parser(COMPILE_MODES, "a compile mode"), "--fer-compile",
         "how the step runs: eager, or torch.compile with mode default, reduce-overhead (CUDA graphs; CUDA only), "
         "max-autotune-no-cudagraphs; compiled before the timed rounds (test_forward, test_forward_backward, "
         "test_train_step, test_epoch)",
         _presets(["eager"], ["eager"], ["eager", "default", "reduce-overhead", "max-autotune-no-cudagraphs"]),
         format_id=lambda v: f"compile_{v}", since_default="eager", unavailable=_compile_unavailable,
         choices=COMPILE_MODES, implied=True, config_default="eager",
         engine="torch.compile of the step's model (engine.compile.compile_train_step)"),
    Axis("pin_memory", bool, None, "pinned host memory for the loader (CUDA devices only)",
         format_id=lambda v: "pin" if v else "nopin", unavailable=_pin_memory_unavailable,
         values_for=_pin_memory_values, engine="the DataLoader's pin_memory"),
)

#: Every axis by name, in registry order: the order of ids, params and table columns. register_axis adds to it.
AXES: dict[str, Axis] = {axis.name: axis for axis in _BUILT_IN}
#: The engine's availability checks by axis name (register_check).
_CHECKS: dict[str, Callable[[Any, Mapping[str, Any]], str | None]] = {}
#: What lists the valid values of an open axis (the model registry's names; register_known_values).
_KNOWN: dict[str, Callable[[], list]] = {}


def register_axis(axis: Axis) -> Axis:
    """Add an axis after the built-in ones; its options, parametrization, ids and match keys follow from it.

    Raises:
        ValueError: an axis of that name exists.
    """
    if axis.name in AXES:
        raise ValueError(f"axis {axis.name!r} is registered already")
    AXES[axis.name] = axis
    return axis


def remove_axis(name: str) -> None:
    """Take out an axis register_axis added (a test's throw-away axis); built-in axes stay."""
    if any(axis.name == name for axis in _BUILT_IN):
        raise ValueError(f"axis {name!r} is built in")
    AXES.pop(name, None)
    _CHECKS.pop(name, None)


def register_check(name: str, check: Callable[[Any, Mapping[str, Any]], str | None]) -> None:
    """The engine's answer to "can this machine run this value of the case" for axis ``name``, asked after the
    axis's own reason (Axis.unavailable_reason). The engine registers its checks (fer_bench.engine.availability)
    so this module never imports the engine."""
    _CHECKS[name] = check


def register_known_values(name: str, list_values: Callable[[], list]) -> None:
    """What lists the valid values of an open axis: the model registry registers its names for ``model``."""
    _KNOWN[name] = list_values


def list_known_values(name: str) -> list:
    """The valid values of an open axis, from what registered them.

    Raises:
        RuntimeError: nothing registered them yet (import fer_bench.engine.availability).
    """
    if name not in _KNOWN:
        raise RuntimeError(f"the valid values of axis {name!r} are not registered yet: import "
                           f"fer_bench.engine.availability first")
    return list(_KNOWN[name]())


def list_axes() -> tuple[Axis, ...]:
    """Every axis, in registry order."""
    return tuple(AXES.values())


def axis_names() -> tuple[str, ...]:
    """Axis names in registry order: the order of ids, params and table columns."""
    return tuple(AXES)


def option_axes() -> tuple[Axis, ...]:
    """The axes with a --fer-* option."""
    return tuple(a for a in AXES.values() if a.option)


def implied_params() -> dict[str, Any]:
    """The value a run made before an axis existed ran at, for the axes whose old runs recorded nothing: compare
    fills these in, so a run naming the value and one that does not are the same case."""
    return {a.name: a.since_default for a in AXES.values() if a.implied}


def split_case_name(name: str) -> tuple[str, str]:
    """``test_step[resnet18-cpu-bs64]`` (or a node id ``path::test_step[...]``) -> ``("test_step",
    "resnet18-cpu-bs64")``; the second part is "" for an unparametrized name. The one place a case name is split.
    """
    head, bracket, params = name.partition("[")
    function = head.rsplit("::", 1)[-1]
    return (function, params[:-1]) if bracket and params.endswith("]") else (function, "")


def order_axes(names: Iterable[str]) -> list[str]:
    """Axis names in registry order; other names after them, alphabetically."""
    names, known = set(names), axis_names()
    return [a for a in known if a in names] + sorted(names - set(known))


def case_id(case: Mapping[str, Any]) -> str:
    """``efficientnet_b0-cpu-bs64-w2-fp32-g1``: the parts in registry order, an added axis at its original value
    left out. Stable: stored baselines are matched by it."""
    parts = [AXES[name].id_part(case[name]) for name in order_axes(case) if name in AXES]
    return "-".join(p for p in parts if p is not None)


def case_unavailable_reason(case: Mapping[str, Any]) -> str | None:
    """Why this machine cannot run the case: the first reason of its axes in registry order, or None."""
    for name in order_axes(case):
        axis = AXES.get(name)
        reason = axis.unavailable_reason(case[name], case) if axis is not None else None
        if reason:
            return reason
    return None


def match_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The params a case is matched by across runs: an added axis at its original value is dropped, so a run
    made before that axis existed matches a new run of the same work."""
    out = {}
    for name, value in params.items():
        axis = AXES.get(name)
        if axis is not None and axis.has_since_default and value == axis.since_default:
            continue
        out[name] = value
    return out
