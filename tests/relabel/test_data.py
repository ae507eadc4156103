"""Random-resized crops whose targets are pooled from exactly that crop, and mixing label-map targets
(``paper``: the whole-crop targets by area, the default; ``exact``: each region from its own map)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from curate.errors import UsageError
from curate.learn.mixing import CutMix, MixDraw, ResizeMix, mix_targets
from curate.relabel import ResizedCrop, ResizedCropData, label_targets, region_targets, topk_maps
from curate.relabel.maps import TopKMaps

from relabel_helpers import split_map


def halves(n: int, side: int = 32) -> np.ndarray:
    """Images whose left half is black and right half white."""
    images = np.zeros((n, side, side, 3), dtype=np.uint8)
    images[:, :, side // 2:] = 255
    return images


def test_crop_is_the_bilinear_resize_of_the_cropped_pixels_flipped_when_drawn():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 12, 10, 3), dtype=torch.uint8, generator=g)
    crop = ResizedCrop(size=(9, 7))
    draws = crop.sample(24, 12, 10, g)
    out = crop.apply(images, draws)
    assert out.shape == (24, 9, 7, 3) and 0 < int(draws.flip.sum()) < 24
    for i, (x1, y1, x2, y2) in enumerate(draws.boxes.tolist()):
        assert 0 <= x1 < x2 <= 10 and 0 <= y1 < y2 <= 12
        region = images[i:i + 1, y1:y2, x1:x2].permute(0, 3, 1, 2).float()
        expected = F.interpolate(region, size=(9, 7), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
        if draws.flip[i]:
            expected = expected.flip(1)
        assert (out[i].float() - expected).abs().max() <= 0.5 + 1e-3  # only rounding to uint8 differs


def test_crop_draws_respect_scale_and_ratio_and_repeat_for_a_seed():
    crop = ResizedCrop(scale=(0.25, 0.5), ratio=(0.5, 2.0))
    draws = crop.sample(500, 40, 40, torch.Generator().manual_seed(1))
    w = (draws.boxes[:, 2] - draws.boxes[:, 0]).float()
    h = (draws.boxes[:, 3] - draws.boxes[:, 1]).float()
    assert bool(((w * h / 1600 > 0.2) & (w * h / 1600 < 0.56)).all())  # rounding of the sides aside
    assert bool(((w / h > 0.45) & (w / h < 2.2)).all())
    again = crop.sample(500, 40, 40, torch.Generator().manual_seed(1))
    assert torch.equal(draws.boxes, again.boxes) and torch.equal(draws.flip, again.flip)


def relabel_data(n=64, **kwargs):
    maps = topk_maps(split_map(4, 8, 8, left=1, right=2).expand(n, 4, 8, 8), 2)
    return ResizedCropData(halves(n), maps=maps, num_classes=4, crop=ResizedCrop(scale=(0.05, 0.3)), **kwargs), maps


def test_target_is_label_pooling_over_exactly_the_drawn_crop():
    data, maps = relabel_data()
    rows = torch.arange(64)
    images, targets = data.batch(rows, torch.Generator().manual_seed(2))
    draws = data.crop.sample(64, 32, 32, torch.Generator().manual_seed(2))  # the same draws
    boxes = ResizedCrop.fractions(draws, 32, 32)
    torch.testing.assert_close(targets, label_targets(maps, boxes, num_classes=4))
    # what the crop shows decides the target, flipped or not: all black -> class 1, all white -> class 2
    black, white = images.float().amax(dim=(1, 2, 3)) == 0, images.float().amin(dim=(1, 2, 3)) == 255
    assert black.any() and white.any()
    assert (targets[black].argmax(1) == 1).all() and (targets[white].argmax(1) == 2).all()
    mirrored = draws.flip & (black | white)
    assert mirrored.any()  # flipped crops are among them


def test_flipping_image_and_map_before_cropping_gives_the_same_target():
    data, maps = relabel_data(8)
    draws = data.crop.sample(8, 32, 32, torch.Generator().manual_seed(3))
    boxes = ResizedCrop.fractions(draws, 32, 32)
    mirrored = torch.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], 1)
    flipped = TopKMaps(maps.scores.flip(-1), maps.classes.long().flip(-1))
    torch.testing.assert_close(label_targets(flipped, mirrored, num_classes=4),
                               label_targets(maps, boxes, num_classes=4), atol=1e-6, rtol=1e-5)


def test_region_targets_with_constant_maps_equal_plain_area_mixing():
    g = torch.Generator().manual_seed(4)
    s = torch.randn(6, 5, generator=g)
    maps = topk_maps(s[:, :, None, None].expand(6, 5, 4, 4), 5)
    crops = torch.tensor([[0.1, 0.2, 0.7, 0.9]]).expand(6, 4)
    draw = CutMix().draw(6, (16, 16), g)
    mixed = region_targets(maps, crops, torch.rand(6, generator=g) < 0.5, draw, num_classes=5)
    soft = maps.scores.float()[:, :, 0, 0]
    plain = torch.zeros(6, 5).scatter_(1, maps.classes[:, :, 0, 0].long(), soft).softmax(1)
    lam = draw.ratio
    torch.testing.assert_close(mixed, (1 - lam) * plain + lam * plain[draw.perm], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("flip", [False, True])
def test_each_region_is_pooled_from_its_own_map_in_its_own_frame(flip):
    """Row 1 (left: class 1, right: class 2) gets row 0's left half pasted over its output's left half."""
    dense = torch.zeros(2, 4, 8, 8)
    dense[0, 0] = 8.0  # row 0: class 0 everywhere
    dense[1] = split_map(4, 8, 8, left=1, right=2)
    maps = topk_maps(dense, 2)
    crops = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2)
    draw = MixDraw(perm=torch.tensor([1, 0]), box=(0, 0, 8, 16), size=(16, 16), source=(0.0, 0.0, 0.5, 1.0))
    targets = region_targets(maps, crops, torch.tensor([False, flip]), draw, num_classes=4)
    # row 1 keeps its output's right half: class 2, or class 1 when its image is flipped
    kept = 1 if flip else 2
    assert targets[1, 0] == pytest.approx(0.5, abs=1e-3) and targets[1, kept] == pytest.approx(0.5, abs=1e-3)
    # row 0 shows row 1's output-left half: class 1, or class 2 when row 1 is flipped
    shown = 2 if flip else 1
    assert targets[0, 0] == pytest.approx(0.5, abs=1e-3) and targets[0, shown] == pytest.approx(0.5, abs=1e-3)


def test_resizemix_region_target_pools_the_whole_source_crop():
    dense = torch.zeros(2, 4, 8, 8)
    dense[0, 0] = 8.0
    dense[1] = split_map(4, 8, 8, left=1, right=2)
    maps = topk_maps(dense, 2)
    crops = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 1.0]])  # sample 1: only its left half
    draw = MixDraw(perm=torch.tensor([1, 0]), box=(2, 2, 10, 10), size=(16, 16), source=(0.0, 0.0, 1.0, 1.0))
    targets = region_targets(maps, crops, torch.tensor([False, False]), draw, num_classes=4)
    # row 0 shows sample 1's whole crop (its left half, class 1) shrunk into a quarter of the image
    assert draw.ratio == 0.25
    assert targets[0, 1] == pytest.approx(0.25, abs=2e-3) and targets[0, 0] == pytest.approx(0.75, abs=2e-3)
    assert targets[0, 2] < 1e-3


class FixedDraw(CutMix):
    """CutMix whose every batch is the given :class:`MixDraw` (after consuming CutMix's random draws)."""

    def __init__(self, draw: MixDraw):
        super().__init__()
        self.fixed = draw

    def draw(self, batch_size, size, generator):
        super().draw(batch_size, size, generator)
        return self.fixed


def whole_image_crops() -> ResizedCrop:
    return ResizedCrop(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)


@pytest.mark.parametrize("mixer", [CutMix(prob=1.0), ResizeMix(prob=1.0)], ids=["cutmix", "resizemix"])
def test_with_constant_maps_paper_exact_and_plain_soft_mixing_agree(mixer):
    g = torch.Generator().manual_seed(8)
    s = torch.randn(16, 5, generator=g)
    maps = topk_maps(s[:, :, None, None].expand(16, 5, 4, 4), 5)
    soft = label_targets(maps, torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand(16, 4), num_classes=5)
    out = {}
    for mode in ("paper", "exact"):
        data = ResizedCropData(halves(16, side=16), maps=maps, num_classes=5, mixer=mixer, relabel_mix=mode)
        out[mode] = data.batch(torch.arange(16), torch.Generator().manual_seed(9))
    draw = mixer.draw(16, (16, 16), crop_then_mix_generator(16, seed=9))
    plain = mix_targets(soft, draw)
    assert torch.equal(out["paper"][0], out["exact"][0])  # the same pixels
    torch.testing.assert_close(out["paper"][1], plain, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["exact"][1], plain, atol=1e-4, rtol=1e-4)


def crop_then_mix_generator(n: int, *, seed: int) -> torch.Generator:
    """The generator as ResizedCropData.batch leaves it after drawing ``n`` crops (the mixer draws next)."""
    g = torch.Generator().manual_seed(seed)
    ResizedCrop().sample(n, 16, 16, g)
    return g


def two_sample_maps() -> TopKMaps:
    """Sample 0: class 0 everywhere; sample 1: class 1 on its left half, class 2 on its right half."""
    dense = torch.zeros(2, 4, 8, 8)
    dense[0, 0] = 8.0
    dense[1] = split_map(4, 8, 8, left=1, right=2)
    return topk_maps(dense, 2)


def test_paper_mixing_mixes_the_whole_crop_targets_and_exact_pools_each_region():
    """Each row gets the other's output-left half pasted over its own left half.

    paper: row 1 keeps its whole-crop target (half class 1, half class 2) at weight 1/2, though
    its class-1 half is covered; exact: row 1's visible right half is class 2 only.
    """
    maps = two_sample_maps()
    draw = MixDraw(perm=torch.tensor([1, 0]), box=(0, 0, 8, 16), size=(16, 16), source=(0.0, 0.0, 0.5, 1.0))
    out = {}
    for mode in ("paper", "exact"):
        data = ResizedCropData(halves(2, side=16), maps=maps, num_classes=4, crop=whole_image_crops(),
                               mixer=FixedDraw(draw), relabel_mix=mode)
        out[mode] = data.batch(torch.arange(2), torch.Generator().manual_seed(10))[1]
    whole = label_targets(maps, torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2), num_classes=4)
    torch.testing.assert_close(out["paper"], mix_targets(whole, draw))
    paper = out["paper"].tolist()
    assert paper[1][1] == pytest.approx(paper[1][2], abs=1e-3)
    assert paper[1][1] == pytest.approx(0.25, abs=0.01) and paper[1][0] == pytest.approx(0.5, abs=0.01)
    torch.testing.assert_close(out["exact"], region_targets(maps, torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2),
                                                            torch.tensor([False, False]), draw, num_classes=4))
    assert out["exact"][1, 2] == pytest.approx(0.5, abs=1e-3) and out["exact"][1, 1] < 1e-3
    assert out["exact"][0, 1] == pytest.approx(0.5, abs=1e-3) and out["exact"][0, 2] < 1e-3  # row 1's left half


