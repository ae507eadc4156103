"""Embedding throughput: the batched ``embed`` path against a one-image-at-a-time loop, same model and data.

Run: ``python bench/embed.py [--single 300] [--repeats 3] [--threads N]``. Uses the bundled demo table
(CIFAR-10, 2,932 images) when present, else random 32x32 images, and resnet20-cifar.
Prints images/s of:

- ``batched``: ``curate.learn.embed(model, table, batch_size=256)`` end to end (decoding included);
- ``one-at-a-time``: decode one image, preprocess it, run the model on it, for ``--single`` images;
- ``model-only ceiling``: ``model.features`` on a pre-decoded, preprocessed channels-last
  tensor in batches of 256 (no decoding, no copies);
- ``decode-only``: ``iter_image_batches`` alone;
- ``serial``: the same batches decoded, then embedded, one after the other (no overlap), to
  show what overlapping decoding with compute (inside ``iter_image_batches``) gains.

Timings are the best of ``--repeats`` runs (the CPU may be shared).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from curate.data import decode_images, iter_image_batches, make_table
from curate.learn import EmbedFn, embed
from curate.models import create_model


def load_table():
    try:
        from curate.data.sources import load_source, source_config_class

        config = source_config_class("demo")()
        with tempfile.TemporaryDirectory() as cache:
            return load_source(config, cache_dir=cache, progress=False), "demo table"
    except (ImportError, FileNotFoundError) as err:
        print(f"demo table unavailable ({err}); using random images")
        images = np.random.default_rng(0).integers(0, 256, size=(2000, 32, 32, 3), dtype=np.uint8)
        table = make_table(ids=[str(i) for i in range(len(images))], images=images, labels=np.zeros(len(images), dtype=np.int64),
                           class_names=["x"], splits="train")
        return table, "random 32x32 images"


def best_rate(run, n: int, repeats: int) -> float:
    """Images per second of the fastest of ``repeats`` calls of ``run()``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=300, help="images for the one-at-a-time loop")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    table, what = load_table()
    n = len(table)
    model = create_model("resnet20-cifar", num_classes=10).eval()
    print(f"{what}: {n} images; resnet20-cifar; CPU threads {torch.get_num_threads()}")

    embed(model, table, indices=np.arange(256), device="cpu", progress=False)  # warm-up
    result = {}

    def batched():
        result["embeddings"] = embed(model, table, batch_size=256, device="cpu", progress=False)

    batched_rate = best_rate(batched, n, args.repeats)

    single = min(args.single, n)
    plain = create_model("resnet20-cifar", num_classes=10).eval()  # default memory format, as a naive loop has

    def one_at_a_time():
        out = []
        with torch.inference_mode():
            for i in range(single):
                out.append(plain.features(plain.preprocess(decode_images(table, [i])))[0].numpy())
        result["single"] = np.stack(out)

    single_rate = best_rate(one_at_a_time, single, 1)
    np.testing.assert_allclose(result["single"], result["embeddings"][:single], rtol=1e-4, atol=1e-4)

    x = model.preprocess(decode_images(table)).contiguous(memory_format=torch.channels_last)
    model.to(memory_format=torch.channels_last)

    def model_only():
        with torch.inference_mode():
            for chunk in x.split(256):
                model.features(chunk)

    ceiling_rate = best_rate(model_only, n, args.repeats)

    def decode_only():
        for _ in iter_image_batches(table, batch_size=256, size=model.preprocess.size):
            pass

    decode_rate = best_rate(decode_only, n, args.repeats)

    def serial():
        fn = EmbedFn(model, device="cpu")
        fn.setup()
        for start in range(0, n, 256):
            fn({"image": decode_images(table, np.arange(start, min(start + 256, n)), size=model.preprocess.size)})

    serial_rate = best_rate(serial, n, args.repeats)

    print(f"batched embed (end to end, batch 256): {batched_rate:8.0f} images/s")
    print(f"one-at-a-time loop ({single} images):   {single_rate:8.0f} images/s")
    print(f"speed-up batched / one-at-a-time:      {batched_rate / single_rate:8.1f}x")
    print(f"model-only ceiling (batch 256, CL):    {ceiling_rate:8.0f} images/s")
    print(f"decode-only (iter_image_batches):      {decode_rate:8.0f} images/s")
    print(f"serial decode then embed (batch 256):  {serial_rate:8.0f} images/s")
    print(f"end to end reaches {batched_rate / ceiling_rate:.0%} of the model-only ceiling; "
          f"overlap gains {batched_rate / serial_rate - 1:+.0%} over serial")


if __name__ == "__main__":
    main()
