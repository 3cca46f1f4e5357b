"""Readers for every FER2013 copy in circulation (see design/FER2013.md), through the decoded-data cache.

Formats: ``fer2013_csv``, ``icml_face_data_csv``, ``train_csv``, ``test_csv``, ``image_folder``, and
``ferplus_csv`` (FER+ votes, a label source passed with ``ferplus=``, never a data set on its own).

The CSV reader never splits 82 million pixel tokens in Python: it memory-maps the file, finds lines and fields
per 4 MiB block with numpy, and tokenises the pixel fields of 32 rows at a time in one go (digit mask, the last
digit of each token, values from up to three digits gathered before it), validating as it goes. When a row is
bad, a slow, plain check of that one line words the error (file, line number as an editor shows it, what is wrong).
Pixel fields may be quoted and may carry extra spaces; blank lines are skipped.

Image folders: class folders in any letter case and with the common aliases (disgusted, fearful, surprised, ...)
map to FER2013's codes, never to an alphabetical order. The split comes from the file-name prefix (Training_,
PublicTest_, PrivateTest_) when there is one, else from the folder (train/ -> train, test/ -> test; class folders
without train/ or test/ -> train). Images that are not grayscale are converted to it and images that are not
48x48 are resized (bilinear); meta counts both. Hidden files, __MACOSX/, Thumbs.db and desktop.ini are ignored, and
so are other files next to train/ and test/ (a README); anything else unexpected (another folder, a non-image in a
class folder) is an error rather than silently left out.
"""

from __future__ import annotations

import csv
import dataclasses
import mmap
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fer_bench.data import cache
from fer_bench.data.constants import CLASS_NAMES, IMAGE_SIZE, NUM_PIXELS, SPLIT_CODES, USAGE_TO_SPLIT
from fer_bench.data.ferdata import FerData
from fer_bench.errors import FerBenchError

# Bump whenever parsing changes what a file decodes to: it is part of every cache key.
READER_VERSION = 1

FORMATS = ("fer2013_csv", "icml_face_data_csv", "train_csv", "test_csv", "image_folder", "ferplus_csv")

# fer2013new.csv's vote columns (lower case) and the FER2013 code of each of its first seven emotions.
FERPLUS_VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                        "unknown", "nf")
FERPLUS_TO_FER2013 = (6, 3, 5, 4, 0, 1, 2)

CLASS_ALIASES = {
    **{name: code for code, name in enumerate(CLASS_NAMES)},
    "anger": 0, "disgusted": 1, "fearful": 2, "happiness": 3, "sadness": 4, "surprised": 5,
}
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg"})

_EXPECTED_HEADERS = ("'emotion,pixels,Usage' (fer2013.csv), 'emotion, Usage, pixels' (icml_face_data.csv), "
                     "'emotion,pixels' (train.csv), 'pixels' (test.csv), "
                     "'Usage,Image name,neutral,happiness,...,NF' (fer2013new.csv)")
_EXPECTED_FOLDER = ("train/ and/or test/ holding class folders (angry, disgust, fear, happy, sad, surprise, "
                    "neutral), or the class folders themselves")
_BOM = b"\xef\xbb\xbf"
_BLOCK = 1 << 22
_LABEL_CODES = {str(code).encode(): code for code in range(len(CLASS_NAMES))}
_USAGE_CODES = {usage.lower().encode(): SPLIT_CODES[split] for usage, split in USAGE_TO_SPLIT.items()}
_NAME_PREFIXES = (("training_", "train"), ("publictest_", "public_test"), ("privatetest_", "private_test"))
_DECODE_CHUNK = 256
# Rows whose pixels are decoded together: about 300 KB of text, so the work buffers stay in the CPU cache.
_BATCH = 32


def detect_format(path: str | os.PathLike) -> str:
    """The format of a FER2013 copy, from whether it is a folder and from its CSV header.

    Raises:
        FerBenchError: a missing path, an empty file, an unknown header, or a folder with neither train/ nor test/
            nor class folders.
    """
    p = Path(path)
    if p.is_dir():
        _check_folder_layout(p)
        return "image_folder"
    if not p.exists():
        raise FerBenchError(f"{path}: no such file or folder")
    return _read_header(p)[0]


