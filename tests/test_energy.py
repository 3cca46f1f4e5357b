"""Tests for fer_bench.measure.energy: a fake powercap tree in tmp_path for RAPL and tests/fake_pynvml.py for NVML;
no real hardware, no torch.

Run: python -m pytest tests/test_energy.py -q
"""

from __future__ import annotations

import builtins
import importlib.util
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from fer_bench.machine import nvml as machine_nvml
from fer_bench.measure import energy
from fer_bench.measure.energy import rapl

ROOT = Path(__file__).resolve().parents[1]
UUID_A = "GPU-5a1e0d6c-3f0b-8c2e-11aa-0123456789ab"
UUID_B = "GPU-9b7c4e21-77d0-4c8e-a1b2-fedcba987654"
MAX_UJ = 262143328850  # a real package's max_energy_range_uj
WINDOW_KEYS = {"energy_j", "energy_source", "energy_sampling_period_s", "energy_domains", "energy_reason"}
LONG_PERIOD = 3600.0  # the sampling thread never wakes within a test: only the start and stop readings count


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fer-bench-power-sampler"]


@pytest.fixture(autouse=True)
def no_leftover_threads():
    yield
    assert not sampler_threads(), "a power-sampling thread outlived its window"


# ------------------------------------------------------------------------------------------------------- RAPL
class Powercap:
    """A fake /sys/class/powercap: zones as flat folders, as the real tree's symlinks appear."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True)
        (root / "intel-rapl").mkdir()  # the control type folder: not a zone

    def zone(self, zone: str, name: str | None, energy_uj: int, max_uj: int | None = MAX_UJ) -> None:
        d = self.root / zone
        d.mkdir()
        if name is not None:
            (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{energy_uj}\n")
        if max_uj is not None:
            (d / "max_energy_range_uj").write_text(f"{max_uj}\n")

    def add(self, zone: str, microjoules: int) -> None:
        self.set(zone, int((self.root / zone / "energy_uj").read_text()) + microjoules)

    def set(self, zone: str, energy_uj: int) -> None:
        (self.root / zone / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def powercap(tmp_path) -> Powercap:
    """Two packages; package-0 with core and dram subzones; a psys zone; an MMIO duplicate of package-0."""
    tree = Powercap(tmp_path / "powercap")
    tree.zone("intel-rapl:0", "package-0", 5_000_000)
    tree.zone("intel-rapl:0:0", "core", 1_000_000)
    tree.zone("intel-rapl:0:1", "dram", 2_000_000)
    tree.zone("intel-rapl:1", "package-1", 7_000_000)
    tree.zone("intel-rapl:2", "psys", 9_000_000)
    tree.zone("intel-rapl-mmio:0", "package-0", 3_000_000)  # the same package again: never read
    return tree


def test_rapl_sums_packages_and_dram_and_records_every_domain(powercap):
    meter = energy.RaplEnergy(powercap.root)
    assert meter.reason is None and meter.available
    assert [d.key for d in meter.domains] == ["package-0", "package-0/core", "package-0/dram", "package-1", "psys"]
    with meter.window() as w:
        powercap.add("intel-rapl:0", 30_000_000)
        powercap.add("intel-rapl:0:0", 20_000_000)  # inside package-0's 30 J: recorded, not added
        powercap.add("intel-rapl:0:1", 4_500_000)
        powercap.add("intel-rapl:1", 25_000_000)
        powercap.add("intel-rapl:2", 99_000_000)  # the whole platform: recorded, not added
        powercap.add("intel-rapl-mmio:0", 1_000_000_000)
    result = w.result()
    assert set(result) == WINDOW_KEYS
    assert result["energy_j"] == pytest.approx(30 + 4.5 + 25)
    assert result["energy_source"] == "rapl_energy_counter"
    assert result["energy_sampling_period_s"] is None and result["energy_reason"] is None
    assert result["energy_domains"] == pytest.approx(
        {"package-0": 30.0, "package-0/core": 20.0, "package-0/dram": 4.5, "package-1": 25.0, "psys": 99.0})


def test_rapl_amd_style_tree_package_and_core_only(tmp_path):
    tree = Powercap(tmp_path / "powercap")
    tree.zone("intel-rapl:0", "package-0", 10)
    tree.zone("intel-rapl:0:0", "core", 10)
    meter = energy.RaplEnergy(tree.root)
    meter.start()
    tree.add("intel-rapl:0", 12_000_000)
    tree.add("intel-rapl:0:0", 8_000_000)
    result = meter.stop()
    assert result["energy_j"] == pytest.approx(12.0)
    assert result["energy_domains"] == pytest.approx({"package-0": 12.0, "package-0/core": 8.0})


def test_rapl_counter_that_went_down_wrapped_once(powercap):
    powercap.set("intel-rapl:0", MAX_UJ - 1_000_000)
    meter = energy.RaplEnergy(powercap.root)
    with meter.window():
        powercap.set("intel-rapl:0", 3_000_000)  # 1 J to the wrap, 3 J after it
        powercap.add("intel-rapl:1", 2_000_000)
    result = meter.result()
    assert result["energy_domains"]["package-0"] == pytest.approx(4.0)
    assert result["energy_j"] == pytest.approx(4.0 + 2.0)


def test_rapl_wrap_without_max_range_is_not_a_measurement(tmp_path):
    tree = Powercap(tmp_path / "powercap")
    tree.zone("intel-rapl:0", "package-0", 9_000_000, max_uj=None)
    meter = energy.RaplEnergy(tree.root)
    with meter.window():
        tree.set("intel-rapl:0", 1_000_000)
    result = meter.result()
    assert result["energy_j"] is None
    assert "went down" in result["energy_reason"] and "max_energy_range_uj" in result["energy_reason"]


def test_rapl_permission_denied_names_the_file(powercap, monkeypatch):
    # chmod 000 does not stop root, and the suite may run as root: deny in the reader instead.
    real_open = builtins.open

    def deny(path, *args, **kwargs):
        if str(path).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(rapl, "open", deny, raising=False)
    meter = energy.open_energy_meter("cpu", powercap_root=powercap.root)
    path = powercap.root / "intel-rapl:0" / "energy_uj"
    assert meter.reason == f"permission denied reading {path} (RAPL is root-only here)"
    with meter.window():
        pass
    assert meter.result() == energy.unavailable_window(meter.reason)


def test_rapl_permission_lost_during_the_window_is_the_reason(powercap, monkeypatch):
    meter = energy.RaplEnergy(powercap.root)
    meter.start()
    monkeypatch.setattr(rapl, "open", lambda path, *a, **k: (_ for _ in ()).throw(PermissionError(13, "no")),
                        raising=False)
    result = meter.stop()
    assert result["energy_j"] is None and result["energy_reason"].startswith("permission denied reading ")


def test_rapl_permission_denied_at_start_is_the_reason(powercap, monkeypatch):
    meter = energy.RaplEnergy(powercap.root)
    monkeypatch.setattr(rapl, "open", lambda path, *a, **k: (_ for _ in ()).throw(PermissionError(13, "no")),
                        raising=False)
    with meter.window():
        pass
    path = powercap.root / "intel-rapl:0" / "energy_uj"
    assert meter.result()["energy_reason"] == f"permission denied reading {path} (RAPL is root-only here)"


def test_rapl_lost_core_reading_leaves_the_sum(powercap):
    meter = energy.RaplEnergy(powercap.root)
    meter.start()
    powercap.add("intel-rapl:0", 1_000_000)
    (powercap.root / "intel-rapl:0:0" / "energy_uj").unlink()
    result = meter.stop()
    assert result["energy_j"] == pytest.approx(1.0)
    assert result["energy_domains"]["package-0/core"] is None


def test_rapl_missing_tree(tmp_path, monkeypatch):
    missing = tmp_path / "sys/class/powercap"
    monkeypatch.setattr(rapl, "POWERCAP_ROOT", missing)
    meter = energy.RaplEnergy()
    assert meter.root == missing
    assert meter.reason == f"no {missing} (this kernel or VM exposes no RAPL)"
    meter.start()
    assert meter.stop() == energy.unavailable_window(meter.reason)
    assert energy.open_energy_meter("cpu").reason == meter.reason


def test_rapl_tree_without_zones(tmp_path):
    tree = Powercap(tmp_path / "powercap")
    tree.zone("intel-rapl-mmio:0", "package-0", 1)
    assert energy.RaplEnergy(tree.root).reason == (
        f"no intel-rapl zones under {tree.root} (this kernel or VM exposes no RAPL)")


def test_rapl_only_psys_is_not_a_package(tmp_path):
    tree = Powercap(tmp_path / "powercap")
    tree.zone("intel-rapl:0", "psys", 1)
    assert "no package or dram zone" in energy.RaplEnergy(tree.root).reason


def test_rapl_counter_that_did_not_advance(powercap):
    clock = FakeClock()
    meter = energy.RaplEnergy(powercap.root, clock=clock)
    meter.start()
    clock.now += 0.004
    result = meter.stop()
    assert result["energy_j"] is None
    assert result["energy_reason"] == "the RAPL energy counters did not advance over a 0.004 s window"


# ------------------------------------------------------------------------------------------------------- NVML
def load_fake_pynvml(gpus: int = 2) -> types.ModuleType:
    """A fresh copy of tests/fake_pynvml.py (as test_hardware loads it), so no state leaks between tests."""
    spec = importlib.util.spec_from_file_location("fake_pynvml", Path(__file__).with_name("fake_pynvml.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    module.GPUS = [module.FakeGpu(uuid=u) for u in (UUID_A, UUID_B)[:gpus]]
    for i, gpu in enumerate(module.GPUS):
        gpu.total_energy_mj = 1_000_000 * (i + 1)
    return module


@pytest.fixture
def nvml(monkeypatch) -> types.ModuleType:
    """Two fake H100s as ``pynvml``, NVML's process-wide cache emptied, no CUDA_VISIBLE_DEVICES."""
    module = load_fake_pynvml()
    monkeypatch.setattr(machine_nvml, "_NVML", {})
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return module


