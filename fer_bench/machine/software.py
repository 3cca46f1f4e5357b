"""The software stack's facts: package versions, torch's CUDA, cuDNN, NCCL and threads, the malloc in use, and
the environment variables that change how a run uses threads and devices."""

from __future__ import annotations

import os
from importlib import metadata

from fer_bench import __version__
from fer_bench.machine._collect import try_call

ENV_VARS = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
    "OMP_PROC_BIND", "OMP_PLACES", "KMP_AFFINITY", "KMP_BLOCKTIME", "GOMP_CPU_AFFINITY",
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "CUDA_LAUNCH_BLOCKING", "CUBLAS_WORKSPACE_CONFIG",
    "PYTORCH_CUDA_ALLOC_CONF", "NCCL_P2P_DISABLE", "NCCL_IB_DISABLE", "NCCL_ALGO", "NCCL_PROTO",
)
_DISTRIBUTIONS = {"torch": "torch", "torchvision": "torchvision", "timm": "timm", "numpy": "numpy",
                  "pytest_benchmark": "pytest-benchmark", "nvidia_ml_py": "nvidia-ml-py"}


def _format_cudnn(version: int | None) -> str | None:
    if not version:
        return None
    # cuDNN 9 packs major*10000 + minor*100 + patch; earlier releases major*1000 + minor*100 + patch.
    major, rest = divmod(version, 10000) if version >= 90000 else divmod(version, 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def collect_software_info(info: dict) -> None:
    """Package versions, torch's CUDA / cuDNN / NCCL and threads, and the thread / device env vars.

    torch is imported here, never at module level; nothing below creates a CUDA context.
    """
    from fer_bench.machine.allocator import describe_malloc

    sw = info.setdefault("software", {})
    sw["fer_bench"] = __version__
    sw["malloc"] = try_call(describe_malloc)
    for key, dist in _DISTRIBUTIONS.items():
        sw[key] = try_call(lambda: metadata.version(dist))
    try:
        import torch
    except Exception as exc:
        sw["torch"] = None
        sw["torch_error"] = f"{type(exc).__name__}: {exc}"
    else:
        sw["torch"] = try_call(lambda: str(torch.__version__))
        sw["torch_cuda"] = try_call(lambda: torch.version.cuda)
        sw["torch_hip"] = try_call(lambda: torch.version.hip)
        sw["cudnn"] = _format_cudnn(try_call(torch.backends.cudnn.version)) if sw["torch_cuda"] else None
        nccl = try_call(torch.cuda.nccl.version) if sw["torch_cuda"] else None
        sw["nccl"] = ".".join(map(str, nccl)) if isinstance(nccl, (tuple, list)) else (str(nccl) if nccl else None)
        sw["cuda_device_count"] = try_call(torch.cuda.device_count)
        sw["torch_num_threads"] = try_call(torch.get_num_threads)
        sw["torch_num_interop_threads"] = try_call(torch.get_num_interop_threads)
        for name in ("mkldnn", "mkl", "openmp"):
            sw[f"{name}_available"] = try_call(lambda: bool(getattr(torch.backends, name).is_available()))
    sw["env"] = {name.lower(): os.environ[name] for name in ENV_VARS if name in os.environ}
