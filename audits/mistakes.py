"""Mistake categories and severities (the taxonomy of "When does dough become a bagel?",
Vasudevan et al. 2022, google-research/imagenet-mistakes), suggested from computable signals.

A *mistake* is an example whose given class and predicted class differ. N is the number of
mistakes. Categories (curate spelling): ``fine_grained`` (close in-vocabulary classes),
``fine_grained_oov`` (the object is outside the vocabulary, the model took the nearest class),
``spurious_correlation`` (the prediction follows co-occurring context), ``non_prototypical``
(an atypical instance: a drawing, a toy, an odd form) and ``fine_grained_multilabel``. Severity
is separate: ``major`` / ``minor`` / ``borderline`` (the paper folds borderline into minor).

:func:`categorize` is the rule-based fallback: cut-offs set a priori (uncalibrated) on signals
that can be computed without a human: hierarchy distance (or class similarity), an
out-of-distribution score, multi-label evidence and confidence. On the 627 human-annotated
mistakes (``bench/mistakes.py``) its categories agree no better than always answering
``fine_grained`` (kappa 0). Where a WordNet hierarchy is available, the model fitted to those
mistakes (:mod:`audits.mistake_model`) suggests instead, with measured agreement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from audits.skill import cohen_kappa

CATEGORIES = ("fine_grained", "fine_grained_oov", "spurious_correlation", "non_prototypical",
              "fine_grained_multilabel")
SEVERITIES = ("major", "minor", "borderline")

_CATEGORY_SPELLINGS = {
    "fine-grained error": "fine_grained",
    "fine-grained error with oov": "fine_grained_oov",
    "fine-grained with oov": "fine_grained_oov",
    "spurious correlation": "spurious_correlation",
    "non-prototypical": "non_prototypical",
    "fine-grained with multilabel options": "fine_grained_multilabel",
}


def normalize_category(text: str) -> str:
    """Upstream category string (any known spelling) or a curate name -> the curate name."""
    key = " ".join(str(text).strip().lower().split())
    if key in CATEGORIES:
        return key
    if key not in _CATEGORY_SPELLINGS:
        raise ValueError(f"unknown mistake category {text!r}; known: {sorted(_CATEGORY_SPELLINGS)} or {CATEGORIES}")
    return _CATEGORY_SPELLINGS[key]


def normalize_severity(text: str) -> str:
    """``Major`` / ``Minor`` / ``Borderline`` (any case) -> ``major`` / ``minor`` / ``borderline``."""
    key = str(text).strip().lower()
    if key not in SEVERITIES:
        raise ValueError(f"unknown mistake severity {text!r}; known: {SEVERITIES}")
    return key


@dataclass(frozen=True)
class AnnotatedMistake:
    """One human-annotated model mistake: the image, the model's top-1 class, category, severity."""

    filename: str
    val_index: int
    predicted: int
    category: str
    severity: str


@dataclass(frozen=True)
class Thresholds:
    """Cut-offs of :func:`categorize`; set a priori, not fitted to the annotated mistakes.

    ``near_distance``: WordNet distance (up to a common ancestor and down) at or below which two
    classes are *near*: siblings are 2, cousins 4; 1.5% of ImageNet class pairs are within 4.
    ``far_distance``: at or above, *far* (the median pair is 13; 6 is dough/bagel).
    ``near_similarity`` / ``far_similarity``: the same for a class similarity in [-1, 1] (class-name
    embeddings or class centroids) when no hierarchy is given; **uncalibrated** guesses.
    ``ood``: an ``ood_score`` at or above means the object is outside the vocabulary.
    ``multilabel``: ``multilabel_evidence`` at or above means the predicted class is in the image.
    ``high_confidence``: a far prediction at least this confident, with no sign that the predicted
    class is in the image, suggests an atypical instance (non-prototypical).
    ``low_confidence``: a predicted-class probability below this turns a would-be major into borderline.
    """

    near_distance: int = 4
    far_distance: int = 7
    near_similarity: float = 0.5
    far_similarity: float = 0.25
    ood: float = 0.5
    multilabel: float = 0.5
    high_confidence: float = 0.8
    low_confidence: float = 0.5


