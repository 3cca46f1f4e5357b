"""fer_bench.machine.peaks: the datasheet peak table, GPU name matching, step dtype and MFU."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fer_bench.machine import peaks
from fer_bench.machine.peaks import (CPU_REASON, DTYPES, GPU_PEAKS, NO_FLOPS_REASON, USER_PEAK_SOURCE, compute_mfu,
                                     match_gpu, peak_tflops, step_dtype)

# NVML / torch.cuda.get_device_name names -> the table's model.
NAMES = {
    "NVIDIA H100 80GB HBM3": "H100 SXM5",
    "NVIDIA H100 SXM5 80GB": "H100 SXM5",
    "NVIDIA H100 PCIe": "H100 PCIe",
    "NVIDIA H100 80GB PCIe": "H100 PCIe",
    "NVIDIA H100 NVL": "H100 NVL",
    "NVIDIA A100-SXM4-80GB": "A100",
    "NVIDIA A100-SXM4-40GB": "A100",
    "NVIDIA A100-PCIE-40GB": "A100",
    "NVIDIA A100 80GB PCIe": "A100",
    "A100-SXM4-40GB": "A100",
    "Tesla V100-SXM2-16GB": "V100 SXM2",
    "Tesla V100-SXM2-32GB": "V100 SXM2",
    "Tesla V100-PCIE-32GB": "V100 PCIe",
    "Tesla V100-PCIE-16GB": "V100 PCIe",
    "Tesla V100S-PCIE-32GB": "V100S PCIe",
    "Tesla T4": "T4",
    "NVIDIA T4": "T4",
    "NVIDIA A10": "A10",
    "NVIDIA A30": "A30",
    "NVIDIA A40": "A40",
    "NVIDIA L4": "L4",
    "NVIDIA L40": "L40",
    "NVIDIA L40S": "L40S",
    "NVIDIA H200": "H200 SXM",
    "NVIDIA H200 NVL": "H200 NVL",
    "NVIDIA GH200 480GB": "GH200",
    "NVIDIA B200": "B200",
    "NVIDIA GeForce RTX 4090": "RTX 4090",
    "NVIDIA RTX A6000": "RTX A6000",
    "NVIDIA RTX 6000 Ada Generation": "RTX 6000 Ada",
    # case and spacing do not matter
    "nvidia  h100   pcie": "H100 PCIe",
    " NVIDIA L40S ": "L40S",
}

# Names that must not match anything (or must not match a near neighbour).
UNMATCHED = [
    "NVIDIA A10G",                       # AWS: lower tensor peaks than the A10, no datasheet
    "NVIDIA H100",                       # which variant?
    "Tesla V100-SXM3-32GB",              # other clocks
    "Tesla V100-DGXS-32GB",
    "NVIDIA A100-SXM4-40GB MIG 1g.5gb",  # a slice
    "NVIDIA GeForce RTX 4090 Laptop GPU",
    "NVIDIA GeForce RTX 4090 D",
    "NVIDIA GeForce RTX 4080",
    "NVIDIA GeForce RTX 3090",
    "NVIDIA GB200",                      # not the HGX B200
    "NVIDIA H20",                        # not the H200
    "NVIDIA H800",
    "NVIDIA A800-SXM4-80GB",
    "NVIDIA T400",                       # not the T4
    "NVIDIA RTX A4000",
    "Quadro RTX 6000",                   # Turing, not the RTX 6000 Ada
    "AMD Instinct MI300X",
    "NVIDIA Foo",
    "",
]


@pytest.mark.parametrize("name, model", sorted(NAMES.items()))
def test_match_gpu_names(name, model):
    entry = match_gpu(name)
    assert entry is not None, name
    assert entry.model == model
    assert peak_tflops(name, "fp32").gpu == model


@pytest.mark.parametrize("name", UNMATCHED)
def test_unmatched_names_give_none_with_reason(name):
    assert match_gpu(name) is None
    for dtype in DTYPES:
        lookup = peak_tflops(name, dtype)
        assert lookup.tflops is None and lookup.source is None and lookup.gpu is None
        assert "MFU is not computed rather than guessed" in lookup.reason
        assert lookup.dtype == dtype


def test_match_none_name():
    assert match_gpu(None) is None
    assert "unknown" in peak_tflops(None, "bf16").reason


def test_near_neighbours_are_told_apart():
    assert match_gpu("NVIDIA A10").model == "A10"
    assert match_gpu("NVIDIA A100-PCIE-40GB").model == "A100"
    assert match_gpu("NVIDIA A10G") is None
    assert "A10G is not the A10" in peak_tflops("NVIDIA A10G", "fp16").reason
    assert match_gpu("NVIDIA L40S").model == "L40S"
    assert match_gpu("NVIDIA L40").model == "L40"
    assert match_gpu("NVIDIA L4").model == "L4"
    assert GPU_PEAKS["L40S"].fp16 != GPU_PEAKS["L40"].fp16
    models = {match_gpu(n).model for n in ("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100 NVL")}
    assert models == {"H100 SXM5", "H100 PCIe", "H100 NVL"}
    assert len({GPU_PEAKS[m].bf16 for m in models}) == 3  # the three variants' peaks differ
    assert match_gpu("NVIDIA GH200 480GB").model == "GH200"
    assert match_gpu("NVIDIA H200 NVL").model == "H200 NVL"
    assert "which H100" in peak_tflops("NVIDIA H100", "bf16").reason
    assert "MIG" in peak_tflops("NVIDIA H100 80GB HBM3 MIG 1g.10gb", "bf16").reason


def test_unknown_gpu_reason_text():
    reason = peak_tflops("NVIDIA Foo", "bf16").reason
    assert reason == ("GPU 'NVIDIA Foo' is not in fer_bench's peak table (fer_bench.machine.peaks): MFU is not "
                      "computed rather than guessed (pass --fer-peak-tflops to give the peak)")


def test_every_entry_has_source_and_positive_values_or_reason():
    assert len(GPU_PEAKS) >= 20
    for model, entry in GPU_PEAKS.items():
        assert entry.model == model
        assert "NVIDIA" in entry.source and "https://" in entry.source, model
        assert entry.fp32 is not None and entry.fp16 is not None, model
        for dtype in DTYPES:
            value = entry.tflops(dtype)
            if value is None:
                assert entry.missing_reason(dtype), (model, dtype)
                assert dtype in dict(entry.missing), (model, dtype)
            else:
                assert isinstance(value, float) and value > 0, (model, dtype)
                assert entry.missing_reason(dtype) is None
        assert set(dict(entry.missing)) <= {d for d in DTYPES if entry.tflops(d) is None}, model


def test_tensor_core_peaks_exceed_fp32():
    for model, entry in GPU_PEAKS.items():
        # every GPU in the table has fp16 tensor cores: at least twice fp32 (the GeForce RTX 4090's fp32-accumulate
        # rate is exactly 2x; data-centre parts are 4x to 16x)
        assert entry.fp16 >= 2 * entry.fp32, model
        if entry.tf32 is not None:
            assert entry.fp32 <= entry.tf32 <= entry.fp16, model
        if entry.bf16 is not None:
            assert entry.bf16 == entry.fp16, model  # bf16 and fp16 tensor rates are equal on every part listed


def test_every_model_is_reachable_by_a_name():
    assert {entry.model for entry in map(match_gpu, NAMES)} == set(GPU_PEAKS)


@pytest.mark.parametrize("name, dtype, value", [
    ("NVIDIA A100-SXM4-80GB", "bf16", 312.0),
    ("NVIDIA A100-PCIE-40GB", "bf16", 312.0),  # PCIe and SXM: same peaks
    ("NVIDIA A100-SXM4-40GB", "tf32", 156.0),
    ("NVIDIA A100-SXM4-40GB", "fp32", 19.5),
    ("NVIDIA H100 80GB HBM3", "bf16", 989.4),  # dense; 1979 with sparsity
    ("NVIDIA H100 80GB HBM3", "fp16", 989.4),
    ("NVIDIA H200", "bf16", 989.4),
    ("Tesla V100-SXM2-16GB", "fp16", 125.0),
    ("Tesla V100-SXM2-16GB", "fp32", 15.7),
    ("Tesla V100-PCIE-32GB", "fp16", 112.0),
    ("Tesla T4", "fp16", 65.0),
    ("Tesla T4", "fp32", 8.1),
    ("NVIDIA A10", "bf16", 125.0),
    ("NVIDIA L4", "bf16", 121.0),
    ("NVIDIA GeForce RTX 4090", "fp16", 165.2),  # fp32 accumulate: half the fp16-accumulate 330.3
])
def test_well_known_dense_values(name, dtype, value):
    lookup = peak_tflops(name, dtype)
    assert lookup.tflops == value
    assert lookup.source and lookup.reason is None


def test_dense_not_sparse():
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16").tflops < 1979 / 1.9
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "fp16").tflops < 624 / 1.9
    assert "sparsity" in peaks.__doc__ and "dense" in peaks.__doc__.lower()


def test_v100_has_no_bf16_or_tf32():
    for name in ("Tesla V100-SXM2-16GB", "Tesla V100-PCIE-32GB", "Tesla V100S-PCIE-32GB"):
        bf16 = peak_tflops(name, "bf16")
        assert bf16.tflops is None and bf16.source is None
        assert "no bf16 tensor cores" in bf16.reason and "V100" in bf16.reason
        assert bf16.gpu is not None
        assert "no tf32 tensor cores" in peak_tflops(name, "tf32").reason
    assert "no bf16 tensor cores" in peak_tflops("Tesla T4", "bf16").reason


def test_unknown_dtype_raises():
    with pytest.raises(ValueError, match="fp8"):
        peak_tflops("NVIDIA A10", "fp8")


@pytest.mark.parametrize("precision, tf32, dtype", [
    ("fp32", False, "fp32"), ("fp32", True, "tf32"),
    ("amp_fp16", False, "fp16"), ("amp_fp16", True, "fp16"),
    ("amp_bf16", False, "bf16"), ("amp_bf16", True, "bf16"),
    ("bf16", False, "bf16"), ("bf16", True, "bf16"),
])
def test_step_dtype(precision, tf32, dtype):
    assert step_dtype(precision, tf32) == dtype


def test_step_dtype_unknown_precision():
    with pytest.raises(ValueError, match="fp64"):
        step_dtype("fp64", False)


def test_compute_mfu_known_gpu():
    result = compute_mfu(156.0, device_type="cuda", gpu_name="NVIDIA A100-SXM4-80GB", precision="amp_bf16",
                         tf32=False)
    assert result["peak_tflops"] == 312.0 and result["peak_dtype"] == "bf16"
    assert "A100" in result["peak_source"]
    assert result["mfu"] == pytest.approx(0.5)
    assert "mfu_reason" not in result
    tf32 = compute_mfu(39.0, device_type="cuda", gpu_name="NVIDIA A100-SXM4-80GB", precision="fp32", tf32=True)
    assert tf32["peak_dtype"] == "tf32" and tf32["mfu"] == pytest.approx(0.25)
    fp32 = compute_mfu(9.75, device_type="cuda", gpu_name="NVIDIA A100-SXM4-80GB", precision="fp32", tf32=False)
    assert fp32["peak_dtype"] == "fp32" and fp32["mfu"] == pytest.approx(0.5)


def test_compute_mfu_unknown_gpu_is_none_not_a100():
    result = compute_mfu(100.0, device_type="cuda", gpu_name="NVIDIA Foo", precision="amp_bf16", tf32=False)
    assert result == {"peak_tflops": None, "peak_dtype": "bf16", "peak_source": None, "mfu": None,
                      "mfu_reason": peak_tflops("NVIDIA Foo", "bf16").reason}
    assert "not in fer_bench's peak table" in result["mfu_reason"]
    none_name = compute_mfu(100.0, device_type="cuda", gpu_name=None, precision="fp32", tf32=False)
    assert none_name["mfu"] is None and none_name["peak_tflops"] is None and none_name["mfu_reason"]


def test_compute_mfu_missing_dtype():
    result = compute_mfu(10.0, device_type="cuda", gpu_name="Tesla V100-SXM2-16GB", precision="bf16", tf32=False)
    assert result["mfu"] is None and result["peak_tflops"] is None and result["peak_source"] is None
    assert "no bf16 tensor cores" in result["mfu_reason"]


def test_compute_mfu_tf32_on_pre_ampere_uses_fp32_peak():
    # allow_tf32 does nothing on Volta/Turing: the fp32 step ran on CUDA cores
    result = compute_mfu(7.85, device_type="cuda", gpu_name="Tesla V100-SXM2-16GB", precision="fp32", tf32=True)
    assert result["peak_dtype"] == "fp32" and result["peak_tflops"] == 15.7
    assert result["mfu"] == pytest.approx(0.5)


def test_compute_mfu_cpu():
    result = compute_mfu(1.0, device_type="cpu", gpu_name=None, precision="fp32", tf32=False)
    assert result == {"peak_tflops": None, "peak_dtype": "fp32", "peak_source": None, "mfu": None,
                      "mfu_reason": CPU_REASON}
    assert CPU_REASON == "no datasheet peak for CPUs: pass --fer-peak-tflops"
    user = compute_mfu(1.0, device_type="cpu", gpu_name=None, precision="amp_bf16", tf32=False,
                       user_peak_tflops=4.0)
    assert user == {"peak_tflops": 4.0, "peak_dtype": "bf16", "peak_source": USER_PEAK_SOURCE, "mfu": 0.25}


def test_compute_mfu_other_device_type():
    result = compute_mfu(1.0, device_type="mps", gpu_name=None, precision="fp32", tf32=False)
    assert result["mfu"] is None and "'mps'" in result["mfu_reason"] and "--fer-peak-tflops" in result["mfu_reason"]


def test_user_peak_overrides_table():
    result = compute_mfu(100.0, device_type="cuda", gpu_name="NVIDIA A100-SXM4-80GB", precision="amp_bf16",
                         tf32=False, user_peak_tflops=200.0)
    assert result["peak_tflops"] == 200.0 and result["peak_source"] == USER_PEAK_SOURCE
    assert result["mfu"] == pytest.approx(0.5)
    unknown = compute_mfu(50.0, device_type="cuda", gpu_name="NVIDIA Foo", precision="fp32", tf32=True,
                          user_peak_tflops=100.0)
    assert unknown["mfu"] == pytest.approx(0.5) and unknown["peak_dtype"] == "tf32"


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_user_peak_must_be_positive(bad):
    with pytest.raises(ValueError, match="--fer-peak-tflops"):
        compute_mfu(1.0, device_type="cpu", gpu_name=None, precision="fp32", tf32=False, user_peak_tflops=bad)


def test_no_flop_count():
    result = compute_mfu(None, device_type="cuda", gpu_name="NVIDIA A100-SXM4-80GB", precision="amp_bf16",
                         tf32=False)
    assert result["mfu"] is None and result["mfu_reason"] == NO_FLOPS_REASON
    assert result["peak_tflops"] == 312.0  # the peak is still reported
    both = compute_mfu(None, device_type="cpu", gpu_name=None, precision="fp32", tf32=False)
    assert both["mfu"] is None
    assert both["mfu_reason"].startswith(NO_FLOPS_REASON) and CPU_REASON in both["mfu_reason"]
    nan = compute_mfu(float("nan"), device_type="cpu", gpu_name=None, precision="fp32", tf32=False,
                      user_peak_tflops=1.0)
    assert nan["mfu"] is None and "finite" in nan["mfu_reason"]


def test_never_guesses_a_default():
    # the torchtitan failure mode: an unknown GPU silently measured against the A100's 312
    for name in ("NVIDIA Foo", "NVIDIA A10G", "NVIDIA H100", "AMD Instinct MI300X", "NVIDIA GeForce RTX 3090"):
        for dtype in DTYPES:
            assert peak_tflops(name, dtype).tflops is None
        for precision in ("fp32", "amp_fp16", "amp_bf16", "bf16"):
            result = compute_mfu(100.0, device_type="cuda", gpu_name=name, precision=precision, tf32=True)
            assert result["mfu"] is None and result["peak_tflops"] is None and result["mfu_reason"]


def test_table_is_read_only():
    with pytest.raises(TypeError):
        GPU_PEAKS["X"] = GPU_PEAKS["A100"]  # type: ignore[index]


def test_importable_without_torch():
    code = ("import sys; sys.modules['torch'] = None; import fer_bench.machine.peaks as p; "
            "assert p.match_gpu('NVIDIA L4').model == 'L4'")
    subprocess.run([sys.executable, "-c", code], check=True)
