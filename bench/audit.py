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

cleanlab is not a dependency of curate; without it the tables show curate alone and say so.

    python bench/audit.py                     # N = 1,000,000, K = 1,000 (4 GB file)
    python bench/audit.py --n 100000          # smaller, e.g. on a shared machine
    python bench/audit.py --skip-scale / --skip-quality
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
    import torch

    from curate.models import create_model

    images = np.load(SHARED / "cifar10" / "test" / "images.npy")
    labels = np.load(SHARED / "cifar10" / "test" / "labels.npy")
    model = create_model("resnet20-cifar")
    with torch.no_grad():
        logits = torch.cat([model(model.preprocess(images[a:a + 256])) for a in range(0, len(images), 256)])
    return labels, torch.softmax(logits, dim=1).numpy().astype(np.float32)


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
    args = parser.parse_args()
    impls = ["curate", "cleanlab"] if have_cleanlab() else ["curate"]
    if len(impls) == 1:
        print("NOTE: cleanlab is not importable here, so only curate's implementation is measured; "
              "install cleanlab in this environment to get the side-by-side columns.\n")
    if not args.skip_quality:
        print("## Finding injected label noise (F1)\n")
        print(quality(impls, args.seeds), "\n")
    if not args.skip_scale:
        print("## Runtime and memory\n")
        print(scale(impls, args.n, args.k))


if __name__ == "__main__":
    main()
