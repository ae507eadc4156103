"""The fitted mistake categorizer: category and severity suggested from where the two classes
meet in the WordNet hierarchy, by logistic regressions fitted to the 627 human-labelled ImageNet
mistakes of "When does dough become a bagel?" (``bench/mistakes.py`` fits them and measures
their skill by cross-validation).

Signals: the WordNet distance of the given and the predicted class and the depth of their
closest common ancestor (:class:`audits.imagenet.ClassHierarchy`), each as cumulative
threshold indicators (``distance <= t``, ``depth >= t``), so a linear model can bend with them.
On the annotations, mistakes between classes that meet deep in the hierarchy (common ancestor at
depth 8-13) are fine-grained 81-98% of the time, between classes that meet near the root (depth
1-5) 17-38% (the rest mostly out-of-vocabulary or spurious); the share of major mistakes is not
monotonic in depth (54-74% at depths 4-6, 16-30% at 7-11), hence thresholds rather than a slope.
What the image shows is not among the signals, so the measured agreement is modest and is
reported beside every suggestion (:attr:`MistakeModel.skill`).

The parameters and the measured skill live in ``audits/data/mistake_model.json`` (plain JSON, no
pickle), written by ``python bench/mistakes.py --write-model``. :func:`fit_logistic` is a small
L2-regularised multinomial logistic regression (Newton's method) in NumPy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from audits.mistakes import CATEGORIES, per_mistake
from audits.skill import Estimate, auroc, bootstrap_estimate, cohen_kappa, confusion, cross_val_proba

MODEL_FILE = Path(__file__).resolve().parent / "data" / "mistake_model.json"
L2 = 1.0  # ridge strength on standardised features; a priori (scikit-learn's default C = 1), not tuned here


@dataclass(frozen=True, eq=False)
class LogisticModel:
    """Multinomial logistic regression on standardised features: ``softmax(((x - mean) / scale) @ weights + bias)``.

    ``classes (C,)``, ``mean`` / ``scale (F,)``, ``weights (F, C)``, ``bias (C,)``.
    """

    classes: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray

    def proba(self, features: np.ndarray) -> np.ndarray:
        """(N, C) class probabilities."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.mean):
            raise ValueError(f"`features` must be (N, {len(self.mean)}), got shape {x.shape}")
        return _softmax(((x - self.mean) / self.scale) @ self.weights + self.bias)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(N,) most probable class names (object array)."""
        return np.asarray(self.classes, dtype=object)[self.proba(features).argmax(axis=1)]

    def to_dict(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "weights": self.weights.tolist(), "bias": self.bias.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogisticModel:
        return cls(classes=tuple(data["classes"]), mean=np.asarray(data["mean"], dtype=np.float64),
                   scale=np.asarray(data["scale"], dtype=np.float64),
                   weights=np.asarray(data["weights"], dtype=np.float64).reshape(len(data["mean"]), -1),
                   bias=np.asarray(data["bias"], dtype=np.float64))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_logistic(features: np.ndarray, labels: np.ndarray, *, l2: float = L2, max_iter: int = 100,
                 tol: float = 1e-8) -> LogisticModel:
    """Fit :class:`LogisticModel` by Newton's method on the mean cross-entropy x N + ``l2``/2 ||W||^2.

    The classes are the distinct ``labels`` (sorted); features are standardised on these rows
    (a constant column keeps scale 1). Biases get a tiny ridge (1e-6) only to make the softmax
    parametrisation unique. Backtracking line search keeps every step a descent step.
    """
    x = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.shape != (len(x),):
        raise ValueError(f"`features` must be (N, F) and `labels` (N,), got {x.shape} and {labels.shape}")
    classes, y = np.unique(labels, return_inverse=True)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    xt = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    n, f1 = xt.shape
    c = len(classes)
    onehot = np.eye(c)[y]
    ridge = np.full((f1, c), float(l2))
    ridge[-1] = 1e-6

    def objective(theta: np.ndarray) -> float:
        z = xt @ theta
        top = z.max(axis=1, keepdims=True)
        lse = (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True))).ravel()
        return float((lse - z[np.arange(n), y]).sum() + 0.5 * (ridge * theta**2).sum())

    theta = np.zeros((f1, c))
    value = objective(theta)
    for _ in range(max_iter):
        p = _softmax(xt @ theta)
        grad = xt.T @ (p - onehot) + ridge * theta
        hess = np.empty((f1, c, f1, c))
        for a in range(c):
            for b in range(a, c):
                w = p[:, a] * ((a == b) - p[:, b])  # d softmax_a / d z_b
                hess[:, a, :, b] = hess[:, b, :, a] = (xt * w[:, None]).T @ xt
        hess = hess.reshape(f1 * c, f1 * c) + np.diag(ridge.ravel())
        step = np.linalg.solve(hess, grad.ravel()).reshape(f1, c)
        t, new = 1.0, np.inf
        while t > 1e-10 and new > value:
            candidate = theta - t * step
            new = objective(candidate)
            t /= 2
        if new > value:  # no descent along the Newton direction: at the optimum to rounding
            break
        theta, done = candidate, value - new < tol * max(1.0, abs(value))
        value = new
        if done:
            break
    return LogisticModel(classes=tuple(str(k) for k in classes), mean=mean, scale=scale, weights=theta[:-1],
                         bias=theta[-1])


# ---------------------------------------------------------------- features from the hierarchy


def threshold_features(values: np.ndarray, thresholds: tuple[int, ...], *, at_most: bool) -> np.ndarray:
    """(N, T) indicators ``values <= t`` (``at_most``) or ``values >= t`` per threshold; a value of
    -1 (no common ancestor) sets none of them: infinitely far, and no shared ancestor deep down."""
    v = np.asarray(values, dtype=np.int64)[:, None]
    t = np.asarray(thresholds, dtype=np.int64)[None, :]
    hit = (v <= t) if at_most else (v >= t)
    return (hit & (v >= 0)).astype(np.float64)


@dataclass(frozen=True)
class MeasuredSkill:
    """Cross-validated agreement of the fitted model with the human labels (95% intervals).

    ``category_accuracy`` / ``category_kappa``: argmax category vs the human one (5 labels);
    ``majority_accuracy``: always answering the most common human category; ``severity_auroc``:
    P(major) ranking major vs minor-or-borderline mistakes; ``severity_kappa``: the suggested
    major / minor vs the human severity with borderline folded into minor.
    """

    mistakes: int
    images: int
    folds: int
    seeds: int
    category_accuracy: Estimate
    category_kappa: Estimate
    majority_accuracy: Estimate
    severity_auroc: Estimate
    severity_kappa: Estimate

    _ESTIMATES = ("category_accuracy", "category_kappa", "majority_accuracy", "severity_auroc", "severity_kappa")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mistakes": self.mistakes, "images": self.images, "folds": self.folds,
                               "seeds": self.seeds}
        out.update({name: getattr(self, name).to_dict() for name in self._ESTIMATES})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasuredSkill:
        return cls(mistakes=int(data["mistakes"]), images=int(data["images"]), folds=int(data["folds"]),
                   seeds=int(data["seeds"]), **{name: Estimate.from_dict(data[name]) for name in cls._ESTIMATES})


@dataclass(frozen=True, eq=False)
class MistakeModel:
    """Category and severity (major vs not) models on hierarchy threshold features, with their measured skill."""

    distance_at_most: tuple[int, ...]
    depth_at_least: tuple[int, ...]
    category: LogisticModel
    severity: LogisticModel
    skill: MeasuredSkill

    def features(self, distance: np.ndarray, ancestor_depth: np.ndarray) -> np.ndarray:
        """(N, F) model features of N class pairs from their WordNet distance and common-ancestor depth."""
        return hierarchy_features(distance, ancestor_depth, distance_at_most=self.distance_at_most,
                                  depth_at_least=self.depth_at_least)

    def suggest(self, given: np.ndarray, predicted: np.ndarray, *, hierarchy_distance: np.ndarray,
                ancestor_depth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Suggested (categories, severities, P(major)) of the mistakes ``given -> predicted``, (N,) each.

        ``hierarchy_distance`` / ``ancestor_depth``: (K, K) class-pair matrices (e.g.
        :attr:`~audits.imagenet.ClassHierarchy.distances` and ``ancestor_depths``) or (N,) per
        mistake. Severities are ``major`` (P(major) >= 0.5) or ``minor``.
        """
        given, predicted = np.asarray(given), np.asarray(predicted)
        dist = per_mistake(hierarchy_distance, given, predicted, "hierarchy_distance")
        depth = per_mistake(ancestor_depth, given, predicted, "ancestor_depth")
        x = self.features(dist, depth)
        p_major = self.severity.proba(x)[:, self.severity.classes.index("major")]
        severities = np.where(p_major >= 0.5, "major", "minor").astype(object)
        return self.category.predict(x), severities, p_major

    def to_dict(self) -> dict[str, Any]:
        return {"about": "mistake categorizer fitted by bench/mistakes.py on the 627 human-labelled ImageNet "
                         "mistakes of 'When does dough become a bagel?' (google-research/imagenet-mistakes)",
                "distance_at_most": list(self.distance_at_most), "depth_at_least": list(self.depth_at_least),
                "category": self.category.to_dict(), "severity": self.severity.to_dict(),
                "skill": self.skill.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MistakeModel:
        return cls(distance_at_most=tuple(data["distance_at_most"]), depth_at_least=tuple(data["depth_at_least"]),
                   category=LogisticModel.from_dict(data["category"]),
                   severity=LogisticModel.from_dict(data["severity"]), skill=MeasuredSkill.from_dict(data["skill"]))


DISTANCE_AT_MOST = tuple(range(2, 14))  # siblings (2) .. the median ImageNet pair (13)
DEPTH_AT_LEAST = tuple(range(1, 15))  # just below the root .. as deep as most classes (median depth 10)


def hierarchy_features(distance: np.ndarray, ancestor_depth: np.ndarray, *,
                       distance_at_most: tuple[int, ...] = DISTANCE_AT_MOST,
                       depth_at_least: tuple[int, ...] = DEPTH_AT_LEAST) -> np.ndarray:
    """(N, F) threshold indicators of N class pairs' WordNet distance and common-ancestor depth."""
    distance, ancestor_depth = np.asarray(distance), np.asarray(ancestor_depth)
    if distance.shape != ancestor_depth.shape or distance.ndim != 1:
        raise ValueError(f"`distance` and `ancestor_depth` must be (N,) of equal length, "
                         f"got {distance.shape} and {ancestor_depth.shape}")
    return np.hstack([threshold_features(distance, distance_at_most, at_most=True),
                      threshold_features(ancestor_depth, depth_at_least, at_most=False)])


@lru_cache(maxsize=4)
def load_mistake_model(path: str | Path = MODEL_FILE) -> MistakeModel:
    """The fitted model (parameters and measured skill) from its JSON file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mistake model {path} is missing; write it with `python bench/mistakes.py "
                                "--write-model`")
    return MistakeModel.from_dict(json.loads(path.read_text()))


def save_mistake_model(model: MistakeModel, path: str | Path = MODEL_FILE) -> None:
    """Write ``model`` as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [f"{json.dumps(key)}: {json.dumps(value)}" for key, value in model.to_dict().items()]
    path.write_text("{\n" + ",\n".join(entries) + "\n}\n")  # one line per entry: small and diffable
    load_mistake_model.cache_clear()


# ---------------------------------------------------------------- cross-validated skill


def cross_validate(features: np.ndarray, categories: np.ndarray, severities: np.ndarray, *, groups: np.ndarray,
                   folds: int = 5, seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
                   l2: float = L2) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold (suggested categories (S, N) object, P(major) (S, N)) of the two logistic
    models on ``features (N, F)``, trained on the human ``categories`` and ``severities``
    (borderline counts as not major), one repetition per seed, folds grouped by ``groups``."""
    categories = np.asarray(categories, dtype=object)
    major = np.where(np.asarray(severities, dtype=object) == "major", "major", "minor")
    names = np.unique(categories)

    def fit_category(x_train, y_train, x_test):
        model = fit_logistic(x_train, y_train, l2=l2)
        out = np.zeros((len(x_test), len(names)))
        out[:, np.searchsorted(names, model.classes)] = model.proba(x_test)
        return out

    def fit_severity(x_train, y_train, x_test):
        model = fit_logistic(x_train, y_train, l2=l2)
        return model.proba(x_test)[:, [model.classes.index("major")]] if "major" in model.classes \
            else np.zeros((len(x_test), 1))

    proba = cross_val_proba(fit_category, features, categories, groups=groups, folds=folds, seeds=seeds)
    p_major = cross_val_proba(fit_severity, features, major, groups=groups, folds=folds, seeds=seeds)[..., 0]
    return names[proba.argmax(axis=2)], p_major


def measure_skill(human_categories: np.ndarray, human_severities: np.ndarray, suggested_categories: np.ndarray,
                  major_score: np.ndarray, suggested_major: np.ndarray, *, groups: np.ndarray, folds: int = 0,
                  resamples: int = 2000, seed: int = 0) -> MeasuredSkill:
    """Agreement of S repetitions of suggestions with the human labels, averaged over repetitions,
    with cluster-bootstrap 95% intervals over ``groups`` (images).

    ``suggested_categories`` (S, N); ``major_score`` (S, N): higher = more likely major (for the
    AUROC); ``suggested_major`` (S, N) bool: the suggested severity is major. ``folds``: recorded
    only (0 for suggestions that were not fitted).
    """
    human_categories = np.asarray(human_categories, dtype=object)
    human_major = np.asarray(human_severities, dtype=object) == "major"
    index = {name: i for i, name in enumerate(CATEGORIES)}
    human = np.array([index[c] for c in human_categories])
    suggested = np.vectorize(index.__getitem__, otypes=[np.int64])(np.atleast_2d(suggested_categories))
    score = np.atleast_2d(np.asarray(major_score, dtype=np.float64))
    said_major = np.atleast_2d(np.asarray(suggested_major, dtype=bool))
    common = np.bincount(human, minlength=len(CATEGORIES)).argmax()
    k = len(CATEGORIES)

    def mean_over(fn):
        return lambda rows: float(np.mean([fn(rows, s) for s in range(len(suggested))]))

    metrics = {
        "category_accuracy": mean_over(lambda r, s: (suggested[s, r] == human[r]).mean()),
        "category_kappa": mean_over(lambda r, s: cohen_kappa(confusion(human[r], suggested[s, r], k))),
        "majority_accuracy": lambda r: float((human[r] == common).mean()),
        "severity_auroc": mean_over(lambda r, s: auroc(human_major[r], score[s, r])),
        "severity_kappa": mean_over(lambda r, s: cohen_kappa(confusion(human_major[r].astype(int),
                                                                        said_major[s, r].astype(int), 2))),
    }
    estimates = {name: bootstrap_estimate(fn, groups, resamples=resamples, seed=seed) for name, fn in metrics.items()}
    return MeasuredSkill(mistakes=len(human), images=len(np.unique(groups)), folds=folds, seeds=len(suggested),
                         **estimates)


# ---------------------------------------------------------------- how suggestions are presented

CATEGORIZERS = ("fitted", "rules")


def suggestion_agreement(categorizer: str, *, model: MistakeModel | None = None) -> dict[str, str]:
    """``{"category": ..., "severity": ...}``: how far each suggestion agrees with human labels, as a phrase.

    ``fitted``: the cross-validated skill stored with :class:`MistakeModel`; ``rules``:
    :func:`audits.mistakes.categorize`, whose cut-offs were set a priori, so nothing is measured.
    """
    if categorizer == "rules":
        unmeasured = "agreement with human labels not measured (uncalibrated rules)"
        return {"category": unmeasured, "severity": unmeasured}
    if categorizer != "fitted":
        raise ValueError(f"unknown categorizer {categorizer!r}; known: {CATEGORIZERS}")
    s = (model or load_mistake_model()).skill
    on = f"on {s.mistakes} ImageNet mistakes ({s.folds}-fold CV, 95% intervals)"
    return {"category": f"agrees with human labels {s.category_accuracy.value:.0%} "
                        f"(kappa {s.category_kappa.format('.2f')}; always 'fine_grained': "
                        f"{s.majority_accuracy.value:.0%}) {on}",
            "severity": f"major vs not against human labels: AUROC {s.severity_auroc.format('.2f')}, "
                        f"kappa {s.severity_kappa.format('.2f')} {on}"}


def suggestion_note(categorizer: str, *, model: MistakeModel | None = None) -> str:
    """One sentence for a report: where the suggestions come from and their measured agreement."""
    if categorizer == "rules":
        return ("Suggested categories and severities come from uncalibrated rules (class-pair similarity, "
                "confidence, outlier and multi-label cut-offs); their agreement with human labels is not measured.")
    agree = suggestion_agreement(categorizer, model=model)
    return (f"Suggested category: {agree['category']}. Suggested severity: {agree['severity']}. Both come from "
            "WordNet distance and common-ancestor depth only, not from the image.")
