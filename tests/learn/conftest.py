"""Tiny synthetic image problems and models for the learn/execute tests."""

import numpy as np
import pytest
import torch

from curate.models import create_model

K = 3
SIDE = 8


def separable_images(n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 8, 8, 3) noise images whose class c has a bright channel c: linearly separable."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % K
    images = rng.integers(0, 90, size=(n, SIDE, SIDE, 3))
    images[np.arange(n), :, :, labels] += 150
    return images.astype(np.uint8), labels


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run faster on one thread, and far faster than two on a shared CPU (no spinning barriers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def separable():
    return separable_images(96)


@pytest.fixture
def make_convnet():
    def make(seed: int = 0, num_classes: int = K):
        return create_model("convnet", width=8, depth=2, num_classes=num_classes, im_size=SIDE, seed=seed)

    return make
