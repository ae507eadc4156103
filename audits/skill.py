"""Measured skill of a suggestion against human labels: grouped, stratified, repeated K-fold
cross-validation, agreement metrics (accuracy, Cohen's kappa, AUROC) and cluster-bootstrap 95%
intervals.

N labelled items, C classes. Items that share a ``group`` (e.g. one image annotated for two
models, with nearly always the same human label) always land in the same fold, so a model can
never be tested on an image it saw in training; bootstrap intervals resample whole groups for
the same reason. Folds are stratified by label so every fold sees the rare classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


def stratified_group_folds(labels: np.ndarray, groups: np.ndarray, *, folds: int,
                           rng: np.random.Generator) -> np.ndarray:
    """(N,) fold index in ``[0, folds)`` per item; all items of a group share a fold.

    A group is stratified by its most common label (ties: the smallest); within each label the
    groups are shuffled and dealt round-robin, continuing where the previous label stopped, so
    fold sizes differ by at most one group per label.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    if labels.shape != groups.shape or labels.ndim != 1:
        raise ValueError(f"`labels` and `groups` must be (N,) of equal length, got {labels.shape} and {groups.shape}")
    unique_groups, group_of = np.unique(groups, return_inverse=True)
    if folds < 2 or folds > len(unique_groups):
        raise ValueError(f"`folds` must be in [2, {len(unique_groups)}] (the number of groups), got {folds}")
    _, label_code = np.unique(labels, return_inverse=True)
    counts = np.zeros((len(unique_groups), label_code.max() + 1), dtype=np.int64)
    np.add.at(counts, (group_of, label_code), 1)
    group_label = counts.argmax(axis=1)
    group_fold = np.empty(len(unique_groups), dtype=np.int64)
    offset = 0
    for code in np.unique(group_label):
        members = rng.permutation(np.flatnonzero(group_label == code))
        group_fold[members] = (offset + np.arange(len(members))) % folds
        offset += len(members)
    return group_fold[group_of]


FitPredict = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def cross_val_proba(fit_predict: FitPredict, features: np.ndarray, labels: np.ndarray, *, groups: np.ndarray,
                    folds: int = 5, seeds: tuple[int, ...] = (0, 1, 2, 3, 4)) -> np.ndarray:
    """Out-of-fold predictions (S, N, C), one repetition per seed (a fresh fold split each).

    ``fit_predict(train_features, train_labels, test_features)`` fits on the training folds and
    returns (n_test, C) scores for the held-out fold (C is whatever it returns, fixed across calls).
    """
    features, labels = np.asarray(features), np.asarray(labels)
    out = None
    for s, seed in enumerate(seeds):
        fold = stratified_group_folds(labels, groups, folds=folds, rng=np.random.default_rng(seed))
        for f in range(folds):
            test = fold == f
            scores = np.asarray(fit_predict(features[~test], labels[~test], features[test]))
            if out is None:
                out = np.full((len(seeds), len(labels), scores.shape[1]), np.nan)
            out[s, test] = scores
    return out


# ---------------------------------------------------------------- metrics


def confusion(human: np.ndarray, suggested: np.ndarray, num_labels: int) -> np.ndarray:
    """(C, C) counts: ``[i, j]`` = items with human label ``i`` and suggestion ``j`` (integer codes)."""
    return np.bincount(np.asarray(human) * num_labels + np.asarray(suggested),
                       minlength=num_labels * num_labels).reshape(num_labels, num_labels)


def cohen_kappa(table: np.ndarray) -> float:
    """Cohen's kappa of a (C, C) confusion table: (observed - chance agreement) / (1 - chance);
    0 when either rater always gives one label (chance agreement 1)."""
    table = np.asarray(table, dtype=np.float64)
    total = table.sum()
    if total == 0:
        return float("nan")
    observed = np.trace(table) / total
    expected = float(table.sum(axis=1) @ table.sum(axis=0)) / total**2
    return 0.0 if expected >= 1 else float((observed - expected) / (1 - expected))


def auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a random positive > a random negative), ties count 1/2
    (the Mann-Whitney statistic on mid-ranks). NaN without both classes."""
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="stable")
    ordered = score[order]
    lo = np.searchsorted(ordered, ordered, side="left")
    hi = np.searchsorted(ordered, ordered, side="right")
    ranks = np.empty(len(score))
    ranks[order] = (lo + hi + 1) / 2  # mid-rank, 1-based
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass(frozen=True)
class Estimate:
    """A metric with its 95% interval."""

    value: float
    low: float
    high: float

    def excludes(self, chance: float) -> bool:
        """True when the whole interval lies above ``chance``."""
        return self.low > chance

    def format(self, spec: str = ".3f") -> str:
        return f"{self.value:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"

    def to_dict(self) -> dict[str, float]:
        return {"value": round(self.value, 4), "low": round(self.low, 4), "high": round(self.high, 4)}

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> Estimate:
        return cls(value=float(data["value"]), low=float(data["low"]), high=float(data["high"]))


def bootstrap_estimate(metric: Callable[[np.ndarray], float], groups: np.ndarray, *, resamples: int = 2000,
                       seed: int = 0) -> Estimate:
    """``metric(rows)`` on all N rows, with a 95% percentile interval over ``resamples`` cluster
    bootstrap resamples: whole groups drawn with replacement (``rows`` then repeats items)."""
    groups = np.asarray(groups)
    _, group_of = np.unique(groups, return_inverse=True)
    order = np.argsort(group_of, kind="stable")
    starts = np.searchsorted(group_of[order], np.arange(group_of.max() + 1))
    sizes = np.bincount(group_of)
    rng = np.random.default_rng(seed)
    values = np.empty(resamples)
    for b in range(resamples):
        drawn = rng.integers(0, len(sizes), size=len(sizes))
        rows = order[np.repeat(starts[drawn], sizes[drawn]) + _ranks_within(sizes[drawn])]
        values[b] = metric(rows)
    low, high = np.nanpercentile(values, [2.5, 97.5])
    return Estimate(value=float(metric(np.arange(len(groups)))), low=float(low), high=float(high))


def _ranks_within(sizes: np.ndarray) -> np.ndarray:
    """[0..s0-1, 0..s1-1, ...] for group sizes ``sizes``."""
    ends = np.cumsum(sizes)
    return np.arange(ends[-1]) - np.repeat(ends - sizes, sizes) if len(sizes) else np.zeros(0, dtype=np.int64)
