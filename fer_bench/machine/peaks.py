"""Datasheet peak FLOP/s per GPU model and dtype, and MFU (model FLOPs utilisation).

MFU is the FLOP/s a training step achieved (the model's FLOP count per step over the step's time) divided by the
hardware's peak FLOP/s *for the dtype the step's matmuls and convolutions ran in*: fp32 on CUDA cores, tf32, fp16 or
bf16 on tensor cores (:func:`step_dtype` maps a fer_bench precision and the TF32 switch to that dtype). It says how
much of the silicon the step used, which images/s alone cannot: 3000 images/s is good on a T4 and poor on an H100.

The figures are **dense** peaks, in TFLOP/s (10**12 FLOP/s, one fused multiply-add counted as two FLOPs), at the
boost clock NVIDIA rates the part at:

* tensor-core figures (tf32, fp16, bf16) are *without* 2:4 structured sparsity. NVIDIA's Ampere-and-later
  datasheets print the sparse figure (marked "*" / "with sparsity"); it is exactly twice the dense one and applies
  only to pruned weights, which a training step never has, so the table holds the printed figure halved.
* fp16 is the rate with **fp32 accumulation**, since that is what PyTorch's fp16 autocast GEMMs and convolutions do
  (cuBLAS/cuDNN with an fp32 compute type). Data-centre and professional parts run it at full rate; GeForce parts
  run it at half the fp16-accumulate rate, and the table takes the lower, fp32-accumulate figure for them.
* fp32 is plain (non-tensor) FP32 on the CUDA cores: what an fp32 step runs at with TF32 off.

Unknown is ``None`` with a reason, never a default. torchtitan's peak table falls back to the A100's 312 TFLOP/s
for any GPU it does not know, so a T4 would report an MFU five times too low and an H100 one three times too high.
Here a GPU that is not in the table (or whose name does not say which variant it is: "NVIDIA H100" with no
SXM/PCIe/NVL, a MIG slice, a laptop part, the AWS A10G) and a dtype a GPU has no tensor cores for (bf16 on a V100)
give no peak and no MFU, with the reason; ``--fer-peak-tflops`` supplies a peak the table lacks (and overrides it).

Torch-free (the standard library only), so the results readers and reports can use it without torch.

The sources are the NVIDIA datasheets and architecture whitepapers named in each entry; the URLs are the NVIDIA
pages that carry them, as published (not re-fetched when this table was written).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

__all__ = ["CPU_REASON", "DTYPES", "GPU_PEAKS", "NO_FLOPS_REASON", "USER_PEAK_SOURCE", "GpuPeaks", "PeakLookup",
           "compute_mfu", "match_gpu", "peak_tflops", "step_dtype"]

#: The dtypes a peak is looked up for.
DTYPES = ("fp32", "tf32", "fp16", "bf16")
#: Where a peak given on the command line says it came from.
USER_PEAK_SOURCE = "--fer-peak-tflops"
CPU_REASON = "no datasheet peak for CPUs: pass --fer-peak-tflops"
NO_FLOPS_REASON = "no FLOP count for this step"


@dataclass(frozen=True)
class GpuPeaks:
    """One GPU model's dense peak TFLOP/s per dtype, the document they come from, and why a dtype has none."""

    model: str
    fp32: float | None
    tf32: float | None
    fp16: float | None
    bf16: float | None
    source: str
    #: (dtype, reason) for each dtype whose peak is None.
    missing: tuple[tuple[str, str], ...] = ()
    note: str = ""

    def tflops(self, dtype: str) -> float | None:
        return getattr(self, _check_dtype(dtype))

    def missing_reason(self, dtype: str) -> str | None:
        """Why this GPU has no peak for ``dtype``; None when it has one."""
        if self.tflops(dtype) is not None:
            return None
        return dict(self.missing).get(dtype, f"{self.model} has no {dtype} peak in fer_bench's peak table")


@dataclass(frozen=True)
class PeakLookup:
    """The answer to "what is the peak of this GPU in this dtype": a figure and its source, or None and why
    (``source`` is set exactly when ``tflops`` is; ``gpu`` is the matched model even when the dtype has no peak)."""

    tflops: float | None
    source: str | None
    reason: str | None
    gpu: str | None  # the table's model the name matched, None when none did
    dtype: str


def _volta(model: str) -> tuple[tuple[str, str], ...]:
    return (("tf32", f"{model} has no tf32 tensor cores (Volta; TF32 arrived with Ampere)"),
            ("bf16", f"{model} has no bf16 tensor cores (Volta; bf16 arrived with Ampere)"))


