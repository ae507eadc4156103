"""Model input preprocessing in plain torch: uint8 images -> normalised float32 NCHW.

Every model carries one :class:`Preprocess`, so predict, embed and train feed it the
same way, with no PIL image processors at inference time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


def _as_tensor(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        # torch cannot share read-only (e.g. memory-mapped) or negatively strided arrays
        if not images.flags.writeable:
            images = images.copy()
        return torch.from_numpy(np.ascontiguousarray(images))
    return images


@dataclass(frozen=True)
class Preprocess:
    """``x / 255``, bilinear antialiased resize to ``size`` (only when needed), ``(x - mean) / std``.

    ``mean`` and ``std`` have one entry per channel (3 for RGB); ``size`` is (height, width).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: tuple[int, int]
    channels_last: bool = False

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std):
            raise ValueError(f"`mean` has {len(self.mean)} channels but `std` has {len(self.std)}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"`std` must be > 0 in every channel, got {self.std}")
        if len(self.size) != 2 or any(int(s) < 1 for s in self.size):
            raise ValueError(f"`size` must be (height, width) with both >= 1, got {self.size}")

    @property
    def channels(self) -> int:
        return len(self.mean)

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "size": list(self.size),
                "channels_last": self.channels_last}

    def __call__(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 images (N, H, W, C) or (N, C, H, W) -> float32 (N, C, *size) on the input's device.

        The layout is read from where the channel axis is: NHWC when the last axis has
        ``channels`` entries, NCHW otherwise. Grayscale (N, H, W) is accepted for 1-channel models.
        """
        x = _as_tensor(images)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"`images` must be a uint8 torch.Tensor or numpy array, got {type(images).__name__}")
        if x.dtype != torch.uint8:
            raise TypeError(f"`images` must have dtype uint8 (values 0..255), got {x.dtype}")
        c = self.channels
        if x.ndim == 3 and c == 1:
            x = x.unsqueeze(1)
        if x.ndim != 4:
            raise ValueError(f"`images` must be a batch (N, H, W, {c}) or (N, {c}, H, W), got shape {tuple(x.shape)}")
        if x.shape[-1] == c:
            x = x.permute(0, 3, 1, 2)
        elif x.shape[1] != c:
            raise ValueError(f"`images` must have {c} channels on the last or second axis, got shape {tuple(x.shape)}")
        out = x.float().div_(255.0)
        if tuple(out.shape[-2:]) != tuple(self.size):
            out = F.interpolate(out, size=tuple(self.size), mode="bilinear", antialias=True, align_corners=False)
        mean = torch.tensor(self.mean, dtype=out.dtype, device=out.device).view(1, c, 1, 1)
        std = torch.tensor(self.std, dtype=out.dtype, device=out.device).view(1, c, 1, 1)
        out = (out - mean) / std
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return out.contiguous(memory_format=fmt)
