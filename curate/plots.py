"""Helpers shared by the PNG figures of steps: text that fits its figure.

Figures are built as ``matplotlib.figure.Figure`` objects (no pyplot state, no GUI backend:
``savefig`` renders PNGs with Agg), so they are safe headless and in tests.
"""

from __future__ import annotations

import textwrap


def wrap(text: str, width: int) -> str:
    """``text`` in lines of at most ``width`` characters, broken at spaces, after underscores or hyphens,
    and inside words longer than a line (step ids like ``train_clean_seeded_long`` have no spaces)."""
    marked = text.replace("_", "_\0").replace("-", "-\0")
    lines = textwrap.wrap(marked.replace("\0", " "), width=max(1, width), break_long_words=True,
                          break_on_hyphens=False)
    # the spaces standing in for break points were kept inside lines: drop them again
    return "\n".join(line.replace("_ ", "_").replace("- ", "-") for line in lines)
