"""The model registry: `register_model` on small entry functions, `create_model` by name, `list_models` to query.

Adding a model is one decorated function (timm's habit)::

    @register_model(input_size=48, in_chans=1, family="fer_cnn", description="...")
    def my_net(num_classes: int = 7, in_chans: int = 1, **kwargs) -> nn.Module:
        return MyNet(num_classes=num_classes, in_chans=in_chans, **kwargs)

`input_size` and `in_chans` are the model's declared input: the data pipeline resizes and repeats channels to match,
and `describe_models` counts FLOPs there. No weights are ever downloaded; `create_model(checkpoint=...)` loads a
local file only.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from fer_bench.errors import FerBenchError

__all__ = [
    "ModelInfo",
    "create_model",
    "describe_models",
    "get_model_info",
    "list_models",
    "load_checkpoint",
    "register_model",
]

EntryFn = TypeVar("EntryFn", bound=Callable[..., nn.Module])

# Prefixes that wrappers add to every key: DataParallel/DDP ("module.") and torch.compile ("_orig_mod.").
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model before building it.

    Attributes:
        name: registry name, as passed to `create_model`.
        input_size: declared square input side in pixels (the data pipeline resizes 48x48 FER images to it).
        in_chans: declared input channels (1 = grayscale; 3 = the gray image repeated, for RGB stems).
        family: architecture family, e.g. "fer_cnn", "vgg", "efficientnet".
        description: one line for `fer-bench models`.
    """

    name: str
    input_size: int
    in_chans: int
    family: str
    description: str


_entrypoints: dict[str, Callable[..., nn.Module]] = {}
_infos: dict[str, ModelInfo] = {}


def register_model(
    *, input_size: int = 48, in_chans: int = 1, family: str | None = None, description: str | None = None
) -> Callable[[EntryFn], EntryFn]:
    """Register an entry function under its own name.

    Args:
        input_size: declared square input side in pixels.
        in_chans: declared input channels.
        family: architecture family; defaults to the defining module's name (e.g. "fer_cnn").
        description: one line; defaults to the first line of the function's docstring.

    Returns:
        A decorator that records the function and returns it unchanged.

    Raises:
        ValueError: the name is already registered or the declared input is not positive (a programming error).
    """
    if input_size < 1 or in_chans < 1:
        raise ValueError(f"register_model: input_size and in_chans must be >= 1, got {input_size}, {in_chans}")

    def decorator(fn: EntryFn) -> EntryFn:
        name = fn.__name__
        if name in _entrypoints:
            raise ValueError(f"register_model: model {name!r} is already registered")
        doc_line = (fn.__doc__ or "").strip().splitlines()[0:1]
        info = ModelInfo(
            name=name,
            input_size=int(input_size),
            in_chans=int(in_chans),
            family=family or fn.__module__.rsplit(".", 1)[-1],
            description=description or (doc_line[0] if doc_line else ""),
        )
        _entrypoints[name] = fn
        _infos[name] = info
        return fn

    return decorator


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching an fnmatch pattern (case-insensitive), in alphabetical order.

    Args:
        pattern: shell-style pattern, e.g. "fer_cnn_*" or "*efficientnet*".
    """
    pat = pattern.lower()
    return sorted(n for n in _entrypoints if fnmatch.fnmatchcase(n, pat))


def get_model_info(name: str) -> ModelInfo:
    """The registered facts about `name`.

    Raises:
        FerBenchError: unknown name; the message lists close matches.
    """
    try:
        return _infos[name]
    except KeyError:
        raise FerBenchError(_unknown_model_message(name)) from None


def _unknown_model_message(name: str) -> str:
    close = difflib.get_close_matches(name, sorted(_entrypoints), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown model {name!r}{hint} (run `fer-bench models` to list them)"


def create_model(
    name: str,
    num_classes: int = 7,
    in_chans: int | None = None,
    checkpoint: str | Path | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, randomly initialised or from a local checkpoint.

    Args:
        name: registry name (see `list_models`).
        num_classes: output logits.
        in_chans: input channels; None means the model's declared channels.
        checkpoint: local state-dict file (see `load_checkpoint`); nothing is ever downloaded.
        **kwargs: passed to the entry function; None values are dropped so callers can forward unset options.

    Returns:
        The model (train mode, on CPU) with `model.fer_info`: its ModelInfo, `in_chans` as built.

    Raises:
        FerBenchError: unknown name, a non-positive num_classes / in_chans, or an unusable checkpoint.
    """
    info = get_model_info(name)
    chans = info.in_chans if in_chans is None else in_chans
    for option, value in (("num_classes", num_classes), ("in_chans", chans)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise FerBenchError(f"create_model({name!r}): {option} must be a positive integer, got {value!r}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    model = _entrypoints[name](num_classes=num_classes, in_chans=chans, **kwargs)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    # The data pipeline reads fer_info to shape its input, so it describes the model as built.
    model.fer_info = dataclasses.replace(info, in_chans=chans)
    return model


def load_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load a local state dict into `model` (strict: every key and shape must match).

    Accepts a raw state dict or a dict holding it under "state_dict" or "model"; strips the "module." prefix of
    DataParallel/DDP and the "_orig_mod." prefix of torch.compile. Read with `weights_only=True`, so a file
    cannot run code.

    Raises:
        FerBenchError: the file is missing, unreadable, holds no state dict, or does not match the model.
    """
    path = Path(path)
    if not path.is_file():
        raise FerBenchError(f"checkpoint {path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (UnpicklingError, RuntimeError, EOFError...) for bad files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FerBenchError(f"checkpoint {path}: not a readable torch checkpoint ({reason[:200]})") from None
    state = _extract_state_dict(obj, path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) e.g. {', '.join(unexpected[:3])}")
        raise FerBenchError(f"checkpoint {path}: does not match the model: {'; '.join(parts)}")
    for key, ref in expected.items():
        if tuple(state[key].shape) != tuple(ref.shape):
            raise FerBenchError(
                f"checkpoint {path}: shape mismatch for {key}: file has {tuple(state[key].shape)}, "
                f"model has {tuple(ref.shape)} (different num_classes or in_chans?)"
            )
    model.load_state_dict(state, strict=True)


def _extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise FerBenchError(
            f"checkpoint {path}: holds no state dict (expected a dict of tensors, or one under 'state_dict' or 'model')"
        )
    state = dict(obj)
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def describe_models(pattern: str = "*") -> list[dict[str, Any]]:
    """One row per matching model, as `fer-bench models` prints it.

    Keys: name, family, num_params, input_size, in_chans, gflops, description. `gflops` is the forward pass of ONE
    image at the declared input in eval mode, counted by `torch.utils.flop_counter.FlopCounterMode` (2 x MACs of
    convolutions and matmuls; elementwise ops, pooling and normalisation are not counted). Built once per model
    and process, on CPU.
    """
    return [dict(_describe_model(name)) for name in list_models(pattern)]


@functools.lru_cache(maxsize=None)
def _describe_model(name: str) -> tuple[tuple[str, Any], ...]:
    from fer_bench.models.flops import count_flops

    info = get_model_info(name)
    model = create_model(name).eval()
    example = torch.zeros(1, info.in_chans, info.input_size, info.input_size)
    flops = count_flops(model, example)
    row = {
        "name": name,
        "family": info.family,
        "num_params": int(sum(p.numel() for p in model.parameters())),
        "input_size": info.input_size,
        "in_chans": info.in_chans,
        "gflops": flops / 1e9,
        "description": info.description,
    }
    # A tuple keeps the cached row immutable; callers get a fresh dict each time.
    return tuple(row.items())
