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
