"""The CIFAR ResNet of He et al. 2016 (section 4.2) with option-A shortcuts.

Layer names match akamaster/pytorch_resnet_cifar10 (without DataParallel's
``module.``), so its checkpoints load strictly: ``conv1, bn1, layer{1,2,3}.{i}.{conv,bn}{1,2},
linear``. Shortcuts that change shape are parameter-free: subsample by 2 and zero-pad
channels. ResNet-20 ships with the akamaster CIFAR-10 weights (BSD-2-Clause, see
``curate/data/demo/LICENSE-resnet-akamaster.txt``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from curate.models.base import CurateModel
from curate.models.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DEMO_DIR = Path(__file__).resolve().parents[1] / "data" / "demo"


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        # option A: channels zero-padded by planes // 4 on each side (16 -> 32 -> 64)
        self.pad = planes // 4 if stride != 1 or in_planes != planes else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad)) if self.pad else x
        return F.relu(out + shortcut)


class CifarResNet(CurateModel):
    """ResNet-(6n+2) for 32x32 inputs; ``forward_features`` is the layer3 map (N, 64, 8, 8)."""

    def __init__(self, *, num_classes: int, blocks_per_stage: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for stage, (planes, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            blocks = [BasicBlock(in_planes if i == 0 else planes, planes, stride if i == 0 else 1)
                      for i in range(blocks_per_stage)]
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
            in_planes = planes
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():  # the source's _weights_init
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
        self.num_classes = num_classes
        self.num_features = 64
        self.class_names = list(CIFAR10_CLASSES) if num_classes == len(CIFAR10_CLASSES) else None
        self.cfg = {}
        self.preprocess = Preprocess(mean=IMAGENET_MEAN, std=IMAGENET_STD, size=(32, 32))

    @property
    def classifier_head(self) -> nn.Linear:
        return self.linear

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(out)))

    def pool_features(self, features: torch.Tensor) -> torch.Tensor:
        return features.mean(dim=(2, 3))


class ResNet20Cifar(CifarResNet):
    """ResNet-20 (269,722 parameters); default weights: akamaster CIFAR-10, 91.78% test accuracy."""

    default_weights = DEMO_DIR / "resnet20.safetensors"

    def __init__(self, *, num_classes: int):
        super().__init__(num_classes=num_classes, blocks_per_stage=3)


class ResNet56Cifar(CifarResNet):
    """ResNet-56 (853,018 parameters); no bundled weights: load akamaster's file with ``weights=path``."""

    def __init__(self, *, num_classes: int):
        super().__init__(num_classes=num_classes, blocks_per_stage=9)