def test_nvml_counter_sums_the_case_gpus(nvml):
    meter = energy.NvmlEnergy([0, 1])
    assert meter.reason is None and meter.counter_reason is None
    with meter.window() as w:
        nvml.GPUS[0].total_energy_mj += 5_000
        nvml.GPUS[1].total_energy_mj += 7_250
        nvml.GPUS[0].power_usage_mw = 999_000  # sampling runs beside the counter, but the counter wins
    result = w.result()
    assert result == {"energy_j": pytest.approx(12.25), "energy_source": "nvml_total_energy_counter",
                      "energy_sampling_period_s": None,
                      "energy_domains": pytest.approx({"cuda:0": 5.0, "cuda:1": 7.25}), "energy_reason": None}


@pytest.mark.parametrize("visible", ["1", UUID_B[:12]])
def test_nvml_respects_cuda_visible_devices(nvml, monkeypatch, visible):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    meter = energy.open_energy_meter("cuda:0")
    assert isinstance(meter, energy.NvmlEnergy)
    with meter.window():
        nvml.GPUS[0].total_energy_mj += 1_000  # hidden from CUDA: not this case's GPU
        nvml.GPUS[1].total_energy_mj += 3_000
    assert meter.result()["energy_j"] == pytest.approx(3.0)
    assert meter.result()["energy_domains"] == pytest.approx({"cuda:0": 3.0})
    assert energy.NvmlEnergy([1]).reason == "cuda:1 is not among the 1 GPU(s) NVML sees through CUDA_VISIBLE_DEVICES"


