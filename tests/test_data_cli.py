"""`fer-bench data inspect` end to end (a real subprocess), plus inspect_data / format_inspect in process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_bench.data.constants import CLASS_NAMES, SPLITS
from fer_bench.data.ferdata import FerData
from fer_bench.data.inspect import format_inspect, inspect_data
from fer_bench.data.writers import write_fer2013_csv, write_ferplus_csv, write_image_folder, write_test_csv
from fer_bench.errors import FerBenchError


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("FER_BENCH_CACHE", str(root))
    return root


def make_data(seed: int = 0) -> FerData:
    rng = np.random.default_rng(seed)
    splits = np.repeat(np.array([0, 1, 2], np.uint8), [40, 11, 9])
    labels = np.concatenate([rng.permutation(np.resize(np.arange(7), n)) for n in (40, 11, 9)]).astype(np.int64)
    images = rng.integers(0, 256, size=(60, 48, 48), dtype=np.uint8)
    return FerData(images=images, labels=labels, splits=splits, format="synthetic", source="test")


def run_cli(*args: str, cache: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FER_BENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "fer_bench", "data", "inspect", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)


def expected_counts(data: FerData) -> dict:
    # Counted here from the arrays that were written, independently of any reader.
    out = {}
    for code in np.unique(data.splits):
        lab = data.labels[data.splits == code]
        out[SPLITS[code]] = {name: int((lab == k).sum()) for k, name in enumerate(CLASS_NAMES)}
    return out


def test_inspect_csv_json_cold_then_warm(tmp_path, cache_root):
    data = make_data()
    path = write_fer2013_csv(data, tmp_path / "fer2013.csv", newline="\r\n", bom=True)
    reports = []
    for _ in range(2):
        proc = run_cli(str(path), "--json", cache=cache_root, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        reports.append(json.loads(proc.stdout))
    cold, warm = reports
    assert (cold["cache"], warm["cache"]) == ("miss", "hit")
    assert Path(warm["cache_path"]).parent == cache_root / "entries"
    for report in reports:
        assert report["format"] == "fer2013_csv" and report["source"] == str(path.resolve())
        assert report["num_images"] == 60 and report["labeled"] is True
        assert report["splits"] == expected_counts(data)
        assert report["split_sizes"] == {"train": 40, "public_test": 11, "private_test": 9}
        assert report["pixel_mean"] == pytest.approx(float(data.images.mean()), rel=1e-9)
        assert report["pixel_std"] == pytest.approx(float(data.images.std()), rel=1e-9)


def test_inspect_folder_and_unlabeled_csv(tmp_path, cache_root):
    data = make_data()
    write_image_folder(data, tmp_path / "fer")
    proc = run_cli(str(tmp_path / "fer"), "--json", cache=cache_root, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["format"] == "image_folder" and report["splits"] == expected_counts(data)
    assert report["pixel_mean"] == pytest.approx(float(data.images.mean()), rel=1e-9)

    path = write_test_csv(data, tmp_path / "test.csv")
    proc = run_cli(str(path), cache=cache_root, cwd=tmp_path)  # the human-readable table
    assert proc.returncode == 0, proc.stderr
    assert "test_csv" in proc.stdout and "unlabeled" in proc.stdout and "60" in proc.stdout


def test_inspect_ferplus(tmp_path, cache_root):
    data = make_data()
    path = write_fer2013_csv(data, tmp_path / "fer2013.csv")
    votes = np.zeros((60, 10), int)
    votes[:, 1] = 10  # all happiness...
    votes[:5, 1], votes[:5, 7] = 2, 8  # ...but five contempt, which FER2013 cannot label
    ferplus = write_ferplus_csv(votes, tmp_path / "fer2013new.csv", splits=data.splits)
    proc = run_cli(str(path), "--ferplus", str(ferplus), "--json", cache=cache_root, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["num_images"] == 55
    assert report["splits"]["train"]["happy"] == 35 and report["splits"]["train"]["angry"] == 0
    assert report["details"]["ferplus"]["dropped"]["contempt"] == 5
    assert report["pixel_mean"] == pytest.approx(float(data.images[5:].mean()), rel=1e-9)
    assert "FER+ majority of 60 rows: kept 55; dropped" in format_inspect(report)
    assert "contempt 5" in format_inspect(report)


@pytest.mark.parametrize("content,problem", [
    (b"emotion,pixels,Usage\n0,1 2 3,Training\n", "line 2: found 3 pixel values, expected 2304"),
    (b"name,image\n", "unknown header"),
    (b"", "empty file"),
])
def test_bad_file_is_one_error_line(tmp_path, cache_root, content, problem):
    path = tmp_path / "broken.csv"
    path.write_bytes(content)
    proc = run_cli(str(path), "--json", cache=cache_root, cwd=tmp_path)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fer-bench: error:")
    assert str(path) in lines[0] and problem in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    entries = cache_root / "entries"
    assert not entries.exists() or os.listdir(entries) == []


def test_missing_path_via_cli(tmp_path, cache_root):
    proc = run_cli(str(tmp_path / "nope.csv"), cache=cache_root, cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("fer-bench: error:") and "nope.csv: no such file or folder" in proc.stderr


def test_inspect_synthetic_in_process(cache_root):
    report = inspect_data(None, size=40, seed=3)
    assert report["format"] == "synthetic" and report["num_images"] == 40
    assert sum(report["split_sizes"].values()) == 40
    assert sum(sum(c.values()) for c in report["splits"].values()) == 40
    assert report["cache"] == "miss"
    again = inspect_data(None, size=40, seed=3)
    assert again["cache"] == "hit" and again["pixel_mean"] == report["pixel_mean"]


def test_inspect_option_misuse(tmp_path):
    with pytest.raises(FerBenchError, match="--ferplus needs PATH"):
        inspect_data(None, ferplus="votes.csv")
    path = write_fer2013_csv(make_data(), tmp_path / "fer2013.csv")
    with pytest.raises(FerBenchError, match="synthetic set only"):
        inspect_data(str(path), size=10)


def test_format_inspect_table(tmp_path):
    data = make_data()
    path = write_fer2013_csv(data, tmp_path / "fer2013.csv")
    report = inspect_data(str(path))
    text = format_inspect(report)
    lines = text.splitlines()
    assert lines[1].split() == ["format", "fer2013_csv"]
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.split() and line.split()[0] in
            ("train", "public_test", "private_test", "all")}
    counts = expected_counts(data)
    for split, values in counts.items():
        assert rows[split] == [str(sum(values.values()))] + [str(values[c]) for c in CLASS_NAMES]
    assert rows["all"][0] == "60"
    assert f"mean {data.images.mean():.2f}" in text


@pytest.mark.parametrize("fmt, detected, images, labeled", [
    ("csv", "fer2013_csv", 300, True), ("icml", "icml_face_data_csv", 300, True),
    ("train", "train_csv", None, True), ("test", "test_csv", None, False)])
def test_synth_writes_each_csv_layout(tmp_path, cache_root, fmt, detected, images, labeled):
    """`fer-bench data synth --format` writes every CSV layout the readers know; train and test take their rows."""
    from fer_bench.cli import main
    from fer_bench.data.fer2013 import load_fer2013
    from fer_bench.data.synthetic import create_synthetic

    out = tmp_path / f"{fmt}.csv"
    assert main(["data", "synth", "--size", "300", "--format", fmt, str(out)]) == 0
    data = load_fer2013(out, use_cache=False)
    synthetic = create_synthetic(size=300)
    train_rows = len(synthetic.indices("train"))
    expected = images if images is not None else (train_rows if fmt == "train" else 300 - train_rows)
    assert data.format == detected and len(data) == expected and data.labeled == labeled
