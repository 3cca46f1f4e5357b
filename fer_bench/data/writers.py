"""Write a FerData in FER2013's real layouts: fer2013.csv, icml_face_data.csv, train.csv, test.csv, FER+ votes and
the image-folder layout.

Every write is atomic: a CSV goes through a temporary file and ``os.replace``; a folder is written into a temporary
sibling and renamed into place. CSV text is produced with numpy (a 256-entry token table, zero bytes squeezed out),
not by formatting 82 million integers in Python.

Split names: train -> Training, public_test -> PublicTest, private_test -> PrivateTest. A labeled set's "test" split
(image folders without file-name prefixes) has no Usage of its own and is written as PublicTest, the split used
for validation in practice. Layouts with labels refuse an unlabeled set; write_test_csv takes any set.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fer_bench._atomic import apply_default_mode, write_blocks_atomic
from fer_bench.data.constants import CLASS_NAMES, NUM_CLASSES, NUM_PIXELS, SPLITS
from fer_bench.data.ferdata import FerData
from fer_bench.errors import FerBenchError

USAGE_OF_SPLIT = {"train": "Training", "public_test": "PublicTest", "private_test": "PrivateTest",
                  "test": "PublicTest"}
FERPLUS_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"

# Image-folder file-name prefixes; the unlabeled-by-prefix "test" split is written as im<n>.
_NAME_PREFIX = {"train": "Training", "public_test": "PublicTest", "private_test": "PrivateTest"}
_FOLDER_EXTENSIONS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
_BOM = b"\xef\xbb\xbf"
_ROWS_PER_BLOCK = 1024


def _token_table() -> np.ndarray:
    # Row v holds b" " + str(v), zero-padded to 4 bytes; zeros are squeezed out after the rows are laid out.
    table = np.zeros((256, 4), np.uint8)
    for v in range(256):
        text = f" {v}".encode()
        table[v, :len(text)] = np.frombuffer(text, np.uint8)
    return table


_TOKENS = _token_table()


#: The layouts `fer-bench data synth --format` writes: the Kaggle fer2013.csv, the competition bundle's three CSVs,
#: and the image folder.
DATASET_FORMATS = ("csv", "icml", "train", "test", "folder")


def write_dataset(data: FerData, out: str | os.PathLike, fmt: str) -> list[Path]:
    """Write ``data`` as ``fmt``: "csv" (fer2013.csv), "icml" (icml_face_data.csv), "train" (train.csv, the
    Training rows), "test" (test.csv: the test rows' pixels, no labels) or "folder" (train/ and test/ of class
    folders)."""
    if fmt == "csv":
        return [write_fer2013_csv(data, out)]
    if fmt == "icml":
        return [write_icml_csv(data, out)]
    if fmt == "train":
        return [write_train_csv(data.subset("train"), out)]
    if fmt == "test":
        return [write_test_csv(data.subset(*[s for s in data.split_names() if s != "train"]), out)]
    if fmt == "folder":
        return write_image_folder(data, out)
    raise FerBenchError(f"unknown output format {fmt!r}; expected one of {', '.join(DATASET_FORMATS)}")


def write_fer2013_csv(data: FerData, out: str | os.PathLike, *, newline: str = "\n", bom: bool = False) -> Path:
    """The original Kaggle layout: ``emotion,pixels,Usage``."""
    labels, usages = _labels_and_usages(data, out, "fer2013.csv")
    nl = newline.encode()
    return _write_csv(out, "emotion,pixels,Usage", data, [b"%d," % v for v in labels],
                      [b",%s%s" % (u, nl) for u in usages], newline, bom)


def write_icml_csv(data: FerData, out: str | os.PathLike, *, newline: str = "\n", bom: bool = False) -> Path:
    """The competition bundle's icml_face_data.csv: ``emotion, Usage, pixels`` (leading spaces in the header)."""
    labels, usages = _labels_and_usages(data, out, "icml_face_data.csv")
    return _write_csv(out, "emotion, Usage, pixels", data, [b"%d,%s," % (v, u) for v, u in zip(labels, usages)],
                      [newline.encode()] * len(data), newline, bom)


def write_train_csv(data: FerData, out: str | os.PathLike, *, leading_space: bool = False, newline: str = "\n",
                    bom: bool = False) -> Path:
    """The competition bundle's train.csv: ``emotion,pixels`` (or ``emotion, pixels``), no Usage column."""
    labels, _ = _labels_and_usages(data, out, "train.csv")
    header = "emotion, pixels" if leading_space else "emotion,pixels"
    return _write_csv(out, header, data, [b"%d," % v for v in labels], [newline.encode()] * len(data), newline, bom)


def write_test_csv(data: FerData, out: str | os.PathLike, *, newline: str = "\n", bom: bool = False) -> Path:
    """The competition bundle's test.csv: ``pixels`` only, no labels (any set, labeled or not)."""
    return _write_csv(out, "pixels", data, [b""] * len(data), [newline.encode()] * len(data), newline, bom)


