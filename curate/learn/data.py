"""What :func:`curate.learn.fit` trains on: the :class:`TrainData` protocol and in-memory arrays.

N is the number of samples and K the number of classes. A training set yields shuffled
batches of ``(images, targets)``: images uint8 ``(B, H, W, C)`` or ``(B, C, H, W)``, or float
``(B, C, H, W)`` already in the model's normalized input space (distilled images, which exist
only as floats), and targets either hard labels int64 ``(B,)`` or soft rows float ``(B, K)``.
``fit`` depends only on this protocol, so a dataset that pools soft targets per crop (ReLabel)
or yields distilled float images (``curate.condense``) plugs in beside :class:`ArrayData`.
"""

from __future__ import annotations

from typing import Iterator, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from curate.errors import UsageError
from curate.learn.augment import Augment


@runtime_checkable
class TrainData(Protocol):
    """A training set: its size, its number of classes, and shuffled batches drawn from ``generator``.

    ``batches`` yields ``ceil(len(self) / batch_size)`` batches per epoch (fit's lr
    schedule counts on it) and takes every random draw from ``generator``.
    """

    @property
    def num_classes(self) -> int: ...

    def __len__(self) -> int: ...

    def batches(
        self, *, batch_size: int, generator: torch.Generator, epoch: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


def as_tensor(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A tensor sharing memory with ``array`` where torch allows it (read-only arrays are copied)."""
    if isinstance(array, torch.Tensor):
        return array
    array = np.ascontiguousarray(array)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


class ArrayData:
    """Images uint8 ``(N, H, W, 3)`` with hard labels ``(N,)`` or soft targets ``(N, K)``, kept in memory.

    ``num_classes`` defaults to K of soft targets, or ``labels.max() + 1`` for hard
    labels; pass it when some classes may be absent from this subset.
    """

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        targets: np.ndarray | torch.Tensor,
        *,
        augment: Augment | None = None,
        num_classes: int | None = None,
    ):
        self.images = as_tensor(images)
        self.targets = as_tensor(targets)
        self.augment = augment
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[-1] not in (1, 3):
            raise UsageError(f"`images` must be uint8 channels-last (N, H, W, C) with C 1 or 3, got "
                             f"{self.images.dtype} of shape {tuple(self.images.shape)}")
        if len(self.targets) != len(self.images):
            raise UsageError(f"`targets` has {len(self.targets)} rows but `images` has {len(self.images)}")
        if len(self.images) == 0:
            raise UsageError("`images` is empty; a training set needs at least one sample")
        self.num_classes = _check_targets(self.targets, num_classes)

    def __len__(self) -> int:
        return len(self.images)

    def batches(
        self, *, batch_size: int, generator: torch.Generator, epoch: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self), generator=generator)
        for chunk in order.split(batch_size):
            images = self.images[chunk]
            if self.augment is not None:
                images = self.augment(images, generator)
            yield images, self.targets[chunk]


def _check_targets(targets: torch.Tensor, num_classes: int | None) -> int:
    """Validate hard labels or soft rows; returns K."""
    if targets.ndim == 1:
        if targets.dtype.is_floating_point or targets.dtype == torch.bool:
            raise UsageError(f"hard `targets` (N,) must be integer class indices, got dtype {targets.dtype}")
        low, high = int(targets.min()), int(targets.max())
        k = high + 1 if num_classes is None else num_classes
        if low < 0 or high >= k:
            raise UsageError(f"labels must lie in 0..{k - 1} (num_classes={k}), got values from {low} to {high}")
        return k
    if targets.ndim == 2:
        if not targets.dtype.is_floating_point:
            raise UsageError(f"soft `targets` (N, K) must be floating point, got dtype {targets.dtype}")
        k = targets.shape[1]
        if num_classes is not None and num_classes != k:
            raise UsageError(f"soft `targets` have {k} columns but num_classes is {num_classes}")
        if bool((targets < 0).any()):
            row = int((targets < 0).any(1).nonzero()[0])
            raise UsageError(f"soft `targets` must be non-negative, but row {row} has a negative entry")
        sums = targets.sum(1, dtype=torch.float64)
        worst = int((sums - 1).abs().argmax())
        if abs(float(sums[worst]) - 1) > 1e-3:
            raise UsageError(f"soft `targets` rows must sum to 1, but row {worst} sums to {float(sums[worst]):.4g}")
        return k
    raise UsageError(f"`targets` must be labels (N,) or soft targets (N, K), got shape {tuple(targets.shape)}")


def model_input(
    model: nn.Module, images: np.ndarray | torch.Tensor, *, device: str, channels_last: bool = False
) -> torch.Tensor:
    """uint8 images -> the model's normalized float NCHW input on ``device``.

    The uint8 batch crosses to the device and is normalized there: a quarter of the bytes of float.
    A float batch is taken as already normalized NCHW model input and only moved to ``device``.
    """
    x = as_tensor(images)
    if x.dtype.is_floating_point:
        channels = model.preprocess.channels
        if x.ndim != 4 or x.shape[1] != channels:
            raise UsageError(f"float `images` must be normalized model input (B, {channels}, H, W), "
                             f"got shape {tuple(x.shape)}")
        x = x.to(device, non_blocking=True)
    else:
        x = model.preprocess(x.to(device, non_blocking=True))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
