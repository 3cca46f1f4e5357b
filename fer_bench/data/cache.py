"""The decoded-data cache: one folder of .npy arrays per source, built atomically, read memory-mapped.

Layout under ``cache_dir()``::

    entries/<key>/images.npy, splits.npy, labels.npy (labeled sets only), meta.json
    entries/.tmp-<host>-<pid>-<random>/    an entry being built (renamed into place when complete)
    digests/<hash of the absolute path>.json    memoised content digests of source files

An entry appears only through one ``os.rename`` of a complete folder, so a reader sees a whole entry or none, an
exception during a build leaves nothing, and two processes building the same key cannot corrupt each other (the
second rename fails because the entry exists, and its work is discarded). Folders left by a killed builder are
swept on the next miss.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import mmap
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fer_bench._atomic import write_json_atomic
from fer_bench.data.ferdata import FerData
from fer_bench.errors import FerBenchError

# Bump when the entry layout changes; it is part of every entry's folder name.
CACHE_LAYOUT_VERSION = 1

# Names a FER2013 copy may carry that are never data: Mac and Windows litter, hidden files (see is_junk_name).
JUNK_NAMES = frozenset({"__macosx", "thumbs.db", "desktop.ini"})

# A file modified this recently may still change within the file system's timestamp granularity (2 s on FAT), so
# its digest is not memoised: the next read hashes it again.
_RACY_WINDOW_NS = 2_000_000_000
# A build folder untouched for this long is abandoned, whichever machine made it.
_STALE_AFTER_S = 24 * 3600


def is_junk_name(name: str) -> bool:
    """True for entries a data folder may hold that are never data (.DS_Store, __MACOSX, Thumbs.db, dot files)."""
    return name.startswith(".") or name.lower() in JUNK_NAMES


def cache_dir() -> Path:
    """The cache root: $FER_BENCH_CACHE, else $XDG_CACHE_HOME/fer_bench, else ~/.cache/fer_bench."""
    explicit = os.environ.get("FER_BENCH_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "fer_bench"
    return Path.home() / ".cache" / "fer_bench"


def entry_name(key: str) -> str:
    """The file-system-safe folder name of a key (a hash suffix keeps sanitised keys distinct)."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", key).lstrip(".")
    if safe != key or len(safe) > 120:
        safe = f"{safe[:100]}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    return f"{safe}-c{CACHE_LAYOUT_VERSION}"


def file_key(path: str | os.PathLike, reader_version: int) -> str:
    """A cache key for a source file or image folder, from its content and the reader's version.

    Files are keyed by the SHA-256 of their bytes (memoised per path, size, mtime, ctime and inode, so an unchanged
    file is not read again). Image folders are keyed by every non-junk file's relative path, size and mtime_ns:
    hashing the contents would mean opening 35,887 files on every warm read, the very cost the cache removes. An
    in-place edit that keeps both size and mtime is not a realistic case; a copy without preserved mtimes merely
    rebuilds once.
    """
    p = Path(path)
    if p.is_dir():
        return f"dir-{_folder_digest(p)[:40]}-r{reader_version}"
    return f"file-{collect_file_digest(p)[:40]}-r{reader_version}"


def collect_file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, memoised in the cache's digests/ folder."""
    st = path.stat()
    ident = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}
    abspath = str(path.resolve())
    memo = cache_dir() / "digests" / f"{hashlib.sha256(abspath.encode()).hexdigest()[:32]}.json"
    try:
        saved = json.loads(memo.read_text())
        if saved.get("path") == abspath and all(saved.get(k) == v for k, v in ident.items()):
            return str(saved["digest"])
    except (OSError, ValueError, KeyError, AttributeError):
        pass  # no memo, or an unreadable one: hash the file
    started = time.time_ns()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if st.st_size:
            # Hashing the mapped pages avoids copying 290 MB through read buffers; hashlib drops the GIL meanwhile.
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                h.update(mm)
    digest = h.hexdigest()
    if max(st.st_mtime_ns, st.st_ctime_ns) < started - _RACY_WINDOW_NS:
        try:
            write_json_atomic(memo, {"path": abspath, **ident, "digest": digest})
        except OSError:
            pass  # a read-only cache still works, only slower
    return digest


