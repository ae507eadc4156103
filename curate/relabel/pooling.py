"""LabelPooling: the soft target of a crop, pooled from the image's label map.

Semantics (pinned by tests/relabel/test_pooling.py against a slow loop written from the
definition). A box is ``(x1, y1, x2, y2)`` as fractions of the image, x the column. On a
map of h x w cells, where cell (i, j) covers rows [i/h, (i+1)/h) of the image, the box
is RoIAlign-ed to one output as torchvision's ``roi_align(aligned=True, output_size=1,
sampling_ratio=-1)`` on ``box * (w, h)``:

- map coordinates: ``x = x1 * w - 0.5`` to ``x2 * w - 0.5`` (cell centres sit at integers);
- ``ceil(box width in cells)`` by ``ceil(box height in cells)`` samples at the centres of an
  even grid over the box; each sample is the bilinear interpolation of the map, reading the
  nearest edge cell beyond the border, and a sample more than one cell outside the map
  counts as 0;
- the pooled score is the mean of the samples (per class), and the target its softmax.

The official ReLabel loader calls ``roi_align(aligned=False)`` on ``box * 15 - 0.5``, the
same thing except that it widens boxes narrower than one cell to one cell. It builds the
box as ``(y1, x1, y2, x2)`` (top, left, bottom, right) and passes it into RoIAlign's
``(x1, y1, x2, y2)`` slots, so its released maps would be pooled transposed (unless they
were stored transposed, which could not be checked). curate's own maps are not: they are
written and pooled with x the column. A box over the whole image samples exactly the cell
centres, so it pools to the spatial mean.

Every float32 step follows torchvision's kernel, so that the sample count ``ceil(end -
start)`` of a box exactly a whole number of cells wide is that number at any image and
map size: ``(x2 - x1) * w`` would round 16/40 to 24/40 of a 5-cell map to 1.0000001 cells
and take two samples.

Bilinear sampling on a grid is separable, so pooling is a weighted sum of the map with
per-box location weights ``rows (h,) x cols (w,)`` (:func:`roi_weights`), which top-k maps
scatter into classes without ever building the dense (B, K, h, w) map.
"""

from __future__ import annotations

import torch

from curate.relabel.maps import TopKMaps


def _axis_weights(lo: torch.Tensor, hi: torch.Tensor, n: int) -> torch.Tensor:
    """Per-box weights (B, n) of the n cells along one axis: the mean of the samples' bilinear weights."""
    start = lo * n - 0.5
    length = (hi * n - 0.5) - start  # torchvision's order: roi_end - roi_start
    grid = torch.ceil(length).clamp(min=0).long()
    samples = torch.arange(max(int(grid.max()), 1), device=lo.device, dtype=lo.dtype)
    per = grid.clamp(min=1).to(lo.dtype)
    pos = start[:, None] + (samples + 0.5)[None] * length[:, None] / per[:, None]
    valid = (samples < grid[:, None]) & (pos >= -1) & (pos <= n)
    pos = pos.clamp(min=0)
    low = pos.floor().long()
    last = low >= n - 1
    low = low.clamp(max=n - 1)
    high = torch.where(last, low, low + 1)
    frac = torch.where(last, torch.zeros_like(pos), pos - low)
    scale = valid.to(lo.dtype) / per[:, None]
    weights = torch.zeros(len(lo), n, dtype=lo.dtype, device=lo.device)
    weights.scatter_add_(1, low, (1 - frac) * scale)
    return weights.scatter_add_(1, high, frac * scale)


def roi_weights(boxes: torch.Tensor, *, height: int, width: int) -> torch.Tensor:
    """Location weights (B, h, w) with which each box pools a map; they sum to 1 for boxes inside the image."""
    boxes = _check_boxes(boxes)
    rows = _axis_weights(boxes[:, 1], boxes[:, 3], height)
    cols = _axis_weights(boxes[:, 0], boxes[:, 2], width)
    return rows[:, :, None] * cols[:, None, :]


def pool_weighted(maps: TopKMaps, weights: torch.Tensor, *, num_classes: int, fill_value: float = 0.0
                  ) -> torch.Tensor:
    """Pooled logits (B, K) of top-k ``maps`` under location ``weights`` (B, h, w).

    Equal to ``(densify(maps) * weights[:, None]).sum((2, 3))`` without building the dense map.
    """
    scores = maps.scores.to(weights.dtype)
    if fill_value:
        scores = scores - fill_value
    values = (scores * weights[:, None]).flatten(1)
    out = torch.zeros(len(weights), num_classes, dtype=weights.dtype, device=weights.device)
    out.scatter_add_(1, maps.classes.long().flatten(1), values)
    if fill_value:
        out += fill_value * weights.sum(dim=(1, 2))[:, None]
    return out


def pool_labels(maps: TopKMaps, boxes: torch.Tensor, *, num_classes: int, fill_value: float = 0.0
                ) -> torch.Tensor:
    """Pooled logits (B, K): box i of ``boxes`` (B, 4) RoIAligned over map i of ``maps`` (B, k, h, w)."""
    if len(boxes) != len(maps):
        raise ValueError(f"`boxes` has {len(boxes)} rows but `maps` has {len(maps)}")
    _, h, w = maps.shape
    weights = roi_weights(boxes.to(maps.scores.device, torch.float32), height=h, width=w)
    return pool_weighted(maps, weights, num_classes=num_classes, fill_value=fill_value)


def label_targets(maps: TopKMaps, boxes: torch.Tensor, *, num_classes: int, fill_value: float = 0.0
                  ) -> torch.Tensor:
    """LabelPooling: soft targets (B, K), the softmax of :func:`pool_labels`."""
    return pool_labels(maps, boxes, num_classes=num_classes, fill_value=fill_value).softmax(dim=1)


def pool_dense(maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Pooled logits (B, K) of dense ``maps`` (B, K, h, w) over ``boxes`` (B, 4)."""
    if maps.ndim != 4 or len(boxes) != len(maps):
        raise ValueError(f"`maps` must be (B, K, h, w) with one box per map, got {tuple(maps.shape)} "
                         f"and {len(boxes)} boxes")
    weights = roi_weights(boxes.to(maps.device, torch.float32), height=maps.shape[2], width=maps.shape[3])
    return torch.einsum("bkhw,bhw->bk", maps.float(), weights)


def _check_boxes(boxes: torch.Tensor) -> torch.Tensor:
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"`boxes` must be (B, 4) as (x1, y1, x2, y2) fractions, got shape {tuple(boxes.shape)}")
    if len(boxes) and bool(((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any()):
        row = int(((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).nonzero()[0])
        raise ValueError(f"`boxes` must have x1 <= x2 and y1 <= y2, but row {row} is {boxes[row].tolist()}")
    return boxes if boxes.dtype.is_floating_point else boxes.float()