def test_nvml_counter_missing_falls_back_to_power_sampling(nvml):
    del nvml.nvmlDeviceGetTotalEnergyConsumption  # an old binding
    clock = FakeClock()
    nvml.GPUS[0].power_usage_mw, nvml.GPUS[1].power_usage_mw = 100_000, 200_000
    meter = energy.NvmlEnergy([0, 1], sampling_period_s=LONG_PERIOD, clock=clock)
    assert meter.reason is None
    assert meter.counter_reason == "nvmlDeviceGetTotalEnergyConsumption is missing from this pynvml (an old binding)"
    with meter.window():
        clock.now += 2.0
        nvml.GPUS[0].power_usage_mw, nvml.GPUS[1].power_usage_mw = 300_000, 200_000
    result = meter.result()
    # Trapezoid over the start and stop readings: (100 + 300) / 2 W * 2 s and 200 W * 2 s.
    assert result == {"energy_j": pytest.approx(800.0), "energy_source": "nvml_power_sampling",
                      "energy_sampling_period_s": LONG_PERIOD,
                      "energy_domains": pytest.approx({"cuda:0": 400.0, "cuda:1": 400.0}), "energy_reason": None}
    assert meter.sample_count == 2


def test_nvml_power_sampling_thread_samples_at_its_period(nvml):
    nvml.GPUS[0].not_supported.add("nvmlDeviceGetTotalEnergyConsumption")  # pre-Volta
    nvml.GPUS[0].power_usage_mw = 150_000
    meter = energy.NvmlEnergy([0], sampling_period_s=0.005)
    assert meter.counter_reason == "nvmlDeviceGetTotalEnergyConsumption failed on cuda:0: NVMLError_NotSupported: " \
                                   "Not Supported"
    with meter.window():
        time.sleep(0.1)
    result = meter.result()
    assert result["energy_source"] == "nvml_power_sampling" and result["energy_sampling_period_s"] == 0.005
    assert meter.sample_count > 2  # start, thread readings, stop
    assert 0.1 <= meter.window_s < 5
    assert result["energy_j"] == pytest.approx(150.0 * meter.window_s, rel=0.1)


