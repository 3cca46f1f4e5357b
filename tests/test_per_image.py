"""The per_image pipeline: the cached image folder, PerImageDataset and create_loader(..., pipeline="per_image")."""

from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fer_bench.data import per_image
from fer_bench.data.constants import SPLIT_CODES
from fer_bench.data.ferdata import FerData
from fer_bench.data.loader import create_loader
from fer_bench.data.per_image import PerImageDataset, image_folder_for, image_relpath
from fer_bench.data.synthetic import create_synthetic
from fer_bench.data.transforms import FER2013_PIXEL_MEAN, FER2013_PIXEL_STD
from fer_bench.data.writers import write_image_folder
from fer_bench.errors import FerBenchError

from tests.test_loader import N_TRAIN, _data, constant_data, noise_data  # noqa: F401 (the shared fixtures)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("FER_BENCH_CACHE", str(cache))
    return cache




def _source_rows(x: torch.Tensor) -> list[int]:
    pixels = (x * FER2013_PIXEL_STD + FER2013_PIXEL_MEAN).flatten(1)
    assert float((pixels.amax(1) - pixels.amin(1)).max()) < 1e-3  # still flat
    return pixels[:, 0].round().long().tolist()


def _batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


def _epoch(loader, epoch: int) -> list:
    loader.set_epoch(epoch)
    return _batches(loader)


def test_paths_are_the_writers_for_every_split(tmp_path):
    data = create_synthetic(40, seed=1, use_cache=False)
    # Give a few rows the image-folder "test" split (no file-name prefix: im<i>.png).
    splits = data.splits.copy()
    splits[-3:] = SPLIT_CODES["test"]
    data = FerData(images=data.images, labels=data.labels, splits=splits, format="synthetic", source=data.source)
    assert set(data.split_names()) == {"train", "public_test", "private_test", "test"}
    written = write_image_folder(data, tmp_path / "folder")
    assert [str(p.relative_to(tmp_path / "folder").as_posix()) for p in written] == [
        image_relpath(i, name, label) for i, (name, label) in
        enumerate(zip([("train", "public_test", "private_test", "test")[c] for c in splits], data.labels.tolist()))]
    folder, paths = image_folder_for(data)
    assert [Path(p).relative_to(folder) for p in paths] == [p.relative_to(tmp_path / "folder") for p in written]


def test_folder_is_written_once_in_the_cache_and_reused(noise_data, isolated_cache, monkeypatch):
    calls = []
    real = per_image.write_image_folder
    monkeypatch.setattr(per_image, "write_image_folder", lambda *a, **k: calls.append(a) or real(*a, **k))
    folder, paths = image_folder_for(noise_data)
    assert folder == isolated_cache / "image_folders" / noise_data.content_digest()
    assert len(paths) == len(noise_data) and len(calls) == 1
    assert sum(len(files) for _, _, files in os.walk(folder)) == len(noise_data)
    for row in (0, N_TRAIN - 1, N_TRAIN, len(noise_data) - 1):  # the PNG holds the row's pixels, losslessly
        assert np.array_equal(np.asarray(Image.open(paths[row])), noise_data.images[row])
    mtime = os.stat(paths[0]).st_mtime_ns
    again = image_folder_for(noise_data)
    assert again == (folder, paths) and len(calls) == 1 and os.stat(paths[0]).st_mtime_ns == mtime
    create_loader(noise_data, batch_size=8, pipeline="per_image")
    assert len(calls) == 1
    assert list((isolated_cache / "image_folders").iterdir()) == [folder]  # no temporary folder left