def per_mistake(values: np.ndarray | None, given: np.ndarray, predicted: np.ndarray, name: str) -> np.ndarray | None:
    """(N,) signal, or a (K, K) class-pair matrix looked up at (given, predicted)."""
    if values is None:
        return None
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[0] == values.shape[1]:
        return values[given, predicted]
    if values.shape != given.shape:
        raise ValueError(f"`{name}` must be (N,) with N = {len(given)} or a (K, K) class-pair matrix, "
                         f"got shape {values.shape}")
    return values


def categorize(given: np.ndarray, predicted: np.ndarray, *, hierarchy_distance: np.ndarray | None = None,
               class_similarity: np.ndarray | None = None, ood_score: np.ndarray | None = None,
               multilabel_evidence: np.ndarray | None = None, confidence: np.ndarray | None = None,
               thresholds: Thresholds = Thresholds()) -> tuple[np.ndarray, np.ndarray]:
    """Rule-suggested (categories, severities), two (N,) str arrays, for mistakes ``given != predicted``.

    The cut-offs are uncalibrated (see :class:`Thresholds`); with a WordNet hierarchy prefer
    :meth:`audits.mistake_model.MistakeModel.suggest`, whose agreement with human labels is measured.

    ``hierarchy_distance`` / ``class_similarity``: (N,) per mistake or a (K, K) matrix (e.g.
    :attr:`audits.imagenet.ClassHierarchy.distances`); one of them is required. ``ood_score``
    (higher = more out of distribution), ``multilabel_evidence`` (in [0, 1]: does the image also
    show the predicted class, e.g. it is in the ReaL set) and ``confidence`` (the predicted
    class's probability) are optional (N,) signals. Rules, in order:

    - category: ``ood_score >= ood`` -> fine_grained_oov; near pair -> fine_grained; not near and
      ``multilabel_evidence >= multilabel`` -> spurious_correlation; far and ``confidence >=
      high_confidence`` with no such evidence -> non_prototypical (the model saw another class
      clearly); otherwise fine_grained (the most common category: 66% of annotated mistakes).
      ``fine_grained_multilabel`` (1 of 627 annotations) is never suggested.
    - severity: near, or multi-label evidence -> minor; far -> major (borderline when
      ``confidence < low_confidence``); in between -> borderline.
    """
    given = np.asarray(given)
    predicted = np.asarray(predicted)
    if given.shape != predicted.shape or given.ndim != 1:
        raise ValueError(f"`given` and `predicted` must be (N,) of equal length, "
                         f"got {given.shape} and {predicted.shape}")
    t = thresholds
    dist = per_mistake(hierarchy_distance, given, predicted, "hierarchy_distance")
    if dist is not None:
        near, far = dist <= t.near_distance, dist >= t.far_distance
    else:
        sim = per_mistake(class_similarity, given, predicted, "class_similarity")
        if sim is None:
            raise ValueError("pass `hierarchy_distance` or `class_similarity`: one class-pair signal is required")
        near, far = sim >= t.near_similarity, sim < t.far_similarity
    n = len(given)
    ood = per_mistake(ood_score, given, predicted, "ood_score")
    ood = np.zeros(n, dtype=bool) if ood is None else ood >= t.ood
    evidence = per_mistake(multilabel_evidence, given, predicted, "multilabel_evidence")
    evidence = np.zeros(n, dtype=bool) if evidence is None else evidence >= t.multilabel
    conf = per_mistake(confidence, given, predicted, "confidence")
    confident = np.zeros(n, dtype=bool) if conf is None else conf >= t.high_confidence
    unsure = np.zeros(n, dtype=bool) if conf is None else conf < t.low_confidence

    category = np.select([ood, near, evidence, far & confident],
                         ["fine_grained_oov", "fine_grained", "spurious_correlation", "non_prototypical"],
                         default="fine_grained")
    severity = np.select([near | evidence, far & ~unsure], ["minor", "major"], default="borderline")
    return category.astype(object), severity.astype(object)


