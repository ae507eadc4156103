"""Toy sample tables for the FiftyOne tests (the database fixtures live in tests/conftest.py)."""

from __future__ import annotations

import pytest

CLASSES = ["cat", "dog", "ship"]


def build_table(n: int, *, seed: int = 0, start: int = 0, paths: list[str] | None = None):
    """A sample table of ``n`` random 8x8 RGB PNGs: id, image, label, split, set, origin (+ path)."""
    import io

    import datasets
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)
    blobs = []
    for img in pixels:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        blobs.append(buf.getvalue())
    columns = {
        "id": [f"toy/{start + i:04d}" for i in range(n)],
        "image": [{"bytes": b, "path": None} for b in blobs],
        "label": rng.integers(0, len(CLASSES), size=n).tolist(),
        "split": ["train" if i % 3 else "test" for i in range(n)],
        "set": ["real"] * n,
        "origin": [f"source-{i % 2}" for i in range(n)],
    }
    features = {
        "id": datasets.Value("string"), "image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES),
        "split": datasets.Value("string"), "set": datasets.Value("string"), "origin": datasets.Value("string"),
    }
    if paths is not None:
        columns["path"] = paths
        features["path"] = datasets.Value("string")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features)), pixels


@pytest.fixture
def make_table():
    return build_table
