"""Tiny linearly separable image problems for the learn/execute tests."""

import numpy as np

K = 3
SIDE = 8


def separable_images(n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 8, 8, 3) noise images whose class c has a bright channel c: linearly separable."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % K
    images = rng.integers(0, 90, size=(n, SIDE, SIDE, 3))
    images[np.arange(n), :, :, labels] += 150
    return images.astype(np.uint8), labels