def load_fer2013(path: str | os.PathLike, *, ferplus: str | os.PathLike | None = None,
                 use_cache: bool = True) -> FerData:
    """Read any FER2013 copy (through the cache unless ``use_cache`` is False).

    Args:
        path: a fer2013.csv, icml_face_data.csv, train.csv or test.csv file, or an image folder.
        ferplus: a FER+ fer2013new.csv whose majority votes replace the labels (rows aligned by order with a
            full fer2013.csv or icml_face_data.csv); rows without a FER2013 emotion are dropped, counted in meta.

    Raises:
        FerBenchError: any bad input, with the file and line (or image path) and what is wrong.
    """
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "ferplus_csv":
        raise FerBenchError(f"{path}: a FER+ vote file (fer2013new.csv) holds votes, not pixels; pass the "
                            "fer2013.csv it labels as the data path and this file with --ferplus")
    fp = None if ferplus is None else Path(ferplus)
    if fp is not None:
        if fmt not in ("fer2013_csv", "icml_face_data_csv"):
            raise FerBenchError(f"{path}: FER+ labels align by row order with the full fer2013.csv or "
                                f"icml_face_data.csv, not a {fmt}")
        if not fp.is_file():
            raise FerBenchError(f"{ferplus}: no such FER+ vote file")
        if _read_header(fp)[0] != "ferplus_csv":
            raise FerBenchError(f"{ferplus}: not a FER+ vote file (expected the header "
                                "'Usage,Image name,neutral,happiness,...,NF')")

    def build() -> FerData:
        data = _read_source(p, fmt)
        return data if fp is None else _apply_ferplus(data, fp, ferplus)

    if not use_cache:
        data = build()
        return dataclasses.replace(data, meta={**data.meta, "cache": "off"})
    key = cache.file_key(p, READER_VERSION)
    if fp is not None:
        key += "+ferplus-" + cache.file_key(fp, READER_VERSION)
    data, _hit = cache.load_or_build(key, build)
    # The entry may have been built from a copy elsewhere: name the file the user gave.
    return dataclasses.replace(data, source=str(p.resolve()))


def _read_source(p: Path, fmt: str) -> FerData:
    if fmt == "image_folder":
        return _read_folder(p)
    names = _read_header(p)[1]
    images, labels, splits = _CsvReader(p, names).read()
    return FerData(images=images, labels=labels, splits=splits, format=fmt, source=str(p.resolve()),
                   meta={"reader_version": READER_VERSION, "rows": len(images)})


# ----------------------------------------------------------------------------------------------------- CSV files

