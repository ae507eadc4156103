"""A k-nearest-neighbour graph over all N indexed vectors, for audits and duplicates.

Row i's neighbours exclude row i itself, even when exact duplicates tie with it at
distance 0. Queries run in batches of ``batch_size`` rows, so memory stays at about
``batch_size * (D + 2 (k + 1))`` floats beyond the index and the (N, k) result.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np

from curate.errors import UsageError
from curate.index.faiss_index import Metric, SimilarityIndex, build_index

log = logging.getLogger(__name__)

EXACT_GRAPH_MAX = 20_000
"""An exact graph costs N^2 D; from about 20k rows of 512 dims an approximate graph is faster, so
"auto" graphs (:func:`graph_index`) switch to IVF there."""

GRAPH_NPROBE = 2
"""IVF cells searched per row of an "auto" graph above :data:`EXACT_GRAPH_MAX` rows."""


def graph_index(embeddings: Any, *, metric: Metric = "cosine") -> SimilarityIndex:
    """The index an "auto" k-NN graph searches: exact (flat) below :data:`EXACT_GRAPH_MAX` rows, else
    IVF-Flat with ~sqrt(N) cells and :data:`GRAPH_NPROBE` probes.

    A graph queries every row, so a cheap build matters as much as the query: IVF with few cells
    trains in about a second at 100k x 512 and its distances are exact (flat codes), where an
    HNSW build alone takes longer than the whole IVF graph. Near neighbours fall in the same or
    an adjacent cell, which is what duplicates and k-NN outliers need.
    """
    n = len(embeddings)
    if n < EXACT_GRAPH_MAX:
        return build_index(embeddings, kind="flat", metric=metric)
    return build_index(embeddings, kind="ivf", metric=metric, nlist=int(round(math.sqrt(n))), nprobe=GRAPH_NPROBE,
                       recall=None)  # few probes on purpose: no recall target, no calibration cost


def knn_graph(
    source: SimilarityIndex | Any,
    *,
    k: int,
    metric: Metric | None = None,
    batch_size: int = 4096,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (N, k) ascending and neighbours (N, k) int64 row positions of every row.

    ``source`` is a built :class:`SimilarityIndex` (its kind decides exact or approximate
    search) or ``embeddings (N, D)``, indexed by :func:`graph_index` with ``metric`` (default
    cosine): exact below :data:`EXACT_GRAPH_MAX` rows. ``k`` is capped at N - 1; approximate
    indexes may leave -1 (distance inf).
    """
    from tqdm.auto import tqdm

    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise UsageError(f"`batch_size` must be an integer >= 1, got {batch_size!r}")
    if isinstance(source, SimilarityIndex):
        if metric is not None and metric != source.metric:
            raise UsageError(f"`metric` is {metric!r} but the index was built with {source.metric!r}; drop `metric`")
        index = source
    else:
        index = graph_index(source, metric=metric or "cosine")
    n = len(index)
    start = time.perf_counter()
    parts_d, parts_r = [], []
    with tqdm(total=n, disable=not progress, desc="k-NN graph", unit="row") as bar:
        for lo in range(0, n, batch_size):
            dist, rows = index.neighbors_of_rows(np.arange(lo, min(lo + batch_size, n)), k)
            parts_d.append(dist)
            parts_r.append(rows)
            bar.update(len(rows))
    log.info("k-NN graph (k=%d) over %d rows in %.1f s", parts_r[0].shape[1], n, time.perf_counter() - start)
    return np.concatenate(parts_d), np.concatenate(parts_r).astype(np.int64, copy=False)
