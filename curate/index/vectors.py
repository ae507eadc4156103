"""Vectors as FAISS wants them, and distances as curate reports them (ascending, ``1 - cos`` or Euclidean)."""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal, Sequence

import numpy as np

from curate.errors import UsageError

Metric = Literal["cosine", "l2"]


def as_vectors(x: Any, *, name: str, metric: Metric, dim: int | None = None, model: str | None = None) -> np.ndarray:
    """``x`` as a C-contiguous float32 (M, D) array, L2-normalised for cosine; never a view of ``x``
    when normalising, because ``faiss.normalize_L2`` works in place."""
    arr = np.asarray(x)
    if arr.ndim == 1 and dim is not None:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise UsageError(f"`{name}` must be a 2-D array (rows, dims), got shape {arr.shape}")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise UsageError(f"`{name}` must hold real numbers, got dtype {arr.dtype}")
    if dim is not None and arr.shape[1] != dim:
        from_model = f" (model {model!r})" if model else ""
        raise UsageError(f"`{name}` have {arr.shape[1]} dims but the index was built with {dim}{from_model}; "
                         "embed the queries with the same model")
    if arr.shape[1] == 0:
        raise UsageError(f"`{name}` must have at least one column, got shape {arr.shape}")
    out = np.array(arr, dtype=np.float32, order="C", copy=True if metric == "cosine" else None)
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out)).any(axis=1).sum())
        raise UsageError(f"`{name}` has {bad} rows with NaN or infinite values; drop or re-embed them")
    if metric == "cosine":
        import faiss

        faiss.normalize_L2(out)
    return out


def distances_from_faiss(raw: np.ndarray, rows: np.ndarray, metric: Metric) -> np.ndarray:
    """FAISS scores -> our distances: ``1 - ip`` (cosine) or ``sqrt`` (squared L2); inf where no result."""
    if metric == "cosine":
        dist = np.clip(1.0 - raw, 0.0, 2.0)
    else:
        dist = np.sqrt(np.maximum(raw, 0.0))
    dist = dist.astype(np.float32, copy=False)
    dist[rows < 0] = np.inf
    return dist


def drop_self(distances: np.ndarray, rows: np.ndarray, query_rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first ``k`` neighbour columns that are not the query row itself (with exact
    duplicates it need not come first); -1 (distance inf) where fewer than ``k`` remain."""
    keep = rows != query_rows[:, None]
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    dist = np.take_along_axis(distances, order, axis=1)
    found = np.take_along_axis(rows, order, axis=1)
    missing = ~np.take_along_axis(keep, order, axis=1)
    dist[missing], found[missing] = np.inf, -1
    return dist, found


def checked_ids(ids: Sequence[str] | None, n: int) -> list[str] | None:
    """``ids`` as one unique string per row (None stays None), else a UsageError naming the problem."""
    if ids is None:
        return None
    if isinstance(ids, (str, bytes)) or len(ids) != n:
        got = "a single string" if isinstance(ids, (str, bytes)) else f"{len(ids)} ids"
        raise UsageError(f"`ids` must give one sample id per row of `embeddings` ({n}), got {got}")
    ids = [str(i) for i in ids]
    if len(set(ids)) != n:
        dup, count = Counter(ids).most_common(1)[0]
        raise UsageError(f"`ids` must be unique, but {dup!r} appears {count} times")
    return ids
