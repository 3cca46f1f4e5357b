"""What every benchmark body shares: the record each result starts from (its axes, settings, workload,
telemetry and precision verdict), and one real batch of the run's data on the device."""

from __future__ import annotations

import torch

from fer_bench.data.dataset import FerData, take, train_split
from fer_bench.engine import RunConfig, Training
from fer_bench.engine.device import resolve_device
from fer_bench.measure.context import BenchOptions, Recorder
from fer_bench.workload import create_workload


#: An epoch's fewest timed rounds (its cold epoch comes first, untimed).
EPOCH_MIN_ROUNDS = 3


def find_eval_split(data: FerData) -> str | None:
    names = [s for s in ("public_test", "test", "private_test") if s in data.split_names()]
    return names[0] if names else None


def common_info(options: BenchOptions, recorder: Recorder, config: RunConfig, training: Training | None = None,
                **counts) -> dict:
    """What every result records: its axes, the settings that shaped it, its workload and the telemetry."""
    info = {**config.axes(), "data": options.data_description, "preset": options.preset_name}
    if training is not None:
        info.update(training.settings)
    info["workload"] = create_workload(recorder.data_identity, input_size=info.get("input_size"),
                                       in_chans=info.get("in_chans"), **counts)
    if config.model != "none":  # a loader pass has no precision
        info.update(_precision_native(options, recorder, config))
    try:
        from fer_bench.machine.fingerprint import collect_telemetry

        info["telemetry"] = collect_telemetry()
    except Exception as exc:  # telemetry is best effort: a missing reading must not fail a measurement
        info["telemetry"] = {"error": str(exc)}
    return info


def _precision_native(options: BenchOptions, recorder: Recorder, config: RunConfig) -> dict:
    """``precision_native`` (and ``precision_note`` when emulated), from the fingerprint's CPU flags."""
    from fer_bench.engine.precision import describe_precision_native
    from fer_bench.machine.identity import collect_isa_cap

    device = resolve_device(config.device, config.devices_needed).device
    flags = recorder.get_fingerprint().get("cpu", {}).get("flags") or ()
    info = describe_precision_native(config.precision, device, flags)
    if device.type == "cpu":
        capped = collect_isa_cap()
        if capped:  # changes fp32 as well: the same machine runs at another speed
            info["cpu_isa_env"] = capped
    recorder.note_precision(info)
    return info


def device_batch(options: BenchOptions, recorder: Recorder,
                 training: Training) -> tuple[torch.Tensor, torch.Tensor]:
    """One real batch of the run's data through the standard loader policy, already on the device."""
    from fer_bench.data.loader import create_loader

    config = training.config
    data = recorder.data
    split = train_split(data)
    batch = config.global_batch_size  # nn.DataParallel splits it over its devices
    if data.labels is None or len(data.indices(split)) < batch:
        return training.example_batch()
    loader = create_loader(take(data, split, batch), split, batch_size=batch,
                           train=True, input_size=training.input_size, in_chans=training.in_chans,
                           seed=config.seed)
    x, y = next(iter(loader))
    return training.step.prepare_input(x), y.to(training.step.device)
