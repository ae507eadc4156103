"""`index`: a FAISS similarity index over every row of a table version that has an embedding.

Real, distilled and synthetic rows alike: the sidecar keeps each row's ``set`` and ``split``
so a reviewer can ask for the real neighbours of a synthetic image (``curate index query``).
It also names the producing embed step, so an image file can be embedded with the same
model. When the run has a FiftyOne dataset, the index is registered there as a ``faiss``
similarity run under the brain key ``<step id>`` (App: sort by similarity), joined on
``curate_id``; rows that are not in the dataset are not searched there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Mapping

from curate.config import option
from curate.steps.base import Input, Role, Step, StepContext
from curate.steps.options import ExecutorOptions

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
_KIND_OPTIONS = ("nlist", "nprobe", "m_pq", "train_size", "hnsw_m", "ef_construction", "ef_search")


@dataclass(frozen=True, kw_only=True)
class IndexConfig(ExecutorOptions):
    kind: str = option("auto", help="auto: exact (flat) below 200,000 rows, IVF above; or an index kind of "
                                    "curate.index.INDEX_KINDS: flat, hnsw, ivf, ivfpq (inverted lists + PQ codes)")
    metric: Literal["cosine", "l2"] = option("cosine", help="distances: 1 - cos (cosine) or Euclidean (l2)")
    recall: float | None = option(0.95, gt=0, le=1, help="recall@10 target: approximate kinds set ef_search/nprobe "
                                  "to the smallest value reaching it on held rows (null: manual knobs)")
    nlist: int | None = option(None, gt=0, help="ivf/ivfpq (and auto above 200,000 rows) cells (null: ~4 sqrt(N))")
    nprobe: int | None = option(None, gt=0, help="ivf/ivfpq cells searched per query (null: calibrated to `recall`, "
                                                 "or nlist/128 and at least 8 without one; a value wins)")
    m_pq: int | None = option(None, gt=0, help="ivfpq bytes per vector (must divide the dimension)")
    train_size: int | None = option(None, gt=0, help="ivf/ivfpq k-means training rows (null: 64 per cell)")
    hnsw_m: int | None = option(None, gt=0, help="hnsw links per node (null: 32)")
    ef_construction: int | None = option(None, gt=0, help="hnsw build-time candidate list (null: 80)")
    ef_search: int | None = option(None, gt=0, help="hnsw query-time candidate list (null: calibrated to `recall`, "
                                                    "or 64 without one; a value wins)")
    shards: int | None = option(None, gt=0, help="build in this many shards, filled in parallel (on Ray workers "
                                                 "with executor: ray) and merged: flat, ivf or ivfpq, recall: null")
    fiftyone: bool = option(True, help="register a `faiss` similarity run in the run's FiftyOne dataset, if any")

    def build_options(self) -> dict[str, Any]:
        """Keyword options of ``build_index`` (:meth:`IndexStep.check` refused knobs of another kind)."""
        options: dict[str, Any] = {"kind": self.kind, "metric": self.metric, "recall": self.recall}
        options.update({k: getattr(self, k) for k in _KIND_OPTIONS if getattr(self, k) is not None})
        return options


class IndexStep(Step):
    summary = "FAISS similarity index of every embedded row (real, distilled, synthetic); App similarity search."
    version = 3  # 3: recall target, calibrated ef_search/nprobe
    Config = IndexConfig
    inputs = {
        "data": Role(("table",), help="the table version to index (every row with an embedding)"),
        "embeddings": Role(("embeddings",), help="an embed step run on that table (or on an earlier version)"),
    }
    produces = ("index",)

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        return f"{metrics['rows']:,} rows, {metrics['kind']} {metrics['metric']}"

    @classmethod
    def check(cls, config: IndexConfig, wired: Mapping[str, list[str]]) -> list[tuple[str | None, str]]:
        from curate.index.kinds import INDEX_KINDS, misplaced_options

        if config.kind != "auto" and config.kind not in INDEX_KINDS:
            return [("kind", f"{INDEX_KINDS.unknown_message(config.kind)} (or 'auto')")]
        # auto uses the IVF knobs when it picks IVF (never PQ)
        problems = misplaced_options(config.kind, [k for k in _KIND_OPTIONS if getattr(config, k) is not None])
        if config.shards and config.kind == "hnsw":
            problems.append(("shards", "HNSW graphs cannot be merged from shards; use kind ivf (or drop `shards`)"))
        if config.shards and config.recall is not None:
            problems.append(("recall", "a sharded build cannot calibrate to a recall target (every row is in the "
                                       "index); set `recall: null` (and `nprobe`), or drop `shards`"))
        return problems

    def run(self, ctx: StepContext) -> None:
        import hashlib
        import time

        import numpy as np

        from curate import workspace
        from curate.index import build_index, sidecar_path
        from curate.index.sharded import build_sharded_index

        cfg: IndexConfig = ctx.config
        data, emb = ctx.input("data"), ctx.input("embeddings")
        table = data.table()
        rows, vectors, unknown = aligned_embeddings(table, emb)
        columns = {name: [str(v) for v in np.asarray(table[name], dtype=object)[rows]]
                   for name in ("set", "split") if name in table.column_names}
        meta = {
            "step": ctx.step_id,
            "embed_step": emb.step_id,
            "model": producing_model(emb),
            "table": {"step": data.step_id, "fingerprint": data.entry("table")["fingerprint"]},
            "embeddings": {"step": emb.step_id, "fingerprint": emb.entry("embeddings")["fingerprint"]},
            "columns": columns,
        }
        ids = np.asarray(table["id"], dtype=str)[rows]
        started = time.perf_counter()
        if cfg.shards:
            options = {k: v for k, v in cfg.build_options().items() if k != "recall"}
            index = build_sharded_index(vectors, shards=cfg.shards, ids=ids.tolist(), meta=meta, seed=ctx.seed,
                                        map_tasks=getattr(ctx.executor(cfg.executor), "map_tasks", map), **options)
        else:
            index = build_index(vectors, ids=ids.tolist(), meta=meta, seed=ctx.seed, progress=ctx.progress,
                                **cfg.build_options())
        build_seconds = time.perf_counter() - started
        path = ctx.path(INDEX_FILE)
        digest = index.save(path)  # atomic: the index file, then its sidecar
        ctx.files.append(INDEX_FILE + ".json")
        fingerprint = hashlib.sha256((digest + workspace.file_sha256(sidecar_path(path))).encode()).hexdigest()
        ctx.add_output("index", {"path": INDEX_FILE, "sidecar": INDEX_FILE + ".json", "fingerprint": fingerprint,
                                 "rows": len(index), "dim": index.dim, "kind": index.kind, "metric": index.metric})
        sets = columns.get("set", [])
        ctx.metrics.update(rows=len(index), dim=index.dim, kind=index.kind, metric=index.metric,
                           sets={s: sets.count(s) for s in sorted(set(sets))},
                           rows_without_embedding=int(len(table) - len(rows)), embeddings_not_in_table=unknown,
                           build_seconds=round(build_seconds, 3), **index.recall_metrics(cfg.recall))

    @classmethod
    def show_in_fiftyone(cls, dataset, step: Input) -> dict[str, Any]:
        """The saved index as the `faiss` brain run ``<step id>`` of the run's dataset (App: sort by
        similarity), joined on ``curate_id``."""
        from curate.fo.fields import field_key
        from curate.index.fiftyone_backend import register_index

        key = field_key(step.step_id)
        results = register_index(dataset, key, step.dir / step.entry("index")["path"], id_field="curate_id")
        log.info("registered brain run '%s' (faiss, %d samples) in FiftyOne dataset '%s'", key,
                 results.total_index_size, dataset.name)
        return {"brain_keys": [key], "searchable_rows": results.total_index_size}


def aligned_embeddings(table, emb: Input) -> tuple["np.ndarray", "np.ndarray", int]:
    """Table rows that have an embedding (in table order), their vectors, and how many embedding ids
    are not in the table; no overlap at all is a usage error."""
    import numpy as np

    from curate.artifacts import locate_ids
    from curate.errors import UsageError

    values, ids = emb.array("embeddings")
    emb_rows, has = locate_ids(np.asarray(table["id"], dtype=str), ids)
    if not has.any():
        raise UsageError(f"none of the {len(ids)} embeddings of step '{emb.step_id}' belong to rows of the table; "
                         "embed this table version (wire the embed step's `data` to the same table)")
    rows = np.flatnonzero(has)
    unknown = int(len(ids) - has.sum())
    if len(rows) < len(table):
        log.warning("%d of %d table rows have no embedding in step '%s'; they are not indexed",
                    len(table) - len(rows), len(table), emb.step_id)
    return rows, np.asarray(values[emb_rows[rows]], dtype=np.float32), unknown


def producing_model(emb: Input) -> str | None:
    """Name of the model an embed step recorded (a registry name, or the trained model's)."""
    return emb.entry("embeddings").get("model", {}).get("name")