def _read_header(p: Path) -> tuple[str, tuple[str, ...]]:
    """(format, normalised column names) from a CSV file's first line."""
    try:
        with open(p, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError as exc:
        raise FerBenchError(f"{p}: cannot read ({exc.strerror})") from exc
    head = head.removeprefix(_BOM)
    if not head.strip():
        raise FerBenchError(f"{p}: empty file")
    text = head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
    raw = text.split(",")
    names = tuple(n.strip().strip('"').strip().lower() for n in raw)
    found = set(names)
    fmt = None
    if len(found) == len(names):
        if found == {"emotion", "pixels", "usage"}:
            spaced = any(r != r.strip() for r in raw)
            fmt = "icml_face_data_csv" if spaced or names == ("emotion", "usage", "pixels") else "fer2013_csv"
        elif found == {"emotion", "pixels"}:
            fmt = "train_csv"
        elif found == {"pixels"}:
            fmt = "test_csv"
        elif found == {"usage", "image name", *FERPLUS_VOTE_COLUMNS}:
            fmt = "ferplus_csv"
    if fmt is None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise FerBenchError(f"{p}: unknown header {shown!r}; expected one of {_EXPECTED_HEADERS}")
    return fmt, names


class _CsvReader:
    """Vectorised reader of the pixel CSV layouts (any column order, quoted or not, LF or CRLF, BOM or not).

    The file is memory-mapped. Lines and fields are found per 4 MiB block (numpy searches for newlines and
    commas); pixels are decoded per batch of rows small enough to stay in the CPU cache, in reused buffers.
    """

    def __init__(self, path: Path, names: tuple[str, ...]) -> None:
        self.path = path
        self.names = names
        self.ncols = len(names)
        self.pix = names.index("pixels")
        self.lab = names.index("emotion") if "emotion" in names else None
        self.use = names.index("usage") if "usage" in names else None
        # Without a Usage column train.csv is all training data and test.csv (no labels) is the test split.
        self.default_split = SPLIT_CODES["train" if self.lab is not None else "test"]
        self.line_no = 1  # lines consumed so far; the header is line 1
        self.n = 0
        self.error: FerBenchError | None = None
        self.work = np.empty(0, np.uint8)
        self.is_digit = np.empty(0, bool)
        self.token_end = np.empty(0, bool)

    def read(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        with open(self.path, "rb") as fh:
            body = len(fh.readline())
            size = os.fstat(fh.fileno()).st_size
            # No valid row is shorter than 2304 one-digit pixels and their spaces; untouched pages of the
            # over-allocation cost no memory.
            cap = size // (2 * NUM_PIXELS - 1) + 1
            self.images = np.empty((cap, NUM_PIXELS), np.uint8)
            self.labels = np.empty(cap, np.int64)
            self.splits = np.empty(cap, np.uint8)
            if size > body:
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
                try:
                    self._read_blocks(mm, body, size)
                finally:
                    try:
                        mm.close()
                    except BufferError:  # an unexpected exception's traceback still holds a view: GC closes it
                        pass
        if self.error is not None:
            raise self.error  # raised here, once no numpy view of the mapping is left
        if self.n == 0:
            raise FerBenchError(f"{self.path}: holds only a header line, no data rows")
        n = self.n
        images = self.images[:n].reshape(n, IMAGE_SIZE, IMAGE_SIZE)
        return images, (self.labels[:n] if self.lab is not None else None), self.splits[:n]

    def _read_blocks(self, mm: mmap.mmap, pos: int, size: int) -> None:
        whole = np.frombuffer(mm, np.uint8)
        try:
            while pos < size:
                cut = mm.rfind(b"\n", pos, min(pos + _BLOCK, size)) + 1 if pos + _BLOCK < size else size
                if cut == 0:  # a line longer than a block
                    cut = mm.find(b"\n", pos + _BLOCK) + 1 or size
                self._read_block(whole[pos:cut], mm, pos)
                if self.error is not None:
                    break
                pos = cut
        finally:
            del whole

    def _read_block(self, arr: np.ndarray, mm: mmap.mmap, base: int) -> None:
        """Parse the lines of one block (complete lines; only the file's last one may lack its newline)."""
        ends = np.flatnonzero(arr == 10)
        unterminated = len(arr) > 0 and arr[-1] != 10
        if unterminated:
            ends = np.append(ends, len(arr))
        starts = np.concatenate(([0], ends[:-1] + 1))
        line_nos = self.line_no + 1 + np.arange(len(starts))
        self.line_no += len(starts)
        ends = ends - ((ends > starts) & (arr[np.maximum(ends - 1, 0)] == 13))
        keep = ends > starts  # blank lines are skipped, as every CSV reader does
        last_kept_is_final = unterminated and bool(keep[-1])
        starts, ends, line_nos = starts[keep], ends[keep], line_nos[keep]
        rows = len(starts)
        if rows == 0:
            return
        fields = self._locate_fields(arr, starts, ends)
        first_bad = 0
        if fields is not None:
            bad_rows, bounds = fields
            if self.lab is not None:
                labels = self._small_field(mm, base, *bounds[self.lab], _LABEL_CODES, lower=False)
                bad_rows |= labels < 0
            if self.use is not None:
                splits = self._small_field(mm, base, *bounds[self.use], _USAGE_CODES, lower=True)
                bad_rows |= splits < 0
            else:
                splits = np.full(rows, self.default_split, np.uint8)
            first_bad = int(np.argmax(bad_rows)) if bad_rows.any() else rows
            # Pixels are parsed up to the first row whose other fields are bad, so the first bad line is reported.
            ps, pe = bounds[self.pix]
            for lo in range(0, first_bad, _BATCH):
                hi = min(lo + _BATCH, first_bad)
                bad = self._parse_pixels(arr, ps[lo:hi], pe[lo:hi], self.n + lo)
                if bad is not None:
                    first_bad = lo + bad
                    break
        if first_bad < rows:
            final = last_kept_is_final and first_bad == rows - 1
            line = mm[base + int(starts[first_bad]):base + int(ends[first_bad])]
            self.error = self._diagnose(line, int(line_nos[first_bad]), final)
            return
        n = self.n
        if self.lab is not None:
            self.labels[n:n + rows] = labels
        self.splits[n:n + rows] = splits
        self.n += rows

    def _locate_fields(self, arr: np.ndarray, starts: np.ndarray, ends: np.ndarray):
        """(rows with a wrong field count, [(start, end) per column]); None when no row has enough fields."""
        if self.ncols == 1:
            return np.zeros(len(starts), bool), [(starts, ends)]
        commas = np.flatnonzero(arr == 44)
        if len(commas) == 0:
            return None
        c0 = np.searchsorted(commas, starts)
        wrong = (np.searchsorted(commas, ends) - c0) != self.ncols - 1
        last = len(commas) - 1
        bounds = []
        for j in range(self.ncols):
            s = starts if j == 0 else commas[np.minimum(c0 + j - 1, last)] + 1
            e = ends if j == self.ncols - 1 else commas[np.minimum(c0 + j, last)]
            bounds.append((s, e))
        return wrong, bounds

    @staticmethod
    def _small_field(mm: mmap.mmap, base: int, s: np.ndarray, e: np.ndarray, codes: dict[bytes, int],
                     lower: bool) -> np.ndarray:
        """Codes of a short field (emotion or Usage) per row; -1 where the text is not a known value."""
        pairs = zip((s + base).tolist(), (e + base).tolist())
        if lower:
            vals = [codes.get(mm[a:b].strip(b' "').lower(), -1) for a, b in pairs]
        else:
            vals = [codes.get(mm[a:b].strip(b' "'), -1) for a, b in pairs]
        return np.array(vals, np.int64)

    def _buffers(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if len(self.work) < size:
            self.work = np.empty(2 * size, np.uint8)
            self.is_digit = np.empty(2 * size, bool)
            self.token_end = np.empty(2 * size, bool)
        return self.work[:size], self.is_digit[:size], self.token_end[:size - 4]

    def _parse_pixels(self, arr: np.ndarray, ps: np.ndarray, pe: np.ndarray, dest: int) -> int | None:
        """Decode the pixel fields [ps, pe) of consecutive rows into self.images[dest:]; a bad row's index, or None.

        Every step is a whole-array numpy operation: one pass over the bytes finds the last digit of every token,
        and each token's value comes from the (at most three) digits gathered just before it.
        """
        k = len(ps)
        # One leading and one trailing double quote are CSV quoting, not data.
        ps = ps + ((pe > ps) & (arr[np.minimum(ps, len(arr) - 1)] == 34))
        pe = pe - ((pe > ps) & (arr[np.maximum(pe - 1, 0)] == 34))
        # Work on a copy of the rows' pixel fields, with everything between them (other fields, line breaks)
        # blanked to spaces, three spaces in front (so a token's e - 3 is inside) and one behind.
        base = int(ps[0]) - 3
        length = int(pe[-1]) - int(ps[0])
        work, is_digit, token_end = self._buffers(length + 4)
        work[:3] = 32
        work[-1] = 32
        work[3:3 + length] = arr[ps[0]:pe[-1]]
        psw, pew = ps - base, pe - base
        if k > 1:
            gap_start, gap_len = pew[:-1], psw[1:] - pew[:-1]
            width = int(gap_len.max())
            if width > 0:
                offs = np.arange(width)
                work[(gap_start[:, None] + offs)[offs < gap_len[:, None]]] = 32
        np.subtract(work, 48, out=work)  # digits become 0-9 and a space 240; everything else is neither
        np.less(work, 10, out=is_digit)
        row_of = lambda pos: int(np.searchsorted(psw, pos, side="right")) - 1  # noqa: E731
        # ends[i] + 3 is the last digit of token i (offset 3 keeps e - 3 >= 0 without index arithmetic).
        np.greater(is_digit[3:-1], is_digit[4:], out=token_end)
        ends = np.flatnonzero(token_end)
        counts = np.searchsorted(ends, pew - 3) - np.searchsorted(ends, psw - 3)
        bad_rows = []
        wrong = counts != NUM_PIXELS
        if wrong.any():
            bad_rows.append(int(np.argmax(wrong)))
        # Well-formed rows have exactly one separator between tokens and nothing around them; then it suffices
        # that the byte after every token is a space. Otherwise (extra spaces, or a stray character) count.
        digits = np.count_nonzero(is_digit)
        strict = digits + k * (NUM_PIXELS - 1) == int((pe - ps).sum()) and bool((work[4:][ends] == 240).all())
        if not strict and digits + np.count_nonzero(work == 240) != len(work):
            bad_rows.append(row_of(int(np.flatnonzero(~is_digit & (work != 240))[0])))
        if bad_rows:
            return min(bad_rows)
        values = work[3:][ends]
        tens = work[2:][ends]
        m1 = tens < 10
        tens *= m1
        tens *= 10
        values += tens  # at most 99: no overflow in uint8
        hundreds = work[1:][ends]
        m2 = hundreds < 10
        m2 &= m1
        hundreds *= m2
        too_big = m2 & (work[:-1][ends] < 10)  # four digits or more
        too_big |= (hundreds > 2) | ((hundreds == 2) & (values > 55))
        if too_big.any():
            return row_of(int(ends[np.argmax(too_big)]) + 3)
        hundreds *= 100
        values += hundreds
        self.images[dest:dest + k] = values.reshape(k, NUM_PIXELS)
        return None

    def _diagnose(self, raw: bytes, line_no: int, final: bool) -> FerBenchError:
        """The error for one bad line, worded by a slow, plain check of that line."""
        line = raw.decode("utf-8", "replace")
        where = f"{self.path}: line {line_no}"
        hint = " (the file ends mid-row: a truncated download?)" if final else ""
        fields = line.split(",")
        if tuple(f.strip().strip('"').strip().lower() for f in fields) == self.names:
            return FerBenchError(f"{where}: a repeated header line in the middle of the data")
        if len(fields) != self.ncols:
            return FerBenchError(f"{where}: found {len(fields)} comma-separated fields, expected {self.ncols} "
                                 f"({', '.join(self.names)}){hint}")
        if self.lab is not None:
            text = fields[self.lab].strip(' "')
            if text.encode() not in _LABEL_CODES:
                if re.fullmatch(r"[+-]?[0-9]+", text):
                    return FerBenchError(f"{where}: emotion {text} is outside 0-6")
                return FerBenchError(f"{where}: emotion {text!r} is not an integer 0-6")
        if self.use is not None:
            text = fields[self.use].strip(' "')
            if text.lower().encode() not in _USAGE_CODES:
                return FerBenchError(f"{where}: unknown Usage {text!r}, expected Training, PublicTest or "
                                     f"PrivateTest{hint}")
        field = fields[self.pix]
        field = field[1:] if field.startswith('"') else field
        field = field[:-1] if field.endswith('"') else field
        tokens = [t for t in field.split(" ") if t]
        for i, tok in enumerate(tokens, 1):
            if not (tok.isascii() and tok.isdigit()):
                return FerBenchError(f"{where}: pixel {i} is {tok!r}, not an integer 0-255")
            if int(tok) > 255:
                return FerBenchError(f"{where}: pixel {i} is {tok}, above 255")
            if len(tok) > 3:
                return FerBenchError(f"{where}: pixel {i} is {tok!r}, more than 3 digits")
        if len(tokens) != NUM_PIXELS:
            return FerBenchError(f"{where}: found {len(tokens)} pixel values, expected {NUM_PIXELS}{hint}")
        return FerBenchError(f"{where}: cannot parse this row")


# ------------------------------------------------------------------------------------------------------ FER+ votes

def _read_ferplus_votes(path: Path) -> tuple[list[str], np.ndarray]:
    """(image names, votes as an N x 10 int64 array in FERPLUS_VOTE_COLUMNS order) of a fer2013new.csv."""
    names: list[str] = []
    votes: list[list[int]] = []
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader)]
        name_col = header.index("image name")
        vote_cols = [header.index(c) for c in FERPLUS_VOTE_COLUMNS]
        try:
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                where = f"{path}: line {reader.line_num}"
                if len(row) != len(header):
                    raise FerBenchError(f"{where}: found {len(row)} fields, expected {len(header)}")
                cells = [row[c].strip() for c in vote_cols]
                bad = next((c for c in cells if not (c.isascii() and c.isdigit())), None)
                if bad is not None:
                    raise FerBenchError(f"{where}: vote count {bad!r} is not a non-negative integer")
                names.append(row[name_col])
                votes.append([int(c) for c in cells])
        except csv.Error as exc:
            raise FerBenchError(f"{path}: line {reader.line_num}: {exc}") from exc
    if not votes:
        raise FerBenchError(f"{path}: holds only a header line, no vote rows")
    return names, np.array(votes, np.int64)


def _apply_ferplus(data: FerData, path: Path, given: str | os.PathLike) -> FerData:
    """Relabel ``data`` with FER+ majority votes, dropping rows whose majority is no FER2013 emotion."""
    names, votes = _read_ferplus_votes(path)
    if len(votes) != len(data):
        raise FerBenchError(f"{given}: {len(votes)} vote rows but {data.source} has {len(data)} images; FER+ "
                            "aligns by row order with the full fer2013.csv")
    v = np.where(votes <= 1, 0, votes)  # single votes are annotator noise
    top, total = v.max(axis=1), v.sum(axis=1)
    majority = np.where(2 * top > total, v.argmax(axis=1), FERPLUS_VOTE_COLUMNS.index("unknown"))
    empty = np.array([not n.strip() for n in names])
    keep = ~empty & (majority < len(FERPLUS_TO_FER2013))
    idx = np.flatnonzero(keep)
    labels = np.array(FERPLUS_TO_FER2013, np.int64)[majority[idx]]
    named = ~empty
    dropped = {
        "empty_image_name": int(empty.sum()),
        "contempt": int((named & (majority == FERPLUS_VOTE_COLUMNS.index("contempt"))).sum()),
        "unknown": int((named & (majority == FERPLUS_VOTE_COLUMNS.index("unknown"))).sum()),
        "not_face": int((named & (majority == FERPLUS_VOTE_COLUMNS.index("nf"))).sum()),
    }
    ferplus = {"votes_file": str(path.resolve()), "rows": len(votes), "kept": len(idx), "dropped": dropped,
               "rule": "majority: votes <= 1 zeroed, more than half of the remaining votes, else unknown"}
    return FerData(images=np.ascontiguousarray(data.images[idx]), labels=labels,
                   splits=np.ascontiguousarray(data.splits[idx]), format=data.format, source=data.source,
                   meta={**data.meta, "labels": "ferplus_majority", "ferplus": ferplus})


# ---------------------------------------------------------------------------------------------------- image folders

def _scan(folder: str | os.PathLike) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not cache.is_junk_name(e.name)), key=lambda e: e.name)
    except OSError as exc:
        raise FerBenchError(f"{folder}: cannot list this folder ({exc.strerror})") from exc


