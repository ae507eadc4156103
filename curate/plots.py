"""Helpers shared by the PNG figures of steps: text that fits its figure.

Figures are built as ``matplotlib.figure.Figure`` objects (no pyplot state, no GUI backend:
``savefig`` renders PNGs with Agg), so they are safe headless and in tests.
"""

from __future__ import annotations

import re


def wrap(text: str, width: int) -> str:
    """``text`` in lines of at most ``width`` characters, broken after spaces, underscores or hyphens, and
    inside pieces longer than a line (step ids like ``train_clean_seeded`` have no spaces)."""
    width = max(1, width)
    lines, line = [], ""
    for piece in re.split(r"(?<=[\s_-])", text):
        while len(piece) > width:
            if line.strip():
                lines.append(line)
            lines.append(piece[:width])
            line, piece = "", piece[width:]
        if line.strip() and len((line + piece).rstrip()) > width:
            lines.append(line)
            line = ""
        line += piece
    lines.append(line)
    return "\n".join(part.strip() for part in lines if part.strip())
