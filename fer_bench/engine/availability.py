"""The engine's availability checks, registered with the axis registry: whether this machine can run a device,
precision, parallel mode or compile mode, and which model names exist.

Importing this module registers them (fer_bench.axes.register_check, register_known_values) without importing
torch: each check imports the engine module it asks when it is first called. The registry never imports the
engine; the pytest plugin, the CLI and a user's script import this module before asking
fer_bench.axes.case_unavailable_reason.
"""

from __future__ import annotations

from typing import Any, Mapping

from fer_bench.axes import devices_needed, register_check, register_known_values


def device_unavailable(value: str, case: Mapping[str, Any]) -> str | None:
    from fer_bench.engine.device import resolve_device

    resolved = resolve_device(value, devices_needed({**case, "device": value}))
    return None if resolved.available else resolved.reason


def precision_unavailable(value: str, case: Mapping[str, Any]) -> str | None:
    if "device" not in case:
        return None
    from fer_bench.engine.device import resolve_device
    from fer_bench.engine.precision import precision_unavailable_reason

    device = resolve_device(case["device"], devices_needed(case)).device
    return None if device is None else precision_unavailable_reason(value, device)


def parallel_unavailable(value: str, case: Mapping[str, Any]) -> str | None:
    if value != "ddp":
        return None
    from fer_bench.engine.distributed import distributed_unavailable_reason

    return distributed_unavailable_reason(str(case.get("device", "cpu")), int(case.get("num_gpus", 1)))


def compile_unavailable(value: str, case: Mapping[str, Any]) -> str | None:
    if value == "eager":
        return None
    from fer_bench.engine.compile import compile_unavailable_reason

    return compile_unavailable_reason(value, str(case.get("device", "cpu")))


def list_model_names() -> list:
    from fer_bench.models import list_models  # registers the zoo; timm itself loads only when a model is built

    return list_models()


register_check("device", device_unavailable)
register_check("precision", precision_unavailable)
register_check("parallel", parallel_unavailable)
register_check("compile", compile_unavailable)
register_known_values("model", list_model_names)
