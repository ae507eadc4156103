"""Benchmark audits.label_issues.find_label_issues (and cleanlab's, when it is importable).

1. Quality: CIFAR-10 test subset (932 images) with held-out probabilities of the bundled ResNet-20
   (trained on CIFAR-10 train), 10% and 20% injected noise, symmetric and class-conditional, mean
   over ``--seeds`` noise draws: precision, recall and F1 for finding the flipped labels, and the
   runtime ratio, on the same pred_probs for both implementations.
2. Scale: synthetic N x K float32 pred_probs in a memory-mapped .npy file in a temp dir (true
   labels uniform; logits N(0, 1.5^2) plus 7 on the true class, about 90% top-1; 10% of labels
   flipped uniformly). Each implementation runs in a fresh subprocess that reports wall and CPU
   time (first and second call), peak RSS (VmHWM: it includes the pages of the mapped file that
   were read) and the tracemalloc peak of a third call (heap arrays only).

3. Where pred_probs come from: the same CIFAR-10 subset and noise settings, with pred_probs that
   depend on the noisy labels (every source but the last trains on them): a linear and a k-NN
   probe (5 folds, ``curate.learn.cross_val_probe``) over three embeddings (the bundled ResNet-20's
   features, which saw CIFAR-10 train labels; the same network randomly initialised; 8x8 pixel
   thumbnails), the out-of-fold ConvNet-3 of ``predict`` with ``folds: 5`` (the step's default
   training options), and ResNet-20's held-out probabilities. Mean and 95% t-interval over
   ``--seeds`` noise draws of precision, recall and F1 of curate's find_label_issues, the accuracy
   of the pred_probs on the true labels, how often the audit's near-chance check fires, and the
   seconds each source takes to produce its pred_probs (embedding excluded, printed apart).

cleanlab is not a dependency of curate; without it the tables show curate alone and say so.

    python bench/audit.py                     # N = 1,000,000, K = 1,000 (4 GB file)
    python bench/audit.py --n 100000          # smaller, e.g. on a shared machine
    python bench/audit.py --skip-scale / --skip-quality / --skip-sources
    python bench/audit.py --skip-scale --skip-quality --threads 1   # the pred_probs sources alone
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PAIRS = np.array([8, 9, 0, 5, 7, 3, 2, 4, 0, 1])  # class-conditional flips: a look-alike per CIFAR class


def have_cleanlab() -> bool:
    try:
        import cleanlab.filter  # noqa: F401
    except ImportError:
        return False
    return True


def finder(impl: str):
    if impl == "cleanlab":
        from cleanlab.filter import find_label_issues as clf

        return lambda labels, p: clf(labels, p)
    from audits.label_issues import find_label_issues

    return lambda labels, p: find_label_issues(labels, p)


# ---------------------------------------------------------------- 1. quality on CIFAR-10


def cifar_pred_probs() -> tuple[np.ndarray, np.ndarray]:
    images = np.load(SHARED / "cifar10" / "test" / "images.npy")
    labels = np.load(SHARED / "cifar10" / "test" / "labels.npy")
    return labels, resnet20_outputs(images, weights="default")[1].astype(np.float32)


def flip(labels: np.ndarray, rate: float, kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chosen = rng.random(len(labels)) < rate
    new = (labels + rng.integers(1, 10, len(labels))) % 10 if kind == "symmetric" else PAIRS[labels]
    return np.where(chosen, new, labels)


def quality(impls: list[str], seeds: int) -> str:
    labels, p = cifar_pred_probs()
    acc = (p.argmax(axis=1) == labels).mean()
    rows = []
    for kind in ("symmetric", "class_conditional"):
        for rate in (0.1, 0.2):
            stats = {impl: [] for impl in impls}
            for seed in range(seeds):
                noisy = flip(labels, rate, kind, seed)
                flipped = noisy != labels
                for impl in impls:
                    find = finder(impl)
                    t = time.perf_counter()
                    mask = find(noisy, p)
                    elapsed = time.perf_counter() - t
                    tp = (mask & flipped).sum()
                    prec, rec = tp / max(mask.sum(), 1), tp / flipped.sum()
                    stats[impl].append((prec, rec, 2 * prec * rec / max(prec + rec, 1e-12), elapsed))
            row = f"| {kind} | {rate:.0%} |"
            for impl in impls:
                prec, rec, f1, sec = np.mean(stats[impl], axis=0)
                row += f" {prec:.3f} | {rec:.3f} | {f1:.3f} | {sec * 1e3:.1f} |"
            if len(impls) == 2:
                row += f" {np.mean(stats['curate'], axis=0)[3] / np.mean(stats['cleanlab'], axis=0)[3]:.2f} |"
            rows.append(row)
    cols = "".join(f" {i} precision | {i} recall | {i} F1 | {i} ms |" for i in impls)
    head = "| noise | rate |" + cols + (" time ratio curate/cleanlab |" if len(impls) == 2 else "")
    rule = "|---" * (2 + 4 * len(impls) + (len(impls) == 2)) + "|"
    note = (f"CIFAR-10 test subset, N = {len(labels)}, ResNet-20 top-1 {acc:.1%} on the clean labels; "
            f"mean over {seeds} noise seeds; default filter_by='prune_by_noise_rate'.")
    return "\n".join([note, "", head, rule, *rows])


# ---------------------------------------------------------------- 2. scale on synthetic pred_probs


def write_synthetic(path: Path, n: int, k: int, seed: int = 0) -> np.ndarray:
    """Write (n, k) float32 probabilities to a .npy memmap in row blocks; return the noisy labels."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, k))
    block = max(1, (1 << 22) // k)
    for a in range(0, n, block):
        b = min(n, a + block)
        z = rng.standard_normal((b - a, k), dtype=np.float32) * 1.5
        z[np.arange(b - a), true[a:b]] += 7.0
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        out[a:b] = z
    out.flush()
    del out
    flipped = rng.random(n) < 0.1
    return np.where(flipped, (true + rng.integers(1, k, n)) % k, true)


def _status_bytes(field: str) -> int | None:
    """A ``/proc/self/status`` memory field in bytes (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the next peak belongs to the next call."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def worker(impl: str, probs: Path, labels: Path) -> None:
    """Subprocess body: time two calls (peak RSS of each), then a third under tracemalloc; print one JSON line.

    Peak RSS is VmHWM of this process (not ``ru_maxrss``, which Linux carries over from the parent
    across fork + exec).
    """
    import tracemalloc

    find = finder(impl)
    y = np.load(labels)
    p = np.load(probs, mmap_mode="r")
    calls = []
    for _ in range(2):
        _reset_peak_rss()
        base = _status_bytes("VmRSS")
        w, c = time.perf_counter(), time.process_time()
        mask = find(y, p)
        calls.append({"wall": time.perf_counter() - w, "cpu": time.process_time() - c, "base_rss": base,
                      "peak_rss": _status_bytes("VmHWM"), "file_rss": _status_bytes("RssFile")})
    tracemalloc.start()
    find(y, p)
    heap = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(json.dumps({"calls": calls, "heap_peak": heap, "flagged": int(mask.sum())}))


def scale(impls: list[str], n: int, k: int) -> str:
    rows = []
    with tempfile.TemporaryDirectory(prefix="curate-bench-") as tmp:
        probs, labels = Path(tmp) / "pred_probs.npy", Path(tmp) / "labels.npy"
        t = time.perf_counter()
        np.save(labels, write_synthetic(probs, n, k))
        gen = time.perf_counter() - t
        size = n * k * 4
        for impl in impls:
            env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
            out = subprocess.run([sys.executable, __file__, "--_worker", impl, str(probs), str(labels)],
                                 capture_output=True, text=True, env=env, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            first, second = r["calls"]
            peak = max(c["peak_rss"] for c in r["calls"])
            rows.append(f"| {impl} | {first['wall']:.2f} | {second['wall']:.2f} | {second['cpu']:.2f} | "
                        f"{peak / 2**30:.2f} ({peak / size:.2f}x) | {first['base_rss'] / 2**30:.2f} | "
                        f"{second['file_rss'] / 2**30:.2f} | {r['heap_peak'] / 2**20:.0f} | {r['flagged']} |")
    head = ("| impl | 1st call s | 2nd call s | 2nd call CPU s | peak RSS GiB (x input) | RSS before GiB "
            "| mapped file in RSS GiB | heap peak MiB | flagged |")
    note = (f"Synthetic N = {n:,}, K = {k:,} float32 ({size / 2**30:.2f} GiB memory-mapped .npy; written in "
            f"{gen:.1f} s). Peak RSS counts the mapped file's pages that were read: 1.0x is the file alone.")
    return "\n".join([note, "", head, "|---" * 9 + "|", *rows])


# ---------------------------------------------------------------- 3. where pred_probs come from

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}  # Student t quantiles by degrees of freedom
NOISE = [(kind, rate) for kind in ("symmetric", "class_conditional") for rate in (0.1, 0.2)]


def mean_ci(values: list[float]) -> str:
    """``mean ± half-width`` of the 95% t-interval (the mean alone for one value)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return f"{v.mean():.3f}"
    return f"{v.mean():.3f} ± {T975.get(len(v) - 1, 1.96) * v.std(ddof=1) / np.sqrt(len(v)):.3f}"


def resnet20_outputs(images: np.ndarray, *, weights: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(L2-normalized pooled features (N, 64), softmax probabilities (N, 10)) of ResNet-20, as the
    embed and predict steps compute them; ``weights=None`` is a seeded random init."""
    import torch

    from curate.models import create_model

    model = create_model("resnet20-cifar", num_classes=10, weights=weights, seed=0)
    feats, probs = [], []
    with torch.no_grad():
        for a in range(0, len(images), 256):
            fmap = model.forward_features(model.preprocess(images[a:a + 256]))
            feats.append(torch.nn.functional.normalize(model.pool_features(fmap), dim=1))
            probs.append(model.forward_head(fmap).softmax(1))
    return torch.cat(feats).numpy(), torch.cat(probs).numpy()


def pixel_thumbnails(images: np.ndarray) -> np.ndarray:
    """8x8 RGB thumbnails (4x4 average pooling), centred on the mean thumbnail: an embedding that no
    label ever shaped (192 dimensions)."""
    n, h, w, c = images.shape
    thumbs = images.reshape(n, h // 4, 4, w // 4, 4, c).mean(axis=(2, 4)).reshape(n, -1) / 255.0
    return (thumbs - thumbs.mean(axis=0)).astype(np.float32)


def convnet_out_of_fold(images: np.ndarray, noisy: np.ndarray, seed: int, *, epochs: int, width: int) -> np.ndarray:
    """What `predict` with ``model: convnet, weights: null, folds: 5`` computes (its default training)."""
    from curate.learn import cross_val_pred_probs
    from curate.models import create_model
    from curate.steps.options import FitOptions

    train = FitOptions(epochs=epochs)
    return cross_val_pred_probs(
        lambda fold: create_model("convnet", num_classes=10, weights=None, width=width, seed=seed + fold),
        images, noisy, folds=5, fit_kwargs=dict(train.fit_kwargs(), augment=train.augment()), seed=seed,
        device="cpu", progress=False)


def pred_prob_sources(seeds: int, *, epochs: int, width: int) -> str:
    from audits.chance import check_chance
    from audits.label_issues import find_label_issues
    from curate.learn import KnnProbe, LinearProbe, cross_val_probe

    images = np.load(SHARED / "cifar10" / "test" / "images.npy")
    labels = np.load(SHARED / "cifar10" / "test" / "labels.npy")
    t = time.perf_counter()
    trained, held_out = resnet20_outputs(images, weights="default")
    embed_s = time.perf_counter() - t
    embeddings = {"ResNet-20": trained, "random-init ResNet-20": resnet20_outputs(images, weights=None)[0],
                  "8x8 pixels": pixel_thumbnails(images)}
    sources = {f"{probe.name} probe, {emb}": (lambda noisy, seed, x=x, probe=probe:
                                              cross_val_probe(x, noisy, probe, folds=5, seed=seed))
               for emb, x in embeddings.items() for probe in (LinearProbe(), KnnProbe())}
    sources[f"out-of-fold ConvNet-3 (width {width}, {epochs} epochs, 5 folds)"] = \
        lambda noisy, seed: convnet_out_of_fold(images, noisy, seed, epochs=epochs, width=width)
    sources["ResNet-20 held-out (trained on CIFAR-10 train)"] = lambda noisy, seed: held_out
    cross_val_probe(trained[:100], labels[:100], LinearProbe(), folds=2)  # warm torch up outside the timings
    stats: dict[tuple[str, str], list[tuple[float, ...]]] = {}
    for kind, rate in NOISE:
        for seed in range(seeds):
            noisy = flip(labels, rate, kind, seed)
            flipped = noisy != labels
            for name, source in sources.items():
                t = time.perf_counter()
                p = source(noisy, seed)
                seconds = time.perf_counter() - t
                mask = find_label_issues(noisy, p)
                tp = (mask & flipped).sum()
                prec, rec = tp / max(mask.sum(), 1), tp / flipped.sum()
                f1 = 2 * prec * rec / max(prec + rec, 1e-12)
                stats.setdefault((name, f"{kind} {rate:.0%}"), []).append(
                    (prec, rec, f1, (p.argmax(1) == labels).mean(), check_chance(noisy, p).near_chance, seconds))
                print(f"  {kind} {rate:.0%} seed {seed}: {name}: F1 {f1:.3f} in {seconds:.1f} s", file=sys.stderr)
    settings = [f"{k} {r:.0%}" for k, r in NOISE]
    detail = ["| pred_probs | noise | precision | recall | F1 | accuracy on true labels | near chance | s |",
              "|---" * 8 + "|"]
    for (name, setting), runs in stats.items():
        r = np.asarray(runs, dtype=float)
        detail.append(f"| {name} | {setting} | {mean_ci(r[:, 0])} | {mean_ci(r[:, 1])} | {mean_ci(r[:, 2])} | "
                      f"{mean_ci(r[:, 3])} | {int(r[:, 4].sum())}/{len(r)} | {r[:, 5].mean():.2f} |")
    summary = ["| pred_probs | " + " | ".join(f"F1 {s}" for s in settings) + " | s per run |",
               "|---" * (len(settings) + 2) + "|"]
    for name in sources:
        f1s = [mean_ci(np.asarray(stats[(name, s)])[:, 2]) for s in settings]
        sec = np.mean([run[5] for s in settings for run in stats[(name, s)]])
        summary.append(f"| {name} | " + " | ".join(f1s) + f" | {sec:.2f} |")
    note = (f"CIFAR-10 test subset, N = {len(labels)}; mean ± 95% t-interval over {seeds} noise seeds; curate's "
            f"find_label_issues (prune_by_noise_rate). ResNet-20 embedding of the {len(labels)} images: "
            f"{embed_s:.1f} s (not in the probes' seconds). Every source but ResNet-20's held-out probabilities "
            "trains on the noisy labels.")
    return "\n".join([note, "", *summary, "", *detail])


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--_worker":
        worker(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="rows of the synthetic pred_probs")
    parser.add_argument("--k", type=int, default=1000, help="classes of the synthetic pred_probs")
    parser.add_argument("--seeds", type=int, default=3, help="noise draws per CIFAR setting")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-sources", action="store_true", help="skip the pred_probs sources comparison")
    parser.add_argument("--convnet-epochs", type=int, default=10, help="out-of-fold ConvNet: epochs per fold")
    parser.add_argument("--convnet-width", type=int, default=32, help="out-of-fold ConvNet: channels")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    impls = ["curate", "cleanlab"] if have_cleanlab() else ["curate"]
    if len(impls) == 1:
        print("NOTE: cleanlab is not importable here, so only curate's implementation is measured; "
              "install cleanlab in this environment to get the side-by-side columns.\n")
    if not args.skip_quality:
        print("## Finding injected label noise (F1)\n")
        print(quality(impls, args.seeds), "\n")
    if not args.skip_sources:
        print("## Where pred_probs come from: probes, out-of-fold ConvNet, held-out ResNet-20\n")
        print(pred_prob_sources(args.seeds, epochs=args.convnet_epochs, width=args.convnet_width), "\n")
    if not args.skip_scale:
        print("## Runtime and memory\n")
        print(scale(impls, args.n, args.k))


if __name__ == "__main__":
    main()