def _turing(model: str) -> tuple[tuple[str, str], ...]:
    return (("tf32", f"{model} has no tf32 tensor cores (Turing; TF32 arrived with Ampere)"),
            ("bf16", f"{model} has no bf16 tensor cores (Turing; bf16 arrived with Ampere)"))


_V100_SOURCE = ("NVIDIA Tesla V100 GPU Accelerator datasheet (SXM2 and PCIe columns: single precision, "
                "tensor performance); NVIDIA Tesla V100 GPU Architecture whitepaper, "
                "https://www.nvidia.com/en-us/data-center/v100/ , "
                "https://images.nvidia.com/content/volta-architecture/pdf/volta-architecture-whitepaper.pdf")
_HOPPER_SXM_NOTE = ("dense = the datasheet's sparse figure halved (TF32 989, FP16/BF16 1,979 with sparsity); "
                    "494.7 and 989.4 are the exact dense figures of the H100 architecture whitepaper (528 tensor "
                    "cores at the 1,830 MHz tensor boost clock)")
_HOPPER_NVL_NOTE = ("dense = the datasheet's per-GPU sparse figure halved (TF32 835, FP16/BF16 1,671 with sparsity); "
                    "the first H100 NVL datasheet listed the two-card pair, which is not used here")

_ENTRIES = (
    # Volta: fp16 tensor cores only (no sparsity on Volta: the datasheet figure is dense).
    GpuPeaks("V100 SXM2", 15.7, None, 125.0, None, _V100_SOURCE, _volta("V100 SXM2"),
             "fp16 = tensor performance (mixed precision, fp32 accumulate)"),
    GpuPeaks("V100 PCIe", 14.0, None, 112.0, None, _V100_SOURCE, _volta("V100 PCIe"),
             "fp16 = tensor performance (mixed precision, fp32 accumulate)"),
    GpuPeaks("V100S PCIe", 16.4, None, 130.0, None,
             "NVIDIA V100 Tensor Core GPU datasheet (V100S PCIe column), "
             "https://www.nvidia.com/en-us/data-center/v100/",
             _volta("V100S PCIe"), "fp16 = tensor performance (mixed precision, fp32 accumulate)"),
    # Turing.
    GpuPeaks("T4", 8.1, None, 65.0, None,
             "NVIDIA T4 Tensor Core GPU datasheet (single precision 8.1 TFLOPS; mixed precision FP16/FP32 "
             "65 TFLOPS), https://www.nvidia.com/en-us/data-center/tesla-t4/",
             _turing("T4"), "no sparsity on Turing: the datasheet figures are dense"),
    # Ampere data centre: sparse figures halved.
    GpuPeaks("A100", 19.5, 156.0, 312.0, 312.0,
             "NVIDIA A100 Tensor Core GPU datasheet (SXM and PCIe, 40GB and 80GB: same peaks), "
             "https://www.nvidia.com/en-us/data-center/a100/ ; NVIDIA A100 Tensor Core GPU Architecture whitepaper, "
             "https://images.nvidia.com/aem-dam/en-zz/Solutions/data-center/nvidia-ampere-architecture-whitepaper.pdf",
             note="dense; the datasheet's sparse figures are TF32 312, FP16/BF16 624"),
    GpuPeaks("A10", 31.2, 62.5, 125.0, 125.0,
             "NVIDIA A10 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/products/a10-gpu/",
             note="dense; the datasheet's sparse figures are TF32 125, FP16/BF16 250"),
    GpuPeaks("A30", 10.3, 82.0, 165.0, 165.0,
             "NVIDIA A30 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/products/a30-gpu/",
             note="dense; the datasheet's sparse figures are TF32 165, FP16/BF16 330"),
    GpuPeaks("A40", 37.4, 74.8, 149.7, 149.7,
             "NVIDIA A40 GPU datasheet, https://www.nvidia.com/en-us/data-center/a40/",
             note="dense; the datasheet's sparse figures are TF32 149.6, FP16/BF16 299.4 (BF16 with fp32 "
                  "accumulate; fp16 with fp32 accumulate runs at the same full rate on this data-centre part)"),
    # Ampere professional (GA102): full-rate fp32 accumulate, unlike GeForce.
    GpuPeaks("RTX A6000", 38.7, 77.4, 154.8, 154.8,
             "NVIDIA RTX A6000 datasheet (tensor performance 309.7 TFLOPS with sparsity), "
             "https://www.nvidia.com/en-us/design-visualization/rtx-a6000/ ; NVIDIA Ampere GA102 GPU Architecture "
             "whitepaper, https://www.nvidia.com/content/PDF/nvidia-ampere-ga-102-gpu-architecture-whitepaper-v2.pdf",
             note="dense = the sparse 309.7 halved (336 tensor cores at 1,800 MHz); TF32 half of fp16"),
    # Ada Lovelace.
    GpuPeaks("L4", 30.3, 60.0, 121.0, 121.0,
             "NVIDIA L4 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/l4/",
             note="dense; the datasheet prints only sparse figures: TF32 120, FP16/BF16 242"),
    GpuPeaks("L40", 90.5, 90.5, 181.05, 181.05,
             "NVIDIA L40 GPU datasheet, https://www.nvidia.com/en-us/data-center/l40/",
             note="dense; the datasheet's sparse figures are TF32 181, FP16/BF16 362.1"),
    GpuPeaks("L40S", 91.6, 183.0, 362.05, 362.05,
             "NVIDIA L40S GPU datasheet, https://www.nvidia.com/en-us/data-center/l40s/",
             note="dense as printed by the datasheet (TF32 183 | 366 sparse, FP16/BF16 362.05 | 733 sparse)"),
    GpuPeaks("RTX 6000 Ada", 91.1, 182.1, 364.2, 364.2,
             "NVIDIA Ada GPU Architecture whitepaper (RTX 6000 Ada Generation column), "
             "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf ; "
             "NVIDIA RTX 6000 Ada Generation datasheet, https://www.nvidia.com/en-us/design-visualization/rtx-6000/",
             note="dense (the whitepaper's sparse figures: TF32 364.2, FP16/BF16 728.5); professional part: fp16 "
                  "with fp32 accumulate at full rate"),
    GpuPeaks("RTX 4090", 82.6, 82.6, 165.2, 165.2,
             "NVIDIA Ada GPU Architecture whitepaper (GeForce RTX 4090 column), "
             "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf",
             note="GeForce: fp16 is 'Peak FP16 Tensor TFLOPS with FP32 Accumulate' (165.2 dense), half the FP16 "
                  "accumulate figure (330.3), because PyTorch's fp16 autocast GEMMs accumulate in fp32; bf16 is "
                  "fp32-accumulate too; dense (sparse: TF32 165.2, FP16/BF16 330.4)"),
    # Hopper.
    GpuPeaks("H100 SXM5", 67.0, 494.7, 989.4, 989.4,
             "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM column), "
             "https://www.nvidia.com/en-us/data-center/h100/ ; "
             "NVIDIA H100 Tensor Core GPU Architecture whitepaper, "
             "https://resources.nvidia.com/en-us-tensor-core/gtc22-whitepaper-hopper",
             note=_HOPPER_SXM_NOTE),
    GpuPeaks("H100 PCIe", 51.0, 378.0, 756.5, 756.5,
             "NVIDIA H100 Tensor Core GPU datasheet (H100 PCIe column), https://www.nvidia.com/en-us/data-center/h100/",
             note="dense = the datasheet's sparse figure halved (TF32 756, FP16/BF16 1,513 with sparsity)"),
    GpuPeaks("H100 NVL", 60.0, 417.5, 835.5, 835.5,
             "NVIDIA H100 Tensor Core GPU datasheet (H100 NVL column, per GPU), "
             "https://www.nvidia.com/en-us/data-center/h100/",
             note=_HOPPER_NVL_NOTE),
    GpuPeaks("H200 SXM", 67.0, 494.7, 989.4, 989.4,
             "NVIDIA H200 Tensor Core GPU datasheet (H200 SXM column), https://www.nvidia.com/en-us/data-center/h200/",
             note="same GH100 compute as the H100 SXM5; " + _HOPPER_SXM_NOTE),
    GpuPeaks("H200 NVL", 60.0, 417.5, 835.5, 835.5,
             "NVIDIA H200 Tensor Core GPU datasheet (H200 NVL column), https://www.nvidia.com/en-us/data-center/h200/",
             note=_HOPPER_NVL_NOTE),
    GpuPeaks("GH200", 67.0, 494.7, 989.4, 989.4,
             "NVIDIA GH200 Grace Hopper Superchip datasheet (Hopper GPU: FP32 67 TFLOPS; TF32 989, FP16/BF16 1,979 "
             "TFLOPS with sparsity), https://www.nvidia.com/en-us/data-center/grace-hopper-superchip/",
             note="the Hopper GPU's peaks; " + _HOPPER_SXM_NOTE),
    # Blackwell.
    GpuPeaks("B200", 75.0, 1100.0, 2250.0, 2250.0,
             "NVIDIA HGX B200 specifications (individual Blackwell GPU column: FP32 75 TFLOPS, TF32 2.2 PFLOPS, "
             "FP16/BF16 4.5 PFLOPS with sparsity), https://www.nvidia.com/en-us/data-center/hgx/ ; "
             "NVIDIA DGX B200 datasheet, https://www.nvidia.com/en-us/data-center/dgx-b200/",
             note="dense = the sparse figure halved; HGX B200 at up to 1,000 W (the GB200's B200 runs faster and "
                  "is not this entry)"),
)

