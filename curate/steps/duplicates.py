"""`duplicates`: exact duplicates, near duplicates and train/test leaks of a table version.

- **exact**: sha256 of the decoded pixels (a re-encoded lossless copy matches), and of the
  source files when the table has a ``path`` column;
- **near**: pairs within ``threshold`` (a distance) among each row's ``k`` nearest
  neighbours in embedding space, joined into connected components;
- **leaky**: rows of ``query_split`` (test) within ``leak_threshold`` of a row of
  ``reference_split`` (train).

At a threshold loose enough that distinct images pair up, near pairs and leaks are labelled
"candidates to review" in the metrics (``near_status``, ``leak_status``) and the report, not
duplicates: when some pair joins different labels, or the pixels of a pair are not a copy of each
other (grayscale thumbnails correlate below ``COPY_CORRELATION``; the ``CHECKED_PAIRS`` most distant
pairs are checked), which embeddings of a small model allow well below the default threshold.

One representative is kept per group: a ``real`` row over distilled or synthetic ones, then
the first row; for leaks, the reference (train) rows. Writes ``duplicates.parquet`` (one
row per group member: kind, group, id, split, set, representative, nearest id, distance)
and ``duplicates.html`` (thumbnails of the largest groups). With a FiftyOne dataset in the
run it sets int fields ``<step>_exact``, ``<step>_near`` and ``<step>_leak`` (group ids) and
saves the views ``exact_duplicates``, ``near_duplicates`` and ``leaky_splits`` (prefixed
``<step>_`` unless the step id is ``duplicates``, so two such steps never share a view).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from curate.config import ConfigValueError, option
from curate.steps.base import Input, Role, Step, StepContext

log = logging.getLogger(__name__)

TABLE_FILE = "duplicates.parquet"
REPORT_FILE = "duplicates.html"
KINDS = ("exact", "file", "near", "leak")
VIEWS = {"exact": "exact_duplicates", "near": "near_duplicates", "leak": "leaky_splits"}
CHECKED_PAIRS = 1000
"""Pairs whose pixels are compared (the most distant ones: distinct images pair up at the loose end)."""
THUMBNAIL = 16  # side of the grayscale thumbnails compared
CANDIDATES, DUPLICATES = "candidates to review", "duplicates"


@dataclass(frozen=True, kw_only=True)
class DuplicatesConfig:
    threshold: float = option(0.02, ge=0, help="near duplicates: distance at most this (cosine distance = 1 - cos)")
    leak_threshold: float | None = option(None, ge=0, help="train/test leaks: distance at most this (null: threshold)")
    k: int = option(10, gt=0, help="nearest neighbours per row checked for near duplicates")
    metric: Literal["cosine", "l2"] = option("cosine", help="distance of the embeddings")
    exact: bool = option(True, help="hash decoded pixels (and source files when there is a `path` column)")
    query_split: str = option("test", help="leaks: rows searched for copies in reference_split")
    reference_split: str = option("train", help="leaks: rows a query_split row must not copy")
    fiftyone: bool = option(True, help="fields and saved views in the run's FiftyOne dataset, if any")
    report_groups: int = option(12, ge=0, help="groups per kind shown in the HTML report")

    def __post_init__(self) -> None:
        if self.query_split == self.reference_split:
            raise ConfigValueError("reference_split", f"must differ from query_split ('{self.query_split}')")


class DuplicatesStep(Step):
    summary = "Exact (pixel/file hash), near (embedding distance) and train/test-leak duplicates: table, report, views."
    version = 3
    Config = DuplicatesConfig
    inputs = {
        "data": Role(("table",), help="the table version to check"),
        "embeddings": Role(("embeddings",), help="an embed step run on that table"),
        "index": Role(("index",), optional=True, help="an index step on the same rows (reused for the k-NN graph)"),
    }
    produces = ("report",)

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        near = (f"{metrics['near_pairs']:,} near-duplicate candidates to review" if metrics["near_status"] == CANDIDATES
                else f"{metrics['near_pairs']:,} near-duplicate pairs")
        parts = [f"{metrics['exact_duplicates']:,} exact duplicates"] if metrics.get("exact_duplicates") else []
        parts.append(near)
        if "leaky_rows" in metrics:
            parts.append(f"{metrics['leaky_rows']:,} leaky rows"
                         + (" (candidates to review)" if metrics["leak_status"] == CANDIDATES else ""))
        return ", ".join(parts)

    def run(self, ctx: StepContext) -> None:
        import numpy as np

        from curate.index import find_exact_duplicates, find_near_duplicates
        from curate.steps.index import aligned_embeddings

        cfg: DuplicatesConfig = ctx.config
        data = ctx.input("data")
        table = data.table()
        ids = np.asarray(table["id"], dtype=str)
        labels = np.asarray(table["label"])
        splits = np.asarray(table["split"], dtype=str)
        sets = np.asarray(table["set"], dtype=str) if "set" in table.column_names else np.full(len(ids), "real")
        prefer = (sets == "real").astype(np.float64)  # keep a real row over a distilled or synthetic copy
        found: dict[str, dict[str, np.ndarray]] = {}
        metrics: dict[str, Any] = {"rows": len(ids)}

        if cfg.exact:
            groups = find_exact_duplicates(_pixel_hashes(table), prefer=prefer)
            found["exact"] = _members(groups.pairs, groups.components, groups.representative)
            metrics.update(exact_groups=groups.n_groups, exact_duplicates=groups.n_duplicates)
            hashes = _file_hashes(table)
            if hashes is not None:
                groups = find_exact_duplicates(hashes, prefer=prefer)
                found["file"] = _members(groups.pairs, groups.components, groups.representative)
                metrics.update(file_groups=groups.n_groups, file_duplicates=groups.n_duplicates)

        rows, vectors, _ = aligned_embeddings(table, ctx.input("embeddings"))
        index = _reusable_index(ctx, ids[rows], cfg.metric)
        near = find_near_duplicates(vectors, threshold=cfg.threshold, k=cfg.k, metric=cfg.metric,
                                    index=index, prefer=prefer[rows], progress=ctx.progress)
        found["near"] = _members(near.pairs, near.components, near.representative, rows=rows)
        metrics.update(near_pairs=len(near.pairs), near_groups=near.n_groups, near_duplicates=near.n_duplicates,
                       **_review(table, labels, rows, near.pairs, "near"), threshold=cfg.threshold,
                       embedded_rows=len(rows))

        leak = self._leaks(cfg, vectors, splits[rows], rows)
        if leak is not None:
            found["leak"], pairs = leak
            metrics.update(leaky_rows=int(len(np.unique(pairs.i))), leak_pairs=len(pairs),
                           **_review(table, labels, rows, pairs, "leak"),
                           leak_threshold=cfg.leak_threshold if cfg.leak_threshold is not None else cfg.threshold)

        members = _member_table(found, ids, splits, sets)
        ctx.write_file(TABLE_FILE, lambda p: _write_parquet(members, p))
        digest = ctx.write_file(REPORT_FILE, lambda p: p.write_text(_report(table, found, ids, splits, sets, metrics,
                                                                            cfg.report_groups)))
        ctx.add_output("report", {"path": REPORT_FILE, "fingerprint": digest, "table": TABLE_FILE})
        ctx.metrics.update(metrics)

    @classmethod
    def show_in_fiftyone(cls, dataset, step: Input) -> dict[str, Any]:
        """Group-id fields and saved views from ``duplicates.parquet``, written in bulk and idempotently."""
        import pyarrow.parquet as pq

        from curate.fo.database import connect
        from curate.fo.fields import ID_FIELD, field_key, set_field_values
        from curate.fo.views import save_view

        fo = connect()
        members = pq.read_table(step.dir / TABLE_FILE, columns=["kind", "group", "id"]).to_pydict()
        key = field_key(step.step_id)
        prefix = "" if key == "duplicates" else f"{key}_"
        in_dataset = set(dataset.values(ID_FIELD))
        schema = dataset.get_field_schema()
        fields, views = [], []
        for kind in ("exact", "near", "leak"):
            field = f"{key}_{kind}"
            if field not in schema:
                dataset.add_sample_field(field, fo.IntField)
            group_of = {sid: int(g) for k, g, sid in zip(members["kind"], members["group"], members["id"])
                        if k == kind}
            # every sample gets a value, so a rerun clears groups that are gone
            set_field_values(dataset, field, {sid: group_of.get(sid) for sid in in_dataset})
            view = f"{prefix}{VIEWS[kind]}"
            save_view(dataset, view, dataset.exists(field).sort_by(field))
            fields.append(field)
            views.append(view)
        return {"fields": fields, "views": views}

    @staticmethod
    def _leaks(cfg: DuplicatesConfig, vectors, splits, rows):
        """Leak members and pairs (query row i, reference row j), or None when a split is missing."""
        from curate.index import connected_components, cross_split_pairs

        present = set(splits.tolist())
        missing = [s for s in (cfg.query_split, cfg.reference_split) if s not in present]
        if missing:
            log.info("no '%s' rows with embeddings: leaks between splits are not checked", missing[0])
            return None
        threshold = cfg.leak_threshold if cfg.leak_threshold is not None else cfg.threshold
        pairs = cross_split_pairs(vectors, splits, threshold=threshold, query_split=cfg.query_split,
                                  reference_split=cfg.reference_split, k=cfg.k, metric=cfg.metric)
        components = connected_components(len(vectors), pairs)
        keep = splits == cfg.reference_split  # a leak is fixed by dropping the query (test) rows
        return _members(pairs, components, keep, rows=rows), pairs


def _review(table, labels, rows, pairs, kind: str) -> dict[str, Any]:
    """Whether the pairs (positions in ``rows``) are duplicates or only candidates to review: a copy keeps its
    label and its picture, so a pair across labels or a checked pair whose thumbnails are not a copy means the
    threshold also pairs up distinct images."""
    import numpy as np

    from curate.index.duplicates import COPY_CORRELATION, thumbnail_correlation

    i, j = rows[pairs.i], rows[pairs.j]
    across = int((labels[i] != labels[j]).sum())
    checked = np.argsort(-pairs.distance, kind="stable")[:CHECKED_PAIRS]
    not_copies = 0
    if len(checked):
        wanted = np.unique(np.concatenate([i[checked], j[checked]]))
        thumbs = dict(zip(wanted.tolist(), _thumbnails(table, wanted)))
        correlation = thumbnail_correlation(np.stack([thumbs[r] for r in i[checked].tolist()]),
                                            np.stack([thumbs[r] for r in j[checked].tolist()]))
        not_copies = int((correlation < COPY_CORRELATION).sum())
    return {f"{kind}_pairs_across_labels": across, f"{kind}_pairs_checked": len(checked),
            f"{kind}_pairs_not_copies": not_copies,
            f"{kind}_status": CANDIDATES if across or not_copies else DUPLICATES}


def _thumbnails(table, rows) -> list:
    """Grayscale ``THUMBNAIL`` x ``THUMBNAIL`` float arrays of these table rows' images."""
    import numpy as np
    from PIL import Image

    images = table.select(rows.tolist())["image"] if len(rows) else []
    return [np.asarray(im.convert("L").resize((THUMBNAIL, THUMBNAIL), Image.BILINEAR), dtype=np.float32)
            for im in images]


