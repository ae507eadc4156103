"""Pictures of a distillation: the synthetic images per class, and the matching loss over iterations.

Both take the output path (write them through ``curate.workspace.atomic_write``) and use
matplotlib's Agg backend, so they run headless. Their default title names the method, its
plug-ins, IPC and iterations, with ``note`` (e.g. "shortened protocol: ...") on a second line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from curate.condense.synthetic_set import SyntheticSet

MAX_COLUMNS = 10


def class_grid(synthetic: SyntheticSet, *, columns: int = MAX_COLUMNS) -> tuple[np.ndarray, list[int]]:
    """uint8 mosaic (rows*H + gaps, columns*W + gaps, C): one row per class and up to ``columns`` images each.

    Returns the mosaic and the class of each row.
    """
    images = synthetic.to_uint8()
    labels = synthetic.labels.numpy()
    classes = sorted(set(labels.tolist()))
    n, h, w, c = images.shape
    cols = min(columns, max(int((labels == k).sum()) for k in classes))
    gap = 2
    grid = np.full((len(classes) * (h + gap) - gap, cols * (w + gap) - gap, c), 255, dtype=np.uint8)
    for row, k in enumerate(classes):
        for col, i in enumerate(np.flatnonzero(labels == k)[:cols]):
            grid[row * (h + gap):row * (h + gap) + h, col * (w + gap):col * (w + gap) + w] = images[i]
    return grid, classes


def save_class_grid(synthetic: SyntheticSet, path: str | Path, *, title: str | None = None,
                    note: str | None = None) -> None:
    """A PNG of :func:`class_grid` with the class names along the left edge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid, classes = class_grid(synthetic)
    names = synthetic.class_names or [str(k) for k in range(synthetic.num_classes)]
    row_height = grid.shape[0] / len(classes)
    scale = 3.0 / 100  # inches per pixel: 32 px images at about 1 inch
    fig, ax = plt.subplots(figsize=(grid.shape[1] * scale + 1.6, grid.shape[0] * scale + 0.6), dpi=100)
    ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray" if grid.shape[-1] == 1 else None,
              interpolation="nearest")
    ax.set_yticks([(r + 0.5) * row_height for r in range(len(classes))], [names[k] for k in classes])
    ax.set_xticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title or describe(synthetic, note=note), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def save_loss_curve(synthetic: SyntheticSet, path: str | Path, *, title: str | None = None,
                    note: str | None = None) -> None:
    """A PNG of the matching loss per outer iteration (log scale when it spans a decade or more)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    its = [row["iteration"] for row in synthetic.history]
    losses = [row["loss"] for row in synthetic.history]
    fig, ax = plt.subplots(figsize=(5.5, 3.2), dpi=120)
    ax.plot(its, losses, color="#4C72B0", lw=1.2)
    positive = [v for v in losses if v > 0]
    if positive and max(positive) >= 10 * min(positive):
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel("matching loss (per class)")
    ax.set_title(title or describe(synthetic, note=note), fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def describe(synthetic: SyntheticSet, *, note: str | None = None) -> str:
    """``"DM + FYI, IPC 10, 20 iterations"``, and ``note`` on a second line."""
    p = synthetic.provenance
    plugins = "".join(f" + {name.upper()}" for name in p.get("plugins", []))
    method = str(p.get("method", "?")).upper()
    line = f"{method}{plugins}, IPC {p.get('ipc', '?')}, {p.get('iterations', '?')} iterations"
    return f"{line}\n{note}" if note else line
