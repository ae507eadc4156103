"""Scale-out: embed and annotate on the local executor against Ray with 1 and 2 single-threaded workers.

Run: ``nice -n 10 python bench/scale.py [--rows 22368] [--batch-size 256] [--shard-size 4096] [--out F.json]``
(not in CI; one invocation, about 10-20 minutes on a shared 2-core machine). The rows are the real CIFAR-10
lossless images of ``shared/data/cifar10`` (train + test, 5,592), repeated under new ids up to ``--rows``
and stored as PNG bytes like every table; the model is resnet20-cifar with its bundled weights.

Every timing comes from this one process, so load from other users of the CPU hits all of them alike:

- ``local, 2 threads``: the local executor with torch on both cores (what a user runs without Ray);
- ``local, 1 thread``: the same on one core, the baseline of one Ray worker;
- ``ray, 1 worker`` / ``ray, 2 workers``: :class:`curate.execute.ray.RayExecutor` with ``num_cpus=1`` per
  worker (one torch thread each), on a local cluster of 2 CPUs started here.

The executors take turns, ``--passes`` times, and each keeps its faster pass. Reported apart from the work:
cluster start-up (``ray.init``) and pool start-up (a job of one batch: actors started, the model shipped and
``setup()`` run), which every Ray job pays once. Overheads from differences of trivial jobs (a batch function
that returns each row's index, images still decoded) on one worker: per task from the same batches of 16 rows
in 4 or 64 tasks, per shard from shards of 128 vs 8192 rows, written to disk, in batches of 128. The projection scales
the measured per-worker throughput of ``ray, 2 workers`` linearly to more workers; its assumptions are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from curate.threads import prefer_passive_waiting

prefer_passive_waiting()  # before torch loads, as the CLI does: OpenMP threads sleep instead of spinning

import torch  # noqa: E402

from curate.data import make_table  # noqa: E402
from curate.execute.local import run_batches  # noqa: E402
from curate.execute.ray import RayExecutor, RayOptions  # noqa: E402
from curate.learn import embed  # noqa: E402
from curate.models import create_model  # noqa: E402
from curate.relabel import annotate, create_annotator  # noqa: E402

CIFAR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"
INSTANCES = {  # name: (vCPUs, USD per hour, on-demand list price assumed, us-east-1; check before quoting)
    "c7i.8xlarge": (32, 1.428),
    "c7i.48xlarge": (192, 8.568),
}


class RowIndex:
    """The trivial batch function of the overhead jobs: each row's table index, nothing computed."""

    def setup(self):
        pass

    def __call__(self, batch):
        return {"row": np.asarray(batch["index"])}


def cifar_table(rows: int):
    images = np.concatenate([np.load(CIFAR / part / "images.npy") for part in ("train", "test")])
    labels = np.concatenate([np.load(CIFAR / part / "labels.npy") for part in ("train", "test")])
    take = np.arange(rows) % len(images)
    classes = json.loads((CIFAR / "classes.json").read_text())
    return make_table(ids=[f"c{i}" for i in range(rows)], images=images[take], labels=labels[take].astype(np.int64),
                      class_names=classes, splits="train"), len(images)


class CpuMeter:
    """CPU seconds of this process and its descendants during a block, by group: the driver (this process),
    Ray's actors that run batches (``MapWorker``), and the rest of Ray (raylet, GCS, dashboard agent, Ray Data's
    stats and autoscaling actors, idle workers). Sampled every 0.2 s, since actors exit with their job."""

    def __init__(self):
        import psutil

        self.me = psutil.Process()
        self.first: dict[int, float] = {}  # CPU seconds of the processes alive at the start
        self.last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()

    def _group(self, process) -> str:
        if process.pid == self.me.pid:
            return "driver"
        return "workers" if "MapWorker" in " ".join(process.cmdline()) else "ray, other"

    def sample(self) -> None:
        import psutil

        for process in [self.me, *self.me.children(recursive=True)]:
            try:
                times = process.cpu_times()
                self.last[process.pid] = (self._group(process), times.user + times.system)
            except psutil.Error:
                continue

    def __enter__(self) -> "CpuMeter":
        self.sample()
        self.first = {pid: seconds for pid, (_, seconds) in self.last.items()}
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def seconds(self) -> dict[str, float]:
        out = {"driver": 0.0, "workers": 0.0, "ray, other": 0.0}
        for pid, (group, seconds) in self.last.items():
            out[group] += seconds - self.first.get(pid, 0.0)  # a process born in the block started at 0
        return {k: round(v, 1) for k, v in out.items()}


