"""LabelPooling: RoIAlign of a label map over a crop box (aligned, adaptive sampling), then softmax."""

import pytest
import torch

from curate.relabel import densify, label_targets, pool_dense, pool_labels, pool_weighted, roi_weights, topk_maps
from curate.relabel.maps import TopKMaps

from relabel_helpers import random_boxes, reference_pool, split_map


def test_matches_the_slow_reference_written_from_the_definition():
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(24, 6, 7, 5, generator=g)  # non-square map: catches an x/y swap of the scales
    boxes = random_boxes(24, g)
    boxes[0] = torch.tensor([0.0, 0.0, 1.0, 1.0])
    boxes[1] = torch.tensor([0.3, 0.3, 0.31, 0.5])  # narrower than a cell
    expected = torch.stack([reference_pool(m, b) for m, b in zip(maps, boxes)])
    torch.testing.assert_close(pool_dense(maps, boxes), expected, atol=1e-5, rtol=1e-5)


def test_top_k_pooling_equals_pooling_the_densified_map_for_any_fill_value():
    g = torch.Generator().manual_seed(1)
    top = topk_maps(torch.randn(10, 9, 4, 4, generator=g), 3)
    boxes = random_boxes(10, g)
    for fill in (0.0, -2.5):
        dense = densify(top, num_classes=9, fill_value=fill)
        torch.testing.assert_close(pool_labels(top, boxes, num_classes=9, fill_value=fill), pool_dense(dense, boxes),
                                   atol=1e-5, rtol=1e-5)


def test_full_box_pools_to_the_spatial_mean():
    """An off-by-half-pixel sampling grid breaks this: a 1 x 1 box samples exactly the cell centres."""
    maps = torch.randn(3, 4, 15, 15, generator=torch.Generator().manual_seed(2))
    full = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand(3, 4)
    torch.testing.assert_close(pool_dense(maps, full), maps.mean(dim=(2, 3)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("image, cells", [(40, 5), (56, 7), (24, 3), (36, 6), (225, 15), (96, 12), (33, 11)])
def test_a_crop_of_whole_cells_samples_exactly_those_cell_centres(image, cells):
    """Non-power-of-two sizes: the float32 box size in cells must not round up to one sample too many.

    Boxes are pixel edges divided by the image size, as :meth:`ResizedCrop.fractions` makes them.
    """
    per = image // cells
    pairs = [(a, b) for a in range(cells) for b in range(a + 1, cells + 1)]
    pixels = torch.tensor([[a * per, 0, b * per, image] for a, b in pairs], dtype=torch.float32)
    across = roi_weights(pixels / image, height=1, width=cells)[:, 0]
    down = roi_weights(pixels[:, [1, 0, 3, 2]] / image, height=cells, width=1)[:, :, 0]
    expected = torch.zeros(len(pairs), cells)
    for row, (a, b) in enumerate(pairs):
        expected[row, a:b] = 1 / (b - a)
    torch.testing.assert_close(across, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(down, expected, atol=1e-6, rtol=0)
    maps = torch.randn(len(pairs), 3, 2, cells, generator=torch.Generator().manual_seed(7))
    reference = torch.stack([reference_pool(m, b) for m, b in zip(maps, pixels / image)])
    torch.testing.assert_close(pool_dense(maps, pixels / image), reference, atol=1e-5, rtol=1e-5)


def test_the_issue_example_pools_one_cell():
    """16 to 24 px of a 40 px image on a 5-cell map is exactly cell 2."""
    weights = roi_weights(torch.tensor([[16 / 40, 0, 24 / 40, 1.0]]), height=1, width=5)
    torch.testing.assert_close(weights[0, 0], torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0]), atol=1e-7, rtol=0)


def test_constant_map_gives_its_softmax_for_every_box():
    """Catches a sum where a mean belongs (box size leaking into the target)."""
    s = torch.tensor([2.0, -1.0, 0.5, 3.0])
    maps = s.view(1, 4, 1, 1).expand(16, 4, 6, 6).contiguous()
    boxes = random_boxes(16, torch.Generator().manual_seed(3))
    top = topk_maps(maps, 4)
    targets = label_targets(top, boxes, num_classes=4)
    torch.testing.assert_close(targets, s.softmax(0).expand(16, 4), atol=1e-3, rtol=0)  # fp16 scores


@pytest.mark.parametrize("axis", ["x", "y"])
def test_a_box_inside_a_uniform_region_returns_that_regions_class(axis):
    """Left/right and top/bottom splits: swapping x and y in the box convention fails one of them."""
    m = split_map(10, 8, 8, left=3, right=7, axis=axis)
    first = [0.0, 0.0, 0.4, 1.0] if axis == "x" else [0.0, 0.0, 1.0, 0.4]
    second = [0.6, 0.0, 1.0, 1.0] if axis == "x" else [0.0, 0.6, 1.0, 1.0]
    top = topk_maps(m.expand(2, 10, 8, 8), 2)
    targets = label_targets(top, torch.tensor([first, second]), num_classes=10)
    assert targets.argmax(1).tolist() == [3, 7]
    assert targets[0, 3] > 0.99 and targets[1, 7] > 0.99


def test_flipping_map_and_box_gives_the_same_target():
    g = torch.Generator().manual_seed(4)
    top = topk_maps(torch.randn(12, 8, 6, 9, generator=g), 3)
    boxes = random_boxes(12, g)
    mirrored = torch.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], 1)
    flipped = TopKMaps(top.scores.flip(-1), top.classes.flip(-1))
    torch.testing.assert_close(label_targets(flipped, mirrored, num_classes=8),
                               label_targets(top, boxes, num_classes=8), atol=1e-6, rtol=1e-5)


def test_weights_sum_to_one_inside_the_image_and_pooling_is_linear_in_them():
    g = torch.Generator().manual_seed(5)
    boxes = random_boxes(20, g)
    weights = roi_weights(boxes, height=5, width=7)
    torch.testing.assert_close(weights.sum(dim=(1, 2)), torch.ones(20))
    top = topk_maps(torch.randn(20, 4, 5, 7, generator=g), 2)
    a, b = roi_weights(boxes.flip(0), height=5, width=7), weights
    mixed = pool_weighted(top, 0.3 * a + 0.7 * b, num_classes=4)
    torch.testing.assert_close(mixed, 0.3 * pool_weighted(top, a, num_classes=4)
                               + 0.7 * pool_weighted(top, b, num_classes=4), atol=1e-5, rtol=1e-5)


def test_bad_boxes_state_the_rule():
    top = topk_maps(torch.zeros(1, 3, 2, 2), 1)
    with pytest.raises(ValueError, match="x1 <= x2"):
        pool_labels(top, torch.tensor([[0.5, 0.0, 0.2, 1.0]]), num_classes=3)
    with pytest.raises(ValueError, match="2 rows but `maps` has 1"):
        pool_labels(top, torch.zeros(2, 4), num_classes=3)