# ---------------------------------------------------------------- agreement with human annotations


@dataclass(frozen=True, eq=False)
class Agreement:
    """Confusion of suggested vs human labels: ``confusion[i, j]`` = human ``labels[i]``, suggested ``labels[j]``."""

    labels: tuple[str, ...]
    confusion: np.ndarray
    accuracy: float = field(init=False)
    kappa: float = field(init=False)
    majority_baseline: float = field(init=False)

    def __post_init__(self) -> None:
        total = self.confusion.sum()
        object.__setattr__(self, "accuracy", float(np.trace(self.confusion) / total) if total else float("nan"))
        object.__setattr__(self, "kappa", cohen_kappa(self.confusion))
        object.__setattr__(self, "majority_baseline",
                           float(self.confusion.sum(axis=1).max() / total) if total else float("nan"))

    @property
    def recall(self) -> np.ndarray:
        """Per human label: the share of its mistakes that got the same suggestion (NaN if none)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diagonal(self.confusion) / self.confusion.sum(axis=1)

    @property
    def precision(self) -> np.ndarray:
        """Per suggested label: the share of its suggestions the humans agree with (NaN if never suggested)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diagonal(self.confusion) / self.confusion.sum(axis=0)

    def to_markdown(self, title: str) -> str:
        head = "| human \\ suggested | " + " | ".join(self.labels) + " | n | agreement (recall) |"
        rule = "|---" * (len(self.labels) + 3) + "|"
        rows = [f"| {name} | " + " | ".join(str(int(v)) for v in row) + f" | {int(row.sum())} | {r:.1%} |"
                for name, row, r in zip(self.labels, self.confusion, self.recall)]
        prec = "| precision | " + " | ".join("-" if np.isnan(p) else f"{p:.1%}" for p in self.precision) + " | | |"
        summary = (f"agreement {self.accuracy:.1%} (Cohen's kappa {self.kappa:.3f}); always answering the most "
                   f"common human label: {self.majority_baseline:.1%}")
        return "\n".join([f"**{title}**", "", head, rule, *rows, prec, "", summary])


def agreement(human: np.ndarray, suggested: np.ndarray, labels: tuple[str, ...]) -> Agreement:
    """Confusion table of two (N,) label arrays over ``labels`` (values outside it raise)."""
    index = {name: i for i, name in enumerate(labels)}
    unknown = sorted({str(v) for v in np.concatenate([human, suggested])} - index.keys())
    if unknown:
        raise ValueError(f"labels {unknown} are not in {labels}")
    h = np.array([index[v] for v in human], dtype=np.int64)
    s = np.array([index[v] for v in suggested], dtype=np.int64)
    confusion = np.bincount(h * len(labels) + s, minlength=len(labels) ** 2).reshape(len(labels), len(labels))
    return Agreement(labels=tuple(labels), confusion=confusion)


@dataclass(frozen=True, eq=False)
class CategorizerEvaluation:
    """Agreement of :func:`categorize` with human annotations, for category and severity.

    ``severity_folded`` folds ``borderline`` into ``minor``, as the paper's analysis does.
    """

    n: int
    category: Agreement
    severity: Agreement
    severity_folded: Agreement


def evaluate_categorizer(given: np.ndarray, predicted: np.ndarray, human_categories: np.ndarray,
                         human_severities: np.ndarray, **signals: np.ndarray | None) -> CategorizerEvaluation:
    """Run :func:`categorize` with ``signals`` (its keyword arguments) and compare with the human labels."""
    categories, severities = categorize(given, predicted, **signals)
    human_categories = np.array([normalize_category(c) for c in human_categories], dtype=object)
    human_severities = np.array([normalize_severity(s) for s in human_severities], dtype=object)

    def fold(x: np.ndarray) -> np.ndarray:
        return np.where(x == "borderline", "minor", x)

    return CategorizerEvaluation(
        n=len(given), category=agreement(human_categories, categories, CATEGORIES),
        severity=agreement(human_severities, severities, SEVERITIES),
        severity_folded=agreement(fold(human_severities), fold(severities), ("major", "minor")))


