"""Preprocess: uint8 -> /255 -> resize -> normalise, in any of the accepted layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from curate.models import Preprocess

PREP = Preprocess(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5), size=(2, 2))
# one 2x2 RGB image, NHWC
IMAGE = np.array([[[[0, 128, 255], [10, 20, 30]],
                   [[40, 50, 60], [255, 0, 100]]]], dtype=np.uint8)


def test_matches_hand_computation_on_a_2x2_image():
    out = PREP(IMAGE)
    assert out.dtype == torch.float32 and out.shape == (1, 3, 2, 2)
    # (pixel / 255 - mean[c]) / std[c], channel planes in row-major order
    expected = torch.tensor([[[(0 / 255 - .5) / .2, (10 / 255 - .5) / .2],
                              [(40 / 255 - .5) / .2, (255 / 255 - .5) / .2]],
                             [[(128 / 255 - .4) / .25, (20 / 255 - .4) / .25],
                              [(50 / 255 - .4) / .25, (0 / 255 - .4) / .25]],
                             [[(255 / 255 - .3) / .5, (30 / 255 - .3) / .5],
                              [(60 / 255 - .3) / .5, (100 / 255 - .3) / .5]]])
    torch.testing.assert_close(out[0], expected)


def test_tensor_nchw_and_read_only_array_inputs_agree():
    expected = PREP(IMAGE)
    torch.testing.assert_close(PREP(torch.from_numpy(IMAGE)), expected)
    torch.testing.assert_close(PREP(torch.from_numpy(IMAGE).permute(0, 3, 1, 2)), expected)
    frozen = IMAGE.copy()
    frozen.flags.writeable = False
    torch.testing.assert_close(PREP(frozen), expected)


def test_resizes_to_size_with_antialiasing():
    """A constant image stays constant; a 1-pixel checkerboard averages to grey when halved."""
    const = np.full((2, 4, 4, 3), 51, dtype=np.uint8)
    out = PREP(const)
    assert out.shape == (2, 3, 2, 2)
    torch.testing.assert_close(out[:, 0], torch.full((2, 2, 2), (0.2 - 0.5) / 0.2))
    checker = ((np.indices((8, 8)).sum(0) % 2) * 255).astype(np.uint8)[None, :, :, None].repeat(3, axis=3)
    grey = PREP(checker)[:, 0] * 0.2 + 0.5  # undo normalisation of channel 0
    torch.testing.assert_close(grey, torch.full((1, 2, 2), 0.5), atol=0.02, rtol=0)


def test_channels_last_flag_sets_memory_format():
    out = Preprocess(mean=PREP.mean, std=PREP.std, size=(2, 2), channels_last=True)(IMAGE)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, PREP(IMAGE))


def test_grayscale_batch_for_one_channel_models():
    prep = Preprocess(mean=(0.5,), std=(0.5,), size=(2, 2))
    out = prep(np.array([[[0, 255], [255, 0]]], dtype=np.uint8))
    torch.testing.assert_close(out, torch.tensor([[[[-1.0, 1.0], [1.0, -1.0]]]]))


@pytest.mark.parametrize(("images", "error", "message"), [
    (IMAGE.astype(np.float32), TypeError, "dtype uint8"),
    (np.zeros((1, 4, 4, 2), dtype=np.uint8), ValueError, "3 channels"),
    (np.zeros((4, 4, 3), dtype=np.uint8), ValueError, "must be a batch"),
])
def test_bad_inputs_state_the_rule(images, error, message):
    with pytest.raises(error, match=message):
        PREP(images)
