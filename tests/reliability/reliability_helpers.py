"""Helpers shared by the reliability tests."""

import hashlib
import os
from pathlib import Path


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under ``root``: file bytes, link targets and modes, so any write or chmod shows."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() + f":{p.stat().st_mode:o}"
            else:
                out[rel] = f"dir:{p.stat().st_mode:o}"
    return out


EMBED = """\
  - id: embed
    uses: embed
    inputs: {data: images}
    with: {model: resnet20-cifar}
"""
PROBE_AUDIT = """\
  - id: probe
    uses: predict
    inputs: {data: images, embeddings: embed}
    with: {probe: linear, folds: 2}
  - id: audit
    uses: audit
    inputs: {data: images, pred_probs: probe, embeddings: embed}
"""
QUALITY_INDEX_DUPLICATES = """\
  - id: quality
    uses: image_quality
    inputs: {data: images}
  - id: index
    uses: index
    inputs: {data: images, embeddings: embed}
  - id: duplicates
    uses: duplicates
    inputs: {data: images, embeddings: embed, index: index}
"""


def folder_recipe(name: str, root: Path, *steps: str) -> str:
    """A recipe whose step `images` reads the image folder ``root``, followed by ``steps`` (YAML list items)."""
    return (f"name: {name}\nsteps:\n  - id: images\n    uses: source\n"
            f"    with: {{kind: imagefolder, path: '{root}'}}\n" + "".join(steps))
