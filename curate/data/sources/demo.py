"""``demo``: the CIFAR-10 subset bundled with curate (``curate/data/demo/README.md``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from curate.config import ConfigValueError, option
from curate.data.sources import Source
from curate.data.table import make_table, validate_table

DEMO_DIR = Path(__file__).resolve().parents[1] / "demo"
DEMO_SPLITS = ("train", "test")


def first_per_class(labels: np.ndarray, n: int) -> np.ndarray:
    """Mask of the first ``n`` samples of each class, in row order."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels)) - np.searchsorted(sorted_labels, sorted_labels, side="left")
    return rank < n


class DemoSource(Source):
    """2,000 train + 932 test CIFAR-10 images, lossless, with their official indices."""

    @dataclass(frozen=True, kw_only=True)
    class Config:
        kind: Literal["demo"] = "demo"
        splits: tuple[str, ...] = option(DEMO_SPLITS, help="which demo splits to load: train, test")
        limit_per_class: int | None = option(None, gt=0, help="keep the first n images per class and split")

        def __post_init__(self) -> None:
            unknown = [s for s in self.splits if s not in DEMO_SPLITS]
            if unknown or not self.splits or len(set(self.splits)) != len(self.splits):
                raise ConfigValueError("splits", f"expected distinct names from {', '.join(DEMO_SPLITS)}, "
                                                 f"got {list(self.splits)}")

    def load(self, config: Config, *, cache_dir: Path, progress: bool = True):
        class_names = json.loads((DEMO_DIR / "classes.json").read_text())
        parts: dict[str, list[np.ndarray]] = {"ids": [], "images": [], "labels": [], "splits": []}
        with np.load(DEMO_DIR / "cifar10_demo.npz", allow_pickle=False) as npz:
            for split in config.splits:
                images, labels, indices = (npz[f"{split}_{k}"] for k in ("images", "labels", "indices"))
                if config.limit_per_class is not None:
                    keep = first_per_class(labels, config.limit_per_class)
                    images, labels, indices = images[keep], labels[keep], indices[keep]
                parts["ids"].append(np.char.add(f"cifar10/{split}/", np.char.zfill(indices.astype(str), 5)))
                parts["images"].append(images)
                parts["labels"].append(labels)
                parts["splits"].append(np.full(len(labels), split))
        table = make_table(**{k: np.concatenate(v) for k, v in parts.items()}, class_names=class_names,
                           progress=progress)
        validate_table(table, where="demo source")
        return table