def test_paper_mixing_is_the_default():
    data = ResizedCropData(halves(2), maps=two_sample_maps(), num_classes=4, mixer=CutMix())
    assert data.relabel_mix == "paper"
    with pytest.raises(UsageError, match="`relabel_mix` must be one of paper, exact, got 'crop'"):
        ResizedCropData(halves(2), maps=two_sample_maps(), num_classes=4, relabel_mix="crop")


def test_fixed_targets_under_a_mixer_are_one_hot_rows_mixed_by_the_pasted_area():
    labels = np.arange(16) % 4
    data = ResizedCropData(halves(16, side=16), targets=labels, num_classes=4, mixer=CutMix(prob=1.0))
    assert data.target_kind == "soft"
    g = torch.Generator().manual_seed(6)
    _, targets = data.batch(torch.arange(16), g)
    torch.testing.assert_close(targets.sum(1), torch.ones(16))
    plain = ResizedCropData(halves(16, side=16), targets=labels, num_classes=4)
    assert plain.target_kind == "hard"
    assert plain.batch(torch.arange(16), g)[1].tolist() == labels.tolist()


def test_bad_construction_is_a_usage_error():
    with pytest.raises(UsageError, match="exactly one of"):
        ResizedCropData(halves(2), num_classes=2)
    with pytest.raises(UsageError, match="3 rows but `images` has 2"):
        ResizedCropData(halves(2), targets=np.zeros(3, dtype=int), num_classes=2)
    with pytest.raises(UsageError, match="crop `scale`"):
        ResizedCrop(scale=(0.5, 0.2))
