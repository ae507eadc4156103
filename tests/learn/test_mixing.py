"""CutMix and ResizeMix: the target weights are the pasted pixels, and pixels come from where they should."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from curate.errors import UsageError
from curate.learn import ArrayData, fit
from curate.learn.mixing import MIXERS, CutMix, MixDraw, ResizeMix, create_mixer, mix_targets

H, W = 12, 20  # non-square: a W/H swap changes the pasted area


def constant_batch(b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample i is filled with the value i in every channel and labelled i (one-hot over b classes)."""
    images = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, H, W).contiguous()
    return images, torch.eye(b)


@pytest.mark.parametrize("seed", range(8))
def test_cutmix_target_mass_equals_the_pasted_area(seed):
    images, targets = constant_batch(6)
    mixed, y = CutMix(alpha=1.0)(images, targets, torch.Generator().manual_seed(seed))
    perm = CutMix(alpha=1.0).draw(6, (H, W), torch.Generator().manual_seed(seed)).perm  # the same draw
    for i, src in enumerate(perm.tolist()):
        if src == i:
            continue
        share = float((mixed[i, 0] == src).float().mean())  # pixels of sample src, counted
        assert y[i, src].item() == pytest.approx(share, abs=1e-6)
        assert y[i, i].item() == pytest.approx(1 - share, abs=1e-6)
        # pixels never move: each is its own value or the source's
        assert bool(((mixed[i] == i) | (mixed[i] == src)).all())


def test_cutmix_box_is_shared_and_the_pasted_box_shows_the_same_region_of_the_source():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(5, 3, H, W, generator=g)
    mixer = CutMix()
    draw = mixer.draw(5, (H, W), g)
    out = mixer.paste(images, draw)
    x1, y1, x2, y2 = draw.box
    assert torch.equal(out[:, :, y1:y2, x1:x2], images[draw.perm, :, y1:y2, x1:x2])
    outside = torch.ones(H, W, dtype=torch.bool)
    outside[y1:y2, x1:x2] = False
    assert torch.equal(out[:, :, outside], images[:, :, outside])
    assert draw.source == (x1 / W, y1 / H, x2 / W, y2 / H)


def test_clipping_makes_the_kept_share_exceed_the_sampled_lambda_on_average():
    """lambda ~ Beta(1, 1) has mean 0.5; clipped boxes paste less, so the kept share averages above it."""
    g = torch.Generator().manual_seed(2)
    mixer = CutMix(alpha=1.0)
    kept = [1 - mixer.draw(2, (H, W), g).ratio for _ in range(2000)]
    assert np.mean(kept) > 0.53


def test_resizemix_keeps_the_whole_source_image_resized_and_leaves_the_rest_untouched():
    g = torch.Generator().manual_seed(3)
    images = torch.rand(4, 3, H, W, generator=g)
    mixer = ResizeMix(scale=(0.3, 0.6))
    draw = mixer.draw(4, (H, W), g)
    out = mixer.paste(images, draw)
    x1, y1, x2, y2 = draw.box
    h, w = y2 - y1, x2 - x1
    assert draw.source == (0.0, 0.0, 1.0, 1.0)
    assert int(0.3 * H) <= h <= int(0.6 * H) and int(0.3 * W) <= w <= int(0.6 * W)
    expected = F.interpolate(images[draw.perm], size=(h, w), mode="bilinear", align_corners=False, antialias=False)
    assert torch.equal(out[:, :, y1:y2, x1:x2], expected)  # the paper's resize: plain bilinear, no antialiasing
    smoothed = F.interpolate(images[draw.perm], size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    assert (out[:, :, y1:y2, x1:x2] - smoothed).abs().max() > 1e-3  # the two differ when shrinking
    outside = torch.ones(H, W, dtype=torch.bool)
    outside[y1:y2, x1:x2] = False
    assert torch.equal(out[:, :, outside], images[:, :, outside])
    mixed = mix_targets(torch.eye(4), draw)
    moved = draw.perm != torch.arange(4)
    rows = torch.arange(4)[moved]
    torch.testing.assert_close(mixed[rows, draw.perm[moved]], torch.full((len(rows),), draw.ratio))
    torch.testing.assert_close(mixed[rows, rows], torch.full((len(rows),), 1 - draw.ratio))
    assert draw.ratio == pytest.approx(h * w / (H * W))


def test_resizemix_on_uint8_rounds_the_resized_patch():
    g = torch.Generator().manual_seed(4)
    images = torch.randint(0, 256, (3, 3, H, W), dtype=torch.uint8, generator=g)
    mixer = ResizeMix()
    draw = mixer.draw(3, (H, W), g)
    out = mixer.paste(images, draw)
    x1, y1, x2, y2 = draw.box
    expected = F.interpolate(images[draw.perm].float(), size=(y2 - y1, x2 - x1), mode="bilinear",
                             align_corners=False, antialias=False).round().clamp(0, 255)
    assert out.dtype == torch.uint8 and torch.equal(out[:, :, y1:y2, x1:x2].float(), expected)


@pytest.mark.parametrize("name", ["cutmix", "resizemix"])
def test_probability_zero_or_identity_permutation_changes_nothing(name):
    g = torch.Generator().manual_seed(5)
    images, targets = constant_batch(4)
    out, y = create_mixer(name, prob=0.0)(images, targets, g)
    assert out is images and y is targets
    mixer = create_mixer(name)
    draw = mixer.draw(4, (H, W), g)._replace(perm=torch.arange(4))
    if name == "cutmix":  # the same box from the same image: a no-op
        assert torch.equal(mixer.paste(images, draw), images)
    assert torch.equal(mix_targets(targets, draw), targets)


def test_draw_consumes_the_same_randomness_whether_or_not_the_batch_is_mixed():
    mixer = CutMix(prob=0.5)
    a, b = torch.Generator().manual_seed(6), torch.Generator().manual_seed(6)
    CutMix(prob=0.0).draw(4, (H, W), a)
    mixer.draw(4, (H, W), b)
    assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))


def test_registered_and_validated():
    assert {"none", "cutmix", "resizemix"} <= set(MIXERS.names())
    with pytest.raises(UsageError, match="alpha"):
        CutMix(alpha=0)
    with pytest.raises(UsageError, match="prob"):
        CutMix(prob=1.5)
    with pytest.raises(UsageError, match="scale"):
        ResizeMix(scale=(0.8, 0.1))
    assert MixDraw(torch.arange(2), (0, 0, 5, 6), (12, 10), (0, 0, 1, 1)).ratio == 0.25


def test_fit_trains_with_cutmix_and_repeats_for_a_seed(separable, make_convnet):
    images, labels = separable
    kwargs = dict(epochs=2, batch_size=32, lr=0.05, device="cpu", progress=False, mix=CutMix(prob=0.5))
    first = fit(make_convnet(), ArrayData(images, labels), **kwargs)
    again = fit(make_convnet(), ArrayData(images, labels), **kwargs)
    assert np.isfinite(first.history[-1]["loss"])
    assert first.history[-1]["loss"] == again.history[-1]["loss"]
