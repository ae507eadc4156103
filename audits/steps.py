"""Recipe steps `audit` and `audit_apply`, and the library calls behind `curate audit [apply] RUN`.

`audit` finds label issues in the rows of a table that a `predict` step scored (held-out or
out-of-fold ``pred_probs``), suggests a label, mistake category and severity for each, scores
k-NN outliers and near-duplicate label conflicts when embeddings are wired, and writes
``issues.parquet`` (every audited row), ``issues.csv`` (flagged rows, worst first), the
confusion matrix, an HTML report with PNG figures, and, when the run has a FiftyOne dataset,
fields and saved views for review in the App (:mod:`audits.fo_review`).

`audit_apply` reads the reviewer's tags back from that dataset (vocabulary in
:mod:`audits.review`; they are fingerprinted, so a changed review reruns it), and writes a new
table version without the dropped rows and with the corrected labels, plus the "major errors"
slice of confirmed major mistakes (ids file and saved view). The input table is never changed.

These steps reach the runner through the ``curate.steps`` entry points; curate's core never
imports this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from audits.label_issues import FILTER_BY, SCORE_METHODS
from audits.review import ACTIONS, UNREVIEWED
from curate.config import ConfigValueError, option
from curate.errors import UsageError
from curate.steps.base import FIFTYONE_RECORD, Input, Role, Step, StepContext

log = logging.getLogger(__name__)

ISSUES_FILE = "issues.parquet"
REPORT_DIR = "report"


# ---------------------------------------------------------------- configs


@dataclass(frozen=True, kw_only=True)
class CategorizeOptions:
    """How flagged rows get a suggested mistake category and severity (audits.mistakes.categorize)."""

    hierarchy: str | None = option(
        None, help="is-a edges file ('parent child' wnid lines, e.g. wordnet.is_a.txt) when the class names are "
                   "ImageNet wnids; null: class similarity from embeddings (else pred_probs) centroids")
    near_distance: int = option(4, ge=0, help="hierarchy: a class pair this close is near (siblings are 2)")
    far_distance: int = option(7, ge=1, help="hierarchy: a class pair at least this far apart is far")
    near_quantile: float = option(0.9, ge=0, le=1, help="no hierarchy: pairs above this similarity quantile are "
                                                        "near (uncalibrated)")
    far_quantile: float = option(0.5, ge=0, le=1, help="no hierarchy: pairs below this quantile are far")
    high_confidence: float = option(0.8, gt=0, le=1, help="a far, this confident prediction: non_prototypical")
    low_confidence: float = option(0.5, gt=0, le=1, help="below this, a far mistake is borderline, not major")

    def __post_init__(self) -> None:
        if self.far_distance <= self.near_distance:
            raise ConfigValueError("far_distance", f"expected more than near_distance ({self.near_distance}), "
                                                   f"got {self.far_distance}")
        if self.far_quantile > self.near_quantile:
            raise ConfigValueError("far_quantile", f"expected at most near_quantile ({self.near_quantile}), "
                                                   f"got {self.far_quantile}")


@dataclass(frozen=True, kw_only=True)
class AuditConfig:
    """Options of the `audit` step (see audits.audit.AuditOptions for their meaning)."""

    filter_by: Literal[FILTER_BY] = option(  # type: ignore[valid-type]
        "prune_by_noise_rate", help="confident-learning rule that flags issues (cleanlab's filter_by)")
    score: Literal[SCORE_METHODS] = option(  # type: ignore[valid-type]
        "self_confidence", help="label quality score used to rank issues (lower = worse)")
    frac_noise: float = option(1.0, gt=0, le=1, help="flag this share of the estimated issues (prune rules)")
    min_examples_per_class: int = option(1, ge=0, help="never flag a class below this many rows")
    multi_label_threshold: float = option(0.3, gt=0, le=1, help="a class with at least this probability is a "
                                                                "candidate label; 2+ candidates: multi-label")
    outlier_k: int = option(10, gt=0, help="neighbours (embeddings) averaged for the k-NN outlier score")
    outlier_z: float = option(3.5, gt=0, help="modified z-score of the outlier score above which a row is an "
                                              "outlier")
    duplicate_distance: float = option(0.01, ge=0, help="cosine distance within which the nearest neighbour is a "
                                                        "near duplicate (a different label is a conflict)")
    confused_pairs: int = option(3, ge=0, help="most confused class pairs that get a FiftyOne view")
    top_issues: int = option(48, ge=0, help="issues shown in the report")
    categorize: CategorizeOptions = option(default_factory=CategorizeOptions, help="mistake category options")
    fiftyone: bool = option(True, help="write fields and views into the run's FiftyOne dataset, if it has one")


@dataclass(frozen=True, kw_only=True)
class AuditApplyConfig:
    """Options of the `audit_apply` step (tag vocabulary in audits.review)."""

    action: Literal[ACTIONS] = option(  # type: ignore[valid-type]
        "drop", help="what a `confirmed` tag does: drop the sample or relabel it to the suggested label")
    unreviewed: Literal[UNREVIEWED] = option(  # type: ignore[valid-type]
        "keep", help="flagged samples without a review tag: keep them, or apply `action` as if confirmed")
    fiftyone: bool = option(True, help="read review tags from the run's FiftyOne dataset and save the "
                                       "major-errors view there")


# ---------------------------------------------------------------- shared helpers


def _positions(ids: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row of each of ``ids`` in ``reference``, mask of the ids that were found)."""
    ids = np.asarray(ids, dtype=str)
    reference = np.asarray(reference, dtype=str)
    if len(reference) == 0:
        return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
    sorter = np.argsort(reference, kind="stable")
    pos = np.clip(np.searchsorted(reference, ids, sorter=sorter), 0, len(reference) - 1)
    rows = sorter[pos]
    return rows.astype(np.int64), reference[rows] == ids


