"""fer_bench.data.dataset: the rows a run trains on (train_split, take) and where its data comes from."""

from __future__ import annotations

import numpy as np

from fer_bench.data import dataset
from fer_bench.data.dataset import load_run_data, take, train_split
from fer_bench.data.ferdata import FerData


def make_data(splits: list[int], labeled: bool = True) -> FerData:
    n = len(splits)
    return FerData(
        images=np.arange(n * 48 * 48, dtype=np.uint64).astype(np.uint8).reshape(n, 48, 48),
        labels=np.arange(n, dtype=np.int64) % 7 if labeled else None,
        splits=np.array(splits, np.uint8),
        format="synthetic",
        source="rows",
        meta={"seed": 3},
    )


def test_ferdata_is_importable_from_dataset_too():
    assert dataset.FerData is FerData


def test_train_split_prefers_train_else_the_first_split_present():
    assert train_split(make_data([1, 0, 2])) == "train"
    assert train_split(make_data([2, 1, 2])) == "public_test"
    assert train_split(make_data([3, 3])) == "test"


def test_take_keeps_the_first_rows_of_the_split_in_order():
    data = make_data([1, 0, 0, 2, 0, 0])
    subset = take(data, "train", 3)
    assert subset.splits.tolist() == [0, 0, 0]
    assert subset.labels.tolist() == [1, 2, 4]
    np.testing.assert_array_equal(subset.images, data.images[[1, 2, 4]])
    assert (subset.format, subset.source, subset.meta) == ("synthetic", "rows", {"seed": 3})
    assert subset.meta is not data.meta
    assert len(take(data, "train", 100)) == 4
    assert len(take(data, "test", 5)) == 0


def test_take_of_unlabeled_data_stays_unlabeled():
    subset = take(make_data([0, 1, 0], labeled=False), "train", 5)
    assert subset.labels is None and len(subset) == 2


def test_load_run_data_reads_the_file_or_draws_the_synthetic_set(monkeypatch):
    calls = []
    monkeypatch.setattr("fer_bench.data.synthetic.create_synthetic", lambda: calls.append("synthetic") or "S")
    monkeypatch.setattr("fer_bench.data.fer2013.load_fer2013", lambda path: calls.append(path) or "F")
    assert load_run_data() == "S"
    assert load_run_data("fer2013.csv") == "F"
    assert calls == ["synthetic", "fer2013.csv"]