def _members(pairs, components, representative, *, rows=None) -> dict:
    """:func:`group_members` with rows mapped to table rows (``rows[local]``) when given."""
    from curate.index import group_members

    out = group_members(pairs, components, representative)
    if rows is not None:
        out["row"], out["nearest"] = rows[out["row"]], rows[out["nearest"]]
    return out


def _pixel_hashes(table, batch_size: int = 1024):
    """sha256 of each row's decoded RGB pixels (any size), decoded by ``datasets`` in batches."""
    import numpy as np

    from curate.data.images import as_rgb
    from curate.index import pixel_hashes

    parts = []
    for lo in range(0, len(table), batch_size):
        images = table[lo:lo + batch_size]["image"]
        parts.append(pixel_hashes([np.asarray(as_rgb(im)) for im in images]))
    return np.concatenate(parts) if parts else np.zeros(0, "<U64")


def _file_hashes(table):
    """sha256 of each row's source file; None without a ``path`` column. Missing files get their own id."""
    import os

    import numpy as np

    from curate.index import file_hashes

    if "path" not in table.column_names:
        return None
    paths = [p or "" for p in table["path"]]
    exists = np.asarray([bool(p) and os.path.isfile(p) for p in paths])
    if not exists.any():
        log.info("no source file of the `path` column exists; file hashes are skipped")
        return None
    if not exists.all():
        log.warning("%d source files are missing; they are left out of the file-hash check", int((~exists).sum()))
    hashes = np.asarray([f"missing:{i}" for i in range(len(paths))], dtype="<U64")
    hashes[exists] = file_hashes([p for p, ok in zip(paths, exists) if ok])
    return hashes