def test_concurrent_writers_both_get_the_complete_folder(noise_data, isolated_cache, monkeypatch):
    # Both threads pass the "not there yet" check before either writes, so both write and race to rename.
    barrier = threading.Barrier(2, timeout=30)
    real = per_image.write_image_folder

    def rival(data, out):
        barrier.wait()
        return real(data, out)

    monkeypatch.setattr(per_image, "write_image_folder", rival)
    results: list = [None, None]

    def work(slot: int) -> None:
        try:
            results[slot] = image_folder_for(noise_data)
        except BaseException as exc:  # reported below
            results[slot] = exc

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not isinstance(results[0], BaseException), results[0]
    assert results[0] == results[1]
    folder, paths = results[0]
    assert all(os.path.isfile(p) for p in paths)
    assert sum(len(files) for _, _, files in os.walk(folder)) == len(noise_data)
    assert list((isolated_cache / "image_folders").iterdir()) == [folder]  # the loser's copy is gone


def test_a_rival_that_finished_first_is_used(noise_data, monkeypatch):
    # A rival completes between our check and our write: the writer refuses to overwrite, and its folder is used.
    real = per_image.write_image_folder
    monkeypatch.setattr(per_image, "write_image_folder", lambda data, out: (real(data, out), real(data, out)))
    folder, paths = image_folder_for(noise_data)
    assert all(os.path.isfile(p) for p in paths)


def test_a_damaged_folder_is_a_user_error(noise_data):
    _, paths = image_folder_for(noise_data)
    os.unlink(paths[-1])
    with pytest.raises(FerBenchError, match="incomplete"):
        image_folder_for(noise_data)


@pytest.mark.parametrize("input_size,in_chans", [(48, 1), (64, 3)])
def test_eval_batches_equal_the_batched_pipelines(noise_data, input_size, in_chans):
    common = dict(batch_size=8, train=False, drop_last=False, input_size=input_size, in_chans=in_chans)
    batched = _batches(create_loader(noise_data, ("train", "public_test"), **common))
    per = _batches(create_loader(noise_data, ("train", "public_test"), pipeline="per_image", **common))
    assert len(per) == len(batched) == 17
    for (xp, yp), (xb, yb) in zip(per, batched):
        assert xp.shape == xb.shape and xp.dtype == torch.float32
        assert torch.equal(yp, yb)
        assert torch.allclose(xp, xb, rtol=0, atol=1e-5)


def test_train_batches_shapes_labels_and_rows(constant_data):
    loader = create_loader(constant_data, batch_size=16, pipeline="per_image", input_size=64, in_chans=3,
                           drop_last=False, device="cpu", seed=2)
    batched = create_loader(constant_data, batch_size=16, drop_last=False, seed=2)
    assert len(loader) == 7 and loader.num_samples == N_TRAIN and loader.samples_per_epoch == N_TRAIN
    assert loader.settings()["pipeline"] == "per_image" and batched.settings()["pipeline"] == "batched"
    assert loader.labeled and loader.splits == ("train",) and loader.device == torch.device("cpu")
    for epoch in range(2):
        batches = _epoch(loader, epoch)
        assert [tuple(x.shape) for x, _ in batches] == [(16, 3, 64, 64)] * 6 + [(4, 3, 64, 64)]
        assert all(x.dtype == torch.float32 and y.dtype == torch.int64 for x, y in batches)
        assert all(torch.equal(x[:, 0], x[:, 2]) for x, _ in batches)
        rows = [r for x, _ in batches for r in _source_rows(x)]
        assert sorted(rows) == list(range(N_TRAIN))
        assert torch.cat([y for _, y in batches]).tolist() == constant_data.labels[rows].tolist()
        # The same sampler as the batched pipeline: the same rows in the same batches.
        assert rows == [r for x, _ in _epoch(batched, epoch) for r in _source_rows(x)]
        if epoch == 0:
            first = rows
    assert rows != first


def test_augmentation_reproducible_and_varies_by_epoch_and_seed(noise_data):
    def epoch_batches(seed: int, epoch: int) -> list:
        return _epoch(create_loader(noise_data, batch_size=16, pipeline="per_image", seed=seed), epoch)

    base = epoch_batches(0, 0)
    assert _same(base, epoch_batches(0, 0))
    assert not _same(base, epoch_batches(0, 1))
    assert not _same(base, epoch_batches(1, 0))
    # Augmented: the crops and flips change the images of the same rows (the identity crop is the eval transform).
    rows = noise_data.indices("train")
    order = np.random.default_rng([0, 0]).permutation(rows)[:16]
    plain = PerImageDataset([image_folder_for(noise_data)[1][r] for r in order], noise_data.labels[order].tolist(),
                            train=False)
    assert not torch.equal(base[0][0], torch.stack([plain[i][0] for i in range(16)]))


