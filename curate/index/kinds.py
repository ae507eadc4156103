"""Index kinds: the FAISS index families ``build_index`` can build, in the ``INDEX_KINDS`` registry.

A kind resolves and checks its build options, creates and trains the FAISS index, adds rows so
that FAISS id i ends up holding row i, and owns its query-time knob (the one that trades speed
for recall and is calibrated to a recall target at build time; exact kinds have none). Built-ins:

- ``flat``: exact brute force (``IndexFlatIP``/``IndexFlatL2``);
- ``ivf``: inverted lists over ``nlist`` k-means cells, ``nprobe`` cells searched; exact
  when ``nprobe == nlist``;
- ``ivfpq``: as ``ivf`` with product-quantised codes (``m_pq`` bytes a vector): compact,
  distances approximate, so recall may stay below a target at any ``nprobe``;
- ``hnsw``: graph search (``hnsw_m`` links, ``ef_search`` candidates), no training.

``auto`` is not a kind but a policy (:func:`resolve_kind`): ``flat`` below :data:`AUTO_EXACT_MAX`
vectors, ``ivf`` above. Other packages add kinds through the ``curate.index_kinds`` entry-point
group; ``tests/index/test_index_kinds_contract.py`` checks every registered kind.
FAISS is imported inside methods, so importing this module stays cheap.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import numpy as np

from curate.errors import UsageError
from curate.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    import faiss

log = logging.getLogger(__name__)

AUTO_EXACT_MAX = 200_000
"""``kind="auto"`` builds an exact flat index below this many vectors and IVF at or above it."""
AUTO_KINDS = ("flat", "ivf")
"""The kinds ``auto`` chooses between; options of these kinds are accepted with ``auto``."""
MIN_POINTS_PER_CENTROID = 39
"""FAISS warns when k-means gets fewer training vectors than this per centroid."""
PQ_CENTROIDS = 256  # 8-bit codes


def positive_int(name: str, value: Any, *, upper: int | None = None, what: str = "") -> int:
    """``value`` as an int >= 1 (and <= ``upper``), else a UsageError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UsageError(f"`{name}` must be an integer >= 1, got {value!r}")
    if upper is not None and value > upper:
        raise UsageError(f"`{name}` must be at most {upper}{what}, got {value}")
    return int(value)


class IndexKind:
    """One FAISS index family. Subclasses set the class attributes and override what differs.

    ``options`` are the build options the kind accepts (``build_index`` refuses the others);
    ``knob`` is the query-time option calibrated to the recall target (None: exact search).
    """

    name: ClassVar[str]
    faiss_class: ClassVar[str]
    """Prefix of the FAISS class name a saved index of this kind has (checked on load)."""
    options: ClassVar[tuple[str, ...]] = ()
    knob: ClassVar[str | None] = None
    stores_row_ids: ClassVar[bool] = False
    """True when :meth:`add` stores the row numbers as FAISS ids; False when FAISS numbers vectors
    in the order they were added until :meth:`finish` renumbers them."""
    miss_hint: ClassVar[str] = "use kind 'flat' (exact)"
    """What to try when no knob value reaches the recall target."""
    add_chunk: ClassVar[int | None] = 65_536
    """Rows per ``add`` call (bounded temporaries), or None for one call with every row."""
    calibration_allowance: ClassVar[float] = 0.0
    """Recall the calibrated knob must reach beyond the target, for the index calibrated on differing
    from the one delivered (see :mod:`curate.index.calibrate`)."""

    @property
    def exact(self) -> bool:
        return self.knob is None

    def resolve(self, n: int, d: int, given: Mapping[str, Any], *, seed: int, trainable: int) -> dict[str, Any]:
        """Checked build options with defaults filled in (``given`` holds only this kind's options);
        ``trainable`` of the ``n`` rows may be trained on (the others calibrate)."""
        return {}

    def factory(self, d: int, params: Mapping[str, Any]) -> str:
        """The ``faiss.index_factory`` description."""
        raise NotImplementedError

    def create(self, d: int, params: Mapping[str, Any], metric_type: int) -> "faiss.Index":
        """An empty index (trained by :meth:`train`)."""
        import faiss

        return faiss.index_factory(d, self.factory(d, params), metric_type)

    def train(self, index: "faiss.Index", x: np.ndarray, params: Mapping[str, Any], *, rows: np.ndarray) -> None:
        """Train on (a sample of) the normalised vectors ``x[rows]``: the calibration rows are left out
        so that they stay new to the index. Nothing to do for most kinds."""

    def add(self, index: "faiss.Index", x: np.ndarray, rows: np.ndarray, *, late: bool) -> None:
        """Add vectors ``x`` of table rows ``rows``; FAISS numbers them in the order they come.
        ``late``: the calibration rows, added after every other row."""
        index.add(x)

    def finish(self, index: "faiss.Index", order: np.ndarray) -> None:
        """After every row was added in ``order``: make FAISS id i hold row i."""
        if not np.array_equal(order, np.arange(len(order))):
            index.permute_entries(np.argsort(order).astype(np.int64))

    # ---- the query-time knob (kinds with ``knob``) --------------------------------------------
    def default_knob(self, params: Mapping[str, Any]) -> int:
        """The knob's value when it is neither given nor calibrated."""
        raise NotImplementedError

    def knob_limit(self, index: "faiss.Index") -> int | None:
        """The largest valid knob value (None: no limit)."""
        return None

    def calibration_range(self, index: "faiss.Index", k: int) -> tuple[int, int]:
        """The knob values calibration searches, smallest (fastest) first."""
        raise NotImplementedError

    def get_knob(self, index: "faiss.Index") -> int:
        raise NotImplementedError

    def set_knob(self, index: "faiss.Index", value: int) -> None:
        raise NotImplementedError

    def search_parameters(self, index: "faiss.Index", selector: "faiss.IDSelector") -> "faiss.SearchParameters":
        """Parameters restricting a search to ``selector`` while keeping this index's knob (FAISS's
        parameter objects otherwise reset it: ``nprobe`` to 1, ``efSearch`` to 16)."""
        import faiss

        return faiss.SearchParameters(sel=selector)

    def range_candidates(self, index: "faiss.Index") -> int | None:
        """None: FAISS's range search works for this kind; else how many nearest candidates a range
        search cuts at the radius instead."""
        return None


