"""The self-supervised encoder (the `ssl` step's SimCLR), trained here offline, beside classifier features.

Run: ``python bench/ssl_encoder.py [--epochs 25] [--threads 1] [--save DIR]`` (not in CI).

Data: the CIFAR-10 lossless subset of ``../shared/data/cifar10`` (4,660 train / 932 test) and its JPEG copies
(``jpeg/``, re-encoded by their source repository). A ResNet-20 is trained from a random init with NT-Xent on
the train images, labels unread. Every encoder is then scored the same way:

1. **k-NN accuracy** on the held-out test split: cosine k-NN (k 20, softmax weights at temperature 0.07, the
   ``knn`` probe) over the train images' embeddings and labels, with a 95% bootstrap interval over test images;
2. **near-duplicate separation**: each JPEG re-encode of an image of the lossless subset is a query against all
   5,592 lossless images; ``d_copy`` is its cosine distance to its own original, ``d_other`` to the nearest
   other image. Reported: the share of queries whose original is the nearest image (top-1), the AUROC of
   ``d_copy`` against ``d_other`` over all query pairs (1: one threshold splits copies from distinct images),
   and the medians.

Encoders: the supervised ResNet-20 (bundled akamaster CIFAR-10 weights: a classifier trained on these classes
with labels), the SSL ResNet-20 trained here, and the same architecture at its random init (the floor).
``--save DIR`` writes the SSL model (a curate model folder) for ``bench/synth.py --encoder DIR``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"


def load_cifar():
    out = {}
    for split in ("train", "test"):
        folder = SHARED / split
        out[split] = (np.load(folder / "images.npy"), np.load(folder / "labels.npy"), np.load(folder / "indices.npy"))
    return out


def jpeg_pairs(data) -> tuple[np.ndarray, np.ndarray]:
    """``(jpeg images (M, 32, 32, 3), row of each one's original in the gallery train + test)``."""
    from PIL import Image

    gallery = {(split, int(i)): pos for pos, (split, i) in enumerate(
        [("train", i) for i in data["train"][2]] + [("test", i) for i in data["test"][2]])}
    images, rows = [], []
    with open(SHARED / "jpeg" / "manifest.csv") as fh:
        for rec in csv.DictReader(fh):
            key = (rec["split"], int(rec["official_index"]))
            if key in gallery:
                images.append(np.asarray(Image.open(SHARED / "jpeg" / rec["path"]).convert("RGB")))
                rows.append(gallery[key])
    return np.stack(images), np.asarray(rows)


def knn_accuracy(train_x, train_y, test_x, test_y, *, seed: int = 0) -> tuple[float, float, float]:
    from curate.learn import KnnProbe

    correct = KnnProbe(k=20, temperature=0.07).predict_proba(train_x, train_y, test_x, num_classes=10).argmax(1) == test_y
    rng = np.random.default_rng(seed)
    boot = [correct[rng.integers(0, len(correct), len(correct))].mean() for _ in range(2000)]
    return float(correct.mean()), float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))


def separation(gallery: np.ndarray, queries: np.ndarray, originals: np.ndarray) -> dict[str, float]:
    """Cosine distances of each query to its original and to the nearest other gallery row."""
    from audits.skill import auroc

    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    dist = 1 - q @ g.T
    rows = np.arange(len(q))
    d_copy = dist[rows, originals].copy()
    dist[rows, originals] = np.inf
    d_other = dist.min(1)
    # AUROC of "copy closer than a distinct image" over all (query, query') pairs: P(d_other > d_copy)
    n = len(d_copy)
    score = auroc(np.r_[np.zeros(n, bool), np.ones(n, bool)], np.r_[d_copy, d_other])
    return {"top1": float((d_copy < d_other).mean()), "auroc": score,
            "median_copy": float(np.median(d_copy)), "median_other": float(np.median(d_other))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, default=None, help="write the SSL model folder here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from curate.learn.ssl import train_ssl
    from curate.models import create_model, save_model
    from curate.learn.embed import embed_images

    data = load_cifar()
    (tr_x, tr_y, _), (te_x, te_y, _) = data["train"], data["test"]
    jpegs, originals = jpeg_pairs(data)
    gallery_x = np.concatenate([tr_x, te_x])
    print(f"threads={torch.get_num_threads()} train={len(tr_x)} test={len(te_x)} jpeg queries={len(jpegs)} "
          f"gallery={len(gallery_x)} epochs={args.epochs} batch={args.batch_size}")

    started = time.perf_counter()
    ssl_model = create_model("resnet20-cifar", num_classes=10, weights=None, seed=args.seed)
    result = train_ssl(ssl_model, tr_x, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                       device="cpu", progress=True)
    minutes = (time.perf_counter() - started) / 60
    print(f"ssl: {minutes:.1f} min, loss {result.history[0]['loss']:.3f} -> {result.history[-1]['loss']:.3f}")
    if args.save:
        ssl_model.head_trained = False
        save_model(ssl_model, args.save)

    encoders = {
        "supervised ResNet-20 (CIFAR-10 labels)": create_model("resnet20-cifar", num_classes=10),
        f"SSL ResNet-20 (SimCLR, {args.epochs} epochs, no labels)": ssl_model,
        "random-init ResNet-20 (floor)": create_model("resnet20-cifar", num_classes=10, weights=None,
                                                      seed=args.seed),
    }
    print(f"\n{'encoder':48s} {'k-NN acc [95% CI]':>22s} {'dup top-1':>9s} {'dup AUROC':>9s} "
          f"{'med d_copy':>10s} {'med d_other':>11s}")
    for name, model in encoders.items():
        feats = {key: embed_images(model, x, device="cpu") for key, x in
                 (("train", tr_x), ("test", te_x), ("jpeg", jpegs))}
        acc, lo, hi = knn_accuracy(feats["train"], tr_y, feats["test"], te_y)
        sep = separation(np.concatenate([feats["train"], feats["test"]]), feats["jpeg"], originals)
        print(f"{name:48s} {acc:7.3f} [{lo:.3f}, {hi:.3f}] {sep['top1']:9.3f} {sep['auroc']:9.4f} "
              f"{sep['median_copy']:10.4f} {sep['median_other']:11.4f}")


if __name__ == "__main__":
    main()
