"""FerData: a decoded FER data set held as uint8 arrays (possibly memory-mapped from the cache).

The lowest module of fer_bench.data: the readers, the cache, the synthetic set and the loaders all build or read a
FerData, and it imports none of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fer_bench.data.constants import CLASS_NAMES, IMAGE_SIZE, SPLIT_CODES, SPLITS


@dataclass(frozen=True)
class FerData:
    """Images, labels and splits of one FER data set.

    Attributes:
        images: uint8 array, N x 48 x 48, row-major grayscale.
        labels: int64 array of FER2013 codes (0 angry ... 6 neutral), or None for an unlabeled source.
        splits: uint8 array of indices into ``SPLITS``.
        format: the detected source format (``fer2013_csv``, ``image_folder``, ``synthetic``, ...).
        source: where the data came from (a path, or a description of the synthetic set).
        meta: anything else the reader wants to record (JSON-serialisable).
    """

    images: np.ndarray
    labels: np.ndarray | None
    splits: np.ndarray
    format: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != np.uint8 or self.images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"images must be uint8 N x 48 x 48, got {self.images.dtype} {self.images.shape}")
        if self.labels is not None and len(self.labels) != n:
            raise ValueError("labels and images differ in length")
        if len(self.splits) != n:
            raise ValueError("splits and images differ in length")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labeled(self) -> bool:
        return self.labels is not None

    def split_names(self) -> list[str]:
        """The splits present, in SPLITS order."""
        present = set(np.unique(self.splits).tolist())
        return [name for code, name in enumerate(SPLITS) if code in present]

    def indices(self, *split: str) -> np.ndarray:
        """Row indices of the given split names (all rows when none is given)."""
        if not split:
            return np.arange(len(self))
        codes = [SPLIT_CODES[s] for s in split]
        return np.flatnonzero(np.isin(self.splits, codes))

    def subset(self, *split: str) -> "FerData":
        """A new FerData holding only the given splits (copies the selected rows)."""
        idx = self.indices(*split)
        return FerData(
            images=np.ascontiguousarray(self.images[idx]),
            labels=None if self.labels is None else np.ascontiguousarray(self.labels[idx]),
            splits=np.ascontiguousarray(self.splits[idx]),
            format=self.format,
            source=self.source,
            meta=dict(self.meta),
        )

    def content_digest(self) -> str:
        """SHA-256 of the decoded images, labels and splits: the same faces give the same digest whichever
        format (csv, image folder, npz) they were read from."""
        h = hashlib.sha256()
        for array in (self.images, self.labels, self.splits):
            if array is None:
                h.update(b"unlabeled")
            else:
                h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()

    def class_counts(self) -> dict[str, dict[str, int]] | None:
        """{split: {class: count}} for every split present, or None when unlabeled."""
        if self.labels is None:
            return None
        out: dict[str, dict[str, int]] = {}
        for name in self.split_names():
            lab = self.labels[self.splits == SPLIT_CODES[name]]
            counts = np.bincount(lab, minlength=len(CLASS_NAMES))
            out[name] = {cls: int(c) for cls, c in zip(CLASS_NAMES, counts)}
        return out