class Flat(IndexKind):
    name = "flat"
    faiss_class = "IndexFlat"

    def factory(self, d: int, params: Mapping[str, Any]) -> str:
        return "Flat"


class HNSW(IndexKind):
    name = "hnsw"
    faiss_class = "IndexHNSW"
    options = ("hnsw_m", "ef_construction", "ef_search")
    knob = "ef_search"
    miss_hint = "build a denser graph (larger hnsw_m or ef_construction) or use kind 'ivf' or 'flat'"

    DEFAULT_M = 32
    DEFAULT_EF_CONSTRUCTION = 80
    """FAISS's default is 40. At 80 the calibrated efSearch came out 25% lower on overlapping clusters
    (100k x 128: 77 vs 102, 1.3x the queries/s at recall 0.95) for 1.2x the build time; 120 gained
    nothing more (``bench/index.py --recall``)."""
    DEFAULT_EF_SEARCH = 64
    EF_SEARCH_MAX = 2048
    """Calibration stops here, bounding its cost; a graph that needs more candidates for the target
    visits a large share of the rows per query, and exact search is the better kind."""
    calibration_allowance = 0.005
    """Rows added to a finished graph shift its links: fresh queries saw 0.002-0.006 less recall@10 on
    the delivered graph than calibration measured on the one without the held rows (100k-200k rows)."""
    add_chunk = None
    """One ``add`` call: a graph added in chunks of 65,536 rows gave 0.05 less recall@10 than one
    built in a single call (150k x 32, efSearch 12)."""

    def resolve(self, n: int, d: int, given: Mapping[str, Any], *, seed: int, trainable: int) -> dict[str, Any]:
        params = {"hnsw_m": positive_int("hnsw_m", given.get("hnsw_m", self.DEFAULT_M)),
                  "ef_construction": positive_int("ef_construction",
                                                  given.get("ef_construction", self.DEFAULT_EF_CONSTRUCTION))}
        if given.get("ef_search") is not None:
            params["ef_search"] = positive_int("ef_search", given["ef_search"])
        return params

    def factory(self, d: int, params: Mapping[str, Any]) -> str:
        return f"HNSW{params['hnsw_m']},Flat"

    def create(self, d: int, params: Mapping[str, Any], metric_type: int) -> "faiss.Index":
        index = super().create(d, params, metric_type)
        index.hnsw.efConstruction = params["ef_construction"]
        return index

    def add(self, index: "faiss.Index", x: np.ndarray, rows: np.ndarray, *, late: bool) -> None:
        """Late rows keep their neighbours' level-0 lists full: linking a batch into a finished graph
        prunes links among the earlier rows. With 1,000 late rows of 20k, fresh queries lost 0.007
        recall@10 against a one-call build; with full lists (only while adding them), 0.002."""
        index.keep_max_size_level0 = late
        try:
            index.add(x)
        finally:
            index.keep_max_size_level0 = False

    def default_knob(self, params: Mapping[str, Any]) -> int:
        return self.DEFAULT_EF_SEARCH

    def calibration_range(self, index: "faiss.Index", k: int) -> tuple[int, int]:
        return k, max(k, self.EF_SEARCH_MAX)

    def get_knob(self, index: "faiss.Index") -> int:
        return int(index.hnsw.efSearch)

    def set_knob(self, index: "faiss.Index", value: int) -> None:
        index.hnsw.efSearch = int(value)

    def search_parameters(self, index: "faiss.Index", selector: "faiss.IDSelector") -> "faiss.SearchParameters":
        import faiss

        return faiss.SearchParametersHNSW(sel=selector, efSearch=self.get_knob(index))

    def range_candidates(self, index: "faiss.Index") -> int | None:
        """FAISS's own HNSW range search gives the same as the ``ef_search`` nearest and aborts the
        process on some inputs in 1.15."""
        return self.get_knob(index)


