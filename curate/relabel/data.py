"""Training on label maps: random-resized crops whose targets are pooled from exactly that crop.

:class:`ResizedCrop` draws and applies torchvision-style ``RandomResizedCrop`` + horizontal
flip on a uint8 batch, vectorized; it reports each crop as a box (fractions of the image)
so the target can be pooled over the same region. :class:`ResizedCropData` is a
:class:`curate.learn.TrainData` over images with either label maps (ReLabel: LabelPooling
per crop) or fixed targets (labels or soft rows: the baselines under the same crops).

With a box mixer (CutMix, ResizeMix) the data mixes its own batches. How label-map
targets are mixed is ``relabel_mix``:

- ``paper`` (the default; naver-ai/relabel_imagenet ``cutmix_batch``): each sample's
  target is the LabelPooling of its own whole crop, and the two targets are mixed by the
  pasted area exactly as soft labels are (:func:`curate.learn.mixing.mix_targets`).
- ``exact`` (a curate variant, :func:`region_targets`): each region's target comes from
  the map of the sample it shows. The pasted box is mapped back into the source sample's
  crop and pooled from the source map; the rest of the crop is pooled from the target map
  through the area identity ``z_{A-P} = (z_A - r z_P) / (1 - r)`` for pasted share r, which
  scales the pooling (sampling) error of ``z_A`` by ``1 / (1 - r)`` and of ``z_P`` by
  ``r / (1 - r)``: large for large pasted shares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from curate.errors import UsageError
from curate.learn.data import as_tensor
from curate.learn.mixing import BoxMixer, MixDraw, mix_targets
from curate.relabel.maps import TopKMaps
from curate.relabel.pooling import pool_labels

RELABEL_MIXES = ("paper", "exact")


class CropDraws(NamedTuple):
    """One batch of crops: pixel boxes (B, 4) as (x1, y1, x2, y2), half-open, and flips (B,)."""

    boxes: torch.Tensor
    flip: torch.Tensor


@dataclass(frozen=True, kw_only=True)
class ResizedCrop:
    """RandomResizedCrop (area ``scale``, aspect ``ratio``, 10 tries then the centre crop) + flip.

    The crop is resized to ``size`` (default: the input size) with bilinear interpolation
    (``align_corners=False``, no antialiasing), reading only pixels inside the crop, as
    ``F.interpolate`` of the cropped image. A flipped sample is the flip of that.
    """

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    size: tuple[int, int] | None = None
    attempts: int = 10

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise UsageError(f"crop `scale` must be (low, high) with 0 < low <= high <= 1, got {tuple(self.scale)}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise UsageError(f"crop `ratio` must be (low, high) with 0 < low <= high, got {tuple(self.ratio)}")

    def sample(self, batch_size: int, height: int, width: int, generator: torch.Generator) -> CropDraws:
        """Draw the crops of a batch (a fixed number of draws per batch, so streams stay aligned)."""
        n, tries = batch_size, self.attempts
        area = height * width * (self.scale[0] + (self.scale[1] - self.scale[0]) * torch.rand(n, tries,
                                                                                               generator=generator))
        lo, hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(lo + (hi - lo) * torch.rand(n, tries, generator=generator))
        w = torch.sqrt(area * aspect).round().long()
        h = torch.sqrt(area / aspect).round().long()
        ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = ok.long().argmax(1)
        rows = torch.arange(n)
        w, h, found = w[rows, first], h[rows, first], ok.any(1)
        cw, ch = self._centre(height, width)
        w, h = torch.where(found, w, cw), torch.where(found, h, ch)
        u = torch.rand(n, 2, generator=generator)
        top = torch.where(found, (u[:, 0] * (height - h + 1)).long(), (height - h) // 2)
        left = torch.where(found, (u[:, 1] * (width - w + 1)).long(), (width - w) // 2)
        coins = torch.rand(n, generator=generator)
        return CropDraws(torch.stack([left, top, left + w, top + h], 1), (coins < 0.5) & self.flip)

    def _centre(self, height: int, width: int) -> tuple[int, int]:
        """(w, h) of the fallback centre crop: the whole image clipped to the aspect range."""
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            return width, int(round(width / self.ratio[0]))
        if in_ratio > self.ratio[1]:
            return int(round(height * self.ratio[1])), height
        return width, height

    def apply(self, images: torch.Tensor, draws: CropDraws) -> torch.Tensor:
        """Crop, resize and flip uint8 ``images`` (B, H, W, C); returns uint8 (B, *size, C)."""
        b, height, width, _ = images.shape
        out_h, out_w = self.size or (height, width)
        boxes = draws.boxes.to(images.device)
        r_lo, r_hi, r_frac = _bilinear_taps(boxes[:, 1], boxes[:, 3], out_h)
        c_lo, c_hi, c_frac = _bilinear_taps(boxes[:, 0], boxes[:, 2], out_w)
        flip = draws.flip.to(images.device)[:, None]
        c_lo, c_hi = torch.where(flip, c_lo.flip(1), c_lo), torch.where(flip, c_hi.flip(1), c_hi)
        c_frac = torch.where(flip, c_frac.flip(1), c_frac)
        batch = torch.arange(b, device=images.device)[:, None]
        x = images.float()
        r_frac = r_frac[..., None, None]
        rows = x[batch, r_lo] * (1 - r_frac) + x[batch, r_hi] * r_frac  # (B, out_h, W, C)
        c_frac = c_frac[:, None, :, None]
        out = rows[batch, :, c_lo].transpose(1, 2) * (1 - c_frac) + rows[batch, :, c_hi].transpose(1, 2) * c_frac
        return out.round_().clamp_(0, 255).to(torch.uint8)

    @staticmethod
    def fractions(draws: CropDraws, height: int, width: int) -> torch.Tensor:
        """The crop boxes as fractions of the image (B, 4), the frame label maps are pooled in."""
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        return draws.boxes.float() / scale


def _bilinear_taps(lo: torch.Tensor, hi: torch.Tensor, out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source pixels and weights (B, out) of resizing [lo, hi) to ``out`` pixels, clamped inside [lo, hi)."""
    length = (hi - lo).float()
    src = lo[:, None].float() + ((torch.arange(out, device=lo.device) + 0.5) * (length[:, None] / out) - 0.5).clamp(
        min=0)
    last = (hi - 1)[:, None].float()
    src = torch.minimum(src, last)
    low = src.floor()
    frac = src - low
    high = torch.minimum(low + 1, last)
    return low.long(), high.long(), frac