def _require_rows(ids: np.ndarray, reference: np.ndarray, *, what: str, where: str, fix: str) -> np.ndarray:
    rows, found = _positions(ids, reference)
    if not found.all():
        missing = np.asarray(ids, dtype=str)[~found]
        raise UsageError(f"{int((~found).sum())} of the {len(ids)} {what} are not {where} (e.g. '{missing[0]}'); "
                         f"{fix}")
    return rows


def _run_dataset(run_dir: Path, *, required: bool):
    """``(dataset, record)`` of the run's FiftyOne dataset, or ``(None, None)`` when it has none."""
    from curate.fo.database import connect
    from curate.fo.runs import RUN_RECORD, read_run_record

    record = read_run_record(run_dir)
    if record is None:
        return None, None
    fo = connect(record.get("database_uri"))
    if not fo.dataset_exists(record["dataset"]):
        if not required:
            return None, None
        raise UsageError(f"the FiftyOne dataset '{record['dataset']}' named in {Path(run_dir) / RUN_RECORD} is "
                         "gone, and the review tags with it; rerun the `fiftyone` step, or set `fiftyone: false`")
    return fo.load_dataset(record["dataset"]), record


def _previous_record(step_dir: Path) -> dict[str, Any] | None:
    path = Path(step_dir) / FIFTYONE_RECORD
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def _file_stamp(path: str) -> list[Any]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"with.categorize.hierarchy: file {p} does not exist; pass wordnet.is_a.txt "
                         "(lines 'parent_wnid child_wnid')")
    stat = p.stat()
    return [str(p.resolve()), stat.st_size, stat.st_mtime_ns]


# ---------------------------------------------------------------- audit


