"""Tiny synthetic image problems and models for the learn/execute tests."""

import pytest
import torch

from curate.models import create_model

from learn_data import K, SIDE, separable_images


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