def crop_to_image(crops: torch.Tensor, flip: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Boxes (B, 4) in the original image of ``region`` (fractions of each cropped, flipped output).

    ``crops`` (B, 4) are the crop boxes as fractions of the image; ``region`` is (4,) or (B, 4).
    """
    region = region.expand(len(crops), 4)
    x1, y1, x2, y2 = crops.unbind(1)
    cw, ch = x2 - x1, y2 - y1
    left = torch.where(flip, x2 - region[:, 2] * cw, x1 + region[:, 0] * cw)
    right = torch.where(flip, x2 - region[:, 0] * cw, x1 + region[:, 2] * cw)
    return torch.stack([left, y1 + region[:, 1] * ch, right, y1 + region[:, 3] * ch], 1)


def region_targets(maps: TopKMaps, crops: torch.Tensor, flip: torch.Tensor, draw: MixDraw, *, num_classes: int,
                   fill_value: float = 0.0) -> torch.Tensor:
    """Soft targets (B, K) of a mixed batch, each region pooled from its own sample's map (``exact``).

    Row i shows crop i outside the pasted box and part of crop ``perm[i]`` inside it. Not
    ReLabel's mixing (that is ``mix_targets`` of the whole-crop targets); the pooled logits
    of "crop minus box" come from the area identity, so for a pasted share r their sampling
    error grows as ``1 / (1 - r)``.
    """
    height, width = draw.size
    x1, y1, x2, y2 = draw.box
    pasted = torch.tensor([x1 / width, y1 / height, x2 / width, y2 / height])
    ratio = draw.ratio
    perm = draw.perm
    source = crop_to_image(crops[perm], flip[perm], torch.tensor(draw.source, dtype=torch.float32))
    inside = pool_labels(maps.index(perm), source, num_classes=num_classes, fill_value=fill_value).softmax(1)
    if ratio >= 1.0:
        return inside
    whole = pool_labels(maps, crops, num_classes=num_classes, fill_value=fill_value)
    cut = pool_labels(maps, crop_to_image(crops, flip, pasted), num_classes=num_classes, fill_value=fill_value)
    rest = ((whole - ratio * cut) / (1.0 - ratio)).softmax(1)
    return (1.0 - ratio) * rest + ratio * inside


class ResizedCropData:
    """A :class:`curate.learn.TrainData` of uint8 images (N, H, W, 3) under :class:`ResizedCrop`.

    Targets come from ``maps`` (top-k label maps, LabelPooling per crop) or from
    ``targets`` (labels (N,) or soft rows (N, K), the same for every crop). It yields soft
    rows (B, K) unless it holds labels and no mixer (then labels (B,)); pass
    :attr:`target_kind` to :func:`curate.learn.fit` as ``targets``. A ``mixer`` is applied
    here (not by fit) on the uint8 crops; ``relabel_mix`` says how label-map targets are
    mixed (``paper``: the whole-crop targets by area; ``exact``: :func:`region_targets`).
    """

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        *,
        maps: TopKMaps | None = None,
        targets: np.ndarray | torch.Tensor | None = None,
        num_classes: int,
        crop: ResizedCrop | None = None,
        mixer: BoxMixer | None = None,
        relabel_mix: Literal["paper", "exact"] = "paper",
        fill_value: float = 0.0,
    ):
        self.images = as_tensor(images)
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise UsageError(f"`images` must be uint8 (N, H, W, C), got {self.images.dtype} of shape "
                             f"{tuple(self.images.shape)}")
        if (maps is None) == (targets is None):
            raise UsageError("give exactly one of `maps` (label maps) and `targets` (labels or soft rows)")
        if relabel_mix not in RELABEL_MIXES:
            raise UsageError(f"`relabel_mix` must be one of {', '.join(RELABEL_MIXES)}, got {relabel_mix!r}")
        rows = len(maps) if maps is not None else len(targets)
        if rows != len(self.images):
            raise UsageError(f"the {'label maps' if maps is not None else '`targets`'} have {rows} rows but "
                             f"`images` has {len(self.images)}")
        self.maps = maps
        self.targets = None if targets is None else as_tensor(targets)
        if self.targets is not None and self.targets.ndim == 2 and self.targets.shape[1] != num_classes:
            raise UsageError(f"soft `targets` have {self.targets.shape[1]} columns but num_classes is {num_classes}")
        self.num_classes = num_classes
        self.crop = crop or ResizedCrop()
        self.mixer = mixer
        self.relabel_mix = relabel_mix
        self.fill_value = fill_value

    def __len__(self) -> int:
        return len(self.images)

    @property
    def target_kind(self) -> str:
        hard = self.targets is not None and self.targets.ndim == 1
        return "hard" if hard and self.mixer is None else "soft"

    def batches(self, *, batch_size: int, generator: torch.Generator, epoch: int
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self), generator=generator)
        for chunk in order.split(batch_size):
            yield self.batch(chunk, generator)

    def batch(self, rows: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, *size, C) and targets of the samples ``rows``: crop, flip, then mix."""
        images = self.images[rows]
        _, height, width, _ = images.shape
        draws = self.crop.sample(len(rows), height, width, generator)
        out = self.crop.apply(images, draws)
        crops = ResizedCrop.fractions(draws, height, width)
        draw = self.mixer.draw(len(rows), tuple(out.shape[1:3]), generator) if self.mixer is not None else None
        if draw is not None:
            out = self.mixer.paste(out.permute(0, 3, 1, 2), draw).permute(0, 2, 3, 1)
        if self.maps is None:
            targets = self.targets[rows]
            if self.mixer is not None:
                targets = targets.float() if targets.ndim == 2 else F.one_hot(targets.long(), self.num_classes).float()
                targets = mix_targets(targets, draw) if draw is not None else targets
            return out, targets
        maps = self.maps.index(rows)
        if draw is not None and self.relabel_mix == "exact":
            return out, region_targets(maps, crops, draws.flip, draw, num_classes=self.num_classes,
                                       fill_value=self.fill_value)
        targets = pool_labels(maps, crops, num_classes=self.num_classes, fill_value=self.fill_value).softmax(1)
        return out, mix_targets(targets, draw) if draw is not None else targets