class AuditStep(Step):
    kind = "audit"
    version = 1
    summary = ("Find label issues (confident learning) with suggested labels, mistake categories and severities, "
               "outliers and multi-label candidates; HTML report; review fields and views in FiftyOne")
    Config = AuditConfig
    inputs = {
        "data": Role(("table",), help="the table version whose labels are audited"),
        "pred_probs": Role(("pred_probs",), help="out-of-sample probabilities: held out, or `predict` with folds"),
        "embeddings": Role(("embeddings",), optional=True, help="an embed step: k-NN outliers, near-duplicate "
                                                                 "conflicts and class similarity"),
        "label_maps": Role(("label_maps",), optional=True, help="a relabel step: its multi-labels mark "
                                                                 "multi-label candidates"),
    }
    produces = ("label_issues", "report")

    @classmethod
    def external_fingerprint(cls, config: AuditConfig, *, run_dir: Path) -> str | None:
        """The run's FiftyOne dataset (an audit reruns to fill a newly created one) and the hierarchy file."""
        from curate.fo.runs import read_run_record

        record = read_run_record(run_dir) if config.fiftyone else None
        parts = {"dataset": record and record.get("dataset"),
                 "hierarchy": config.categorize.hierarchy and _file_stamp(config.categorize.hierarchy)}
        if not any(parts.values()):
            return None
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def run(self, ctx: StepContext) -> None:
        from audits.audit import AuditOptions, audit_dataset
        from audits.mistakes import Thresholds

        cfg: AuditConfig = ctx.config
        data, pred = ctx.input("data"), ctx.input("pred_probs")
        table = data.table()
        names = list(table.features["label"].names)
        table_ids = np.asarray(table["id"], dtype=str)
        probs, ids = pred.array("pred_probs", mmap=True)
        ids = np.asarray(ids, dtype=str)
        rows = _require_rows(ids, table_ids, what=f"`pred_probs` ids of step '{pred.step_id}'",
                             where=f"in the table of step '{data.step_id}'",
                             fix="wire `pred_probs` from a predict step on this table (or a version of it)")
        if probs.ndim != 2 or probs.shape[1] != len(names):
            raise UsageError(f"`pred_probs` of step '{pred.step_id}' has shape {tuple(probs.shape)} but the table "
                             f"of step '{data.step_id}' has {len(names)} classes; predict with a model for these "
                             "classes")
        labels = np.asarray(table["label"], dtype=np.int64)[rows]
        c = cfg.categorize
        options = AuditOptions(
            filter_by=cfg.filter_by, method=cfg.score, frac_noise=cfg.frac_noise,
            min_examples_per_class=cfg.min_examples_per_class, multi_label_threshold=cfg.multi_label_threshold,
            outlier_k=None, outlier_z=cfg.outlier_z, duplicate_distance=cfg.duplicate_distance,
            confused_pairs=cfg.confused_pairs, near_quantile=c.near_quantile, far_quantile=c.far_quantile,
            thresholds=Thresholds(near_distance=c.near_distance, far_distance=c.far_distance,
                                  high_confidence=c.high_confidence, low_confidence=c.low_confidence))
        signals = self._signals(ctx, ids, names, len(ids))
        try:
            result = audit_dataset(labels, probs, options=options, **signals)
        except ValueError as exc:
            raise UsageError(f"pred_probs of step '{pred.step_id}': {exc}") from exc

        self._write_tables(ctx, ids, names, result, probs)
        ctx.save_array("scores", result.issues.scores.astype(np.float32), ids, table=data,
                       split=pred.entry("pred_probs").get("aligned_to", {}).get("split"))
        report = self._write_report(ctx, table, rows, ids, names, result, pred, data)
        fo_record = self._write_fiftyone(ctx, ids, names, result,
                                         lambda: _candidates(ids, result, probs, names, signals.get("multi_labels"),
                                                             cfg.multi_label_threshold))
        summary = result.summary()
        per_class = result.per_class_issue_rate
        ctx.metrics.update({
            "issues": summary["issues"], "issue_rate": round(summary["issue_rate"], 4),
            "report": str(ctx.dir / report), "rows": summary["rows"],
            "estimated_noise_rate": round(summary["estimated_noise_rate"], 4),
            "accuracy": round(summary["accuracy"], 4),
            "multi_label_candidates": summary["multi_label_candidates"],
            "categories": summary["categories"], "severities": summary["severities"],
            "class_pair_signal": summary["class_pair_signal"],
            "per_class_issue_rate": {n: round(float(r), 4) for n, r in zip(names, per_class)},
            "imbalance_ratio": round(summary["imbalance_ratio"], 4),
            "normalized_entropy": round(summary["normalized_entropy"], 4),
            "minority_classes": [names[i] for i in result.balance.minority],
            "confused_pairs": [[names[a], names[b], int(n)] for a, b, n in result.confused_pairs[:cfg.confused_pairs]],
            "fiftyone": fo_record,
        })
        if "outliers" in summary:
            ctx.metrics.update(outliers=summary["outliers"],
                               near_duplicate_conflicts=summary["near_duplicate_conflicts"])
        log.info("audit '%s': %d issues in %d rows; report: %s", ctx.step_id, summary["issues"], summary["rows"],
                 ctx.dir / report)

    # -- inputs --
    def _signals(self, ctx: StepContext, ids: np.ndarray, names: list[str], n: int) -> dict[str, Any]:
        """Optional arrays aligned to the audited rows: k-NN graph and features, multi-labels, hierarchy."""
        cfg: AuditConfig = ctx.config
        out: dict[str, Any] = {}
        emb = ctx.maybe_input("embeddings")
        if emb is not None:
            vectors, emb_ids = emb.array("embeddings")
            pos = _require_rows(ids, emb_ids, what="audited ids", where=f"embedded by step '{emb.step_id}'",
                                fix="embed every row that `pred_probs` covers (e.g. no `split` on the embed step)")
            features = np.ascontiguousarray(vectors[pos], dtype=np.float32)
            out["features"] = features
            if n >= 3:
                from curate.index.knn import knn_graph

                out["knn_distances"], out["knn_neighbors"] = knn_graph(features, k=min(cfg.outlier_k, n - 1),
                                                                       progress=ctx.progress)
        maps = ctx.maybe_input("label_maps")
        if maps is not None:
            if not maps.has("multi_labels"):
                raise UsageError(f"step '{maps.step_id}' wrote no `multi_labels`; wire a `relabel` step")
            multi, map_ids = maps.array("multi_labels")
            pos = _require_rows(ids, map_ids, what="audited ids", where=f"annotated by step '{maps.step_id}'",
                                fix="annotate every row that `pred_probs` covers (relabel `split`)")
            out["multi_labels"] = np.asarray(multi)[pos].astype(bool)
        if cfg.categorize.hierarchy:
            out["hierarchy_distance"] = _hierarchy(cfg.categorize.hierarchy, names)
        return out

    # -- outputs --
    def _write_tables(self, ctx: StepContext, ids, names, result, probs) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        issues = result.issues
        n = len(ids)
        rank = np.full(n, -1, dtype=np.int64)
        rank[issues.ranking] = np.arange(len(issues.ranking))
        name_arr = np.asarray(names, dtype=object)
        columns: dict[str, Any] = {
            "id": ids, "label": result.labels, "given": name_arr[result.labels],
            "predicted": result.predicted, "confidence": result.confidence, "score": issues.scores,
            "flagged": issues.mask, "rank": rank, "suggested": issues.suggested_label,
            "suggested_name": name_arr[issues.suggested_label], "category": result.category,
            "severity": result.severity, "multi_label": result.multi_label,
        }
        if result.outlier_score is not None:
            columns.update(outlier_score=result.outlier_score, outlier=result.outlier,
                           nearest_id=ids[result.nearest], nearest_distance=result.nearest_distance,
                           duplicate_conflict=result.duplicate_conflict)
        arrow = pa.table({k: pa.array(np.asarray(v).tolist() if np.asarray(v).dtype == object else v)
                          for k, v in columns.items()})
        digest = ctx.write_file(ISSUES_FILE, lambda p: pq.write_table(arrow, p))
        flagged = arrow.take(pa.array(issues.ranking))
        ctx.write_file("issues.csv", lambda p: _write_csv(flagged, p))
        ctx.write_file("confusion.npy", lambda p: np.save(p, result.confusion))
        ctx.write_file("confident_joint.npy", lambda p: np.save(p, issues.confident_joint))
        ctx.add_output("label_issues", {
            "path": ISSUES_FILE, "fingerprint": digest, "rows": n, "issues": issues.num_issues, "csv": "issues.csv",
            "classes": len(names),
            "aligned_to": {"step": ctx.input("data").step_id,
                           "fingerprint": ctx.input("data").entry("table")["fingerprint"]},
        })

    def _write_report(self, ctx: StepContext, table, rows, ids, names, result, pred: Input, data: Input) -> str:
        from audits import report

        cfg: AuditConfig = ctx.config
        issues = result.issues
        top = issues.ranking[:cfg.top_issues]
        thumbs = _thumbnails(table, rows[top])
        classes = report.focus_classes(result.issue_counts)
        figures = [("Confusion matrix", "confusion.png"), ("Issue rate per class", "class_rates.png"),
                   ("Suggested categories and severities", "categories.png"), ("Top issues", "top_issues.png")]
        summary = result.summary()
        d = REPORT_DIR
        ctx.write_file(f"{d}/confusion.png", lambda p: report.plot_confusion(p, result.confusion, names,
                                                                                classes=classes))
        ctx.write_file(f"{d}/class_rates.png", lambda p: report.plot_class_rates(p, result.per_class_issue_rate,
                                                                                    names, classes=classes))
        ctx.write_file(f"{d}/categories.png", lambda p: report.plot_categories(p, summary["categories"],
                                                                                  summary["severities"]))
        captions = [f"{names[result.labels[i]]} -> {names[issues.suggested_label[i]]}\n{issues.scores[i]:.2g}"
                    for i in top]
        ctx.write_file(f"{d}/top_issues.png", lambda p: report.plot_issue_grid(p, thumbs, captions))
        top_rows = [{"thumbnail": report.png_base64(t), "id": ids[i], "given": names[result.labels[i]],
                     "suggested": names[issues.suggested_label[i]], "score": float(issues.scores[i]),
                     "category": result.category[i], "severity": result.severity[i]} for t, i in zip(thumbs, top)]
        pct = lambda x: f"{x:.2%}"  # noqa: E731
        rows_summary = [
            ("audited rows", summary["rows"]), ("label issues", summary["issues"]),
            ("issue rate", pct(summary["issue_rate"])),
            ("estimated noise rate (confident joint)", pct(summary["estimated_noise_rate"])),
            ("accuracy of pred_probs against the given labels", pct(summary["accuracy"])),
            ("multi-label candidates", summary["multi_label_candidates"]),
            *([("k-NN outliers", summary["outliers"]),
               ("near-duplicate label conflicts", summary["near_duplicate_conflicts"])] if "outliers" in summary
              else []),
            ("class imbalance (largest / smallest class)", round(summary["imbalance_ratio"], 3)),
            ("class balance (normalised entropy)", round(summary["normalized_entropy"], 3)),
            ("rule / score", f"{cfg.filter_by} / {cfg.score}"),
            ("class-pair signal for categories", summary["class_pair_signal"]),
            ("table / pred_probs", f"{data.step_id} / {pred.step_id}"),
        ]
        class_rows = [(names[k], int(result.class_counts[k]), int(result.issue_counts[k]),
                       pct(float(result.per_class_issue_rate[k]))) for k in range(len(names))]
        notes = ["Categories and severities are suggestions from class-pair similarity, confidence, outlier "
                 "and multi-label signals; they cannot tell out-of-vocabulary, spurious-correlation and "
                 "non-prototypical mistakes apart (those depend on the image). Review them in the App."]
        page = report.render_html(title=f"Label audit '{ctx.step_id}'", summary=rows_summary, figures=figures,
                                  top_issues=top_rows, class_rows=class_rows, notes=notes)
        index = f"{d}/index.html"
        digest = ctx.write_file(index, lambda p: p.write_text(page, encoding="utf-8"))
        ctx.add_output("report", {"path": index, "fingerprint": digest})
        return index

    def _write_fiftyone(self, ctx: StepContext, ids, names, result, candidates) -> dict[str, Any] | None:
        """Fields and views in the run's dataset; ``candidates()`` gives the multi-label candidates."""
        from audits.fo_review import clear_outputs, write_audit

        cfg: AuditConfig = ctx.config
        previous = _previous_record(ctx.dir)
        dataset, run_record = _run_dataset(ctx.run_dir, required=False) if cfg.fiftyone else (None, None)
        if dataset is None:
            ctx.write_json(FIFTYONE_RECORD, {"dataset": None})
            return None
        clear_outputs(dataset, previous)
        written = write_audit(dataset, ctx.step_id, ids=ids, result=result, class_names=names,
                              candidates=candidates(), pair_views=cfg.confused_pairs)
        record = {"dataset": dataset.name, "database_uri": run_record.get("database_uri"),
                  "fields": written["fields"], "views": written["views"]}
        ctx.write_json(FIFTYONE_RECORD, record)
        return {"dataset": dataset.name, "fields": written["fields"], "views": written["views"],
                "samples": written["samples"], "missing": written["missing"]}


