"""Outliers from a k-NN graph, and class-balance statistics.

N is the number of examples and k the number of neighbours per example. ``distances`` (N, k) are
the distances to each example's nearest *other* examples (drop the self-match before calling),
e.g. from the index's k-NN graph. For cosine similarities ``s`` of normalised embeddings pass
``1 - s``. Pure NumPy: no index is built here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REDUCTIONS = ("mean", "kth")
MODIFIED_Z = 0.6745  # Iglewicz & Hoaglin: makes the MAD of a normal sample comparable to its std


def knn_outlier_scores(distances: np.ndarray, *, k: int | None = None, reduce: str = "mean") -> np.ndarray:
    """(N,) outlier score: higher = further from its neighbours = more isolated.

    ``reduce="mean"``: mean distance to the first ``k`` neighbours (the score cleanlab's k-NN
    outlier detector transforms); ``"kth"``: distance to the k-th nearest. ``k`` defaults to all
    columns. Columns need not be sorted.
    """
    d = np.asarray(distances)
    if d.ndim != 2 or d.shape[1] < 1:
        raise ValueError(f"`distances` must be (N, k) with k >= 1, got shape {d.shape}")
    if reduce not in REDUCTIONS:
        raise ValueError(f"`reduce` must be one of {REDUCTIONS}, got {reduce!r}")
    k = d.shape[1] if k is None else k
    if not 1 <= k <= d.shape[1]:
        raise ValueError(f"`k` must be in [1, {d.shape[1]}] (the columns of `distances`), got {k}")
    if not np.isfinite(d).all():
        row = int(np.flatnonzero(~np.isfinite(d).all(axis=1))[0])
        raise ValueError(f"`distances` must be finite; row {row} is not (a missing neighbour? pass fewer columns)")
    if (d < 0).any():
        raise ValueError(f"`distances` must be >= 0, got minimum {float(d.min()):.4g}")
    nearest = np.sort(d, axis=1)[:, :k]
    return nearest.mean(axis=1) if reduce == "mean" else nearest[:, -1]


def robust_zscores(scores: np.ndarray) -> np.ndarray:
    """Modified z-scores ``0.6745 (x - median) / MAD``: scale-free, and not pulled by the outliers themselves.

    A constant input (MAD 0) gives 0 for values at the median and +-inf elsewhere.
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"`scores` must be a non-empty (N,) array, got shape {x.shape}")
    med = np.median(x)
    mad = np.median(np.abs(x - med))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = MODIFIED_Z * (x - med) / mad
    return np.where(x == med, 0.0, z)


def find_outliers(distances: np.ndarray, *, k: int | None = None, reduce: str = "mean",
                  z_threshold: float = 3.5) -> np.ndarray:
    """(N,) bool: examples whose k-NN score has a modified z-score above ``z_threshold``
    (3.5, Iglewicz & Hoaglin's recommendation)."""
    if z_threshold <= 0:
        raise ValueError(f"`z_threshold` must be > 0, got {z_threshold}")
    return robust_zscores(knn_outlier_scores(distances, k=k, reduce=reduce)) > z_threshold


@dataclass(frozen=True, eq=False)
class ClassBalance:
    """Class counts and summaries.

    ``imbalance_ratio``: largest / smallest non-zero count; ``normalized_entropy``: entropy of the
    class frequencies / log K (1 = perfectly balanced); ``minority``: classes with fewer than
    ``minority_fraction`` of the mean count; ``empty``: classes without examples.
    """

    counts: np.ndarray
    fractions: np.ndarray
    imbalance_ratio: float
    normalized_entropy: float
    minority: np.ndarray
    empty: np.ndarray


def class_balance(labels: np.ndarray, *, num_classes: int | None = None,
                  minority_fraction: float = 0.5) -> ClassBalance:
    """Counts per class of ``labels`` (N,) and how far they are from balanced."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`labels` must be a non-empty (N,) integer array, got shape {labels.shape}, "
                         f"dtype {labels.dtype}")
    k = int(labels.max()) + 1 if num_classes is None else num_classes
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"`labels` must lie in [0, {k}), got range [{labels.min()}, {labels.max()}]")
    if not 0 < minority_fraction <= 1:
        raise ValueError(f"`minority_fraction` must be in (0, 1], got {minority_fraction}")
    counts = np.bincount(labels, minlength=k)
    fractions = counts / counts.sum()
    nonzero = fractions[fractions > 0]
    entropy = float(-(nonzero * np.log(nonzero)).sum() / np.log(k)) if k > 1 else 1.0
    present = counts[counts > 0]
    return ClassBalance(counts=counts, fractions=fractions, imbalance_ratio=float(present.max() / present.min()),
                        normalized_entropy=entropy,
                        minority=np.flatnonzero(counts < minority_fraction * counts.mean()),
                        empty=np.flatnonzero(counts == 0))
