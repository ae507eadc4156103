"""Class probabilities ``pred_probs (N, K)`` of a model, as a batch function any executor runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
from torch import nn

from curate.execute.local import array_batches, map_batches, run_batches
from curate.learn.batchfn import ModelBatchFn

if TYPE_CHECKING:  # pragma: no cover
    import datasets


class PredictFn(ModelBatchFn):
    """``{"image": uint8 (B, H, W, 3)}`` -> ``{"pred_probs": float32 (B, K)}``, the softmax of the logits."""

    @torch.inference_mode()
    def __call__(self, batch: dict) -> dict[str, np.ndarray]:
        logits = self.model(self.inputs(batch))
        return {"pred_probs": logits.float().softmax(1).cpu().numpy()}


def predict(
    model: nn.Module,
    table: "datasets.Dataset",
    *,
    indices: Sequence[int] | np.ndarray | None = None,
    batch_size: int = 256,
    device: str = "auto",
    progress: bool = True,
    executor: Callable[..., dict[str, np.ndarray]] | None = None,
) -> np.ndarray:
    """``pred_probs (N, K) of the table's rows ``indices`` (all rows by default), in that order.

    Images are decoded at the model's input size. The model is left in eval mode on ``device``.
    ``executor`` runs the batch function (signature of :func:`curate.execute.local.run_batches`, the
    default; see :data:`curate.execute.EXECUTORS`).
    """
    fn = PredictFn(model, device=device)
    out = (executor or run_batches)(fn, table, batch_size=batch_size, indices=indices, size=model.preprocess.size,
                                    progress=progress)
    return out["pred_probs"]


def predict_images(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 256,
    device: str = "auto",
    channels_last: bool | None = None,
) -> np.ndarray:
    """``pred_probs`` (N, K) of in-memory uint8 images (N, H, W, 3): held-out folds, per-epoch evaluation."""
    fn = PredictFn(model, device=device, channels_last=channels_last)
    return map_batches(fn, array_batches(images, batch_size=batch_size), rows=len(images))["pred_probs"]
