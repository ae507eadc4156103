"""Exact duplicates, near duplicates and leaky splits.

- **Exact**: :func:`pixel_hashes` hashes decoded pixels, so a PNG and a lossless re-encode
  of it match; :func:`file_hashes` hashes file bytes. :func:`group_exact` turns either into
  group ids.
- **Near** (METHODS.md 3.5): candidate pairs come from the k-NN graph of the embeddings
  (:func:`curate.index.knn.knn_graph`), candidates near the threshold are re-scored exactly, and the pairs
  with distance <= ``threshold`` are joined into connected components. One representative
  is kept per component. The candidate graph does not depend on ``threshold``, so
  lowering it only ever splits components. Chaining (A~B, B~C, A!~C) grows components,
  hence pairs are reported too.
- **Leaky splits**: rows of one split (``test``) searched against an index of another
  (``train``) only.

Rows are positions 0..N-1 in the order given; thresholds are distances (cosine distance
``1 - cos`` by default), as everywhere in curate.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from curate.errors import UsageError
from curate.index.faiss_index import Kind, Metric, SimilarityIndex, as_vectors, build_index
from curate.index.knn import graph_index, knn_graph

log = logging.getLogger(__name__)

_RESCORE_BATCH = 65_536
_SEARCH_SLACK = 1e-3
"""Cosine candidates whose search distance exceeds the threshold by more than this are not re-scored:
flat-coded indexes return them exact up to float rounding on unit vectors. PQ codes and L2 (whose
float32 error grows with the vectors' norms) are all re-scored."""


@dataclass(frozen=True, eq=False)
class Pairs:
    """Row pairs with their exact distances, sorted by (i, j).

    Within one set ``i < j``; for :func:`cross_split_pairs` ``i`` is the query row and ``j``
    the reference row (both positions in the full table).
    """

    i: np.ndarray  # (P,) int64
    j: np.ndarray  # (P,) int64
    distance: np.ndarray  # (P,) float32

    def __len__(self) -> int:
        return len(self.i)

    @property
    def edges(self) -> np.ndarray:
        """(P, 2) int64 array of ``[i, j]`` rows."""
        return np.stack([self.i, self.j], axis=1)


@dataclass(frozen=True, eq=False)
class DuplicateGroups:
    """Duplicate groups of N rows: which group each row is in, which row each group keeps."""

    components: np.ndarray  # (N,) int64 group id, numbered in order of each group's first row
    representative: np.ndarray  # (N,) bool: the one row kept per group (singletons keep themselves)
    pairs: Pairs  # the pairs that joined the groups

    @property
    def sizes(self) -> np.ndarray:
        """(G,) rows per group id."""
        return np.bincount(self.components, minlength=int(self.components.max(initial=-1)) + 1)

    @property
    def n_groups(self) -> int:
        """Groups of two or more rows."""
        return int((self.sizes > 1).sum())

    @property
    def n_duplicates(self) -> int:
        """Rows that are not their group's representative (the rows a de-duplication would drop)."""
        return int(len(self.representative) - self.representative.sum())


# ---- hashing ------------------------------------------------------------------------------------
def pixel_hashes(images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """sha256 hex digests (N,) of decoded pixels and their shape.

    ``images`` is uint8 ``(N, H, W, C)`` or a sequence of uint8 ``(H, W[, C])`` arrays of any
    sizes. Decode every image to the same mode (e.g. RGB) first: the hash sees only pixels.
    """
    if isinstance(images, np.ndarray) and images.ndim != 4:
        raise UsageError(f"`images` must be a uint8 array (N, H, W, C) or a list of (H, W[, C]) arrays, "
                         f"got an array of shape {images.shape}")
    digests = []
    for n, image in enumerate(images):
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
            raise UsageError(f"`images[{n}]` must be a uint8 (H, W[, C]) array of decoded pixels, "
                             f"got dtype {arr.dtype} and shape {arr.shape}")
        h = hashlib.sha256(repr(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).data)
        digests.append(h.hexdigest())
    return np.asarray(digests, dtype="<U64")


def file_hashes(paths: Sequence[str | os.PathLike], *, workers: int | None = None) -> np.ndarray:
    """sha256 hex digests (N,) of file bytes: byte-identical files only (a re-encode differs)."""
    from curate.data._parallel import thread_map
    from curate.workspace import file_sha256

    return np.asarray(thread_map(file_sha256, list(paths), workers=workers), dtype="<U64")


def _number_by_first_row(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 0..G-1 in order of each label's first row, so ids are reproducible."""
    uniq, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    return rank[inverse.reshape(-1)]


def group_exact(hashes: Sequence[str] | np.ndarray) -> np.ndarray:
    """Group id (N,) int64 per row: rows with equal hashes share one, numbered by first row."""
    arr = np.asarray(hashes)
    if arr.ndim != 1:
        raise UsageError(f"`hashes` must be 1-D (one per row), got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, np.int64)
    return _number_by_first_row(arr)


# ---- graphs -------------------------------------------------------------------------------------
def connected_components(n: int, pairs: Pairs | np.ndarray) -> np.ndarray:
    """Component id (n,) int64 of each row under the undirected edges ``pairs`` ((P, 2) or
    :class:`Pairs`), numbered in order of each component's first row."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scipy_components

    edges = pairs.edges if isinstance(pairs, Pairs) else np.asarray(pairs)
    if edges.size == 0:
        edges = np.zeros((0, 2), np.int64)
    if edges.ndim != 2 or edges.shape[1] != 2 or not np.issubdtype(edges.dtype, np.integer):
        raise UsageError(f"`pairs` must be an integer (P, 2) array of row pairs, got dtype {edges.dtype} "
                         f"and shape {edges.shape}")
    if edges.size and (edges.min() < 0 or edges.max() >= n):
        raise UsageError(f"`pairs` must hold rows in 0..{n - 1}, got values from {edges.min()} to {edges.max()}")
    if n == 0:
        return np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = scipy_components(graph, directed=False)
    return _number_by_first_row(labels)


def representatives(components: np.ndarray, *, prefer: np.ndarray | None = None) -> np.ndarray:
    """Mask (N,): one row per component, the one with the highest ``prefer`` (e.g. resolution),
    ties and ``prefer=None`` going to the lowest row."""
    comp = np.asarray(components)
    if comp.ndim != 1 or (comp.size and not np.issubdtype(comp.dtype, np.integer)):
        raise UsageError(f"`components` must be a 1-D integer array, got dtype {comp.dtype} and shape {comp.shape}")
    rows = np.arange(len(comp))
    if prefer is None:
        score = np.zeros(len(comp))
    else:
        score = np.asarray(prefer, dtype=np.float64)
        if score.shape != comp.shape or not np.isfinite(score).all():
            raise UsageError(f"`prefer` must be {len(comp)} finite numbers (one per row), got shape {score.shape}")
    order = np.lexsort((rows, -score, comp))
    sorted_comp = comp[order]
    first = np.ones(len(comp), dtype=bool)
    first[1:] = sorted_comp[1:] != sorted_comp[:-1]
    mask = np.zeros(len(comp), dtype=bool)
    mask[order[first]] = True
    return mask


def _groups(components: np.ndarray, pairs: Pairs, prefer: np.ndarray | None) -> DuplicateGroups:
    return DuplicateGroups(components=components, representative=representatives(components, prefer=prefer),
                           pairs=pairs)


# ---- pairs --------------------------------------------------------------------------------------
def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)) \
            or not np.isfinite(threshold) or threshold < 0:
        raise UsageError(f"`threshold` must be a distance >= 0 (cosine distance = 1 - cos), got {threshold!r}")
    return float(threshold)


def _exact_distances(x: np.ndarray, i: np.ndarray, j: np.ndarray, metric: Metric) -> np.ndarray:
    """Distances between rows ``i`` and ``j`` of ``x`` (unit rows for cosine), in batches."""
    out = np.empty(len(i), dtype=np.float32)
    for lo in range(0, len(i), _RESCORE_BATCH):
        a, b = x[i[lo:lo + _RESCORE_BATCH]], x[j[lo:lo + _RESCORE_BATCH]]
        if metric == "cosine":
            out[lo:lo + len(a)] = np.clip(1.0 - np.einsum("pd,pd->p", a, b), 0.0, 2.0)
        else:
            out[lo:lo + len(a)] = np.sqrt(np.einsum("pd,pd->p", a - b, a - b))
    return out


def _make_pairs(i: np.ndarray, j: np.ndarray, distance: np.ndarray) -> Pairs:
    order = np.lexsort((j, i))
    return Pairs(i=i[order].astype(np.int64), j=j[order].astype(np.int64), distance=distance[order])


def near_duplicate_pairs(
    embeddings: Any,
    *,
    threshold: float,
    k: int = 10,
    metric: Metric = "cosine",
    kind: Kind = "auto",
    index: SimilarityIndex | None = None,
    batch_size: int = 4096,
    progress: bool = False,
) -> Pairs:
    """Pairs (i < j) of rows of ``embeddings (N, D)`` within ``threshold`` of each other.

    Candidates are each row's ``k`` nearest neighbours, from ``index`` when given (built on
    these rows in this order) or from an index of ``kind`` built here (``auto``:
    :func:`~curate.index.knn.graph_index`, exact below 20k rows, IVF above); candidates near
    the threshold are re-scored exactly. A pair is found if either row has the other among its
    ``k`` neighbours; a row with more than ``k`` duplicates still joins its group through chains.
    """
    threshold = _check_threshold(threshold)
    x = as_vectors(embeddings, name="embeddings", metric=metric)
    if index is None:
        index = graph_index(x, metric=metric) if kind == "auto" else build_index(x, kind=kind, metric=metric)
    elif kind != "auto":
        raise UsageError("pass either `index` or `kind`, not both: `kind` only picks the index built here")
    elif len(index) != len(x) or index.dim != x.shape[1] or index.metric != metric:
        raise UsageError(f"`index` holds {len(index)} x {index.dim} ({index.metric}) vectors but `embeddings` are "
                         f"{x.shape[0]} x {x.shape[1]} ({metric}); build the index on these rows")
    searched, neighbors = knn_graph(index, k=k, batch_size=batch_size, progress=progress)
    rows = np.repeat(np.arange(len(x)), neighbors.shape[1])
    cols = neighbors.reshape(-1)
    valid = cols >= 0
    if index.kind != "ivfpq" and metric == "cosine":
        valid &= searched.reshape(-1) <= threshold + _SEARCH_SLACK
    n = len(x)
    codes = np.unique(np.minimum(rows, cols)[valid] * n + np.maximum(rows, cols)[valid])  # each pair once
    lo, hi = codes // n, codes % n
    dist = _exact_distances(x, lo, hi, metric)
    keep = dist <= threshold
    log.info("%d near-duplicate pairs within %.4g among %d candidate pairs", int(keep.sum()), threshold, len(codes))
    return _make_pairs(lo[keep], hi[keep], dist[keep])


def find_near_duplicates(
    embeddings: Any,
    *,
    threshold: float,
    k: int = 10,
    metric: Metric = "cosine",
    kind: Kind = "auto",
    index: SimilarityIndex | None = None,
    prefer: np.ndarray | None = None,
    progress: bool = False,
) -> DuplicateGroups:
    """Near-duplicate groups: :func:`near_duplicate_pairs` joined into connected components,
    one representative each (highest ``prefer``, else lowest row)."""
    pairs = near_duplicate_pairs(embeddings, threshold=threshold, k=k, metric=metric, kind=kind, index=index,
                                 progress=progress)
    n = np.asarray(embeddings).shape[0]
    return _groups(connected_components(n, pairs), pairs, prefer)


def find_exact_duplicates(hashes: Sequence[str] | np.ndarray, *, prefer: np.ndarray | None = None) -> DuplicateGroups:
    """Exact-duplicate groups from per-row hashes; ``pairs`` link each dropped row to its
    group's representative (as i < j, distance 0)."""
    components = group_exact(hashes)
    keep = representatives(components, prefer=prefer)
    rep_of = np.empty(int(components.max(initial=-1)) + 1, dtype=np.int64)
    rep_of[components[keep]] = np.flatnonzero(keep)
    members = np.flatnonzero(~keep)
    reps = rep_of[components[members]]
    pairs = _make_pairs(np.minimum(reps, members), np.maximum(reps, members), np.zeros(len(members), np.float32))
    return DuplicateGroups(components=components, representative=keep, pairs=pairs)


def cross_split_pairs(
    embeddings: Any,
    splits: Sequence[str] | np.ndarray,
    *,
    threshold: float,
    query_split: str = "test",
    reference_split: str = "train",
    k: int = 10,
    metric: Metric = "cosine",
    kind: Kind = "auto",
) -> Pairs:
    """Leaks: pairs (query row i, reference row j) within ``threshold``, found by searching the
    ``query_split`` rows against an index of the ``reference_split`` rows only."""
    threshold = _check_threshold(threshold)
    x = as_vectors(embeddings, name="embeddings", metric=metric)
    split_arr = np.asarray(splits).astype(str)
    if split_arr.shape != (len(x),):
        raise UsageError(f"`splits` must give one split name per row of `embeddings` ({len(x)}), "
                         f"got shape {split_arr.shape}")
    if query_split == reference_split:
        raise UsageError(f"`query_split` and `reference_split` are both {query_split!r}; "
                         "use near_duplicate_pairs within one split")
    present = sorted(set(split_arr.tolist()))
    for name, value in (("query_split", query_split), ("reference_split", reference_split)):
        if value not in present:
            raise UsageError(f"`{name}` {value!r} names no rows; splits present: {', '.join(present) or 'none'}")
    query_rows = np.flatnonzero(split_arr == query_split)
    ref_rows = np.flatnonzero(split_arr == reference_split)
    index = build_index(x[ref_rows], kind=kind, metric=metric)
    _, local = index.search_rows(x[query_rows], k)
    i = np.repeat(query_rows, local.shape[1])
    local = local.reshape(-1)
    valid = local >= 0
    i, j = i[valid], ref_rows[local[valid]]
    dist = _exact_distances(x, i, j, metric)
    keep = dist <= threshold
    log.info("%d %s rows within %.4g of a %s row", len(np.unique(i[keep])), query_split, threshold, reference_split)
    return _make_pairs(i[keep], j[keep], dist[keep])


def group_members(pairs: Pairs, components: np.ndarray, representative: np.ndarray) -> dict[str, np.ndarray]:
    """The rows that take part in ``pairs``, one entry each, sorted by (group, row).

    Returns ``row``, ``group`` (the rows' components renumbered 0..G-1 in order of each
    group's first row), ``representative`` (the row is the one kept), ``nearest`` (its
    closest partner among ``pairs``; ties to the lower row) and ``distance`` to it.
    """
    if len(pairs) == 0:
        return {"row": np.zeros(0, np.int64), "group": np.zeros(0, np.int64),
                "representative": np.zeros(0, bool), "nearest": np.zeros(0, np.int64),
                "distance": np.zeros(0, np.float32)}
    src = np.concatenate([pairs.i, pairs.j])
    dst = np.concatenate([pairs.j, pairs.i])
    dist = np.concatenate([pairs.distance, pairs.distance])
    order = np.lexsort((dst, dist, src))
    src, dst, dist = src[order], dst[order], dist[order]
    first = np.ones(len(src), dtype=bool)
    first[1:] = src[1:] != src[:-1]
    row, nearest, distance = src[first], dst[first], dist[first]  # rows ascending
    group = _number_by_first_row(np.asarray(components)[row])
    order = np.lexsort((row, group))
    return {"row": row[order], "group": group[order], "representative": np.asarray(representative)[row[order]],
            "nearest": nearest[order], "distance": distance[order].astype(np.float32)}


# ---- copies or look-alikes ----------------------------------------------------------------------
COPY_CORRELATION = 0.97
"""Thumbnail correlation at or above which a pair counts as a copy (a re-encode, resize or brightness change).
On CIFAR-10 a JPEG copy at quality 50, or a 2x resize re-encoded at quality 30, stays >= 0.99 (200 images
each); 2,000 random pairs of distinct images reached at most 0.81, and the demo's embedding-near pairs of
distinct photographs 0.91."""


def thumbnail_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P,) Pearson correlation of paired grayscale thumbnails ``a`` and ``b`` (P, h, w) of the same size.

    Each thumbnail is centred and scaled first, so a brightness or contrast change, a re-encode or a
    resize of the same picture stays near 1, while a different picture of a similar object does not.
    A flat thumbnail (no variation) correlates 0 with anything.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3:
        raise UsageError(f"`a` and `b` must be paired thumbnails (P, h, w) of one shape, got {a.shape} and {b.shape}")
    a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(1, keepdims=True)
    b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(1, keepdims=True)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.divide((a * b).sum(1), norms, out=np.zeros(len(a)), where=norms > 0)