def _candidates(ids, result, probs, names, multi_labels, threshold: float) -> dict[str, list[tuple[str, float]]]:
    """Sample id -> [(class name, probability)] of each multi-label candidate (for the App)."""
    from audits.audit import candidate_classes

    rows = np.flatnonzero(result.multi_label)
    found = candidate_classes(rows, pred_probs=probs, threshold=threshold, multi_labels=multi_labels)
    return {ids[r]: [(names[c], float(p)) for c, p in zip(classes, p_row)] for r, (classes, p_row) in zip(rows, found)}


def _hierarchy(path: str, names: list[str]) -> np.ndarray:
    from audits.imagenet import ClassHierarchy

    if not all(len(n) == 9 and n[0] == "n" and n[1:].isdigit() for n in names):
        raise UsageError(f"with.categorize.hierarchy: the class names must be ImageNet wnids (e.g. n01440764) to "
                         f"look them up in {path}, got {names[:3]}; drop `hierarchy` to use class similarity")
    try:
        return ClassHierarchy.from_files(Path(path).expanduser(), names).distances
    except ValueError as exc:
        raise UsageError(f"with.categorize.hierarchy: {exc}") from exc


def _thumbnails(table, rows: np.ndarray, *, max_side: int = 96) -> list[np.ndarray]:
    """Decoded images of ``rows``, shrunk to at most ``max_side`` pixels (kept as they are when smaller)."""
    from PIL import Image

    from curate.data import decode_images

    try:
        images = list(decode_images(table, rows))
    except UsageError:  # images of different sizes: decode the few report images one by one
        images = [decode_images(table, [int(row)])[0] for row in rows]
    out = []
    for image in images:
        if max(image.shape[:2]) > max_side:
            pil = Image.fromarray(image)
            pil.thumbnail((max_side, max_side))
            image = np.asarray(pil)
        out.append(image)
    return out


