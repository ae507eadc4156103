"""Embeddings ``(N, D)`` of a model (its pooled ``features``), as a batch function any executor runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from curate.execute.local import array_batches, map_batches, run_batches
from curate.learn.batchfn import ModelBatchFn, ModelSource

if TYPE_CHECKING:  # pragma: no cover
    import datasets


class EmbedFn(ModelBatchFn):
    """``{"image": uint8 (B, H, W, 3)}`` -> ``{"embeddings": float32 (B, D)}``; unit rows when ``normalize``.

    Normalized rows make inner product equal cosine similarity, as the cosine index expects.
    """

    def __init__(self, model: ModelSource, *, device: str = "auto", normalize: bool = False,
                 channels_last: bool | None = None):
        super().__init__(model, device=device, channels_last=channels_last)
        self.normalize = normalize

    @torch.inference_mode()
    def __call__(self, batch: dict) -> dict[str, np.ndarray]:
        embeddings = self.model.features(self.inputs(batch)).float()
        if self.normalize:
            embeddings = F.normalize(embeddings, dim=1)
        return {"embeddings": embeddings.cpu().numpy()}


def embed(
    model: nn.Module,
    table: "datasets.Dataset",
    *,
    indices: Sequence[int] | np.ndarray | None = None,
    batch_size: int = 256,
    normalize: bool = False,
    device: str = "auto",
    progress: bool = True,
    executor: Callable[..., dict[str, np.ndarray]] | None = None,
) -> np.ndarray:
    """``embeddings (N, D) of the table's rows ``indices`` (all rows by default), in that order.

    Images are decoded at the model's input size. The model is left in eval mode on ``device``.
    ``executor`` runs the batch function (signature of :func:`curate.execute.local.run_batches`, the
    default; see :data:`curate.execute.EXECUTORS`).
    """
    fn = EmbedFn(model, device=device, normalize=normalize)
    out = (executor or run_batches)(fn, table, batch_size=batch_size, indices=indices, size=model.preprocess.size,
                                    progress=progress)
    return out["embeddings"]


def embed_images(model: nn.Module, images: np.ndarray, *, batch_size: int = 256, normalize: bool = False,
                 device: str = "auto") -> np.ndarray:
    """``embeddings`` (N, D) of in-memory uint8 images (N, H, W, 3), already at the model's input size."""
    fn = EmbedFn(model, device=device, normalize=normalize)
    return map_batches(fn, array_batches(images, batch_size=batch_size), rows=len(images))["embeddings"]
