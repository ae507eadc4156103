"""The Ray executor: the same batch function over Ray Data on a pool of actors, outputs in row order.

The selection is cut into shards of ``shard_size`` rows. Their stored image bytes (not decoded pixels) go
to the cluster as Arrow blocks of whole batches (a block is one task); ``map_batches`` runs the batch
function on a fixed pool of ``workers`` actors, each of which calls ``setup()`` once (the model loads once per
worker, not per batch) and decodes its own images. The driver gathers each shard's rows as they come back, in
any order, checks that a finished shard holds each of its rows exactly once, writes it atomically (with
``shard_dir``) and merges the shards in row order. A rerun with the same ``signature`` reuses the shards
already written. A worker that dies is restarted and its batch retried by Ray (``max_retries``); a task's
output counts only once it completed, so a retry never duplicates rows. Ray is an optional extra, imported
only here.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from curate.config import option
from curate.errors import UsageError
from curate.execute import BatchFn
from curate.execute.shards import ShardStore

if TYPE_CHECKING:  # pragma: no cover
    import datasets

log = logging.getLogger(__name__)

INSTALL = "pip install 'curate-toolkit[ray]'"
SHARD, POSITION = "__shard", "__position"
BLOCKS_PER_WORKER = 4


@dataclass(frozen=True, kw_only=True)
class RayOptions:
    """Where the Ray executor runs and with what (``defaults.ray`` of a recipe)."""

    address: str | None = option(None, help="Ray cluster to join (host:port, ray://host:10001 or auto); "
                                            "null: $RAY_ADDRESS, else a new local cluster on this machine")
    workers: int = option(2, ge=1, help="actors in the pool; each loads the model once")
    num_cpus: float = option(1.0, gt=0, help="CPUs reserved per worker (also its torch threads)")
    num_gpus: float = option(0.0, ge=0, help="GPUs reserved per worker")
    shard_size: int = option(4096, gt=0, help="rows per output shard: the unit written to disk and resumed")
    max_retries: int = option(3, ge=0, help="restarts of a worker that died, and retries of its batch")


def ray_installed() -> bool:
    return importlib.util.find_spec("ray") is not None


def cluster_address(address: str | None) -> str | None:
    """The cluster to join: ``address``, else ``$RAY_ADDRESS``; None starts a local one."""
    return address or os.environ.get("RAY_ADDRESS") or None


def connect(address: str | None = None) -> float:
    """Join the cluster at ``address`` (else ``$RAY_ADDRESS``, else start a local one) unless this process
    already did; returns the seconds it took (cluster start-up, reported apart from the work)."""
    problem = RayExecutor.unavailable()
    if problem:
        raise UsageError(problem)
    import ray

    if ray.is_initialized():
        return 0.0
    began = time.perf_counter()
    ray.init(address=cluster_address(address), include_dashboard=False,
             logging_level=logging.WARNING)
    return time.perf_counter() - began


class _Worker:
    """One actor of the pool: the batch function, set up once; decodes each batch's images and runs it."""

    def __init__(self, fn: BatchFn, size: tuple[int, int] | None, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.fn, self.size = fn, size
        fn.setup()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from curate.data.images import decode_stored

        rows = batch["row"]
        images = decode_stored(rows, batch["bytes"], batch["path"], size=self.size)
        out = self.fn({"index": rows, "id": list(batch["id"]), "image": images, "label": batch["label"]})
        return {SHARD: batch[SHARD], POSITION: batch[POSITION], **{k: np.asarray(v) for k, v in out.items()}}


def _block(table: "datasets.Dataset", number: int, rows: np.ndarray, start: int):
    """Rows of shard ``number`` from position ``start`` as an Arrow block: their stored images, ids, labels
    and positions."""
    import pyarrow as pa

    from curate.data.images import stored_images
    from curate.data.table import column

    data, paths = stored_images(table, rows)
    return pa.table({
        SHARD: np.full(len(rows), number, np.int64), POSITION: np.arange(start, start + len(rows), dtype=np.int64),
        "row": rows, "id": column(table, "id").take(rows), "label": column(table, "label").take(rows),
        "bytes": pa.array(data, pa.binary()), "path": pa.array(paths, pa.string()),
    })


class RayExecutor:
    """Runs a batch function like :func:`curate.execute.local.run_batches`, on a Ray cluster.

    ``record`` says what it did (for step.json): the cluster, workers, shards computed and reused, and the
    seconds spent joining the cluster.
    """

    def __init__(self, options: RayOptions | None = None, *, shard_dir: str | Path | None = None,
                 signature: str = ""):
        self.options = options or RayOptions()
        self.store = ShardStore(shard_dir, signature=signature) if shard_dir is not None else None
        o = self.options
        self.record: dict[str, Any] = {"name": "ray", "address": cluster_address(o.address) or "local",
                                       "workers": o.workers, "num_cpus": o.num_cpus, "num_gpus": o.num_gpus,
                                       "shard_size": o.shard_size, "shards": 0, "shards_reused": 0, "tasks": 0,
                                       "startup_s": 0.0}

    @staticmethod
    def unavailable() -> str | None:
        """Why this executor cannot run here (Ray is not installed), or None."""
        return None if ray_installed() else f"the 'ray' executor needs Ray, which is not installed: {INSTALL}"

    def configure(self, *, options: RayOptions | None, shard_dir: str | Path | None, signature: str
                  ) -> "RayExecutor":
        return RayExecutor(options, shard_dir=shard_dir, signature=signature)

    def __call__(self, fn: BatchFn, table: "datasets.Dataset", *, batch_size: int,
                 indices: Sequence[int] | np.ndarray | None = None, size: tuple[int, int] | None = None,
                 progress: bool = True) -> dict[str, np.ndarray]:
        """``fn`` over the rows ``indices`` (all by default); output row i is for ``indices[i]``."""
        rows = np.arange(len(table)) if indices is None else np.asarray(indices, dtype=np.int64)
        if len(rows) == 0:
            raise UsageError("nothing to run: the selection has 0 rows")
        step = self.options.shard_size
        shards = [rows[start:start + step] for start in range(0, len(rows), step)]
        outputs: dict[int, dict[str, np.ndarray]] = {}
        if self.store is not None:
            outputs = {i: out for i, part in enumerate(shards) if (out := self.store.load(part)) is not None}
        pending = [(i, part) for i, part in enumerate(shards) if i not in outputs]
        self.record["shards"] += len(shards)
        self.record["shards_reused"] += len(outputs)
        for number, out in self.iter_shards(fn, table, pending, batch_size=batch_size, size=size, progress=progress):
            if self.store is not None:
                self.store.save(shards[number], out)
            outputs[number] = out
        names = list(outputs[0])
        return {name: np.concatenate([outputs[i][name] for i in range(len(shards))]) for name in names}

    def iter_shards(self, fn: BatchFn, table: "datasets.Dataset", shards: Sequence[tuple[int, np.ndarray]], *,
                    batch_size: int, size: tuple[int, int] | None = None, progress: bool = True
                    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """``(number, outputs)`` of each shard ``(number, rows)`` as it finishes (in any order), its rows in
        the order given; every shard runs in one Ray Data job on one pool of actors."""
        if not shards:
            return
        o = self.options
        ray = self._start()
        ray.data.DataContext.get_current().enable_progress_bars = progress
        # a block is one task: whole batches, at least BLOCKS_PER_WORKER of them per worker so that every worker
        # stays busy to the end, and no more (each task costs scheduling and a round trip)
        total = sum(len(rows) for _, rows in shards)
        step = batch_size * max(1, total // (o.workers * BLOCKS_PER_WORKER * batch_size))
        blocks = [_block(table, number, rows[start:start + step], start)
                  for number, rows in shards for start in range(0, len(rows), step)]
        self.record["tasks"] += len(blocks)
        dataset = ray.data.from_arrow(blocks)
        with warnings.catch_warnings():
            # Ray 2.60 takes the actors' restarts only as extra remote args (deprecated for 2.64, no named
            # parameter yet; its default is to restart and retry forever, which hangs on a batch that always
            # kills its worker)
            warnings.simplefilter("ignore", DeprecationWarning)
            mapped = dataset.map_batches(
                _Worker, fn_constructor_kwargs={"fn": fn, "size": size, "threads": max(1, int(o.num_cpus))},
                batch_size=batch_size, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=min(o.workers, len(blocks))), num_cpus=o.num_cpus,
                num_gpus=o.num_gpus or None, max_restarts=o.max_retries, max_task_retries=o.max_retries)
        expected = {number: len(rows) for number, rows in shards}
        parts: dict[int, list[dict[str, np.ndarray]]] = {number: [] for number in expected}
        got = dict.fromkeys(expected, 0)
        for batch in mapped.iter_batches(batch_size=None, batch_format="numpy"):
            for number in np.unique(batch[SHARD]):
                if number not in parts:
                    raise RuntimeError(f"ray: rows of shard {number} came back after it was complete")
                mask = batch[SHARD] == number
                parts[number].append({k: v[mask] for k, v in batch.items() if k != SHARD})
                got[number] += int(mask.sum())
                if got[number] >= expected[number]:
                    yield int(number), _in_order(parts.pop(number), expected[number], int(number))

    def map_tasks(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """``fn`` over ``items`` as Ray tasks of ``num_cpus``/``num_gpus`` each (retried like batches), results
        in item order: parallel work that is not batches of table rows, e.g. filling index shards."""
        o = self.options
        ray = self._start()
        remote = ray.remote(num_cpus=o.num_cpus, num_gpus=o.num_gpus or None, max_retries=o.max_retries)(fn)
        self.record["tasks"] += len(items)
        return ray.get([remote.remote(item) for item in items])

    def _start(self):
        """Join the cluster (timing it into the record), check it can hold the pool; returns the ``ray`` module."""
        self.record["startup_s"] = round(self.record["startup_s"] + connect(self.options.address), 3)
        import ray

        self._check_resources(ray)
        return ray

    def _check_resources(self, ray) -> None:
        o = self.options
        if cluster_address(o.address):
            return  # a real cluster may autoscale to what the pool asks for
        have = ray.cluster_resources()
        for name, each in (("CPU", o.num_cpus), ("GPU", o.num_gpus)):
            if each and have.get(name, 0) < o.workers * each:
                raise UsageError(f"ray: {o.workers} workers x {each:g} {name}s need {o.workers * each:g} {name}s, "
                                 f"but the local cluster has {have.get(name, 0):g}; lower `ray.workers` or "
                                 f"`ray.num_{name.lower()}s`, or set `ray.address` to a larger cluster")


def _in_order(parts: list[dict[str, np.ndarray]], rows: int, number: int) -> dict[str, np.ndarray]:
    """A finished shard's outputs sorted by position; each position exactly once, or an error."""
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    positions = merged.pop(POSITION)
    order = np.argsort(positions, kind="stable")
    if not np.array_equal(positions[order], np.arange(rows)):
        raise RuntimeError(f"ray: shard {number} came back with {len(positions)} rows for {rows} "
                           f"({len(positions) - len(np.unique(positions))} duplicated); its output is not used")
    return {k: v[order] for k, v in merged.items()}


run_batches = RayExecutor()
"""The Ray executor with default options and no shard folder (what :data:`curate.execute.EXECUTORS` holds)."""

