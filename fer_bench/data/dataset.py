"""The data a benchmark run reads: its FER2013 copy or the synthetic set, its training split, bounded subsets.

The benchmarks, the distributed workers and the session pick a run's rows here, so each trains on the same ones.
``FerData`` itself lives in fer_bench.data.ferdata, below the readers this module calls; it is importable from
here as well.
"""

from __future__ import annotations

import os

from fer_bench.data.ferdata import FerData

__all__ = ["FerData", "load_run_data", "take", "train_split"]


def load_run_data(path: str | os.PathLike | None = None) -> FerData:
    """The data of a benchmark run: the FER2013 copy at ``path`` (any format, through the decoded cache), or the
    synthetic set when ``path`` is None."""
    if path is None:
        from fer_bench.data.synthetic import create_synthetic

        return create_synthetic()
    from fer_bench.data.fer2013 import load_fer2013

    return load_fer2013(path)


def train_split(data: FerData) -> str:
    """The split a run trains on: ``train`` when the data has one, else its first split."""
    names = data.split_names()
    return "train" if "train" in names else names[0]


def take(data: FerData, split: str, limit: int) -> FerData:
    """At most ``limit`` rows of ``split`` (the first ones: FER2013's rows are not ordered by class)."""
    idx = data.indices(split)[:limit]
    return FerData(images=data.images[idx], labels=None if data.labels is None else data.labels[idx],
                   splits=data.splits[idx], format=data.format, source=data.source, meta=dict(data.meta))
