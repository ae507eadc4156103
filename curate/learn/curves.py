"""Training curves: the loss and held-out accuracy per epoch of one or more :func:`~curate.learn.fit` runs.

One line per run (a seed), so the spread between seeds is visible beside the mean the
train step reports. ``save_curves`` takes the output path (write it through
``StepContext.write_file``, which makes it atomic).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from curate.plots import wrap

History = Sequence[Mapping[str, float]]


def curve_figure(histories: Mapping[int, History], *, title: str):
    """A ``matplotlib.figure.Figure``: mean training loss per epoch, and held-out accuracy when recorded.

    ``histories`` maps each run's seed to ``FitResult.history`` rows.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    scored = any("eval_accuracy" in row for rows in histories.values() for row in rows)
    fig = Figure(figsize=(8.0 if scored else 4.5, 3.4), dpi=120, layout="constrained")
    axes = fig.subplots(1, 2 if scored else 1, squeeze=False)[0]
    panels = [("loss", "training loss (mean per epoch)")] + ([("eval_accuracy", "held-out accuracy")] if scored
                                                             else [])
    for ax, (key, label) in zip(axes, panels):
        for seed, rows in histories.items():
            points = [(row["epoch"], row[key]) for row in rows if key in row]
            ax.plot(*zip(*points), marker="." if len(points) < 30 else None, lw=1.2, label=f"seed {seed}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if scored:
        axes[1].yaxis.set_major_formatter(PercentFormatter(1.0))
    if len(histories) > 1:
        axes[-1].legend(fontsize=8)
    fig.suptitle(wrap(title, 80 if scored else 45), fontsize=10)
    return fig


def save_curves(path: str | Path, histories: Mapping[int, History], *, title: str) -> None:
    """Write :func:`curve_figure` as a PNG."""
    curve_figure(histories, title=title).savefig(path, format="png")
