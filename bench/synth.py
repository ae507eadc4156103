"""Synth I in one run: guided-sampling overhead, sample quality guided vs unguided, and the augmentation gain,
every figure scored by classifiers that did not guide the samples.

Run: ``python bench/synth.py --size tiny|short|cpu|gpu [--seeds 0 1 2] [--device auto] [--threads 1]``.

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

``--part ssl`` (Synth II) compares, on one real subset and one diffusion training budget, three ways to get
labelled samples: an UNCONDITIONAL DDPM (samples labelled by the filter's argmax), the same DDPM GUIDED by a
noise-aware classifier, and a DDPM conditioned on the SELF-SUPERVISED embeddings of the real images
(``ssl_conditioned``: one variation of each real image with its label, and same-class slerp interpolations),
sampled with classifier-free guidance at each ``w`` of ``--cfg-scale``. A cross-attention UNet is larger than the
plain one and learns slower per step, so a second unconditional baseline, ``unconditional, same net``, is the
conditioned network trained for the same steps with every row dropped to the null embedding (``p_uncond`` 1);
``--conditioning vector`` keeps the plain UNet's blocks and adds the projected embedding to the time embedding.
The encoder is the `ssl` step's SimCLR ResNet-20 (``--encoder DIR`` from ``bench/ssl_encoder.py --save DIR``;
else trained here for ``--ssl-epochs``), so no label and no downloaded weight reaches the conditioning;
``--encoder resnet20-cifar`` conditions on the bundled SUPERVISED classifier's features instead (a labelled
comparison). ``--cache DIR`` keeps the trained models, so training and the seeded evaluation can run as two
invocations. Per seed: samples drawn from the seed, KID / FID against the held-out test split on the judge's
features, for SSL samples the embedding match (cosine of a sample's encoder embedding to its source image's minus
to another real image of its class: > 0 when the sample follows its embedding), the filter's kept count, and the
held-out accuracy of the ConvNet trained on the real subset plus each set's kept samples (the same ConvNet,
epochs and seed as real alone). ``--filter-quantile q`` sets the filter's threshold to the q-quantile of its
p(true class) on real train images outside the subset (a weak filter's probabilities are all low, so a fixed
``--min-confidence`` can keep nothing).

``--part panorama`` trains a 16 px patch model on 64x64 downscales of ``../shared/data/imagenet/val_subset``
conditioned on the SSL embeddings of its patches, assembles 64x64 images of held-out references from their 4x4
grid of patch embeddings (windows at stride 8, x0 averaged over overlaps, Gaussian blending), and writes a sheet:
reference, independent tiles (stride 16, no overlap), panorama. It prints a seam ratio (mean absolute step
across window borders / elsewhere; 1 is seamless) and how close each assembled patch's embedding is to its
reference patch's, against other references' patches.
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
    "short": dict(real_per_class=20, image_size=16, block_out_channels=(16, 32), layers_per_block=1,
                  attention_levels=(), steps=300, batch_size=32, noisy_steps=150, per_class=10, inference_steps=20,
                  epochs=8, width=16),  # between tiny and cpu: fits a CPU shared five ways in half an hour
    "gpu": dict(real_per_class=100, image_size=32, block_out_channels=(128, 256, 256), layers_per_block=2,
                attention_levels=(1,), steps=20000, batch_size=128, noisy_steps=3000, per_class=100,
                inference_steps=50, epochs=30, width=64),
}
SSL_SIZES = {
    "tiny": dict(context_dim=16, cond_levels=(1,), ssl_epochs=1, sample_per_class=4, patch_steps=40,
                 patch_images=40, references=2, panorama_steps=5),
    "cpu": dict(context_dim=64, cond_levels=(1,), ssl_epochs=10, sample_per_class=50, patch_steps=1200,
                patch_images=1200, references=6, panorama_steps=50),
    "short": dict(context_dim=32, cond_levels=(1,), ssl_epochs=6, sample_per_class=10, patch_steps=300,
                  patch_images=200, references=3, panorama_steps=20),
    "gpu": dict(context_dim=256, cond_levels=(1,), ssl_epochs=100, sample_per_class=100, patch_steps=20000,
                patch_images=1200, references=8, panorama_steps=50),
}
TOKEN_SIZES = {
    "tiny": dict(real_per_class=10, token_blocks=(8, 16), context_dim=16, t2i_steps=40, t2i_batch=16, max_epochs=2,
                 patience=1, train_steps=3, token_per_class=4, token_inference_steps=3, cfg=3.0),
    "short": dict(real_per_class=100, token_blocks=(16, 32), context_dim=32, t2i_steps=300, t2i_batch=32,
                  max_epochs=6, patience=3, train_steps=6, token_per_class=20, token_inference_steps=10, cfg=3.0),
    "cpu": dict(real_per_class=300, token_blocks=(16, 32), context_dim=32, t2i_steps=900, t2i_batch=32,
                max_epochs=12, patience=4, train_steps=8, token_per_class=40, token_inference_steps=20, cfg=3.0),
    "gpu": dict(real_per_class=500, token_blocks=(128, 256, 256), context_dim=128, t2i_steps=30000, t2i_batch=128,
                max_epochs=50, patience=15, train_steps=30, token_per_class=100, token_inference_steps=30, cfg=7.0),
}
TOKEN_CLASSES = ("airplane", "automobile", "frog", "ship")
SHARED = Path("/work/shared/data/cifar10")
IMAGENET = Path("/work/shared/data/imagenet/val_subset")
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
    parser.add_argument("--part", choices=("guidance", "ssl", "panorama", "tokens"), default="guidance")
    parser.add_argument("--size", choices=list(SIZES), default="tiny")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="classifier seeds (default: 0 1 2; tiny: 0)")
    parser.add_argument("--guidance-scale", type=float, default=2.0)
    parser.add_argument("--min-confidence", type=float, default=0.3, help="filter threshold on p(target)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (1 is fastest on a busy CPU)")
    parser.add_argument("--cfg-scale", type=float, nargs="+", default=[3.0],
                        help="ssl: classifier-free guidance w, one set of samples per value (0: conditional only; "
                             "3: the paper's notebook)")
    parser.add_argument("--model-seeds", action="store_true",
                        help="ssl: each seed also trains its own diffusion models (training noise in the intervals)")
    parser.add_argument("--per-class", type=int, default=None, help="ssl: samples per class per set (override)")
    parser.add_argument("--filter-quantile", type=float, default=None,
                        help="ssl: keep a sample when the filter's p(target) reaches this quantile of its p(true "
                             "class) on real calibration images (train rows outside the subset), instead of "
                             "--min-confidence")
    parser.add_argument("--conditioning", choices=("cross_attention", "vector"), default="cross_attention")
    parser.add_argument("--encoder", type=Path, default=None, help="ssl/panorama: a saved SSL model folder")
    parser.add_argument("--cache", type=Path, default=None, help="ssl/panorama: keep/reuse trained models here")
    parser.add_argument("--out", type=Path, default=None, help="ssl/panorama: write sample sheets here")
    parser.add_argument("--diffusion-steps", type=int, default=None, help="override the size's DDPM training steps")
    parser.add_argument("--train-only", action="store_true", help="ssl/tokens: train (into --cache) and stop")
    parser.add_argument("--classes", nargs="+", default=None, help="tokens: classes to learn tokens for")
    parser.add_argument("--token-lr", type=float, default=1.25e-3, help="tokens: AdamW lr of the token (official)")
    parser.add_argument("--token-epochs", type=int, nargs=2, default=None, metavar=("MAX", "PATIENCE"),
                        help="tokens: max_epochs and patience (official 50 15; default: the size's)")
    parser.add_argument("--token-steps", type=int, nargs=2, default=None, metavar=("TRAIN", "SAMPLE"),
                        help="tokens: DDIM steps per optimization generation and per sample (official 30 30)")
    parser.add_argument("--token-cfg", type=float, default=None, help="tokens: CFG scale (official 7)")
    parser.add_argument("--token-grad-steps", type=int, default=None,
                        help="tokens: also learn tokens with the gradient through this many final steps (paper: 1)")
    parser.add_argument("--token-captions", action="store_true",
                        help="tokens: train the text-to-image model with train_diffusion's tone_words (half the "
                             "prompts name each image's tone before the class), so the word slot the token fills "
                             "carries meaning, as adjectives do for Stable Diffusion")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = {**SIZES[args.size], **({"steps": args.diffusion_steps} if args.diffusion_steps else {})}
    seeds = args.seeds or ([0] if args.size == "tiny" else [0, 1, 2])
    if args.part == "ssl":
        return ssl_part(args, {**cfg, **SSL_SIZES[args.size]}, seeds)
    if args.part == "panorama":
        return panorama_part(args, {**cfg, **SSL_SIZES[args.size]})
    if args.part == "tokens":
        return tokens_part(args, {**cfg, **TOKEN_SIZES[args.size]}, seeds)

    from curate.learn import ArrayData, Augment, fit, predict_images, resolve_device
    from curate.models import create_model
    from synth.filters import filter_samples
    from synth.guidance import create_guidance
    from synth.methods import plan_samples
    from synth.noisy_classifier import train_noisy_classifier
    from synth.pipeline import GuidedPipeline, make_sampler
    from curate.learn.embed import embed_images
    from synth.quality import fid, kid
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



# --- Synth II: SSL-conditioned diffusion ------------------------------------------------------------------------


def ssl_encoder(args, cfg, images: np.ndarray):
    """The SSL ResNet-20: ``--encoder``'s saved model, else SimCLR trained here on ``images`` (no labels).
    ``--encoder resnet20-cifar`` (a registry name, not a folder) conditions on the bundled SUPERVISED classifier's
    features instead: a labelled comparison, not SSL."""
    from curate.learn.ssl import train_ssl
    from curate.models import create_model, load_model

    if args.encoder is not None and not args.encoder.is_dir():
        return f"{args.encoder} (registry weights, SUPERVISED)", create_model(str(args.encoder), num_classes=10)
    if args.encoder is not None:
        return f"SimCLR ResNet-20 ({args.encoder})", load_model(args.encoder)
    model = create_model("resnet20-cifar", num_classes=10, weights=None, seed=0)
    train_ssl(model, images, epochs=cfg["ssl_epochs"], batch_size=min(256, len(images)), device="cpu", progress=True)
    return f"SimCLR ResNet-20 (trained here, {cfg['ssl_epochs']} epochs)", model


def cached_ddpm(args, name: str, build, train):
    """``(unet, conditioner)`` from ``--cache/<name>`` when saved there, else trained (and saved when caching)."""
    from synth.train_diffusion import load_diffusion_model, save_diffusion_model

    folder = args.cache / name if args.cache else None
    if folder is not None and (folder / "curate.json").is_file():
        model = load_diffusion_model(folder)
        print(f"{name}: loaded from {folder}")
        return model.unet, model.conditioner, dict(model.scheduler_config)
    t0 = time.perf_counter()
    result = train(build())
    tail = result.losses[-max(1, len(result.losses) // 10):].mean()
    print(f"{name}: trained in {time.perf_counter() - t0:.0f}s, final loss {tail:.4f}")
    if folder is not None:
        save_diffusion_model(folder, result.unet, result.scheduler, class_names=None, conditioner=result.conditioner)
    return result.unet, result.conditioner, dict(result.scheduler.config)


def ssl_part(args, cfg, seeds) -> None:
    """Unconditional (two networks), classifier-guided and SSL-conditioned samples (per ``--cfg-scale`` w) of one
    real subset: KID/FID, how closely variations follow their source's embedding, filter-kept counts, augmentation.

    The conditioned UNet (cross-attention blocks, a projection) is larger than the plain unconditional UNet and
    trains slower per step, so a KID gap between the two mixes conditioning with architecture; the row
    ``unconditional, same net`` is the conditioned network and training budget with every row dropped to the null
    embedding (``p_uncond`` 1), sampled from the null embedding: the like-for-like baseline."""
    from curate.learn import ArrayData, Augment, fit, predict_images, resolve_device
    from curate.learn.embed import EmbedFn
    from curate.execute.local import array_batches, map_batches
    from curate.models import create_model, load_model, save_model
    from synth.conditioning import ConditionedUNet, Conditioner, context_width
    from synth.filters import filter_samples
    from synth.guidance import create_guidance
    from synth.methods import SynthInputs, plan_samples
    from synth.noisy_classifier import load_noisy_classifier, save_noisy_classifier_file, train_noisy_classifier
    from synth.pipeline import GuidedPipeline, make_sampler
    from curate.learn.embed import embed_images
    from synth.quality import fid, kid, row_grid, class_grid, write_png
    from synth.ssl_conditioned import EmbeddingPipeline, SSLConditionedConfig, SSLConditionedMethod
    from synth.train_diffusion import DiffusionModel, build_unet, train_ddpm

    device = resolve_device(args.device)
    tr_x, tr_y, te_x, te_y, names = load_data(cfg["real_per_class"])
    k, s = len(names), cfg["image_size"]
    per_class = args.per_class or cfg["sample_per_class"]
    tr_s, te_s = resize(tr_x, s), resize(te_x, s)
    encoder_name, encoder = ssl_encoder(args, cfg, tr_x)
    embed_fn = EmbedFn(encoder, device=device, normalize=True)

    def encode(images):
        return map_batches(embed_fn, array_batches(images, batch_size=256), rows=len(images))["embeddings"]

    vectors = encode(tr_x)
    print(f"part=ssl size={args.size} device={device} threads={torch.get_num_threads()} real train={len(tr_x)} "
          f"test={len(te_x)} image={s}x{s} unet={cfg['block_out_channels']} steps={cfg['steps']} "
          f"encoder={encoder_name} ({vectors.shape[1]}-d) conditioning={args.conditioning} w={args.cfg_scale} "
          f"{per_class} per class per set")

    def diffusion_models(model_seed: int):
        """``(plain UNet, conditioned UNet, its conditioner, the same net trained on the null embedding only,
        scheduler config)``, every one trained from ``model_seed`` (cached as ``<name>_seed<n>`` past seed 0)."""
        common = dict(steps=cfg["steps"], batch_size=cfg["batch_size"], lr=5e-4, warmup_steps=50, ema_decay=0.995,
                      seed=model_seed, device=device, progress=True)
        unet_args = dict(image_size=s, block_out_channels=cfg["block_out_channels"],
                         layers_per_block=cfg["layers_per_block"], seed=model_seed)
        suffix = f"_seed{model_seed}" if model_seed else ""
        plain_unet, _, sched_cfg = cached_ddpm(args, f"unconditional{suffix}", lambda: build_unet(
            attention_levels=cfg["attention_levels"], **unet_args), lambda unet: train_ddpm(unet, tr_s, **common))

        def build_conditioned():  # vector conditioning: the plain UNet's blocks, the embedding added to the time's
            levels = cfg["cond_levels"] if args.conditioning == "cross_attention" else cfg["attention_levels"]
            unet = build_unet(attention_levels=levels, conditioning=args.conditioning, context_dim=cfg["context_dim"],
                              **unet_args)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(model_seed)
                return unet, Conditioner(vectors.shape[1], context_width(unet, args.conditioning),
                                         kind=args.conditioning)

        def conditioned(name, p_uncond):
            unet, conditioner, _ = cached_ddpm(args, f"{name}{suffix}", build_conditioned, lambda pair: train_ddpm(
                pair[0], tr_s, embeddings=vectors, conditioner=pair[1], p_uncond=p_uncond, **common))
            return unet, conditioner

        cond_unet, conditioner = conditioned(f"ssl_{args.conditioning}", 0.1)
        null_model = ConditionedUNet(*conditioned(f"ssl_{args.conditioning}_null", 1.0)).to(device).eval()
        return plain_unet, cond_unet, conditioner, null_model, sched_cfg

    model_seeds = seeds if args.model_seeds else [0]
    models = {seed: diffusion_models(seed) for seed in model_seeds}
    sampler = make_sampler("ddim", models[0 if 0 in models else model_seeds[0]][4])
    guide_path = args.cache / "noisy_classifier.safetensors" if args.cache else None
    if guide_path is not None and guide_path.is_file():
        clf = load_noisy_classifier(guide_path)
    else:
        clf, _ = train_noisy_classifier(tr_s, tr_y, alphas_cumprod=sampler.alphas_cumprod, num_classes=k,
                                        steps=cfg["noisy_steps"], seed=0, device=device, progress=True)
        if guide_path is not None:
            save_noisy_classifier_file(clf, guide_path)
    filter_path = args.cache / "filter" if args.cache else None
    if filter_path is not None and (filter_path / "config.json").is_file():
        filter_model = load_model(filter_path)
    else:
        filter_model = create_model("convnet", num_classes=k, weights=None, width=cfg["width"], im_size=s, seed=100)
        fit(filter_model, ArrayData(tr_s, tr_y, augment=Augment(flip=True, crop_padding=2), num_classes=k),
            epochs=cfg["epochs"], batch_size=64, lr=0.05, seed=100, device=device, progress=False)
        if filter_path is not None:
            save_model(filter_model, filter_path)
    if args.train_only:
        print("trained; rerun without --train-only to evaluate")
        return
    filter_acc = (predict_images(filter_model, te_s, device=device).argmax(1) == te_y).mean()
    judge_name, judge = load_judge(k)
    min_confidence, threshold_note = args.min_confidence, f"p >= {args.min_confidence}"
    if args.filter_quantile is not None:
        cal_x, cal_y = calibration_rows(cfg["real_per_class"])
        p_true = predict_images(filter_model, resize(cal_x, s), device=device)[np.arange(len(cal_y)), cal_y]
        min_confidence = float(np.quantile(p_true, args.filter_quantile))
        threshold_note = (f"p >= {min_confidence:.3f}, the {args.filter_quantile:g}-quantile of the filter's p(true "
                          f"class) on {len(cal_y)} real calibration images outside the subset")
    print(f"filter: convnet {s}x{s} (seed 100), held-out accuracy {filter_acc:.3f}, keeps {threshold_note}; "
          f"judge: {judge_name}")

    copy_model = create_model("resnet20-cifar", num_classes=10)
    real_copy_f = embed_images(copy_model, tr_s, device=device)
    ref = embed_images(judge, te_s, device=device)
    real_ids = np.array([f"real:{i}" for i in range(len(tr_x))])
    position = {sid: i for i, sid in enumerate(real_ids)}
    source_vectors = encode(resize(tr_s, tr_x.shape[1]))  # the sources as the model sees them, for the match below
    method = SSLConditionedMethod()

    def convnet(x, y, seed):
        model = create_model("convnet", num_classes=k, weights=None, width=cfg["width"], im_size=s, seed=seed)
        res = fit(model, ArrayData(x, y, augment=Augment(flip=True, crop_padding=2), num_classes=k),
                  epochs=cfg["epochs"], batch_size=64, lr=0.05, seed=seed, device=device, eval_data=(te_s, te_y),
                  progress=False)
        return res.final_accuracy

    def ssl_samples(inputs, mode, w, labels, numbers, sample_seeds, seed):
        opts = SSLConditionedConfig(method="ssl_conditioned", mode=mode, per_class=per_class, cfg_scale=w,
                                    num_inference_steps=cfg["inference_steps"], batch_size=128)
        guide = method.prepare(opts, inputs, base_seed=seed, device=device, progress=False)
        gen = method.generate(opts, inputs, guide, labels=labels, numbers=numbers, seeds=sample_seeds, device=device,
                              progress=True)
        return gen.images, np.array([position[i] for i in gen.columns["source_id"]])

    def embedding_match(images, src, labels, rng):
        """cos(sample, its source) - cos(sample, another real image of the class), in the encoder's space."""
        got = encode(resize(images, tr_x.shape[1]))
        other = np.array([rng.choice(np.setdiff1d(np.flatnonzero(tr_y == y), [i])) for i, y in zip(src, labels)])
        return float(np.mean(np.einsum("ij,ij->i", got, source_vectors[src] - source_vectors[other])))

    ws = list(dict.fromkeys(args.cfg_scale))
    ssl_sets = [f"SSL {mode} w={w:g}" for w in ws for mode in ("variations", "interpolations")]
    sets = ("real train (floor)", "unconditional", "unconditional, same net", "classifier-guided", *ssl_sets)
    results = {name: {"kid": [], "fid": [], "judge": [], "kept": [], "acc": [], "match": []} for name in sets}
    for seed in seeds:
        plain_unet, cond_unet, conditioner, null_model, sched_cfg = models[seed if args.model_seeds else 0]
        diffusion = DiffusionModel(cond_unet, sched_cfg, names, conditioner=conditioner)
        inputs = SynthInputs(diffusion, tr_s, tr_y, names, real_ids=real_ids, real_embeddings=vectors)
        labels, numbers, sample_seeds = plan_samples(np.arange(k), per_class=per_class, base_seed=1000 + seed)
        t0 = time.perf_counter()
        plain = GuidedPipeline(plain_unet.to(device), sampler)(labels, num_inference_steps=cfg["inference_steps"],
                                                              seeds=sample_seeds, batch_size=128, progress=True)
        same_net = EmbeddingPipeline(null_model, sampler, w=0.0)(
            np.zeros((len(labels), vectors.shape[1]), np.float32), num_inference_steps=cfg["inference_steps"],
            seeds=sample_seeds, batch_size=128, progress=True)
        guide = create_guidance("noisy_classifier", clf.to(device), scale=args.guidance_scale)
        guided = GuidedPipeline(plain_unet.to(device), sampler, guide)(
            labels, num_inference_steps=cfg["inference_steps"], seeds=sample_seeds, batch_size=128, progress=True)
        samples, sources = {"real train (floor)": (tr_s, tr_y)}, {}
        for name, images in (("unconditional", plain), ("unconditional, same net", same_net)):
            samples[name] = (images, predict_images(filter_model, images, device=device).argmax(1))  # filter labels
        samples["classifier-guided"] = (guided, labels)
        for name in ssl_sets:
            mode, w = name.split()[1], float(name.split("w=")[1])
            images, sources[name] = ssl_samples(inputs, mode, w, labels, numbers, sample_seeds, 1000 + seed)
            samples[name] = (images, labels)
        print(f"seed {seed}: sampled {len(samples) - 1} x {len(labels)} images in {time.perf_counter() - t0:.0f}s")
        acc_real = convnet(tr_s, tr_y, seed)
        for name, (images, y) in samples.items():
            feats = embed_images(judge, images, device=device)
            results[name]["kid"].append(kid(ref, feats).mean)
            results[name]["fid"].append(fid(ref, feats))
            results[name]["judge"].append(float((predict_images(judge, images, device=device).argmax(1) == y).mean()))
            if name in sources:
                results[name]["match"].append(embedding_match(images, sources[name], y, np.random.default_rng(seed)))
            if name.startswith("real"):
                results[name]["acc"].append(acc_real)
                results[name]["kept"].append(len(y))
                continue
            kept = filter_samples(predict_images(filter_model, images, device=device), y,
                                  embed_images(copy_model, images, device=device), real_copy_f,
                                  min_confidence=min_confidence, min_copy_distance=0.02).keep
            results[name]["kept"].append(int(kept.sum()))
            results[name]["acc"].append(convnet(np.concatenate([tr_s, images[kept]]),
                                                np.concatenate([tr_y, y[kept]]), seed))
        if args.out is not None and seed == seeds[0]:
            args.out.mkdir(parents=True, exist_ok=True)
            head = f"w={ws[-1]:g}"
            variations, interpolations = samples[f"SSL variations {head}"][0], samples[f"SSL interpolations {head}"][0]
            picks = [np.flatnonzero(labels == c)[0] for c in range(k)]
            rows = [[tr_s[sources[f"SSL variations {head}"][i]], variations[i], interpolations[i], guided[i],
                     plain[i]] for i in picks]
            write_png(args.out / "ssl_variations.png", row_grid(rows), scale=3)
            for name, (images, y) in samples.items():
                grid = class_grid(images, y, num_classes=k, per_class=8)
                slug = "".join(c if c.isalnum() else "_" for c in name.lower())
                write_png(args.out / f"ssl_{slug}.png", grid, scale=2)

    print(f"\nquality vs held-out real test ({judge_name} features), {per_class} per class per set, "
          f"seeds {seeds}{' (each trains its own diffusion models)' if args.model_seeds else ''} "
          f"(mean +- 95% t-interval over seeds); match: cos(sample, its source) - cos(sample, another "
          f"real image of its class) in the encoder's space; augmentation: ConvNet width {cfg['width']}, "
          f"{cfg['epochs']} epochs on the {len(tr_x)} real images plus the set's samples kept by the filter "
          f"({threshold_note}, copy distance >= 0.02)")
    print(f"   {'set':26s} {'KID':>17s} {'FID':>15s} {'judge acc':>15s} {'match':>15s} {'kept':>7s} "
          f"{'held-out acc':>15s} {'gain vs real (paired)':>22s}")
    for name in sets:
        r = results[name]
        gain = np.subtract(r["acc"], results["real train (floor)"]["acc"]).tolist()
        print(f"   {name:26s} {interval(r['kid']):>17s} {interval(r['fid']):>15s} {interval(r['judge']):>15s} "
              f"{interval(r['match']) if r['match'] else '':>15s} {np.mean(r['kept']):7.0f} "
              f"{interval(r['acc']):>15s} {'' if name.startswith('real') else interval(gain):>22s}")
    for base in ("unconditional", "unconditional, same net"):
        for w in ws:
            gap = np.subtract(results[base]["kid"], results[f"SSL variations w={w:g}"]["kid"]).tolist()
            print(f"   KID({base}) - KID(SSL variations w={w:g}), paired by seed: {interval(gap)} "
                  f"({', '.join(f'{v:.4f}' for v in gap)})")


