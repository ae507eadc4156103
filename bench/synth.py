"""Synth I in one run: guided-sampling overhead, sample quality guided vs unguided, and the augmentation gain,
every figure scored by classifiers that did not guide the samples.

Run: ``python bench/synth.py --size tiny|cpu|gpu [--seeds 0 1 2] [--device auto] [--threads 1]``.

Data: CIFAR-10 from ``/work/shared/data/cifar10`` (4,660 train / 932 test) when present, else the bundled
demo table. A small real subset (``real_per_class`` per class) trains everything made here: the class-conditional
DDPM, the noise-aware classifier that GUIDES, the ConvNet that FILTERS (trained at the samples' size, another
seed; the synth step's ``inputs.filter``) and the downstream ConvNets, so no outside data leaks in. The JUDGE is
the pretrained ResNet-56 (shared weights; the bundled ResNet-20 when they are absent), which neither guided nor
filtered (the near-copy filter reads ResNet-20 features, as the synth step does by default). Prints:

1. ``s/step`` of plain and classifier-guided DDIM sampling (guided-diffusion's condition_score) on the same
   batch and their ratio (target <= 2x);
2. KID / FID on the judge's pooled features against the held-out real test split, the judge's accuracy, the
   filter's mean target probability and the guide's own (self-scored, inflated by construction), for the real
   training subset (the floor at these counts), plain samples, guided samples, and the guided samples kept by
   the independent filter and by the guide itself (the old default);
3. held-out accuracy of the same ConvNet trained on the real subset, and on the subset plus the guided samples
   kept by each filter, over ``--seeds`` (mean and 95% t-interval; gains are paired by seed).

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
RESNET56 = Path("/work/shared/data/models/cifar10_resnet_akamaster/resnet56.safetensors")


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


def load_judge(num_classes: int):
    """``(name, model)``: the pretrained ResNet-56 from the shared weights, else the bundled ResNet-20."""
    from curate.models import create_model

    if RESNET56.is_file():
        return "resnet56-cifar (pretrained)", create_model("resnet56-cifar", num_classes=num_classes, weights=RESNET56)
    return "resnet20-cifar (pretrained; ResNet-56 weights absent)", create_model("resnet20-cifar",
                                                                                 num_classes=num_classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=list(SIZES), default="tiny")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="classifier seeds (default: 0 1 2; tiny: 0)")
    parser.add_argument("--guidance-scale", type=float, default=2.0)
    parser.add_argument("--min-confidence", type=float, default=0.3, help="filter threshold on p(target)")
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
    from synth.scorers import Scorer, choose_filter, model_scorer, weights_digest
    from synth.train_diffusion import build_unet, to_model_space, train_ddpm

    device = resolve_device(args.device)
    tr_x, tr_y, te_x, te_y, names = load_data(cfg["real_per_class"])
    k, s = len(names), cfg["image_size"]
    tr_s, te_s = resize(tr_x, s), resize(te_x, s)
    print(f"size={args.size} device={device} threads={torch.get_num_threads()} real train={len(tr_x)} "
          f"test={len(te_x)} image={s}x{s} unet={cfg['block_out_channels']} steps={cfg['steps']}")

    def convnet(x, y, seed):
        """The downstream ConvNet (also the filter, at another seed): fit on (x, y), scored on the test split."""
        model = create_model("convnet", num_classes=k, weights=None, width=cfg["width"], im_size=s, seed=seed)
        data = ArrayData(x, y, augment=Augment(flip=True, crop_padding=2), num_classes=k)
        res = fit(model, data, epochs=cfg["epochs"], batch_size=64, lr=0.05, seed=seed, device=device,
                  eval_data=(te_s, te_y), progress=False)
        return model, res.final_accuracy

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
    print(f"guide (noise-aware classifier): final loss {closs[-max(1, len(closs) // 10):].mean():.3f}")

    @torch.no_grad()
    def guide_probs(images):  # the guide at t = 0, as the synth step self-scores with it
        return torch.cat([clf(b.to(device), 0).softmax(1).cpu() for b in to_model_space(images).split(256)]).numpy()

    guide_scorer = Scorer("noisy_classifier (guide)", weights_digest(clf), guide_probs)
    filter_model, filter_acc = convnet(tr_s, tr_y, seed=100)
    filt, scoring = choose_filter(model_scorer(filter_model, name=f"convnet {s}x{s} (seed 100)", device=device),
                                  guide_scorer, allow_self_filter=False)
    judge_name, judge = load_judge(k)
    print(f"filter: {filt.name}, {scoring}, held-out accuracy {filter_acc:.3f}; judge: {judge_name}")

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

    copy_features = create_model("resnet20-cifar", num_classes=10)  # the synth step's default feature_model
    real_copy_f = embed_images(copy_features, tr_s, device=device)
    guided_copy_f = embed_images(copy_features, samples["guided"], device=device)
    kept = {}
    for name, scorer in (("independent", filt), ("self", guide_scorer)):
        kept[name] = filter_samples(scorer.classify(samples["guided"]), labels, guided_copy_f, real_copy_f,
                                    min_confidence=args.min_confidence, min_copy_distance=0.02)

    ref = embed_images(judge, te_s, device=device)
    print(f"\n2. quality vs held-out real test ({judge_name} features); judge = {judge_name}; "
          f"filter p(y) = {filt.name}; guide p(y) = the guiding classifier at t = 0 (self-scored)")
    print(f"   {'set':22s} {'n':>5s} {'KID':>9s} {'FID':>9s} {'judge acc':>9s} {'filter p(y)':>11s} "
          f"{'guide p(y)':>10s}")
    rows = {"real train (floor)": (tr_s, tr_y), "plain": (samples["plain"], labels),
            "guided": (samples["guided"], labels),
            "guided, kept by filter": (samples["guided"][kept["independent"].keep], labels[kept["independent"].keep]),
            "guided, kept by guide": (samples["guided"][kept["self"].keep], labels[kept["self"].keep])}
    for name, (images, y) in rows.items():
        if len(y) < 2:
            print(f"   {name:22s} {len(y):5d}  (too few to score)")
            continue
        f = embed_images(judge, images, device=device)
        acc = (predict_images(judge, images, device=device).argmax(1) == y).mean() if k == 10 else float("nan")
        target = np.arange(len(y)), y
        print(f"   {name:22s} {len(y):5d} {kid(ref, f).mean:9.4f} {fid(ref, f):9.2f} {acc:9.3f} "
              f"{filt.classify(images)[target].mean():11.3f} {guide_probs(images)[target].mean():10.3f}")

    print(f"\n3. augmentation: min_confidence {args.min_confidence}, copy distance 0.02; kept by the filter "
          f"{kept['independent'].counts()}, by the guide itself {kept['self'].counts()}; ConvNet width "
          f"{cfg['width']}, {cfg['epochs']} epochs, seeds {seeds}")
    sets = {"real": (tr_s, tr_y)}
    for name, label in (("independent", "+ kept by filter"), ("self", "+ kept by guide")):
        keep = kept[name].keep
        sets[label] = (np.concatenate([tr_s, samples["guided"][keep]]), np.concatenate([tr_y, labels[keep]]))
    results = {name: [convnet(x, y, seed)[1] for seed in seeds] for name, (x, y) in sets.items()}
    for name, values in results.items():
        print(f"   {name:17s} held-out accuracy {interval(values)}  ({', '.join(f'{v:.3f}' for v in values)})")
    for name in list(results)[1:]:
        gain = np.subtract(results[name], results["real"]).tolist()
        print(f"   gain {name:12s} {interval(gain)}  (paired by seed)")


if __name__ == "__main__":
    main()