def test_workers_give_the_same_batches_as_the_main_process(noise_data):
    state = torch.get_rng_state()
    single = create_loader(noise_data, batch_size=16, pipeline="per_image", seed=3)
    multi = create_loader(noise_data, batch_size=16, pipeline="per_image", num_workers=2, seed=3,
                          persistent_workers=True, prefetch_factor=3)
    reference = [_epoch(single, epoch) for epoch in range(2)]
    assert torch.equal(state, torch.get_rng_state())  # the main process put torch's random state back
    for epoch in (0, 1, 0):  # persistent workers too repeat an epoch that is asked for again
        assert _same(_epoch(multi, epoch), reference[epoch])


def test_shards_deal_the_rows_as_the_batched_sampler(constant_data):
    dealt = []
    for rank in range(2):
        common = dict(batch_size=8, seed=4, shard=(rank, 2))
        per = create_loader(constant_data, pipeline="per_image", **common)
        batched = create_loader(constant_data, **common)
        assert len(per) == len(batched) == 6 and per.num_samples == batched.num_samples == N_TRAIN // 2
        assert per.settings()["shard"] == [rank, 2]
        rows = [r for x, _ in _epoch(per, 1) for r in _source_rows(x)]
        assert rows == [r for x, _ in _epoch(batched, 1) for r in _source_rows(x)]
        dealt.append(set(rows))
    assert not dealt[0] & dealt[1]


def test_dataset_pickles_as_paths_and_decodes_the_same(noise_data):
    folder, paths = image_folder_for(noise_data)
    dataset = PerImageDataset(paths, noise_data.labels.tolist(), train=False, mean=0.0, std=255.0)
    blob = pickle.dumps(dataset)
    # The paths and labels, not the pixels (one image alone is 2304 bytes).
    assert len(blob) < sum(len(p) for p in paths) + 32 * len(dataset) + 4096
    copy = pickle.loads(blob)
    x, label = copy[5]
    assert isinstance(label, int) and label == int(noise_data.labels[5])
    assert type(x) is torch.Tensor and x.shape == (1, 48, 48)
    assert torch.allclose(x[0], torch.from_numpy(noise_data.images[5]).float() / 255, atol=1e-6)


def test_bad_pipeline_is_a_one_line_error_naming_the_option(noise_data):
    with pytest.raises(FerBenchError) as info:
        create_loader(noise_data, batch_size=8, pipeline="fast")
    message = str(info.value)
    assert "\n" not in message and "pipeline" in message and "'fast'" in message
    assert "batched" in message and "per_image" in message


def test_unlabeled_data_is_refused_naming_the_source(noise_data):
    unlabeled = _data(noise_data.images, labeled=False)
    for call in (lambda: image_folder_for(unlabeled),
                 lambda: create_loader(unlabeled, batch_size=8, pipeline="per_image")):
        with pytest.raises(FerBenchError, match="test data: the per_image pipeline needs labels"):
            call()


def test_transform_on_device_is_refused(noise_data):
    with pytest.raises(FerBenchError, match="transform_on_device"):
        create_loader(noise_data, batch_size=8, pipeline="per_image", transform_on_device=True, device="cpu")


def test_other_knobs_are_checked_as_for_the_batched_pipeline(noise_data):
    with pytest.raises(FerBenchError, match="batch_size"):
        create_loader(noise_data, batch_size=101, pipeline="per_image")
    with pytest.raises(FerBenchError, match="in_chans"):
        create_loader(noise_data, batch_size=8, pipeline="per_image", in_chans=2)
