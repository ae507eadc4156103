"""Batch mixing (CutMix, ResizeMix, ...): the hook :func:`curate.learn.fit` calls on every batch.

A mixer receives the preprocessed batch (float NCHW, on the training device) and its
targets as soft rows (float ``(B, K)``; fit one-hot encodes hard labels first), and
returns the mixed batch and mixed targets. It draws every random number from ``generator``
(fit's one CPU generator), so a mixed run stays repeatable. A mixing method registers a
class in :data:`MIXERS` whose keyword arguments are its options; :func:`create_mixer`
builds one by name.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch

from curate.registry import Registry


class Mixer(Protocol):
    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


MIXERS: Registry[Callable[..., Mixer]] = Registry("mixer")


@MIXERS.register("none")
class NoMix:
    """The identity: lets a config say ``mix: none`` explicitly."""

    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return images, targets


def create_mixer(name: str, **options: Any) -> Mixer:
    """The registered mixer ``name`` built with ``options``."""
    return MIXERS.get(name)(**options)