def calibration_rows(real_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The train rows OUTSIDE the ``real_per_class`` subset (never trained on): the filter's calibration images."""
    all_x, all_y = load_data(10 ** 6)[:2]
    rest = np.concatenate([np.flatnonzero(all_y == c)[real_per_class:] for c in np.unique(all_y)])
    return all_x[rest], all_y[rest]


def panorama_part(args, cfg) -> None:
    """A 16 px patch model on ImageNet val_subset 64x64 downscales; 64x64 panoramas of held-out references."""
    import functools

    from PIL import Image

    from curate.execute.local import array_batches, map_batches
    from curate.learn import resolve_device
    from curate.learn.embed import EmbedFn
    from synth.conditioning import ConditionedUNet, Conditioner, context_width
    from synth.panorama import assemble, patch_grid
    from synth.pipeline import make_sampler
    from synth.quality import row_grid, write_png
    from synth.train_diffusion import build_unet, to_uint8, train_ddpm

    device, window, size = resolve_device(args.device), 16, 64
    files = sorted((IMAGENET / "images").glob("*.JPEG"))
    images = np.stack([np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BICUBIC)) for f in files])
    train_imgs, refs = images[:cfg["patch_images"]], images[-cfg["references"]:]
    encoder_name, encoder = ssl_encoder(args, cfg, resize(train_imgs, 32))
    embed = EmbedFn(encoder, device=device, normalize=True)

    def vectors_of(patches):
        return map_batches(embed, array_batches(patches, batch_size=256), rows=len(patches))["embeddings"]

    patches = np.concatenate([patch_grid(im, window) for im in train_imgs])
    vecs = vectors_of(patches)
    print(f"part=panorama threads={torch.get_num_threads()} {len(train_imgs)} images -> {len(patches)} patches of "
          f"{window} px, encoder {encoder_name}; {len(refs)} held-out references at {size}x{size}")

    def build():
        unet = build_unet(image_size=window, block_out_channels=cfg["block_out_channels"],
                          layers_per_block=cfg["layers_per_block"], attention_levels=cfg["cond_levels"],
                          conditioning="cross_attention", context_dim=cfg["context_dim"], seed=0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return unet, Conditioner(vecs.shape[1], context_width(unet, "cross_attention"))

    unet, conditioner, sched_cfg = cached_ddpm(
        args, "patches", build, lambda pair: train_ddpm(
            pair[0], patches, embeddings=vecs, conditioner=pair[1], steps=cfg["patch_steps"],
            batch_size=cfg["batch_size"], lr=5e-4, warmup_steps=50, ema_decay=0.995, seed=0, device=device,
            progress=True))
    model = ConditionedUNet(unet, conditioner).to(device).eval()
    denoise = functools.partial(model.guided_eps, w=3.0)  # the notebook's w
    sampler = make_sampler("ddim", sched_cfg)
    rows, seam, match = [], {"tiles": [], "panorama": []}, {"tiles": [], "panorama": []}
    ref_grids = [torch.from_numpy(vectors_of(patch_grid(r, window))).reshape(4, 4, -1) for r in refs]
    for i, (ref, grid) in enumerate(zip(refs, ref_grids)):
        row = [ref]
        for name, stride in (("tiles", window), ("panorama", window // 2)):
            out = assemble(denoise, sampler, grid, window=window, stride=stride,
                           num_inference_steps=cfg["panorama_steps"], generator=torch.Generator().manual_seed(i),
                           device=device, progress=False)
            image = to_uint8(out[None])[0]
            row.append(image)
            seam[name].append(seam_ratio(image, window))
            got = vectors_of(patch_grid(image, window))
            own = np.einsum("ij,ij->i", got, grid.reshape(16, -1).numpy()).mean()
            others = np.mean([np.einsum("ij,ij->i", got, g.reshape(16, -1).numpy()).mean()
                              for j, g in enumerate(ref_grids) if j != i])
            match[name].append(own - others)
        rows.append(row)
    print(f"\n{len(refs)} references, {cfg['panorama_steps']} DDIM steps (eta 1), w 3, 4x4 grid of 16 px windows")
    print(f"   {'assembly':10s} {'seam ratio (1 = seamless)':>26s} {'cos(own ref) - cos(other refs)':>31s}")
    for name in ("tiles", "panorama"):
        print(f"   {name:10s} {interval(seam[name]):>26s} {interval(match[name]):>31s}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_png(args.out / "ssl_panorama.png", row_grid(rows, gap=6), scale=2)


# --- Synth III: discriminative class tokens ---------------------------------------------------------------------


def tokens_part(args, cfg, seeds) -> None:
    """A small text-conditioned DDPM on the real subset of a few classes; per seed, a token per class learned against
    a ConvNet GUIDE, and two JUDGES' accuracy on "A photo of <class>" vs "A photo of newclas <class>" samples drawn
    from the same seeds. Judges: the pretrained ResNet (10-way) and a wider ConvNet trained on the OTHER training
    rows of these classes, another seed (4-way); neither guided nor chose anything."""
    from dataclasses import replace

    from curate.learn import ArrayData, Augment, fit, predict_images, resolve_device
    from curate.models import create_model
    from synth.class_tokens import TextToImage, TokenSettings, generate, optimize_token
    from synth.guidance import PixelClassifier
    from synth.methods import plan_samples
    from synth.text_conditioning import text_conditioner, training_prompts
    from synth.train_diffusion import build_unet, train_ddpm

    device = resolve_device(args.device)
    if args.token_epochs:
        cfg = {**cfg, "max_epochs": args.token_epochs[0], "patience": args.token_epochs[1]}
    if args.token_steps:
        cfg = {**cfg, "train_steps": args.token_steps[0], "token_inference_steps": args.token_steps[1]}
    if args.token_cfg is not None:
        cfg = {**cfg, "cfg": args.token_cfg}
    all_x, all_y, te_x, te_y, all_names = load_data(10 ** 6)
    classes = list(args.classes or TOKEN_CLASSES)
    ids = np.array([all_names.index(c) for c in classes])
    k, s = len(classes), cfg["image_size"]
    t2i_steps = args.diffusion_steps or cfg["t2i_steps"]
    rows = [np.flatnonzero(all_y == i) for i in ids]
    subset = np.concatenate([r[:cfg["real_per_class"]] for r in rows])
    other = np.concatenate([r[cfg["real_per_class"]:] for r in rows])
    remap = {int(i): j for j, i in enumerate(ids)}
    tr_s, tr_y = resize(all_x[subset], s), np.array([remap[int(v)] for v in all_y[subset]])
    ot_s, ot_y = resize(all_x[other], s), np.array([remap[int(v)] for v in all_y[other]])
    test = np.isin(te_y, ids)
    te_s, te_y = resize(te_x[test], s), np.array([remap[int(v)] for v in te_y[test]])
    print(f"part=tokens size={args.size} device={device} threads={torch.get_num_threads()} classes={classes} "
          f"real subset={len(tr_s)} other train rows={len(ot_s)} test={len(te_s)} image={s}x{s} "
          f"unet={cfg['token_blocks']} text width={cfg['context_dim']} t2i steps={t2i_steps}")

    def build():
        unet = build_unet(image_size=s, block_out_channels=cfg["token_blocks"], layers_per_block=1,
                          attention_levels=(len(cfg["token_blocks"]) - 1,), conditioning="cross_attention",
                          context_dim=cfg["context_dim"], seed=0)
        return unet, text_conditioner(classes, context_dim=cfg["context_dim"], seed=0, tones=args.token_captions)

    def train(pair):
        texts = training_prompts(tr_s, tr_y, classes, seed=0, tones=args.token_captions)
        prompts = pair[1].encode(texts).numpy()
        return train_ddpm(pair[0], tr_s, tr_y, embeddings=prompts, conditioner=pair[1], steps=t2i_steps,
                          batch_size=cfg["t2i_batch"], lr=1e-3, warmup_steps=50, ema_decay=0.995, seed=0,
                          device=device, progress=True)

    name = f"text2image_{args.size}_{t2i_steps}" + ("_captions" if args.token_captions else "")
    unet, conditioner, sched_cfg = cached_ddpm(args, name, build, train)
    if args.train_only:
        return
    t2i = TextToImage(conditioner.tokenizer, conditioner.text_encoder, unet, sched_cfg).to(device)

    def convnet(x, y, width, seed):
        model = create_model("convnet", num_classes=k, weights=None, width=width, im_size=s, seed=seed)
        res = fit(model, ArrayData(x, y, augment=Augment(flip=True, crop_padding=2), num_classes=k),
                  epochs=cfg["epochs"], batch_size=64, lr=0.05, seed=seed, device=device, eval_data=(te_s, te_y),
                  progress=False)
        return model, res.final_accuracy

    guide, guide_acc = convnet(tr_s, tr_y, cfg["width"], 100)
    judge4, judge4_acc = convnet(ot_s, ot_y, 2 * cfg["width"], 200)
    judge_name, judge10 = load_judge(10)

    def judge10_correct(images, labels):
        return predict_images(judge10, images, device=device).argmax(1) == ids[labels]

    print(f"guide: ConvNet width {cfg['width']} (seed 100) on the subset, held-out accuracy {guide_acc:.3f}; "
          f"judges (no part in making or choosing samples): {judge_name} 10-way, held-out accuracy at {s}px "
          f"{judge10_correct(te_s, te_y).mean():.3f}; ConvNet width {2 * cfg['width']} (seed 200) on the other "
          f"{len(ot_s)} rows, held-out accuracy {judge4_acc:.3f}")
    classify = PixelClassifier(guide).to(device)
    n_steps, w = cfg["token_inference_steps"], cfg["cfg"]
    print(f"shortened protocol: lr {args.token_lr} (official 1.25e-3), epoch_size 5, max_epochs {cfg['max_epochs']} (official 50), patience "
          f"{cfg['patience']} (15), {cfg['train_steps']} DDIM steps per optimization generation (30), "
          f"{n_steps} per sample, CFG {w} (7), {cfg['token_per_class']} samples per class per seed, seeds {seeds}; "
          f"gradient through the last step (paper){f' and through {args.token_grad_steps}' if args.token_grad_steps else ''}")
    tokenizer, _ = t2i.with_placeholder("newclas")
    start = t2i.init_row(tokenizer, "a")  # the untrained token: the control for the prompt's form
    prompts = ("plain", "init", "token") + (("chain",) if args.token_grad_steps else ())
    scores = {f"{m} {p}": [] for m in ("judge10", "judge4", "guide") for p in prompts}
    seconds, epochs = {c: [] for c in classes}, {c: [] for c in classes}
    per_class = {p: [] for p in prompts}
    for seed in seeds:
        settings = TokenSettings(max_epochs=cfg["max_epochs"], patience=cfg["patience"], seed=35 + seed,
                                 num_inference_steps=cfg["train_steps"], cfg_scale=w, lr=args.token_lr)
        learned, chain = {}, {}
        for y, c in enumerate(classes):
            tok = optimize_token(t2i, classify, class_name=c, target=y, settings=settings)
            learned[y] = tok.row
            seconds[c].append(tok.seconds)
            epochs[c].append(tok.epochs)
            print(f"   seed {seed} {c:12s} {tok.epochs:3d} epochs ({tok.stop}), {tok.seconds:6.1f}s, loss "
                  f"{tok.history[0]['loss']:.3f} -> best {tok.best_loss:.3f}, |kept - init| / |init| "
                  f"{float((tok.row.flatten() - start).norm() / start.norm()):.2f}", flush=True)
            if args.token_grad_steps:
                tok = optimize_token(t2i, classify, class_name=c, target=y, settings=replace(
                    settings, grad_steps=args.token_grad_steps))
                chain[y] = tok.row
                print(f"   seed {seed} {c:12s} gradient through {args.token_grad_steps} steps: {tok.epochs:3d} epochs "
                      f"({tok.stop}), {tok.seconds:6.1f}s, loss {tok.history[0]['loss']:.3f} -> best "
                      f"{tok.best_loss:.3f}", flush=True)
        labels, _, sample_seeds = plan_samples(np.arange(k), per_class=cfg["token_per_class"], base_seed=1000 + seed)
        for name, tokens in zip(prompts, ({y: None for y in learned}, {y: start for y in learned}, learned, chain)):
            images = generate(t2i, tokens, classes, labels, sample_seeds, steps=n_steps, cfg_scale=w, batch_size=64)
            scores[f"judge10 {name}"].append(float(judge10_correct(images, labels).mean()))
            right4 = predict_images(judge4, images, device=device).argmax(1) == labels
            scores[f"judge4 {name}"].append(float(right4.mean()))
            per_class[name].append([float(right4[labels == y].mean()) for y in range(k)])
            guided = predict_images(guide, images, device=device)
            scores[f"guide {name}"].append(float(guided[np.arange(len(labels)), labels].mean()))
    print("\ntoken optimization per class to the stopping rule: "
          + "; ".join(f"{c} {interval(seconds[c])} s, {np.mean(epochs[c]):.1f} epochs" for c in classes))
    print(f"   {'prompt':28s} {'ResNet judge acc':>18s} {'ConvNet judge acc':>18s} {'guide p(target)':>18s}")
    for name, label in zip(prompts, ("A photo of <class>", "newclas, untrained ('a')", "newclas, learned",
                                     f"learned, grad {args.token_grad_steps} steps")):
        print(f"   {label:28s} {interval(scores[f'judge10 {name}']):>18s} {interval(scores[f'judge4 {name}']):>18s} "
              f"{interval(scores[f'guide {name}']):>18s}")
    print("   ConvNet judge accuracy per class (mean over seeds): " + "; ".join(
        f"{p} " + ", ".join(f"{c} {v:.3f}" for c, v in zip(classes, np.mean(per_class[p], axis=0))) for p in prompts))
    for judge in ("judge10", "judge4"):
        for name in prompts[2:]:
            for base in ("plain", "init"):
                gain = np.subtract(scores[f"{judge} {name}"], scores[f"{judge} {base}"]).tolist()
                print(f"   {judge} accuracy gain of {name} over {base}, paired by seed: {interval(gain)} "
                      f"({', '.join(f'{v:+.3f}' for v in gain)})")


def seam_ratio(image: np.ndarray, window: int) -> float:
    """Mean absolute step between neighbouring pixels across window borders over the mean step elsewhere."""
    x = image.astype(np.float64)
    dy, dx = np.abs(np.diff(x, axis=0)).mean(axis=(1, 2)), np.abs(np.diff(x, axis=1)).mean(axis=(0, 2))
    border = np.arange(window - 1, len(dy), window)
    inside = np.setdiff1d(np.arange(len(dy)), border)
    return float((dy[border].mean() + dx[border].mean()) / (dy[inside].mean() + dx[inside].mean()))


if __name__ == "__main__":
    main()
