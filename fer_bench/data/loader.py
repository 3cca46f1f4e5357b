"""fer_bench's DataLoader policies: "batched" (whole uint8 batches out of workers, transforms in the worker or on
the device; the default) and "per_image" (the common ImageFolder pipeline, for comparison).

Batched: a sampler hands out the row numbers of a whole batch; the dataset gathers those rows from the uint8 image
array in one ``np.take`` (the only copy: memory-mapped arrays stay shared between forked workers) and returns one
contiguous batch. No per-image Python, no collation of 64 small tensors. The batch transform (crop, flip, normalise,
resize) runs either in the worker on the CPU, or, with ``transform_on_device=True``, after the uint8 batch has been
copied to the device (see fer_bench.data.transforms for why that is cheaper on a GPU).

Determinism: the shuffle of an epoch comes from (seed, epoch) and every batch's augmentation from
(seed, epoch, batch number), so the batches do not depend on ``num_workers`` or on where the transform runs.
Call ``set_epoch(e)`` before each epoch, as with DistributedSampler; without it every epoch repeats epoch 0.

Per_image (``pipeline="per_image"``, fer_bench.data.per_image): the same sampler hands out the same rows, but the
workers open one PNG file per row from the data set's image folder (written once to the data cache), transform it
with torchvision's per-image transforms, and the DataLoader's default collation stacks the batch: the per-image
Python work that the EfficientNet FER study measured, where more workers first help and then cost. Its batches too
do not depend on ``num_workers``; its eval batches equal the batched pipeline's up to float rounding.

Unlabeled data (e.g. the competition's test.csv) is loaded for timing and inference: its labels come out as -1,
which a classification loss rejects loudly (``FerLoader.labeled`` tells them apart).
"""

from __future__ import annotations

import contextlib
import mmap
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from fer_bench.data.constants import SPLITS
from fer_bench.data.ferdata import FerData
from fer_bench.data.transforms import BatchTransform, create_batch_generator
from fer_bench.errors import FerBenchError

UNLABELED = -1

#: The values of create_loader's ``pipeline``.
PIPELINES = ("batched", "per_image")


