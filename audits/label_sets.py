"""Label sets: the valid classes of each image, held as flat arrays so checks run vectorized.

N is the number of images. A *label set* is the list of valid classes of one image (``[]`` when
no class fits). ``predictions`` is (N,) top-1 classes, or (N, m) classes ranked by score.
Used by ReaL (:mod:`audits.real`) and the multi-label scores (:mod:`audits.multilabel`).
"""

from __future__ import annotations

from itertools import chain
from typing import Sequence

import numpy as np

LabelSets = Sequence[Sequence[int]]


def label_sets_csr(label_sets: LabelSets, n: int, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat labels, row of each, set size per row) with duplicates inside a set removed."""
    if len(label_sets) != n:
        raise ValueError(f"`{name}` has {len(label_sets)} label sets but `predictions` has {n} rows; "
                         "pass one set per image, in the same order")
    sizes = np.fromiter((len(s) for s in label_sets), dtype=np.int64, count=n)
    flat = np.fromiter(chain.from_iterable(label_sets), dtype=np.int64, count=int(sizes.sum()))
    rows = np.repeat(np.arange(n), sizes)
    order = np.lexsort((flat, rows))
    flat, rows = flat[order], rows[order]
    keep = np.ones(len(flat), dtype=bool)
    keep[1:] = (flat[1:] != flat[:-1]) | (rows[1:] != rows[:-1])
    flat, rows = flat[keep], rows[keep]
    return flat, rows, np.bincount(rows, minlength=n)


def as_predictions(predictions: np.ndarray, *, ranked: bool = False) -> np.ndarray:
    pred = np.asarray(predictions)
    if not np.issubdtype(pred.dtype, np.integer):
        raise TypeError(f"`predictions` must hold integer class ids, got dtype {pred.dtype}")
    if pred.ndim == 1 and not ranked:
        return pred[:, None]
    if pred.ndim != 2 or pred.shape[1] < 1:
        want = "(N, m) ranked classes" if ranked else "(N,) classes or (N, k) ranked classes"
        raise ValueError(f"`predictions` must be {want}, got shape {pred.shape}")
    return pred


def hits_per_row(pred2d: np.ndarray, flat: np.ndarray, rows: np.ndarray, ks: np.ndarray | None = None) -> np.ndarray:
    """Per row: how many set members appear among its predictions (the first ``ks[row]`` of them)."""
    match = flat[:, None] == pred2d[rows]
    if ks is not None:
        match &= np.arange(pred2d.shape[1])[None, :] < ks[rows][:, None]
    return np.bincount(rows, weights=match.any(axis=1), minlength=len(pred2d)).astype(np.int64)


def in_label_set(predictions: np.ndarray, label_sets: LabelSets) -> np.ndarray:
    """(N,) bool: whether the prediction (or any of the (N, k) top-k) is in the image's label set."""
    pred = as_predictions(predictions)
    flat, rows, _ = label_sets_csr(label_sets, len(pred), "label_sets")
    return hits_per_row(pred, flat, rows) > 0