#: The table: model -> peaks. Read-only.
GPU_PEAKS: Mapping[str, GpuPeaks] = MappingProxyType({e.model: e for e in _ENTRIES})

_SUFFIX = "MFU is not computed rather than guessed (pass --fer-peak-tflops to give the peak)"

# Ordered: the first rule whose pattern is found in the normalised (upper-case, single-spaced) name decides.
# A rule with model None is a name fer_bench recognises but deliberately has no peak for.
# Word boundaries keep A10 from A100/A10G, L40 from L40S/L4, H200 from GH200/H20, B200 from GB200, T4 from T400.
_RULES: tuple[tuple[re.Pattern[str], str | None, str | None], ...] = tuple(
    (re.compile(pattern), model, reason) for pattern, model, reason in (
        (r"\bMIG\b", None, "a MIG instance has only a slice of the GPU's SMs, so the whole GPU's datasheet peak "
                           "does not apply"),
        (r"\b(LAPTOP|MOBILE|MAX-Q)\b", None, "laptop GPUs run at the maker's own power limit and clocks, so no "
                                             "datasheet peak applies"),
        (r"\bA10G\b", None, "the AWS A10G is not the A10: its tensor-core peaks are lower than the A10's and NVIDIA "
                            "publishes no datasheet for it"),
        (r"\bRTX 4090 D\b", None, "the RTX 4090 D has fewer SMs than the RTX 4090 and is not in the table"),
        (r"\bGH200\b", "GH200", None),
        (r"\bH200\b.*\bNVL\b", "H200 NVL", None),
        (r"\bH200\b", "H200 SXM", None),  # NVML names the SXM part plain "NVIDIA H200"
        (r"\bH100\b.*\bNVL\b", "H100 NVL", None),
        (r"\bH100\b.*\b(PCIE|HBM2E)\b", "H100 PCIe", None),  # the H100 PCIe is the HBM2e part
        (r"\bH100\b.*\b(SXM5?|HBM3)\b", "H100 SXM5", None),  # NVML: "NVIDIA H100 80GB HBM3"
        (r"\bH100\b", None, "the name does not say which H100 it is (SXM5, PCIe and NVL have different peaks)"),
        (r"\bB200\b", "B200", None),
        (r"\bA100\b", "A100", None),
        (r"\bA10\b", "A10", None),
        (r"\bA30\b", "A30", None),
        (r"\bA40\b", "A40", None),
        (r"\bRTX A6000\b", "RTX A6000", None),
        (r"\bRTX 6000 ADA\b", "RTX 6000 Ada", None),
        (r"\bRTX 4090\b", "RTX 4090", None),
        (r"\bL40S\b", "L40S", None),
        (r"\bL40\b", "L40", None),
        (r"\bL4\b", "L4", None),
        (r"\bT4\b", "T4", None),
        (r"\bV100S\b", "V100S PCIe", None),
        (r"\bV100\b.*\bSXM2\b", "V100 SXM2", None),
        (r"\bV100\b.*\bPCIE\b", "V100 PCIe", None),
        (r"\bV100\b", None, "the name does not say which V100 it is (SXM2 and PCIe have different peaks; SXM3, "
                            "DGXS and FHHL parts are not in the table)"),
    ))


