"""Tiny synthetic image problems and models for the learn/execute tests."""

import pytest

from curate.models import create_model

from learn_data import K, SIDE, separable_images


@pytest.fixture
def separable():
    return separable_images(96)


@pytest.fixture
def make_convnet():
    def make(seed: int = 0, num_classes: int = K):
        return create_model("convnet", width=8, depth=2, num_classes=num_classes, im_size=SIDE, seed=seed)

    return make