def test_nvml_counter_that_did_not_advance_falls_back_to_sampling(nvml):
    clock = FakeClock()
    meter = energy.NvmlEnergy([0], sampling_period_s=LONG_PERIOD, clock=clock)
    with meter.window():
        clock.now += 0.5
    result = meter.result()
    assert result["energy_source"] == "nvml_power_sampling"
    assert result["energy_j"] == pytest.approx(71.234 * 0.5)


def test_nvml_counter_that_did_not_advance_without_power_readings(nvml):
    nvml.GPUS[0].not_supported.add("nvmlDeviceGetPowerUsage")
    clock = FakeClock()
    meter = energy.NvmlEnergy([0], clock=clock)
    assert meter.reason is None and meter.power_reason
    with meter.window():
        clock.now += 0.004
    assert meter.result() == energy.unavailable_window(
        "the energy counter did not advance over a 0.004 s window and nvmlDeviceGetPowerUsage failed on cuda:0: "
        "NVMLError_NotSupported: Not Supported")


def test_nvml_counter_that_did_not_advance_with_sampling_off(nvml):
    clock = FakeClock()
    meter = energy.NvmlEnergy([0], backup_sampling=False, clock=clock)
    with meter.window():
        clock.now += 0.004
    assert meter.result()["energy_reason"] == ("the energy counter did not advance over a 0.004 s window and "
                                               "power sampling is off (backup_sampling=False)")
    assert meter.sample_count == 0


def test_nvml_neither_counter_nor_power(nvml):
    nvml.GPUS[1].not_supported.update({"nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetPowerUsage"})
    meter = energy.NvmlEnergy([0, 1])
    assert meter.reason == ("nvmlDeviceGetTotalEnergyConsumption failed on cuda:1: NVMLError_NotSupported: Not "
                            "Supported and nvmlDeviceGetPowerUsage failed on cuda:1: NVMLError_NotSupported: "
                            "Not Supported")
    with meter.window():
        pass
    assert meter.result()["energy_j"] is None and meter.result()["energy_reason"] == meter.reason


def test_sampling_thread_exception_is_the_reason_never_raised(nvml, monkeypatch):
    del nvml.nvmlDeviceGetTotalEnergyConsumption
    real = nvml.nvmlDeviceGetPowerUsage
    calls = []

    def flaky(handle):
        calls.append(1)
        if len(calls) > 2:  # the probe and the start reading work; the thread's first reading fails
            raise RuntimeError("boom")
        return real(handle)

    monkeypatch.setattr(nvml, "nvmlDeviceGetPowerUsage", flaky)
    meter = energy.NvmlEnergy([0], sampling_period_s=0.002)
    with meter.window():
        time.sleep(0.05)  # the thread hits the error here; nothing reaches this code
    assert meter.result() == energy.unavailable_window(
        "nvmlDeviceGetTotalEnergyConsumption is missing from this pynvml (an old binding) and power sampling "
        "failed: nvmlDeviceGetPowerUsage failed on cuda:0: RuntimeError: boom")


def test_power_sampler_captures_any_exception_and_joins():
    readings = iter([[10.0], [10.0]])
    sampler = energy.PowerSampler(lambda: next(readings), 0.001)
    sampler.start()
    deadline = time.monotonic() + 10
    while sampler.error is None and time.monotonic() < deadline:  # the third reading raises in the thread
        time.sleep(0.005)
    assert sampler.error == "power sampling failed: StopIteration"
    sampler.stop()
    assert sampler.joules() is None and not sampler_threads()