@contextlib.contextmanager
def _more_workers_than_cores_allowed() -> Iterator[None]:
    """More workers than cores is what the workers study measures (the share of time waiting for data rises
    again): torch's UserWarning against it (at construction, and at each new iterator) is not a problem here, and
    the loader's settings record the count."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"This DataLoader will create \d+ worker processes",
                                category=UserWarning)
        yield


class _BatchSampler(Sampler):
    """Yields (epoch, batch number, row numbers) per batch: shuffled from (seed, epoch) when ``shuffle``.

    With ``shard=(rank, replicas)`` it is torch's DistributedSampler in batches: every rank draws the same order
    of all rows for an epoch, keeps every ``replicas``-th row from its rank on, and the order's tail that would
    give ranks unequal shares is dropped, so every rank makes the same number of steps (a DDP collective per step).
    """

    def __init__(self, rows: np.ndarray, batch_size: int, shuffle: bool, drop_last: bool, seed: int,
                 shard: tuple[int, int] = (0, 1)) -> None:
        self.rows = rows
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0
        self.rank, self.replicas = shard
        self.per_rank = len(rows) // self.replicas

    def __len__(self) -> int:
        full, rest = divmod(self.per_rank, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self) -> Iterator[tuple[int, int, np.ndarray]]:
        epoch = self.epoch
        order = np.random.default_rng([self.seed, epoch]).permutation(self.rows) if self.shuffle else self.rows
        if self.replicas > 1:
            order = order[:self.per_rank * self.replicas][self.rank::self.replicas]
        for number in range(len(self)):
            yield epoch, number, order[number * self.batch_size:(number + 1) * self.batch_size]


class _KeyBatches(Sampler):
    """The per_image pipeline's batch sampler: each batch of the batched sampler as a list of per-image keys
    (epoch, position of the row among the dataset's samples), for a PerImageDataset and default collation."""

    def __init__(self, batches: _BatchSampler, rows: np.ndarray) -> None:
        self.batches = batches
        self.rows = rows  # ascending, as FerData.indices gives them

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for epoch, _number, rows in self.batches:
            yield [(epoch, position) for position in np.searchsorted(self.rows, rows).tolist()]


class _BatchDataset(Dataset):
    """Gathers a whole batch of rows as uint8 (and transforms it when a transform is given)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None, transform: BatchTransform | None,
                 seed: int) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform
        self.seed = seed

    def __getitem__(self, item: tuple[int, int, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, number, rows = item
        # np.take copies just this batch, so read-only (memory-mapped) arrays never reach torch.from_numpy.
        images = torch.from_numpy(np.take(self.images, rows, axis=0))
        if self.labels is None:
            labels = torch.full((len(rows),), UNLABELED, dtype=torch.int64)
        else:
            labels = torch.from_numpy(np.take(self.labels, rows).astype(np.int64, copy=False))
        if self.transform is not None:
            images = self.transform(images, create_batch_generator(self.seed, epoch, number))
        return images, labels

    def __getstate__(self) -> dict[str, Any]:
        # Spawned workers receive the dataset pickled: a memory-mapped array travels as its file and is opened
        # again there, rather than as a full copy of its bytes.
        state = dict(self.__dict__)
        state["images"] = _portable(self.images)
        state["labels"] = _portable(self.labels)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["images"] = _reopen(state["images"])
        state["labels"] = _reopen(state["labels"])
        self.__dict__.update(state)


def _portable(array: np.ndarray | None) -> Any:
    if isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and array.filename:
        order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
        return ("memmap", array.filename, array.dtype.str, array.shape, array.offset, order)
    return array


def _reopen(value: Any) -> np.ndarray | None:
    if isinstance(value, tuple) and value and value[0] == "memmap":
        _, filename, dtype, shape, offset, order = value
        return np.memmap(filename, dtype=np.dtype(dtype), mode="r", shape=shape, offset=offset, order=order)
    return value


class FerLoader:
    """Iterates (x float32 [B, C, S, S], y int64 [B]) for one FerData selection; built by ``create_loader``.

    Attributes:
        batch_size, num_workers, drop_last: as given.
        num_samples: images in the selected split(s); ``samples_per_epoch`` of them are yielded per epoch.
        splits: the selected split names. labeled: False when y is all -1.
        device: where batches are delivered (None: left where the loader made them, the CPU).
        transform: the BatchTransform applied to every batch (per_image: the same parameters, applied per image by
            the dataset's torchvision transforms).
    """

    def __init__(self, loader: DataLoader, sampler: _BatchSampler, transform: BatchTransform,
                 device: torch.device | None, transform_on_device: bool, pin_memory: bool,
                 splits: tuple[str, ...], labeled: bool, settings: dict[str, Any]) -> None:
        self._loader = loader
        self._sampler = sampler
        self._transform_on_device = transform_on_device
        self._pinned = pin_memory
        self._settings = settings
        self.transform = transform
        self.device = device
        self.splits = splits
        self.labeled = labeled
        self.batch_size = sampler.batch_size
        self.num_workers = settings["num_workers"]
        self.drop_last = sampler.drop_last
        self.num_samples = sampler.per_rank
        self.samples_per_epoch = min(len(sampler) * self.batch_size, self.num_samples)

    def __len__(self) -> int:
        return len(self._sampler)

    @property
    def epoch(self) -> int:
        return self._sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle and augmentation the next iteration yields."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise FerBenchError(f"epoch must be a non-negative integer, got {epoch!r}")
        self._sampler.epoch = int(epoch)

    def settings(self) -> dict[str, Any]:
        """Every knob of this loader, JSON-serialisable, for a benchmark's extra_info."""
        return dict(self._settings)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self._sampler.epoch
        with _more_workers_than_cores_allowed():
            batches = iter(self._loader)
        for number, (x, y) in enumerate(batches):
            if self.device is not None:
                x = x.to(self.device, non_blocking=self._pinned)
                y = y.to(self.device, non_blocking=self._pinned)
            if self._transform_on_device:
                x = self.transform(x, create_batch_generator(self._sampler.seed, epoch, number))
            yield x, y

    def __repr__(self) -> str:
        knobs = ", ".join(f"{k}={v!r}" for k, v in self._settings.items())
        return f"FerLoader({knobs})"


def create_loader(data: FerData, split: str | Sequence[str] = "train", *, batch_size: int, num_workers: int = 0,
                  train: bool = True, input_size: int = 48, in_chans: int = 1, mean: float | None = None,
                  std: float | None = None, device: str | torch.device | None = None,
                  transform_on_device: bool = False, pin_memory: bool = False, persistent_workers: bool = False,
                  prefetch_factor: int | None = None, drop_last: bool = True, seed: int = 0,
                  shard: tuple[int, int] | None = None, pipeline: str = "batched") -> FerLoader:
    """The loader of one or more splits of ``data`` under one of fer_bench's DataLoader policies.

    Args:
        data: the images (uint8, possibly memory-mapped), labels and splits.
        split: a split name or several (their rows are pooled).
        batch_size: images per batch.
        num_workers: DataLoader worker processes (0: batches are made in the calling process).
        train: shuffle per epoch and augment (random crop and flip); False keeps row order and the identity crop.
        input_size, in_chans, mean, std: the BatchTransform's output size, channels and 0-255 statistics
            (mean and std default to the data set's own ``pixel_mean``/``pixel_std`` from its meta, else FER2013's).
        device: deliver batches there (None: leave them on the CPU).
        transform_on_device: yield uint8 batches from the workers and transform them on ``device`` (the CPU when
            device is None).
        pin_memory: page-locked batches for asynchronous copies; needs a CUDA device.
        persistent_workers: keep workers alive between epochs; needs num_workers > 0.
        prefetch_factor: batches loaded ahead per worker; needs num_workers > 0 (torch's default there: 2).
        drop_last: drop the last incomplete batch, so every step sees the same shape.
        seed: the shuffle and augmentation seed.
        shard: (rank, replicas) for DistributedDataParallel: this rank's share of each epoch, as torch's
            DistributedSampler deals it (the same shuffled order on every rank, every replicas-th row, equal shares).
        pipeline: "batched" (whole uint8 batches from the in-memory array) or "per_image" (one PNG file per image
            from the data set's image folder in the data cache, written on first use, transformed per image by
            torchvision and collated by the DataLoader; needs labels, and transforms only in the workers).

    Raises:
        FerBenchError: a bad knob, naming the option.
    """
    if not isinstance(data, FerData):
        raise FerBenchError(f"data must be a FerData, got {type(data).__name__}")
    if pipeline not in PIPELINES:
        raise FerBenchError(f"pipeline must be one of {', '.join(PIPELINES)}, got {pipeline!r}")
    if pipeline == "per_image" and transform_on_device:
        raise FerBenchError("transform_on_device is not available with pipeline 'per_image' (its per-image "
                            "transforms run in the DataLoader workers)")
    splits = _resolve_splits(data, split)
    _check_int("batch_size", batch_size, minimum=1)
    _check_int("num_workers", num_workers, minimum=0)
    _check_int("seed", seed, minimum=0)
    if prefetch_factor is not None:
        _check_int("prefetch_factor", prefetch_factor, minimum=1)
        if num_workers == 0:
            raise FerBenchError("prefetch_factor needs num_workers > 0 (batches are prefetched by workers only)")
    if persistent_workers and num_workers == 0:
        raise FerBenchError("persistent_workers needs num_workers > 0")
    rows = data.indices(*splits)
    rank, replicas = shard or (0, 1)
    if not (isinstance(replicas, int) and isinstance(rank, int) and replicas >= 1 and 0 <= rank < replicas):
        raise FerBenchError(f"shard must be (rank, replicas) with 0 <= rank < replicas, got {shard!r}")
    if drop_last and batch_size > len(rows) // replicas:
        share = f" ({len(rows) // replicas} a rank of {replicas})" if replicas > 1 else ""
        raise FerBenchError(f"batch_size {batch_size} is larger than split {'+'.join(splits)} ({len(rows)} images"
                            f"{share}) with drop_last: no batch would remain")
    target = _resolve_device(device)
    if pin_memory and not (torch.cuda.is_available() and (target is None or target.type == "cuda")):
        raise FerBenchError("pin_memory needs a CUDA device (it only speeds up host-to-GPU copies)")
    if transform_on_device and target is None:
        target = torch.device("cpu")
    # normalise with the data set's own statistics when the reader or cache measured them
    if mean is None:
        mean = data.meta.get("pixel_mean")
    if std is None:
        std = data.meta.get("pixel_std")
    transform = BatchTransform(input_size=input_size, in_chans=in_chans, mean=mean, std=std, train=train)

    sampler = _BatchSampler(rows, batch_size, shuffle=bool(train), drop_last=bool(drop_last), seed=seed,
                            shard=(rank, replicas))
    if pipeline == "per_image":
        from fer_bench.data.per_image import PerImageDataset, image_folder_for

        _folder, paths = image_folder_for(data)
        dataset: Dataset = PerImageDataset([paths[row] for row in rows.tolist()], data.labels[rows].tolist(),
                                           rows=rows, train=train, input_size=input_size, in_chans=in_chans,
                                           mean=transform.mean, std=transform.std, seed=seed)
        # Lists of per-image keys, made into a batch by the DataLoader's default collation.
        batching: dict[str, Any] = {"batch_sampler": _KeyBatches(sampler, rows)}
    else:
        dataset = _BatchDataset(data.images, data.labels, None if transform_on_device else transform, seed)
        batching = {"batch_size": None, "sampler": sampler}  # the sampler yields whole batches
    with _more_workers_than_cores_allowed():
        loader = DataLoader(
            dataset,
            **batching,
            num_workers=num_workers,
            pin_memory=bool(pin_memory),
            persistent_workers=bool(persistent_workers),
            prefetch_factor=prefetch_factor,
            # Its own generator, so iterating never consumes torch's global random state (model initialisation).
            generator=torch.Generator().manual_seed(seed),
        )
    settings = {
        "pipeline": pipeline,
        "batch_size": batch_size,
        "num_workers": num_workers,
        "pin_memory": bool(pin_memory),
        "persistent_workers": bool(persistent_workers),
        # The effective value: torch prefetches 2 batches per worker unless told otherwise, none without workers.
        "prefetch_factor": (prefetch_factor or 2) if num_workers > 0 else None,
        "drop_last": bool(drop_last),
        "transform_on_device": bool(transform_on_device),
        "input_size": input_size,
        "in_chans": in_chans,
        "train": bool(train),
        "splits": list(splits),
        "num_samples": sampler.per_rank,
        "shard": [rank, replicas] if replicas > 1 else None,
        "mean": transform.mean,
        "std": transform.std,
        "seed": seed,
        "device": None if target is None else str(target),
    }
    return FerLoader(loader, sampler, transform, target, bool(transform_on_device), bool(pin_memory), splits,
                     data.labeled, settings)


def _resolve_splits(data: FerData, split: str | Sequence[str]) -> tuple[str, ...]:
    if not isinstance(split, (str, Sequence)):
        raise FerBenchError(f"split must be a split name or a sequence of them, got {split!r}")
    names = (split,) if isinstance(split, str) else tuple(split)
    if not names:
        raise FerBenchError("split must name at least one split")
    present = data.split_names()
    for name in names:
        if not isinstance(name, str) or name not in SPLITS:
            raise FerBenchError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}")
        if name not in present:
            raise FerBenchError(f"split {name!r} is not in {data.source} (it has {', '.join(present) or 'no rows'})")
    return tuple(dict.fromkeys(names))


def _resolve_device(device: str | torch.device | None) -> torch.device | None:
    if device is None:
        return None
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise FerBenchError(f"device {device!r} is not a torch device ({exc})") from exc
    if target.type == "cuda" and not torch.cuda.is_available():
        raise FerBenchError(f"device {device!r}: CUDA is not available on this machine")
    return target


def _check_int(option: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise FerBenchError(f"{option} must be an integer >= {minimum}, got {value!r}")
