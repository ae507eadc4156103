"""Multi-label views of single-label benchmarks: "dough/bagel" multi-label accuracy, ImageNet-M
counts, variable top-k, and the single- vs multi-label comparison of "Re-assessing ImageNet".
ReaL accuracy is in :mod:`audits.real`; label-set plumbing in :mod:`audits.label_sets`.

N is the number of images. A *label set* is the list of valid classes of one image (``[]`` when
no class fits; such images are left out of every score here, as ReaL does). ``predictions`` is
(N,) top-1 classes, or (N, m) classes ranked by score for the top-k variants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audits.label_sets import LabelSets, as_predictions, hits_per_row, label_sets_csr, in_label_set


def multilabel_correct(predictions: np.ndarray, correct_sets: LabelSets,
                       unclear_sets: LabelSets | None = None) -> np.ndarray:
    """(N,) bool: top-1 in ``correct`` or ``unclear`` (unclear labels are accepted leniently, as in
    the "When does dough become a bagel?" evaluation)."""
    pred = np.asarray(predictions)
    if unclear_sets is None:
        return in_label_set(pred, correct_sets)
    if len(unclear_sets) != len(correct_sets):
        raise ValueError(f"`unclear_sets` has {len(unclear_sets)} sets but `correct_sets` has {len(correct_sets)}")
    return in_label_set(pred, [list(c) + list(u) for c, u in zip(correct_sets, unclear_sets)])


def per_class_multilabel_accuracy(predictions: np.ndarray, original_labels: np.ndarray, correct_sets: LabelSets,
                                  unclear_sets: LabelSets | None = None, *, problematic: np.ndarray | None = None,
                                  num_classes: int | None = None) -> np.ndarray:
    """(K,) multi-label accuracy of the images of each **original** class; NaN where a class has none.

    Problematic images are skipped. K is ``num_classes`` or ``max(original_labels) + 1``.
    """
    correct = multilabel_correct(predictions, correct_sets, unclear_sets)
    labels = np.asarray(original_labels)
    if labels.shape != correct.shape or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`original_labels` must be (N,) integers with N = {len(correct)}, "
                         f"got shape {labels.shape}, dtype {labels.dtype}")
    keep = np.ones(len(correct), dtype=bool) if problematic is None else ~np.asarray(problematic, dtype=bool)
    if keep.shape != correct.shape:
        raise ValueError(f"`problematic` has shape {keep.shape}; it must be (N,) bool with N = {len(correct)}")
    k = int(labels.max()) + 1 if num_classes is None else num_classes
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"`original_labels` must lie in [0, {k}), got range [{labels.min()}, {labels.max()}]")
    counts = np.bincount(labels[keep], minlength=k).astype(np.float64)
    right = np.bincount(labels[keep], weights=correct[keep], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, right / counts, np.nan)


def multilabel_accuracy(predictions: np.ndarray, original_labels: np.ndarray, correct_sets: LabelSets,
                        unclear_sets: LabelSets | None = None, *, problematic: np.ndarray | None = None,
                        num_classes: int | None = None, require_all_classes: bool = False) -> float:
    """Class-balanced multi-label accuracy ("When does dough become a bagel?", Vasudevan et al. 2022).

    Skip problematic images; an image is correct iff top-1 is in ``correct ∪ unclear``; average the
    per-original-class accuracies (a class-balanced mean, not a pooled one). The paper's notebook
    requires all 1,000 classes: set ``require_all_classes`` (with ``num_classes``) to enforce that.
    """
    per_class = per_class_multilabel_accuracy(predictions, original_labels, correct_sets, unclear_sets,
                                              problematic=problematic, num_classes=num_classes)
    present = ~np.isnan(per_class)
    if not present.any():
        raise ValueError("no non-problematic image is left; multi-label accuracy is undefined")
    if require_all_classes and not present.all():
        raise ValueError(f"{int((~present).sum())} of {len(per_class)} classes have no non-problematic image, "
                         f"e.g. class {int(np.flatnonzero(~present)[0])}; the class-balanced mean needs all of them")
    return float(per_class[present].mean())


def imagenet_m_count(predictions: np.ndarray, correct_sets: LabelSets, unclear_sets: LabelSets | None = None) -> int:
    """ImageNet-M style score: the *count* of correct top-1 predictions on a major-mistake slice."""
    return int(multilabel_correct(predictions, correct_sets, unclear_sets).sum())


def variable_topk_scores(ranked_predictions: np.ndarray, label_sets: LabelSets, *, mode: str = "strict") -> np.ndarray:
    """Variable top-k (Anzaku et al., "Re-assessing ImageNet"): per image, k_i = |L_i|.

    ``strict``: 1 iff every label of L_i is in the top-k_i (set equality, both have k_i members);
    ``recall``: |top-k_i ∩ L_i| / k_i. NaN for images with an empty set. The exact correctness rule
    of the paper is **[unverified]** (METHODS.md 3.3); these are curate's two readings of it.
    ``ranked_predictions`` (N, m) needs m >= the largest set size.
    """
    if mode not in ("strict", "recall"):
        raise ValueError(f"`mode` must be 'strict' or 'recall', got {mode!r}")
    pred = as_predictions(ranked_predictions, ranked=True)
    flat, rows, sizes = label_sets_csr(label_sets, len(pred), "label_sets")
    if sizes.max(initial=0) > pred.shape[1]:
        raise ValueError(f"`ranked_predictions` has {pred.shape[1]} columns but a label set has {sizes.max()} "
                         "labels; pass at least that many ranked classes per image")
    match = (flat[:, None] == pred[rows]) & (np.arange(pred.shape[1])[None, :] < sizes[rows][:, None])
    found = np.bincount(rows, weights=match.any(axis=1), minlength=len(pred))
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(sizes > 0, found / sizes, np.nan)
    return recall if mode == "recall" else np.where(sizes > 0, (recall == 1.0).astype(np.float64), np.nan)


def mean_by_set_size(scores: np.ndarray, label_sets: LabelSets) -> dict[int, float]:
    """Mean of per-image ``scores`` for each label-set size k >= 1 (stratify variable top-k by k)."""
    scores = np.asarray(scores, dtype=np.float64)
    sizes = np.fromiter((len(set(s)) for s in label_sets), dtype=np.int64, count=len(label_sets))
    if sizes.shape != scores.shape:
        raise ValueError(f"`scores` has {len(scores)} entries but `label_sets` has {len(sizes)}")
    return {int(k): float(np.nanmean(scores[sizes == k])) for k in np.unique(sizes[sizes > 0])}


@dataclass(frozen=True)
class SingleVsMultiLabel:
    """Accuracy on single-label vs multi-label images and the decomposition of the gap.

    ``top1_*`` score against the original label, ``ml_*`` against the label set (ReaL-style).
    ``gap = ml - top1`` splits exactly as ``(1 - multi_share) * gap_single + multi_share * gap_multi``;
    ``explained_by_multi`` is the second term's fraction of ``gap``: how much of the
    original-vs-multi-label gap the multi-label images account for.
    """

    n_single: int
    n_multi: int
    multi_share: float
    top1: float
    top1_single: float
    top1_multi: float
    ml: float
    ml_single: float
    ml_multi: float
    gap: float
    gap_single: float
    gap_multi: float
    explained_by_multi: float


def single_vs_multi_label(predictions: np.ndarray, original_labels: np.ndarray,
                          label_sets: LabelSets) -> SingleVsMultiLabel:
    """The comparison of "Re-assessing ImageNet" (Anzaku et al., arXiv 2412.18409) as curate reads it.

    The paper argues that accuracy drops between benchmarks largely follow their share of
    multi-label images. Here, over images with a non-empty set: accuracy against the original label
    and against the set, on single-label (|L| = 1) and multi-label (|L| >= 2) images, and which
    share of the overall gap comes from the multi-label images. The decomposition is ours; the
    paper's exact formulas (and ASMA) are **[unverified]** (METHODS.md 3.3).
    """
    pred = np.asarray(predictions)
    if pred.ndim != 1:
        raise ValueError(f"`predictions` must be (N,) top-1 classes, got shape {pred.shape}")
    labels = np.asarray(original_labels)
    if labels.shape != pred.shape:
        raise ValueError(f"`original_labels` has {len(labels)} entries but `predictions` has {len(pred)}")
    flat, rows, sizes = label_sets_csr(label_sets, len(pred), "label_sets")
    in_set = hits_per_row(as_predictions(pred), flat, rows) > 0
    top1 = pred == labels
    single, multi = sizes == 1, sizes >= 2
    rated = single | multi
    if not single.any() or not multi.any():
        raise ValueError(f"need both single-label and multi-label images, got {int(single.sum())} single "
                         f"and {int(multi.sum())} multi")

    def mean(x: np.ndarray, m: np.ndarray) -> float:
        return float(x[m].mean())

    gap = mean(in_set, rated) - mean(top1, rated)
    gap_multi = mean(in_set, multi) - mean(top1, multi)
    share = float(multi.sum() / rated.sum())
    return SingleVsMultiLabel(
        n_single=int(single.sum()), n_multi=int(multi.sum()), multi_share=share,
        top1=mean(top1, rated), top1_single=mean(top1, single), top1_multi=mean(top1, multi),
        ml=mean(in_set, rated), ml_single=mean(in_set, single), ml_multi=mean(in_set, multi),
        gap=gap, gap_single=mean(in_set, single) - mean(top1, single), gap_multi=gap_multi,
        explained_by_multi=share * gap_multi / gap if gap != 0 else float("nan"))
