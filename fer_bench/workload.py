"""The workload record: what one round of a result did, so that only like work is compared. Torch-free.

Every result's ``extra_info["workload"]`` says what one round's work is:

* ``data``: ``{"kind": "synthetic", "size": 35887, "seed": 0, "generator_version": 1}`` or
  ``{"kind": "file", "format": "fer2013_csv", "content": "<sha256 of the bytes>", "images": 35887}``;
* ``input_size`` and ``in_chans``: the model's input (48 and 1 for the paper CNNs);
* ``images_per_round`` (a loader pass), ``train_images`` and ``eval_images`` (an epoch) where the round has them;
* ``target_accuracy`` and ``max_epochs``: a time-to-accuracy round trains until the one or the other.

Two results are the same case only when their axes and their workload agree. The image counts are the one
difference that keeps throughput comparable: images per second over 2,048 or 4,096 images measure the same thing,
a round's time does not. Results written before the record existed carry the same facts in older extra_info keys;
:func:`workload_of` reads them from there and says it did.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

WORKLOAD_KEY = "workload"
#: Image counts: a difference in these leaves per-image throughput comparable, but not the time of a round.
COUNT_FIELDS = ("images_per_round", "train_images", "eval_images")
_FIELDS = ("data", "input_size", "in_chans", *COUNT_FIELDS, "target_accuracy", "max_epochs")


def create_workload(data: Mapping[str, Any], *, input_size: int | None = None, in_chans: int | None = None,
                    images_per_round: int | None = None, train_images: int | None = None,
                    eval_images: int | None = None, target_accuracy: float | None = None,
                    max_epochs: int | None = None) -> dict[str, Any]:
    """The record for one result; fields a benchmark does not have are left out."""
    values = {"data": dict(data), "input_size": input_size, "in_chans": in_chans,
              "images_per_round": images_per_round, "train_images": train_images, "eval_images": eval_images,
              "target_accuracy": target_accuracy, "max_epochs": max_epochs}
    return {k: v for k, v in values.items() if v is not None}


def workload_of(extra_info: Mapping[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """A result's workload and whether it was read from the keys of a result older than the record.

    Older results recorded ``data`` as "synthetic" or the data path, and the counts and input shape as keys of
    their own; a path says nothing of the file's content, so such data is left out.
    Returns (None, True) when nothing is known.
    """
    record = extra_info.get(WORKLOAD_KEY)
    if isinstance(record, dict):
        return dict(record), False
    out: dict[str, Any] = {}
    if extra_info.get("data") == "synthetic":
        out["data"] = {"kind": "synthetic"}
    for key in ("input_size", "in_chans", *COUNT_FIELDS):  # what results older than the record had
        value = extra_info.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            out[key] = value
    return (out or None), True


def _flatten(record: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (record or {}).items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def workload_differences(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None, *,
                         ignore_counts: bool = False) -> list[str]:
    """What differs between two workloads, as ``images_per_round 4096 vs 2048`` (a's value first).

    Only facts both records hold are compared: an older result that does not say its data set's size differs
    from nothing. ``ignore_counts`` leaves the image counts out (comparing per image).
    """
    fa, fb = _flatten(a), _flatten(b)
    diffs = []
    for key in [k for k in fa if k in fb]:
        if ignore_counts and key in COUNT_FIELDS:
            continue
        if fa[key] != fb[key]:
            diffs.append(f"{key} {_show(fa[key])} vs {_show(fb[key])}")
    return diffs


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:12] if isinstance(value, str) and len(value) == 64 else text  # a content hash, shortened


def describe_workload(record: Mapping[str, Any] | None) -> str:
    """A short label: ``synthetic 35887 seed 0, 1x48x48, 2048 images/round``."""
    if not record:
        return "unknown workload"
    parts = []
    data = record.get("data") or {}
    if data.get("kind") == "synthetic":
        text = "synthetic"
        if data.get("size") is not None:
            text += f" {data['size']}"
        if data.get("seed") is not None:
            text += f" seed {data['seed']}"
        parts.append(text)
    elif data:
        parts.append(f"{data.get('format', 'file')} {str(data.get('content', '?'))[:12]}")
    if record.get("input_size") is not None:
        parts.append(f"{record.get('in_chans', '?')}x{record['input_size']}x{record['input_size']}")
    if record.get("images_per_round") is not None:
        parts.append(f"{record['images_per_round']} images/round")
    if record.get("train_images") is not None:
        parts.append(f"{record['train_images']} train + {record.get('eval_images', '?')} eval images")
    return ", ".join(parts)