def mistake_arrays(mistakes: Iterable[AnnotatedMistake], val_labels: np.ndarray) -> dict[str, np.ndarray]:
    """Arrays from loaded annotations, in the given order: ``val_index``, ``given`` (the original
    label), ``predicted``, ``category``, ``severity``. Pass every model's list: one image can be a
    mistake of several models, with different predictions and annotations."""
    items = list(mistakes)
    val_index = np.array([m.val_index for m in items], dtype=np.int64)
    given = np.asarray(val_labels)[val_index]
    if (given < 0).any():
        raise ValueError(f"{int((given < 0).sum())} annotated images have no original label in `val_labels`")
    return {"val_index": val_index, "given": given,
            "predicted": np.array([m.predicted for m in items], dtype=np.int64),
            "category": np.array([m.category for m in items], dtype=object),
            "severity": np.array([m.severity for m in items], dtype=object)}


# ---------------------------------------------------------------- class-pair signals without a hierarchy


def class_similarity(features: np.ndarray, labels: np.ndarray, *, num_classes: int,
                     chunk_rows: int = 65536) -> np.ndarray:
    """(K, K) cosine similarity of the class centroids of ``features (N, D)``, after centering them.

    ``features`` are embeddings (or, lacking those, ``pred_probs`` rows; memory-mapped input is
    read in row chunks). Centering on the mean centroid removes what all classes share
    (post-ReLU features are all positive, so raw centroids would all look alike); similar
    classes then stay positive and the rest go negative. A class without examples gets
    similarity 0 to every other class (1 to itself).
    """
    features = features if isinstance(features, np.ndarray) else np.asarray(features)
    labels = np.asarray(labels)
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"`features` must be (N, D) and `labels` (N,), got {features.shape} and {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"`labels` must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    sums = np.zeros((num_classes, features.shape[1]), dtype=np.float64)
    for start in range(0, len(labels), chunk_rows):
        y = labels[start:start + chunk_rows]
        order = np.argsort(y, kind="stable")
        present, first = np.unique(y[order], return_index=True)
        x = np.asarray(features[start:start + chunk_rows], dtype=np.float64)[order]
        sums[present] += np.add.reduceat(x, first, axis=0)
    counts = np.bincount(labels, minlength=num_classes)
    present = counts > 0
    centroids = np.zeros_like(sums)
    centroids[present] = sums[present] / counts[present, None]
    centroids[present] -= centroids[present].mean(axis=0)
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    unit = np.divide(centroids, norms, out=np.zeros_like(centroids), where=norms > 0)
    sim = unit @ unit.T
    np.fill_diagonal(sim, 1.0)
    return sim


def pair_quantiles(similarity: np.ndarray) -> np.ndarray:
    """(K, K) quantile in [0, 1] of each class pair's similarity among all K (K - 1) / 2 pairs
    (symmetric; diagonal 1; ties share their mean rank).

    Raw similarities live on scales that depend on the model; quantiles do not, so the
    categorizer's cut-offs mean "the closest 10% of class pairs" on any feature space. Pass the
    result as ``class_similarity`` to :func:`categorize` with ``near_similarity`` /
    ``far_similarity`` set to quantiles. An asymmetric input is symmetrised first.
    """
    s = np.asarray(similarity, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1] or len(s) < 2:
        raise ValueError(f"`similarity` must be a (K, K) matrix with K >= 2, got shape {s.shape}")
    i, j = np.triu_indices(len(s), 1)
    values = (s[i, j] + s[j, i]) / 2
    ordered = np.sort(values)
    lo = np.searchsorted(ordered, values, side="left")
    hi = np.searchsorted(ordered, values, side="right") - 1
    out = np.ones_like(s)
    out[i, j] = out[j, i] = (lo + hi) / 2 / max(len(values) - 1, 1)
    return out
