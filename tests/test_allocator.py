"""fer_bench.machine.allocator: the steady glibc malloc settings, with a fake libc, and their effect on the real glibc."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from fer_bench.machine import allocator
from fer_bench.machine.allocator import M_MMAP_THRESHOLD, M_TOP_PAD, M_TRIM_THRESHOLD, configure_malloc, describe_malloc


class FakeLibc:
    def __init__(self, reject=()):
        self.calls = []
        self.reject = set(reject)

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 0 if param in self.reject else 1


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch, tmp_path):
    monkeypatch.setattr(allocator, "_steady", False)
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 00:00 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    monkeypatch.setattr(allocator, "MAPS_PATH", maps)
    return maps


def test_steady_sets_the_three_thresholds():
    libc = FakeLibc()
    assert configure_malloc("steady", libc=libc) == "glibc-steady"
    assert dict(libc.calls) == {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 1 << 30, M_TOP_PAD: 64 << 20}
    assert describe_malloc(libc_name="glibc") == "glibc-steady"


def test_system_leaves_malloc_alone():
    libc = FakeLibc()
    assert configure_malloc("system", libc=libc) == "glibc"
    assert libc.calls == []


def test_a_rejected_setting_is_an_error_naming_it():
    with pytest.raises(RuntimeError, match="mallopt rejected M_MMAP_THRESHOLD"):
        configure_malloc("steady", libc=FakeLibc(reject={M_MMAP_THRESHOLD}))
    assert allocator._steady is False


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown malloc mode 'fast'; choose from steady, system"):
        configure_malloc("fast", libc=FakeLibc())


@pytest.mark.parametrize("name", ["jemalloc", "tcmalloc", "mimalloc"])
def test_a_preloaded_allocator_is_left_alone_and_named(fresh_state, name):
    fresh_state.write_text(fresh_state.read_text() + f"7f02-7f03 r-xp 0 00:00 2 /usr/lib/lib{name}.so.2\n")
    libc = FakeLibc()
    assert configure_malloc("steady", libc=libc) == name
    assert libc.calls == []


def test_unreadable_maps_means_no_preloaded_allocator(monkeypatch, tmp_path):
    monkeypatch.setattr(allocator, "MAPS_PATH", tmp_path / "missing")
    assert allocator.preloaded_allocator() is None


PROBE = textwrap.dedent("""
    import ctypes, json, sys
    from fer_bench.machine.allocator import configure_malloc

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    described = configure_malloc(sys.argv[1])
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(16 << 20)
    mmapped = libc.mallinfo2().hblkhd - before
    libc.free(block)
    print(json.dumps({"described": described, "mmapped": mmapped}))
""")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt and mallinfo2 are glibc's")
@pytest.mark.parametrize("mode, described, mmapped", [("system", "glibc", True), ("steady", "glibc-steady", False)])
def test_real_glibc_keeps_a_16_mib_buffer_in_the_heap_only_when_steady(mode, described, mmapped):
    """A fresh process: glibc's default threshold (128 KiB) mmaps a 16 MiB block; the steady one keeps it in the
    heap, where a freed block is reused instead of being unmapped and faulted in again."""
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    facts = json.loads(out.stdout)
    assert facts["described"] == described
    assert (facts["mmapped"] >= 16 << 20) is mmapped


def test_release_free_heap_calls_malloc_trim():
    class Trim:
        def __init__(self):
            self.calls = []

        def malloc_trim(self, pad):
            self.calls.append(pad)
            return 1

    libc = Trim()
    assert allocator.release_free_heap(libc=libc) is True
    assert libc.calls == [0]


PEAK_PROBE = textwrap.dedent("""
    import json, sys
    import torch
    from fer_bench.machine.allocator import configure_malloc
    from fer_bench.measure.timing import measure

    configure_malloc(sys.argv[1])

    class Benchmark:  # what measure() uses of pytest-benchmark's fixture
        extra_info = {}
        stats = None

        def pedantic(self, target, rounds, iterations, warmup_rounds):
            for _ in range(rounds):
                target()

    def step():
        torch.ones(4 << 20).sum()  # 16 MiB, touched, freed at once

    info = measure(Benchmark(), step, device="cpu", samples_per_call=1, phase="x", min_rounds=3, max_rounds=3)
    print(json.dumps(info["peak_memory_bytes"]))
""")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not os.access("/proc/self/clear_refs", os.W_OK),
                    reason="needs glibc and a writable /proc/self/clear_refs")
@pytest.mark.parametrize("mode", ["steady", "system"])
def test_cpu_peak_memory_counts_buffers_the_heap_kept(mode):
    """A step's 16 MiB buffer stays resident in the heap after the cold call; the peak must still count it."""
    out = subprocess.run([sys.executable, "-c", PEAK_PROBE, mode], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) >= 15 << 20
