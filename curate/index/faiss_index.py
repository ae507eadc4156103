"""FAISS similarity indexes: build, search and save, with sample ids and distances (:mod:`curate.index.saved`
reads a saved one back).

N vectors of D dims (``embeddings (N, D)``) are stored so that FAISS's int64 id i is row i of
the table version the index was built on; the sidecar JSON maps ids to our string sample ids.
Every search returns distances, ascending: ``1 - cos`` for ``metric="cosine"`` (vectors are
L2-normalised, inner-product index) and the true Euclidean distance for ``metric="l2"`` (FAISS
reports it squared).

The index families are registered kinds (:mod:`curate.index.kinds`: ``flat``, ``ivf``,
``ivfpq``, ``hnsw``); ``auto`` is ``flat`` below :data:`~curate.index.kinds.AUTO_EXACT_MAX`
vectors and ``ivf`` above. Approximate kinds calibrate their query-time knob (``ef_search``,
``nprobe``) at build time to a recall@10 target (:mod:`curate.index.calibrate`), and the
sidecar records the chosen value and the recall measured.

FAISS is imported inside functions, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from curate import workspace
from curate.errors import UsageError
from curate.index.calibrate import QUERIES, Calibration, calibrate_kind
from curate.index.kinds import INDEX_KINDS, IndexKind, index_kind, misplaced_options, positive_int, resolve_kind
from curate.index.vectors import Metric, as_vectors, checked_ids, distances_from_faiss, drop_self
from curate.registry import did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    import faiss

log = logging.getLogger(__name__)

Kind = str
"""``"auto"`` or the name of a registered index kind (:data:`~curate.index.kinds.INDEX_KINDS`)."""

METRICS = ("cosine", "l2")
DEFAULT_RECALL = 0.95
"""The recall@10 target approximate kinds calibrate their query-time knob to by default."""
SIDECAR_FORMAT = "curate.index/1"


def _choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise UsageError(f"`{name}` must be one of {', '.join(map(repr, allowed))}, "
                         f"got {value!r}{did_you_mean(str(value), list(allowed))}")


class SimilarityIndex:
    """A FAISS index with its kind, metric, sample-id map, search knob, calibration and free metadata.

    Build one with :func:`build_index` or :func:`load_index`. The kind's query-time knob
    (``nprobe`` for IVF kinds, ``ef_search`` for HNSW) may be changed at any time; :meth:`save`
    records its value. ``calibration`` says how the knob was chosen at build time and the
    recall it gave (None for exact kinds and for manual knobs without a recall target).
    """

    def __init__(self, index: "faiss.Index", *, kind: str, metric: Metric, ids: Sequence[str] | None,
                 params: dict[str, Any], meta: dict[str, Any] | None = None,
                 calibration: Calibration | None = None):
        self.index = index
        self.kind = kind
        self.metric = metric
        self.ids: tuple[str, ...] | None = tuple(ids) if ids is not None else None
        self.params = dict(params)
        self.meta = dict(meta or {})
        self.calibration = calibration
        self._kind: IndexKind = index_kind(kind)
        self._id_array = np.asarray(self.ids, dtype=object) if self.ids is not None else None
        self._row_of: dict[str, int] | None = None
        if self._kind.knob is not None and self._kind.knob in self.params:
            self._set_knob(self._kind.knob, self.params[self._kind.knob])

    # ---- facts and knobs -------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def __repr__(self) -> str:
        knobs = "".join(f", {k}={v}" for k, v in self.params.items() if k not in ("train_size", "seed"))
        return f"SimilarityIndex(kind={self.kind!r}, metric={self.metric!r}, n={len(self)}, dim={self.dim}{knobs})"

    @property
    def knob(self) -> str | None:
        """Name of this kind's query-time knob (``nprobe``, ``ef_search``; None for exact kinds)."""
        return self._kind.knob

    @property
    def knob_value(self) -> int | None:
        """The knob's current value (None for exact kinds); settable like ``nprobe``/``ef_search``."""
        return None if self._kind.knob is None else self._get_knob(self._kind.knob)

    @knob_value.setter
    def knob_value(self, value: int) -> None:
        if self._kind.knob is None:
            raise UsageError(f"a {self.kind!r} index searches exactly; it has no knob to set")
        self._set_knob(self._kind.knob, value)

    @property
    def nprobe(self) -> int:
        """IVF cells visited per query: more is slower and closer to exact (``nlist`` is exact)."""
        return self._get_knob("nprobe")

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._set_knob("nprobe", value)

    @property
    def ef_search(self) -> int:
        """HNSW candidate-list size per query: more is slower and closer to exact; keep it >= k."""
        return self._get_knob("ef_search")

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._set_knob("ef_search", value)

    def _get_knob(self, knob: str) -> int:
        self._require_knob(knob)
        return self._kind.get_knob(self.index)

    def _set_knob(self, knob: str, value: int) -> None:
        self._require_knob(knob)
        limit = self._kind.knob_limit(self.index)
        value = positive_int(knob, value, upper=limit, what=" (`nlist`)" if knob == "nprobe" else "")
        self._kind.set_knob(self.index, value)
        self.params[knob] = value

    def recall_metrics(self, target: float | None) -> dict[str, Any]:
        """What a step reports about recall: the target, the recall@10 measured at build time (1.0 for
        exact kinds, None when nothing was measured), whether it reached the target, the knob's
        value and the calibration (how it was chosen, queries, seconds, every value tried)."""
        if self._kind.exact:
            return {"recall_target": target, "recall": 1.0, "recall_reached": True, "calibration": "exact search"}
        cal = self.calibration
        out: dict[str, Any] = {"recall_target": target, "recall": cal.recall if cal else None,
                               "recall_reached": cal.reached if cal else None,
                               self._kind.knob: self.knob_value}
        out["calibration"] = None if cal is None else {
            "summary": cal.summary(), "chosen_by": cal.chosen_by, "recall_low": cal.recall_low,
            "allowance": cal.allowance, "k": cal.k,
            "queries": cal.queries, "seconds": cal.seconds, "sweep": [list(p) for p in cal.sweep]}
        return out

    def _require_knob(self, knob: str) -> None:
        if self._kind.knob != knob:
            owners = [name for name in INDEX_KINDS.names() if index_kind(name).knob == knob]
            raise UsageError(f"`{knob}` applies to {' and '.join(owners)} indexes, not to this {self.kind!r} index")

    # ---- ids ---------------------------------------------------------------------------------
    def rows_of(self, sample_ids: Sequence[str] | Sequence[int]) -> np.ndarray:
        """Row positions of stored sample ids (of row numbers, for an index built without ids)."""
        if isinstance(sample_ids, (str, bytes)):
            raise UsageError("`sample_ids` must be a sequence of ids, got a single string; wrap it in a list")
        if self.ids is None:
            rows = np.asarray(sample_ids)
            if rows.size and (not np.issubdtype(rows.dtype, np.integer) or rows.min() < 0 or rows.max() >= len(self)):
                raise UsageError(f"this index has no sample ids: query it by row positions 0..{len(self) - 1}, "
                                 f"got {list(sample_ids)[:3]}")
            return rows.astype(np.int64).reshape(-1)
        if self._row_of is None:
            self._row_of = {sid: row for row, sid in enumerate(self.ids)}
        missing = [sid for sid in sample_ids if sid not in self._row_of]
        if missing:
            raise UsageError(f"{len(missing)} of {len(sample_ids)} `sample_ids` are not in the index "
                             f"(first: {missing[0]!r}); it holds {len(self)} samples")
        return np.fromiter((self._row_of[sid] for sid in sample_ids), dtype=np.int64, count=len(sample_ids))

    def ids_at(self, rows: np.ndarray) -> np.ndarray:
        """Sample ids at row positions (None where ``rows`` is -1), or the rows themselves without ids."""
        if self._id_array is None:
            return rows
        out = self._id_array[np.where(rows < 0, 0, rows)]
        out[rows < 0] = None
        return out

    def vectors(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Stored vectors at row positions, float32 (unit length for cosine; PQ codes decode approximately)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise UsageError(f"rows must lie in 0..{len(self) - 1}, got values from {rows.min()} to {rows.max()}")
        return self.index.reconstruct_batch(rows)

    # ---- search ------------------------------------------------------------------------------
    def _cap_k(self, k: int, available: int) -> int:
        positive_int("k", k)
        return min(int(k), available)

    def _within(self, within: Any) -> np.ndarray | None:
        """``within`` as sorted unique int64 rows of this index (None: every row)."""
        if within is None:
            return None
        rows = np.unique(np.asarray(within, dtype=np.int64).reshape(-1))
        if rows.size and (rows[0] < 0 or rows[-1] >= len(self)):
            raise UsageError(f"`within` must hold rows in 0..{len(self) - 1}, got values from {rows[0]} to {rows[-1]}")
        return rows

    def _params(self, within: np.ndarray | None) -> "faiss.SearchParameters | None":
        """Search parameters restricting results to ``within`` rows, carrying this index's knobs
        (FAISS's parameter objects default ``nprobe`` to 1 and ``efSearch`` to 16 otherwise)."""
        import faiss

        if within is None:
            return None
        selector = faiss.IDSelectorBatch(within)
        params = self._kind.search_parameters(self.index, selector)
        params._selector = selector  # keep the selector alive as long as the parameters
        return params

    def _search(self, vectors: np.ndarray, k: int, within: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if within is None:
            raw, rows = self.index.search(vectors, k)
        else:
            raw, rows = self.index.search(vectors, k, params=self._params(within))
        return distances_from_faiss(raw, rows, self.metric), rows

    def search_rows(self, queries: Any, k: int, *, within: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """``k`` nearest stored rows of each query: distances (Q, k) ascending, rows (Q, k) int64.

        ``within`` (row positions) restricts the rows that may be returned, e.g. to the
        samples of one view. ``k`` is capped at the number of searchable rows; rows are -1
        (distance inf) where an approximate index found fewer than ``k`` candidates.
        """
        x = as_vectors(queries, name="queries", metric=self.metric, dim=self.dim, model=self.meta.get("model"))
        within = self._within(within)
        return self._search(x, self._cap_k(k, len(self) if within is None else max(len(within), 1)), within)

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``k`` nearest neighbours of each query: distances (Q, k) ascending, and sample ids (Q, k)
        (an object array of str, None where missing) or row positions for an index without ids."""
        dist, rows = self.search_rows(queries, k)
        return dist, self.ids_at(rows)

    def neighbors_of_rows(self, rows: np.ndarray, k: int, *, within: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """``k`` nearest other rows of stored rows: distances (M, k) and rows (M, k), self excluded.

        ``k`` is capped at N - 1. With ``within`` only those rows are searched (``k`` capped at
        their number) and a query row among them leaves one slot -1 (distance inf) when
        ``k`` asks for all of them.
        """
        rows = np.asarray(rows, dtype=np.int64)
        within = self._within(within)
        searchable = len(self) if within is None else len(within)
        k = self._cap_k(k, searchable - 1 if within is None else searchable)
        if k == 0:
            return np.zeros((len(rows), 0), np.float32), np.zeros((len(rows), 0), np.int64)
        dist, found = self._search(self.vectors(rows), min(k + 1, searchable), within)
        return drop_self(dist, found, rows, k)

    def search_ids(self, sample_ids: Sequence[str] | Sequence[int], k: int) -> tuple[np.ndarray, np.ndarray]:
        """``k`` nearest neighbours of stored samples, each excluding itself: distances and ids (Q, k)."""
        dist, rows = self.neighbors_of_rows(self.rows_of(sample_ids), k)
        return dist, self.ids_at(rows)

    def range_search_rows(
        self,
        queries: Any,
        radius: float,
        *,
        within: Any = None,
        exclude: np.ndarray | None = None,
        batch_size: int = 4096,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every stored row within distance ``radius`` of each query (``<=``, in curate's distances).

        Returns CSR-style ``lims (Q+1,)``, ``distances`` and ``rows``: query q's results are
        ``[lims[q]:lims[q+1]]``, ascending by distance. ``exclude (Q,)`` drops one row per query
        (its own row; -1 for none). Exact for flat indexes; IVF visits ``nprobe`` cells, and
        HNSW returns the rows within ``radius`` among its ``ef_search`` nearest candidates
        (FAISS's own HNSW range search gives the same and aborts the process on some
        inputs in 1.15). FAISS's radius test is strict and runs on its raw scores, so it is
        asked for a slightly larger radius and the answer is cut at ``radius`` here.
        """
        if isinstance(radius, bool) or not isinstance(radius, (int, float, np.integer, np.floating)) \
                or not np.isfinite(radius) or radius < 0:
            raise UsageError(f"`radius` must be a distance >= 0 (cosine distance = 1 - cos), got {radius!r}")
        x = as_vectors(queries, name="queries", metric=self.metric, dim=self.dim, model=self.meta.get("model"))
        if exclude is not None:
            exclude = np.asarray(exclude, dtype=np.int64).reshape(-1)
            if len(exclude) != len(x):
                raise UsageError(f"`exclude` must give one row per query ({len(x)}), got {len(exclude)}")
        within = self._within(within)
        counts, dists, rows = [np.zeros(0, np.int64)], [np.zeros(0, np.float32)], [np.zeros(0, np.int64)]
        for lo in range(0, len(x), batch_size):
            query, dist, found = self._range_candidates(x[lo:lo + batch_size], radius, within)
            query += lo
            keep = (dist <= radius) & (found >= 0)
            if exclude is not None:
                keep &= found != exclude[query]
            query, dist, found = query[keep], dist[keep], found[keep]
            order = np.lexsort((found, dist, query))
            counts.append(np.bincount(query - lo, minlength=len(x[lo:lo + batch_size])))
            dists.append(dist[order])
            rows.append(found[order].astype(np.int64))
        lims = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
        return lims, np.concatenate(dists), np.concatenate(rows)

    def _range_candidates(self, x: np.ndarray, radius: float,
                          within: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query, distance, row) triples that may lie within ``radius`` of the (normalised) queries ``x``."""
        candidates = self._kind.range_candidates(self.index)
        if candidates is not None:
            searchable = len(self) if within is None else len(within)
            dist, found = self._search(x, max(1, min(candidates, searchable)), within)
            return np.repeat(np.arange(len(x)), dist.shape[1]), dist.reshape(-1), found.reshape(-1)
        # cosine: keep ip >= 1 - r, FAISS keeps ip > raw; l2: keep d <= r, FAISS keeps d^2 < raw
        raw = (1.0 - radius - 1e-5) if self.metric == "cosine" else (radius + 1e-5) ** 2
        lims, scores, found = self.index.range_search(x, raw, params=self._params(within))
        lims = lims.astype(np.int64)
        return np.repeat(np.arange(len(x)), np.diff(lims)), distances_from_faiss(scores, found, self.metric), found

    # ---- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> str:
        """Write ``path`` (the FAISS index) and then ``path.json`` (the sidecar), each atomically.

        Returns the sha256 of the index file; the sidecar records it with the file size, so
        :func:`load_index` notices an index and sidecar that were not written together.
        """
        import faiss

        path = Path(path)
        digest = workspace.atomic_write(path, lambda tmp: faiss.write_index(self.index, str(tmp)))
        sidecar = {
            "format": SIDECAR_FORMAT,
            "index_file": path.name,
            "index_bytes": path.stat().st_size,
            "index_sha256": digest,
            "kind": self.kind,
            "metric": self.metric,
            "dim": self.dim,
            "ntotal": len(self),
            "params": self.params,
            "calibration": self.calibration.to_dict() if self.calibration is not None else None,
            "meta": self.meta,
            "ids": list(self.ids) if self.ids is not None else None,
        }
        workspace.write_json(sidecar_path(path), sidecar)
        return digest


def sidecar_path(path: str | os.PathLike) -> Path:
    """The sidecar JSON of an index file: ``<path>.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


# ---- build --------------------------------------------------------------------------------------
def build_index(
    embeddings: Any,
    *,
    kind: Kind = "auto",
    metric: Metric = "cosine",
    ids: Sequence[str] | None = None,
    recall: float | None = DEFAULT_RECALL,
    nlist: int | None = None,
    nprobe: int | None = None,
    m_pq: int | None = None,
    hnsw_m: int | None = None,
    ef_construction: int | None = None,
    ef_search: int | None = None,
    train_size: int | None = None,
    calibration_queries: int = QUERIES,
    seed: int = 0,
    meta: dict[str, Any] | None = None,
    progress: bool = False,
) -> SimilarityIndex:
    """Index ``embeddings (N, D)``; FAISS id i is row i (sample ``ids[i]``).

    ``kind`` is ``auto`` or a registered kind (:data:`~curate.index.kinds.INDEX_KINDS`); each
    kind accepts its own options and refuses the others' (None: the kind's default):
    ``hnsw``: ``hnsw_m`` (32), ``ef_construction`` (80), ``ef_search``; ``ivf``/``ivfpq``:
    ``nlist`` (~4 sqrt(N)), ``nprobe``, ``train_size`` (64 rows a cell, drawn with ``seed``),
    and ``m_pq`` for ``ivfpq``.

    ``recall`` (approximate kinds): the recall@10 target. The query-time knob (``ef_search``,
    ``nprobe``) is set to the smallest value whose recall on ``calibration_queries`` held rows
    (at most a twentieth of N) reaches it (:mod:`curate.index.calibrate`); a knob given explicitly
    wins and its recall is only measured. A warning says when the target is not reached.
    ``recall=None`` skips calibration: explicit knobs, else ``ef_search`` 64 and ``nprobe``
    nlist/128 (at least 8). ``index.calibration`` (and the sidecar) records the outcome.

    ``meta`` (JSON-able: producing step, model, table) travels in the sidecar. The caller's
    array is never modified. HNSW graphs built on several OpenMP threads vary slightly from run
    to run; build on one thread (``faiss.omp_set_num_threads(1)``) when bit-identical results matter.
    """
    import faiss

    if recall is not None and (isinstance(recall, bool) or not isinstance(recall, (int, float, np.floating))
                               or not 0 < recall <= 1):
        raise UsageError(f"`recall` must be a recall@10 target in (0, 1] (or None for manual knobs), got {recall!r}")
    positive_int("calibration_queries", calibration_queries)
    given = {name: value for name, value in (("nlist", nlist), ("nprobe", nprobe), ("m_pq", m_pq),
                                             ("hnsw_m", hnsw_m), ("ef_construction", ef_construction),
                                             ("ef_search", ef_search), ("train_size", train_size))
             if value is not None}
    x, ids, meta = checked_build_inputs(embeddings, kind=kind, metric=metric, ids=ids, given=given, meta=meta)
    n, d = x.shape
    if metric == "cosine":
        zero = int((~x.any(axis=1)).sum())
        if zero:
            log.warning("%d all-zero rows in `embeddings`: their cosine distance to every vector is 1", zero)

    resolved = resolve_kind(kind, n)
    family = index_kind(resolved)
    knob = family.knob
    held = np.zeros(0, np.int64)  # calibration queries: unseen by training and the index until calibrated
    if knob is not None and recall is not None and n >= 2:
        held = np.sort(np.random.default_rng([seed, 1]).choice(n, min(calibration_queries, max(1, n // 20)),
                                                                replace=False))
    rest = np.setdiff1d(np.arange(n), held, assume_unique=True)
    # auto: options of the kind it did not pick wait for the size that picks it
    params = family.resolve(n, d, {k: v for k, v in given.items() if k in family.options}, seed=seed,
                            trainable=len(rest))
    metric_type = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    start = time.perf_counter()
    index = family.create(d, params, metric_type)
    family.train(index, x, params, rows=rest)
    calibration = None
    with _progress_bar(n, progress, f"index {resolved}") as bar:
        _add_rows(family, index, x, rest, bar, late=False)
        if len(held):
            calibration = calibrate_kind(family, index, x, rest, held, metric_type=metric_type,
                                         target=float(recall), explicit=params.get(knob))
            params[knob] = calibration.value
            _add_rows(family, index, x, held, bar, late=True)
    family.finish(index, np.concatenate([rest, held]))
    if knob is not None:
        params.setdefault(knob, family.default_knob(params))
    log.info("built %s index of %d x %d (%s) in %.1f s", resolved, n, d, metric, time.perf_counter() - start)
    return SimilarityIndex(index, kind=resolved, metric=metric, ids=ids, params=params, meta=meta,
                           calibration=calibration)


def checked_build_inputs(embeddings: Any, *, kind: Kind, metric: Metric, ids: Sequence[str] | None,
                         given: dict[str, Any], meta: dict[str, Any] | None
                         ) -> tuple[np.ndarray, tuple[str, ...] | None, dict[str, Any]]:
    """The checks every build makes before it copies anything: metric, kind and its options, then the vectors
    (float32, normalised for cosine), their ids and a JSON-able ``meta``."""
    _choice("metric", metric, METRICS)
    if kind != "auto":
        index_kind(kind)  # unknown kinds fail before the vectors are copied
    misplaced = misplaced_options(kind, list(given))
    if misplaced:
        raise UsageError(misplaced[0][1])
    x = as_vectors(embeddings, name="embeddings", metric=metric)
    if len(x) == 0:
        raise UsageError("`embeddings` has no rows; there is nothing to index")
    ids = checked_ids(ids, len(x))
    try:
        meta = json.loads(json.dumps(meta or {}))
    except (TypeError, ValueError) as err:
        raise UsageError(f"`meta` must be JSON-serialisable (str, numbers, lists, dicts): {err}") from None
    return x, ids, meta


def _progress_bar(total: int, progress: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not progress, desc=desc, unit="vec")


def _add_rows(family: IndexKind, index: "faiss.Index", x: np.ndarray, rows: np.ndarray, bar, *, late: bool) -> None:
    """Add ``x[rows]`` in chunks of the kind's ``add_chunk`` rows (all at once when None)."""
    step = family.add_chunk or max(len(rows), 1)
    for start in range(0, len(rows), step):
        chunk = rows[start:start + step]
        contiguous = chunk[-1] - chunk[0] == len(chunk) - 1
        family.add(index, x[chunk[0]:chunk[-1] + 1] if contiguous else x[chunk], chunk, late=late)
        bar.update(len(chunk))
