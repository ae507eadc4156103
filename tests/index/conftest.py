"""Seeded toy data for the index tests, as fixtures: clustered vectors and pooled CIFAR features.

Helpers are handed out by fixtures, not imported from this file: several test folders have a
``conftest.py``, so ``from conftest import ...`` would pick whichever was imported first.
"""

import json
from pathlib import Path

import numpy as np
import pytest


def make_clustered(n: int, d: int, *, clusters: int = 20, spread: float = 0.3, seed: int = 0) -> np.ndarray:
    """``n`` float32 points around ``clusters`` Gaussian centres (IVF and HNSW do well on this; isotropic
    noise is their worst case)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    points = centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, d))
    return points.astype(np.float32)


def pool_features(images: np.ndarray) -> np.ndarray:
    """A fixed, model-free embedding: 4x4 average-pooled pixels, centred per image (192-d for 32x32 RGB).

    Pooling averages out 1-px shifts, noise and JPEG artefacts; centring removes brightness.
    """
    x = images.astype(np.float32)
    n, h, w, c = x.shape
    f = x.reshape(n, h // 4, 4, w // 4, 4, c).mean(axis=(2, 4)).reshape(n, -1)
    return f - f.mean(axis=1, keepdims=True)


@pytest.fixture(scope="session")
def clustered():
    """:func:`make_clustered`."""
    return make_clustered


@pytest.fixture(scope="session")
def pooled_features():
    """:func:`pool_features`."""
    return pool_features


@pytest.fixture(autouse=True, scope="session")
def one_faiss_thread():
    """Tiny indexes run faster on one OpenMP thread (on a busy 2-core machine, 2 threads made IVF-PQ
    training 25x slower), and HNSW builds become deterministic."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="session")
def cifar_test(shared_data: Path) -> dict:
    """The first 60 lossless CIFAR-10 test images, and a reader for their JPEG copies."""
    root = shared_data / "cifar10"
    images = np.load(root / "test" / "images.npy")[:60]
    labels = np.load(root / "test" / "labels.npy")[:60]
    classes = json.loads((root / "classes.json").read_text())

    def jpeg(i: int) -> np.ndarray:
        from PIL import Image

        with Image.open(root / "jpeg" / "test" / classes[labels[i]] / f"{i:05d}.jpg") as im:
            return np.asarray(im.convert("RGB"))

    return {"images": images, "jpeg": jpeg}
