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
