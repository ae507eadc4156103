"""Out-of-fold class probabilities by K-fold cross-validation.

Label-issue audits need ``pred_probs (N, K)`` where no sample was scored by a model that
trained on it (a model that memorized a wrong label would otherwise vouch for it). The
data is split into stratified folds; fold f's model trains on every other fold and
predicts fold f.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from curate.errors import UsageError
from curate.learn.data import ArrayData
from curate.learn.fit import fit
from curate.learn.predict import predict_images

log = logging.getLogger(__name__)

RESERVED_FIT_KWARGS = ("seed", "device", "progress", "eval_data")


def stratified_folds(labels: np.ndarray, *, folds: int, seed: int = 0) -> np.ndarray:
    """Fold index (N,) in 0..folds-1: each class spread evenly over folds, fold sizes within one.

    Samples are ordered by (label, random key) and dealt to folds round-robin.
    """
    keys = np.random.default_rng(seed).random(len(labels))
    order = np.lexsort((keys, labels))
    fold_of = np.empty(len(labels), dtype=np.int64)
    fold_of[order] = np.arange(len(labels)) % folds
    return fold_of


def cross_val_pred_probs(
    make_model: Callable[[int], nn.Module],
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray,
    *,
    folds: int,
    fit_kwargs: dict[str, Any],
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> np.ndarray:
    """Out-of-fold ``pred_probs`` (N, K): row i comes from the model that did not train on sample i.

    ``make_model(fold)`` returns a fresh model for each fold; ``fit_kwargs`` go to
    :func:`curate.learn.fit` (``epochs``, ``lr``, ...), except ``augment`` (an :class:`Augment`
    or None), which goes to each fold's :class:`ArrayData`. Folds and each fold's training
    seed derive from ``seed``.
    """
    labels = np.asarray(labels)
    _check_inputs(images, labels, folds=folds, fit_kwargs=fit_kwargs)
    fit_kwargs = dict(fit_kwargs)
    augment = fit_kwargs.pop("augment", None)
    fold_of = stratified_folds(labels, folds=folds, seed=seed)
    pred_probs: np.ndarray | None = None
    for fold in range(folds):
        held_out = np.flatnonzero(fold_of == fold)
        train = np.flatnonzero(fold_of != fold)
        model = make_model(fold)
        data = ArrayData(images[train], labels[train], augment=augment, num_classes=model.num_classes)
        fold_seed = int(np.random.SeedSequence([seed, fold]).generate_state(1)[0])
        log.info("fold %d/%d: training on %d samples, predicting %d", fold + 1, folds, len(train), len(held_out))
        fit(model, data, **fit_kwargs, seed=fold_seed, device=device, progress=progress)
        probs = predict_images(model, images[held_out], device=device)
        if pred_probs is None:
            pred_probs = np.empty((len(labels), probs.shape[1]), dtype=probs.dtype)
        pred_probs[held_out] = probs
    return pred_probs


def _check_inputs(images: Any, labels: np.ndarray, *, folds: int, fit_kwargs: dict[str, Any]) -> None:
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UsageError(f"`labels` must be integer class indices (N,), got dtype {labels.dtype} and shape "
                         f"{labels.shape}")
    if len(images) != len(labels):
        raise UsageError(f"`images` has {len(images)} rows but `labels` has {len(labels)}")
    if len(labels) == 0 or labels.min() < 0:
        raise UsageError("`labels` must be non-empty and >= 0")
    counts = np.bincount(labels)
    present = np.flatnonzero(counts)
    rarest = present[counts[present].argmin()]
    if not isinstance(folds, int) or folds < 2 or folds > counts[rarest]:
        raise UsageError(f"`folds` must be an integer from 2 to the smallest class count ({counts[rarest]}, class "
                         f"{rarest}) so every fold sees every class, got {folds!r}")
    reserved = sorted(set(fit_kwargs) & set(RESERVED_FIT_KWARGS))
    if reserved:
        raise UsageError(f"`fit_kwargs` may not set {', '.join(reserved)}: cross-validation sets them per fold")
