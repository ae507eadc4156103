"""Synthetic float images as a :class:`curate.learn.TrainData`, so ``fit`` trains on them directly.

Used by the evaluation protocol (fresh networks trained on the distilled set, with DSA
when the method's protocol calls for it) and by the inner loop of gradient matching
(where ``transform`` is the distiller's plug-in hook, e.g. FYI's flipped copies).
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from curate.condense.dsa import DSA
from curate.errors import UsageError

Transform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class SyntheticData:
    """Float images (N, C, H, W) in model-input space with labels (N,); each batch optionally
    passes ``transform`` (a plug-in hook) and then per-image ``augment`` (DSA)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, num_classes: int,
                 augment: DSA | None = None, transform: Transform | None = None):
        if images.ndim != 4 or not images.dtype.is_floating_point:
            raise UsageError(f"`images` must be float (N, C, H, W), got {images.dtype} of shape {tuple(images.shape)}")
        if labels.shape != (len(images),):
            raise UsageError(f"`labels` must have shape ({len(images)},), got {tuple(labels.shape)}")
        if len(images) == 0:
            raise UsageError("the synthetic set is empty")
        self.images = images.detach()
        self.labels = labels.long()
        self.num_classes = num_classes
        self.augment = augment
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, *, batch_size: int, generator: torch.Generator,
                epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self), generator=generator)
        for chunk in order.split(batch_size):
            x, y = self.images[chunk.to(self.images.device)], self.labels[chunk.to(self.labels.device)]
            if self.transform is not None:
                x, y = self.transform(x, y)
            if self.augment is not None:
                x = self.augment(x, generator)
            yield x, y.cpu()
