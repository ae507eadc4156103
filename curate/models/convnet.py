"""ConvNet-D of the dataset-condensation papers (DC, DSA, DM, MTT...).

Follows ``ConvNet`` of VICO-UoE/DatasetCondensation ``networks.py``: ``depth``
blocks of Conv3x3 -> norm -> ReLU -> AvgPool2d(2), then one linear layer on the
flattened map. "instancenorm" is ``GroupNorm(width, width)`` as there, and a
1-channel input gets padding 3 in the first conv (28x28 MNIST -> 32x32 maps), also as there.
Distilled sets are evaluated on this exact network, so the details matter.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from curate.errors import UsageError
from curate.models.base import CurateModel
from curate.models.preprocess import CIFAR10_MEAN, CIFAR10_STD, Preprocess

Norm = Literal["instancenorm", "batchnorm", "none"]
NORMS = ("instancenorm", "batchnorm", "none")
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


def _norm_layer(norm: str, width: int) -> list[nn.Module]:
    if norm == "instancenorm":
        return [nn.GroupNorm(width, width, affine=True)]
    if norm == "batchnorm":
        return [nn.BatchNorm2d(width)]
    return []


class ConvNet(CurateModel):
    """``features()`` is the flattened final map (width * h * w), as distribution matching uses."""

    def __init__(self, *, num_classes: int, width: int = 128, depth: int = 3, norm: Norm = "instancenorm",
                 im_size: int = 32, channels: int = 3):
        super().__init__()
        if norm not in NORMS:
            raise UsageError(f"convnet `norm` must be one of {', '.join(NORMS)}, got {norm!r}")
        for field, value in (("width", width), ("depth", depth), ("im_size", im_size), ("channels", channels)):
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"convnet `{field}` must be an integer >= 1, got {value!r}")
        if channels not in (1, 3):
            raise UsageError(f"convnet `channels` must be 1 (grayscale) or 3 (RGB), got {channels}")
        side = im_size + 4 if channels == 1 else im_size  # first conv pads 1-channel inputs by 3
        if side >> depth < 1:
            raise UsageError(f"convnet `depth` {depth} halves a {im_size}px input below 1 pixel; use depth <= "
                             f"{side.bit_length() - 1}")
        layers: list[nn.Module] = []
        in_ch = channels
        for d in range(depth):
            pad = 3 if channels == 1 and d == 0 else 1
            layers += [nn.Conv2d(in_ch, width, kernel_size=3, padding=pad), *_norm_layer(norm, width),
                       nn.ReLU(inplace=True), nn.AvgPool2d(kernel_size=2, stride=2)]
            in_ch = width
        self.body = nn.Sequential(*layers)
        self.num_features = width * (side >> depth) ** 2
        self.classifier = nn.Linear(self.num_features, num_classes)
        self.num_classes = num_classes
        self.class_names = None
        self.cfg = {"width": width, "depth": depth, "norm": norm, "im_size": im_size, "channels": channels}
        mean, std = (CIFAR10_MEAN, CIFAR10_STD) if channels == 3 else (MNIST_MEAN, MNIST_STD)
        self.preprocess = Preprocess(mean=mean, std=std, size=(im_size, im_size))

    @property
    def classifier_head(self) -> nn.Linear:
        return self.classifier

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def pool_features(self, features: torch.Tensor) -> torch.Tensor:
        return features.flatten(1)