def _check_folder_layout(root: Path) -> list[tuple[Path, str]]:
    """The (folder of class folders, split of its images) pairs of an image-folder copy."""
    dirs = [e for e in _scan(root) if e.is_dir()]
    split_dirs = [e for e in dirs if e.name.lower() in ("train", "test")]
    if split_dirs:
        other = [e for e in dirs if e not in split_dirs]
        if other:
            raise FerBenchError(f"{other[0].path}: unexpected folder next to train/ and test/; expected "
                                f"{_EXPECTED_FOLDER}")
        return [(Path(e.path), e.name.lower()) for e in split_dirs]
    if not dirs:
        raise FerBenchError(f"{root}: no images found; expected {_EXPECTED_FOLDER}")
    for e in dirs:
        if e.name.lower() not in CLASS_ALIASES:
            raise _unknown_class(e)
    return [(root, "train")]


def _unknown_class(entry: os.DirEntry) -> FerBenchError:
    return FerBenchError(f"{entry.path}: unknown class folder {entry.name!r}; class folders are angry, disgust, "
                         "fear, happy, sad, surprise, neutral (any case; also anger, disgusted, fearful, happiness, "
                         "sadness, surprised), inside train/ and test/ or on their own")


def _natural_key(name: str) -> list:
    # Training_2 before Training_10; str and int parts alternate, so keys always compare.
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _split_of_name(name: str, default: str) -> str:
    lower = name.lower()
    for prefix, split in _NAME_PREFIXES:
        if lower.startswith(prefix):
            return split
    return default