def _reusable_index(ctx: StepContext, ids, metric: str):
    """The wired index step's index when it holds exactly these rows with this metric, else None.

    An exact (flat) index is reused only below the size where an approximate graph is faster."""
    inp = ctx.maybe_input("index")
    if inp is None:
        return None
    from curate.index import load_index
    from curate.index.knn import EXACT_GRAPH_MAX

    index = load_index(inp.dir / inp.entry("index")["path"])
    if index.metric != metric or index.ids is None or list(index.ids) != ids.tolist():
        log.warning("index of step '%s' was built on other rows or another metric; building a fresh k-NN graph",
                    inp.step_id)
        return None
    if index.kind == "flat" and len(index) >= EXACT_GRAPH_MAX:
        log.info("index of step '%s' is exact (flat) over %d rows; the k-NN graph uses IVF instead",
                 inp.step_id, len(index))
        return None
    return index


def _member_table(found: dict, ids, splits, sets) -> dict[str, list]:
    import numpy as np

    columns: dict[str, list] = {k: [] for k in ("kind", "group", "id", "split", "set", "representative",
                                                  "nearest_id", "distance")}
    for kind in KINDS:
        if kind not in found:
            continue
        m = found[kind]
        columns["kind"] += [kind] * len(m["row"])
        columns["group"] += m["group"].tolist()
        columns["id"] += ids[m["row"]].tolist()
        columns["split"] += splits[m["row"]].tolist()
        columns["set"] += sets[m["row"]].tolist()
        columns["representative"] += np.asarray(m["representative"], bool).tolist()
        columns["nearest_id"] += ids[m["nearest"]].tolist()
        columns["distance"] += m["distance"].astype(float).tolist()
    return columns


