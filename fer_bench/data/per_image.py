"""The per_image pipeline: what most FER training scripts run, an ImageFolder of PNG files and per-image transforms.

The batched pipeline (fer_bench.data.loader) gathers whole uint8 batches from an in-memory array, so more workers
only add overhead. The pipeline the EfficientNet FER study measured is the common one: a torchvision
ImageFolder-style dataset whose workers open and decode one PNG per sample, apply torchvision transforms to that one
image, and hand the DataLoader 64 small tensors that its default collation stacks into a batch. That per-image
Python work, decoding and collation is the cost being measured, so this module does exactly that, nothing cleverer:
``create_loader(..., pipeline="per_image")`` builds it (see fer_bench.data.loader).

The files: FER2013's image-folder layout (train/<class>/Training_<i>.png, test/<class>/PublicTest_<i>.png, ...),
written once per data set by ``fer_bench.data.writers.write_image_folder`` under the data cache,
``cache_dir()/image_folders/<content digest>``, and reused by every later run. The writer builds the folder in a
temporary sibling and renames it into place, so a folder under its final name is always complete; two processes
writing the same entry both finish with the winner's folder (the loser's rename fails and its copy is discarded).

Randomness: every image's crop and flip are drawn from torch's CPU generator seeded from (seed, epoch, row), so a
batch does not depend on ``num_workers``, on persistent workers, or on which worker made it, and iterating never
changes the caller's random state (in the main process the generator's state is restored after each image).
What is and is not bit-identical to the batched pipeline:

- eval (``train=False``): the same rows in the same order with the same labels, and the same tensors up to float
  rounding (here the image is scaled to 0-1 before normalising with mean/255 and std/255, and resized before
  normalising; the batched transform computes (x - mean) / std and resizes after; about 1e-6 apart);
- train: the same shuffle, batches and labels (the same sampler), but other random crops and flips (torchvision
  draws them per image from its own calls; the batched transform draws a whole batch from one generator).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from fer_bench.data.cache import cache_dir
from fer_bench.data.constants import CLASS_NAMES, IMAGE_SIZE, SPLITS
from fer_bench.data.ferdata import FerData
from fer_bench.data.transforms import BatchTransform
from fer_bench.data.writers import write_image_folder
from fer_bench.errors import FerBenchError

# write_image_folder's file-name prefix of each split (the prefixless "test" split is written as im<i>).
_NAME_PREFIX = {"train": "Training", "public_test": "PublicTest", "private_test": "PrivateTest"}
# A temporary folder of an image-folder write untouched for this long was left by a killed process.
_STALE_AFTER_S = 24 * 3600
_MASK64 = (1 << 64) - 1


def image_relpath(row: int, split: str, label: int, ext: str = ".png") -> str:
    """Where ``write_image_folder`` puts row ``row`` (of ``split`` and class code ``label``), relative to its folder:
    train/<class>/Training_<row>.png, test/<class>/PublicTest_<row>.png, PrivateTest_<row>.png, or im<row>.png."""
    prefix = _NAME_PREFIX.get(split)
    name = f"{prefix}_{row}{ext}" if prefix else f"im{row}{ext}"
    return f"{'train' if split == 'train' else 'test'}/{CLASS_NAMES[label]}/{name}"


def image_folder_for(data: FerData) -> tuple[Path, list[str]]:
    """The image folder of ``data`` in the data cache (written on first use) and the path of each row, in row order.

    Raises:
        FerBenchError: ``data`` is unlabeled (the layout's class folders are its labels), or the cache is not
            writable.
    """
    if data.labels is None:
        raise FerBenchError(f"{data.source}: the per_image pipeline needs labels (it reads FER2013's image-folder "
                            "layout, whose class folders are the labels) and this data set is unlabeled")
    root = cache_dir() / "image_folders"
    folder = root / data.content_digest()
    paths = [str(folder / image_relpath(row, SPLITS[code], label))
             for row, (code, label) in enumerate(zip(data.splits.tolist(), data.labels.tolist()))]
    if not folder.is_dir():
        try:
            root.mkdir(parents=True, exist_ok=True)
            _sweep_stale(root)
            write_image_folder(data, folder)
        except (OSError, FerBenchError) as exc:
            # Another process renamed its complete folder into place first: the writer refused to overwrite it or
            # lost the rename, and discarded its own copy. Anything under the final name is complete.
            if not folder.is_dir():
                if isinstance(exc, FerBenchError):
                    raise
                raise FerBenchError(f"{folder}: cannot write the per_image pipeline's image folder "
                                    f"({exc.strerror or exc}); point FER_BENCH_CACHE at a writable folder") from exc
    for path in paths[:1] + paths[-1:]:
        if not os.path.isfile(path):
            raise FerBenchError(f"{folder}: image folder is incomplete ({path} is missing); delete the folder "
                                "and it is written again")
    return folder, paths


def _sweep_stale(root: Path) -> None:
    """Remove the temporary folders of image-folder writes killed a day or more ago (the writer names them
    .<digest>.tmp-<random>)."""
    for child in root.iterdir():
        if not (child.name.startswith(".") and ".tmp-" in child.name):
            continue
        try:
            stale = time.time() - child.stat().st_mtime > _STALE_AFTER_S
        except OSError:
            continue  # renamed into place or removed meanwhile
        if stale:
            shutil.rmtree(child, ignore_errors=True)


def image_seed(seed: int, epoch: int, row: int) -> int:
    """The 63-bit seed of one image's augmentation in one epoch (splitmix64 over the three numbers)."""
    value = 0
    for part in (seed, epoch, row):
        value = (value ^ part) + 0x9E3779B97F4A7C15 & _MASK64
        value = (value ^ value >> 30) * 0xBF58476D1CE4E5B9 & _MASK64
        value = (value ^ value >> 27) * 0x94D049BB133111EB & _MASK64
        value ^= value >> 31
    return value >> 1


def create_image_transform(params: BatchTransform) -> Any:
    """The torchvision transforms v2 pipeline equivalent to ``params`` for one PIL "L" image.

    Train: RandomCrop(48, padding, reflect) and RandomHorizontalFlip on the PIL image; then float32 on 0-1, a
    bilinear resize without antialiasing when the size differs from 48, normalisation with mean/255 and std/255,
    and the grey channel repeated when in_chans is 3.
    """
    from torchvision.transforms import InterpolationMode, v2

    steps: list[Any] = []
    if params.train:
        if params.pad:
            mode = "constant" if params.padding_mode == "zeros" else params.padding_mode
            steps.append(v2.RandomCrop(IMAGE_SIZE, padding=params.pad, padding_mode=mode))
        if params.flip:
            steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if params.input_size != IMAGE_SIZE:
        steps.append(v2.Resize((params.input_size, params.input_size), interpolation=InterpolationMode.BILINEAR,
                               antialias=False))
    steps.append(v2.Normalize(mean=[params.mean / 255], std=[params.std / 255]))
    if params.in_chans == 3:
        steps.append(v2.Lambda(_repeat_channels))
    return v2.Compose(steps)


def _repeat_channels(x: torch.Tensor) -> torch.Tensor:
    return x.expand(3, -1, -1).contiguous()


class PerImageDataset(Dataset):
    """(path, label) samples of the selected rows; each item is one PNG opened, decoded and transformed.

    Args:
        paths, labels: one file and one class code per sample.
        rows: the data set's row number of each sample (seeds its augmentation; default 0 .. n - 1).
        train, input_size, in_chans, mean, std: as BatchTransform's (mean and std on the 0-255 scale).
        seed: the augmentation seed.

    ``dataset[i]`` (an int) transforms sample i with torch's global random state, as any torchvision dataset;
    ``dataset[(epoch, i)]``, the key ``create_loader`` hands out, draws from a generator seeded from
    (seed, epoch, rows[i]) and leaves the caller's random state as it was.
    """

    def __init__(self, paths: Sequence[str], labels: Sequence[int], *, rows: Sequence[int] | None = None,
                 train: bool = True, input_size: int = 48, in_chans: int = 1, mean: float | None = None,
                 std: float | None = None, seed: int = 0) -> None:
        if len(paths) != len(labels) or (rows is not None and len(rows) != len(paths)):
            raise ValueError("paths, labels and rows differ in length")
        # Plain strings and ints: a spawned worker receives the dataset pickled, and a list of short strings is
        # small next to images.
        self.samples = [(str(p), int(c)) for p, c in zip(paths, labels)]
        self.rows = np.arange(len(self.samples)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.seed = int(seed)
        self.params = BatchTransform(input_size=input_size, in_chans=in_chans, mean=mean, std=std, train=train)
        self.transform = create_image_transform(self.params)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        from PIL import Image

        if isinstance(item, tuple):
            epoch, index = item
        else:
            epoch, index = None, item
        path, label = self.samples[index]
        with Image.open(path) as file:
            image = file.convert("L")
        if epoch is None or not self.params.train:
            x = self.transform(image)
        else:
            x = self._seeded(image, image_seed(self.seed, int(epoch), int(self.rows[index])))
        return x.as_subclass(torch.Tensor), label

    def _seeded(self, image: Any, seed: int) -> torch.Tensor:
        generator = torch.default_generator
        if get_worker_info() is not None:
            # A worker's random state is its own (the DataLoader seeded it): no need to put it back.
            generator.manual_seed(seed)
            return self.transform(image)
        state = generator.get_state()
        try:
            generator.manual_seed(seed)
            return self.transform(image)
        finally:
            generator.set_state(state)
