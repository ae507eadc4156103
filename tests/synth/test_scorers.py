"""The guide and the filter as Scorers: equal weights are one classifier whatever their source; the default
pretrained filter only where it can judge; a filter equal to the guide only on opt-in."""

import numpy as np
import pytest
import torch

from curate.errors import UsageError
from curate.models import create_model, load_model, save_model
from curate.models.resnet_cifar import CIFAR10_CLASSES
from synth.scorers import (INDEPENDENT, SELF_SCORED, Scorer, choose_filter, pretrained_filter_refusal,
                           weights_digest)


def _scorer(name, digest):
    return Scorer(name, digest, lambda images: np.zeros((len(images), 2)))


def test_weights_digest_identifies_equal_weights_across_sources(tmp_path):
    """Two loads of one registry name + weights, and a saved-and-reloaded copy (a `train` step's artifact), share
    a digest; other weights (a fresh init, one changed value) do not."""
    a, b = create_model("resnet20-cifar", num_classes=10), create_model("resnet20-cifar", num_classes=10)
    assert weights_digest(a) == weights_digest(b)
    save_model(a, tmp_path / "m")
    assert weights_digest(load_model(tmp_path / "m")) == weights_digest(a)
    assert weights_digest(create_model("resnet20-cifar", num_classes=10, weights=None, seed=0)) != weights_digest(a)
    with torch.no_grad():
        b.linear.bias[3] += 1e-6
    assert weights_digest(b) != weights_digest(a)


def test_choose_filter_keeps_an_independent_filter_and_refuses_the_guide_without_opt_in():
    guide, other = _scorer("noisy", "d1"), _scorer("convnet (step sieve)", "d2")
    assert choose_filter(other, guide, allow_self_filter=False) == (other, INDEPENDENT)
    assert choose_filter(other, None, allow_self_filter=False) == (other, INDEPENDENT)
    for same in (_scorer("copy of the guide", "d1"), _scorer("noisy", "d9")):  # same weights, or same name
        with pytest.raises(UsageError, match="guided"):
            choose_filter(same, guide, allow_self_filter=False)
        assert choose_filter(same, guide, allow_self_filter=True)[1] == SELF_SCORED
    with pytest.raises(UsageError, match="no filter classifier"):
        choose_filter(None, guide, allow_self_filter=False)
    assert choose_filter(None, guide, allow_self_filter=True) == (guide, SELF_SCORED)
    with pytest.raises(UsageError, match="no classifier guided"):
        choose_filter(None, None, allow_self_filter=True)


def test_the_pretrained_filter_is_used_only_for_32px_samples_of_the_cifar10_classes():
    names = list(CIFAR10_CLASSES)
    assert pretrained_filter_refusal(names, 32) is None
    assert "16x16" in pretrained_filter_refusal(names, 16)
    assert "not the CIFAR-10 classes" in pretrained_filter_refusal(names[::-1], 32)  # order matters: the head's rows
    assert "not the CIFAR-10 classes" in pretrained_filter_refusal(["cat", "dog"], 32)
