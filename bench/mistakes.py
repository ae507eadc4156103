"""Check the mistake categorizer against the 627 human-annotated ImageNet mistakes.

Data (``--data``, default ../shared/data/imagenet): the imagenet-mistakes metadata of ViT-3B (378)
and Greedy Soups (249) with each model's top-1 class and the human category and severity, the
original val labels, the WordNet hierarchy and ReaL. No image and no logit is used, so only
class-pair signals and ReaL's multi-label sets are available. Prints markdown tables.

    python bench/mistakes.py [--data PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from audits.imagenet import ClassHierarchy, load_classes, load_mistakes, load_real_labels, load_val_labels
from audits.mistakes import CATEGORIES, SEVERITIES, Thresholds, evaluate_categorizer, mistake_arrays
from audits.label_sets import in_label_set

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet"


def mix_by_distance(distance: np.ndarray, values: np.ndarray, names: tuple[str, ...]) -> str:
    """Markdown: share of each human label per WordNet-distance band (can distance separate them?)."""
    t = Thresholds()
    bands = [(f"near (<= {t.near_distance})", distance <= t.near_distance),
             (f"between ({t.near_distance + 1}-{t.far_distance - 1})",
              (distance > t.near_distance) & (distance < t.far_distance)),
             (f"far (>= {t.far_distance})", distance >= t.far_distance)]
    lines = ["| WordNet distance | n | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for label, sel in bands:
        shares = [f"{(values[sel] == name).mean():.0%}" for name in names]
        lines.append(f"| {label} | {int(sel.sum())} | " + " | ".join(shares) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder with classes/, hierarchy/, mistakes/, real/, val_labels.txt")
    args = parser.parse_args()
    d = args.data
    classes = load_classes(d / "classes" / "class_info.json")
    hierarchy = ClassHierarchy.from_files(d / "hierarchy" / "wordnet.is_a.txt", classes.wnids)
    val = load_val_labels(d / "val_labels.txt")
    real = load_real_labels(d / "real" / "real.json")
    vit = load_mistakes(d / "mistakes" / "vit3b_mistakes.json")
    soups = load_mistakes(d / "mistakes" / "greedy_soups_mistakes.json")
    m = mistake_arrays([*vit.values(), *soups.values()], val)
    sets = [real[i] for i in m["val_index"]]
    in_real = in_label_set(m["predicted"], sets).astype(float)
    real_empty = np.array([len(s) == 0 for s in sets], dtype=float)
    dist = hierarchy.distances
    pair_distance = hierarchy.distance(m["given"], m["predicted"])

    print(f"# Mistake categorizer vs {len(m['given'])} human-annotated ImageNet mistakes "
          f"(ViT-3B {len(vit)} + Greedy Soups {len(soups)}; {len(set(vit) & set(soups))} images are in both)\n")
    print("## What a class-pair signal can see: human labels by WordNet distance of (given, predicted)\n")
    print(mix_by_distance(pair_distance, m["category"], CATEGORIES), "\n")
    print(mix_by_distance(pair_distance, m["severity"], SEVERITIES), "\n")
    setups = {
        "A. WordNet distance only (a class-pair signal)": {"hierarchy_distance": dist},
        "B. A + multi-label evidence: predicted class in the image's ReaL set": {
            "hierarchy_distance": dist, "multilabel_evidence": in_real},
        "C. B + out-of-vocabulary proxy: ReaL set empty (no ImageNet class fits)": {
            "hierarchy_distance": dist, "multilabel_evidence": in_real, "ood_score": real_empty},
    }
    for title, signals in setups.items():
        ev = evaluate_categorizer(m["given"], m["predicted"], m["category"], m["severity"], **signals)
        print(f"## {title}\n")
        print(ev.category.to_markdown("category"), "\n")
        print(ev.severity.to_markdown("severity"), "\n")
        print(ev.severity_folded.to_markdown("severity, borderline folded into minor (the paper's analysis)"), "\n")


if __name__ == "__main__":
    main()
