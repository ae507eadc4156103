"""The FiftyOne Brain similarity backend ``faiss``: ``sort_by_similarity`` and duplicates on FAISS.

A brain run of this backend stores the path of a curate FAISS index (``.faiss`` + sidecar,
see :mod:`curate.index.faiss_index`) in its config, never the vectors, so
``load_brain_results`` reads one file instead of a GridFS blob of embeddings. Two uses:

- **A curate step's index** (``id_field="curate_id"``): the sidecar's ids are our sample ids;
  they are joined to FiftyOne's ids through that field whenever the run is loaded. Indexed
  rows that are not in the dataset are never returned. The file belongs to the step, so
  ``add_to_index``/``remove_from_index`` refuse to touch it (rebuild it with the step).
- **FiftyOne's own API** (``fob.compute_similarity(..., backend="faiss")``): the backend
  builds the index from the vectors FiftyOne passes and owns the file, by default
  ``$CURATE_HOME/fiftyone/similarity/<dataset>/<brain key>.faiss`` (deleted with the run).
  Adds and removals rebuild the index from its stored vectors (PQ codes decode lossily).

Semantics follow the Brain's ``sklearn`` backend: distances are curate's (cosine distance
``1 - cos`` or Euclidean), ascending; a query by sample id with ``aggregation=None`` (what
``find_duplicates`` uses) excludes the query sample itself, while ``sort_by_similarity``
(``aggregation="mean"``) ranks it first at distance 0; several query ids with ``mean``
average their vectors. Queries see only the samples of the current view (FAISS ID
selectors). One difference: for cosine, sklearn first subtracts the mean embedding
(``NeighborsHelper``); this backend uses the vectors as given, so the two agree on
embeddings of zero mean.

FiftyOne finds this class through its brain config; :func:`curate.fo.database.configure`
declares it through ``FIFTYONE_BRAIN_SIMILARITY_*`` environment variables, which the App
server inherits. This module imports FiftyOne and FAISS.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from pathlib import Path
from typing import Iterator

import eta.core.utils as etau
import fiftyone.brain.internal.core.utils as fbu
import numpy as np
from fiftyone.brain.similarity import DuplicatesMixin, Similarity, SimilarityConfig, SimilarityIndex

from curate.index.faiss_index import METRICS, as_vectors, build_index, drop_self, sidecar_path
from curate.index.saved import load_index
from curate.index.kinds import INDEX_KINDS
from curate.index.knn import EXACT_GRAPH_MAX, graph_index

log = logging.getLogger(__name__)

BACKEND = "faiss"
_BATCH = 4096


class FaissSimilarityConfig(SimilarityConfig):
    """Configuration of the ``faiss`` similarity backend.

    Args:
        index_path (None): the FAISS index file (with its sidecar ``<file>.json``); None
            creates one in curate's FiftyOne folder on the first ``add_to_index``
        metric ("cosine"): ``"cosine"`` (distance ``1 - cos``) or ``"l2"`` (``"euclidean"``)
        id_field (None): the sample field holding the sidecar's ids (e.g. ``"curate_id"``);
            None when they are FiftyOne sample ids
        index_kind ("auto"): the kind ``add_to_index`` builds (see ``build_index``)
        index_params (None): options for ``build_index`` (``hnsw_m``, ``nlist``, ...)
        owns_index (None): whether deleting the run deletes the file (default: only a file
            this backend created)
        **kwargs: keyword arguments for :class:`fiftyone.brain.similarity.SimilarityConfig`
    """

    def __init__(self, index_path=None, metric="cosine", id_field=None, index_kind="auto", index_params=None,
                 owns_index=None, **kwargs):
        metric = "l2" if metric == "euclidean" else metric
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)} (or 'euclidean'), got {metric!r}")
        if index_kind != "auto" and index_kind not in INDEX_KINDS:
            raise ValueError(f"index_kind must be one of auto, {', '.join(INDEX_KINDS.names())}, got {index_kind!r}")
        if kwargs.get("patches_field") is not None or kwargs.get("roi_field") is not None:
            raise ValueError("the faiss backend indexes whole samples; patches and ROI fields are not supported")
        self.index_path = str(index_path) if index_path is not None else None
        self.metric = metric
        self.id_field = id_field
        self.index_kind = index_kind
        self.index_params = dict(index_params or {})
        self.owns_index = index_path is None if owns_index is None else bool(owns_index)
        super().__init__(**kwargs)

    @property
    def method(self) -> str:
        return BACKEND

    @property
    def max_k(self):
        return None

    @property
    def supports_least_similarity(self) -> bool:
        return self.metric == "cosine"  # the farthest by cosine is the nearest to -q

    @property
    def supported_aggregations(self) -> tuple[str, ...]:
        return ("mean",)


class FaissSimilarity(Similarity):
    """Factory of :class:`FaissSimilarityIndex` (FiftyOne finds it by the config's class name)."""

    def initialize(self, samples, brain_key):
        chosen = self.config.index_path is None
        if chosen:
            self.config.index_path = str(default_index_path(samples._root_dataset.name, brain_key))
        index = FaissSimilarityIndex(samples, self.config, brain_key, backend=self)
        if chosen and brain_key is not None:
            index.save_config()  # the run was registered before the path was chosen
        return index

    def cleanup(self, samples, key):
        """Called by ``delete_brain_run``: removes the index file only if this backend created it."""
        _delete_owned(self.config)


def default_index_path(dataset_name: str, brain_key: str | None) -> Path:
    """``$CURATE_HOME/fiftyone/similarity/<dataset>/<brain key>.faiss`` for indexes FiftyOne asks for."""
    from curate.fo.database import fiftyone_home

    def safe(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]", "_", name)

    return fiftyone_home() / "similarity" / safe(dataset_name) / f"{safe(brain_key or uuid.uuid4().hex)}.faiss"


def _id_map_dir() -> Path:
    """Cached index-row -> FiftyOne-id maps (see ``FaissSimilarityIndex._fiftyone_ids``)."""
    from curate.fo.database import fiftyone_home

    return fiftyone_home() / "similarity" / "id-maps"


def _delete_owned(config: FaissSimilarityConfig) -> None:
    if config.owns_index and config.index_path:
        for path in (Path(config.index_path), sidecar_path(config.index_path)):
            path.unlink(missing_ok=True)


class FaissSimilarityIndex(SimilarityIndex, DuplicatesMixin):
    """A FAISS index of one dataset's samples, searched under the current view.

    Positions ``0..M-1`` number the indexed samples present in the dataset
    (:attr:`sample_ids`); ``_rows[p]`` is position p's FAISS row.
    """

    def __init__(self, samples, config, brain_key, backend=None):
        self._dataset = samples._dataset
        self._index = None  # curate SimilarityIndex, None while empty
        self._sample_ids = np.zeros(0, dtype=str)
        self._rows = np.zeros(0, dtype=np.int64)
        self._position_of_row = np.zeros(0, dtype=np.int64)
        self._ids_to_positions: dict[str, int] | None = None
        self._load(config)
        SimilarityIndex.__init__(self, samples, config, brain_key, backend=backend)
        DuplicatesMixin.__init__(self)

    # ---- loading ---------------------------------------------------------------------------------
    def _load(self, config: FaissSimilarityConfig) -> None:
        path = Path(config.index_path) if config.index_path else None
        if path is None or not path.exists():
            if not config.owns_index:
                raise ValueError(f"the FAISS index {path} of this brain run is gone; rebuild it "
                                 "(`curate index build RUN`) or delete the run")
            self._set_index(None, np.zeros(0, dtype=str))
            return
        index = load_index(path)
        if index.metric != config.metric:
            raise ValueError(f"the FAISS index {path} uses metric {index.metric!r} but the brain run says "
                             f"{config.metric!r}; register the run again")
        if index.ids is None:
            raise ValueError(f"the FAISS index {path} has no sample ids in its sidecar; build it with ids")
        stored = np.asarray(index.ids, dtype=str)
        if config.id_field is None:
            self._set_index(index, stored)
            return
        mapped = self._fiftyone_ids(path, stored, config.id_field)
        present = np.flatnonzero(mapped != "")
        if len(present) < len(stored):
            log.info("%d of %d indexed rows of %s are not in dataset '%s'; they are not searched",
                     len(stored) - len(present), len(stored), path.name, self._dataset.name)
        self._set_index(index, mapped[present], rows=present)

    def _fiftyone_ids(self, path: Path, stored: np.ndarray, id_field: str) -> np.ndarray:
        """FiftyOne sample ids of the index rows, through ``id_field`` ("" where no sample has the key).

        Reading every sample's key is most of a fresh process's first query (about 1 s at 100k
        samples, and the App server is such a process), so the map is cached under
        ``$CURATE_HOME``, one file per index and dataset, valid while the index file and the
        dataset's sample count and newest sample edit are unchanged (one server-side aggregation:
        adding, deleting or editing samples misses, and the rebuilt map replaces the file).
        """
        import fiftyone as fo

        from curate.workspace import atomic_write

        count, newest = self._dataset.aggregate([fo.Count(), fo.Max("last_modified_at")])
        stat = path.stat()
        state = json.dumps([stat.st_size, stat.st_mtime_ns, count, str(newest)])
        key = json.dumps([str(path.resolve()), str(self._dataset._doc.id), id_field])  # one file per index + dataset
        cache = _id_map_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"
        try:
            with np.load(cache, allow_pickle=False) as saved:
                if str(saved["state"]) == state:
                    return saved["sample_ids"]
        except (OSError, KeyError, ValueError):
            pass
        keys, sample_ids = self._dataset.values([id_field, "id"])
        to_fiftyone = dict(zip(keys, sample_ids))
        mapped = np.asarray([to_fiftyone.get(key, "") for key in stored.tolist()], dtype=str)
        try:
            atomic_write(cache, lambda tmp: np.savez(tmp, state=np.array(state), sample_ids=mapped))
        except OSError as err:
            log.debug("could not cache the sample-id map of %s: %s", path, err)
        return mapped

    def _set_index(self, index, sample_ids: np.ndarray, rows: np.ndarray | None = None) -> None:
        self._index = index
        self._sample_ids = np.asarray(sample_ids, dtype=str)
        self._rows = np.arange(len(sample_ids), dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
        self._position_of_row = np.full(len(index) if index is not None else 0, -1, dtype=np.int64)
        self._position_of_row[self._rows] = np.arange(len(self._rows))
        self._ids_to_positions = None

    # ---- facts -----------------------------------------------------------------------------------
    @property
    def is_external(self) -> bool:
        return True

    @property
    def sample_ids(self) -> np.ndarray:
        return self._sample_ids

    @property
    def label_ids(self):
        return None

    @property
    def total_index_size(self) -> int:
        return len(self._sample_ids)

    @property
    def index(self):
        """The curate :class:`~curate.index.faiss_index.SimilarityIndex` (None while empty)."""
        return self._index

    def _positions_of(self, sample_ids, *, allow_missing: bool = False, warn_missing: bool = False) -> np.ndarray:
        if self._ids_to_positions is None:
            self._ids_to_positions = {sid: p for p, sid in enumerate(self._sample_ids.tolist())}
        ids = [sample_ids] if etau.is_str(sample_ids) else list(sample_ids)
        positions = [self._ids_to_positions.get(sid) for sid in ids]
        missing = [sid for sid, p in zip(ids, positions) if p is None]
        if missing and not allow_missing:
            raise ValueError(f"Query IDs {missing[:3]} do not exist in this index ({len(missing)} missing)")
        if missing and warn_missing:
            log.warning("Ignoring %d sample IDs that are not in the index", len(missing))
        return np.asarray([p for p in positions if p is not None], dtype=np.int64)

    # ---- changes (FiftyOne-owned indexes only) ---------------------------------------------------
    def _require_owned(self) -> None:
        if not self.config.owns_index:
            raise ValueError(f"the FAISS index {self.config.index_path} belongs to a curate step; "
                             "change it by rerunning that step (`curate index build RUN`)")

    def _rebuild(self, vectors: np.ndarray, sample_ids: np.ndarray, reload: bool) -> None:
        path = Path(self.config.index_path)
        if len(sample_ids) == 0:
            _delete_owned(self.config)
            self._set_index(None, np.zeros(0, dtype=str))
        else:
            index = build_index(vectors, kind=self.config.index_kind, metric=self.config.metric,
                                ids=list(sample_ids), meta={"brain_key": self.key, "dataset": self._dataset.name},
                                **self.config.index_params)
            index.save(path)
            self._set_index(index, np.asarray(sample_ids, dtype=str))
        if reload:
            super().reload()

    def _all_vectors(self, dim: int) -> np.ndarray:
        if self._index is None:
            return np.zeros((0, dim), np.float32)
        return self._index.vectors(self._rows)

    def add_to_index(self, embeddings, sample_ids, label_ids=None, overwrite=True, allow_existing=True,
                     warn_existing=False, reload=True):
        self._require_owned()
        if label_ids is not None:
            raise ValueError("the faiss backend indexes samples, not labels")
        embeddings = np.asarray(embeddings, dtype=np.float32)
        sample_ids = np.asarray(sample_ids)
        new_ids, _, ii, jj = fbu.add_ids(sample_ids, None, self._sample_ids, None, overwrite=overwrite,
                                         allow_existing=allow_existing, warn_existing=warn_existing)
        if ii.size == 0:
            return
        current = self._all_vectors(embeddings.shape[1])
        if self._index is not None and embeddings.shape[1] != self._index.dim:
            raise ValueError(f"embeddings have {embeddings.shape[1]} dims but the index holds {self._index.dim}")
        vectors = np.zeros((len(new_ids), embeddings.shape[1]), np.float32)
        vectors[:len(current)] = current
        vectors[jj] = embeddings[ii]
        self._rebuild(vectors, np.asarray(new_ids, dtype=str), reload)

    def remove_from_index(self, sample_ids=None, label_ids=None, allow_missing=True, warn_missing=False,
                          reload=True):
        self._require_owned()
        if label_ids is not None:
            raise ValueError("the faiss backend indexes samples, not labels")
        _, _, remove = fbu.remove_ids(sample_ids, None, self._sample_ids, None, allow_missing=allow_missing,
                                      warn_missing=warn_missing)
        if remove.size == 0:
            return
        keep = np.setdiff1d(np.arange(len(self._sample_ids)), remove)
        self._rebuild(self._index.vectors(self._rows[keep]), self._sample_ids[keep], reload)

    def get_embeddings(self, sample_ids=None, label_ids=None, allow_missing=True, warn_missing=False):
        """Stored vectors (unit length for cosine), their sample ids, and None (no label ids)."""
        if label_ids is not None:
            raise ValueError("the faiss backend indexes samples, not labels")
        if sample_ids is None:
            positions = np.arange(len(self._sample_ids))
        else:
            positions = self._positions_of(sample_ids, allow_missing=allow_missing, warn_missing=warn_missing)
        dim = self._index.dim if self._index is not None else 0
        vectors = self._index.vectors(self._rows[positions]) if len(positions) else np.zeros((0, dim), np.float32)
        return vectors, self._sample_ids[positions].copy(), None

    def reload(self):
        """Re-read the index file and the id join (after a rebuild or a changed dataset)."""
        self._load(self.config)
        super().reload()

    def cleanup(self):
        _delete_owned(self.config)

    # ---- queries ---------------------------------------------------------------------------------
    def _view(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Positions of the current view, and the FAISS rows a search may return (None: all)."""
        keep = self._current_inds
        if keep is None:
            positions = np.arange(len(self._sample_ids), dtype=np.int64)
            within = None if self._index is not None and len(self._rows) == len(self._index) else self._rows
        else:
            positions = np.asarray(keep, dtype=np.int64)
            within = self._rows[positions]
        return positions, within

    def _query(self, query) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """Query vectors, the FAISS rows of query ids (None for vectors), and whether it is one query."""
        if etau.is_str(query):
            ids, single = [query], True
        elif (isinstance(query, np.ndarray) and query.dtype.kind in "fiu") or (
                not isinstance(query, np.ndarray) and len(query) and not etau.is_str(next(iter(query)))):
            vectors = np.asarray(query, dtype=np.float32)
            single = vectors.ndim == 1
            return as_vectors(vectors, name="query", metric=self.config.metric, dim=self._index.dim), None, single
        else:
            ids, single = list(query), False
        rows = self._rows[self._positions_of(ids)]
        return self._index.vectors(rows), rows, single

    def _no_results(self, query, return_dists: bool):
        """The answer of an empty index (or view), in the shape the query asks for."""
        if query is None:
            n = len(self._view()[0])
            empty = [np.zeros(0, np.int64) for _ in range(n)]
            return (empty, [np.zeros(0, np.float32) for _ in range(n)]) if return_dists else empty
        empty = [] if etau.is_str(query) or np.ndim(query) == 1 else [[] for _ in query]
        return (empty, None, empty) if return_dists else (empty, None)

    def _batches(self, positions: np.ndarray) -> Iterator[np.ndarray]:
        for lo in range(0, len(positions), _BATCH):
            yield positions[lo:lo + _BATCH]

    def _ids_and_dists(self, dist: np.ndarray, rows: np.ndarray) -> tuple[list[list[str]], list[list[float]]]:
        ids, dists = [], []
        for d, r in zip(dist, rows):
            found = r >= 0
            ids.append(self._sample_ids[self._position_of_row[r[found]]].tolist())
            dists.append(d[found].astype(float).tolist())
        return ids, dists

    def _kneighbors(self, query=None, k=None, reverse=False, aggregation=None, return_dists=False):
        if aggregation not in (None, "mean"):
            raise ValueError(f"Unsupported aggregation method '{aggregation}'; the faiss backend supports 'mean'")
        if reverse and not self.config.supports_least_similarity:
            raise ValueError("least-similarity queries need metric='cosine' with the faiss backend")
        if query is None and aggregation is not None:
            raise ValueError("Full index queries do not support aggregation")
        positions, within = self._view()
        if self._index is None or len(positions) == 0:
            return self._no_results(query, return_dists)
        if query is None:
            return self._full_kneighbors(positions, within, k or 1, return_dists)

        vectors, query_rows, single = self._query(query)
        exclude = aggregation is None and query_rows is not None  # like sklearn: mean queries keep the sample
        if aggregation == "mean":  # one (averaged) query, answered as a flat list
            vectors = vectors.mean(axis=0, keepdims=True)
            single = True
        k = len(positions) if k is None else min(int(k), len(positions))
        if reverse:
            vectors = -as_vectors(vectors, name="query", metric="cosine")
        dist, rows = self._index.search_rows(vectors, min(k + 1, len(positions)) if exclude else k, within=within)
        if exclude:
            dist, rows = drop_self(dist, rows, query_rows, k)
        if reverse:
            dist = np.where(rows >= 0, 2.0 - dist, np.inf)  # searched -q: 1 - <-q, x> = 1 + cos
        ids, dists = self._ids_and_dists(dist, rows)
        if single:
            ids, dists = ids[0], dists[0]
        return (ids, None, dists) if return_dists else (ids, None)

    def _full_kneighbors(self, positions: np.ndarray, within, k: int, return_dists: bool):
        """Neighbours of every sample of the view: indexes into the view's samples (not ids)."""
        index_of_row = self._view_index_of_row(positions)
        inds, dists = [], []
        for chunk in self._batches(positions):
            rows = self._rows[chunk]
            dist, found = self._index.neighbors_of_rows(rows, k, within=within)
            for d, f in zip(dist, found):
                ok = f >= 0
                inds.append(index_of_row[f[ok]])
                dists.append(d[ok])
        return (inds, dists) if return_dists else inds

    def _view_index_of_row(self, positions: np.ndarray) -> np.ndarray:
        out = np.full(len(self._index) if self._index is not None else 0, -1, dtype=np.int64)
        out[self._rows[positions]] = np.arange(len(positions))
        return out

    def _radius_neighbors(self, query=None, thresh=None, return_dists=False):
        if thresh is None:
            raise ValueError("a distance threshold `thresh` is required")
        positions, within = self._view()
        if self._index is None or len(positions) == 0:
            return self._no_results(query, return_dists)
        if query is None:
            inds, dists = self._all_pairs_within(positions, within, thresh)
            return (inds, dists) if return_dists else inds
        vectors, query_rows, single = self._query(query)
        lims, dist, found = self._index.range_search_rows(vectors, thresh, within=within, exclude=query_rows)
        spans = [slice(lims[q], lims[q + 1]) for q in range(len(vectors))]
        ids = [self._sample_ids[self._position_of_row[found[s]]].tolist() for s in spans]
        dists = [dist[s].astype(float).tolist() for s in spans]
        if single:
            ids, dists = ids[0], dists[0]
        return (ids, None, dists) if return_dists else (ids, None)

    def _all_pairs_within(self, positions: np.ndarray, within, thresh: float) -> tuple[list, list]:
        """Every view sample's neighbours within ``thresh`` (view indices), as ``find_duplicates`` asks.

        On an exact index of :data:`EXACT_GRAPH_MAX` or more samples this is quadratic, so it runs
        on a temporary IVF index of the view's vectors instead, like curate's own duplicates.
        """
        if self._index.kind == "flat" and len(positions) >= EXACT_GRAPH_MAX:
            index = graph_index(self._index.vectors(self._rows[positions]), metric=self._index.metric)
            query_rows, within, view_index = np.arange(len(positions)), None, np.arange(len(positions))
        else:
            index, query_rows, view_index = self._index, self._rows[positions], self._view_index_of_row(positions)
        inds, dists = [], []
        for lo in range(0, len(query_rows), _BATCH):
            rows = query_rows[lo:lo + _BATCH]
            lims, dist, found = index.range_search_rows(index.vectors(rows), thresh, within=within, exclude=rows)
            for q in range(len(rows)):
                inds.append(view_index[found[lims[q]:lims[q + 1]]])
                dists.append(dist[lims[q]:lims[q + 1]])
        return inds, dists

    @classmethod
    def _from_dict(cls, d, samples, config, brain_key):
        return cls(samples, config, brain_key)


def register_index(dataset, brain_key: str, index_path, *, id_field: str | None = "curate_id") -> FaissSimilarityIndex:
    """Register (or replace) the similarity run ``brain_key`` of ``dataset`` on an existing index file.

    The file stays where it is and stays the caller's (deleting the run keeps it); its
    metric comes from the sidecar. Returns the loaded index.
    """
    import json

    import fiftyone.brain as fob

    path = Path(index_path).resolve()
    side = sidecar_path(path)
    if not side.is_file():
        raise ValueError(f"no sidecar {side} beside {path}; save the index with SimilarityIndex.save")
    metric = json.loads(side.read_text())["metric"]
    if brain_key in dataset.list_brain_runs():
        dataset.delete_brain_run(brain_key)
    return fob.compute_similarity(dataset, embeddings=False, brain_key=brain_key, backend=BACKEND,
                                  index_path=str(path), id_field=id_field, metric=metric, owns_index=False)
