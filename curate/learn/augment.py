"""Batched training augmentation in plain torch: random crop with padding, and horizontal flip.

Images are uint8 ``(B, H, W, C)``, channels last as decoding returns them. A crop with
padding ``p`` is the ``H x W`` window at offset ``(dy, dx)`` in ``[0, 2p]`` of the image
padded by ``p`` on every side. The padded image is never built: each output row and
column maps to a source row and column (reflected, or masked to zero, where it falls
outside the image), and one advanced-indexing gather produces the whole batch, the
flip included (a flipped crop reads its columns in reverse).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

from curate.errors import UsageError

PADDING_MODES = ("zeros", "reflect")


class CropFlip(NamedTuple):
    """Per-sample draws of one batch: crop offsets ``(B, 2)`` as (dy, dx) in [0, 2p], and flips ``(B,)``."""

    offsets: torch.Tensor
    flip: torch.Tensor


@dataclass(frozen=True, kw_only=True)
class Augment:
    """Random crop (``crop_padding`` pixels of ``padding_mode`` padding) then random horizontal flip."""

    flip: bool = True
    crop_padding: int = 4
    padding_mode: Literal["zeros", "reflect"] = "zeros"

    def __post_init__(self) -> None:
        if not isinstance(self.crop_padding, int) or self.crop_padding < 0:
            raise UsageError(f"`crop_padding` must be an integer >= 0, got {self.crop_padding!r}")
        if self.padding_mode not in PADDING_MODES:
            raise UsageError(f"`padding_mode` must be one of {', '.join(PADDING_MODES)}, got {self.padding_mode!r}")

    def sample(self, batch_size: int, generator: torch.Generator) -> CropFlip:
        """Draw the offsets and flips of a batch (always the same number of draws, so streams stay aligned)."""
        offsets = torch.randint(0, 2 * self.crop_padding + 1, (batch_size, 2), generator=generator)
        coins = torch.rand(batch_size, generator=generator)
        return CropFlip(offsets, (coins < 0.5) & self.flip)

    def apply(self, images: torch.Tensor, draws: CropFlip) -> torch.Tensor:
        """Crop and flip ``images`` (B, H, W, C) as ``draws`` say; returns a new tensor."""
        if images.ndim != 4:
            raise UsageError(f"`images` must be (B, H, W, C), got shape {tuple(images.shape)}")
        b, h, w, _ = images.shape
        p = self.crop_padding
        if self.padding_mode == "reflect" and p >= min(h, w):
            raise UsageError(f"reflect padding of {p} pixels needs images larger than {p}, got {h}x{w}")
        offsets = draws.offsets.to(images.device)
        rows, row_ok = self._sources(offsets[:, 0], h)
        cols, col_ok = self._sources(offsets[:, 1], w)
        flip = draws.flip.to(images.device)[:, None]
        cols = torch.where(flip, cols.flip(1), cols)
        col_ok = torch.where(flip, col_ok.flip(1), col_ok)
        batch = torch.arange(b, device=images.device)[:, None, None]
        out = images[batch, rows[:, :, None], cols[:, None, :]]
        if self.padding_mode == "zeros":
            inside = row_ok[:, :, None] & col_ok[:, None, :]
            out.masked_fill_(~inside[..., None], 0)
        return out

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(images, self.sample(len(images), generator))

    def _sources(self, offset: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Source index (B, length) of each output position, and whether it lies inside the image."""
        index = offset[:, None] - self.crop_padding + torch.arange(length, device=offset.device)
        inside = (index >= 0) & (index < length)
        if self.padding_mode == "reflect":
            index = index.abs()
            index = torch.where(index >= length, 2 * (length - 1) - index, index)
        return index.clamp(0, length - 1), inside
