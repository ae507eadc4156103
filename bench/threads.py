"""Torch thread settings on a CPU that another process may share: which count and OpenMP wait policy degrade least.

Run: ``python bench/threads.py [--repeats 5] [--workloads train dm embed] [--settings t1 t2 t2-passive ...]``.

Each measurement is a fresh worker process (OpenMP reads ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` once, when
torch loads its libgomp), timing fixed curate workloads after one warm-up epoch of the ``eval`` network:

- ``train``: one epoch of ``curate.learn.fit`` of a ConvNet-3 (width 32, batch 64: the demo's train step) on
  2,000 random 32x32 images;
- ``dm``: ``curate.condense.distill(method="dm", ipc=10, iterations=1)`` (ConvNet-128, the condense step's
  defaults) on the same images: its set-up and one iteration;
- ``eval``: 10 epochs of a ConvNet-128 on 100 images (what condensation's evaluation trains: tiny batches);
- ``embed`` (not by default): ``curate.learn.embed`` of ResNet-20 over the 2,000 images (decode + forward).

Each setting (thread count + OpenMP environment) runs (a) with nothing added and (b) beside a Python busy
loop pinned to CPU 0 that the bench starts itself. Settings and conditions run interleaved, in a shuffled order
per repeat, and the table shows medians, so load from other users of a shared machine spreads over all of them;
each row also carries the median 1-minute load average seen at its starts. The torch build must use OpenMP
(``torch.__config__.parallel_info()`` is printed): this build ships GNU libgomp, so ``KMP_BLOCKTIME`` (Intel
OpenMP) does not apply and ``GOMP_SPINCOUNT`` is its counterpart.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

SETTINGS = {  # name -> (torch threads, extra environment)
    "t1": (1, {}),
    "t2": (2, {}),
    "t2-passive": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "t2-active": (2, {"OMP_WAIT_POLICY": "ACTIVE"}),
    "t2-spin10k": (2, {"GOMP_SPINCOUNT": "10000"}),
    "t1-passive": (1, {"OMP_WAIT_POLICY": "PASSIVE"}),
}
WORKLOADS = ("train", "dm", "eval", "embed")
OMP_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "MKL_NUM_THREADS")


def _worker(threads: int, workloads: list[str]) -> None:
    """Times each workload once and prints {workload: seconds} as JSON."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from curate.condense import distill
    from curate.data import make_table
    from curate.learn import ArrayData, embed, fit
    from curate.models import create_model

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2000, 32, 32, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(10), 200)

    def train(epochs: int = 1) -> None:
        model = create_model("convnet", num_classes=10, width=32)
        fit(model, ArrayData(images, labels, num_classes=10), epochs=epochs, batch_size=64, lr=0.05,
            device="cpu", progress=False)

    def dm(iterations: int = 1) -> None:
        distill(images, labels, method="dm", ipc=10, iterations=iterations, device="cpu", progress=False)

    def evaluate(epochs: int = 10) -> None:
        model = create_model("convnet", num_classes=10)
        fit(model, ArrayData(images[:100], labels[::20], num_classes=10), epochs=epochs, batch_size=256,
            lr=0.01, device="cpu", progress=False)

    table = make_table(ids=[str(i) for i in range(len(images))], images=images, labels=labels,
                       class_names=[str(i) for i in range(10)], splits="train")
    resnet = create_model("resnet20-cifar", num_classes=10)

    def embed_pass() -> None:
        embed(resnet, table, device="cpu", progress=False)

    runs = {"train": train, "dm": dm, "eval": evaluate, "embed": embed_pass}
    evaluate(1)  # warm-up: first calls of oneDNN kernels and allocators
    out = {}
    for name in workloads:
        start = time.perf_counter()
        runs[name]()
        out[name] = time.perf_counter() - start
    print(json.dumps(out))


def _busy_loop(cpu: int) -> subprocess.Popen:
    """A pure-Python spinner pinned to ``cpu``: the competing process of the busy condition."""
    code = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def _measure(setting: str, busy: bool, workloads: list[str]) -> tuple[dict[str, float], float]:
    threads, extra = SETTINGS[setting]
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    env.update(extra)
    spinner = _busy_loop(0) if busy else None
    load = os.getloadavg()[0]
    try:
        if spinner is not None:
            time.sleep(0.5)  # the spinner is running before torch starts
        done = subprocess.run([sys.executable, __file__, "--worker", "--threads", str(threads), "--workloads",
                               *workloads], env=env, capture_output=True, text=True, check=True)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return json.loads(done.stdout.strip().splitlines()[-1]), load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=["train", "dm", "eval"])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=["t1", "t2", "t2-passive",
                                                                                   "t2-active", "t2-spin10k"])
    parser.add_argument("--seed", type=int, default=0, help="shuffles the order of the measurements")
    parser.add_argument("--json", help="also write every measurement here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.threads, args.workloads)
        return

    import torch

    print(torch.__config__.parallel_info())
    cpus = sorted(os.sched_getaffinity(0))
    print(f"CPUs this process may use: {cpus}; load average at start {os.getloadavg()}")
    cases = [(s, busy) for s in args.settings for busy in (False, True)]
    records = []
    order = random.Random(args.seed)
    started = time.time()
    for rep in range(args.repeats):
        order.shuffle(cases)
        for setting, busy in cases:
            seconds, load = _measure(setting, busy, args.workloads)
            records.append({"setting": setting, "busy": busy, "repeat": rep, "load": load, **seconds})
            print(f"[{time.time() - started:6.0f}s] repeat {rep} {setting:<11} {'busy' if busy else 'none':<4} "
                  f"load {load:4.1f}  " + "  ".join(f"{w} {seconds[w]:.2f}s" for w in args.workloads), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(records, fh, indent=1)
    _table(records, args.settings, args.workloads)


def _table(records: list[dict], settings: list[str], workloads: list[str]) -> None:
    """Median seconds per (setting, condition), and the ratio to one thread in the same condition."""
    def median(setting, busy, key):
        return statistics.median(r[key] for r in records if r["setting"] == setting and r["busy"] == busy)

    print("\nmedian seconds (x the one-thread median in the same condition); busy = a spinner pinned to CPU 0")
    print("| setting | condition | load | " + " | ".join(workloads) + " | total |")
    print("|---|---|---:|" + "---:|" * (len(workloads) + 1))
    for busy in (False, True):
        base = {w: median("t1", busy, w) for w in workloads} if "t1" in settings else None
        for s in settings:
            cells = []
            for w in workloads:
                m = median(s, busy, w)
                cells.append(f"{m:.2f}" + (f" ({m / base[w]:.2f}x)" if base else ""))
            total = sum(median(s, busy, w) for w in workloads)
            base_total = sum(base.values()) if base else None
            cells.append(f"{total:.2f}" + (f" ({total / base_total:.2f}x)" if base_total else ""))
            print(f"| {s} | {'busy core' if busy else 'none added'} | {median(s, busy, 'load'):.1f} | "
                  + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
