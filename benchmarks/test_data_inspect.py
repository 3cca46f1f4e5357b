"""Time `fer-bench data inspect` on a full-size fer2013.csv, cold (empty cache) and warm (cache populated).

    pytest benchmarks/test_data_inspect.py --benchmark-json out.json

Each round is the whole `python -m fer_bench data inspect FILE --json` process, as a user runs it: interpreter
start, imports, hashing, parsing and caching included. The file (35,887 rows of random pixels with FER2013's split
sizes, about 290 MB) is written once per session and removed at the end. Targets on a 2-core machine: cold 5 s,
warm 1.5 s; they are recorded in extra_info (``target_s``, ``within_target``), never asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fer_bench.data.constants import FER2013_SPLIT_SIZES, SPLIT_CODES
from fer_bench.data.dataset import FerData
from fer_bench.data.writers import write_fer2013_csv
from fer_bench.workload import create_workload

COLD_TARGET_S = 5.0
WARM_TARGET_S = 1.5
ROUNDS = 3
NUM_IMAGES = sum(FER2013_SPLIT_SIZES.values())


@pytest.fixture(scope="session")
def full_csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    splits = np.repeat(np.array([SPLIT_CODES[s] for s in FER2013_SPLIT_SIZES], np.uint8),
                       list(FER2013_SPLIT_SIZES.values()))
    data = FerData(images=rng.integers(0, 256, size=(NUM_IMAGES, 48, 48), dtype=np.uint8),
                   labels=rng.integers(0, 7, size=NUM_IMAGES).astype(np.int64), splits=splits,
                   format="synthetic", source="benchmark")
    path = write_fer2013_csv(data, tmp_path_factory.mktemp("fer2013") / "fer2013.csv")
    yield path
    path.unlink(missing_ok=True)


def run_inspect(path: Path, cache: Path, expect_cache: str) -> None:
    env = {**os.environ, "FER_BENCH_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-m", "fer_bench", "data", "inspect", str(path), "--json"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["num_images"] == NUM_IMAGES and report["cache"] == expect_cache


def record_target(benchmark, target_s: float) -> None:
    benchmark.extra_info["workload"] = create_workload(
        {"kind": "fer2013_csv", "rows": NUM_IMAGES, "pixels": "uniform random, seed 0"}, images_per_round=NUM_IMAGES)
    benchmark.extra_info["target_s"] = target_s
    if benchmark.stats is not None:  # None under --benchmark-disable
        median = benchmark.stats.stats.median
        benchmark.extra_info["median_s"] = median
        benchmark.extra_info["within_target"] = bool(median <= target_s)


@pytest.mark.benchmark(group="data_inspect")
def test_data_inspect_cold(benchmark, full_csv, tmp_path):
    counter = iter(range(1_000_000))

    def fresh_cache():
        # Nothing cached: no decoded entry and no memoised digest, so the file is hashed and parsed.
        for old in tmp_path.glob("cache-*"):
            shutil.rmtree(old)  # the previous round's 80 MB entry
        cache = tmp_path / f"cache-{next(counter)}"
        cache.mkdir()
        return (full_csv, cache, "miss"), {}

    benchmark.pedantic(run_inspect, setup=fresh_cache, rounds=ROUNDS, iterations=1)
    record_target(benchmark, COLD_TARGET_S)


@pytest.mark.benchmark(group="data_inspect")
def test_data_inspect_warm(benchmark, full_csv, tmp_path):
    # A digest is memoised only for a file older than the file system's timestamp granularity (2 s).
    st = full_csv.stat()
    time.sleep(max(0.0, max(st.st_mtime, st.st_ctime) + 2.5 - time.time()))
    cache = tmp_path / "cache"
    run_inspect(full_csv, cache, "miss")
    benchmark.pedantic(run_inspect, args=(full_csv, cache, "hit"), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    record_target(benchmark, WARM_TARGET_S)
