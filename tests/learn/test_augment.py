"""Batched crop + flip equals the per-sample definition, and is driven only by the generator."""

import numpy as np
import pytest
import torch

from curate.errors import UsageError
from curate.learn.augment import Augment, CropFlip


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.integers(1, 256, size=(16, 7, 9, 3), dtype=np.uint8))


def reference(images: torch.Tensor, draws: CropFlip, padding: int, mode: str) -> np.ndarray:
    """One sample at a time with np.pad and slicing: the textbook definition."""
    out = []
    for image, (dy, dx), flip in zip(images.numpy(), draws.offsets.tolist(), draws.flip.tolist()):
        pad_mode = "constant" if mode == "zeros" else "reflect"
        padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)), mode=pad_mode)
        crop = padded[dy:dy + image.shape[0], dx:dx + image.shape[1]]
        out.append(crop[:, ::-1] if flip else crop)
    return np.stack(out)


def test_no_padding_and_no_flip_is_the_identity(images):
    out = Augment(flip=False, crop_padding=0)(images, torch.Generator().manual_seed(0))
    assert torch.equal(out, images)


def test_flip_is_an_exact_horizontal_mirror(images):
    draws = CropFlip(torch.zeros(len(images), 2, dtype=torch.long), torch.ones(len(images), dtype=torch.bool))
    assert torch.equal(Augment(crop_padding=0).apply(images, draws), images.flip(2))


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_batched_crops_match_the_per_sample_reference(images, mode):
    augment = Augment(crop_padding=3, padding_mode=mode)
    draws = augment.sample(len(images), torch.Generator().manual_seed(1))
    assert draws.flip.any() and not draws.flip.all()  # both branches exercised
    assert (draws.offsets == 0).any() and (draws.offsets == 6).any()  # both extreme offsets exercised
    np.testing.assert_array_equal(augment.apply(images, draws).numpy(), reference(images, draws, 3, mode))


def test_draws_come_from_the_generator_only(images):
    augment = Augment()
    a = augment(images, torch.Generator().manual_seed(5))
    b = augment(images, torch.Generator().manual_seed(5))
    c = augment(images, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_flip_false_never_flips():
    draws = Augment(flip=False).sample(1000, torch.Generator().manual_seed(0))
    assert not draws.flip.any()


def test_bad_options_are_usage_errors(images):
    with pytest.raises(UsageError, match="`crop_padding` must be an integer >= 0, got -1"):
        Augment(crop_padding=-1)
    with pytest.raises(UsageError, match="`padding_mode` must be one of zeros, reflect"):
        Augment(padding_mode="edge")
    with pytest.raises(UsageError, match="reflect padding of 7 pixels needs images larger than 7"):
        Augment(crop_padding=7, padding_mode="reflect")(images, torch.Generator())
