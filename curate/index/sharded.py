"""A FAISS index built per shard and merged: what one build gives, with the adding spread over workers.

One index is trained once (for IVF kinds: the shared coarse quantizer, and the PQ codebooks of ``ivfpq``),
exactly as :func:`curate.index.build_index` trains it. Each shard of rows then fills its own copy of that
trained, empty index (in parallel, through ``map_tasks``: the local ``map`` or
:meth:`curate.execute.ray.RayExecutor.map_tasks`), and the filled copies are merged in row order with
FAISS's ``merge_from``. Every shard shares the quantizer, so a vector lands in the same inverted list as in a
single build and a search returns the same neighbours. HNSW graphs cannot be merged, so ``hnsw`` is refused.
Calibration needs rows left out of the index, so the knob is given or the kind's default (no recall target).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from curate.errors import UsageError
from curate.index.faiss_index import SimilarityIndex, checked_build_inputs
from curate.index.kinds import index_kind, positive_int, resolve_kind
from curate.index.vectors import Metric

if TYPE_CHECKING:  # pragma: no cover
    import faiss

MERGEABLE = ("flat", "ivf", "ivfpq")


def _fill(item: tuple[bytes, str, np.ndarray, np.ndarray]) -> bytes:
    """A shard's copy of the trained empty index (serialized), filled with its rows (on a worker)."""
    import faiss

    template, kind, x, rows = item
    index = faiss.deserialize_index(np.frombuffer(template, dtype=np.uint8))
    index_kind(kind).add(index, x, rows, late=False)
    return faiss.serialize_index(index).tobytes()


def build_sharded_index(
    embeddings: Any,
    *,
    shards: int,
    kind: str = "auto",
    metric: Metric = "cosine",
    ids: Sequence[str] | None = None,
    nlist: int | None = None,
    nprobe: int | None = None,
    m_pq: int | None = None,
    train_size: int | None = None,
    seed: int = 0,
    meta: dict[str, Any] | None = None,
    map_tasks: Callable[[Callable, Sequence], Iterable] = map,
) -> SimilarityIndex:
    """Index ``embeddings (N, D)`` in ``shards`` parts of consecutive rows, filled by ``map_tasks(fn, items)``
    (results in item order) and merged; FAISS id i is row i (sample ``ids[i]``), as with ``build_index``.

    Options mean what they mean to :func:`curate.index.build_index` (``kind``: ``auto``, ``flat``, ``ivf``
    or ``ivfpq``); the merged index saves, loads and searches like one built there.
    """
    import faiss

    positive_int("shards", shards)
    given = {name: value for name, value in (("nlist", nlist), ("nprobe", nprobe), ("m_pq", m_pq),
                                             ("train_size", train_size)) if value is not None}
    x, ids, meta = checked_build_inputs(embeddings, kind=kind, metric=metric, ids=ids, given=given,
                                        meta={**(meta or {}), "shards": None})
    n, d = x.shape
    resolved = resolve_kind(kind, n)
    if resolved not in MERGEABLE:
        raise UsageError(f"a '{resolved}' index cannot be merged from shards; use one of {', '.join(MERGEABLE)}")
    family = index_kind(resolved)
    params = family.resolve(n, d, {k: v for k, v in given.items() if k in family.options}, seed=seed, trainable=n)
    metric_type = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    trained = family.create(d, params, metric_type)
    family.train(trained, x, params, rows=np.arange(n))
    template = faiss.serialize_index(trained).tobytes()
    bounds = np.linspace(0, n, min(shards, n) + 1).astype(np.int64)
    items = [(template, resolved, x[start:stop], np.arange(start, stop)) for start, stop in zip(bounds, bounds[1:])]
    index = _merge([faiss.deserialize_index(np.frombuffer(part, dtype=np.uint8)) for part in map_tasks(_fill, items)])
    family.finish(index, np.arange(n))
    if family.knob is not None:
        params.setdefault(family.knob, family.default_knob(params))
    meta["shards"] = len(items)
    return SimilarityIndex(index, kind=resolved, metric=metric, ids=ids, params=params, meta=meta)


def _merge(parts: list["faiss.Index"]) -> "faiss.Index":
    """The parts merged in order into the first: IVF parts hold their row numbers as ids already, flat parts
    are numbered by position, which the order keeps."""
    merged = parts[0]
    for part in parts[1:]:
        merged.merge_from(part, 0)
    return merged
