"""fer_bench.data.fer2013 and writers: every FER2013 layout round-trips, FER+ relabels, bad copies fail clearly."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_bench.data import fer2013
from fer_bench.data.constants import CLASS_NAMES, SPLIT_CODES
from fer_bench.data.ferdata import FerData
from fer_bench.data.fer2013 import detect_format, load_fer2013
from fer_bench.data.writers import (
    write_dataset,
    write_ferplus_csv,
    write_fer2013_csv,
    write_icml_csv,
    write_image_folder,
    write_test_csv,
    write_train_csv,
)
from fer_bench.errors import FerBenchError

TRAIN, PUBLIC, PRIVATE, TEST = (SPLIT_CODES[s] for s in ("train", "public_test", "private_test", "test"))


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("FER_BENCH_CACHE", str(root))
    return root


def make_data(seed: int = 0, smooth: bool = False) -> FerData:
    """60 images, rows contiguous by split (35 / 13 / 12), every class in every split."""
    rng = np.random.default_rng(seed)
    splits = np.repeat(np.array([TRAIN, PUBLIC, PRIVATE], np.uint8), [35, 13, 12])
    labels = np.concatenate([rng.permutation(np.resize(np.arange(7), n)) for n in (35, 13, 12)]).astype(np.int64)
    if smooth:  # JPEG-friendly: low-frequency patterns
        y, x = np.mgrid[0:48, 0:48].astype(np.float64)
        f = rng.uniform(0.05, 0.2, size=(60, 4))
        images = 128 + 90 * np.sin(x * f[:, :1, None] + f[:, 1:2, None] * 20) * np.cos(y * f[:, 2:3, None])
        images = np.clip(images, 0, 255).astype(np.uint8)
    else:  # every token length 1-3, and both extremes
        images = rng.integers(0, 256, size=(60, 48, 48), dtype=np.uint8)
        images[0, 0, :3] = (0, 255, 9)
    return FerData(images=images, labels=labels, splits=splits, format="synthetic", source="test")


def assert_same(got: FerData, want: FerData, splits: np.ndarray | None = None) -> None:
    np.testing.assert_array_equal(got.images, want.images)
    np.testing.assert_array_equal(got.splits, want.splits if splits is None else splits)
    if want.labels is None:
        assert got.labels is None
    else:
        np.testing.assert_array_equal(got.labels, want.labels)


def folder_order(data: FerData, splits: np.ndarray) -> np.ndarray:
    # The folder reader orders by split, class, then file number (the writer numbers files by row).
    return np.lexsort((np.arange(len(data)), data.labels, splits))


def cache_entries(root: Path) -> list[str]:
    entries = root / "entries"
    return sorted(p.name for p in entries.iterdir()) if entries.exists() else []


# ------------------------------------------------------------------------------------------------ CSV round trips

@pytest.mark.parametrize("newline,bom", [("\n", False), ("\r\n", True), ("\r\n", False), ("\n", True)])
def test_fer2013_csv_round_trip(tmp_path, newline, bom):
    data = make_data()
    path = write_fer2013_csv(data, tmp_path / "fer2013.csv", newline=newline, bom=bom)
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf" if bom else b"emotion,pixels,Usage")
    assert (b"\r\n" in raw) == (newline == "\r\n")
    assert detect_format(path) == "fer2013_csv"
    got = load_fer2013(path)
    assert got.format == "fer2013_csv"
    assert_same(got, data)


def test_write_dataset_csv_is_the_fer2013_layout(tmp_path):
    data = make_data()
    [path] = write_dataset(data, tmp_path / "out.csv", "csv")
    first = path.read_text().splitlines()[:2]
    assert first[0] == "emotion,pixels,Usage"
    label, pixels, usage = first[1].split(",")
    assert int(label) == data.labels[0] and usage == "Training"
    assert [int(t) for t in pixels.split(" ")] == data.images[0].ravel().tolist()
    assert_same(load_fer2013(path), data)


@pytest.mark.parametrize("newline,bom", [("\n", False), ("\r\n", True)])
def test_icml_csv_round_trip(tmp_path, newline, bom):
    data = make_data()
    path = write_icml_csv(data, tmp_path / "icml_face_data.csv", newline=newline, bom=bom)
    assert path.read_bytes().removeprefix(b"\xef\xbb\xbf").startswith(b"emotion, Usage, pixels")
    assert detect_format(path) == "icml_face_data_csv"
    assert_same(load_fer2013(path), data)


@pytest.mark.parametrize("leading_space", [False, True])
@pytest.mark.parametrize("newline,bom", [("\n", False), ("\r\n", True)])
def test_train_csv_round_trip_is_all_train(tmp_path, leading_space, newline, bom):
    data = make_data()
    path = write_train_csv(data, tmp_path / "train.csv", leading_space=leading_space, newline=newline, bom=bom)
    assert detect_format(path) == "train_csv"
    got = load_fer2013(path)
    assert_same(got, data, splits=np.full(len(data), TRAIN))


@pytest.mark.parametrize("newline,bom", [("\n", False), ("\r\n", True)])
def test_test_csv_round_trip_is_unlabeled_test(tmp_path, newline, bom):
    data = make_data()
    path = write_test_csv(data, tmp_path / "test.csv", newline=newline, bom=bom)
    assert detect_format(path) == "test_csv"
    got = load_fer2013(path)
    assert got.labels is None and not got.labeled and got.class_counts() is None
    np.testing.assert_array_equal(got.images, data.images)
    assert set(got.splits.tolist()) == {TEST}


def test_csv_columns_in_any_order_quoted_and_spaced(tmp_path):
    data = make_data()
    usage = {TRAIN: "Training", PUBLIC: "PublicTest", PRIVATE: "PrivateTest"}
    lines = [' "Usage" , "pixels",emotion ']
    for img, lab, spl in zip(data.images, data.labels, data.splits):
        lines.append(f'{usage[spl]},"{" ".join(map(str, img.ravel()))}", {lab}')
    path = tmp_path / "shuffled.csv"
    path.write_text("\n\n".join(lines) + "\n\n")  # blank lines between rows are skipped
    assert detect_format(path) == "icml_face_data_csv"
    assert_same(load_fer2013(path), data)


def test_extra_spaces_in_the_pixel_field_are_tolerated(tmp_path):
    data = make_data()
    rows = ["emotion,pixels,Usage"]
    for i, (img, lab) in enumerate(zip(data.images, data.labels)):
        sep = "  " if i % 2 else " "
        rows.append(f"{lab}, {sep.join(map(str, img.ravel()))} ,Training")
    path = tmp_path / "spaced.csv"
    path.write_text("\n".join(rows))  # and no newline after the last row
    assert_same(load_fer2013(path), data, splits=np.full(len(data), TRAIN))


@pytest.mark.parametrize("block,batch", [(4096, 1), (30_000, 3), (100_000, 32)])
def test_csv_rows_across_blocks_and_batches(tmp_path, monkeypatch, block, batch):
    # A 4 KiB block is shorter than one row: every row then crosses a block boundary.
    monkeypatch.setattr(fer2013, "_BLOCK", block)
    monkeypatch.setattr(fer2013, "_BATCH", batch)
    data = make_data(seed=3)
    path = write_fer2013_csv(data, tmp_path / "fer2013.csv", newline="\r\n")
    assert_same(load_fer2013(path, use_cache=False), data)


# --------------------------------------------------------------------------------------------- image folders

def test_folder_round_trip_png(tmp_path):
    data = make_data()
    written = write_dataset(data, tmp_path / "fer", "folder")
    assert len(written) == len(data) and all(p.is_file() for p in written)
    assert {p.relative_to(tmp_path / "fer").parts[0] for p in written} == {"train", "test"}
    assert detect_format(tmp_path / "fer") == "image_folder"
    got = load_fer2013(tmp_path / "fer")
    order = folder_order(data, data.splits)
    assert got.format == "image_folder"
    np.testing.assert_array_equal(got.images, data.images[order])
    np.testing.assert_array_equal(got.labels, data.labels[order])
    np.testing.assert_array_equal(got.splits, data.splits[order])


def test_folder_capitalised_classes_and_split_folders(tmp_path):
    data = make_data()
    out = tmp_path / "fer"
    write_image_folder(data, out, class_folders=[c.capitalize() for c in CLASS_NAMES])
    (out / "train").rename(out / "Train")
    (out / "test").rename(out / "TEST")
    got = load_fer2013(out)
    order = folder_order(data, data.splits)
    np.testing.assert_array_equal(got.images, data.images[order])
    np.testing.assert_array_equal(got.labels, data.labels[order])


def test_folder_aliases_and_unprefixed_names_take_the_split_from_the_folder(tmp_path):
    data = make_data()
    aliases = ["angry", "disgusted", "fearful", "happy", "sad", "surprised", "neutral"]
    written = write_image_folder(data, tmp_path / "fer", class_folders=aliases, prefixed=False)
    assert all(p.name.startswith("im") for p in written)
    assert (tmp_path / "fer" / "test" / "fearful").is_dir()
    got = load_fer2013(tmp_path / "fer")
    want_splits = np.where(data.splits == TRAIN, TRAIN, TEST).astype(np.uint8)
    order = folder_order(data, want_splits)
    np.testing.assert_array_equal(got.images, data.images[order])
    np.testing.assert_array_equal(got.labels, data.labels[order])
    np.testing.assert_array_equal(got.splits, want_splits[order])


def test_folder_labels_are_fer2013_codes_not_alphabetical(tmp_path):
    # ImageFolder would number neutral 4, sad 5, surprise 6; FER2013 says sad 4, surprise 5, neutral 6.
    for name, value in (("neutral", 10), ("sad", 20), ("surprise", 30)):
        (tmp_path / "fer" / "train" / name).mkdir(parents=True)
        Image.fromarray(np.full((48, 48), value, np.uint8)).save(tmp_path / "fer" / "train" / name / "Training_1.png")
    got = load_fer2013(tmp_path / "fer")
    by_value = dict(zip(got.images[:, 0, 0].tolist(), got.labels.tolist()))
    assert by_value == {20: 4, 30: 5, 10: 6}


@pytest.mark.parametrize("ext", [".jpg", ".JPG", ".jpeg"])
def test_folder_jpeg_round_trip_within_tolerance(tmp_path, ext):
    data = make_data(smooth=True)
    write_image_folder(data, tmp_path / "fer", ext=ext)
    got = load_fer2013(tmp_path / "fer")
    order = folder_order(data, data.splits)
    diff = np.abs(got.images.astype(int) - data.images[order].astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 8  # lossy, but the same pictures (a wrong match differs by ~50)
    np.testing.assert_array_equal(got.labels, data.labels[order])


def test_folder_junk_is_ignored(tmp_path):
    data = make_data()
    out = tmp_path / "fer"
    write_image_folder(data, out)
    (out / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (out / "train" / "angry" / ".DS_Store").write_bytes(b"junk")
    (out / "train" / "happy" / "Thumbs.db").write_bytes(b"junk")
    (out / "test" / "sad" / "desktop.ini").write_text("[.ShellClassInfo]")
    (out / "test" / "sad" / "._PublicTest_1.png").write_bytes(b"resource fork")
    for where in (out, out / "train"):
        (where / "__MACOSX" / "train" / "angry").mkdir(parents=True)
        (where / "__MACOSX" / "train" / "angry" / "._Training_0.png").write_bytes(b"not an image")
    (out / "README.txt").write_text("downloaded from somewhere")
    got = load_fer2013(out)
    order = folder_order(data, data.splits)
    np.testing.assert_array_equal(got.images, data.images[order])
    np.testing.assert_array_equal(got.labels, data.labels[order])


def test_folder_of_class_folders_alone(tmp_path):
    data = make_data()
    out = tmp_path / "fer"
    write_image_folder(data, out)
    got = load_fer2013(out / "test")  # class folders directly; PublicTest_/PrivateTest_ prefixes give the split
    test_rows = np.flatnonzero(data.splits != TRAIN)
    order = test_rows[folder_order(data.subset("public_test", "private_test"),
                                   data.splits[test_rows])]
    np.testing.assert_array_equal(got.images, data.images[order])
    np.testing.assert_array_equal(got.labels, data.labels[order])
    np.testing.assert_array_equal(got.splits, data.splits[order])
    unprefixed = tmp_path / "plain" / "happy"
    unprefixed.mkdir(parents=True)
    Image.fromarray(data.images[0]).save(unprefixed / "face.png")
    assert load_fer2013(tmp_path / "plain").split_names() == ["train"]


def test_folder_converts_colour_and_resizes(tmp_path):
    folder = tmp_path / "fer" / "train" / "happy"
    folder.mkdir(parents=True)
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(folder / "Training_1.png")
    Image.fromarray(np.full((48, 48), 7, np.uint8)).save(folder / "Training_2.png")
    got = load_fer2013(tmp_path / "fer")
    want = np.asarray(Image.fromarray(rgb).convert("L").resize((48, 48), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(got.images[0], want)
    assert (got.images[1] == 7).all()
    assert got.meta["converted_to_gray"] == 1 and got.meta["resized_to_48x48"] == 1


def test_folder_writer_refuses_a_non_empty_output_and_unlabeled_data(tmp_path):
    data = make_data()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(FerBenchError, match="refusing to overwrite"):
        write_image_folder(data, tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    unlabeled = FerData(images=data.images, labels=None, splits=data.splits, format="x", source="y")
    with pytest.raises(FerBenchError, match="unlabeled"):
        write_dataset(unlabeled, tmp_path / "new", "folder")
    with pytest.raises(FerBenchError, match="unlabeled"):
        write_dataset(unlabeled, tmp_path / "new.csv", "csv")
    assert not (tmp_path / "new").exists() and not (tmp_path / "new.csv").exists()
    (tmp_path / "empty").mkdir()
    write_image_folder(data, tmp_path / "empty")  # an existing empty folder is fine
    assert len(list((tmp_path / "empty").rglob("*.png"))) == len(data)
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


# ----------------------------------------------------------------------------------------------------------- FER+

# Hand-made votes (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF) and the
# label the rule gives: votes <= 1 are zeroed, the majority needs more than half of what remains.
FERPLUS_ROWS = [
    ("fer0.png", [8, 2, 0, 0, 0, 0, 0, 0, 0, 0], 6),         # neutral
    ("fer1.png", [0, 6, 4, 0, 0, 0, 0, 0, 0, 0], 3),         # happiness 6 of 10
    ("fer2.png", [0, 0, 5, 0, 0, 0, 5, 0, 0, 0], None),      # tie: not more than half -> unknown
    ("fer3.png", [1, 0, 0, 5, 1, 1, 1, 1, 0, 0], 4),         # 5 of 10, but the single votes are noise: sadness
    ("fer4.png", [0, 0, 0, 0, 7, 3, 0, 0, 0, 0], 0),         # anger
    ("fer5.png", [0, 0, 0, 0, 0, 6, 4, 0, 0, 0], 1),         # disgust
    ("fer6.png", [0, 0, 0, 1, 0, 0, 9, 0, 0, 0], 2),         # fear
    ("fer7.png", [3, 0, 0, 0, 0, 0, 0, 7, 0, 0], None),      # contempt: no FER2013 code
    ("fer8.png", [4, 0, 0, 0, 0, 0, 0, 0, 6, 0], None),      # unknown
    ("fer9.png", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10], None),     # not a face
    ("", [0, 10, 0, 0, 0, 0, 0, 0, 0, 0], None),             # empty image name
    ("fer11.png", [2, 2, 2, 2, 2, 0, 0, 0, 0, 0], None),     # no majority
    ("fer12.png", [0, 0, 10, 0, 0, 0, 0, 0, 0, 0], 5),       # surprise
]


def ferplus_files(tmp_path: Path, writer=write_fer2013_csv) -> tuple[FerData, Path, Path]:
    data = make_data().subset("train")
    data = FerData(images=data.images[:13], labels=data.labels[:13], splits=data.splits[:13], format="x", source="y")
    csv_path = writer(data, tmp_path / "fer2013.csv")
    votes = write_ferplus_csv(np.array([r[1] for r in FERPLUS_ROWS]), tmp_path / "fer2013new.csv",
                              splits=data.splits, image_names=[r[0] for r in FERPLUS_ROWS], newline="\r\n")
    return data, csv_path, votes


@pytest.mark.parametrize("writer", [write_fer2013_csv, write_icml_csv])
def test_ferplus_majority_labels(tmp_path, writer):
    data, csv_path, votes = ferplus_files(tmp_path, writer)
    assert detect_format(votes) == "ferplus_csv"
    got = load_fer2013(csv_path, ferplus=votes)
    kept = [i for i, r in enumerate(FERPLUS_ROWS) if r[2] is not None]
    assert got.labels.tolist() == [FERPLUS_ROWS[i][2] for i in kept]
    np.testing.assert_array_equal(got.images, data.images[kept])
    np.testing.assert_array_equal(got.splits, data.splits[kept])
    info = got.meta["ferplus"]
    assert info["rows"] == 13 and info["kept"] == len(kept)
    assert info["dropped"] == {"empty_image_name": 1, "contempt": 1, "unknown": 3, "not_face": 1}
    # The votes are part of the cache key: without them the original labels come back.
    np.testing.assert_array_equal(load_fer2013(csv_path).labels, data.labels)


def test_ferplus_misuse(tmp_path):
    data, csv_path, votes = ferplus_files(tmp_path)
    with pytest.raises(FerBenchError, match="holds votes, not pixels.*--ferplus"):
        load_fer2013(votes)
    train = write_train_csv(data, tmp_path / "train.csv")
    with pytest.raises(FerBenchError, match="row order"):
        load_fer2013(train, ferplus=votes)
    with pytest.raises(FerBenchError, match="not a FER\\+ vote file"):
        load_fer2013(csv_path, ferplus=csv_path)
    short = write_ferplus_csv(np.ones((5, 10), int) * 2, tmp_path / "short.csv")
    with pytest.raises(FerBenchError) as err:
        load_fer2013(csv_path, ferplus=short)
    assert str(short) in str(err.value) and "5 vote rows" in str(err.value) and "13 images" in str(err.value)
    lines = votes.read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0] + ",x"
    votes.write_text("\n".join(lines))
    with pytest.raises(FerBenchError, match=r"fer2013new.csv: line 3: vote count 'x' is not a non-negative"):
        load_fer2013(csv_path, ferplus=votes)


# ------------------------------------------------------------------------------------------------------ bad input

def good_lines(n: int = 4) -> list[str]:
    data = make_data()
    usage = {TRAIN: "Training", PUBLIC: "PublicTest", PRIVATE: "PrivateTest"}
    return ["emotion,pixels,Usage"] + [
        f"{data.labels[i]},{' '.join(map(str, data.images[i].ravel()))},{usage[data.splits[i]]}" for i in range(n)
    ]


def with_pixel(line: str, index: int, token: str) -> str:
    label, pixels, usage = line.split(",")
    tokens = pixels.split(" ")
    tokens[index] = token
    return ",".join([label, " ".join(tokens), usage])


def bad_csv_cases() -> dict[str, tuple[str | bytes, list[str]]]:
    g = good_lines()
    one = [g[0], g[1]]
    cases = {
        "empty": ("", ["empty file"]),
        "header only": ("emotion,pixels,Usage\r\n", ["only a header"]),
        "unknown header": ("label,image\n1,2\n", ["unknown header", "'label,image'", "emotion,pixels,Usage"]),
        "too few pixels": ("\n".join(g[:2] + [g[2].rsplit(" ", 1)[0] + "," + g[2].rsplit(",", 1)[1]]),
                           ["line 3", "2303 pixel values", "2304"]),
        "too many pixels": ("\n".join(one + [with_pixel(g[2], 5, "1 2")]), ["line 3", "2305 pixel values"]),
        "non-integer pixel": ("\n".join(g[:3] + [with_pixel(g[3], 6, "12a")]), ["line 4", "pixel 7", "'12a'"]),
        "negative pixel": ("\n".join(one + [with_pixel(g[2], 0, "-5")]), ["line 3", "pixel 1", "'-5'"]),
        "decimal pixel": ("\n".join(one + [with_pixel(g[2], 2303, "3.5")]), ["line 3", "pixel 2304", "'3.5'"]),
        "pixel above 255": ("\n".join(one + [with_pixel(g[2], 9, "256")]), ["line 3", "pixel 10", "256", "above 255"]),
        "four digits": ("\n".join(one + [with_pixel(g[2], 9, "1000")]), ["line 3", "pixel 10", "above 255"]),
        "label 7": ("\n".join(one + ["7" + g[2][1:]]), ["line 3", "emotion 7", "outside 0-6"]),
        "label text": ("\n".join(one + ["x" + g[2][1:]]), ["line 3", "emotion 'x'", "not an integer"]),
        "label float": ("\n".join(g[:4] + ["3.0" + g[4][1:]]), ["line 5", "emotion '3.0'"]),
        "unknown usage": ("\n".join(one + [g[2].rsplit(",", 1)[0] + ",Validation"]),
                          ["line 3", "unknown Usage 'Validation'"]),
        "truncated in pixels": ("\n".join(one + [g[2][: len(g[2]) // 2]]),
                                ["line 3", "found 2 comma-separated fields, expected 3", "truncated"]),
        "truncated in usage": ("\n".join(one + [g[2][:-4]]), ["line 3", "unknown Usage", "truncated"]),
        "repeated header": ("\n".join(g[:3] + [g[0]] + g[3:]), ["line 4", "repeated header"]),
        "bad row after blank lines and CRLF": ("\r\n".join(g[:2] + ["", ""] + [with_pixel(g[2], 1, "x")]),
                                               ["line 5", "pixel 2", "'x'"]),
        "bad row with a BOM": (b"\xef\xbb\xbf" + "\n".join(one + ["9" + g[2][1:]]).encode(), ["line 3", "emotion 9"]),
    }
    return cases


BAD_CSV = bad_csv_cases()


@pytest.mark.parametrize("case", list(BAD_CSV))
def test_bad_csv_names_file_line_and_problem(tmp_path, cache_root, case):
    text, expected = BAD_CSV[case]
    path = tmp_path / "fer2013.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(FerBenchError) as err:
        load_fer2013(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}:")
    for part in expected:
        assert part in message
    assert cache_entries(cache_root) == []


def test_bad_row_beyond_the_first_block_has_its_own_line_number(tmp_path, monkeypatch, cache_root):
    monkeypatch.setattr(fer2013, "_BLOCK", 20_000)
    lines = good_lines(30)
    lines[27] = with_pixel(lines[27], 100, "300")
    path = tmp_path / "fer2013.csv"
    path.write_text("\r\n".join(lines) + "\r\n")
    with pytest.raises(FerBenchError, match=r"line 28: pixel 101 is 300, above 255"):
        load_fer2013(path)
    assert cache_entries(cache_root) == []


@pytest.mark.parametrize("later_error", ["label", "pixel count", "pixel value"])
def test_the_first_bad_line_is_reported(tmp_path, later_error):
    lines = good_lines(4)
    lines[2] = with_pixel(lines[2], 3, "12a")  # a pixel error on line 3 that keeps the pixel count
    if later_error == "label":
        lines[3] = "8" + lines[3][1:]
    elif later_error == "pixel count":
        lines[3] = with_pixel(lines[3], 0, "1 2")
    else:
        lines[3] = with_pixel(lines[3], 0, "999")
    path = tmp_path / "fer2013.csv"
    path.write_text("\n".join(lines))
    with pytest.raises(FerBenchError, match="line 3: pixel 4 is '12a'"):
        load_fer2013(path)


@pytest.mark.parametrize("layout", ["train", "test"])
def test_truncated_train_and_test_csv(tmp_path, layout):
    data = make_data()
    writer = write_train_csv if layout == "train" else write_test_csv
    path = writer(data, tmp_path / f"{layout}.csv")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 3000])
    with pytest.raises(FerBenchError, match=r"line 61: found \d+ pixel values, expected 2304 \(the file ends mid-row"):
        load_fer2013(path)


def test_missing_path(tmp_path, cache_root):
    with pytest.raises(FerBenchError, match="no such file or folder") as err:
        load_fer2013(tmp_path / "nope.csv")
    assert str(tmp_path / "nope.csv") in str(err.value)


def make_folder(root: Path) -> Path:
    write_image_folder(make_data(), root)
    return root


def _unreadable(root: Path) -> tuple[Path, list[str]]:
    bad = root / "train" / "happy" / "Training_9999.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root, [str(bad), "cannot read this image"]


def _unknown_class(root: Path) -> tuple[Path, list[str]]:
    (root / "test" / "happyy").mkdir()
    shutil.copy(next((root / "test" / "happy").iterdir()), root / "test" / "happyy" / "x.png")
    return root, [str(root / "test" / "happyy"), "unknown class folder 'happyy'"]


def _no_images(root: Path) -> tuple[Path, list[str]]:
    empty = root.parent / "empty_fer"
    for split in ("train", "test"):
        for cls in CLASS_NAMES:
            (empty / split / cls).mkdir(parents=True)
    (empty / "train" / ".DS_Store").write_bytes(b"junk")
    return empty, [str(empty), "no images"]


def _empty_folder(root: Path) -> tuple[Path, list[str]]:
    (root.parent / "nothing").mkdir()
    return root.parent / "nothing", ["nothing", "no images"]


def _not_an_image(root: Path) -> tuple[Path, list[str]]:
    (root / "train" / "sad" / "notes.txt").write_text("hi")
    return root, [str(root / "train" / "sad" / "notes.txt"), "not an image file"]


def _stray_folder(root: Path) -> tuple[Path, list[str]]:
    (root / "validation").mkdir()
    return root, [str(root / "validation"), "unexpected folder"]


def _unknown_flat_folder(root: Path) -> tuple[Path, list[str]]:
    flat = root.parent / "flat"
    (flat / "happy").mkdir(parents=True)
    (flat / "misc").mkdir()
    return flat, [str(flat / "misc"), "unknown class folder"]


@pytest.mark.parametrize("corrupt", [_unreadable, _unknown_class, _no_images, _empty_folder, _not_an_image,
                                     _stray_folder, _unknown_flat_folder])
def test_bad_folder_names_the_path_and_problem(tmp_path, cache_root, corrupt):
    path, expected = corrupt(make_folder(tmp_path / "fer"))
    with pytest.raises(FerBenchError) as err:
        load_fer2013(path)
    message = str(err.value)
    assert "\n" not in message
    for part in expected:
        assert part in message
    assert cache_entries(cache_root) == []


def test_writers_are_atomic_and_leave_no_temporary_files(tmp_path, monkeypatch):
    data = make_data()
    target = write_fer2013_csv(data, tmp_path / "fer2013.csv")
    before = target.read_bytes()
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())

    def fail(*args, **kwargs):
        raise OSError("disk full")

    import fer_bench.data.writers as writers

    monkeypatch.setattr(writers, "_encode_rows", fail)
    with pytest.raises(OSError, match="disk full"):
        write_fer2013_csv(make_data(seed=1), target)
    assert target.read_bytes() == before  # the old file is untouched
    monkeypatch.setattr(writers, "_save_images", fail)
    with pytest.raises(OSError, match="disk full"):
        write_image_folder(data, tmp_path / "folder")
    assert sorted(os.listdir(tmp_path)) == ["fer2013.csv"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