def _normalise(name: str) -> str:
    return " ".join(name.replace("_", " ").upper().split())


def _match(name: str | None) -> tuple[GpuPeaks | None, str | None]:
    """The table entry a device name is, or None and why not."""
    if name is None or not name.strip():
        return None, f"the GPU's name is unknown: {_SUFFIX}"
    normal = _normalise(name)
    for pattern, model, reason in _RULES:
        if pattern.search(normal):
            if model is None:
                return None, f"GPU {name!r}: {reason}: {_SUFFIX}"
            return GPU_PEAKS[model], None
    return None, f"GPU {name!r} is not in fer_bench's peak table (fer_bench.machine.peaks): {_SUFFIX}"


def match_gpu(name: str | None) -> GpuPeaks | None:
    """The table entry for an NVML / torch device name ("NVIDIA H100 80GB HBM3" -> H100 SXM5), or None.

    None for a name the table does not hold, and for names that do not say which variant they are or whose
    datasheet peak does not apply (plain "NVIDIA H100", a MIG instance, a laptop GPU, the AWS A10G):
    :func:`peak_tflops` says why."""
    return _match(name)[0]


def _check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"unknown peak dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    return dtype


def peak_tflops(name: str | None, dtype: str) -> PeakLookup:
    """The dense datasheet peak TFLOP/s of GPU ``name`` in ``dtype`` (fp32, tf32, fp16, bf16), or None and why."""
    _check_dtype(dtype)
    entry, reason = _match(name)
    if entry is None:
        return PeakLookup(None, None, reason, None, dtype)
    value = entry.tflops(dtype)
    if value is None:
        return PeakLookup(None, None, entry.missing_reason(dtype), entry.model, dtype)
    return PeakLookup(value, entry.source, None, entry.model, dtype)


