"""ReLabel on CIFAR-10: one-hot vs global soft vs localized (LabelPooling) targets, with and without CutMix.

Run (the full benchmark; hours on a CPU, minutes on a GPU)::

    python bench/relabel.py --epochs 60 --seeds 0 1 2 --width 64 --annotator-model resnet20-cifar \\
        --annotator-epochs 60

Reduced preview (``--quick``: 1 seed, 4 epochs, a width-32 student, a small ConvNet annotator)::

    python bench/relabel.py --quick

Data: the lossless CIFAR-10 subset in ../shared/data/cifar10 (4,660 train, 932 test images).
Every student is the same ConvNet (depth 3, batch norm), trained with ``curate.learn.fit`` for the
same epochs on the same random-resized crops + flips (``ResizedCropData``); only the targets
(``onehot`` labels, ``soft`` = the annotator's global softmax, ``relabel`` = the label map pooled
over each crop) and CutMix (alpha 1, ``--cutmix-prob``; region-exact targets for label maps) change.
Two settings:

- ``resnet56``: the pretrained akamaster ResNet-56 annotates the 4,660 train images. It was trained
  on all of CIFAR-10's train split, these images included, so its maps are confident and close to
  the labels: an optimistic setting.
- ``half``: an annotator trained here on one half of the train images annotates the other half,
  and students train on that second half only: the honest setting.

Prints held-out accuracy (mean and 95% t-interval over seeds), annotation throughput (images/s,
end to end through ``curate.relabel.annotate`` from a PNG table), and the training time per step of
LabelPooling targets against one-hot targets under identical crops (target: at most 1.15x).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from curate.data import make_table
from curate.learn import ArrayData, Augment, fit, predict_images
from curate.learn.mixing import CutMix
from curate.models import create_model
from curate.relabel import LabelMapStore, ResizedCrop, ResizedCropData, annotate, create_annotator, multi_labels

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RESNET56 = SHARED / "models" / "cifar10_resnet_akamaster" / "resnet56.safetensors"
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def interval(values: list[float]) -> str:
    """``mean ± half-width`` of the 95% t-interval, in percent."""
    mean = 100 * float(np.mean(values))
    if len(values) < 2:
        return f"{mean:.1f} (n=1)"
    half = T975.get(len(values) - 1, 1.96) * 100 * float(np.std(values, ddof=1)) / math.sqrt(len(values))
    return f"{mean:.1f} ± {half:.1f} (n={len(values)})"


def load(split: str) -> tuple[np.ndarray, np.ndarray]:
    root = SHARED / "cifar10" / split
    return np.load(root / "images.npy"), np.load(root / "labels.npy")


def label_maps(model, images: np.ndarray, labels: np.ndarray, args, folder: Path, tag: str):
    """Annotate ``images`` through a PNG table; returns (maps, global probs, images/s)."""
    table = make_table(ids=[f"{tag}/{i}" for i in range(len(images))], images=images, labels=labels,
                       class_names=[str(i) for i in range(10)], splits="train")
    annotator = create_annotator("dense_classifier", model, resolution=args.resolution, top_k=args.top_k,
                                 device=args.device)
    done = annotate(annotator, table, folder / tag, batch_size=256, signature=tag, progress=False)
    store = LabelMapStore(done.folder)
    scores = store.read_array("label_scores")
    chosen = multi_labels(scores, threshold=0.25).sum(1)
    probs = store.read_array("global_probs")
    print(f"  [{tag}] {len(images)} images annotated at {done.images_per_s:.0f} images/s, map "
          f"{store.info.height}x{store.info.width} top-{store.info.top_k}; annotator top-1 = label on "
          f"{100 * (probs.argmax(1) == labels).mean():.1f}%, mean global confidence {probs.max(1).mean():.3f}, "
          f"classes/image (area >= 0.25) {chosen.mean():.2f}, multi-label share {100 * (chosen >= 2).mean():.1f}%")
    return store.read(), probs, done.images_per_s


def student(args, seed: int):
    return create_model("convnet", num_classes=10, width=args.width, depth=3, norm="batchnorm", seed=seed)


def train_student(args, images, labels, maps, probs, targets: str, mix: bool, seed: int, test):
    """Held-out accuracy and the mean training seconds per step."""
    data = ResizedCropData(
        images, num_classes=10, crop=ResizedCrop(scale=(args.crop_scale, 1.0)),
        maps=maps if targets == "relabel" else None,
        targets={"onehot": labels, "soft": probs}.get(targets),
        mixer=CutMix(alpha=1.0, prob=args.cutmix_prob) if mix else None,
    )
    model = student(args, seed)
    result = fit(model, data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=5e-4,
                 targets=data.target_kind, seed=seed, device=args.device, progress=False, channels_last=True)
    steps = args.epochs * math.ceil(len(images) / args.batch_size)
    seconds = sum(h["seconds"] for h in result.history) / steps
    accuracy = float((predict_images(model, test[0], device=args.device).argmax(1) == test[1]).mean())
    return accuracy, seconds


def compare(name: str, args, images, labels, maps, probs, test, rows: list) -> None:
    for mix in (False, True):
        for targets in ("onehot", "soft", "relabel"):
            runs = [train_student(args, images, labels, maps, probs, targets, mix, seed, test) for seed in args.seeds]
            label = f"{targets}{' + CutMix' if mix else ''}"
            rows.append((name, label, interval([a for a, _ in runs]), 1000 * float(np.mean([s for _, s in runs]))))
            print(f"  {name:9s} {label:18s} {rows[-1][2]:>18s}  {rows[-1][3]:7.1f} ms/step", flush=True)


def step_time_ratio(args, images, labels, maps, *, mix: bool, repeats: int = 7, rows: int = 1024) -> float:
    """Median ratio of LabelPooling to one-hot seconds per step: one-epoch fits on the same rows and crops,
    interleaved so that load on a shared machine hits both alike."""
    subset = slice(0, min(rows, len(images)))
    mixer = CutMix(alpha=1.0, prob=args.cutmix_prob) if mix else None
    crop = ResizedCrop(scale=(args.crop_scale, 1.0))
    onehot = ResizedCropData(images[subset], targets=labels[subset], num_classes=10, crop=crop, mixer=mixer)
    pooled = ResizedCropData(images[subset], maps=maps.index(subset), num_classes=10, crop=crop, mixer=mixer)
    model = student(args, 0)
    ratios = []
    for _ in range(repeats):
        seconds = {}
        for name, data in (("onehot", onehot), ("relabel", pooled)):
            result = fit(model, data, epochs=1, batch_size=args.batch_size, lr=args.lr, targets=data.target_kind,
                         device=args.device, progress=False, channels_last=True)
            seconds[name] = result.history[0]["seconds"]
        ratios.append(seconds["relabel"] / seconds["onehot"])
    return float(np.median(ratios))


def split_halves(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Alternate images of each class between two halves (stratified, deterministic)."""
    first = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        first[np.flatnonzero(labels == c)[::2]] = True
    return np.flatnonzero(first), np.flatnonzero(~first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--width", type=int, default=64, help="student ConvNet width")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--crop-scale", type=float, default=0.25, help="lower end of the crops' area share")
    parser.add_argument("--cutmix-prob", type=float, default=0.5, help="share of batches mixed (CIFAR: 0.5)")
    parser.add_argument("--resolution", type=int, default=None, help="annotator input size (default: 32)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--annotator-model", default="resnet20-cifar", help="annotator trained on one half")
    parser.add_argument("--annotator-epochs", type=int, default=60)
    parser.add_argument("--settings", nargs="+", default=["resnet56", "half"], choices=["resnet56", "half"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="reduced preview: 1 seed, 4 epochs, width 32, "
                                                             "a ConvNet annotator trained 6 epochs")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.seeds, args.width = 4, [0], 32
        args.annotator_model, args.annotator_epochs = "convnet", 6
    if args.threads:
        torch.set_num_threads(args.threads)
    images, labels = load("train")
    test = load("test")
    print(f"CIFAR-10 subset: {len(images)} train, {len(test[0])} test; student convnet width {args.width}, "
          f"{args.epochs} epochs, seeds {args.seeds}; crops scale ({args.crop_scale}, 1); device {args.device}; "
          f"CPU threads {torch.get_num_threads()}")
    rows: list = []
    timing = None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if "resnet56" in args.settings:
            print("resnet56: pretrained ResNet-56 (saw all of CIFAR-10 train) annotates the 4,660 train images")
            annotator = create_model("resnet56-cifar", num_classes=10, weights=RESNET56)
            maps, probs, _ = label_maps(annotator, images, labels, args, folder, "resnet56")
            compare("resnet56", args, images, labels, maps, probs, test, rows)
            timing = (images, labels, maps)
        if "half" in args.settings:
            first, second = split_halves(labels)
            print(f"half: {args.annotator_model} trained {args.annotator_epochs} epochs on {len(first)} images "
                  f"annotates the other {len(second)}; students train on those")
            cfg = {"norm": "batchnorm", "width": 64} if args.annotator_model == "convnet" else {}
            annotator = create_model(args.annotator_model, num_classes=10, weights=None, seed=0, **cfg)
            fit(annotator, ArrayData(images[first], labels[first], augment=Augment()), epochs=args.annotator_epochs,
                batch_size=args.batch_size, lr=args.lr, seed=0, device=args.device, progress=False,
                channels_last=True)
            acc = float((predict_images(annotator, test[0], device=args.device).argmax(1) == test[1]).mean())
            print(f"  annotator test accuracy {100 * acc:.1f}%")
            maps, probs, _ = label_maps(annotator, images[second], labels[second], args, folder, "half")
            compare("half", args, images[second], labels[second], maps, probs, test, rows)
            timing = timing or (images[second], labels[second], maps)

    print("\n| setting | targets | test accuracy % (mean ± 95% CI) | train ms/step |")
    print("|---|---|---|---|")
    for name, label, acc, ms in rows:
        print(f"| {name} | {label} | {acc} | {ms:.0f} |")
    for mix in (False, True):
        if timing is not None:
            ratio = step_time_ratio(args, *timing, mix=mix)
            print(f"LabelPooling step time vs one-hot{' with CutMix' if mix else ''}: {ratio:.3f}x "
                  "(median of interleaved one-epoch fits on 1,024 images; target <= 1.15x)")

if __name__ == "__main__":
    main()
