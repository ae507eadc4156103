"""The mixer contract, parametrized over every registered mixer (a new mixer is tested by registering it)."""

import pytest
import torch

from curate.learn.mixing import MIXERS, create_mixer


def _batch(seed: int = 0, batch: int = 6, classes: int = 4):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, 10, 14, generator=g)
    targets = torch.nn.functional.one_hot(torch.randint(classes, (batch,), generator=g), classes).float()
    return images, targets


@pytest.mark.parametrize("name", MIXERS.names())
def test_mixer_keeps_shapes_dtypes_and_target_mass(name):
    images, targets = _batch()
    mixed, mixed_targets = create_mixer(name)(images.clone(), targets.clone(), torch.Generator().manual_seed(1))
    assert mixed.shape == images.shape and mixed.dtype == images.dtype
    assert mixed_targets.shape == targets.shape and mixed_targets.dtype == targets.dtype
    torch.testing.assert_close(mixed_targets.sum(1), torch.ones(len(targets)))  # still a distribution per row
    assert (mixed_targets >= 0).all()


@pytest.mark.parametrize("name", MIXERS.names())
def test_mixer_is_repeatable_for_a_seed_and_leaves_its_inputs_alone(name):
    images, targets = _batch()
    before = images.clone(), targets.clone()
    first = create_mixer(name)(images, targets, torch.Generator().manual_seed(3))
    second = create_mixer(name)(images, targets, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert torch.equal(images, before[0]) and torch.equal(targets, before[1])


@pytest.mark.parametrize("name", [n for n in MIXERS.names() if n != "none"])
def test_a_mixer_at_probability_zero_is_the_identity(name):
    images, targets = _batch()
    mixed, mixed_targets = create_mixer(name, prob=0.0)(images, targets, torch.Generator().manual_seed(5))
    assert torch.equal(mixed, images) and torch.equal(mixed_targets, targets)
