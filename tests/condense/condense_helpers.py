"""Tiny labelled image sets and network options for the condense tests (<= 64 images of 32x32)."""

from pathlib import Path

import numpy as np

TINY_NET = {"width": 8, "depth": 2}
DEMO_NPZ = Path(__file__).resolve().parents[2] / "curate" / "data" / "demo" / "cifar10_demo.npz"


def textures(per_class: int = 8, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class k is noise around its own colour: separable, but not trivially identical images."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(40, 216, size=(classes, 3))
    labels = np.repeat(np.arange(classes), per_class)
    noise = rng.normal(0, 25, size=(len(labels), 32, 32, 3))
    images = np.clip(palette[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return images, labels


def real_cifar(per_class: int = 6, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The first ``per_class`` bundled CIFAR-10 training images of the first ``classes`` classes."""
    with np.load(DEMO_NPZ) as npz:
        images, labels = npz["train_images"], npz["train_labels"]
    keep = np.concatenate([np.flatnonzero(labels == k)[:per_class] for k in range(classes)])
    return images[keep], labels[keep]
