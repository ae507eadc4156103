"""Slow references and hand-built label maps for the relabel tests."""

from __future__ import annotations

import math

import numpy as np
import torch


def bilinear(m: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """One RoIAlign sample (K,) of a dense map (K, h, w), written from torchvision's definition."""
    _, h, w = m.shape
    if y < -1 or y > h or x < -1 or x > w:
        return torch.zeros(m.shape[0], dtype=torch.float64)
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    m = m.double()
    return ((1 - ly) * (1 - lx) * m[:, y0, x0] + (1 - ly) * lx * m[:, y0, x1]
            + ly * (1 - lx) * m[:, y1, x0] + ly * lx * m[:, y1, x1])


def reference_pool(m: torch.Tensor, box) -> torch.Tensor:
    """The mean of bilinear samples on an even ceil(h) x ceil(w) grid over ``box`` (x1, y1, x2, y2 fractions).

    The box's start, end and size in cells are float32, as in torchvision's kernel on a float32 map.
    """
    _, h, w = m.shape
    x1, y1, x2, y2 = (np.float32(v) for v in box)
    half = np.float32(0.5)
    sx, ex, sy, ey = x1 * np.float32(w) - half, x2 * np.float32(w) - half, y1 * np.float32(h) - half, \
        y2 * np.float32(h) - half
    gw, gh = math.ceil(ex - sx), math.ceil(ey - sy)
    total = torch.zeros(m.shape[0], dtype=torch.float64)
    for iy in range(gh):
        for ix in range(gw):
            total += bilinear(m, float(sy) + (iy + 0.5) * float(ey - sy) / gh,
                              float(sx) + (ix + 0.5) * float(ex - sx) / gw)
    return (total / max(gh * gw, 1)).float()


def random_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` random boxes (x1, y1, x2, y2) inside the unit square."""
    a, b = torch.rand(n, 2, generator=generator), torch.rand(n, 2, generator=generator)
    return torch.cat([torch.minimum(a, b), torch.maximum(a, b)], 1)


def split_map(k: int, h: int, w: int, *, left: int, right: int, axis: str = "x", strength: float = 8.0
              ) -> torch.Tensor:
    """A dense map (k, h, w) where class ``left`` dominates the first half along ``axis``, ``right`` the rest."""
    m = torch.zeros(k, h, w)
    if axis == "x":
        m[left, :, : w // 2] = strength
        m[right, :, w // 2:] = strength
    else:
        m[left, : h // 2] = strength
        m[right, h // 2:] = strength
    return m


def tiny_table(n: int, *, num_classes: int = 3, side: int = 8, seed: int = 0):
    """A sample table of ``n`` random images (ids ``toy/0000``...) and its pixels."""
    from curate.data import make_table

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)
    table = make_table(ids=[f"toy/{i:04d}" for i in range(n)], images=pixels, labels=np.arange(n) % num_classes,
                       class_names=[f"c{i}" for i in range(num_classes)], splits="train")
    return table, pixels
