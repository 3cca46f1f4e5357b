"""A synthetic FER data set: procedurally drawn 48x48 faces whose class sets the expression.

The set stands in for FER2013 wherever the real file is absent (tests, CI, first runs on a new machine): the same
image size, split sizes and class imbalance, so every loader and model sees FER2013's shapes and proportions.

Each face is drawn from a handful of features whose geometry the class sets (mouth curve and opening, brow height
and angle, eye opening, a wrinkled nose), and every image varies in position, scale, rotation, lighting, background,
noise and in how strongly it shows its expression. Small CNNs learn it quickly; a linear model on raw pixels does
not, because the features move from image to image.

Rendering is vectorised: each chunk of images is an N x 48 x 48 float32 stack of coordinate grids, rotated and
scaled per image, on which every feature is a soft signed-distance mask. Chunks are independent (one random stream
each), so they are drawn on a few threads (numpy releases the GIL) with results that do not depend on the thread
count.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fer_bench.data.cache import load_or_build
from fer_bench.data.constants import (
    CLASS_NAMES,
    FER2013_CLASS_COUNTS,
    FER2013_SPLIT_SIZES,
    IMAGE_SIZE,
    NUM_CLASSES,
    SPLIT_CODES,
)
from fer_bench.data.ferdata import FerData
from fer_bench.errors import FerBenchError

# Bump whenever the pixels a (size, seed) pair produces change: it keys the cache.
GENERATOR_VERSION = 1
DEFAULT_SIZE = sum(FER2013_SPLIT_SIZES.values())

# Fixed so that the images of a seed never depend on the machine's thread count.
_CHUNK = 128
# Float32 scratch buffers of one chunk that _render works in.
_SCRATCH = 8

# Expression prototypes in face units (the face's half-width is about 1; y grows downwards).
#   curve: mouth corners above (+) or below (-) the mouth centre; open: half-height of the mouth opening;
#   width: mouth half-width; tilt: one-sided lift of the upper lip; raise: brows up (+) or down (-);
#   slope: inner brow ends above (+) or below (-) the outer ends; eye: eye half-height; wrinkle: nose wrinkles.
_FEATURES = ("curve", "open", "width", "tilt", "raise", "slope", "eye", "wrinkle")
_PROTOTYPES = {
    #            curve   open  width   tilt  raise  slope   eye  wrinkle
    "angry":    (-0.04, 0.00, 0.24, 0.00, -0.10, -0.20, 0.050, 0.0),
    "disgust":  (-0.06, 0.05, 0.30, 0.14, -0.08, -0.08, 0.045, 1.0),
    "fear":     (-0.06, 0.06, 0.44, 0.00, 0.12, 0.12, 0.125, 0.0),
    "happy":    (0.18, 0.03, 0.42, 0.00, 0.00, 0.00, 0.055, 0.0),
    "sad":      (-0.16, 0.00, 0.32, 0.00, 0.02, 0.16, 0.060, 0.0),
    "surprise": (0.00, 0.17, 0.20, 0.00, 0.15, 0.02, 0.130, 0.0),
    "neutral":  (0.00, 0.00, 0.34, 0.00, 0.00, 0.00, 0.080, 0.0),
}
_PROTO = np.array([_PROTOTYPES[name] for name in CLASS_NAMES], dtype=np.float32)
_NEUTRAL = _PROTO[CLASS_NAMES.index("neutral")]
# Per-feature noise added on top of the prototype (same units): it makes the classes overlap somewhat. The lip lift
# and the wrinkles get none, so that they stay disgust's own (and cheap: drawn only on the images that have them).
_JITTER = np.array([0.018, 0.008, 0.02, 0.0, 0.018, 0.02, 0.008, 0.0], dtype=np.float32)
# Per-image expression strength: 0 is the neutral face, 1 the prototype.
_STRENGTH = (0.65, 1.25)
# Pose ranges: pixels per face unit, face centre (x, y) in pixels, rotation in radians.
_POSE = {"scale": (15.0, 20.0), "cx": (18.0, 30.0), "cy": (19.0, 30.0), "angle": (-0.3, 0.3)}
# Half-thickness of brows and lips, in face units.
_BROW_HALF = 0.05
_LIP_HALF = 0.035


def create_synthetic(size: int | None = None, seed: int = 0, *, use_cache: bool = True) -> FerData:
    """The synthetic FER set: FER2013's splits and class imbalance, scaled to ``size`` images.

    Args:
        size: total images; None gives FER2013's 35,887. Split and class sizes scale proportionally, with at least
            one image per class and split where the size allows.
        seed: the same seed gives the same arrays bit for bit (with one numpy build; float32 cosines may differ
            in the last bit between CPU instruction sets).
        use_cache: read from / write to fer_bench's data cache (``FER_BENCH_CACHE``) when it is available.

    Raises:
        FerBenchError: a size below 1 or a negative seed.
    """
    n = DEFAULT_SIZE if size is None else size
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise FerBenchError(f"synthetic size must be a positive integer, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise FerBenchError(f"synthetic seed must be a non-negative integer, got {seed!r}")
    n, seed = int(n), int(seed)

    def build() -> FerData:
        return _build(n, seed)

    if not use_cache:
        return build()
    data, _hit = load_or_build(f"synthetic-v{GENERATOR_VERSION}-size{n}-seed{seed}", build)
    return data


def create_split_class_counts(size: int) -> np.ndarray:
    """Images per (split, class) for a synthetic set of ``size``: a 3 x 7 int64 array.

    Rows follow train, public_test, private_test; columns follow CLASS_NAMES. Row sums are FER2013's split sizes
    scaled to ``size`` and column sums its class totals scaled to ``size`` (both exact at the default size).
    """
    split_sizes = _allocate(size, np.array(list(FER2013_SPLIT_SIZES.values()), dtype=np.float64))
    class_sizes = _allocate(size, np.array([FER2013_CLASS_COUNTS[c] for c in CLASS_NAMES], dtype=np.float64))
    counts = np.zeros((len(split_sizes), NUM_CLASSES), dtype=np.int64)
    remaining = class_sizes.copy()
    for row, split_size in enumerate(split_sizes):
        later = len(split_sizes) - row - 1
        if later == 0:
            counts[row] = remaining
            break
        # Keep one image per later split for every class big enough to have one everywhere (when sizes allow).
        cap = remaining - np.where(class_sizes >= len(split_sizes), later, 0)
        if cap.sum() < split_size:
            cap = remaining
        counts[row] = _allocate(int(split_size), remaining.astype(np.float64), cap=cap)
        remaining -= counts[row]
    return counts


def _allocate(total: int, weights: np.ndarray, cap: np.ndarray | None = None) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder), each >= 1 where possible."""
    if total == 0:
        return np.zeros(len(weights), dtype=np.int64)
    cap = np.full(len(weights), total, dtype=np.int64) if cap is None else np.asarray(cap, dtype=np.int64)
    floor = np.minimum((weights > 0).astype(np.int64), cap) if total >= np.count_nonzero(weights) else 0
    target = total * weights / weights.sum()
    out = np.clip(np.floor(target).astype(np.int64), floor, cap)
    # Hand out (or take back) single units by largest remainder until the sum is exact.
    while out.sum() != total:
        if out.sum() < total:
            room = np.where(out < cap, target - out, -np.inf)
            out[int(np.argmax(room))] += 1
        else:
            room = np.where(out > floor, out - target, -np.inf)
            out[int(np.argmax(room))] -= 1
    return out


