"""The surface every curate model shares, so steps can swap architectures freely.

A model splits into ``forward_features`` (a spatial map (N, C, h, w), or tokens
(N, L, D) for ViTs), ``pool_features`` (the map -> the embedding (N, num_features))
and a linear classifier. ``forward`` and ``features`` are defined here from those
pieces, so ``forward(x) == forward_head(forward_features(x))`` holds by construction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from curate.models.preprocess import Preprocess


class CurateModel(nn.Module):
    """Base class of registered models.

    Attributes: ``name`` (registry name, set by ``create_model``), ``num_classes`` (K),
    ``num_features`` (D of ``features``), ``class_names`` (K names or None), ``cfg``
    (the model options that rebuild it, saved by ``save_model``) and ``preprocess``.
    A registered class may name bundled ``default_weights``; ``create_model`` loads
    them for ``weights="default"``. ``head_trained`` says whether the classifier head holds
    trained weights for ``class_names`` (``create_model`` sets it): a backbone with a new head
    predicts noise, so steps that read the head's probabilities refuse one that is not.
    """

    default_weights: ClassVar[Path | None] = None
    head_trained: bool = False

    name: str
    num_classes: int
    num_features: int
    class_names: list[str] | None
    cfg: dict[str, Any]
    preprocess: Preprocess

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pool_features(self, features: torch.Tensor) -> torch.Tensor:
        """The output of ``forward_features`` -> the embedding (N, num_features) the head reads."""
        raise NotImplementedError

    @property
    def classifier_head(self) -> nn.Linear:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits (N, K) from the output of ``forward_features``."""
        return self.classifier_head(self.pool_features(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled embedding (N, num_features): the input of the classifier."""
        return self.pool_features(self.forward_features(x))