_STEP_DTYPES = {"amp_fp16": "fp16", "amp_bf16": "bf16", "bf16": "bf16"}


def step_dtype(precision: str, tf32: bool) -> str:
    """The dtype whose peak a step of fer_bench ``precision`` is measured against.

    fp32 runs its matmuls and convolutions in tf32 on tensor cores when TF32 is on, else in fp32 on CUDA cores;
    amp_fp16 in fp16, amp_bf16 and bf16 in bf16 (TF32 only affects fp32 ops, whose share of an autocast step's
    FLOPs is small)."""
    if precision == "fp32":
        return "tf32" if tf32 else "fp32"
    if precision in _STEP_DTYPES:
        return _STEP_DTYPES[precision]
    raise ValueError(f"unknown precision {precision!r}: expected fp32, amp_fp16, amp_bf16 or bf16")


def _mfu_result(peak: float | None, dtype: str, source: str | None, achieved: float | None,
                reasons: list[str]) -> dict:
    result = {"peak_tflops": peak, "peak_dtype": dtype, "peak_source": source, "mfu": None}
    if achieved is None:
        reasons.insert(0, NO_FLOPS_REASON)
    elif not math.isfinite(achieved) or achieved < 0:
        reasons.insert(0, f"achieved TFLOP/s {achieved!r} is not a finite non-negative number")
    if peak is None or reasons:
        result["mfu_reason"] = "; ".join(reasons)
    else:
        result["mfu"] = achieved / peak
    return result


def compute_mfu(achieved_tflops: float | None, *, device_type: str, gpu_name: str | None, precision: str,
                tf32: bool, user_peak_tflops: float | None = None) -> dict:
    """MFU of one step: ``achieved_tflops`` over the peak of the dtype the step ran in.

    Returns ``{"peak_tflops", "peak_dtype", "peak_source", "mfu"}``, plus ``"mfu_reason"`` when mfu is None.
    The peak is ``user_peak_tflops`` when given (source ``--fer-peak-tflops``; it overrides the table), else the
    table's for a CUDA device; CPUs and other device types have no datasheet peak. On a GPU without tf32 tensor
    cores (Volta, Turing) the TF32 switch does nothing and an fp32 step runs in fp32, so it is measured against
    the fp32 peak."""
    dtype = step_dtype(precision, tf32)
    if user_peak_tflops is not None:
        if not (isinstance(user_peak_tflops, (int, float)) and math.isfinite(user_peak_tflops)
                and user_peak_tflops > 0):
            raise ValueError(f"--fer-peak-tflops must be a positive number of TFLOP/s, got {user_peak_tflops!r}")
        return _mfu_result(float(user_peak_tflops), dtype, USER_PEAK_SOURCE, achieved_tflops, [])
    if device_type == "cpu":
        return _mfu_result(None, dtype, None, achieved_tflops, [CPU_REASON])
    if device_type != "cuda":
        return _mfu_result(None, dtype, None, achieved_tflops,
                           [f"no datasheet peak for device type {device_type!r}: pass --fer-peak-tflops"])
    lookup = peak_tflops(gpu_name, dtype)
    if dtype == "tf32" and lookup.tflops is None and lookup.gpu is not None:
        fp32 = peak_tflops(gpu_name, "fp32")
        if fp32.tflops is not None:  # pre-Ampere: allow_tf32 is a no-op, the step ran in fp32
            return _mfu_result(fp32.tflops, "fp32", fp32.source, achieved_tflops, [])
    reasons = [] if lookup.tflops is not None else [lookup.reason or "no peak"]
    return _mfu_result(lookup.tflops, dtype, lookup.source, achieved_tflops, reasons)
