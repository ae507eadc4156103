"""Measure the mistake categorizer's skill on the 627 human-labelled ImageNet mistakes.

Data (``--data``, default ../shared/data/imagenet): the imagenet-mistakes metadata of ViT-3B (378)
and Greedy Soups (249) with each model's top-1 class and the human category and severity, the
original val labels, the WordNet hierarchy, ReaL (label sets and rater scores) and ViT-3B's class
confusion counts. No image and no logit is used.

Rows, in one run on the same mistakes and the same bootstrap resamples: always the most common
human label; the rule-based categorizer (:func:`audits.mistakes.categorize`); logistic models
(:mod:`audits.mistake_model`) fitted on growing signal sets, evaluated by stratified 5-fold
cross-validation with folds grouped by image (164 images carry both models' mistakes, nearly
always with the same human label), repeated over ``--seeds``. Intervals: 95% cluster bootstrap
over images. ``--write-model`` refits the deployed model (hierarchy signals only: they are all
an audit of an ImageNet-wnid dataset has) on all mistakes and writes it, with its measured
skill, to ``audits/data/mistake_model.json``. Prints markdown.

    python bench/mistakes.py [--data PATH] [--seeds 5] [--resamples 2000] [--write-model]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from audits.imagenet import (ClassHierarchy, load_class_confusion, load_classes, load_mistakes, load_real_labels,
                             load_real_scores, load_val_labels)
from audits.label_sets import in_label_set
from audits.mistake_model import (DEPTH_AT_LEAST, DISTANCE_AT_MOST, MODEL_FILE, MeasuredSkill, MistakeModel,
                                  cross_validate, fit_logistic, hierarchy_features, measure_skill,
                                  save_mistake_model)
from audits.mistakes import CATEGORIES, agreement, categorize, mistake_arrays
from audits.skill import Estimate, bootstrap_estimate

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet"
FOLDS = 5


def load(d: Path) -> dict[str, np.ndarray]:
    """Per-mistake human labels, groups (image) and every signal the metadata offers."""
    classes = load_classes(d / "classes" / "class_info.json")
    hierarchy = ClassHierarchy.from_files(d / "hierarchy" / "wordnet.is_a.txt", classes.wnids)
    real = load_real_labels(d / "real" / "real.json")
    scores = load_real_scores(d / "real" / "scores.npz")
    vit = load_mistakes(d / "mistakes" / "vit3b_mistakes.json")
    soups = load_mistakes(d / "mistakes" / "greedy_soups_mistakes.json")
    confusions = load_class_confusion(d / "mistakes" / "class_confusion_wnids.json", classes.wnids)
    m = mistake_arrays([*vit.values(), *soups.values()], load_val_labels(d / "val_labels.txt"))
    g, p, image = m["given"], m["predicted"], m["val_index"]
    sets = [real[i] for i in image]
    predictions: dict[int, set[int]] = {}
    for i, c in zip(image, p):
        predictions.setdefault(int(i), set()).add(int(c))
    both = np.array([f in vit and f in soups for f in [*vit, *soups]])

    def rated(cls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        got = [scores.get((int(i), int(c))) for i, c in zip(image, cls)]
        return (np.array([s is not None for s in got], dtype=float),
                np.array([0.0 if s is None else s for s in got]))

    pred_rated, pred_score = rated(p)
    given_rated, given_score = rated(g)
    return {
        **m,
        "distance": hierarchy.distance(g, p),
        "ancestor_depth": hierarchy.ancestor_depths[g, p],
        "distance_matrix": hierarchy.distances,
        "real": np.column_stack([in_label_set(p, sets), in_label_set(g, sets),
                                 [len(s) == 0 for s in sets], [len(s) >= 2 for s in sets]]).astype(float),
        "raters": np.column_stack([pred_rated, pred_score, given_rated, given_score]),
        "both_models": np.column_stack([both, both & np.array([len(predictions[int(i)]) == 1 for i in image])])
        .astype(float),
        "confusion": np.column_stack([np.log1p(confusions[g, p]), confusions[g, p] > 0]).astype(float),
    }


SIGNAL_SETS = {  # cumulative: each row adds one signal family to the one above
    "fitted: WordNet distance + common-ancestor depth (deployed)": ("hierarchy",),
    "fitted: + ReaL set membership (predicted / given in set, empty, 2+ labels)": ("hierarchy", "real"),
    "fitted: + ReaL rater scores of the predicted and given class": ("hierarchy", "real", "raters"),
    "fitted: + both models wrong on the image / same prediction": ("hierarchy", "real", "raters", "both_models"),
    "fitted: + ViT-3B confusion count of the class pair": ("hierarchy", "real", "raters", "both_models",
                                                            "confusion"),
}


def row(title: str, skill: MeasuredSkill, gain: Estimate) -> str:
    s = skill
    return (f"| {title} | {s.category_accuracy.format('.1%')} | {gain.format('+.1%')} | "
            f"{s.category_kappa.format('.3f')} | {s.severity_auroc.format('.3f')} | {s.severity_kappa.format('.3f')} |")


def most_common(labels: np.ndarray) -> str:
    values, counts = np.unique(labels, return_counts=True)
    return str(values[counts.argmax()])


def accuracy_gain(human: np.ndarray, suggested: np.ndarray, groups: np.ndarray, resamples: int) -> Estimate:
    """Category accuracy minus always answering the most common human label, paired on the same resamples."""
    common = human == most_common(human)
    hit = (np.atleast_2d(suggested) == human[None]).mean(axis=0)  # averaged over seeds
    return bootstrap_estimate(lambda rows: float(hit[rows].mean() - common[rows].mean()), groups,
                              resamples=resamples, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder with classes/, hierarchy/, mistakes/, real/, val_labels.txt")
    parser.add_argument("--seeds", type=int, default=5, help="repetitions of the 5-fold split")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of images")
    parser.add_argument("--write-model", action="store_true", help=f"refit the deployed model and write {MODEL_FILE}")
    args = parser.parse_args()
    start = time.perf_counter()
    m = load(args.data)
    seeds = tuple(range(args.seeds))
    n, groups = len(m["given"]), m["val_index"]
    human_c, human_s = m["category"], m["severity"]
    measure = dict(groups=groups, resamples=args.resamples, seed=0)
    print(f"# Mistake categorizer vs {n} human-labelled ImageNet mistakes ({len(np.unique(groups))} images; "
          f"{FOLDS}-fold CV grouped by image, {len(seeds)} seeds; 95% cluster-bootstrap intervals over images, "
          f"{args.resamples} resamples)\n")
    print("| suggestion | category accuracy | accuracy - majority (paired) | category kappa | "
          "severity AUROC (major vs not) | severity kappa (major vs not) |")
    print("|---|---|---|---|---|---|")
    majority = np.full((1, n), most_common(human_c), dtype=object)
    print(row("always the most common human label (fine_grained; never major)",
              measure_skill(human_c, human_s, majority, np.zeros((1, n)), np.zeros((1, n), dtype=bool), **measure),
              accuracy_gain(human_c, majority, groups, args.resamples)))
    in_real = m["real"][:, 0]
    order = {"minor": 0.0, "borderline": 0.5, "major": 1.0}
    for title, signals in (("rules: WordNet distance", {}),
                           ("rules: WordNet distance + predicted class in the ReaL set",
                            {"multilabel_evidence": in_real})):
        cats, sevs = categorize(m["given"], m["predicted"], hierarchy_distance=m["distance_matrix"], **signals)
        score = np.array([order[s] for s in sevs])[None]
        print(row(title, measure_skill(human_c, human_s, cats[None], score, score == 1.0, **measure),
                  accuracy_gain(human_c, cats, groups, args.resamples)))
    hierarchy = hierarchy_features(m["distance"], m["ancestor_depth"])
    deployed: MeasuredSkill | None = None
    for title, families in SIGNAL_SETS.items():
        x = np.hstack([hierarchy if f == "hierarchy" else m[f] for f in families])
        cats, p_major = cross_validate(x, human_c, human_s, groups=groups, folds=FOLDS, seeds=seeds)
        skill = measure_skill(human_c, human_s, cats, p_major, p_major >= 0.5, folds=FOLDS, **measure)
        print(row(title, skill, accuracy_gain(human_c, cats, groups, args.resamples)))
        if deployed is None:
            deployed, deployed_cats, deployed_major = skill, cats, p_major
    print()
    print(agreement(human_c, deployed_cats[0], CATEGORIES).to_markdown(
        "deployed model, out-of-fold categories (seed 0)"), "\n")
    print(f"deployed model: suggests major for {np.mean(deployed_major >= 0.5):.1%} of mistakes "
          f"(humans: {np.mean(human_s == 'major'):.1%}); "
          f"kappa above 0 beyond its interval: {deployed.category_kappa.excludes(0.0)}, "
          f"AUROC above 0.5 beyond its interval: {deployed.severity_auroc.excludes(0.5)}\n")
    if args.write_model:
        major = np.where(human_s == "major", "major", "minor")
        model = MistakeModel(distance_at_most=DISTANCE_AT_MOST, depth_at_least=DEPTH_AT_LEAST,
                             category=fit_logistic(hierarchy, human_c), severity=fit_logistic(hierarchy, major),
                             skill=deployed)
        save_mistake_model(model)
        print(f"wrote {MODEL_FILE}\n")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
