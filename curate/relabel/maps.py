"""Label maps: dense class-score maps, their compact top-k form, and per-image multi-labels.

N images, K classes, a map of h x w locations. A dense map is ``(N, K, h, w)`` raw scores
(logits, before softmax). Its top-k form keeps the k largest scores per location, in
descending order: ``scores (N, k, h, w)`` and their class indices ``classes (N, k, h, w)``
(stored as float16 and uint16). Densifying puts ``fill_value`` (0 by default, as the
official ReLabel loader) at every class that was not kept: a logit, not -inf, so with
many classes and small top scores the tail soaks up real probability mass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

MAX_CLASSES = np.iinfo(np.uint16).max + 1  # class indices are stored as uint16


@dataclass(frozen=True)
class TopKMaps:
    """Top-k label maps: ``scores`` (N, k, h, w) descending along k, ``classes`` (N, k, h, w)."""

    scores: torch.Tensor
    classes: torch.Tensor

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(k, h, w)."""
        return tuple(self.scores.shape[1:])

    def index(self, rows: torch.Tensor | np.ndarray | slice) -> "TopKMaps":
        return TopKMaps(self.scores[rows], self.classes[rows])


def topk_maps(maps: torch.Tensor, k: int) -> TopKMaps:
    """The k largest scores of each location of dense ``maps`` (N, K, h, w), descending.

    Returns float16 scores and int64 classes (``k`` is capped at K).
    """
    if maps.ndim != 4:
        raise ValueError(f"`maps` must be (N, K, h, w), got shape {tuple(maps.shape)}")
    if k < 1:
        raise ValueError(f"`k` must be >= 1, got {k}")
    if maps.shape[1] > MAX_CLASSES:
        raise ValueError(f"`maps` has {maps.shape[1]} classes; class indices are stored as uint16 "
                         f"(at most {MAX_CLASSES})")
    values, classes = maps.float().topk(min(k, maps.shape[1]), dim=1, largest=True, sorted=True)
    return TopKMaps(values.half(), classes)


def densify(maps: TopKMaps, *, num_classes: int, fill_value: float = 0.0) -> torch.Tensor:
    """Dense float32 maps (N, K, h, w): stored scores scattered by class, ``fill_value`` elsewhere."""
    n, _, h, w = maps.scores.shape
    dense = torch.full((n, num_classes, h, w), float(fill_value), dtype=torch.float32, device=maps.scores.device)
    return dense.scatter_(1, maps.classes.long(), maps.scores.float())


def area_scores(maps: torch.Tensor) -> torch.Tensor:
    """Per-class share of the image (N, K): the spatial mean of each location's softmax.

    This is the pooled score of the global multi-labels: a class that wins a quarter of the
    locations outright scores 0.25. It is computed from the full dense map (before top-k).
    """
    return maps.float().softmax(dim=1).mean(dim=(2, 3))


def multi_labels(scores: np.ndarray | torch.Tensor, *, threshold: float) -> np.ndarray:
    """Boolean (N, K): the classes whose pooled score reaches ``threshold``."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"`threshold` must lie in (0, 1], got {threshold!r}")
    scores = scores.cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    return scores >= threshold