def _build(size: int, seed: int) -> FerData:
    counts = create_split_class_counts(size)
    rng = np.random.default_rng([GENERATOR_VERSION, seed])
    labels_per_split = []
    for row in counts:
        lab = np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), row)
        labels_per_split.append(rng.permutation(lab))
    labels = np.concatenate(labels_per_split)
    # Rows are contiguous by split, as in fer2013.csv.
    codes = np.array([SPLIT_CODES[name] for name in FER2013_SPLIT_SIZES], dtype=np.uint8)
    splits = np.repeat(codes, counts.sum(axis=1))
    images = create_faces(labels, seed=seed)
    return FerData(
        images=images,
        labels=labels,
        splits=splits,
        format="synthetic",
        source=f"synthetic(size={size}, seed={seed})",
        meta={"generator_version": GENERATOR_VERSION, "size": size, "seed": seed},
    )


def create_faces(labels: np.ndarray, seed: int = 0, threads: int | None = None) -> np.ndarray:
    """Draw one face per label: a uint8 N x 48 x 48 array, the same for a (labels, seed) pair on any thread count."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.empty((len(labels), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    starts = range(0, len(labels), _CHUNK)
    # One random stream per chunk: the pixels do not depend on which thread draws which chunk.
    streams = np.random.SeedSequence([GENERATOR_VERSION, seed]).spawn(len(starts))
    workers = max(1, min(threads or os.cpu_count() or 1, 4, len(starts)))

    def work(first: int) -> None:
        # Scratch buffers reused across a worker's chunks: fresh large arrays cost more (page faults) than the maths.
        scratch = np.empty((_SCRATCH, min(_CHUNK, len(labels)), IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        for i in range(first, len(starts), workers):
            lo, hi = starts[i], min(starts[i] + _CHUNK, len(labels))
            _render(labels[lo:hi], np.random.default_rng(streams[i]), scratch[:, : hi - lo], out[lo:hi])

    if workers == 1:
        work(0)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(work, range(workers)))
    return out


def _cover(inside: np.ndarray, margin: np.ndarray | float) -> np.ndarray:
    """Soft coverage ``clip(margin - inside + 0.5, 0, 1)`` in place: ``inside`` is a distance in pixels, ``margin``
    the shape's half-thickness, so edges are antialiased over about one pixel."""
    np.subtract(margin + np.float32(0.5), inside, out=inside)
    return np.clip(inside, 0.0, 1.0, out=inside)


