"""One audit of a labelled set, from arrays: label issues with suggested labels, mistake categories
and severities, k-NN outliers and near-duplicate label conflicts, multi-label candidates, the
confusion matrix, the most confused class pairs and class balance.

N rows, K classes. ``labels (N,)`` are the given labels and ``pred_probs (N, K)`` out-of-sample
probabilities (float16/32/64, in memory or memory-mapped: read in row chunks). Optional signals:
``knn_distances`` / ``knn_neighbors (N, k)``: a k-NN graph over the same rows, self excluded
(distances ascending, e.g. cosine distance); ``features (N, D)``: embeddings for class similarity;
``hierarchy_distance (K, K)``: e.g. WordNet distances, and ``ancestor_depth (K, K)``: the depth
of each pair's closest common ancestor; ``multi_labels (N, K)`` bool: the classes present in each
image (label maps).

Categories and severities of flagged rows are *suggestions*. With both hierarchy matrices they come
from :class:`audits.mistake_model.MistakeModel`, fitted to 627 human-labelled ImageNet mistakes
with measured agreement (``categorizer == "fitted"``); otherwise from the uncalibrated rules of
:func:`audits.mistakes.categorize` (``"rules"``).

Multi-label evidence for the categorizer means the image shows both the given and the predicted
class: both are in ``multi_labels``, or both reach ``multi_label_threshold`` in ``pred_probs``.
(Model-made label maps nearly always contain the model's own prediction, so the predicted class
alone would be no evidence.) The class-pair signal of the mistake categorizer is, in order of preference, the hierarchy, the
centroids of ``features``, or the centroids of the ``pred_probs`` rows; similarities are turned
into pair quantiles, so "near" means "among the closest ``1 - near_quantile`` of class pairs".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from audits.label_issues import CHUNK_ELEMENTS, LabelIssues, audit_labels
from audits.mistake_model import load_mistake_model
from audits.mistakes import CATEGORIES, SEVERITIES, Thresholds, categorize, class_similarity, pair_quantiles
from audits.outliers import ClassBalance, class_balance, knn_outlier_scores, robust_zscores


@dataclass(frozen=True)
class AuditOptions:
    """Options of :func:`audit_dataset`.

    ``filter_by``, ``method``, ``frac_noise``, ``min_examples_per_class``: as
    :func:`audits.label_issues.audit_labels`. ``multi_label_threshold``: a class is a candidate
    label of an image when its probability reaches this (2+ candidates: a multi-label
    candidate). ``outlier_k``: neighbours averaged for the outlier score (None: every column
    given); ``outlier_z``: modified z-score above which a row is an outlier.
    ``duplicate_distance``: a nearest neighbour this close with another label is a
    near-duplicate conflict. ``confused_pairs``: how many class pairs to report.
    ``near_quantile`` / ``far_quantile``: categorizer cut-offs on class-pair similarity
    quantiles (without a hierarchy); ``thresholds``: the other categorizer cut-offs.
    """

    filter_by: str = "prune_by_noise_rate"
    method: str = "self_confidence"
    frac_noise: float = 1.0
    min_examples_per_class: int = 1
    multi_label_threshold: float = 0.3
    outlier_k: int | None = None
    outlier_z: float = 3.5
    duplicate_distance: float = 0.01
    confused_pairs: int = 5
    near_quantile: float = 0.9
    far_quantile: float = 0.5
    thresholds: Thresholds = Thresholds()


@dataclass(frozen=True, eq=False)
class AuditResult:
    """Everything :func:`audit_dataset` found; per-row arrays are (N,).

    ``category`` / ``severity`` are "" for rows that are not flagged; ``categorizer`` says what
    suggested them (``fitted`` or ``rules``, see the module doc). ``confusion (K, K)``:
    given label (rows) by predicted class (columns). ``confused_pairs (P, 3)``: unordered class
    pairs ``(a, b, count)`` with a < b, most flagged issues between them first. The outlier and
    duplicate arrays are None without a k-NN graph.
    """

    labels: np.ndarray
    issues: LabelIssues
    predicted: np.ndarray
    confidence: np.ndarray
    category: np.ndarray
    severity: np.ndarray
    multi_label: np.ndarray
    class_pair_signal: str
    categorizer: str
    confusion: np.ndarray
    confused_pairs: np.ndarray
    balance: ClassBalance
    outlier_score: np.ndarray | None = None
    outlier: np.ndarray | None = None
    nearest: np.ndarray | None = None
    nearest_distance: np.ndarray | None = None
    duplicate_conflict: np.ndarray | None = None

    @property
    def num_rows(self) -> int:
        return len(self.labels)

    @property
    def class_counts(self) -> np.ndarray:
        return self.balance.counts

    @property
    def issue_counts(self) -> np.ndarray:
        """(K,) flagged rows per given class."""
        return np.bincount(self.labels[self.issues.mask], minlength=len(self.confusion))

    @property
    def per_class_issue_rate(self) -> np.ndarray:
        """(K,) flagged share of each given class (0 for absent classes)."""
        counts = self.class_counts
        return np.divide(self.issue_counts, counts, out=np.zeros(len(counts)), where=counts > 0)

    @property
    def estimated_noise_rate(self) -> float:
        """Off-diagonal share of the calibrated confident joint: the estimated share of wrong labels."""
        joint = self.issues.confident_joint
        return float(1 - np.trace(joint) / max(joint.sum(), 1))

    def summary(self) -> dict[str, Any]:
        """Headline numbers (plain Python values)."""
        mask = self.issues.mask
        out: dict[str, Any] = {
            "rows": self.num_rows,
            "issues": int(mask.sum()),
            "issue_rate": float(mask.mean()),
            "estimated_noise_rate": self.estimated_noise_rate,
            "accuracy": float((self.predicted == self.labels).mean()),
            "multi_label_candidates": int(self.multi_label.sum()),
            "categories": {c: int((self.category == c).sum()) for c in CATEGORIES if (self.category == c).any()},
            "severities": {s: int((self.severity == s).sum()) for s in SEVERITIES if (self.severity == s).any()},
            "class_pair_signal": self.class_pair_signal,
            "categorizer": self.categorizer,
            "imbalance_ratio": self.balance.imbalance_ratio,
            "normalized_entropy": self.balance.normalized_entropy,
        }
        if self.outlier is not None:
            out["outliers"] = int(self.outlier.sum())
            out["near_duplicate_conflicts"] = int(self.duplicate_conflict.sum())
        return out


def _check_rows(name: str, values: np.ndarray | None, n: int, *, ndim: int, cols: int | None = None) -> None:
    if values is None:
        return
    shape = np.shape(values)
    if len(shape) != ndim or shape[0] != n or (cols is not None and shape[1] != cols):
        want = f"({n}, {cols if cols is not None else 'D'})" if ndim == 2 else f"({n},)"
        raise ValueError(f"`{name}` must have shape {want} (one row per row of `pred_probs`), got {shape}")


def _row_stats(pred_probs: np.ndarray, labels: np.ndarray, threshold: float):
    """One chunked pass: argmax, its probability, how many classes reach ``threshold``, and
    whether the given class does."""
    n, k = pred_probs.shape
    predicted = np.empty(n, dtype=np.int64)
    confidence = np.empty(n, dtype=np.float32)
    above = np.empty(n, dtype=np.int32)
    given_above = np.empty(n, dtype=bool)
    step = max(1, CHUNK_ELEMENTS // k)
    for start in range(0, n, step):
        sl = slice(start, min(n, start + step))
        x = np.asarray(pred_probs[sl])
        rows = np.arange(len(x))
        top = x.argmax(axis=1)
        predicted[sl] = top
        confidence[sl] = x[rows, top]
        hits = x >= threshold
        above[sl] = hits.sum(axis=1)
        given_above[sl] = hits[rows, labels[sl]]
    return predicted, confidence, above, given_above


def _confused_pairs(given: np.ndarray, suggested: np.ndarray, k: int, top: int) -> np.ndarray:
    counts = np.bincount(given * k + suggested, minlength=k * k).reshape(k, k)
    both = np.triu(counts + counts.T, 1)
    a, b = np.nonzero(both)
    n = both[a, b]
    order = np.lexsort((b, a, -n))[:top]
    return np.stack([a[order], b[order], n[order]], axis=1).astype(np.int64)


def audit_dataset(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    knn_distances: np.ndarray | None = None,
    knn_neighbors: np.ndarray | None = None,
    features: np.ndarray | None = None,
    hierarchy_distance: np.ndarray | None = None,
    ancestor_depth: np.ndarray | None = None,
    multi_labels: np.ndarray | None = None,
    options: AuditOptions = AuditOptions(),
) -> AuditResult:
    """Audit ``labels`` against ``pred_probs`` (and the optional signals); see the module doc."""
    o = options
    issues = audit_labels(labels, pred_probs, filter_by=o.filter_by, method=o.method, frac_noise=o.frac_noise,
                          min_examples_per_class=o.min_examples_per_class)  # validates labels and pred_probs
    labels = np.asarray(labels).astype(np.int64, copy=False)
    n, k = pred_probs.shape
    if not 0 < o.multi_label_threshold <= 1:
        raise ValueError(f"`multi_label_threshold` must be in (0, 1], got {o.multi_label_threshold}")
    if (knn_distances is None) != (knn_neighbors is None):
        raise ValueError("pass `knn_distances` and `knn_neighbors` together (both from one k-NN graph)")
    _check_rows("knn_distances", knn_distances, n, ndim=2)
    _check_rows("knn_neighbors", knn_neighbors, n, ndim=2)
    _check_rows("features", features, n, ndim=2)
    _check_rows("multi_labels", multi_labels, n, ndim=2, cols=k)
    for name, matrix in (("hierarchy_distance", hierarchy_distance), ("ancestor_depth", ancestor_depth)):
        if matrix is not None and np.shape(matrix) != (k, k):
            raise ValueError(f"`{name}` must be ({k}, {k}) (one row per class), got {np.shape(matrix)}")
    if ancestor_depth is not None and hierarchy_distance is None:
        raise ValueError("`ancestor_depth` needs `hierarchy_distance` (both from one hierarchy)")

    predicted, confidence, above, given_above = _row_stats(pred_probs, labels, o.multi_label_threshold)
    if multi_labels is not None:
        multi_labels = np.asarray(multi_labels, dtype=bool)
        multi_label = multi_labels.sum(axis=1) >= 2
        rows = np.arange(n)
        evidence = multi_labels[rows, predicted] & multi_labels[rows, labels]
    else:
        multi_label = above >= 2
        evidence = given_above & (confidence >= o.multi_label_threshold)

    outlier_score = outlier = nearest = nearest_distance = conflict = None
    if knn_distances is not None:
        dist = np.asarray(knn_distances, dtype=np.float64)
        neighbors = np.asarray(knn_neighbors)
        if neighbors.shape != dist.shape:
            raise ValueError(f"`knn_neighbors` {neighbors.shape} and `knn_distances` {dist.shape} differ in shape")
        outlier_score = knn_outlier_scores(dist, k=o.outlier_k)
        outlier = robust_zscores(outlier_score) > o.outlier_z
        first = np.argmin(dist, axis=1)
        nearest = neighbors[np.arange(n), first]
        nearest_distance = dist[np.arange(n), first]
        conflict = (nearest_distance <= o.duplicate_distance) & (labels[nearest] != labels)

    flagged = np.flatnonzero(issues.mask)
    given_f, pred_f = labels[flagged], issues.suggested_label[flagged]
    signals = dict(ood_score=None if outlier is None else outlier[flagged].astype(float),
                   multilabel_evidence=evidence[flagged].astype(float), confidence=confidence[flagged])
    categorizer = "rules"
    if ancestor_depth is not None:
        signal, categorizer = "hierarchy", "fitted"
        cats, sevs, _ = load_mistake_model().suggest(given_f, pred_f, hierarchy_distance=hierarchy_distance,
                                                     ancestor_depth=ancestor_depth)
    elif hierarchy_distance is not None:
        signal = "hierarchy"
        cats, sevs = categorize(given_f, pred_f, hierarchy_distance=np.asarray(hierarchy_distance),
                                thresholds=o.thresholds, **signals)
    else:
        signal = "embeddings" if features is not None else "pred_probs"
        quantiles = pair_quantiles(class_similarity(features if features is not None else pred_probs, labels,
                                                    num_classes=k))
        thresholds = dataclasses.replace(o.thresholds, near_similarity=o.near_quantile,
                                         far_similarity=o.far_quantile)
        cats, sevs = categorize(given_f, pred_f, class_similarity=quantiles, thresholds=thresholds, **signals)
    category = np.full(n, "", dtype=object)
    severity = np.full(n, "", dtype=object)
    category[flagged] = cats
    severity[flagged] = sevs

    return AuditResult(
        labels=labels, issues=issues, predicted=predicted, confidence=confidence, category=category,
        severity=severity, multi_label=multi_label, class_pair_signal=signal, categorizer=categorizer,
        confusion=np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k),
        confused_pairs=_confused_pairs(given_f, pred_f, k, o.confused_pairs),
        balance=class_balance(labels, num_classes=k),
        outlier_score=outlier_score, outlier=outlier, nearest=nearest, nearest_distance=nearest_distance,
        duplicate_conflict=conflict,
    )


def candidate_classes(rows: np.ndarray, *, pred_probs: np.ndarray, threshold: float,
                      multi_labels: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(classes, their probabilities) for each of ``rows``, most probable first: the classes of
    ``multi_labels`` when given, else those whose probability reaches ``threshold``."""
    rows = np.asarray(rows, dtype=np.int64)
    p = np.asarray(pred_probs[rows]).reshape(len(rows), pred_probs.shape[1])
    present = np.asarray(multi_labels)[rows].astype(bool) if multi_labels is not None else p >= threshold
    order = np.argsort(np.where(present, -p, np.inf), axis=1, kind="stable")
    counts = present.sum(axis=1)
    return [(o[:c], row[o[:c]]) for o, c, row in zip(order, counts, p)]
