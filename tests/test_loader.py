"""The DataLoader policy (create_loader / FerLoader) and the batch transforms it applies."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fer_bench.data.constants import SPLIT_CODES
from fer_bench.data.ferdata import FerData
from fer_bench.data.loader import UNLABELED, _BatchDataset, create_loader
from fer_bench.data.transforms import FER2013_PIXEL_MEAN, FER2013_PIXEL_STD, BatchTransform, create_batch_generator
from fer_bench.errors import FerBenchError

N_TRAIN, N_TEST = 100, 30


def _data(images: np.ndarray, labeled: bool = True) -> FerData:
    n = len(images)
    splits = np.full(n, SPLIT_CODES["train"], dtype=np.uint8)
    splits[N_TRAIN:] = SPLIT_CODES["public_test"]
    labels = (np.arange(n) % 7).astype(np.int64) if labeled else None
    return FerData(images=images, labels=labels, splits=splits, format="test", source="test data")


@pytest.fixture
def noise_data() -> FerData:
    rng = np.random.default_rng(0)
    return _data(rng.integers(0, 256, (N_TRAIN + N_TEST, 48, 48), dtype=np.uint8))


@pytest.fixture
def constant_data() -> FerData:
    # Image i is flat with value i: crops, flips and normalisation keep it flat, so every output names its source.
    values = np.arange(N_TRAIN + N_TEST, dtype=np.uint8)
    return _data(np.repeat(values, 48 * 48).reshape(-1, 48, 48))


def _source_rows(x: torch.Tensor, mean: float = FER2013_PIXEL_MEAN, std: float = FER2013_PIXEL_STD) -> list[int]:
    pixels = x * std + mean
    assert torch.allclose(pixels, pixels[:, :, :1, :1].expand_as(pixels), atol=1e-3)  # still flat
    return pixels[:, 0, 0, 0].round().long().tolist()


def _batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


@pytest.mark.parametrize("input_size", [48, 64, 224])
@pytest.mark.parametrize("in_chans", [1, 3])
def test_shapes_and_dtypes(noise_data, input_size, in_chans):
    loader = create_loader(noise_data, batch_size=8, input_size=input_size, in_chans=in_chans)
    x, y = next(iter(loader))
    assert x.shape == (8, in_chans, input_size, input_size) and x.dtype == torch.float32
    assert y.shape == (8,) and y.dtype == torch.int64
    assert x.is_contiguous()
    if in_chans == 3:
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])


def test_normalisation_is_x_minus_mean_over_std_on_the_0_255_scale(noise_data):
    loader = create_loader(noise_data, batch_size=10, train=False, mean=100.0, std=50.0)
    x, _ = next(iter(loader))
    expected = (torch.from_numpy(noise_data.images[:10]).float() / 255 - 100 / 255) / (50 / 255)
    assert torch.allclose(x[:, 0], expected, atol=1e-5)
    default = BatchTransform(train=False)(torch.from_numpy(noise_data.images[:4]))
    assert torch.allclose(default[:, 0], (torch.from_numpy(noise_data.images[:4]).float() - FER2013_PIXEL_MEAN)
                          / FER2013_PIXEL_STD, atol=1e-5)


def test_resize_is_bilinear_without_antialias(noise_data):
    x = BatchTransform(input_size=64, train=False, mean=0.0, std=1.0)(torch.from_numpy(noise_data.images[:3]))
    reference = F.interpolate(torch.from_numpy(noise_data.images[:3]).float()[:, None], size=(64, 64),
                              mode="bilinear", align_corners=False, antialias=False)
    assert torch.allclose(x, reference, atol=1e-4)


def test_eval_is_row_order_identity_crop_and_repeatable(noise_data):
    loader = create_loader(noise_data, "public_test", batch_size=8, train=False, drop_last=False, mean=0.0, std=1.0)
    first, second = _batches(loader), _batches(loader)
    assert _same(first, second)
    x = torch.cat([b[0] for b in first])
    y = torch.cat([b[1] for b in first])
    rows = noise_data.indices("public_test")
    assert torch.equal(x[:, 0], torch.from_numpy(noise_data.images[rows]).float())
    assert torch.equal(y, torch.from_numpy(noise_data.labels[rows]))


def test_flip_only_gives_originals_and_mirrors_and_both_occur(noise_data):
    images = torch.from_numpy(noise_data.images[:64])
    out = BatchTransform(train=True, pad=0, flip=True, mean=0.0, std=1.0)(images, torch.Generator().manual_seed(1))
    out = out[:, 0].to(torch.uint8)
    same = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    assert torch.all(same | mirrored)
    assert 10 < int(mirrored.sum()) < 54


@pytest.mark.parametrize("mode,torch_mode", [("reflect", "reflect"), ("zeros", "constant")])
def test_crop_is_a_window_of_the_padded_image_with_varying_offsets(noise_data, mode, torch_mode):
    images = torch.from_numpy(noise_data.images[:40])
    transform = BatchTransform(train=True, pad=4, flip=False, mean=0.0, std=1.0, padding_mode=mode)
    out = transform(images, torch.Generator().manual_seed(2))[:, 0]
    padded = F.pad(images.float()[:, None], (4, 4, 4, 4), mode=torch_mode)[:, 0]
    offsets = set()
    for i in range(len(images)):
        hits = [(dy, dx) for dy in range(9) for dx in range(9)
                if torch.equal(out[i], padded[i, dy:dy + 48, dx:dx + 48])]
        assert hits, f"image {i} is not a 48x48 window of its padded copy"
        offsets.add(hits[0])
    assert len(offsets) > 10


def test_augmentation_reproducible_for_a_seed_and_varies_by_epoch_and_seed(noise_data):
    def epoch_batches(seed: int, epoch: int) -> list:
        loader = create_loader(noise_data, batch_size=16, seed=seed)
        loader.set_epoch(epoch)
        return _batches(loader)

    base = epoch_batches(0, 0)
    assert _same(base, epoch_batches(0, 0))
    assert not _same(base, epoch_batches(0, 1))
    assert not _same(base, epoch_batches(1, 0))
    identity = create_loader(noise_data, batch_size=16, train=False)
    assert not _same(base, _batches(identity))


def test_every_sample_once_per_epoch_without_drop_last(constant_data):
    loader = create_loader(constant_data, batch_size=16, drop_last=False)  # 100 = 6 x 16 + 4
    assert len(loader) == 7
    for epoch in range(2):
        loader.set_epoch(epoch)
        batches = _batches(loader)
        assert [len(y) for _, y in batches] == [16] * 6 + [4]
        rows = [r for x, _ in batches for r in _source_rows(x)]
        assert sorted(rows) == list(range(N_TRAIN))
        labels = torch.cat([y for _, y in batches]).tolist()
        assert labels == [r % 7 for r in rows]  # each label travels with its image
        if epoch == 0:
            first_order = rows
    assert rows != first_order  # reshuffled per epoch


def test_drop_last_drops_only_the_partial_batch(constant_data):
    loader = create_loader(constant_data, batch_size=16, drop_last=True)
    assert len(loader) == 6 and loader.samples_per_epoch == 96 and loader.num_samples == N_TRAIN
    rows = [r for x, _ in loader for r in _source_rows(x)]
    assert len(rows) == 96 and len(set(rows)) == 96 and set(rows) <= set(range(N_TRAIN))


def test_workers_give_the_same_batches_as_the_main_process(noise_data):
    single = create_loader(noise_data, batch_size=16, num_workers=0, seed=3)
    multi = create_loader(noise_data, batch_size=16, num_workers=2, seed=3, persistent_workers=True,
                          prefetch_factor=3)
    for epoch in range(2):
        single.set_epoch(epoch)
        multi.set_epoch(epoch)
        assert _same(_batches(single), _batches(multi))


def test_transform_on_device_cpu_matches_transform_in_workers(noise_data):
    in_worker = create_loader(noise_data, batch_size=16, num_workers=2, seed=4, input_size=64, in_chans=3)
    on_device = create_loader(noise_data, batch_size=16, seed=4, input_size=64, in_chans=3, device="cpu",
                              transform_on_device=True)
    assert on_device.settings()["transform_on_device"] is True and on_device.device == torch.device("cpu")
    batches = _batches(on_device)
    assert batches[0][0].shape == (16, 3, 64, 64)
    assert _same(_batches(in_worker), batches)


def test_memory_mapped_data_works_with_workers(noise_data, tmp_path):
    np.save(tmp_path / "images.npy", noise_data.images)
    np.save(tmp_path / "labels.npy", noise_data.labels)
    mapped = FerData(images=np.load(tmp_path / "images.npy", mmap_mode="r"),
                     labels=np.load(tmp_path / "labels.npy", mmap_mode="r"), splits=noise_data.splits,
                     format="test", source="mapped")
    assert not mapped.images.flags.writeable
    reference = _batches(create_loader(noise_data, batch_size=16, seed=5))
    assert _same(_batches(create_loader(mapped, batch_size=16, num_workers=2, seed=5)), reference)
    # A spawned worker gets the dataset pickled: the mapped arrays travel as file references, not as bytes.
    dataset = _BatchDataset(mapped.images, mapped.labels, None, seed=0)
    blob = pickle.dumps(dataset)
    assert len(blob) < 2000
    copy = pickle.loads(blob)
    assert isinstance(copy.images, np.memmap) and np.array_equal(copy.images, noise_data.images)
    assert np.array_equal(copy.labels, noise_data.labels)


def test_unlabeled_data_yields_minus_one(noise_data):
    unlabeled = _data(noise_data.images, labeled=False)
    loader = create_loader(unlabeled, batch_size=16)
    assert loader.labeled is False and create_loader(noise_data, batch_size=16).labeled is True
    for _, y in loader:
        assert torch.all(y == UNLABELED)


def test_several_splits_are_pooled(constant_data):
    loader = create_loader(constant_data, ("train", "public_test"), batch_size=10, train=False, drop_last=False)
    rows = [r for x, _ in loader for r in _source_rows(x)]
    assert rows == list(range(N_TRAIN + N_TEST))


def test_settings_name_every_knob_and_serialise(noise_data):
    loader = create_loader(noise_data, batch_size=8, num_workers=1, prefetch_factor=4, persistent_workers=True,
                           input_size=64, in_chans=3, drop_last=False, seed=7)
    settings = loader.settings()
    assert {k: settings[k] for k in ("batch_size", "num_workers", "pin_memory", "persistent_workers",
                                     "prefetch_factor", "drop_last", "transform_on_device", "input_size",
                                     "in_chans")} == {
        "batch_size": 8, "num_workers": 1, "pin_memory": False, "persistent_workers": True, "prefetch_factor": 4,
        "drop_last": False, "transform_on_device": False, "input_size": 64, "in_chans": 3}
    assert settings["seed"] == 7 and settings["num_samples"] == N_TRAIN
    json.dumps(settings)
    assert (loader.batch_size, loader.num_workers, loader.drop_last, len(loader)) == (8, 1, False, 13)
    settings["batch_size"] = 1  # a copy: the loader's own record is unchanged
    assert loader.settings()["batch_size"] == 8


def test_iterating_leaves_the_global_random_state_alone(noise_data):
    state = torch.get_rng_state()
    for _ in create_loader(noise_data, batch_size=16, num_workers=1):
        pass
    assert torch.equal(state, torch.get_rng_state())


def test_batch_generator_streams_differ():
    draws = {tuple(torch.rand(4, generator=create_batch_generator(0, e, b)).tolist()) for e in range(3)
             for b in range(3)}
    assert len(draws) == 9
    assert torch.equal(torch.rand(4, generator=create_batch_generator(1, 2, 3)),
                       torch.rand(4, generator=create_batch_generator(1, 2, 3)))


@pytest.mark.parametrize("kwargs,option", [
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": -1}, "batch_size"),
    ({"batch_size": 2.0}, "batch_size"),
    ({"batch_size": 101}, "batch_size"),  # larger than the 100-image split with drop_last
    ({"num_workers": -1}, "num_workers"),
    ({"prefetch_factor": 2}, "prefetch_factor"),
    ({"num_workers": 1, "prefetch_factor": 0}, "prefetch_factor"),
    ({"persistent_workers": True}, "persistent_workers"),
    ({"split": "validation"}, "split"),
    ({"split": "private_test"}, "split"),  # a known split this data does not have
    ({"split": []}, "split"),
    ({"split": None}, "split"),
    ({"input_size": 0}, "input_size"),
    ({"in_chans": 2}, "in_chans"),
    ({"std": 0.0}, "std"),
    ({"device": "nonsense"}, "device"),
    ({"seed": -1}, "seed"),
])
def test_bad_knobs_are_user_errors_naming_the_option(noise_data, kwargs, option):
    kwargs = {"batch_size": 8, **kwargs}
    split = kwargs.pop("split", "train")
    with pytest.raises(FerBenchError, match=option):
        create_loader(noise_data, split, **kwargs)


def test_large_batch_is_fine_without_drop_last(noise_data):
    loader = create_loader(noise_data, batch_size=500, drop_last=False, train=False)
    assert [len(y) for _, y in loader] == [N_TRAIN]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_pin_memory_without_cuda_is_refused(noise_data):
    with pytest.raises(FerBenchError, match="pin_memory"):
        create_loader(noise_data, batch_size=8, pin_memory=True)
    with pytest.raises(FerBenchError, match="device"):
        create_loader(noise_data, batch_size=8, device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_transform_on_cuda_matches_the_cpu(noise_data):
    cpu = _batches(create_loader(noise_data, batch_size=16, seed=6, input_size=64))
    cuda = create_loader(noise_data, batch_size=16, seed=6, input_size=64, device="cuda", transform_on_device=True,
                         pin_memory=True, num_workers=1)
    for (xc, yc), (xg, yg) in zip(cpu, cuda):
        assert xg.device.type == "cuda" and yg.device.type == "cuda"
        assert torch.allclose(xc, xg.cpu(), atol=1e-4) and torch.equal(yc, yg.cpu())


def test_each_batch_draws_its_own_augmentation():
    # All images alike: batches can only differ through their crops and flips.
    same = np.repeat(np.random.default_rng(1).integers(0, 256, (1, 48, 48), dtype=np.uint8), N_TRAIN + N_TEST, 0)
    batches = _batches(create_loader(_data(same), batch_size=16))
    assert not torch.equal(batches[0][0], batches[1][0])
