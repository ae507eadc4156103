"""Synth I in one run: guided-sampling overhead, sample quality guided vs unguided, and the augmentation gain.

Run: ``python bench/synth.py --size tiny|cpu|gpu [--seeds 0 1 2] [--device auto]``.

Data: CIFAR-10 from ``/work/shared/data/cifar10`` (4,660 train / 932 test) when present, else the bundled
demo table. A small real subset (``real_per_class`` per class) trains everything: the class-conditional DDPM,
the noise-aware guidance classifier and the downstream ConvNet, so no outside data leaks in. Prints:

1. ``s/step`` of plain and classifier-guided DDIM sampling on the same batch and their ratio (target <= 2x);
2. KID / FID (resnet20-cifar pooled features, nothing downloaded) of unguided and guided samples against the
   held-out real test split, with the real training subset as the floor at the same counts; and the accuracy of an
   independent judge (the bundled pretrained resnet20-cifar) on each sample set;
3. held-out accuracy of the same ConvNet trained on the real subset and on the subset plus the filtered guided
   samples, over ``--seeds`` (mean and 95% t-interval).

On a CPU the UNet is tiny and its samples are poor; the numbers say so honestly.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# This file is bench/synth.py: drop its folder from the path so `import synth` finds the package, not this script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

SIZES = {
    "tiny": dict(real_per_class=10, image_size=16, block_out_channels=(8, 16), layers_per_block=1, attention_levels=(),
                 steps=60, batch_size=32, noisy_steps=60, per_class=4, inference_steps=10, epochs=3, width=16),
    "cpu": dict(real_per_class=50, image_size=16, block_out_channels=(32, 64), layers_per_block=1, attention_levels=(),
                steps=1500, batch_size=64, noisy_steps=600, per_class=50, inference_steps=50, epochs=20, width=32),
    "gpu": dict(real_per_class=100, image_size=32, block_out_channels=(128, 256, 256), layers_per_block=2,
                attention_levels=(1,), steps=20000, batch_size=128, noisy_steps=3000, per_class=100,
                inference_steps=50, epochs=30, width=64),
}
SHARED = Path("/work/shared/data/cifar10")


def load_data(real_per_class: int):
    """(train images, train labels, test images, test labels, class names): a per-class subset of train."""
    if (SHARED / "train" / "images.npy").is_file():
        import json

        tr_x, tr_y = np.load(SHARED / "train" / "images.npy"), np.load(SHARED / "train" / "labels.npy")
        te_x, te_y = np.load(SHARED / "test" / "images.npy"), np.load(SHARED / "test" / "labels.npy")
        names = json.loads((SHARED / "classes.json").read_text())
    else:
        from curate.data import decode_images
        from curate.data.sources import load_source, source_config_class

        with tempfile.TemporaryDirectory() as cache:
            table = load_source(source_config_class("demo")(), cache_dir=cache, progress=False)
        split, labels = np.asarray(table["split"]), np.asarray(table["label"])
        tr, te = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
        tr_x, tr_y, te_x, te_y = decode_images(table, tr), labels[tr], decode_images(table, te), labels[te]
        names = table.features["label"].names
    keep = np.concatenate([np.flatnonzero(tr_y == k)[:real_per_class] for k in range(len(names))])
    return tr_x[keep], tr_y[keep].astype(np.int64), te_x, te_y.astype(np.int64), list(names)


def resize(images: np.ndarray, size: int) -> np.ndarray:
    import torch.nn.functional as F

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def interval(values: list[float]) -> str:
    """mean +- half-width of the 95% t-interval."""
    from scipy import stats

    m = float(np.mean(values))
    if len(values) < 2:
        return f"{m:.3f}"
    half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values))
    return f"{m:.3f} +- {half:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=list(SIZES), default="tiny")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="classifier seeds (default: 0 1 2; tiny: 0)")
    parser.add_argument("--guidance-scale", type=float, default=2.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (1 is fastest on a busy CPU)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = SIZES[args.size]
    seeds = args.seeds or ([0] if args.size == "tiny" else [0, 1, 2])

    from curate.learn import ArrayData, Augment, fit, predict_images, resolve_device
    from curate.models import create_model
    from synth.filters import filter_samples
    from synth.guidance import create_guidance
    from synth.methods import plan_samples
    from synth.noisy_classifier import train_noisy_classifier
    from synth.pipeline import GuidedPipeline, make_sampler
    from synth.quality import embed_images, fid, kid
    from synth.train_diffusion import build_unet, to_model_space, train_ddpm

    device = resolve_device(args.device)
    tr_x, tr_y, te_x, te_y, names = load_data(cfg["real_per_class"])
    k, s = len(names), cfg["image_size"]
    tr_s, te_s = resize(tr_x, s), resize(te_x, s)
    print(f"size={args.size} device={device} real train={len(tr_x)} test={len(te_x)} image={s}x{s} "
          f"unet={cfg['block_out_channels']} steps={cfg['steps']}")

    t0 = time.perf_counter()
    unet = build_unet(image_size=s, block_out_channels=cfg["block_out_channels"],
                      layers_per_block=cfg["layers_per_block"], attention_levels=cfg["attention_levels"],
                      num_classes=k, seed=0)
    ddpm = train_ddpm(unet, tr_s, tr_y, steps=cfg["steps"], batch_size=cfg["batch_size"], lr=5e-4, warmup_steps=50,
                      ema_decay=0.995, seed=0, device=device, progress=True)
    tail = ddpm.losses[-max(1, len(ddpm.losses) // 10):].mean()
    print(f"ddpm: {time.perf_counter() - t0:.0f}s, final loss {tail:.4f}")
    sampler = make_sampler("ddim", dict(ddpm.scheduler.config))
    clf, closs = train_noisy_classifier(tr_s, tr_y, alphas_cumprod=sampler.alphas_cumprod, num_classes=k,
                                        steps=cfg["noisy_steps"], seed=0, device=device, progress=True)
    print(f"noisy classifier: final loss {closs[-max(1, len(closs) // 10):].mean():.3f}")

    labels, _, sample_seeds = plan_samples(np.arange(k), per_class=cfg["per_class"], base_seed=0)
    guide = create_guidance("noisy_classifier", clf.to(device), scale=args.guidance_scale)
    n_steps = cfg["inference_steps"]
    timing, samples = {}, {}
    for name, guidance in (("plain", None), ("guided", guide)):
        pipe = GuidedPipeline(ddpm.unet.to(device), sampler, guidance)
        pipe(labels[:2], num_inference_steps=2, seeds=sample_seeds[:2])  # warm-up
        start = time.perf_counter()
        samples[name] = pipe(labels, num_inference_steps=n_steps, seeds=sample_seeds, batch_size=128)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        timing[name] = (time.perf_counter() - start) / n_steps
    print(f"\n1. sampling {len(labels)} images x {n_steps} DDIM steps: plain {timing['plain']:.4f} s/step, "
          f"guided {timing['guided']:.4f} s/step, overhead {timing['guided'] / timing['plain']:.2f}x (target <= 2x)")

    judge = create_model("resnet20-cifar", num_classes=10)
    feat = create_model("resnet20-cifar", num_classes=10)
    ref = embed_images(feat, te_s, device=device)
    real_f = embed_images(feat, tr_s, device=device)
    print("\n2. quality vs held-out real test (resnet20-cifar features); judge = pretrained resnet20-cifar")
    print(f"   {'set':8s} {'n':>5s} {'KID':>9s} {'FID':>9s} {'judge acc':>9s} {'guide p(y)':>10s}")
    rows = {"real": (tr_s, tr_y, real_f)}
    for name in ("plain", "guided"):
        rows[name] = (samples[name], labels, embed_images(feat, samples[name], device=device))
    for name, (images, y, f) in rows.items():
        acc = (predict_images(judge, images, device=device).argmax(1) == y).mean() if k == 10 else float("nan")
        with torch.no_grad():
            p = clf(to_model_space(images).to(device), 0).softmax(1)[torch.arange(len(y)), torch.as_tensor(y)]
        print(f"   {name:8s} {len(images):5d} {kid(ref, f).mean:9.4f} {fid(ref, f):9.2f} {acc:9.3f} "
              f"{p.mean().item():10.3f}")

    with torch.no_grad():
        probs = torch.cat([clf(b.to(device), 0).softmax(1).cpu() for b in to_model_space(samples["guided"]).split(256)])
    kept = filter_samples(probs.numpy(), labels, rows["guided"][2], real_f, min_confidence=0.3,
                          min_copy_distance=0.02)
    print(f"\n3. augmentation: {kept.counts()} of the guided samples; ConvNet width {cfg['width']}, "
          f"{cfg['epochs']} epochs, seeds {seeds}")
    aug_x = np.concatenate([tr_s, samples["guided"][kept.keep]])
    aug_y = np.concatenate([tr_y, labels[kept.keep]])
    results = {"real": [], "real+synthetic": []}
    for seed in seeds:
        for name, (x, y) in (("real", (tr_s, tr_y)), ("real+synthetic", (aug_x, aug_y))):
            model = create_model("convnet", num_classes=k, weights=None, width=cfg["width"], im_size=s, seed=seed)
            data = ArrayData(x, y, augment=Augment(flip=True, crop_padding=2), num_classes=k)
            res = fit(model, data, epochs=cfg["epochs"], batch_size=64, lr=0.05, seed=seed, device=device,
                      eval_data=(te_s, te_y), progress=False)
            results[name].append(res.final_accuracy)
    for name, values in results.items():
        print(f"   {name:15s} held-out accuracy {interval(values)}  ({', '.join(f'{v:.3f}' for v in values)})")
    gain = np.subtract(results["real+synthetic"], results["real"]).tolist()
    print(f"   gain            {interval(gain)}")


if __name__ == "__main__":
    main()
