"""The process's heap allocator: which one it is, and a steady glibc malloc for benchmarking.

glibc's malloc adapts while a program runs. Freeing an mmap'd chunk raises the mmap threshold (``M_MMAP_THRESHOLD``
is dynamic until something sets it), and the top of the heap goes back to the kernel whenever more than
``M_TRIM_THRESHOLD`` (128 KiB) of it is free. A training step frees and reallocates the same activation buffers
every step, so whether they come from the heap or from fresh mmaps (a page fault per 4 KiB page, every step)
depends on the order of the process's earlier allocations. Measured on a 2-core VM (``scripts/malloc_noise.py``,
docs/gate.md): a batch-16 CNN training step made about 1,300 page faults per step with glibc's defaults and 6 with
the steady settings below; the median step time of 12 processes varied with a standard deviation of 6.1% between
processes, against 1.2%, and the step was 11% faster.

Modes (``--fer-malloc``; the fingerprint records the result as ``software.malloc``, part of the identity, so the
gates never compare a steady run with an unsteady one):

* ``steady`` (the default): ``mallopt(M_MMAP_THRESHOLD, 32 MiB)`` (the largest glibc accepts on 64-bit; setting it
  also switches the dynamic threshold off), ``M_TRIM_THRESHOLD`` 1 GiB and ``M_TOP_PAD`` 64 MiB. Freed buffers
  stay in the heap, so steady-state steps reuse warm pages. Memory goes back to the kernel later than usual;
  the CPU peak-memory figure trims the heap first (``release_free_heap``), so it still counts a case's
  activations. Recorded as ``glibc-steady``.
* ``system``: malloc as the process started. Recorded as ``glibc`` (or the C library's name).

A preloaded allocator (``LD_PRELOAD`` of jemalloc, tcmalloc or mimalloc, as ``torch.backends.xeon.run_cpu``
arranges) is left alone in both modes and recorded by name. ``mallopt`` settings live in process memory, so
forked DataLoader workers inherit them; workers started with ``spawn`` begin with glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform
from pathlib import Path

MODES = ("steady", "system")
# mallopt parameter numbers from glibc's malloc.h.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
STEADY_SETTINGS = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 1 << 30, M_TOP_PAD: 64 << 20}
SETTING_NAMES = {M_TRIM_THRESHOLD: "M_TRIM_THRESHOLD", M_TOP_PAD: "M_TOP_PAD", M_MMAP_THRESHOLD: "M_MMAP_THRESHOLD"}
PRELOADED = ("jemalloc", "tcmalloc", "mimalloc")
MAPS_PATH = Path("/proc/self/maps")

_steady = False  # whether configure_malloc("steady") took effect in this process


def preloaded_allocator(maps_path: Path | None = None) -> str | None:
    """The name of a replacement malloc mapped into this process (jemalloc, tcmalloc, mimalloc), or None."""
    try:
        maps = (maps_path or MAPS_PATH).read_text()
    except OSError:
        return None
    for name in PRELOADED:
        if f"lib{name}" in maps:
            return name
    return None


@functools.lru_cache(maxsize=None)
def _load_glibc():
    """glibc as a ctypes library, or None on another C library (musl, macOS, Windows); loaded once."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def configure_malloc(mode: str, *, libc=None, maps_path: Path | None = None) -> str:
    """Apply ``mode`` (see the module docstring) to this process's malloc; returns what ``describe_malloc`` says.

    ``libc`` and ``maps_path`` are for tests (a fake with a ``mallopt`` method, a fake maps file).
    Raises ValueError for an unknown mode; a C library without ``mallopt`` leaves malloc as it is.
    """
    global _steady
    if mode not in MODES:
        raise ValueError(f"unknown malloc mode {mode!r}; choose from {', '.join(MODES)}")
    if mode == "steady" and preloaded_allocator(maps_path) is None:
        libc = libc if libc is not None else _load_glibc()
        if libc is not None:
            rejected = [SETTING_NAMES[p] for p, v in STEADY_SETTINGS.items() if libc.mallopt(p, v) != 1]
            if rejected:
                raise RuntimeError(f"mallopt rejected {', '.join(rejected)}")
            _steady = True
    return describe_malloc(maps_path=maps_path, libc_name=None if libc is None else "glibc")


def release_free_heap(*, libc=None) -> bool:
    """Return free heap pages to the kernel (glibc's ``malloc_trim(0)``), so RSS counts live memory only.

    The steady settings keep freed buffers resident between steps; a peak-memory figure taken as RSS growth
    calls this first. Returns whether anything was released; False without glibc.
    """
    libc = libc if libc is not None else _load_glibc()
    return bool(libc is not None and libc.malloc_trim(0))


def describe_malloc(*, maps_path: Path | None = None, libc_name: str | None = None) -> str:
    """``jemalloc`` / ``tcmalloc`` / ``mimalloc`` when preloaded, else ``glibc-steady``, ``glibc``, or the C
    library's name as ``platform.libc_ver`` gives it (``system`` when it gives none)."""
    name = preloaded_allocator(maps_path)
    if name:
        return name
    libc_name = libc_name or platform.libc_ver()[0] or "system"
    return f"{libc_name}-steady" if _steady else libc_name