def write_ferplus_csv(votes: np.ndarray, out: str | os.PathLike, *, splits: np.ndarray | None = None,
                      image_names: Sequence[str] | None = None, newline: str = "\n", bom: bool = False) -> Path:
    """A FER+ fer2013new.csv: per row the Usage, the image name and 10 vote counts.

    Args:
        votes: N x 10 non-negative integers, columns neutral, happiness, surprise, sadness, anger, disgust, fear,
            contempt, unknown, NF.
        splits: split codes (as in FerData.splits) giving the Usage column; default all Training.
        image_names: default ``fer0000000.png``, ``fer0000001.png``, ...; an empty name marks a dropped row.
    """
    votes = np.asarray(votes)
    if votes.ndim != 2 or votes.shape[1] != 10 or (votes < 0).any():
        raise FerBenchError(f"{out}: FER+ votes must be an N x 10 array of non-negative counts, got {votes.shape}")
    n = len(votes)
    codes = np.zeros(n, np.uint8) if splits is None else np.asarray(splits)
    names = [f"fer{i:07d}.png" for i in range(n)] if image_names is None else list(image_names)
    if len(codes) != n or len(names) != n:
        raise FerBenchError(f"{out}: votes, splits and image names differ in length")
    lines = [FERPLUS_HEADER]
    for code, name, row in zip(codes.tolist(), names, votes.tolist()):
        lines.append(",".join([USAGE_OF_SPLIT[SPLITS[code]], name, *map(str, row)]))
    text = newline.join(lines) + newline
    return _write_atomic(Path(out), [(_BOM if bom else b"") + text.encode()])


def write_image_folder(data: FerData, out: str | os.PathLike, *, ext: str = ".png",
                       class_folders: Sequence[str] | None = None, prefixed: bool = True) -> list[Path]:
    """The image-folder layout: train/<class>/Training_<n>.png, test/<class>/PublicTest_<n>.png, PrivateTest_<n>.

    Args:
        ext: ".png" (lossless) or ".jpg"/".jpeg" (lossy, quality 95), in any letter case.
        class_folders: the 7 folder names in FER2013 code order; default CLASS_NAMES.
        prefixed: False names every file im<n><ext>, so a reader takes the split from the folder alone.

    Raises:
        FerBenchError: an unlabeled set, or ``out`` exists and is not an empty folder (nothing is overwritten).
    """
    out = Path(out)
    _labels_and_usages(data, out, "an image folder")
    image_format = _FOLDER_EXTENSIONS.get(ext.lower())
    if image_format is None:
        raise FerBenchError(f"{out}: unsupported image extension {ext!r}; expected .png, .jpg or .jpeg")
    folders = tuple(CLASS_NAMES if class_folders is None else class_folders)
    if len(folders) != NUM_CLASSES:
        raise FerBenchError(f"{out}: class_folders needs {NUM_CLASSES} names in FER2013 code order")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FerBenchError(f"{out}: already exists and is not an empty folder; refusing to overwrite it")
    rels = []
    for i, (code, label) in enumerate(zip(data.splits.tolist(), data.labels.tolist())):
        split = SPLITS[code]
        prefix = _NAME_PREFIX.get(split) if prefixed else None
        name = f"{prefix}_{i}{ext}" if prefix else f"im{i}{ext}"
        rels.append(Path("train" if split == "train" else "test", folders[label], name))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        apply_default_mode(tmp, 0o777)
        for folder in sorted({rel.parent for rel in rels}):
            (tmp / folder).mkdir(parents=True, exist_ok=True)
        _save_images(data.images, [tmp / rel for rel in rels], image_format)
        if out.exists():
            out.rmdir()  # checked empty above; rename needs the name free on every platform
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out / rel for rel in rels]


def _save_images(images: np.ndarray, paths: list[Path], image_format: str) -> None:
    from PIL import Image

    options = {"quality": 95} if image_format == "JPEG" else {"compress_level": 1}

    def save(lo: int) -> None:
        for i in range(lo, min(lo + 256, len(paths))):
            Image.fromarray(np.ascontiguousarray(images[i])).save(paths[i], format=image_format, **options)

    with ThreadPoolExecutor(max_workers=min(8, 2 * (os.cpu_count() or 1))) as pool:
        list(pool.map(save, range(0, len(paths), 256)))


def _labels_and_usages(data: FerData, out: str | os.PathLike, what: str) -> tuple[list[int], list[bytes]]:
    if data.labels is None:
        raise FerBenchError(f"{out}: {what} needs labels but {data.source} is unlabeled; write it with "
                            "write_test_csv (pixels only)")
    usage = [USAGE_OF_SPLIT[name].encode() for name in SPLITS]
    return data.labels.tolist(), [usage[c] for c in data.splits.tolist()]


def _write_csv(out: str | os.PathLike, header: str, data: FerData, prefixes: list[bytes], suffixes: list[bytes],
               newline: str, bom: bool) -> Path:
    def blocks() -> Iterable[bytes]:
        yield (_BOM if bom else b"") + header.encode() + newline.encode()
        pixels = data.images.reshape(len(data), NUM_PIXELS)
        for lo in range(0, len(data), _ROWS_PER_BLOCK):
            hi = min(lo + _ROWS_PER_BLOCK, len(data))
            yield _encode_rows(pixels[lo:hi], prefixes[lo:hi], suffixes[lo:hi])

    return _write_atomic(Path(out), blocks())


def _encode_rows(pixels: np.ndarray, prefixes: list[bytes], suffixes: list[bytes]) -> bytes:
    """prefix + space-separated pixels + suffix for each row, as one bytes object."""
    k = len(pixels)
    body = _TOKENS[pixels].reshape(k, -1)
    body[:, 0] = 0  # no space before a row's first pixel
    parts = [_pad(prefixes, k), body, _pad(suffixes, k)]
    rows = np.concatenate(parts, axis=1).ravel()
    return rows[rows != 0].tobytes()


def _pad(texts: list[bytes], k: int) -> np.ndarray:
    width = max((len(t) for t in texts), default=0)
    return np.frombuffer(b"".join(t.ljust(width, b"\0") for t in texts), np.uint8).reshape(k, width)


def _write_atomic(path: Path, blocks: Iterable[bytes]) -> Path:
    """Stream ``blocks`` into a temporary file beside ``path``, then rename it into place."""
    if path.is_dir():
        raise FerBenchError(f"{path}: is a folder; expected a .csv file path")
    return write_blocks_atomic(path, blocks)
