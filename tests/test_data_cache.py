"""fer_bench.data.cache: keys, atomic entries, memory-mapped hits, invalidation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fer_bench.data import cache
from fer_bench.data.cache import cache_dir, collect_pixel_stats, entry_name, file_key, load_or_build
from fer_bench.data.ferdata import FerData
from fer_bench.data.fer2013 import READER_VERSION, load_fer2013
from fer_bench.data.writers import write_fer2013_csv, write_image_folder


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("FER_BENCH_CACHE", str(root))
    return root


def make_data(seed: int = 0, n: int = 30) -> FerData:
    rng = np.random.default_rng(seed)
    return FerData(
        images=rng.integers(0, 256, size=(n, 48, 48), dtype=np.uint8),
        labels=rng.integers(0, 7, size=n).astype(np.int64),
        splits=np.repeat(np.array([0, 1, 2], np.uint8), [n - 2 * (n // 3), n // 3, n // 3]),
        format="synthetic",
        source=f"seed {seed}",
        meta={"seed": seed},
    )


def everything_in(entries: Path) -> list[str]:
    """All children of entries/, hidden build folders included."""
    return sorted(os.listdir(entries)) if entries.exists() else []


class CountingBuild:
    def __init__(self, data: FerData) -> None:
        self.data = data
        self.calls = 0

    def __call__(self) -> FerData:
        self.calls += 1
        return self.data


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("FER_BENCH_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "fer_bench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "fer_bench"


def test_miss_then_memory_mapped_hit(cache_root):
    data = make_data()
    build = CountingBuild(data)
    first, hit = load_or_build("synthetic-v1-size30-seed0", build)
    assert (hit, build.calls, first.meta["cache"]) == (False, 1, "miss")
    second, hit = load_or_build("synthetic-v1-size30-seed0", build)
    assert (hit, build.calls, second.meta["cache"]) == (True, 1, "hit")
    assert isinstance(second.images, np.memmap) and not second.images.flags.writeable
    for got in (first, second):
        np.testing.assert_array_equal(got.images, data.images)
        np.testing.assert_array_equal(got.labels, data.labels)
        np.testing.assert_array_equal(got.splits, data.splits)
        assert (got.format, got.source, got.meta["seed"]) == ("synthetic", "seed 0", 0)
        assert got.meta["pixel_mean"] == pytest.approx(data.images.mean(), rel=1e-12)
        assert got.meta["pixel_std"] == pytest.approx(data.images.std(), rel=1e-12)
    entry = Path(second.meta["cache_path"])
    assert entry.parent == cache_root / "entries" and entry.name.startswith("synthetic-v1-size30-seed0")
    assert everything_in(cache_root / "entries") == [entry.name]


def test_unlabeled_entry(cache_root):
    data = make_data()
    unlabeled = FerData(images=data.images, labels=None, splits=data.splits, format="test_csv", source="x")
    load_or_build("unlabeled", lambda: unlabeled)
    got, hit = load_or_build("unlabeled", lambda: unlabeled)
    assert hit and got.labels is None


@pytest.mark.parametrize("error", [ValueError("bad row"), KeyboardInterrupt()])
def test_a_failing_build_leaves_nothing(cache_root, error):
    def build() -> FerData:
        raise error

    with pytest.raises(type(error)):
        load_or_build("k", build)
    assert everything_in(cache_root / "entries") == []


def test_a_failure_while_writing_leaves_nothing(cache_root, monkeypatch):
    real_write = cache._write_entry

    def crash_half_way(folder: Path, data: FerData, key: str) -> None:
        real_write(folder, data, key)
        raise OSError("disk full")

    monkeypatch.setattr(cache, "_write_entry", crash_half_way)
    with pytest.raises(OSError, match="disk full"):
        load_or_build("k", lambda: make_data())
    assert everything_in(cache_root / "entries") == []


def test_a_concurrent_builder_that_finishes_first_wins(cache_root):
    ours, theirs = make_data(seed=1), make_data(seed=2)

    def build() -> FerData:
        # Another process completes the same entry while this build runs.
        load_or_build("k", lambda: theirs)
        return ours

    got, hit = load_or_build("k", build)
    assert not hit
    np.testing.assert_array_equal(got.images, ours.images)
    stored, hit = load_or_build("k", lambda: pytest.fail("must be a hit"))
    assert hit
    np.testing.assert_array_equal(stored.images, theirs.images)
    assert len(everything_in(cache_root / "entries")) == 1


def test_threads_building_one_key(cache_root):
    data = make_data(n=300)
    results: list[FerData] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        results.append(load_or_build("shared", lambda: data)[0])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for got in results:
        np.testing.assert_array_equal(got.images, data.images)
    assert len(everything_in(cache_root / "entries")) == 1


def test_build_folders_of_killed_builds_are_swept(cache_root):
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(proc.stdout)
    prefix = cache._build_prefix().rsplit("-", 1)[0]  # .tmp-<this host>
    entries = cache_root / "entries"
    stale = entries / f"{prefix}-{dead}-abc"
    mine = entries / f"{prefix}-{os.getpid()}-alive"  # a build of this process, still running
    other_host = entries / f".tmp-elsewhere-{dead}-xyz"  # maybe running on another node of a shared cache
    abandoned = entries / f".tmp-elsewhere-{dead}-old"
    for folder in (stale, mine, other_host, abandoned):
        folder.mkdir(parents=True)
        (folder / "images.npy").write_bytes(b"half")
    two_days_ago = time.time() - 2 * 86400
    os.utime(abandoned, (two_days_ago, two_days_ago))
    load_or_build("k", lambda: make_data())
    assert not stale.exists() and not abandoned.exists()
    assert mine.exists() and other_host.exists()


def test_a_damaged_entry_is_rebuilt(cache_root):
    build = CountingBuild(make_data())
    first, _ = load_or_build("k", build)
    (Path(first.meta["cache_path"]) / "images.npy").unlink()
    got, hit = load_or_build("k", build)
    assert not hit and build.calls == 2
    np.testing.assert_array_equal(load_or_build("k", build)[0].images, build.data.images)


def test_entry_names_are_safe_and_distinct():
    keys = ["a/b", "a_b", "../up", ".hidden", "x" * 400, "synthetic-v1-size35887-seed0", "a b:c*"]
    names = [entry_name(k) for k in keys]
    assert len(set(names)) == len(keys)
    for name in names:
        assert all(c.isalnum() or c in "._+-" for c in name) and not name.startswith(".") and len(name) <= 130
    assert entry_name("synthetic-v1-size35887-seed0").startswith("synthetic-v1-size35887-seed0")


def test_pixel_stats_match_numpy():
    images = np.random.default_rng(5).integers(0, 256, size=(700, 48, 48), dtype=np.uint8)
    mean, std = collect_pixel_stats(images)
    assert mean == pytest.approx(images.mean(dtype=np.float64), rel=1e-12)
    assert std == pytest.approx(images.std(dtype=np.float64), rel=1e-12)


# ------------------------------------------------------------------------------------------------------ file keys

def test_file_key_follows_content_and_reader_version(tmp_path):
    a = write_fer2013_csv(make_data(seed=1), tmp_path / "a.csv")
    b = write_fer2013_csv(make_data(seed=1), tmp_path / "b.csv")
    c = write_fer2013_csv(make_data(seed=2), tmp_path / "c.csv")
    assert file_key(a, 1) == file_key(b, 1) != file_key(c, 1)
    assert file_key(a, 1) != file_key(a, 2)


def test_fresh_files_are_not_memoised(tmp_path, cache_root):
    # Within the file system's timestamp granularity a file can change without its stat changing.
    path = write_fer2013_csv(make_data(), tmp_path / "a.csv")
    file_key(path, 1)
    assert not (cache_root / "digests").exists()


def test_digest_memo_is_used_and_invalidated(tmp_path, cache_root, monkeypatch):
    monkeypatch.setattr(cache, "_RACY_WINDOW_NS", 0)
    path = write_fer2013_csv(make_data(seed=1), tmp_path / "a.csv")
    real = file_key(path, 1)
    [memo] = (cache_root / "digests").iterdir()
    saved = json.loads(memo.read_text())
    assert saved["path"] == str(path.resolve()) and real == f"file-{saved['digest'][:40]}-r1"
    memo.write_text(json.dumps({**saved, "digest": "f" * 64}))
    assert file_key(path, 1) == f"file-{'f' * 40}-r1"  # the memo, not the bytes, answered
    # Same size and mtime, different bytes: the change time (which no one can set) still gives it away.
    st = path.stat()
    raw = bytearray(path.read_bytes())
    raw[-20] = ord("7") if raw[-20] != ord("7") else ord("8")
    for _ in range(300):  # until the file system's clock has ticked past the first write
        time.sleep(0.01)
        path.write_bytes(bytes(raw))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        if path.stat().st_ctime_ns != st.st_ctime_ns:
            break
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    assert file_key(path, 1) not in (real, f"file-{'f' * 40}-r1")


def test_folder_key_covers_every_relevant_file(tmp_path):
    root = tmp_path / "fer"
    write_image_folder(make_data(), root)
    key = file_key(root, 1)
    (root / ".DS_Store").write_bytes(b"junk")
    (root / "train" / "Thumbs.db").write_bytes(b"junk")
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "x.png").write_bytes(b"junk")
    assert file_key(root, 1) == key
    one = next((root / "train" / "happy").iterdir())
    one.write_bytes(one.read_bytes() + b"\0")
    changed = file_key(root, 1)
    assert changed != key
    (root / "test" / "sad" / "PublicTest_999.png").write_bytes(one.read_bytes())
    assert file_key(root, 1) != changed


# ---------------------------------------------------------------------------------------------- through the reader

def test_reader_hits_the_cache_and_sees_content_changes(tmp_path, cache_root):
    path = write_fer2013_csv(make_data(seed=1), tmp_path / "fer2013.csv")
    first = load_fer2013(path)
    second = load_fer2013(path)
    assert (first.meta["cache"], second.meta["cache"]) == ("miss", "hit")
    assert isinstance(second.images, np.memmap)
    assert second.source == str(path.resolve())
    write_fer2013_csv(make_data(seed=2), path)  # same size is likely, different pixels
    third = load_fer2013(path)
    assert third.meta["cache"] == "miss"
    np.testing.assert_array_equal(third.images, make_data(seed=2).images)
    assert len(everything_in(cache_root / "entries")) == 2
    assert file_key(path, READER_VERSION) in {json.loads((cache_root / "entries" / e / "meta.json").read_text())["key"]
                                              for e in everything_in(cache_root / "entries")}


def test_reader_without_cache_writes_nothing(tmp_path, cache_root):
    path = write_fer2013_csv(make_data(), tmp_path / "fer2013.csv")
    got = load_fer2013(path, use_cache=False)
    assert got.meta["cache"] == "off"
    assert not cache_root.exists()


def test_a_copy_elsewhere_shares_the_entry_but_keeps_its_own_name(tmp_path):
    a = write_fer2013_csv(make_data(), tmp_path / "a.csv")
    b = write_fer2013_csv(make_data(), tmp_path / "b.csv")
    load_fer2013(a)
    got = load_fer2013(b)
    assert got.meta["cache"] == "hit" and got.source == str(b.resolve())
