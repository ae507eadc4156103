"""Image-quality throughput: vectorized measuring against decoding alone and against CleanVision's way
(PIL, one image at a time), on the same images in the same run.

Run: ``OMP_NUM_THREADS=1 nice -n 10 python bench/image_quality.py [--repeats 3] [--single 1000]``.
Data: the bundled demo table (CIFAR-10, 2,932 PNGs), the 5,000 CIFAR-10 train JPEGs of
``../shared/data/cifar10/jpeg`` and the 1,000 ImageNet sample JPEGs (short side 256, mixed sizes:
per-size-group measuring) of ``../shared/data/imagenet/samples`` when present. Per data set, images/s of:

- ``decode only``: ``iter_image_batches`` (one decode thread, no prefetch) consumed and dropped;
- ``decode + measure + flag``: what the step computes, serially on one thread (decode a batch, measure it,
  then flag the whole set);
- ``measure only``: ``image_properties`` on the pre-decoded batches (256 images, ragged lists as the step
  passes them);
- ``CleanVision's way``: per image, PIL ``convert("L")``, ``FIND_EDGES``, ``ImageStat``, ``entropy()``,
  histogram and NumPy percentiles of brightness and channel spread (the same measurements), on
  ``--single`` pre-decoded images.

Timings are the best of ``--repeats`` runs (the CPU may be shared); ratios compare paths of the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageStat

from audits.image_quality import find_quality_issues, image_properties, measure_images
from curate.data import iter_image_batches

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BATCH = 256


def load(kind: str, **config):
    from curate.data.sources import load_source, source_config_class

    with tempfile.TemporaryDirectory() as cache:
        return load_source(source_config_class(kind)(**config), cache_dir=cache, progress=False)


def tables():
    yield "demo (CIFAR-10 PNG, 32x32)", load("demo")
    jpeg = SHARED / "cifar10" / "jpeg"
    if jpeg.is_dir():
        yield "CIFAR-10 train JPEG (32x32)", load("imagefolder", path=jpeg, split="train")
    samples = SHARED / "imagenet" / "samples"
    if samples.is_dir():
        yield "ImageNet samples JPEG (short side 256, mixed sizes)", load_flat_folder(samples / "images")


def load_flat_folder(folder: Path):
    """A table of every JPEG in a flat folder (one class), as path references."""
    from curate.data import make_table

    files = sorted(folder.glob("*.JPEG"))
    return make_table(ids=[f.name for f in files], images=files, labels=np.zeros(len(files), dtype=np.int64),
                      class_names=["x"], splits="train")


def best_seconds(run, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def batches(table):
    return (b["image"] for b in iter_image_batches(table, batch_size=BATCH, workers=1, prefetch=False, stack=False))


def cleanvision_way(image: np.ndarray) -> tuple:
    """The same measurements the way CleanVision takes them: one PIL image at a time."""
    pil = Image.fromarray(image)
    small = pil if max(pil.size) <= 64 else pil.resize((pil.width * 64 // max(pil.size), pil.height * 64 // max(pil.size)))
    gray = small.convert("L")
    edges = ImageStat.Stat(gray.filter(ImageFilter.FIND_EDGES)).var[0] ** 0.5
    spread = np.std(gray.histogram())
    x = image.astype(np.float64)
    brightness = np.sqrt(0.241 * x[..., 0] ** 2 + 0.691 * x[..., 1] ** 2 + 0.068 * x[..., 2] ** 2) / 255
    p5, p99 = np.percentile(brightness, [5, 99])
    chroma = np.percentile(image.max(axis=2).astype(np.int16) - image.min(axis=2), 99)
    return edges, spread, pil.entropy(), p5, p99, chroma, np.std(x.reshape(-1, 3), axis=0), pil.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single", type=int, default=1000, help="images for CleanVision's per-image way")
    args = parser.parse_args()
    print("| data | images | decode only | decode + measure + flag | measure only | CleanVision's way "
          "(PIL, per image) | measure: x decode, x CleanVision |")
    print("|---|---|---|---|---|---|---|")
    for what, table in tables():
        n = len(table)
        decoded = [list(batch) for batch in batches(table)]
        decode = best_seconds(lambda: [None for _ in batches(table)], args.repeats)
        full = best_seconds(lambda: find_quality_issues(measure_images(batches(table))), args.repeats)
        measure = best_seconds(lambda: [image_properties(batch) for batch in decoded], args.repeats)
        single = [image for batch in decoded for image in batch][:args.single]
        per_image = best_seconds(lambda: [cleanvision_way(image) for image in single], args.repeats) / len(single) * n
        issues = find_quality_issues(measure_images(iter(decoded)))
        counts = ", ".join(f"{k} {v}" for k, v in issues.counts().items() if v)
        print(f"| {what} | {n:,} | {n / decode:,.0f} | {n / full:,.0f} | {n / measure:,.0f} | {n / per_image:,.0f} | "
              f"{decode / measure:.2f}x, {per_image / measure:.1f}x |")
        print(f"<!-- {what}: flagged {counts or 'nothing'} -->")


if __name__ == "__main__":
    main()
