"""Differentiable Siamese Augmentation (DSA, Zhao & Bilen, ICML 2021) in plain torch.

Images are float ``(B, C, H, W)`` in the model's normalized input space; every transform
is differentiable with respect to them. As in the official ``ParamDiffAug`` with
``aug_mode='S'``, each call applies ONE family of the strategy: ``color`` (brightness,
saturation, contrast), ``crop`` (integer translation with zero fill), ``cutout`` (a zeroed
square), ``flip``, ``scale`` or ``rotate`` (bilinear resampling, zero padding).

Randomness is drawn up front into a :class:`DSADraw` (always the same number of draws
from the caller's ``torch.Generator``, so streams stay aligned across resumes). A draw
has G rows; :meth:`DSA.apply` maps each image to a row with ``index``. The siamese use
of distillation draws one row per class and applies it to that class's real and
synthetic images alike (``index`` = the labels); training-time augmentation draws one
row per image and one family for the whole batch, as the official evaluation does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from curate.errors import UsageError

FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")
DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"


class DSADraw(NamedTuple):
    """Parameters of G augmentations (one row each); ``family`` indexes :data:`FAMILIES`."""

    family: torch.Tensor      # (G,) int64
    brightness: torch.Tensor  # (G,) uniform [0, 1)
    saturation: torch.Tensor  # (G,) uniform [0, 1)
    contrast: torch.Tensor    # (G,) uniform [0, 1)
    shift: torch.Tensor       # (G, 2) int64 translation (rows, columns)
    cutout: torch.Tensor      # (G, 2) int64 centre (row, column) of the zeroed square
    flip: torch.Tensor        # (G,) bool
    scale: torch.Tensor       # (G, 2) factors (x, y)
    angle: torch.Tensor       # (G,) radians


def parse_strategy(strategy: str) -> tuple[str, ...]:
    """``"color_crop_flip"`` -> its families; unknown or repeated names are a usage error."""
    names = tuple(strategy.split("_")) if strategy else ()
    unknown = [n for n in names if n not in FAMILIES]
    if not names or unknown or len(set(names)) != len(names):
        raise UsageError(f"DSA `strategy` must join distinct families from {', '.join(FAMILIES)} with '_' "
                         f"(e.g. {DEFAULT_STRATEGY!r}), got {strategy!r}")
    return names


@dataclass(frozen=True, kw_only=True)
class DSA:
    """The augmentation families of ``strategy`` with the official ``ParamDiffAug`` magnitudes."""

    strategy: str = DEFAULT_STRATEGY
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5
    crop_pad: float = 0.125
    cutout_ratio: float = 0.5
    flip_prob: float = 0.5
    scale_ratio: float = 1.2
    rotate_degrees: float = 15.0

    def __post_init__(self) -> None:
        parse_strategy(self.strategy)
        if not self.scale_ratio >= 1:
            raise UsageError(f"DSA `scale_ratio` must be >= 1, got {self.scale_ratio}")

    @property
    def families(self) -> torch.Tensor:
        """Indices into :data:`FAMILIES` of this strategy's families."""
        return torch.tensor([FAMILIES.index(n) for n in parse_strategy(self.strategy)])

    def draw(self, n: int, generator: torch.Generator, *, size: tuple[int, int],
             shared_family: bool = False) -> DSADraw:
        """``n`` rows of parameters for images of ``size`` (H, W); one family for all with ``shared_family``."""
        h, w = size
        families = self.families
        pick = torch.randint(0, len(families), (1 if shared_family else n,), generator=generator)
        family = families[pick].expand(n).clone()
        uniform = torch.rand(n, 3, generator=generator)
        shift_h, shift_w = int(h * self.crop_pad + 0.5), int(w * self.crop_pad + 0.5)
        shift = torch.stack([torch.randint(-shift_h, shift_h + 1, (n,), generator=generator),
                             torch.randint(-shift_w, shift_w + 1, (n,), generator=generator)], 1)
        cut_h, cut_w = self._cutout_size(size)
        cutout = torch.stack([torch.randint(0, h + 1 - cut_h % 2, (n,), generator=generator),
                              torch.randint(0, w + 1 - cut_w % 2, (n,), generator=generator)], 1)
        flip = torch.rand(n, generator=generator) < self.flip_prob
        r = self.scale_ratio
        scale = torch.rand(n, 2, generator=generator) * (r - 1.0 / r) + 1.0 / r
        angle = (torch.rand(n, generator=generator) - 0.5) * 2 * math.radians(self.rotate_degrees)
        return DSADraw(family, uniform[:, 0], uniform[:, 1], uniform[:, 2], shift, cutout, flip, scale, angle)

    def apply(self, images: torch.Tensor, draw: DSADraw, index: torch.Tensor | None = None) -> torch.Tensor:
        """Augment ``images`` (B, C, H, W); image ``i`` uses row ``index[i]`` of ``draw`` (default: row i)."""
        if images.ndim != 4:
            raise UsageError(f"DSA expects images (B, C, H, W), got shape {tuple(images.shape)}")
        b = len(images)
        rows = torch.arange(b) if index is None else index.detach().cpu().long()
        if len(rows) != b:
            raise UsageError(f"`index` has {len(rows)} entries but there are {b} images")
        params = DSADraw(*(p[rows] for p in draw))
        out = images
        for k, name in enumerate(FAMILIES):
            chosen = torch.nonzero(params.family == k).squeeze(1)
            if len(chosen) == 0:
                continue
            sub = DSADraw(*(p[chosen] for p in params))
            on = chosen.to(images.device)
            moved = getattr(self, f"_{name}")(out if len(chosen) == b else out[on], sub)
            out = moved if len(chosen) == b else out.index_put((on,), moved)
        return out

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Per-image parameters and one family for the batch (training-time augmentation)."""
        draw = self.draw(len(images), generator, size=tuple(images.shape[-2:]), shared_family=True)
        return self.apply(images, draw)

    # --- families: x (b, C, H, W) with the b rows of parameters that belong to it ------------

    def _cutout_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return int(size[0] * self.cutout_ratio + 0.5), int(size[1] * self.cutout_ratio + 0.5)

    def _color(self, x: torch.Tensor, p: DSADraw) -> torch.Tensor:
        def per_image(v: torch.Tensor) -> torch.Tensor:
            return v.to(x.device, x.dtype).view(-1, 1, 1, 1)

        x = x + (per_image(p.brightness) - 0.5) * self.brightness
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (per_image(p.saturation) * self.saturation) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * (per_image(p.contrast) + self.contrast) + mean

    def _crop(self, x: torch.Tensor, p: DSADraw) -> torch.Tensor:
        """out[i, j] = x[i + dy, j + dx], zero where that falls outside the image."""
        _, _, h, w = x.shape
        shift = p.shift.to(x.device)
        rows = (torch.arange(h, device=x.device) + shift[:, :1] + 1).clamp(0, h + 1)
        cols = (torch.arange(w, device=x.device) + shift[:, 1:] + 1).clamp(0, w + 1)
        padded = F.pad(x, (1, 1, 1, 1))
        batch = torch.arange(len(x), device=x.device)[:, None, None]
        return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

    def _cutout(self, x: torch.Tensor, p: DSADraw) -> torch.Tensor:
        _, _, h, w = x.shape
        cut_h, cut_w = self._cutout_size((h, w))
        centre = p.cutout.to(x.device)
        top, left = centre[:, :1] - cut_h // 2, centre[:, 1:] - cut_w // 2
        r = torch.arange(h, device=x.device)
        c = torch.arange(w, device=x.device)
        in_rows = (r >= top) & (r < top + cut_h)
        in_cols = (c >= left) & (c < left + cut_w)
        keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
        return x * keep[:, None].to(x.dtype)

    def _flip(self, x: torch.Tensor, p: DSADraw) -> torch.Tensor:
        return torch.where(p.flip.to(x.device).view(-1, 1, 1, 1), x.flip(3), x)

    def _scale(self, x: torch.Tensor, p: DSADraw) -> torch.Tensor:
        zero = torch.zeros(len(x))
        theta = torch.stack([torch.stack([p.scale[:, 0], zero, zero], 1),
                             torch.stack([zero, p.scale[:, 1], zero], 1)], 1)
        return _affine(x, theta)

    def _rotate(self, x: torch.Tensor, p: DSADraw) -> torch.Tensor:
        cos, sin, zero = p.angle.cos(), p.angle.sin(), torch.zeros(len(x))
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        return _affine(x, theta)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling of ``x`` through the (b, 2, 3) affine maps, zero outside (as torch's defaults)."""
    theta = theta.to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
