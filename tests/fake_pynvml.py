"""A fake ``pynvml`` (nvidia-ml-py) for tests: install a fresh copy as ``sys.modules["pynvml"]``.

Load a fresh module per test (``importlib.util.spec_from_file_location`` + ``exec_module``) and set ``GPUS``,
``INIT_ERROR`` and friends on it. Handles are the FakeGpu objects, so a test changes a reading by mutating the
object. Names listed in a FakeGpu's ``not_supported`` raise NVMLError_NotSupported, as NVML does on boards that
lack a feature; a test deletes a function from the module to imitate an old binding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_TEMPERATURE_GPU = 0
NVML_FEATURE_DISABLED = 0
NVML_FEATURE_ENABLED = 1
NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1
NVML_NVLINK_MAX_LINKS = 18


class NVMLError(Exception):
    """Base of NVML's errors; str() is NVML's message, as in pynvml."""

    message = "Unknown Error"

    def __str__(self) -> str:
        return self.message


class NVMLError_Uninitialized(NVMLError):  # noqa: N801 - pynvml's names
    message = "Uninitialized"


class NVMLError_InvalidArgument(NVMLError):  # noqa: N801
    message = "Invalid Argument"


class NVMLError_NotSupported(NVMLError):  # noqa: N801
    message = "Not Supported"


class NVMLError_DriverNotLoaded(NVMLError):  # noqa: N801
    message = "Driver Not Loaded"


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801
    message = "NVML Shared Library Not Found"


@dataclass
class FakeGpu:
    """One board's answers; the defaults are an H100 SXM 80GB (NVML's real byte count and clocks)."""

    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    memory_total: int = 85520809984
    memory_used: int = 1 << 20
    compute_capability: tuple[int, int] = (9, 0)
    max_clocks: dict[int, int] = field(default_factory=lambda: {NVML_CLOCK_SM: 1980, NVML_CLOCK_MEM: 2619})
    clocks: dict[int, int] = field(default_factory=lambda: {NVML_CLOCK_SM: 345, NVML_CLOCK_MEM: 2619})
    temperature: int = 31
    power_usage_mw: int = 71234
    power_limit_mw: int = 700000
    enforced_power_limit_mw: int = 700000
    pcie_generation: int = 5
    pcie_width: int = 16
    mig_mode: tuple[int, int] = (NVML_DEVICE_MIG_DISABLE, NVML_DEVICE_MIG_DISABLE)
    nvlinks: int | None = 18  # None: a PCIe board, every link NotSupported
    utilization: tuple[int, int] = (0, 0)
    clocks_event_reasons: int = 0x1
    processes: int = 0
    not_supported: set[str] = field(default_factory=set)


GPUS: list[FakeGpu] = []
DRIVER_VERSION = "550.54.15"
CUDA_DRIVER_VERSION = 12040
INIT_ERROR: NVMLError | None = None
CALLS = {"init": 0, "shutdown": 0}
_initialised = False


def _check(gpu: FakeGpu, name: str) -> FakeGpu:
    if not _initialised:
        raise NVMLError_Uninitialized()
    if name in gpu.not_supported:
        raise NVMLError_NotSupported()
    return gpu


def nvmlInit() -> None:  # noqa: N802 - pynvml's names
    global _initialised
    CALLS["init"] += 1
    if INIT_ERROR is not None:
        raise INIT_ERROR
    _initialised = True


def nvmlShutdown() -> None:  # noqa: N802
    global _initialised
    CALLS["shutdown"] += 1
    if not _initialised:
        raise NVMLError_Uninitialized()
    _initialised = False


def nvmlSystemGetDriverVersion() -> str:  # noqa: N802
    return DRIVER_VERSION


def nvmlSystemGetCudaDriverVersion() -> int:  # noqa: N802
    return CUDA_DRIVER_VERSION


def nvmlSystemGetNVMLVersion() -> str:  # noqa: N802
    return "12." + DRIVER_VERSION


def nvmlDeviceGetCount() -> int:  # noqa: N802
    if not _initialised:
        raise NVMLError_Uninitialized()
    return len(GPUS)


def nvmlDeviceGetHandleByIndex(index: int) -> FakeGpu:  # noqa: N802
    if not 0 <= index < len(GPUS):
        raise NVMLError_InvalidArgument()
    return _check(GPUS[index], "nvmlDeviceGetHandleByIndex")


def nvmlDeviceGetName(h: FakeGpu) -> str:  # noqa: N802
    return _check(h, "nvmlDeviceGetName").name


def nvmlDeviceGetUUID(h: FakeGpu) -> str:  # noqa: N802
    return _check(h, "nvmlDeviceGetUUID").uuid


def nvmlDeviceGetMemoryInfo(h: FakeGpu) -> SimpleNamespace:  # noqa: N802
    g = _check(h, "nvmlDeviceGetMemoryInfo")
    return SimpleNamespace(total=g.memory_total, used=g.memory_used, free=g.memory_total - g.memory_used)


def nvmlDeviceGetCudaComputeCapability(h: FakeGpu) -> tuple[int, int]:  # noqa: N802
    return _check(h, "nvmlDeviceGetCudaComputeCapability").compute_capability


def nvmlDeviceGetMaxClockInfo(h: FakeGpu, clock: int) -> int:  # noqa: N802
    return _check(h, "nvmlDeviceGetMaxClockInfo").max_clocks[clock]


def nvmlDeviceGetClockInfo(h: FakeGpu, clock: int) -> int:  # noqa: N802
    return _check(h, "nvmlDeviceGetClockInfo").clocks[clock]


def nvmlDeviceGetPowerManagementLimit(h: FakeGpu) -> int:  # noqa: N802
    return _check(h, "nvmlDeviceGetPowerManagementLimit").power_limit_mw


def nvmlDeviceGetEnforcedPowerLimit(h: FakeGpu) -> int:  # noqa: N802
    return _check(h, "nvmlDeviceGetEnforcedPowerLimit").enforced_power_limit_mw


def nvmlDeviceGetPowerUsage(h: FakeGpu) -> int:  # noqa: N802
    return _check(h, "nvmlDeviceGetPowerUsage").power_usage_mw


def nvmlDeviceGetMaxPcieLinkGeneration(h: FakeGpu) -> int:  # noqa: N802
    return _check(h, "nvmlDeviceGetMaxPcieLinkGeneration").pcie_generation


def nvmlDeviceGetMaxPcieLinkWidth(h: FakeGpu) -> int:  # noqa: N802
    return _check(h, "nvmlDeviceGetMaxPcieLinkWidth").pcie_width


def nvmlDeviceGetMigMode(h: FakeGpu) -> list[int]:  # noqa: N802
    return list(_check(h, "nvmlDeviceGetMigMode").mig_mode)


def nvmlDeviceGetNvLinkState(h: FakeGpu, link: int) -> int:  # noqa: N802
    g = _check(h, "nvmlDeviceGetNvLinkState")
    if g.nvlinks is None:
        raise NVMLError_NotSupported()
    if not 0 <= link < NVML_NVLINK_MAX_LINKS:
        raise NVMLError_InvalidArgument()
    return NVML_FEATURE_ENABLED if link < g.nvlinks else NVML_FEATURE_DISABLED


def nvmlDeviceGetTemperature(h: FakeGpu, sensor: int) -> int:  # noqa: N802
    return _check(h, "nvmlDeviceGetTemperature").temperature


def nvmlDeviceGetUtilizationRates(h: FakeGpu) -> SimpleNamespace:  # noqa: N802
    g = _check(h, "nvmlDeviceGetUtilizationRates")
    return SimpleNamespace(gpu=g.utilization[0], memory=g.utilization[1])


def nvmlDeviceGetCurrentClocksEventReasons(h: FakeGpu) -> int:  # noqa: N802
    return _check(h, "nvmlDeviceGetCurrentClocksEventReasons").clocks_event_reasons


def nvmlDeviceGetCurrentClocksThrottleReasons(h: FakeGpu) -> int:  # noqa: N802
    return _check(h, "nvmlDeviceGetCurrentClocksThrottleReasons").clocks_event_reasons


def nvmlDeviceGetComputeRunningProcesses(h: FakeGpu) -> list[SimpleNamespace]:  # noqa: N802
    g = _check(h, "nvmlDeviceGetComputeRunningProcesses")
    return [SimpleNamespace(pid=1000 + i, usedGpuMemory=1 << 30) for i in range(g.processes)]


# Appended for fer_bench.measure.energy: the energy counter reads a FakeGpu's ``total_energy_mj`` attribute (set
# it on the object; 0 when unset) and, like the other readings, raises NotSupported when named in not_supported.
def nvmlDeviceGetTotalEnergyConsumption(h: FakeGpu) -> int:  # noqa: N802
    return getattr(_check(h, "nvmlDeviceGetTotalEnergyConsumption"), "total_energy_mj", 0)
