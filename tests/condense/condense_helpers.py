"""Tiny labelled image sets and network options for the condense tests (<= 64 images of 32x32)."""

import copy
import functools
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


@functools.lru_cache(maxsize=None)
def _trained_teacher(classes: int):
    from curate.learn import ArrayData, fit
    from curate.models import create_model

    images, labels = textures(per_class=8, classes=classes)
    model = create_model("convnet", num_classes=classes, weights=None, seed=0, width=8, depth=2, norm="batchnorm")
    fit(model, ArrayData(images, labels), epochs=6, batch_size=16, lr=0.05, seed=0, device="cpu", progress=False)
    return model


def tiny_teacher(classes: int = 2):
    """A BatchNorm ConvNet (width 8, depth 2) trained a few epochs on :func:`textures`: a teacher for SRe2L/CDA
    whose running statistics and head hold what it learned (a fresh copy each call)."""
    return copy.deepcopy(_trained_teacher(classes))
