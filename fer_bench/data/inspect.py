"""`fer-bench data inspect`: what a FER2013 copy holds (format, counts per split and class, pixel statistics).

The warm path (a cache hit) reads only meta.json and memory-maps the arrays: labels and splits are counted, the
pixel statistics come from the entry's meta, and neither pandas nor torch is imported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fer_bench.data.cache import collect_pixel_stats
from fer_bench.data.constants import CLASS_NAMES, SPLITS
from fer_bench.data.ferdata import FerData
from fer_bench.errors import FerBenchError


def inspect_data(path: str | None, *, ferplus: str | None = None, size: int | None = None,
                 seed: int = 0) -> dict[str, Any]:
    """Describe a FER2013 copy, or the synthetic set when ``path`` is None.

    Returns:
        source, format, num_images, labeled, splits ({split: {class: count}}, None when unlabeled), split_sizes,
        pixel_mean and pixel_std (0-255 scale, over all images), cache ("hit", "miss" or "off"), cache_path,
        and details (what the reader recorded: rows dropped by FER+, images resized, ...).

    Raises:
        FerBenchError: bad input, or options that do not apply (--ferplus without a path, --size with a path).
    """
    if path is None:
        if ferplus is not None:
            raise FerBenchError("--ferplus needs PATH, the fer2013.csv whose rows the votes label")
        from fer_bench.data.synthetic import create_synthetic

        data = create_synthetic(size=size, seed=seed)
    else:
        if size is not None or seed != 0:
            raise FerBenchError("--size and --seed apply to the synthetic set only (inspect without PATH)")
        from fer_bench.data.fer2013 import load_fer2013

        data = load_fer2013(path, ferplus=ferplus)
    return collect_report(data)


def collect_report(data: FerData) -> dict[str, Any]:
    """The inspect report of a loaded FerData (see inspect_data)."""
    meta = data.meta
    if "pixel_mean" in meta and "pixel_std" in meta:
        mean, std = float(meta["pixel_mean"]), float(meta["pixel_std"])
    else:
        mean, std = collect_pixel_stats(data.images)
    split_sizes = {SPLITS[code]: int(n) for code, n in enumerate(np.bincount(data.splits, minlength=len(SPLITS)))
                   if n}
    skip = {"pixel_mean", "pixel_std", "cache", "cache_path"}
    return {
        "source": data.source,
        "format": data.format,
        "num_images": len(data),
        "labeled": data.labeled,
        "splits": data.class_counts(),
        "split_sizes": split_sizes,
        "pixel_mean": mean,
        "pixel_std": std,
        "cache": meta.get("cache", "off"),
        "cache_path": meta.get("cache_path"),
        "details": {k: v for k, v in meta.items() if k not in skip},
    }


def format_inspect(report: dict[str, Any]) -> str:
    """A human-readable summary and a split x class table."""
    lines = [
        f"source      {report['source']}",
        f"format      {report['format']}",
        f"images      {report['num_images']:,} ({'labeled' if report['labeled'] else 'unlabeled'})",
        f"pixels      mean {report['pixel_mean']:.2f}  std {report['pixel_std']:.2f}  (0-255)",
        f"cache       {report['cache']}" + (f"  {report['cache_path']}" if report.get("cache_path") else ""),
    ]
    details = report.get("details", {})
    ferplus = details.get("ferplus")
    if ferplus:
        dropped = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in ferplus["dropped"].items())
        lines.append(f"labels      FER+ majority of {ferplus['rows']:,} rows: kept {ferplus['kept']:,}; "
                     f"dropped {dropped}")
    for key in ("converted_to_gray", "resized_to_48x48"):
        if details.get(key):
            lines.append(f"note        {details[key]:,} images {key.replace('_', ' ')}")
    lines.append("")
    splits = report["splits"]
    sizes = report["split_sizes"]
    if splits is None:
        header = f"{'split':<13} {'images':>7}"
        rows = [f"{name:<13} {n:>7,}" for name, n in sizes.items()]
        total = f"{'all':<13} {sum(sizes.values()):>7,}"
    else:
        header = f"{'split':<13} {'images':>7} " + " ".join(f"{c:>8}" for c in CLASS_NAMES)
        rows = [f"{name:<13} {sizes[name]:>7,} " + " ".join(f"{counts[c]:>8,}" for c in CLASS_NAMES)
                for name, counts in splits.items()]
        totals = {c: sum(counts[c] for counts in splits.values()) for c in CLASS_NAMES}
        total = f"{'all':<13} {sum(sizes.values()):>7,} " + " ".join(f"{totals[c]:>8,}" for c in CLASS_NAMES)
    rule = "-" * len(header)
    lines += [header, rule, *rows, rule, total]
    return "\n".join(lines)