def _write_csv(arrow, path: Path) -> None:
    import pyarrow.csv as pacsv

    pacsv.write_csv(arrow, path)


# ---------------------------------------------------------------- audit_apply


class AuditApplyStep(Step):
    kind = "audit_apply"
    version = 1
    summary = ("Apply an audit and the reviewer's FiftyOne tags: a new table version with issues dropped or "
               "relabeled, and the major-errors slice")
    Config = AuditApplyConfig
    inputs = {
        "data": Role(("table",), help="the table version to clean (usually the audited one)"),
        "audit": Role(("label_issues",), help="an audit step"),
    }
    produces = ("table",)

    @classmethod
    def external_fingerprint(cls, config: AuditApplyConfig, *, run_dir: Path) -> str | None:
        """The review tags in the run's FiftyOne dataset: a changed review reruns the step."""
        if not config.fiftyone:
            return None
        from audits.review import review_tags
        from curate.fo.fields import read_tags, tags_fingerprint

        dataset, _ = _run_dataset(run_dir, required=True)
        if dataset is None:
            return None
        return f"{dataset.name}:{tags_fingerprint(review_tags(read_tags(dataset)))}"

    def run(self, ctx: StepContext) -> None:
        import pyarrow.parquet as pq

        from audits.review import resolve_review, review_tags
        from curate.fo.fields import read_tags, tags_fingerprint

        cfg: AuditApplyConfig = ctx.config
        data, audit = ctx.input("data"), ctx.input("audit")
        table = data.table()
        names = list(table.features["label"].names)
        issues = pq.read_table(audit.dir / audit.entry("label_issues")["path"],
                               columns=["id", "label", "flagged", "suggested", "severity", "score"])
        if audit.entry("label_issues").get("classes", len(names)) != len(names):
            raise UsageError(f"audit '{audit.step_id}' has {audit.entry('label_issues')['classes']} classes but the "
                             f"table of step '{data.step_id}' has {len(names)}; apply it to a version of the "
                             "audited table")
        ids = np.asarray(issues["id"].to_pylist(), dtype=str)
        table_ids = np.asarray(table["id"], dtype=str)
        rows, found = _positions(ids, table_ids)
        if not found.any():
            raise UsageError(f"none of the {len(ids)} ids audited by step '{audit.step_id}' are in the table of step "
                             f"'{data.step_id}'; apply the audit to a version of the audited table")
        if not found.all():
            log.warning("%d audited ids are not in the table of step '%s' (dropped earlier?); they are skipped",
                        int((~found).sum()), data.step_id)
        labels = np.asarray(table["label"], dtype=np.int64)
        audited_labels = issues["label"].to_numpy()
        changed = found & (labels[rows] != audited_labels)
        if changed.any():
            log.warning("%d rows have another label in the table than when audited; their decisions use the "
                        "audited label", int(changed.sum()))

        dataset, run_record = _run_dataset(ctx.run_dir, required=True) if cfg.fiftyone else (None, None)
        tags = read_tags(dataset) if dataset is not None else {}
        try:
            decision = resolve_review(
                ids, audited_labels, issues["flagged"].to_numpy(zero_copy_only=False),
                issues["suggested"].to_numpy(), np.asarray(issues["severity"].to_pylist(), dtype=object), tags,
                class_names=names, action=cfg.action, unreviewed=cfg.unreviewed)
        except ValueError as exc:
            raise UsageError(f"review tags in FiftyOne dataset '{dataset.name if dataset else '-'}': {exc}") from exc

        hit = rows[found]
        drop = np.zeros(len(table), dtype=bool)
        drop[hit] = decision.drop[found]
        new_labels = labels.copy()
        new_labels[hit] = decision.new_label[found]
        status = np.full(len(table), "", dtype=object)
        status[hit[(decision.reviewed & ~decision.confirmed)[found]]] = "kept"
        status[hit[decision.relabeled[found]]] = "relabeled"
        keep = np.flatnonzero(~drop)
        self._save_version(ctx, table, keep, new_labels, labels, status)

        scores = issues["score"].to_numpy()
        major = np.flatnonzero(decision.major & found)
        major_ids = ids[major[np.argsort(scores[major], kind="stable")]]
        ctx.write_json("major_errors.json", {"ids": major_ids.tolist(), "audit": audit.step_id})
        ctx.write_file("decisions.csv", lambda p: _decisions_csv(p, ids, audited_labels, decision, names, tags))
        fo_record = self._write_fiftyone(ctx, dataset, run_record, major_ids)
        flagged = issues["flagged"].to_numpy(zero_copy_only=False)
        ctx.metrics.update({
            "rows": len(keep), "dropped": int(drop.sum()), "relabeled": int((status == "relabeled").sum()),
            "major_errors": len(major_ids), "input_rows": len(table), "action": cfg.action,
            "unreviewed": cfg.unreviewed, "flagged": int(flagged.sum()),
            "reviewed": int(decision.reviewed.sum()), "confirmed": int(decision.confirmed.sum()),
            "unreviewed_flagged": int((flagged & ~decision.reviewed).sum()),
            "ignored_tags": decision.ignored[:20], "tags_outside_audit": len(decision.outside),
            "tags_fingerprint": tags_fingerprint(review_tags(tags)), "fiftyone": fo_record,
        })
        log.info("audit_apply '%s': %d rows -> %d (%d dropped, %d relabeled); %d major errors", ctx.step_id,
                 len(table), len(keep), int(drop.sum()), int((status == "relabeled").sum()), len(major_ids))

    @staticmethod
    def _save_version(ctx: StepContext, table, keep: np.ndarray, new_labels, labels, status) -> None:
        """Write the new table version: kept rows, corrected labels, ``original_label`` and ``review`` columns.

        The rows are rewritten through a scratch file in this step's folder (datasets would
        otherwise put its cache file next to the input table) that is removed afterwards.
        """
        import datasets

        original = np.asarray(table["original_label"], dtype=np.int64) if "original_label" in table.column_names \
            else labels
        features = table.features.copy()
        features["original_label"] = datasets.Value("int64")
        features["review"] = datasets.Value("string")

        def columns(batch_labels, indices):
            idx = keep[np.asarray(indices)]
            return {"label": new_labels[idx], "original_label": original[idx], "review": status[idx].tolist()}

        scratch = ctx.path(".scratch")
        try:
            scratch.mkdir(parents=True, exist_ok=True)
            version = table.select(keep).map(
                columns, batched=True, with_indices=True, input_columns=["label"], features=features,
                cache_file_name=str(scratch / "rows.arrow"), load_from_cache_file=False, desc="new table version")
            ctx.save_table(version)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _write_fiftyone(self, ctx: StepContext, dataset, run_record, major_ids) -> dict[str, Any] | None:
        from audits.fo_review import clear_outputs, save_ids_view
        from curate.fo.fields import field_key

        previous = _previous_record(ctx.dir)
        if dataset is None:
            ctx.write_json(FIFTYONE_RECORD, {"dataset": None})
            return None
        clear_outputs(dataset, previous)
        view = f"{field_key(ctx.step_id)}_major_errors"
        shown = save_ids_view(dataset, view, major_ids)
        ctx.write_json(FIFTYONE_RECORD, {"dataset": dataset.name, "database_uri": run_record.get("database_uri"),
                                         "fields": [], "views": [view]})
        return {"dataset": dataset.name, "views": [view], "samples": shown}