def _write_parquet(columns: dict[str, list], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("kind", pa.string()), ("group", pa.int64()), ("id", pa.string()), ("split", pa.string()),
                        ("set", pa.string()), ("representative", pa.bool_()), ("nearest_id", pa.string()),
                        ("distance", pa.float32())])
    pq.write_table(pa.table(columns, schema=schema), path)


_TITLES = {
    "exact": ("Exact duplicates (pixels)", "Rows whose decoded pixels are identical."),
    "file": ("Exact duplicates (files)", "Rows whose source files are byte-identical."),
    "near": ("Near duplicates", "Rows within the distance threshold of each other, joined into groups."),
    "leak": ("Leaky splits", "Query-split rows within the leak threshold of reference-split rows."),
}


def _report(table, found: dict, ids, splits, sets, summary: dict, per_kind: int) -> str:
    """The HTML report: the largest groups of each kind, representative first, as thumbnails."""
    import datasets
    import numpy as np

    from curate.index.report import Member, Section, image_uri, render_report

    names, labels = table.features["label"].names, np.asarray(table["label"])  # captions: copies share a class
    shown: dict[str, list[np.ndarray]] = {}
    for kind, m in found.items():
        sizes = np.bincount(m["group"]) if len(m["group"]) else np.zeros(0, np.int64)
        top = np.argsort(-sizes, kind="stable")[:per_kind]
        shown[kind] = [np.flatnonzero(m["group"] == g) for g in top]
    rows = sorted({int(found[k]["row"][i]) for k, groups in shown.items() for g in groups for i in g})
    raw = table.cast_column("image", datasets.Image(decode=False)).select(rows)["image"] if rows else []
    uri = {row: image_uri(r["bytes"], r["path"]) for row, r in zip(rows, raw)}
    sections = []
    for kind in KINDS:
        if kind not in found:
            continue
        m = found[kind]
        groups = []
        for members in shown[kind]:
            members = members[np.argsort(~np.asarray(m["representative"])[members], kind="stable")]
            groups.append([Member(sample_id=ids[m["row"][i]], image=uri[int(m["row"][i])],
                                  kept=bool(m["representative"][i]),
                                  caption=f"{names[labels[m['row'][i]]]} · {splits[m['row'][i]]} · "
                                          f"{sets[m['row'][i]]} · d={m['distance'][i]:.4f}")
                           for i in members])
        title, note = _TITLES[kind]
        if summary.get(f"{kind}_status") == CANDIDATES:
            title = f"{title}: candidates to review"
            note = (f"{note} At this threshold distinct images pair up: {summary[f'{kind}_pairs_across_labels']} "
                    f"pairs join different labels, and {summary[f'{kind}_pairs_not_copies']} of the "
                    f"{summary[f'{kind}_pairs_checked']} most distant pairs are not pixel copies of each other. "
                    "Review them before dropping any: these embeddings put distinct pictures this close.")
        sections.append(Section(title=title, note=note + " The kept row has a blue frame.", groups=groups,
                                total_groups=int(len(np.unique(m["group"])))))
    return render_report("Duplicates", summary, sections)
