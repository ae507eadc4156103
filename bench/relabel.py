"""ReLabel on CIFAR-10: one-hot vs global soft vs localized (LabelPooling) targets, plain, with CutMix and with ResizeMix.

Run (the README's shortened protocol: 45.5 minutes on one thread of a shared 2-core CPU)::

    python bench/relabel.py --epochs 10 --seeds 0 1 2 --width 8 --annotator-epochs 16 --resnet56-rows half --threads 1

Longer protocol (the previous README table's budgets, not rerun since paper mixing became the default)::

    python bench/relabel.py --epochs 30 --seeds 0 1 2 --width 32 --annotator-epochs 60 --threads 1

Reduced preview (``--quick``: 1 seed, 4 epochs, a width-32 student, a ResNet-20 annotator trained 4 epochs)::

    python bench/relabel.py --quick

Data: the lossless CIFAR-10 subset in ../shared/data/cifar10 (4,660 train, 932 test images).
Every student is the same ConvNet (depth 3, batch norm), trained with ``curate.learn.fit`` for the
same epochs on the same random-resized crops + flips (``ResizedCropData``); only the targets
(``onehot`` labels, ``soft`` = the annotator's global softmax, ``relabel`` = the label map pooled
over each crop) and the mixing change: none, CutMix (alpha 1) or ResizeMix (scale 0.1-0.8), each on
a share ``--mix-prob`` of the batches. Label-map targets are mixed as ReLabel's code does
(``paper``: the two whole-crop targets by pasted area) and, as a second row, region-exact
(``exact``: the pasted box pooled from the source map, the rest from the target map). A seed fixes
the crops and the mixing draws, so rows differ only in their targets; paired differences
(exact - paper) are printed. Two settings:

- ``resnet56``: the pretrained akamaster ResNet-56 annotates the 4,660 train images. It was trained
  on all of CIFAR-10's train split, these images included, so its maps are confident and close to
  the labels: an optimistic setting.
- ``half``: a ResNet-20 (``--annotator-model``; globally pooled, so its dense map is its linear
  head applied at every location as ReLabel's 1x1 convolution) trained here on one half of the
  train images annotates the other half, and students train on that second half only: the
  honest setting.

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
from curate.learn.mixing import CutMix, ResizeMix
from curate.models import create_model
from curate.relabel import LabelMapStore, ResizedCrop, ResizedCropData, annotate, create_annotator, multi_labels
from curate.stats import summarize

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RESNET56 = SHARED / "models" / "cifar10_resnet_akamaster" / "resnet56.safetensors"


def interval(values: list[float]) -> str:
    """``mean +- half-width`` of the 95% t-interval (:func:`curate.stats.summarize`), in percent."""
    stats = summarize(values)
    if stats["ci95"] is None:
        return f"{100 * stats['mean']:.1f} (n=1)"
    return f"{100 * stats['mean']:.1f} +- {100 * stats['ci95']:.1f}"


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


MIX_NAMES = {"none": "", "cutmix": " + CutMix", "resizemix": " + ResizeMix"}
# (targets, mix, relabel_mix): every row of the table, in order
VARIANTS = [(t, "none", "paper") for t in ("onehot", "soft", "relabel")] + [
    v for mix in ("cutmix", "resizemix")
    for v in ((("onehot", mix, "paper"), ("soft", mix, "paper"), ("relabel", mix, "paper"), ("relabel", mix, "exact")))]


def row_name(targets: str, mix: str, relabel_mix: str) -> str:
    name = {"onehot": "one-hot", "soft": "soft (global softmax)", "relabel": "relabel (LabelPooling)"}[targets]
    name += MIX_NAMES[mix]
    return name + (f" ({relabel_mix})" if targets == "relabel" and mix != "none" else "")


def mixer(args, mix: str):
    if mix == "cutmix":
        return CutMix(alpha=1.0, prob=args.mix_prob)
    return ResizeMix(prob=args.mix_prob) if mix == "resizemix" else None


def student(args, seed: int):
    return create_model("convnet", num_classes=10, width=args.width, depth=3, norm="batchnorm", seed=seed)


def train_student(args, images, labels, maps, probs, variant, seed: int, test):
    """Held-out accuracy and the mean training seconds per step."""
    targets, mix, relabel_mix = variant
    data = ResizedCropData(
        images, num_classes=10, crop=ResizedCrop(scale=(args.crop_scale, 1.0)),
        maps=maps if targets == "relabel" else None,
        targets={"onehot": labels, "soft": probs}.get(targets),
        mixer=mixer(args, mix), relabel_mix=relabel_mix,
    )
    model = student(args, seed)
    result = fit(model, data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=5e-4,
                 targets=data.target_kind, seed=seed, device=args.device, progress=False, channels_last=True)
    steps = args.epochs * math.ceil(len(images) / args.batch_size)
    seconds = sum(h["seconds"] for h in result.history) / steps
    accuracy = float((predict_images(model, test[0], device=args.device).argmax(1) == test[1]).mean())
    return accuracy, seconds


def compare(name: str, args, images, labels, maps, probs, test, results: dict) -> None:
    """Train every variant over the seeds; ``results[(name, variant)]`` = (accuracies, seconds per step)."""
    for variant in VARIANTS:
        if variant[1] not in args.mixes:
            continue
        runs = [train_student(args, images, labels, maps, probs, variant, seed, test) for seed in args.seeds]
        results[name, variant] = ([a for a, _ in runs], [s for _, s in runs])
        print(f"  {name:9s} {row_name(*variant):44s} {interval(results[name, variant][0]):>12s}  "
              f"{1000 * float(np.mean(results[name, variant][1])):6.1f} ms/step", flush=True)
    for mix in args.mixes:
        paper, exact = results.get((name, ("relabel", mix, "paper"))), results.get((name, ("relabel", mix, "exact")))
        if paper and exact:
            diff = [e - p for e, p in zip(exact[0], paper[0])]
            print(f"  {name:9s} relabel{MIX_NAMES[mix]}: exact - paper, paired by seed: {interval(diff)} points")


def step_time_ratio(args, images, labels, maps, *, mix: str, relabel_mix: str, repeats: int = 7,
                    rows: int = 1024) -> float:
    """Median ratio of LabelPooling to one-hot seconds per step: one-epoch fits on the same rows and crops,
    interleaved so that load on a shared machine hits both alike."""
    subset = slice(0, min(rows, len(images)))
    crop = ResizedCrop(scale=(args.crop_scale, 1.0))
    onehot = ResizedCropData(images[subset], targets=labels[subset], num_classes=10, crop=crop,
                             mixer=mixer(args, mix))
    pooled = ResizedCropData(images[subset], maps=maps.index(subset), num_classes=10, crop=crop,
                             mixer=mixer(args, mix), relabel_mix=relabel_mix)
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
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--width", type=int, default=32, help="student ConvNet width")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--crop-scale", type=float, default=0.25, help="lower end of the crops' area share")
    parser.add_argument("--mixes", nargs="+", default=["none", "cutmix", "resizemix"],
                        choices=["none", "cutmix", "resizemix"])
    parser.add_argument("--mix-prob", type=float, default=0.5, help="share of batches mixed (CIFAR CutMix: 0.5)")
    parser.add_argument("--resolution", type=int, default=None, help="annotator input size (default: 32)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--annotator-model", default="resnet20-cifar",
                        help="globally pooled model trained on one half (a flatten-head ConvNet has no dense map)")
    parser.add_argument("--annotator-epochs", type=int, default=60)
    parser.add_argument("--resnet56-rows", default="all", choices=["all", "half"],
                        help="images the resnet56 setting annotates and trains students on: all 4,660, or the "
                             "2,330 of the honest setting's second half (same student images in both columns)")
    parser.add_argument("--settings", nargs="+", default=["resnet56", "half"], choices=["resnet56", "half"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="reduced preview: 1 seed, 4 epochs, width 32, "
                                                             "the annotator trained 4 epochs")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.seeds, args.width, args.annotator_epochs = 4, [0], 32, 4
    if args.threads:
        torch.set_num_threads(args.threads)
    began = time.perf_counter()
    images, labels = load("train")
    test = load("test")
    print(f"CIFAR-10 subset: {len(images)} train, {len(test[0])} test; student convnet width {args.width}, "
          f"{args.epochs} epochs, seeds {args.seeds}; crops scale ({args.crop_scale}, 1); mixing {args.mixes} "
          f"on {args.mix_prob:.0%} of batches; device {args.device}; CPU threads {torch.get_num_threads()}")
    results: dict = {}
    timing = None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        first, second = split_halves(labels)
        if "resnet56" in args.settings:
            rows = np.arange(len(labels)) if args.resnet56_rows == "all" else second
            print(f"resnet56: pretrained ResNet-56 (saw all of CIFAR-10 train) annotates {len(rows):,} train images "
                  f"({args.resnet56_rows}); students train on those")
            annotator = create_model("resnet56-cifar", num_classes=10, weights=RESNET56)
            maps, probs, _ = label_maps(annotator, images[rows], labels[rows], args, folder, "resnet56")
            compare("resnet56", args, images[rows], labels[rows], maps, probs, test, results)
            timing = (images[rows], labels[rows], maps)
        if "half" in args.settings:
            print(f"half: {args.annotator_model} trained {args.annotator_epochs} epochs on {len(first)} images "
                  f"annotates the other {len(second)}; students train on those")
            annotator = create_model(args.annotator_model, num_classes=10, weights=None, seed=0)
            fit(annotator, ArrayData(images[first], labels[first], augment=Augment()), epochs=args.annotator_epochs,
                batch_size=args.batch_size, lr=args.lr, seed=0, device=args.device, progress=False,
                channels_last=True)
            acc = float((predict_images(annotator, test[0], device=args.device).argmax(1) == test[1]).mean())
            print(f"  annotator test accuracy {100 * acc:.1f}%")
            maps, probs, _ = label_maps(annotator, images[second], labels[second], args, folder, "half")
            compare("half", args, images[second], labels[second], maps, probs, test, results)
            timing = timing or (images[second], labels[second], maps)

    settings = [s for s in ("resnet56", "half") if s in args.settings]
    print(f"\n| targets | {' | '.join(settings)} |")
    print(f"|---|{'---|' * len(settings)}")
    for variant in VARIANTS:
        if (settings[0], variant) in results:
            print(f"| {row_name(*variant)} | {' | '.join(interval(results[s, variant][0]) for s in settings)} |")
    if timing is not None:
        for mix, relabel_mix in (("none", "paper"), ("cutmix", "paper"), ("cutmix", "exact")):
            ratio = step_time_ratio(args, *timing, mix=mix, relabel_mix=relabel_mix)
            print(f"LabelPooling step time vs one-hot{'' if mix == 'none' else f' with CutMix ({relabel_mix})'}: "
                  f"{ratio:.3f}x (median of 7 interleaved one-epoch fits on 1,024 images; target <= 1.15x)")
    print(f"total {(time.perf_counter() - began) / 60:.1f} min")


if __name__ == "__main__":
    main()