def _render(labels: np.ndarray, rng: np.random.Generator, scratch: np.ndarray, out: np.ndarray) -> None:
    """Draw faces for ``labels`` into ``out`` (uint8) using the float32 buffers of ``scratch``."""
    # Everything is in pixels; per-image numbers are (n, 1, 1) arrays that broadcast over the grid. Full-size work
    # goes through out= into the scratch buffers: u, v, au (|u|), img, head and ink live long, t and s are spare.
    n = len(labels)
    f32 = np.float32
    u, v, au, img, head, ink, t, s = scratch

    def draw(lo: float, hi: float) -> np.ndarray:
        return rng.uniform(lo, hi, size=(n, 1, 1)).astype(f32)

    # Expression: neutral + strength * (prototype - neutral), each feature with its own strength and noise.
    strength = rng.uniform(*_STRENGTH, size=(n, 1)) * rng.uniform(0.8, 1.2, size=(n, len(_FEATURES)))
    params = _NEUTRAL + strength.astype(f32) * (_PROTO[labels] - _NEUTRAL)
    params += rng.standard_normal((n, len(_FEATURES))).astype(f32) * _JITTER
    curve, mopen, width, tilt, raise_, slope, eye, wrinkle = (params[:, k, None, None] for k in range(len(_FEATURES)))
    # Which side of the lip lifts for disgust: either, so a mirrored face stays in its class.
    tilt = tilt * np.where(rng.random((n, 1, 1)) < 0.5, f32(-1), f32(1))

    # Pose: pixels per face unit, centre, rotation; (u, v) are each pixel's coordinates in the face's frame.
    px = draw(*_POSE["scale"])
    angle = draw(*_POSE["angle"])
    cos, sin = np.cos(angle), np.sin(angle)
    grid = np.arange(IMAGE_SIZE, dtype=f32)
    gx = grid[None, None, :] - draw(*_POSE["cx"])
    gy = grid[None, :, None] - draw(*_POSE["cy"])
    np.add(gx * cos, gy * sin, out=u)
    np.subtract(gy * cos, gx * sin, out=v)
    np.abs(u, out=au)

    # Background: a level plus a linear gradient in a random direction.
    bg_dir = draw(0.0, 2 * np.pi)
    bg_slope = draw(-0.006, 0.006)
    level = draw(0.05, 0.95)
    np.add(grid[None, None, :] * (np.cos(bg_dir) * bg_slope) + level, grid[None, :, None] * (np.sin(bg_dir) * bg_slope),
           out=img)

    # Head: an ellipse of the face tone (rim distance approximated by (r^2 - 1) * a / 2), darker hair on top.
    a = px * draw(0.95, 1.1)
    b = px * draw(1.2, 1.4)
    np.add(gx * (cos / a), gy * (sin / a), out=head)
    head *= head
    np.subtract(gy * (cos / b), gx * (sin / b), out=t)
    t *= t
    head += t
    head -= 1.0
    head *= a * 0.5
    _cover(head, 0.0)
    np.subtract(draw(0.35, 0.95), img, out=t)
    t *= head
    img += t
    _cover(np.subtract(v, px * draw(-1.35, -0.7), out=t), 0.0)
    t *= draw(0.3, 0.8)
    t *= head
    t *= img
    img -= t

    # Eyes: ellipses at (+-0.38, -0.2) face units, drawn once through |u|.
    eye_w = px * 0.17
    eye_h = px * np.maximum(eye, 0.025)
    np.multiply(au, 1 / eye_w, out=ink)
    ink -= 0.38 * px / eye_w
    ink *= ink
    np.multiply(v, 1 / eye_h, out=t)
    t += 0.2 * px / eye_h
    t *= t
    ink += t
    ink -= 1.0
    ink *= eye_h * 0.5
    _cover(ink, 0.0)

    # Brows: bars over 0.14 <= |u| <= 0.62 face units, lifted by raise_, their inner ends lifted by slope.
    k = slope / 0.48
    np.multiply(au, k, out=t)
    t += (-0.5 - raise_) * px - k * (0.38 * px)
    np.subtract(v, t, out=t)
    _cover(np.abs(t, out=t), _BROW_HALF * px)
    np.subtract(au, 0.38 * px, out=s)
    t *= _cover(np.abs(s, out=s), 0.24 * px)
    np.maximum(ink, t, out=ink)

    # Mouth: a band bent by curve, opened by mopen with an elliptic profile, mouth_w wide; s holds (u / mouth_w)^2.
    mouth_w = px * np.maximum(width, 0.12)
    np.multiply(u, 1 / mouth_w, out=s)
    s *= s
    np.multiply(s, -curve * px, out=t)
    t += 0.58 * px
    # Disgust lifts one side of the upper lip: drawn only on the few images that have it.
    lifted = np.flatnonzero(tilt[:, 0, 0] != 0)
    if len(lifted):
        t[lifted] -= (tilt[lifted] * px[lifted]) * np.maximum(u[lifted] / mouth_w[lifted], 0.0)
    np.subtract(v, t, out=t)
    np.abs(t, out=t)
    np.subtract(1.0, s, out=s)
    np.maximum(s, 0.0, out=s)
    np.sqrt(s, out=s)
    s *= px * np.maximum(mopen, 0.0)
    t -= s
    _cover(t, _LIP_HALF * px)
    np.copyto(s, au)
    t *= _cover(s, mouth_w)
    np.maximum(ink, t, out=ink)

    # Nose wrinkles (disgust): horizontal bars across the bridge, again drawn only where present.
    wrinkled = np.flatnonzero(wrinkle[:, 0, 0] > 0.02)
    if len(wrinkled):
        pw = px[wrinkled]
        bars = np.cos((v[wrinkled] / pw + 0.05) * f32(2 * np.pi / 0.1)) > 0.3
        box = _cover(au[wrinkled], 0.16 * pw) * _cover(np.abs(v[wrinkled] + 0.02 * pw), 0.12 * pw)
        ink[wrinkled] = np.maximum(ink[wrinkled], bars * box * np.minimum(wrinkle[wrinkled], 1.0))

    # Features darken the face by a per-image depth.
    ink *= draw(0.45, 0.85)
    ink *= head
    ink *= img
    img -= ink

    # Lighting and sensor: contrast around mid-grey, brightness, uniform noise, then 0-255 (+0.5 rounds on cast).
    gain = draw(0.6, 1.3) * 255.0
    noise = draw(0.02, 0.12) * 255.0
    img *= gain
    img += (0.5 + draw(-0.12, 0.12)) * 255.0 - 0.5 * gain - 0.5 * noise + 0.5
    rng.random(out=t, dtype=f32)
    t *= noise
    img += t
    np.clip(img, 0.0, 255.0, out=img)
    np.copyto(out, img, casting="unsafe")