def timed(run, cpu: dict | None = None):
    """Wall seconds of ``run()`` and its result; with ``cpu``, the CPU seconds by group go into it."""
    meter = CpuMeter() if cpu is not None else contextlib.nullcontext()
    start = time.perf_counter()
    with meter:
        out = run()
    seconds = time.perf_counter() - start
    if cpu is not None:
        cpu.update(meter.seconds())
    return seconds, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=22368)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--shard-size", type=int, default=4096)
    parser.add_argument("--passes", type=int, default=2, help="turns of every executor (the faster counts)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()

    table, distinct = cifar_table(args.rows)
    n, bs = len(table), args.batch_size
    model = create_model("resnet20-cifar", num_classes=10).eval()
    print(f"{n} rows ({distinct} distinct CIFAR-10 images, PNG); resnet20-cifar; batch {bs}; shards of "
          f"{args.shard_size}; CPU shared with other users")
    results: dict = {"rows": n, "batch_size": bs, "shard_size": args.shard_size, "seconds": {}, "cpu": {}}
    sec = results["seconds"]

    import ray

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    sec["cluster_start"] = time.perf_counter() - start
    ray.data.DataContext.get_current().enable_progress_bars = False

    def ray_exec(workers, **extra):
        return RayExecutor(RayOptions(workers=workers, num_cpus=1, shard_size=extra.pop("shard_size", args.shard_size)),
                           **extra)

    sec["pool_start_1_batch"], _ = timed(lambda: ray_exec(2)(RowIndex(), table, batch_size=bs,
                                                             indices=np.arange(bs), progress=False))
    sec["pool_start_embed"], _ = timed(lambda: embed(model, table, indices=np.arange(bs), batch_size=bs,
                                                     device="cpu", progress=False, executor=ray_exec(2)))

    def local(threads):
        def run(fn, table_, **kwargs):
            torch.set_num_threads(threads)
            return run_batches(fn, table_, **kwargs)
        return run

    runs = {"local, 2 threads": local(2), "local, 1 thread": local(1), "ray, 1 worker": ray_exec(1),
            "ray, 2 workers": ray_exec(2)}
    embed(model, table, indices=np.arange(bs), batch_size=bs, device="cpu", progress=False)  # warm-up
    outputs = {}

    def embed_with(executor):
        return embed(model, table, batch_size=bs, device="cpu", progress=False, executor=executor)

    def annotate_with(executor):
        with tempfile.TemporaryDirectory() as folder:
            annotator = create_annotator("dense_classifier", model, top_k=5, device="cpu")
            return annotate(annotator, table, folder, shard_size=args.shard_size, batch_size=bs, executor=executor,
                            progress=False)

    # the executors take turns, twice over; each keeps its faster pass (load from others comes and goes)
    for work, run in (("embed", embed_with), ("annotate", annotate_with)):
        for repeat in range(args.passes):
            for name, executor in runs.items():
                cpu: dict = {}
                seconds, outputs[work, name] = timed(lambda: run(executor), cpu)
                key = f"{work}: {name}"
                if seconds < sec.get(key, float("inf")):
                    sec[key], results["cpu"][key] = seconds, cpu
                print(f"{work:8s} {name:17s} pass {repeat + 1}: {seconds:7.1f} s  {n / seconds:7.0f} images/s  "
                      f"CPU s: {cpu}", flush=True)
    for name in runs:
        np.testing.assert_allclose(outputs["embed", name], outputs["embed", "local, 1 thread"], rtol=1e-4, atol=1e-4)

    # overheads: differences of trivial jobs on one worker, each the faster of two
    def trivial(key, executor, size):
        sec[key] = min(timed(lambda: executor(RowIndex(), table, batch_size=size, progress=False))[0]
                       for _ in range(2))

    # per task: the same batches (of 16) in 4 or 64 tasks per worker (curate.execute.ray.BLOCKS_PER_WORKER)
    import curate.execute.ray as ray_executor

    small, tasks = 16, {}
    for per_worker in (4, 64):
        ray_executor.BLOCKS_PER_WORKER = per_worker
        executor = ray_exec(1)
        trivial(f"trivial: {per_worker} tasks per worker", executor, small)
        tasks[per_worker] = executor.record["tasks"] // 2
    per_task = (sec["trivial: 64 tasks per worker"] - sec["trivial: 4 tasks per worker"]) / (tasks[64] - tasks[4])
    shard_counts = {}
    ray_executor.BLOCKS_PER_WORKER = n  # a task per batch of 128 rows for both shard sizes
    for shard_size in (8192, 128):
        runs_s = []
        for _ in range(2):
            with tempfile.TemporaryDirectory() as folder:  # a fresh folder: nothing to reuse
                executor = ray_exec(1, shard_size=shard_size, shard_dir=folder, signature="bench")
                runs_s.append(timed(lambda: executor(RowIndex(), table, batch_size=128, progress=False))[0])
        sec[f"trivial: shards of {shard_size}"] = min(runs_s)
        shard_counts[shard_size] = executor.record["shards"]
    ray_executor.BLOCKS_PER_WORKER = 4
    per_shard = ((sec["trivial: shards of 128"] - sec["trivial: shards of 8192"])
                 / (shard_counts[128] - shard_counts[8192]))
    results.update(per_task_s=per_task, per_shard_s=per_shard, tasks=tasks, shard_counts=shard_counts)

    print()
    print(f"cluster start-up (ray.init, 2 CPUs):            {sec['cluster_start']:6.1f} s (once per driver)")
    print(f"pool start-up, trivial job of one batch:        {sec['pool_start_1_batch']:6.1f} s (once per job)")
    print(f"pool start-up, embed of one batch:              {sec['pool_start_embed']:6.1f} s")
    print(f"overhead per task (batches of {small}, 1 worker):   {per_task * 1e3:6.1f} ms "
          f"({tasks[64]} vs {tasks[4]} tasks)")
    print(f"overhead per shard (128 vs 8192 rows, written): {per_shard * 1e3:6.1f} ms "
          f"({shard_counts[128]} vs {shard_counts[8192]} shards)")
    print()
    print("| work | local, 2 threads | ray, 2 workers | ratio ray/local | local, 1 thread | ray, 1 worker | ratio |")
    print("|---|---|---|---|---|---|---|")
    for work in ("embed", "annotate"):
        t = {name: sec[f"{work}: {name}"] for name in runs}
        ratio2, ratio1 = t["ray, 2 workers"] / t["local, 2 threads"], t["ray, 1 worker"] / t["local, 1 thread"]
        results[f"{work}_ratio_2"], results[f"{work}_ratio_1"] = ratio2, ratio1
        print(f"| {work} | {t['local, 2 threads']:.1f} s | {t['ray, 2 workers']:.1f} s | {ratio2:.2f}x | "
              f"{t['local, 1 thread']:.1f} s | {t['ray, 1 worker']:.1f} s | {ratio1:.2f}x |")

    print()
    print("projection (assumes: per-worker throughput of `ray, 2 workers` here, one single-threaded worker per "
          "vCPU, linear scaling (rows are independent; no shared state), images already readable by every node, "
          "list prices as in INSTANCES, start-up as measured here):")
    for work in ("embed", "annotate"):
        pool = sec["pool_start_embed"]
        per_worker = n / max(sec[f"{work}: ray, 2 workers"] - pool, 1e-9) / 2
        results[f"{work}_images_per_s_per_worker"] = per_worker
        for images, (instance, count) in ((1_000_000, ("c7i.8xlarge", 1)), (100_000_000, ("c7i.48xlarge", 10))):
            cpus, price = INSTANCES[instance]
            hours = (images / (per_worker * cpus * count) + sec["cluster_start"] + pool) / 3600
            print(f"  {work:8s} {images:>11,} images on {count} x {instance} ({cpus * count} workers): "
                  f"{hours:6.2f} h, ${hours * price * count:,.2f}")
            results[f"{work}_{images}"] = {"instance": instance, "count": count, "hours": hours,
                                           "usd": hours * price * count}
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
