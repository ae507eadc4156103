"""The KD protocol's options: the views each training batch shows, and the student's recipe.

Views are a crop and a flip per image and a mix per batch, drawn, then applied.

Drawing and applying are separate, so the views a student saw can be stored (FKD: crop
boxes, flips, mix parameters) and replayed bit for bit (:mod:`curate.condense.relabel`).
Views are cut from uint8 images (N, H, W, C), the set as it is saved, as SRe2L relabels its
saved images, and come out as float pixels (B, C, H, W) in [0, 1] that each network then
normalizes its own way (teacher and student may differ).

Defaults follow SRe2L's CIFAR relabel script (``SRe2L/*small_dataset/relabel_cifar.py``):
``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip`` and Mixup with alpha 0.8 on every
batch. Its ImageNet relabel (FKD, ``relabel/generate_soft_label.py``) uses
``RandomResizedCrop`` with scale 0.08-1 (``crop: resized``) and CutMix (alpha 1) or Mixup.
:class:`KDRecipe` is the student's training (``relabel_cifar.py``: AdamW lr 1e-3, weight decay
0.01, cosine over 400 epochs, batch 128, T = 30; ImageNet's ``train_FKD.sh``: 300 epochs,
batch 1024, T = 20). Importable without torch (recipes validate these options at load).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple

from curate.config import ConfigValueError, option

if TYPE_CHECKING:  # pragma: no cover
    import torch

MIXES = ("mixup", "cutmix", "none")


class ViewDraw(NamedTuple):
    """One batch of views: per image a crop (pad: offsets (B, 2); resized: boxes (B, 4)) and a flip, and the mix:
    image i is mixed with ``perm[i]`` keeping weight ``lam`` of its own content (CutMix pastes ``box``)."""

    crop: torch.Tensor
    flip: torch.Tensor
    perm: torch.Tensor
    lam: float
    box: tuple[int, int, int, int]


@dataclass(frozen=True, kw_only=True)
class Views:
    """What each training batch of the KD protocol shows: crops, flips and a mix (``relabel_cifar.py``'s by default)."""

    crop: Literal["pad", "resized"] = option("pad", help="pad: random crop after zero padding (CIFAR's); resized: "
                                                         "random-resized crop (ImageNet's FKD)")
    crop_padding: int = option(4, ge=0, help="pad crops: pixels of zero padding on each side")
    crop_scale: tuple[float, float] = option((0.08, 1.0), help="resized crops: range of the area share")
    flip: bool = option(True, help="random horizontal flips")
    mix: Literal["mixup", "cutmix", "none"] = option("mixup", help="batch mixing, drawn for every batch")
    mix_alpha: float = option(0.8, gt=0, help="Beta(alpha, alpha) of the mix (relabel_cifar.py's Mixup: 0.8; "
                                              "CutMix: 1.0)")

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigValueError("crop_scale", f"expected (low, high) with 0 < low <= high <= 1, got "
                                                 f"{tuple(self.crop_scale)}")

    def _cropper(self):
        if self.crop == "pad":
            from curate.learn.augment import Augment

            return Augment(flip=self.flip, crop_padding=self.crop_padding)
        from curate.relabel.data import ResizedCrop

        return ResizedCrop(scale=tuple(self.crop_scale), flip=self.flip)

    def draw(self, n: int, size: tuple[int, int], generator: torch.Generator) -> ViewDraw:
        """The views of a batch of ``n`` images of ``size`` (H, W), every random number from ``generator``."""
        import numpy as np
        import torch

        cropper = self._cropper()
        if self.crop == "pad":
            crop, flip = cropper.sample(n, generator)
        else:
            crop, flip = cropper.sample(n, size[0], size[1], generator)
        if self.mix == "none":
            return ViewDraw(crop, flip, torch.arange(n), 1.0, (0, 0, 0, 0))
        if self.mix == "mixup":
            seed = int(torch.randint(2**62, (), generator=generator))  # torch's Beta takes no generator
            lam = float(np.random.default_rng(seed).beta(self.mix_alpha, self.mix_alpha))
            return ViewDraw(crop, flip, torch.randperm(n, generator=generator), lam, (0, 0, 0, 0))
        from curate.learn.mixing import CutMix

        mixed = CutMix(alpha=self.mix_alpha).draw(n, size, generator)
        return ViewDraw(crop, flip, mixed.perm, 1.0 - mixed.ratio, mixed.box)

    def apply(self, images: torch.Tensor, draw: ViewDraw) -> torch.Tensor:
        """uint8 images (B, H, W, C) -> float pixels (B, C, H, W) in [0, 1], cropped, flipped and mixed."""
        cropper = self._cropper()
        if self.crop == "pad":
            from curate.learn.augment import CropFlip

            cut = cropper.apply(images, CropFlip(draw.crop, draw.flip))
        else:
            from curate.relabel.data import CropDraws

            cut = cropper.apply(images, CropDraws(draw.crop, draw.flip))
        pixels = cut.permute(0, 3, 1, 2).float().div_(255.0)
        perm = draw.perm.to(pixels.device)
        if self.mix == "mixup":
            return draw.lam * pixels + (1.0 - draw.lam) * pixels[perm]
        if self.mix == "cutmix":
            from curate.learn.mixing import CutMix, MixDraw

            size = tuple(pixels.shape[-2:])
            return CutMix(alpha=self.mix_alpha).paste(pixels, MixDraw(draw.perm, draw.box, size, (0.0, 0.0, 0.0, 0.0)))
        return pixels

    def mix_labels(self, labels: torch.Tensor, draw: ViewDraw, *, num_classes: int) -> torch.Tensor:
        """The hard labels (B,) of a batch as the soft rows (B, K) its mix calls for: ``lam y + (1 - lam) y[perm]``."""
        import torch.nn.functional as F

        onehot = F.one_hot(labels.long(), num_classes).float()
        return draw.lam * onehot + (1.0 - draw.lam) * onehot[draw.perm.to(onehot.device)]


@dataclass(frozen=True, kw_only=True)
class KDRecipe:
    """How a student trains on a set under the KD protocol (defaults: ``SRe2L/*small_dataset/relabel_cifar.py``)."""

    epochs: int = option(400, gt=0, help="student epochs (relabel_cifar.sh: 400; ImageNet train_FKD.sh: 300)")
    batch_size: int = option(128, gt=0, help="student batch size (relabel_cifar.sh: 128)")
    lr: float = option(1e-3, gt=0, help="AdamW learning rate, cosine schedule to 0")
    weight_decay: float = option(0.01, ge=0, help="AdamW weight decay")
    temperature: float = option(30.0, gt=0, help="T of KL(softmax(t/T) || softmax(s/T)) (relabel_cifar.py: 30; "
                                                 "ImageNet train_FKD.sh: 20)")
    views: Views = option(default_factory=Views, help="crops, flips and mix of every batch")
