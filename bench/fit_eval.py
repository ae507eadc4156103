"""Cost of scoring the held-out split after every epoch of ``curate.learn.fit``.

Run: ``python bench/fit_eval.py [--epochs 20] [--repeats 2] [--threads 1]``. Trains the demo
recipe's `train` step model (ConvNet-3, width 32, batch 64, lr 0.05, flips and padded crops) on
the bundled demo's 2,000 train images, alternately without and with ``eval_data`` (its 932 test
images), same seed. Prints the wall time of each, the ratio with/without (best of ``--repeats``
each, alternated so load from others on a shared CPU falls on both), and the evaluation's own
share inside the runs with it (wall time minus the per-epoch training ``seconds`` in the history).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from curate.data import decode_images
from curate.data.sources import load_source, source_config_class
from curate.data.table import split_indices
from curate.learn import ArrayData, Augment, fit
from curate.models import create_model


def demo_arrays():
    with tempfile.TemporaryDirectory() as cache:
        table = load_source(source_config_class("demo")(), cache_dir=cache, progress=False)
    labels = np.asarray(table["label"])
    train, test = split_indices(table, "train", where="train"), split_indices(table, "test", where="test")
    return (decode_images(table, train), labels[train]), (decode_images(table, test), labels[test])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    (train_x, train_y), held_out = demo_arrays()
    data = ArrayData(train_x, train_y, augment=Augment(flip=True, crop_padding=4), num_classes=10)
    times: dict[str, list[float]] = {"without": [], "with": []}
    eval_seconds = []
    for repeat in range(args.repeats):
        for name in ("without", "with"):
            model = create_model("convnet", num_classes=10, width=32, seed=0)
            start = time.perf_counter()
            result = fit(model, data, epochs=args.epochs, batch_size=64, lr=0.05, seed=0, device="cpu",
                         eval_data=held_out if name == "with" else None, progress=False)
            wall = time.perf_counter() - start
            times[name].append(wall)
            if name == "with":
                eval_seconds.append(wall - sum(row["seconds"] for row in result.history))
                accuracy = f", held-out accuracy {result.final_accuracy:.2%}"
            else:
                accuracy = ""
            print(f"repeat {repeat + 1} {name:>7} eval: {wall:7.1f} s{accuracy}", flush=True)
    best = {name: min(values) for name, values in times.items()}
    print(f"\n{args.epochs} epochs, {len(train_y):,} train / {len(held_out[1]):,} held-out images, "
          f"{args.threads} thread(s), best of {args.repeats}:")
    print(f"  without eval_data {best['without']:.1f} s, with {best['with']:.1f} s: "
          f"ratio {best['with'] / best['without']:.3f}")
    share = [e / w for e, w in zip(eval_seconds, times["with"])]
    print(f"  evaluation inside the runs with it: {min(eval_seconds):.1f}-{max(eval_seconds):.1f} s "
          f"({min(share):.1%}-{max(share):.1%} of their wall time)")


if __name__ == "__main__":
    main()