def _folder_digest(root: Path) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not is_junk_name(d))
        rel = os.path.relpath(dirpath, root)
        for name in sorted(filenames):
            if is_junk_name(name):
                continue
            st = os.stat(os.path.join(dirpath, name))
            h.update(f"{rel}/{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def collect_pixel_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and (population) standard deviation of all pixels on the 0-255 scale, from exact integer sums."""
    flat = images.reshape(len(images), -1)
    total = 0
    squares = 0
    square = np.empty(0, np.uint16)
    for lo in range(0, len(flat), 256):
        block = flat[lo:lo + 256].ravel()
        if len(square) != len(block):
            square = np.empty(len(block), np.uint16)
        np.multiply(block, block, out=square, dtype=np.uint16)  # 255 * 255 fits in uint16
        total += int(block.sum(dtype=np.uint64))
        squares += int(square.sum(dtype=np.uint64))
    n = images.size
    if n == 0:
        return 0.0, 0.0
    var = (squares * n - total * total) / (n * n)
    return total / n, float(np.sqrt(max(var, 0.0)))


def load_or_build(key: str, build: Callable[[], FerData]) -> tuple[FerData, bool]:
    """The cached FerData under ``key``, or ``build()``'s result stored under it; the bool says it was a hit.

    The returned data's meta carries ``cache`` ("hit" or "miss"), ``cache_path`` and the ``pixel_mean`` and
    ``pixel_std`` computed when the entry was built. A hit's arrays are memory-mapped read-only.
    """
    root = cache_dir()
    entries = root / "entries"
    entry = entries / entry_name(key)
    if entry.is_dir():
        try:
            return _annotate(_read_entry(entry), "hit", entry), True
        except (OSError, ValueError, KeyError):
            # An entry damaged outside fer_bench (entries are only ever complete): move it aside and rebuild.
            _discard(entry, entries)
    try:
        entries.mkdir(parents=True, exist_ok=True)
        _sweep_stale(entries)
        tmp = Path(tempfile.mkdtemp(prefix=f"{_build_prefix()}-", dir=entries))
    except OSError as exc:
        raise FerBenchError(f"{entries}: cannot write to the data cache ({exc.strerror}); point FER_BENCH_CACHE "
                            "at a writable folder") from exc
    try:
        data = build()
        mean, std = collect_pixel_stats(data.images)
        data = dataclasses.replace(data, meta={**data.meta, "pixel_mean": mean, "pixel_std": std})
        _write_entry(tmp, data, key)
        try:
            os.rename(tmp, entry)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not entry.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process built it first: keep theirs
        else:
            _fsync_dir(entries)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _annotate(data, "miss", entry), False


def _annotate(data: FerData, status: str, entry: Path) -> FerData:
    return dataclasses.replace(data, meta={**data.meta, "cache": status, "cache_path": str(entry)})


def _write_entry(folder: Path, data: FerData, key: str) -> None:
    arrays: dict[str, np.ndarray] = {"images": data.images, "splits": data.splits}
    if data.labels is not None:
        arrays["labels"] = data.labels
    for name, arr in arrays.items():
        with open(folder / f"{name}.npy", "wb") as fh:
            np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
    meta = {"key": key, "format": data.format, "source": data.source, "labeled": data.labels is not None,
            "meta": {k: v for k, v in data.meta.items() if k not in ("cache", "cache_path")}}
    # meta.json is written last: its presence is what _read_entry checks first.
    with open(folder / "meta.json", "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=1, default=_json_scalar)
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_dir(folder)


def _json_scalar(value: Any) -> Any:
    # A builder's meta may hold numpy scalars; anything else unserialisable is a bug worth its TypeError.
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"meta value {value!r} is not JSON-serialisable")


def _read_entry(entry: Path) -> FerData:
    meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
    labels = np.load(entry / "labels.npy", mmap_mode="r") if meta["labeled"] else None
    return FerData(
        images=np.load(entry / "images.npy", mmap_mode="r"),
        labels=labels,
        splits=np.load(entry / "splits.npy", mmap_mode="r"),
        format=meta["format"],
        source=meta["source"],
        meta=dict(meta["meta"]),
    )


def _discard(entry: Path, entries: Path) -> None:
    trash = entries / f"{_build_prefix()}-discard-{os.urandom(4).hex()}"
    try:
        os.rename(entry, trash)
    except OSError:
        return  # another process already replaced or removed it
    shutil.rmtree(trash, ignore_errors=True)


def _build_prefix() -> str:
    # Host and pid name the builder, so a later sweep can tell a killed build from a running one; the cache may
    # be shared between the nodes of a cluster.
    host = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:40] or "host"
    return f".tmp-{host}-{os.getpid()}"


def _sweep_stale(entries: Path) -> None:
    """Remove build folders left by killed builds: this host's whose process is gone, any host's after a day."""
    host = _build_prefix().split("-")[1]
    for child in entries.iterdir():
        match = re.fullmatch(r"\.tmp-([A-Za-z0-9]+)-(\d+)-.*", child.name)
        if not match:
            continue
        try:
            age_s = time.time() - child.stat().st_mtime
        except OSError:
            continue  # renamed into place or removed meanwhile
        same_host = match.group(1) == host
        if age_s > _STALE_AFTER_S or (same_host and not _pid_alive(int(match.group(2)))):
            shutil.rmtree(child, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":
        return True  # os.kill(pid, 0) would send Ctrl+C there; the age rule alone applies
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _fsync_dir(folder: Path) -> None:
    # Makes the rename durable; not every platform can open a folder, which only weakens durability.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
