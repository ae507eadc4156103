"""Image-quality issues of a dataset: per-image severity scores and flags, no labels or models needed.

The issue types and scores follow CleanVision's image-property issue managers (which cleanlab's
Datalab runs for images; ``cleanvision/issue_managers/image_property.py`` and
``image_property_issue_manager.py``, v0.3) and fastdup's image statistics. CleanVision scores a
quality ``q`` (1 = clean) and flags ``q < t``; here every score is a *severity*, higher = worse,
so its threshold becomes ``1 - q > 1 - t``. Per image, with flags above these defaults:

- ``blurry`` > 0.71 (CleanVision: quality < 0.29): ``1 - min(e + h + x, 1)`` with
  ``e = 1 - exp(-0.01 s)``, ``s`` the std of PIL's FIND_EDGES response on the gray image at
  <= 64 px; ``h = 1 - exp(-0.01 std(gray histogram counts))`` when above 0.18, else 0 (a concentrated
  histogram is flat, not blurred); ``x`` the dark or light severity of an image flagged dark or light
  (CleanVision 0.2 added a dark image's darkness so that it is dark, not blurry; light is treated alike).
- ``dark`` > 0.68 (CleanVision 0.32): ``1 - p99`` of per-pixel brightness.
- ``light`` > 0.95 (CleanVision 0.05): ``p5`` of per-pixel brightness.
- ``low_information`` > 0.7 (CleanVision 0.3): ``1 - min(0.1 H, 1)``, ``H`` the entropy in bits of the
  RGB histogram.
- ``near_constant`` > 0.98: ``1 - std / 127.5``, std of the colours around the mean colour (RMS of
  the channel stds; fastdup's ``stdv`` statistic); 0.98 is a std under 2.55, 1% of the 8-bit range.
- ``grayscale`` > 0.99: ``1 - p99(max(R, G, B) - min(R, G, B)) / 255``; CleanVision asks for R = G = B
  exactly, 0.99 allows 2 levels of codec noise.
- ``odd_size`` > 3.5 and ``odd_aspect_ratio`` > 3.5: robust z-scores of log(height x width) and
  log(width / height) against the dataset (CleanVision flags sizes outside 3 IQRs of the dataset's
  and aspect ratios below an absolute 0.35; both are relative here), see below.

Brightness is CleanVision's perceived brightness ``sqrt(0.241 R^2 + 0.691 G^2 + 0.068 B^2) / 255``;
the gray image is PIL's ``convert("L")`` (ITU-R 601-2 luma, rounded as Pillow does); entropy is PIL's
``Image.entropy()`` of the RGB image, i.e. ``log2(3)`` plus the mean per-channel entropy (a grayscale
*file* decodes to RGB here, so it scores ``log2(3)`` bits more than CleanVision's L-mode value).
Where this differs from CleanVision, on purpose: FIND_EDGES is taken on the interior (Pillow copies
the one-pixel border through unfiltered; at <= 64 px those gray values are 6-12% of the "edges" and
kept a Gaussian-blurred CIFAR image from ever being flagged), and light images are exempt from blur
like dark ones. For comparison, fastdup's default summary counts blur (variance of the Laplacian)
``< 150`` and mean brightness ``< 4`` or ``> 253``.

Dataset-relative checks use statistics of the whole dataset, computed after every image was
measured (so measuring streams in batches and keeps only a few numbers per image):

- ``odd_size`` / ``odd_aspect_ratio``: ``|x - median| / max(1.4826 MAD, log(odd_min_factor) / z)``
  for ``x`` = log area / log aspect ratio. The floor on the spread means that in a dataset whose
  images all share one size (MAD 0), an image is odd only when it is at least ``odd_min_factor``
  (2x) larger or smaller (wider or narrower) than the median, instead of for any pixel of difference.
- ``grayscale``: only when most images are colour (the grayscale share is at most
  ``grayscale_max_share``); in a grayscale dataset no image is flagged.

Resolution: images larger than 256 px on their long side are measured on a block-mean (area)
downscale by an integer factor to at most 256 px; blur is measured at most 64 px on the long side
(CleanVision's ``MAX_RESOLUTION_FOR_BLURRY_DETECTION``), also by an integer block mean, where
CleanVision resizes to exactly 64. Images up to 64 px (CIFAR) are measured at full resolution.

Images of different sizes are measured per size group: each group is stacked and measured
vectorized, so a dataset of one size is one vectorized call per batch; a dataset where every
size differs falls back to per-image NumPy calls, whose cost is then small next to decoding the
(large) images. Resizing everything to one size instead would change the blur and size
measurements the thresholds were calibrated on.

N is the number of images. Pure NumPy: decoding, IO and FiftyOne live in the step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Iterable, Mapping, Sequence

import numpy as np

from audits.outliers import MODIFIED_Z
from curate.config import ConfigValueError, option

ISSUE_TYPES = ("blurry", "dark", "light", "low_information", "near_constant", "grayscale", "odd_size",
               "odd_aspect_ratio")

ANALYSIS_SIDE = 256
"""Images larger than this on their long side are measured on an area downscale to at most this."""
BLUR_SIDE = 64
"""Blur is measured at most this many pixels on the long side (CleanVision's resolution)."""
BLUR_NORMALIZING_FACTOR = 0.01
"""CleanVision's ``normalizing_factor`` for the edge and histogram spreads (``1 - exp(-0.01 x)``)."""
BLUR_HISTOGRAM_THRESHOLD = 0.18
"""CleanVision's ``color_threshold``: the histogram term counts only above this."""
ENTROPY_NORMALIZING_FACTOR = 0.1
"""CleanVision's ``normalizing_factor`` for entropy in bits."""
NEAR_CONSTANT_SCALE = 127.5
"""The largest std of 8-bit values (half black, half white): ``near_constant = 1 - std / 127.5``."""
_BRIGHTNESS_WEIGHTS = (0.241, 0.691, 0.068)  # CleanVision's perceived brightness (HSP colour model)
_LUMA = (19595, 38470, 7471)  # Pillow's RGB -> L, in 1/65536

PROPERTIES = {
    "blurry": ("edge_std", "histogram_std", "brightness_p99", "brightness_p5"),
    "dark": ("brightness_p99",),
    "light": ("brightness_p5",),
    "low_information": ("entropy",),
    "near_constant": ("pixel_std",),
    "grayscale": ("chroma_p99",),
    "odd_size": (),
    "odd_aspect_ratio": (),
}
"""The per-image measurements each issue type needs (``height`` and ``width`` are always measured)."""


@dataclass(frozen=True, kw_only=True)
class QualityThresholds:
    """Severity above which an image is flagged, per issue type (defaults: module docstring)."""

    blurry: float = option(0.71, ge=0, le=1, help="blur severity (CleanVision: quality < 0.29)")
    dark: float = option(0.68, ge=0, le=1, help="1 - 99th percentile of brightness (CleanVision: p99 < 0.32)")
    light: float = option(0.95, ge=0, le=1, help="5th percentile of brightness (CleanVision: 1 - p5 < 0.05)")
    low_information: float = option(0.7, ge=0, le=1, help="1 - entropy / 10 bits (CleanVision: entropy < 3 bits)")
    near_constant: float = option(0.98, ge=0, le=1, help="1 - colour std / 127.5 (0.98: std < 2.55, 1% of "
                                                         "the 8-bit range)")
    grayscale: float = option(0.99, ge=0, le=1, help="1 - p99 of max-min channel difference / 255 (0.99: "
                                                     "channels differ by < 2.55 levels, JPEG noise included)")
    grayscale_max_share: float = option(0.5, ge=0, le=1, help="flag grayscale images only when at most this "
                                                              "share of the dataset is grayscale")
    odd_size: float = option(3.5, gt=0, help="robust z-score of log area (Iglewicz-Hoaglin's 3.5)")
    odd_aspect_ratio: float = option(3.5, gt=0, help="robust z-score of log aspect ratio")
    odd_min_factor: float = option(2.0, ge=1, help="an area or aspect ratio within this factor of the "
                                                   "dataset median is never odd")

    def __post_init__(self) -> None:
        # option bounds are checked at recipe load; these two would break the math for library callers
        if self.odd_min_factor < 1:
            raise ConfigValueError("odd_min_factor", f"expected >= 1, got {self.odd_min_factor}")
        for name in ("odd_size", "odd_aspect_ratio"):
            if getattr(self, name) <= 0:
                raise ConfigValueError(name, f"expected > 0, got {getattr(self, name)}")


@dataclass(frozen=True, eq=False)
class QualityIssues:
    """Per-image severity ``scores`` and ``flags`` (N,) per checked issue type, plus the dataset
    ``statistics`` the relative checks used (median and spread of log area and log aspect ratio,
    grayscale share)."""

    checks: tuple[str, ...]
    scores: Mapping[str, np.ndarray]
    flags: Mapping[str, np.ndarray]
    thresholds: QualityThresholds
    statistics: Mapping[str, float]

    def counts(self) -> dict[str, int]:
        return {issue: int(self.flags[issue].sum()) for issue in self.checks}

    def ranking(self, issue: str) -> np.ndarray:
        """Rows flagged for ``issue``, most severe first (ties in row order)."""
        rows = np.flatnonzero(self.flags[issue])
        return rows[np.argsort(-self.scores[issue][rows], kind="stable")]

    @property
    def any_issue(self) -> np.ndarray:
        """(N,) bool: flagged for at least one issue type."""
        return np.logical_or.reduce([self.flags[i] for i in self.checks])


def check_issue_types(checks: Sequence[str]) -> tuple[str, ...]:
    """``checks`` without repeats, or a ValueError naming an unknown one (or none given)."""
    if not len(checks):
        raise ValueError(f"`checks` is empty; name at least one of {', '.join(ISSUE_TYPES)}")
    unknown = [c for c in checks if c not in ISSUE_TYPES]
    if unknown:
        raise ValueError(f"unknown image-quality check {unknown[0]!r}; known: {', '.join(ISSUE_TYPES)}")
    return tuple(dict.fromkeys(checks))


def property_names(checks: Sequence[str] = ISSUE_TYPES) -> tuple[str, ...]:
    """The measurements :func:`image_properties` returns for these checks, in a fixed order."""
    wanted = {p for c in check_issue_types(checks) for p in PROPERTIES[c]}
    return ("height", "width") + tuple(p for c in ISSUE_TYPES for p in PROPERTIES[c] if p in wanted)


# --- measuring (per batch) ---------------------------------------------------------------------


def image_properties(images: np.ndarray | Sequence[np.ndarray], *,
                     checks: Sequence[str] = ISSUE_TYPES) -> dict[str, np.ndarray]:
    """Per-image measurements ``{name: (B,) float64}`` of a batch (names: :func:`property_names`).

    ``images`` is a uint8 ``(B, H, W, 3)`` stack or a sequence of uint8 ``(H_i, W_i, 3)`` arrays of
    any sizes (measured per size group, see the module docstring).
    """
    names = property_names(checks)
    if isinstance(images, np.ndarray):
        _check_image(images, "images", batch=True)
        groups = [(np.arange(len(images)), images)] if len(images) else []
        n = len(images)
    else:
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            _check_image(image, f"images[{i}]", batch=False)
            by_shape.setdefault(image.shape, []).append(i)
        groups = [(np.asarray(rows), np.stack([images[i] for i in rows])) for rows in by_shape.values()]
        n = len(images)
    out = {name: np.empty(n, dtype=np.float64) for name in names}
    for rows, stack in groups:
        measured = _measure_group(stack, names)
        for name in names:
            out[name][rows] = measured[name]
    return out


def measure_images(batches: Iterable[np.ndarray | Sequence[np.ndarray]], *,
                   checks: Sequence[str] = ISSUE_TYPES) -> dict[str, np.ndarray]:
    """:func:`image_properties` of every batch, concatenated: only a few numbers per image are kept,
    so any number of images streams through in batches."""
    names = property_names(checks)
    parts = [image_properties(batch, checks=checks) for batch in batches]
    return {name: np.concatenate([p[name] for p in parts]) if parts else np.zeros(0) for name in names}


def _check_image(image: np.ndarray, what: str, *, batch: bool) -> None:
    ndim = 4 if batch else 3
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != ndim or image.shape[-1] != 3:
        shape = "(B, H, W, 3)" if batch else "(H, W, 3)"
        got = f"dtype {image.dtype} and shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"`{what}` must be a uint8 {shape} RGB array, got {got}")
    if image.shape[-3] == 0 or image.shape[-2] == 0:
        raise ValueError(f"`{what}` has an empty side: shape {image.shape}")


def _block_mean(x: np.ndarray, factor: int) -> np.ndarray:
    """Area downscale of uint8 planes ``(..., H, W)`` by an integer factor (the remainder rows/columns
    are cut), rounded back to uint8 as an 8-bit image would be: sums of strided row, then column, slices."""
    if factor <= 1:
        return x
    h, w = x.shape[-2:]
    fh, fw = min(factor, h), min(factor, w)
    hh, ww = h // fh, w // fw
    dtype = np.uint16 if fh * fw * 255 < 2 ** 16 else np.uint32
    rows = x[..., 0:hh * fh:fh, :ww * fw].astype(dtype)
    for k in range(1, fh):
        rows += x[..., k:hh * fh:fh, :ww * fw]
    total = rows[..., 0::fw].copy()
    for k in range(1, fw):
        total += rows[..., k::fw]
    n = fh * fw
    total += n // 2  # round half up, in integers
    return (total // n).astype(np.uint8)


def _measure_group(x: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Measurements of images of one size, ``x`` uint8 (B, H, W, 3). They run on colour planes
    (B, 3, H, W): NumPy's inner loops then run along image rows instead of over 3 channels."""
    b, h, w = x.shape[:3]
    out: dict[str, np.ndarray] = {"height": np.full(b, float(h)), "width": np.full(b, float(w))}
    planes = _block_mean(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), math.ceil(max(h, w) / ANALYSIS_SIDE))
    r, g, bl = (planes[:, c].reshape(b, -1) for c in range(3))
    if "brightness_p99" in names or "brightness_p5" in names:
        # percentiles of the squared brightness, then the root: it is monotone, so order statistics commute
        luts = [np.float32(wt / 255 ** 2) * np.arange(256, dtype=np.float32) ** 2 for wt in _BRIGHTNESS_WEIGHTS]
        squared = luts[0][r] + luts[1][g] + luts[2][bl]
        p5, p99 = _percentiles(squared, (5, 99), transform=np.sqrt)
        out["brightness_p5"], out["brightness_p99"] = p5, p99
    if "entropy" in names or "pixel_std" in names:
        hist = _value_histograms(planes.reshape(b, 3, -1))  # (B, 768): counts of each channel's values
        if "entropy" in names:  # H = log2(n) - sum(c log2 c) / n, with c log2 c from a table
            total = hist.sum(axis=1).astype(np.float64)
            c = np.arange(int(hist.max()) + 1, dtype=np.float64)
            xlogx = c * np.log2(np.maximum(c, 1))
            out["entropy"] = np.log2(total) - xlogx[hist].sum(axis=1) / total
        if "pixel_std" in names:  # RMS of the per-channel stds: the spread of colours around the mean colour
            v = np.arange(256, dtype=np.float64)
            counts = hist.reshape(b, 3, 256)
            per_channel = counts.sum(axis=2)
            mean = counts @ v / per_channel
            var = counts @ (v * v) / per_channel - mean ** 2
            out["pixel_std"] = np.sqrt(np.maximum(var, 0.0).mean(axis=1))
    if "chroma_p99" in names:
        chroma = np.maximum(np.maximum(r, g), bl) - np.minimum(np.minimum(r, g), bl)
        (out["chroma_p99"],) = _percentiles(chroma, (99,))
    if "edge_std" in names:
        gray = _luma(planes)
        gray = _block_mean(gray, math.ceil(max(gray.shape[1:]) / BLUR_SIDE))
        out["edge_std"] = _find_edges(gray).reshape(b, -1).std(axis=1)
        hist = _value_histograms(gray.reshape(b, 1, -1))
        out["histogram_std"] = hist.std(axis=1)
    return out


def _value_histograms(planes: np.ndarray) -> np.ndarray:
    """(B, 256 C) counts of each channel's values of uint8 (B, C, P), channel after channel (PIL's
    ``histogram()``): one ``bincount`` over the batch, each image and channel offset into its own 256 bins."""
    b, c, _ = planes.shape
    offsets = (np.arange(b * c, dtype=np.intp) * 256).reshape(b, c, 1)
    flat = np.add(planes, offsets, dtype=np.intp).ravel()
    return np.bincount(flat, minlength=b * c * 256).reshape(b, c * 256)


def _percentiles(x: np.ndarray, qs: Sequence[float], *, transform=None) -> list[np.ndarray]:
    """Per-row percentiles of ``x`` (B, P) as ``np.percentile(..., axis=1)`` computes them (linear
    interpolation between order statistics), from one partial sort; ``transform`` (monotone) is
    applied to the order statistics before interpolating."""
    n = x.shape[1]
    positions = [q / 100 * (n - 1) for q in qs]
    lows = [int(math.floor(pos)) for pos in positions]
    kth = sorted({k for lo in lows for k in (lo, min(lo + 1, n - 1))})
    part = np.partition(x, kth, axis=1)
    out = []
    for pos, lo in zip(positions, lows):
        a = part[:, lo].astype(np.float64)
        z = part[:, min(lo + 1, n - 1)].astype(np.float64)
        if transform is not None:
            a, z = transform(a), transform(z)
        out.append(a + (pos - lo) * (z - a))
    return out


def _luma(planes: np.ndarray) -> np.ndarray:
    """Pillow's ``convert("L")`` of uint8 planes (B, 3, H, W): ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``."""
    r, g, b = (planes[:, i].astype(np.int32) for i in range(3))
    return ((r * _LUMA[0] + g * _LUMA[1] + b * _LUMA[2] + 0x8000) >> 16).astype(np.uint8)


def _find_edges(gray: np.ndarray) -> np.ndarray:
    """PIL's ``ImageFilter.FIND_EDGES`` response of uint8 (B, H, W) on the interior: ``8 c - sum(8
    neighbours)`` clipped to [0, 255], shape (B, H - 2, W - 2). Pillow copies the one-pixel border through
    unfiltered; those gray values are not edges, and at <= 64 px they are 6-12% of the pixels, enough to
    hide a blurred image's missing edges, so they are left out (images under 3 px: the image itself)."""
    g = gray.astype(np.int32)
    h, w = g.shape[1:]
    if h < 3 or w < 3:
        return g
    box = np.zeros((g.shape[0], h - 2, w - 2), dtype=np.int32)
    for dy in range(3):
        for dx in range(3):
            box += g[:, dy:dy + h - 2, dx:dx + w - 2]
    return np.clip(9 * g[:, 1:-1, 1:-1] - box, 0, 255)


# --- scoring (whole dataset) -------------------------------------------------------------------


def find_quality_issues(properties: Mapping[str, np.ndarray], *, thresholds: QualityThresholds | None = None,
                        checks: Sequence[str] = ISSUE_TYPES) -> QualityIssues:
    """Severity scores and flags of every image from its measurements (:func:`measure_images`).

    Dataset-relative checks (odd size / aspect ratio, grayscale) use statistics of all the given
    images, so pass the measurements of the whole dataset at once.
    """
    thresholds = thresholds or QualityThresholds()
    checks = check_issue_types(checks)
    missing = [p for p in property_names(checks) if p not in properties]
    if missing:
        raise ValueError(f"`properties` lacks {', '.join(missing)}; measure with the same `checks`")
    n = len(properties["height"])
    for name in property_names(checks):
        if np.shape(properties[name]) != (n,):
            raise ValueError(f"`properties['{name}']` has shape {np.shape(properties[name])}, expected ({n},)")
    p = {k: np.asarray(v, dtype=np.float64) for k, v in properties.items()}
    scores: dict[str, np.ndarray] = {}
    statistics: dict[str, float] = {}
    dark = 1 - np.clip(p["brightness_p99"], 0, 1) if "brightness_p99" in p else None
    light = np.clip(p["brightness_p5"], 0, 1) if "brightness_p5" in p else None
    if "blurry" in checks:
        edges = 1 - np.exp(-BLUR_NORMALIZING_FACTOR * p["edge_std"])
        spread = 1 - np.exp(-BLUR_NORMALIZING_FACTOR * p["histogram_std"])
        spread = np.where(spread > BLUR_HISTOGRAM_THRESHOLD, spread, 0.0)
        # an under- or over-exposed image has weak edges because of its exposure (CleanVision 0.2 added a dark
        # image's darkness to its blur quality; light images are treated alike): it is dark or light, not blurry
        exposure = np.where(dark > thresholds.dark, dark, 0.0) + np.where(light > thresholds.light, light, 0.0)
        scores["blurry"] = 1 - np.minimum(edges + spread + exposure, 1)
    if "dark" in checks:
        scores["dark"] = dark
    if "light" in checks:
        scores["light"] = light
    if "low_information" in checks:
        scores["low_information"] = 1 - np.minimum(ENTROPY_NORMALIZING_FACTOR * p["entropy"], 1)
    if "near_constant" in checks:
        scores["near_constant"] = 1 - np.minimum(p["pixel_std"] / NEAR_CONSTANT_SCALE, 1)
    if "grayscale" in checks:
        scores["grayscale"] = 1 - np.clip(p["chroma_p99"] / 255, 0, 1)
    floor = math.log(thresholds.odd_min_factor)
    for issue, x in (("odd_size", np.log(p["height"] * p["width"])), ("odd_aspect_ratio",
                                                                       np.log(p["width"] / p["height"]))):
        if issue in checks:
            z, median, spread = _robust_deviation(x, floor=floor / getattr(thresholds, issue))
            scores[issue] = z
            statistics[f"{issue}_median"] = float(math.exp(median)) if n else float("nan")
            statistics[f"{issue}_spread"] = spread
    flags = {issue: scores[issue] > getattr(thresholds, issue) for issue in checks}
    if "grayscale" in checks:
        share = float(flags["grayscale"].mean()) if n else 0.0
        statistics["grayscale_share"] = share
        statistics["grayscale_checked"] = share <= thresholds.grayscale_max_share
        if not statistics["grayscale_checked"]:
            flags["grayscale"] = np.zeros(n, dtype=bool)
    return QualityIssues(checks=checks, scores=scores, flags=flags, thresholds=thresholds, statistics=statistics)


def _robust_deviation(x: np.ndarray, *, floor: float) -> tuple[np.ndarray, float, float]:
    """``(|x - median| / max(MAD / 0.6745, floor), median, that spread)``: the modified z-score, with a
    floor on the spread so that a dataset of one size (MAD 0) does not make every pixel of difference odd."""
    if len(x) == 0:
        return np.zeros(0), float("nan"), float(floor)
    median = float(np.median(x))
    spread = max(float(np.median(np.abs(x - median))) / MODIFIED_Z, floor)
    return np.abs(x - median) / spread, median, spread


def threshold_dict(thresholds: QualityThresholds, checks: Sequence[str] = ISSUE_TYPES) -> dict[str, float]:
    """The thresholds that apply to ``checks`` (plus the dataset-level knobs they use), for records."""
    checks = check_issue_types(checks)
    out = {f.name: getattr(thresholds, f.name) for f in fields(thresholds) if f.name in checks}
    if "grayscale" in checks:
        out["grayscale_max_share"] = thresholds.grayscale_max_share
    if "odd_size" in checks or "odd_aspect_ratio" in checks:
        out["odd_min_factor"] = thresholds.odd_min_factor
    return out
