"""Batch mixing (CutMix, ResizeMix, ...): the hook :func:`curate.learn.fit` calls on every batch.

A mixer receives the preprocessed batch (float NCHW, on the training device) and its
targets as soft rows (float ``(B, K)``; fit one-hot encodes hard labels first), and
returns the mixed batch and mixed targets. It draws every random number from ``generator``
(fit's one CPU generator), so a mixed run stays repeatable. A mixing method registers a
class in :data:`MIXERS` whose keyword arguments are its options; :func:`create_mixer`
builds one by name.

The box mixers split into three parts so that a dataset can mix targets its own way
(ReLabel pools each region's target from that sample's label map): ``draw`` samples one
:class:`MixDraw` per batch (a permutation, the pasted box, and which part of the source
image the box shows), ``paste`` applies it to any NCHW batch (float, or uint8 before
preprocessing), and :func:`mix_targets` mixes soft rows by the pasted area.
Boxes are ``(x1, y1, x2, y2)``, x the column, in pixels of the mixed image (half-open)
or as fractions of the source image.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from curate.errors import UsageError
from curate.registry import Registry


class Mixer(Protocol):
    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


MIXERS: Registry[Callable[..., Mixer]] = Registry("mixer", entry_point_group="curate.mixers")


@MIXERS.register("none")
class NoMix:
    """The identity: lets a config say ``mix: none`` explicitly."""

    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return images, targets


class MixDraw(NamedTuple):
    """One batch's mix: row i gets a box of row ``perm[i]`` pasted in.

    ``box`` is the pasted box in pixels of the mixed image (shared by the batch), ``size``
    that image's (height, width), and ``source`` the part of the source image the box shows,
    as fractions (CutMix: the same box; ResizeMix: the whole image, (0, 0, 1, 1)).
    """

    perm: torch.Tensor
    box: tuple[int, int, int, int]
    size: tuple[int, int]
    source: tuple[float, float, float, float]

    @property
    def ratio(self) -> float:
        """The pasted share of the image's area: the weight of the source's target."""
        x1, y1, x2, y2 = self.box
        return (x2 - x1) * (y2 - y1) / (self.size[0] * self.size[1])


def mix_targets(targets: torch.Tensor, draw: MixDraw) -> torch.Tensor:
    """Soft rows (B, K) mixed by area: ``(1 - ratio) * t + ratio * t[perm]``."""
    lam = draw.ratio
    return (1.0 - lam) * targets + lam * targets[draw.perm.to(targets.device)]


def _check_prob(prob: float) -> None:
    if not 0.0 <= prob <= 1.0:
        raise UsageError(f"mixing `prob` must lie in [0, 1], got {prob!r}")


class BoxMixer:
    """Base of the box mixers: ``draw`` a box per batch with probability ``prob``, ``paste`` it,
    mix targets by area. Subclasses define ``_draw_box`` and ``paste``."""

    prob: float

    def draw(self, batch_size: int, size: tuple[int, int], generator: torch.Generator) -> MixDraw | None:
        """This batch's :class:`MixDraw`, or None when the batch stays unmixed (chance ``1 - prob``).

        The number of random draws does not depend on the outcome, so streams stay aligned.
        """
        height, width = int(size[0]), int(size[1])
        coin = float(torch.rand((), generator=generator))
        perm = torch.randperm(batch_size, generator=generator)
        box, source = self._draw_box(height, width, generator)
        if coin >= self.prob:
            return None
        return MixDraw(perm, box, (height, width), source)

    def _draw_box(self, height: int, width: int, generator: torch.Generator
                  ) -> tuple[tuple[int, int, int, int], tuple[float, float, float, float]]:
        raise NotImplementedError

    def paste(self, images: torch.Tensor, draw: MixDraw) -> torch.Tensor:
        raise NotImplementedError

    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        draw = self.draw(len(images), tuple(images.shape[-2:]), generator)
        if draw is None:
            return images, targets
        return self.paste(images, draw), mix_targets(targets, draw)


def _uniform_int(high: int, generator: torch.Generator) -> int:
    """One integer uniform in [0, high)."""
    return int(torch.randint(high, (), generator=generator))


@MIXERS.register("cutmix")
class CutMix(BoxMixer):
    """CutMix (clovaai/CutMix-PyTorch): paste the same box from a shuffled batch.

    lambda ~ Beta(alpha, alpha); the box has sides ``int(H * sqrt(1 - lambda))`` by
    ``int(W * sqrt(1 - lambda))`` around a uniform pixel centre, clipped to the image, so the
    pasted share (``MixDraw.ratio``, the weight of the source's target) is recomputed from
    the clipped box, as the official code does.
    """

    def __init__(self, *, alpha: float = 1.0, prob: float = 1.0):
        if not alpha > 0:
            raise UsageError(f"CutMix `alpha` must be > 0, got {alpha!r}")
        _check_prob(prob)
        self.alpha, self.prob = float(alpha), float(prob)

    def _draw_box(self, height, width, generator):
        # torch's Beta takes no generator: one draw from `generator` seeds a NumPy stream
        seed = int(torch.randint(2**62, (), generator=generator))
        lam = float(np.random.default_rng(seed).beta(self.alpha, self.alpha))
        cut = np.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * cut), int(width * cut)
        cy, cx = _uniform_int(height, generator), _uniform_int(width, generator)
        y1, y2 = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
        x1, x2 = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
        box = (int(x1), int(y1), int(x2), int(y2))
        return box, (box[0] / width, box[1] / height, box[2] / width, box[3] / height)

    def paste(self, images: torch.Tensor, draw: MixDraw) -> torch.Tensor:
        x1, y1, x2, y2 = draw.box
        out = images.clone()
        out[:, :, y1:y2, x1:x2] = images[draw.perm.to(images.device), :, y1:y2, x1:x2]
        return out


@MIXERS.register("resizemix")
class ResizeMix(BoxMixer):
    """ResizeMix: shrink the *whole* source image to a patch and paste it at a random place.

    tau ~ U(scale); the patch is ``floor(tau * H) x floor(tau * W)`` (at least 1 px), fully
    inside the image, resized with plain bilinear interpolation (``F.interpolate``, no
    antialiasing, as the paper's code) so a shrunk patch keeps its aliasing; its share of
    the area is the weight of the source's target.
    """

    def __init__(self, *, scale: tuple[float, float] = (0.1, 0.8), prob: float = 1.0):
        lo, hi = (float(s) for s in scale)
        if not 0.0 < lo <= hi <= 1.0:
            raise UsageError(f"ResizeMix `scale` must be (low, high) with 0 < low <= high <= 1, got {tuple(scale)}")
        _check_prob(prob)
        self.scale, self.prob = (lo, hi), float(prob)

    def _draw_box(self, height, width, generator):
        lo, hi = self.scale
        tau = lo + (hi - lo) * float(torch.rand((), generator=generator))
        h, w = max(1, int(tau * height)), max(1, int(tau * width))
        y, x = _uniform_int(height - h + 1, generator), _uniform_int(width - w + 1, generator)
        return (x, y, x + w, y + h), (0.0, 0.0, 1.0, 1.0)

    def paste(self, images: torch.Tensor, draw: MixDraw) -> torch.Tensor:
        x1, y1, x2, y2 = draw.box
        patch = F.interpolate(images[draw.perm.to(images.device)].float(), size=(y2 - y1, x2 - x1),
                              mode="bilinear", align_corners=False, antialias=False)
        if not images.dtype.is_floating_point:  # uint8 batches (mixed before preprocessing)
            patch = patch.round_().clamp_(0, 255)
        out = images.clone()
        out[:, :, y1:y2, x1:x2] = patch.to(images.dtype)
        return out


def create_mixer(name: str, **options: Any) -> Mixer:
    """The registered mixer ``name`` built with ``options``."""
    return MIXERS.get(name)(**options)