class IVF(IndexKind):
    name = "ivf"
    faiss_class = "IndexIVFFlat"
    options = ("nlist", "nprobe", "train_size")
    knob = "nprobe"
    stores_row_ids = True

    def default_nlist(self, n: int) -> int:
        """~4 sqrt(N) cells, but never so many that N vectors fall short of FAISS's 39 per cell."""
        return max(1, min(int(round(4 * math.sqrt(n))), n // MIN_POINTS_PER_CENTROID))

    def min_train(self, nlist: int) -> int:
        return nlist

    def default_train(self, n: int, nlist: int) -> int:
        return min(n, 64 * nlist)

    def resolve(self, n: int, d: int, given: Mapping[str, Any], *, seed: int, trainable: int) -> dict[str, Any]:
        nlist = given.get("nlist")
        nlist = self.default_nlist(trainable) if nlist is None else positive_int(
            "nlist", nlist, upper=n, what=" (the number of vectors)")
        params: dict[str, Any] = {"nlist": nlist}
        if given.get("nprobe") is not None:
            params["nprobe"] = positive_int("nprobe", given["nprobe"], upper=nlist, what=" (`nlist`)")
        params.update(self.resolve_codes(d, given))
        minimum = self.min_train(nlist)
        train = given.get("train_size")
        train = self.default_train(trainable, nlist) if train is None else positive_int(
            "train_size", train, upper=n, what=" (the number of vectors)")
        if min(train, trainable) < minimum <= train:  # a tiny index trains on every row instead
            trainable = n
        train = min(train, trainable)
        if train < minimum:
            raise UsageError(f"`train_size` must be at least {minimum} to train {self.name} with nlist={nlist}, "
                             f"got {train} ({n} vectors in all); lower `nlist`")
        if train < MIN_POINTS_PER_CENTROID * nlist:
            log.warning("training %s with %d vectors for nlist=%d: FAISS asks for >= %d (39 per cell); "
                        "lower nlist for stabler cells", self.name, train, nlist, MIN_POINTS_PER_CENTROID * nlist)
        params.update(train_size=train, seed=int(seed))
        return params

    def resolve_codes(self, d: int, given: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def factory(self, d: int, params: Mapping[str, Any]) -> str:
        return f"IVF{params['nlist']},Flat"

    def train(self, index: "faiss.Index", x: np.ndarray, params: Mapping[str, Any], *, rows: np.ndarray) -> None:
        """k-means on ``train_size`` of ``rows`` drawn with ``seed`` (on every row of a tiny index);
        points a centroid was fit to are found more easily than new ones, which would flatter
        calibration."""
        index.cp.seed = params["seed"]
        if len(rows) < params["train_size"]:  # resolve() found too few rows beside the calibration ones
            rows = np.arange(len(x))
        size = params["train_size"]
        if size < len(rows):
            rows = rows[np.sort(np.random.default_rng(params["seed"]).choice(len(rows), size=size, replace=False))]
        index.train(x if len(rows) == len(x) else x[rows])

    def add(self, index: "faiss.Index", x: np.ndarray, rows: np.ndarray, *, late: bool) -> None:
        index.add_with_ids(x, rows.astype(np.int64))

    def finish(self, index: "faiss.Index", order: np.ndarray) -> None:
        index.make_direct_map()  # lets vectors()/search_ids() fetch stored rows

    def default_knob(self, params: Mapping[str, Any]) -> int:
        """nlist / 128, at least 8: 31 probes of 4,000 cells at 1M vectors."""
        return min(params["nlist"], max(8, params["nlist"] // 128))

    def knob_limit(self, index: "faiss.Index") -> int | None:
        return int(index.nlist)

    def calibration_range(self, index: "faiss.Index", k: int) -> tuple[int, int]:
        return 1, int(index.nlist)

    def get_knob(self, index: "faiss.Index") -> int:
        return int(index.nprobe)

    def set_knob(self, index: "faiss.Index", value: int) -> None:
        index.nprobe = int(value)

    def search_parameters(self, index: "faiss.Index", selector: "faiss.IDSelector") -> "faiss.SearchParameters":
        import faiss

        return faiss.SearchParametersIVF(sel=selector, nprobe=self.get_knob(index))


class IVFPQ(IVF):
    name = "ivfpq"
    faiss_class = "IndexIVFPQ"
    options = ("nlist", "nprobe", "train_size", "m_pq")
    miss_hint = "its codes cap recall: use a larger m_pq (more bytes a vector) or kind 'ivf'"

    @staticmethod
    def default_m_pq(d: int) -> int:
        """The largest divisor of D that is at most D/4 (32 one-byte codes for D=128)."""
        return max((m for m in range(1, max(d // 4, 1) + 1) if d % m == 0), default=1)

    def resolve_codes(self, d: int, given: Mapping[str, Any]) -> dict[str, Any]:
        m = given.get("m_pq")
        m = self.default_m_pq(d) if m is None else positive_int("m_pq", m)
        if d % m:
            raise UsageError(f"`m_pq` must divide the embedding size {d}, got {m}")
        return {"m_pq": m}

    def min_train(self, nlist: int) -> int:
        return max(nlist, PQ_CENTROIDS)

    def default_train(self, n: int, nlist: int) -> int:
        return min(n, max(64 * nlist, MIN_POINTS_PER_CENTROID * PQ_CENTROIDS))

    def factory(self, d: int, params: Mapping[str, Any]) -> str:
        return f"IVF{params['nlist']},PQ{params['m_pq']}x8"

    def create(self, d: int, params: Mapping[str, Any], metric_type: int) -> "faiss.Index":
        index = super().create(d, params, metric_type)
        index.pq.cp.seed = params["seed"]
        index.do_polysemous_training = False  # index_factory turns it on; it is slow and unused here
        return index


INDEX_KINDS: Registry[type[IndexKind]] = Registry("index kind", entry_point_group="curate.index_kinds")
INDEX_KINDS.register("flat", Flat)
INDEX_KINDS.register("hnsw", HNSW)
INDEX_KINDS.register("ivf", IVF)
INDEX_KINDS.register("ivfpq", IVFPQ)


def index_kind(name: str) -> IndexKind:
    """The registered kind ``name`` (not ``auto``: see :func:`resolve_kind`)."""
    if name not in INDEX_KINDS:
        raise UsageError(f"`kind` must be 'auto' or a registered index kind; {INDEX_KINDS.unknown_message(name)}")
    return INDEX_KINDS.get(name)()


def resolve_kind(kind: str, n: int) -> str:
    """The kind ``kind`` names; ``auto`` picks exact below :data:`AUTO_EXACT_MAX` vectors and IVF above."""
    if kind == "auto":
        return "flat" if n < AUTO_EXACT_MAX else "ivf"
    return index_kind(kind).name


def accepted_options(kind: str) -> tuple[str, ...]:
    """Build options ``kind`` accepts; for ``auto``, those of the kinds it chooses between."""
    names = AUTO_KINDS if kind == "auto" else (kind,)
    return tuple(dict.fromkeys(o for name in names for o in index_kind(name).options))


def misplaced_options(kind: str, given: Sequence[str]) -> list[tuple[str, str]]:
    """(option, message) for each of ``given`` that ``kind`` does not accept, naming the kinds that do."""
    accepted = accepted_options(kind)
    out = []
    for option in given:
        if option in accepted:
            continue
        owners = [name for name in INDEX_KINDS.names() if option in index_kind(name).options]
        if not owners:
            out.append((option, f"`{option}` is not an option of any index kind"))
            continue
        out.append((option, f"`{option}` applies to kind {' or '.join(map(repr, owners))}, not {kind!r}; "
                            f"pass kind={owners[0]!r} (or drop the option)"))
    return out
