"""Batch transforms: augmentation and normalisation of a whole uint8 batch in a few tensor operations.

A batch travels as uint8 (one byte per pixel) for as long as possible and becomes float32 only here. The random
crop and flip of every image are one gather over index grids, so the cost does not grow with Python work per image,
and the same code runs on the CPU (inside a DataLoader worker) or on the GPU.

Where to run it: on a GPU the whole transform of a batch is a handful of kernel launches, and the host copies a
uint8 batch (4x smaller than float32, 3 x (224/48)^2 = 65x smaller than a 224 x 224 RGB float batch), so augmenting
on the device is cheaper than in CPU workers, which must produce, pickle through shared memory and copy the large
float tensor. ``create_loader(..., transform_on_device=True)`` does that; workers then only gather uint8 rows.

Randomness comes from an explicit ``torch.Generator``; the loader seeds one per batch from (seed, epoch, batch
number), so a run is reproducible and independent of the number of workers and of the device. The random numbers
are always drawn on the generator's device (the CPU by default) and then moved: the same seed gives the same crops
and flips on every device.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fer_bench.errors import FerBenchError

# FER2013's pixel statistics on the 0-255 scale, approximately (all 35,887 images together). They are the default
# normalisation; the data cache records the exact figures of every data set it stores (meta "pixel_mean",
# "pixel_std"), which callers can pass as mean/std instead.
FER2013_PIXEL_MEAN = 129.4
FER2013_PIXEL_STD = 65.0

PADDING_MODES = ("reflect", "zeros")


def create_batch_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    """A CPU generator for one batch, seeded from (seed, epoch, batch) so that batches are independent streams."""
    state = np.random.SeedSequence([seed, epoch, batch]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)


class BatchTransform:
    """Random crop and flip (train only), then normalise, resize and repeat channels, on a uint8 batch.

    Args:
        input_size: output side S; a 48-pixel batch is resized (bilinear, no antialiasing) when S differs.
        in_chans: 1, or 3 (the grey channel repeated, for models built for RGB).
        mean: pixel mean on the 0-255 scale (default ``FER2013_PIXEL_MEAN``).
        std: pixel standard deviation on the 0-255 scale (default ``FER2013_PIXEL_STD``).
        train: augment; False gives the deterministic centre (identity) crop and no flip.
        pad: random-crop padding in pixels on each side (offsets 0 .. 2 * pad).
        flip: flip each image horizontally with probability 1/2 (train only).
        padding_mode: "reflect" (mirror the border, no black bars) or "zeros".
    """

    def __init__(self, input_size: int = 48, in_chans: int = 1, mean: float | None = None,
                 std: float | None = None, train: bool = True, pad: int = 4, flip: bool = True,
                 padding_mode: str = "reflect") -> None:
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
            raise FerBenchError(f"input_size must be a positive integer, got {input_size!r}")
        if in_chans not in (1, 3) or isinstance(in_chans, bool):
            raise FerBenchError(f"in_chans must be 1 or 3, got {in_chans!r}")
        if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
            raise FerBenchError(f"pad must be a non-negative integer, got {pad!r}")
        if padding_mode not in PADDING_MODES:
            raise FerBenchError(f"padding_mode must be one of {', '.join(PADDING_MODES)}, got {padding_mode!r}")
        self.mean = float(FER2013_PIXEL_MEAN if mean is None else mean)
        self.std = float(FER2013_PIXEL_STD if std is None else std)
        if not np.isfinite(self.mean):
            raise FerBenchError(f"mean must be a finite number, got {mean!r}")
        if not (np.isfinite(self.std) and self.std > 0):
            raise FerBenchError(f"std must be a positive number, got {std!r}")
        self.input_size = input_size
        self.in_chans = in_chans
        self.train = bool(train)
        self.pad = pad
        self.flip = bool(flip)
        self.padding_mode = padding_mode

    def __repr__(self) -> str:
        return (f"BatchTransform(input_size={self.input_size}, in_chans={self.in_chans}, mean={self.mean}, "
                f"std={self.std}, train={self.train}, pad={self.pad}, flip={self.flip}, "
                f"padding_mode={self.padding_mode!r})")

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Transform a uint8 B x H x W (or B x 1 x H x W) batch into float32 B x C x S x S on the same device.

        Args:
            images: the batch, on any device.
            generator: the source of the crop offsets and flips (train only); None uses torch's global generator.
        """
        x = images
        if x.dim() == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.dim() != 3 or x.dtype != torch.uint8:
            raise ValueError(f"expected a uint8 B x H x W or B x 1 x H x W batch, got {x.dtype} {tuple(images.shape)}")
        if self.train and len(x) and (self.pad or self.flip):
            x = self._augment(x, generator)
        # (x / 255 - mean / 255) / (std / 255) with the 0-255 statistics is (x - mean) / std: one fused pass.
        out = x.unsqueeze(1).to(torch.float32)
        out.sub_(self.mean).div_(self.std)
        if out.shape[-2:] != (self.input_size, self.input_size):
            out = F.interpolate(out, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                                antialias=False)
        if self.in_chans == 3:
            out = out.expand(-1, 3, -1, -1).contiguous()
        return out

    def _augment(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        batch, height, width = x.shape
        if self.padding_mode == "reflect" and self.pad >= min(height, width):
            raise FerBenchError(f"pad {self.pad} needs images larger than {self.pad} pixels for reflect padding")
        draw_on = generator.device if generator is not None else torch.device("cpu")
        offsets = torch.randint(0, 2 * self.pad + 1, (2, batch), generator=generator, device=draw_on)
        flips = torch.rand(batch, generator=generator, device=draw_on) < 0.5
        offsets = offsets.to(x.device)
        flips = flips.to(x.device)
        # Source row and column of every output pixel: the crop window, mirrored for flipped images.
        rows = offsets[0, :, None] + torch.arange(height, device=x.device) - self.pad
        cols = offsets[1, :, None] + torch.arange(width, device=x.device) - self.pad
        if self.flip:
            cols = torch.where(flips[:, None], cols.flip(1), cols)
        if self.padding_mode == "reflect":
            rows = _reflect(rows, height)
            cols = _reflect(cols, width)
            out = x[torch.arange(batch, device=x.device)[:, None, None], rows[:, :, None], cols[:, None, :]]
        else:
            inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
            rows = rows.clamp(0, height - 1)
            cols = cols.clamp(0, width - 1)
            out = x[torch.arange(batch, device=x.device)[:, None, None], rows[:, :, None], cols[:, None, :]]
            out.masked_fill_(~inside, 0)
        return out


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Mirror indices in [-size + 1, 2 * size - 2] into [0, size - 1] without repeating the edge (like F.pad)."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)
