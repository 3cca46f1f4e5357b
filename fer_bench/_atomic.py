"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable


def apply_default_mode(path: str | os.PathLike, mode: int) -> None:
    """Give a temporary entry the mode a plain open() would: mkstemp/mkdtemp make private 0600/0700 entries,
    and results, caches and data files are meant to be shared."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def write_blocks_atomic(path: str | os.PathLike, blocks: Iterable[bytes]) -> Path:
    """Stream ``blocks`` into a temporary file beside ``path``, fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            for block in blocks:
                fh.write(block)
            fh.flush()
            os.fsync(fh.fileno())
        apply_default_mode(tmp, 0o666)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    return write_blocks_atomic(path, (data,))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 120


def safe_file_stem(name: str) -> str:
    """A file-name stem for ``name`` (a pytest id such as ``test_train_step[fer_cnn_2block-cpu-bs64-fp32-g1]``):
    runs of characters other than letters, digits, ``.``, ``_`` and ``-`` become one ``_``, leading and trailing
    ``._-`` go (no hidden files, no ``..``), and a stem over 120 characters is cut and given a hash of the whole name
    so two long ids stay apart."""
    stem = _UNSAFE.sub("_", name).strip("._-")
    if len(stem) > _MAX_STEM:
        digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:10]
        stem = f"{stem[:_MAX_STEM - 11].rstrip('._-')}-{digest}"
    return stem or "case"
