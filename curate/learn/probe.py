"""Out-of-fold class probabilities from embeddings: a cross-validated linear or k-NN probe.

A label audit needs out-of-sample ``pred_probs (N, K)``. From a folder of images the usual route
(the one cleanlab recommends) is pretrained embeddings ``(N, D)`` plus a simple classifier,
cross-validated: a probe fits in seconds where cross-training a network takes minutes, and the
embedding brings what a few hundred labelled images cannot teach a network from scratch.

Row i is scored by a probe fitted on the other folds only (the stratified folds of
:func:`curate.learn.crossval.stratified_folds`), so its own, possibly wrong, label never votes
for it. A class of m >= 2 rows lands in m different folds when m <= K, so every fold's training
rows hold at least one of it; a class of one row has nothing out-of-sample to vouch for it, and
:func:`cross_val_probe` refuses it (a clear error) rather than shrinking the folds for every class.

Probes: ``linear``, multinomial logistic regression with an L2 penalty on standardized features
(full-batch L-BFGS from zero weights, so it needs no seed), and ``knn``, cosine k-NN whose k
neighbours vote with softmax(similarity / temperature) weights (the k-NN evaluation of DINO).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from curate.errors import UsageError
from curate.learn.crossval import stratified_folds
from curate.registry import did_you_mean

log = logging.getLogger(__name__)

_KNN_BLOCK = 1 << 24
"""Similarity entries computed at once by the k-NN probe (64 MiB of float32)."""


class Probe:
    """A classifier on embeddings: ``predict_proba(train_x, train_y, query_x, num_classes=K) -> (Q, K)``."""

    name: ClassVar[str] = ""

    def predict_proba(self, train_x: np.ndarray, train_y: np.ndarray, query_x: np.ndarray, *,
                      num_classes: int) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class LinearProbe(Probe):
    """Multinomial logistic regression on features standardized with the training rows' mean and std.

    Minimizes ``sum_i CE_i + l2 / 2 * ||W||^2`` (bias unpenalized; scikit-learn's ``C`` is
    ``1 / l2``). The default 100 was chosen on 932 CIFAR-10 *train* images with planted label noise
    (audit F1 0.94 over ResNet-20 features, against 0.78 at scikit-learn's C = 1, which fits the
    noise); ``max_iter`` bounds the L-BFGS iterations.
    """

    name: ClassVar[str] = "linear"
    l2: float = 100.0
    max_iter: int = 200

    def __post_init__(self) -> None:
        if not self.l2 > 0:
            raise UsageError(f"linear probe `l2` must be > 0, got {self.l2!r}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise UsageError(f"linear probe `max_iter` must be an integer >= 1, got {self.max_iter!r}")

    def predict_proba(self, train_x, train_y, query_x, *, num_classes):
        x = torch.as_tensor(np.asarray(train_x), dtype=torch.float32)
        mean, std = x.mean(0), x.std(0, unbiased=False)
        std = torch.where(std > 1e-8, std, torch.ones_like(std))  # constant features stay 0
        x = (x - mean) / std
        y = torch.as_tensor(np.asarray(train_y), dtype=torch.int64)
        weight = torch.zeros(x.shape[1], num_classes, requires_grad=True)
        bias = torch.zeros(num_classes, requires_grad=True)
        penalty = 0.5 * self.l2 / len(x)
        opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=self.max_iter, history_size=10,
                                tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(x @ weight + bias, y) + penalty * weight.square().sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        q = (torch.as_tensor(np.asarray(query_x), dtype=torch.float32) - mean) / std
        with torch.no_grad():
            return (q @ weight + bias).softmax(1).numpy()


@dataclass(frozen=True, kw_only=True)
class KnnProbe(Probe):
    """Cosine k-NN: the ``k`` most similar training rows vote with weights softmax(cos / ``temperature``)
    (a small temperature lets the closest neighbours dominate; a large one approaches a plain vote)."""

    name: ClassVar[str] = "knn"
    k: int = 20
    temperature: float = 0.07

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise UsageError(f"knn probe `k` must be an integer >= 1, got {self.k!r}")
        if not self.temperature > 0:
            raise UsageError(f"knn probe `temperature` must be > 0, got {self.temperature!r}")

    def predict_proba(self, train_x, train_y, query_x, *, num_classes):
        base = F.normalize(torch.as_tensor(np.asarray(train_x), dtype=torch.float32), dim=1)
        query = F.normalize(torch.as_tensor(np.asarray(query_x), dtype=torch.float32), dim=1)
        votes_for = torch.as_tensor(np.asarray(train_y), dtype=torch.int64)
        k = min(self.k, len(base))
        out = torch.zeros(len(query), num_classes)
        block = max(1, _KNN_BLOCK // max(len(base), 1))
        for lo in range(0, len(query), block):
            sims, rows = (query[lo:lo + block] @ base.T).topk(k, dim=1)
            out[lo:lo + block].scatter_add_(1, votes_for[rows], (sims / self.temperature).softmax(1))
        return out.numpy()


PROBES: dict[str, type[Probe]] = {"linear": LinearProbe, "knn": KnnProbe}


def create_probe(name: str, **options) -> Probe:
    """A probe by name (``linear`` or ``knn``) with its options (``l2=``, ``k=``, ``temperature=``...)."""
    if name not in PROBES:
        raise UsageError(f"unknown probe {name!r}{did_you_mean(name, list(PROBES))}; probes: {', '.join(PROBES)}")
    return PROBES[name](**options)


def cross_val_probe(
    embeddings: np.ndarray,
    labels: np.ndarray,
    probe: Probe,
    *,
    folds: int = 5,
    seed: int = 0,
    num_classes: int | None = None,
    fold_of: np.ndarray | None = None,
) -> np.ndarray:
    """Out-of-fold ``pred_probs`` (N, K) float32: row i from ``probe`` fitted on the rows of the other folds.

    ``embeddings`` (N, D) and integer ``labels`` (N,); K is ``num_classes`` (default
    ``labels.max() + 1``). Folds are stratified and drawn with ``seed``; ``fold_of`` (N,) gives
    each row's fold instead (then ``folds`` is ignored). A class present in a held-out fold but
    in no other fold (a class of one row) is an error.
    """
    x = np.asarray(embeddings)
    y = np.asarray(labels)
    k = _check_inputs(x, y, num_classes=num_classes)
    if fold_of is None:
        if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not 2 <= folds <= len(y):
            raise UsageError(f"`folds` must be an integer from 2 to the number of rows ({len(y)}), got {folds!r}")
        fold_of = stratified_folds(y, folds=int(folds), seed=seed)
    fold_of = np.asarray(fold_of)
    if fold_of.shape != y.shape or not np.issubdtype(fold_of.dtype, np.integer):
        raise UsageError(f"`fold_of` must be integer fold indices, one per row ({len(y)}), got dtype "
                         f"{fold_of.dtype} and shape {fold_of.shape}")
    out = np.empty((len(y), k), dtype=np.float32)
    for fold in np.unique(fold_of):
        held = fold_of == fold
        train = ~held
        _check_fold_classes(y, held, train, fold=int(fold))
        out[held] = probe.predict_proba(x[train], y[train], x[held], num_classes=k)
        log.debug("%s probe fold %d: fitted on %d rows, predicted %d", probe.name, fold, train.sum(), held.sum())
    return out


def _check_inputs(x: np.ndarray, y: np.ndarray, *, num_classes: int | None) -> int:
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
        raise UsageError(f"`embeddings` must be a float array (N, D), got dtype {x.dtype} and shape {x.shape}")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise UsageError(f"`labels` must be integer class indices (N,), got dtype {y.dtype} and shape {y.shape}")
    if len(x) != len(y):
        raise UsageError(f"`embeddings` has {len(x)} rows but `labels` has {len(y)}")
    if len(y) < 2:
        raise UsageError(f"a cross-validated probe needs at least 2 rows, got {len(y)}")
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        raise UsageError(f"`embeddings` row {bad[0]} holds NaN or inf ({len(bad)} rows do); re-embed those images")
    k = int(y.max()) + 1 if num_classes is None else num_classes
    if y.min() < 0 or y.max() >= k:
        raise UsageError(f"`labels` must lie in 0..{k - 1} (num_classes {k}), got {y.min()}..{y.max()}")
    return k


def _check_fold_classes(y: np.ndarray, held: np.ndarray, train: np.ndarray, *, fold: int) -> None:
    unseen = np.setdiff1d(y[held], y[train])
    if len(unseen):
        c = int(unseen[0])
        n = int((y == c).sum())
        rows = "row is" if n == 1 else "rows are"
        fix = ("give every class at least 2 rows (add images, or drop or merge that class)" if n == 1
               else "spread every class over at least 2 folds")
        raise UsageError(f"class {c}: its {n} {rows} in fold {fold} alone, so no other fold holds an example of it "
                         f"and no out-of-fold prediction can support its label; {fix}")
