"""Quality of generated images: KID, FID, features from a registry model, sample sheets.

Both distances compare ``real (N, D)`` and ``fake (M, D)`` feature rows of the same model
(e.g. the bundled ResNet-20's pooled features; nothing is downloaded), so their values are
comparable only on one feature model and image size.

- **KID** (Binkowski et al.): the unbiased MMD^2 with the cubic polynomial kernel
  ``k(x, y) = (x.y / D + 1)^3``; unbiased, hence preferred at small sample counts (it can be
  slightly negative). Averaged over random subsets when the sets are large.
- **FID** (Heusel et al.): ``||mu_r - mu_f||^2 + tr(S_r + S_f - 2 (S_r S_f)^(1/2))``; the trace of the
  square root is computed as ``sum sqrt(eig(S_r^(1/2) S_f S_r^(1/2)))`` with symmetric eigensolvers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curate.errors import UsageError


def _check_pair(real: np.ndarray, fake: np.ndarray, *, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise UsageError(f"`real` and `fake` must be (N, D) feature rows of one model, "
                         f"got {real.shape} and {fake.shape}")
    if min(len(real), len(fake)) < minimum:
        raise UsageError(f"need at least {minimum} rows in each set, got {len(real)} real and {len(fake)} fake")
    return real, fake


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between rows of ``x`` and ``y`` under the cubic polynomial kernel."""
    d = x.shape[1]
    kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


@dataclass
class KID:
    mean: float
    std: float
    subsets: int


def kid(real: np.ndarray, fake: np.ndarray, *, subset_size: int = 1000, subsets: int = 50, seed: int = 0) -> KID:
    """Kernel Inception Distance: one unbiased estimate on all rows when both sets fit ``subset_size``,
    else the mean (and std) over ``subsets`` random subsets of that size."""
    real, fake = _check_pair(real, fake, minimum=2)
    if max(len(real), len(fake)) <= subset_size:
        return KID(mmd2_unbiased(real, fake), 0.0, 1)
    rng = np.random.default_rng(seed)
    size = min(subset_size, len(real), len(fake))
    values = [mmd2_unbiased(real[rng.choice(len(real), size, replace=False)],
                            fake[rng.choice(len(fake), size, replace=False)]) for _ in range(subsets)]
    return KID(float(np.mean(values)), float(np.std(values)), subsets)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((matrix + matrix.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Frechet distance of two Gaussians."""
    root = _sqrt_psd(cov1)
    middle = root @ cov2 @ root
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * trace_sqrt)


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to the two feature sets (biased at small counts: prefer KID)."""
    real, fake = _check_pair(real, fake, minimum=2)
    return frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))


def class_grid(images: np.ndarray, labels: np.ndarray, *, num_classes: int, per_class: int = 8,
               pad: int = 1) -> np.ndarray:
    """A sample sheet: row ``k`` holds the first ``per_class`` images of class ``k`` (blank where fewer).

    uint8 ``images (N, H, W, 3)`` -> one uint8 image ``(K * (H + pad) + pad, per_class * (W + pad) + pad, 3)``.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if len(images) != len(labels):
        raise UsageError(f"`labels` has {len(labels)} rows but `images` has {len(images)}")
    h, w, c = images.shape[1:] if images.ndim == 4 else (1, 1, 3)  # a filter may keep none: (0, H, W, 3)
    cells = np.full((num_classes, per_class, h + pad, w + pad, c), 255, dtype=np.uint8)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_labels, sorted_labels, side="left")
    take = rank < per_class
    cells[sorted_labels[take], rank[take], pad:, pad:] = images[order[take]]
    sheet = cells.transpose(0, 2, 1, 3, 4).reshape(num_classes * (h + pad), per_class * (w + pad), c)
    return np.pad(sheet, ((0, pad), (0, pad), (0, 0)), constant_values=255)


def row_grid(rows: list[list[np.ndarray]], *, pad: int = 1, gap: int = 3) -> np.ndarray:
    """A sheet of uint8 images ``(H, W, 3)``, one list per row (blank where a row is shorter); a wider white
    ``gap`` after each row's first image sets it apart (e.g. a source image and its variations)."""
    if not rows or not rows[0]:
        raise UsageError("`rows` must hold at least one image")
    h, w, c = np.asarray(rows[0][0]).shape
    cols = max(len(r) for r in rows)
    width = pad + w + gap + (cols - 1) * (w + pad)
    sheet = np.full((len(rows) * (h + pad) + pad, width, c), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        y = pad + i * (h + pad)
        for j, image in enumerate(row):
            x = pad if j == 0 else pad + w + gap + (j - 1) * (w + pad)
            sheet[y:y + h, x:x + w] = image
    return sheet


def write_png(path, image: np.ndarray, *, scale: int = 1) -> None:
    """Save a uint8 image, enlarged ``scale`` times with nearest neighbours (tiny samples stay visible)."""
    from PIL import Image

    Image.fromarray(image).resize((image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST).save(path,
                                                                                                       format="PNG")


def sample_sheet(images: np.ndarray, labels: np.ndarray, *, class_names: list[str], per_class: int = 8,
                 title: str):
    """A ``matplotlib.figure.Figure`` of :func:`class_grid`: one row per class, its name on the left,
    and ``title`` above (what was generated, by which step, how many were kept)."""
    from matplotlib.figure import Figure

    from curate.plots import wrap

    k = len(class_names)
    grid = class_grid(images, labels, num_classes=k, per_class=per_class)
    cell = 0.4  # inches per sample, however small the images: 8 px samples stay visible
    side = (grid.shape[0] - 1) / k
    width = per_class * cell + 1.4
    fig = Figure(figsize=(width, k * cell + 0.9), dpi=150, layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid, interpolation="nearest")
    ax.set_yticks([(row + 0.5) * side for row in range(k)], class_names, fontsize=7)
    ax.set_xticks([])
    ax.tick_params(left=False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(wrap(title, int(width * 72 / (8 * 0.65))), fontsize=8)
    return fig


def save_sample_sheet(path, images: np.ndarray, labels: np.ndarray, **options) -> None:
    """Write :func:`sample_sheet` as a PNG."""
    sample_sheet(images, labels, **options).savefig(path, format="png")