def test_power_sampler_trapezoid():
    clock = FakeClock(0.0)
    watts = iter([[0.0, 10.0], [100.0, 10.0], [100.0, 10.0]])
    sampler = energy.PowerSampler(lambda: next(watts), LONG_PERIOD, clock)
    sampler.samples = []
    sampler._sample()
    clock.now = 1.0
    sampler._sample()
    clock.now = 3.0
    sampler._sample()
    assert sampler.joules() == pytest.approx([50.0 + 200.0, 30.0])


def test_no_pynvml(monkeypatch):
    monkeypatch.setattr(machine_nvml, "_NVML", {})
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    meter = energy.open_energy_meter("cuda")
    assert meter.reason.startswith("no NVML (pynvml not installed or no NVIDIA driver): pynvml not importable")
    with meter.window():
        pass
    assert meter.result()["energy_j"] is None and meter.result()["energy_reason"] == meter.reason


def test_no_nvidia_driver(nvml):
    nvml.INIT_ERROR = nvml.NVMLError_DriverNotLoaded()
    assert energy.NvmlEnergy([0]).reason == (
        "no NVML (pynvml not installed or no NVIDIA driver): nvmlInit failed: Driver Not Loaded")


# ---------------------------------------------------------------------------------------------- the interface
def test_per_step_fields_arithmetic():
    window = {"energy_j": 200.0, "energy_source": "nvml_total_energy_counter", "energy_sampling_period_s": None,
              "energy_domains": {"cuda:0": 200.0}, "energy_reason": None}
    fields = energy.per_step_fields(window, steps=10, samples=640)
    assert fields["energy_j_per_step"] == pytest.approx(20.0)
    assert fields["samples_per_joule"] == pytest.approx(3.2)
    assert fields["energy_j"] == 200.0 and fields["energy_source"] == "nvml_total_energy_counter"
    assert fields["energy_sampling_period_s"] is None and fields["energy_reason"] is None
    sampled = dict(window, energy_source="nvml_power_sampling", energy_sampling_period_s=0.02)
    assert energy.per_step_fields(sampled, steps=4, samples=8)["energy_sampling_period_s"] == 0.02


def test_per_step_fields_when_not_measured():
    fields = energy.per_step_fields(energy.unavailable_window("no NVML\n(test)"), steps=10, samples=640)
    assert fields["energy_j_per_step"] is None and fields["samples_per_joule"] is None
    assert fields["energy_reason"] == "no NVML (test)"
    zero = dict(energy.unavailable_window("x"), energy_j=0.0, energy_reason=None)
    assert energy.per_step_fields(zero, steps=1, samples=1)["samples_per_joule"] is None
    assert "no energy" in energy.per_step_fields(zero, steps=1, samples=1)["energy_reason"]
    with pytest.raises(ValueError):
        energy.per_step_fields(zero, steps=0, samples=1)


class TorchDeviceLike:
    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text


def test_open_energy_meter_picks_the_source(nvml, powercap):
    gpu = energy.open_energy_meter(TorchDeviceLike("cuda:1"))
    assert isinstance(gpu, energy.NvmlEnergy) and gpu.device_indices == [1]
    both = energy.open_energy_meter("cuda:0", device_indices=range(2), sampling_period_s=0.05)
    assert both.device_indices == [0, 1] and both.sampling_period_s == 0.05
    assert isinstance(energy.open_energy_meter("cpu", powercap_root=powercap.root), energy.RaplEnergy)
    other = energy.open_energy_meter("mps")
    assert isinstance(other, energy.UnavailableEnergy)
    assert other.reason == "no energy source for device 'mps' (NVML covers cuda, RAPL covers cpu)"
    for meter in (gpu, both, other):
        assert isinstance(meter, energy.EnergyMeter)


def test_meter_misuse_and_window_on_error(nvml):
    meter = energy.NvmlEnergy([0], sampling_period_s=0.002)
    with pytest.raises(RuntimeError, match="not started"):
        meter.stop()
    with pytest.raises(RuntimeError, match="no energy window"):
        meter.result()
    with pytest.raises(KeyError):
        with meter.window():
            with pytest.raises(RuntimeError, match="still open"):
                meter.result()
            with pytest.raises(RuntimeError, match="already started"):
                meter.start()
            raise KeyError("the body failed")
    assert not sampler_threads()  # stopped and joined although the body raised
    assert set(meter.result()) == WINDOW_KEYS


def test_module_imports_no_torch():
    code = ("import sys, fer_bench.measure.energy as e; e.open_energy_meter('cuda:0'); e.open_energy_meter('cpu'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
