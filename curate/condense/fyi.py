"""FYI ("Flip Your Images for Dataset Distillation", ECCV 2024; ``cvlab-yonsei/FYI`` ``BatchAug``).

A distillation plug-in (registered in ``DISTILL_PLUGINS``): it maps ``(images (B, C, H, W),
labels (B,)) -> (images, labels)`` and is applied by :meth:`curate.condense.base.Distiller.synthetic`
only, never at evaluation. It appends the horizontally mirrored copy of the batch with the labels repeated,
so every synthetic pixel receives its own gradient plus the mirrored gradient of its
flipped copy. Nothing is split into halves and the stored set stays un-flipped.
"""

from __future__ import annotations

import torch


def flip_expand(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cat([x, flip_W(x)]), cat([y, y]))``: 2B images, the second half mirrored along the width."""
    return torch.cat([images, images.flip(-1)]), torch.cat([labels, labels])


class FlipYourImages:
    """FYI: both orientations of every synthetic image go through the network at every step."""

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return flip_expand(images, labels)