def _list_folder_images(root: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(paths, labels, split codes) of every image, ordered by split, class and natural file-name order."""
    records = []
    for folder, folder_split in _check_folder_layout(root):
        for entry in _scan(folder):
            ext = os.path.splitext(entry.name)[1].lower()
            if not entry.is_dir():
                if ext in IMAGE_EXTENSIONS:
                    raise FerBenchError(f"{entry.path}: an image outside a class folder; expected {_EXPECTED_FOLDER}")
                continue  # a README or the csv next to the folders is not part of the image set
            code = CLASS_ALIASES.get(entry.name.lower())
            if code is None:
                raise _unknown_class(entry)
            for f in _scan(entry.path):
                if f.is_dir():
                    raise FerBenchError(f"{f.path}: unexpected folder inside a class folder")
                if os.path.splitext(f.name)[1].lower() not in IMAGE_EXTENSIONS:
                    raise FerBenchError(f"{f.path}: not an image file (expected .png, .jpg or .jpeg)")
                split = _split_of_name(f.name, folder_split)
                records.append((SPLIT_CODES[split], code, _natural_key(f.name), f.path))
    if not records:
        raise FerBenchError(f"{root}: no images found; expected {_EXPECTED_FOLDER}")
    records.sort()
    paths = [r[3] for r in records]
    return paths, np.array([r[1] for r in records], np.int64), np.array([r[0] for r in records], np.uint8)


def _read_folder(root: Path) -> FerData:
    paths, labels, splits = _list_folder_images(root)
    images, converted, resized = _decode_images(paths)
    meta = {"reader_version": READER_VERSION, "files": len(paths), "converted_to_gray": converted,
            "resized_to_48x48": resized}
    return FerData(images=images, labels=labels, splits=splits, format="image_folder", source=str(root.resolve()),
                   meta=meta)


def _decode_images(paths: list[str]) -> tuple[np.ndarray, int, int]:
    """Decode images to uint8 48x48 grayscale on a few threads.

    Pillow decodes outside the GIL, but for 48x48 images its Python-side bookkeeping dominates, so the threads
    mostly overlap file reads: expect several seconds for 35,887 images, once (the cache keeps the result).
    """
    from PIL import Image

    out = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE), np.uint8)

    def decode(lo: int) -> tuple[int, int]:
        converted = resized = 0
        for i in range(lo, min(lo + _DECODE_CHUNK, len(paths))):
            try:
                with Image.open(paths[i]) as im:
                    img = im
                    if img.mode != "L":
                        img = img.convert("L")
                        converted += 1
                    if img.size != (IMAGE_SIZE, IMAGE_SIZE):
                        img = img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
                        resized += 1
                    out[i] = np.asarray(img)
            except Exception as exc:  # Pillow raises many types for a damaged file
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise FerBenchError(f"{paths[i]}: cannot read this image ({reason})") from exc
        return converted, resized

    workers = min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        counts = list(pool.map(decode, range(0, len(paths), _DECODE_CHUNK)))
    return out, sum(c for c, _ in counts), sum(r for _, r in counts)