def _decisions_csv(path: Path, ids, labels, decision, names: Sequence[str], tags) -> None:
    """One line per audited row that was flagged, tagged or changed: what happened and why."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    touched = np.flatnonzero(decision.confirmed | decision.reviewed | decision.drop | decision.relabeled
                             | np.isin(ids, list(tags)))
    action = np.where(decision.drop, "drop", np.where(decision.relabeled, "relabel", "keep"))[touched]
    name_arr = np.asarray(names, dtype=object)
    pacsv.write_csv(pa.table({
        "id": ids[touched].tolist(), "given": name_arr[labels[touched]].tolist(), "action": action.tolist(),
        "new_label": name_arr[decision.new_label[touched]].tolist(),
        "confirmed": decision.confirmed[touched], "reviewed": decision.reviewed[touched],
        "severity": [str(s) for s in decision.severity[touched]],
        "tags": [" ".join(tags.get(s, [])) for s in ids[touched].tolist()],
    }), path)


# ---------------------------------------------------------------- library calls for the CLI


def audit_run(run_dir: str | Path, *, overrides: Sequence[str] = (), force: bool = False, progress: bool = True):
    """``curate audit RUN``: run (or with ``force`` rerun) the run's `audit` steps and what they need."""
    from curate.recipes.runner import run_steps_of_kind

    return run_steps_of_kind(run_dir, ["audit"], overrides=overrides, force=force, progress=progress)


def audit_apply_run(run_dir: str | Path, *, overrides: Sequence[str] = (), force: bool = False,
                    progress: bool = True):
    """``curate audit apply RUN``: apply the reviewed audits (`audit_apply` steps) of an existing run.

    Review tags are fingerprinted, so the steps rerun exactly when the review changed.
    """
    from curate.recipes.runner import run_steps_of_kind

    return run_steps_of_kind(run_dir, ["audit_apply"], overrides=overrides, force=force, progress=progress)
