"""The `audit` step: label issues of a table version from out-of-sample ``pred_probs``.

It finds label issues in the rows a `predict` step scored (held-out or out-of-fold), suggests
a label, mistake category and severity for each, scores k-NN outliers and near-duplicate label
conflicts when embeddings are wired, marks multi-label candidates (from a relabel step's
``multi_labels`` when wired), and writes ``issues.parquet`` (every audited row), ``issues.csv``
(flagged rows, worst first), the per-row ``scores``, the confusion matrix and the HTML report
(:func:`audits.report.write_audit_report`). In the run's FiftyOne dataset it shows fields and
saved views for review (:mod:`audits.fo_review`), written from ``issues.parquet``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping

import numpy as np

from audits.chance import check_chance
from audits.label_issues import FILTER_BY, SCORE_METHODS
from curate.artifacts import require_ids
from curate.config import ConfigValueError, option
from curate.errors import UsageError
from audits.report import write_audit_report
from curate.steps.base import Input, Role, Step, StepContext

if TYPE_CHECKING:  # pragma: no cover
    from audits.imagenet import ClassHierarchy

log = logging.getLogger(__name__)

ISSUES_FILE = "issues.parquet"


@dataclass(frozen=True, kw_only=True)
class CategorizeOptions:
    """How flagged rows get a suggested mistake category and severity: with a hierarchy, the model fitted to
    human-labelled ImageNet mistakes (audits.mistake_model) or the rules; without, the rules
    (audits.mistakes.categorize, uncalibrated)."""

    hierarchy: str | None = option(
        None, help="is-a edges file ('parent child' wnid lines, e.g. wordnet.is_a.txt) when the class names are "
                   "ImageNet wnids; null: class similarity from embeddings (else pred_probs) centroids", path=True)
    method: Literal["fitted", "rules"] = option(
        "fitted", help="with a hierarchy: `fitted` (logistic model on WordNet distance and common-ancestor depth, "
                       "agreement measured on 627 human-labelled mistakes) or `rules` (the cut-offs below, "
                       "uncalibrated); without a hierarchy the rules always apply")
    near_distance: int = option(4, ge=0, help="hierarchy rules: a class pair this close is near (siblings are 2)")
    far_distance: int = option(7, ge=1, help="hierarchy rules: a class pair at least this far apart is far")
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



class AuditStep(Step):
    kind = "audit"
    version = 4
    summary = ("Find label issues (confident learning) with suggested labels, mistake categories and severities, "
               "outliers and multi-label candidates; HTML report; review fields and views in FiftyOne")
    Config = AuditConfig
    inputs = {
        "data": Role(("table",), help="the table version whose labels are audited"),
        "pred_probs": Role(("pred_probs",), help="out-of-sample probabilities: held out, or `predict` with folds"),
        "embeddings": Role(("embeddings",), optional=True, help="an embed step: k-NN outliers, near-duplicate "
                                                                 "conflicts and class similarity"),
        "multi_labels": Role(("multi_labels",), optional=True, help="a relabel step: its multi-labels mark "
                                                                     "multi-label candidates"),
    }
    produces = ("label_issues", "scores", "report")

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        return f"{metrics['issues']:,} issues ({metrics['issue_rate']:.1%} of {metrics['rows']:,} rows)"

    @classmethod
    def external_fingerprint(cls, config: AuditConfig, *, run_dir: Path) -> str | None:
        """The hierarchy file, when one is named (it lives outside the run)."""
        if not config.categorize.hierarchy:
            return None
        stamp = _file_stamp(config.categorize.hierarchy)
        return hashlib.sha256(json.dumps(stamp).encode()).hexdigest()

    def run(self, ctx: StepContext) -> None:
        from audits.audit import AuditOptions, audit_dataset
        from audits.mistakes import Thresholds

        cfg: AuditConfig = ctx.config
        data, pred = ctx.input("data"), ctx.input("pred_probs")
        table = data.table()
        names = list(table.features["label"].names)
        probs, ids = pred.array("pred_probs", mmap=True)
        ids = np.asarray(ids, dtype=str)
        rows = require_ids(ids, table["id"], what=f"`pred_probs` ids of step '{pred.step_id}'",
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

        chance = check_chance(labels, probs)
        if chance.near_chance:
            log.warning("audit '%s': %s (step '%s')", ctx.step_id, chance.message(), pred.step_id)
        candidates = _candidates(result, probs, names, signals.get("multi_labels"), cfg.multi_label_threshold)
        self._write_tables(ctx, ids, names, result, candidates)
        ctx.save_array("scores", result.issues.scores.astype(np.float32), ids, table=data,
                       split=pred.entry("pred_probs").get("aligned_to", {}).get("split"))
        report = write_audit_report(ctx, table=table, rows=rows, ids=ids, names=names, result=result,
                                    sources=f"{data.step_id} / {pred.step_id}",
                                    warnings=[chance.message()] if chance.near_chance else [])
        summary = result.summary()
        per_class = result.per_class_issue_rate
        ctx.metrics.update({
            "issues": summary["issues"], "issue_rate": round(summary["issue_rate"], 4),
            "report": str(ctx.dir / report), "rows": summary["rows"],
            "estimated_noise_rate": round(summary["estimated_noise_rate"], 4),
            "accuracy": round(summary["accuracy"], 4),
            "multi_label_candidates": summary["multi_label_candidates"],
            "categories": summary["categories"], "severities": summary["severities"],
            "class_pair_signal": summary["class_pair_signal"], "categorizer": summary["categorizer"],
            "per_class_issue_rate": {n: round(float(r), 4) for n, r in zip(names, per_class)},
            "imbalance_ratio": round(summary["imbalance_ratio"], 4),
            "normalized_entropy": round(summary["normalized_entropy"], 4),
            "minority_classes": [names[i] for i in result.balance.minority],
            "confused_pairs": [[names[a], names[b], int(n)] for a, b, n in result.confused_pairs[:cfg.confused_pairs]],
            **chance.metrics(),
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
            pos = require_ids(ids, emb_ids, what="audited ids", where=f"embedded by step '{emb.step_id}'",
                              fix="embed every row that `pred_probs` covers (e.g. no `split` on the embed step)")
            features = np.ascontiguousarray(vectors[pos], dtype=np.float32)
            out["features"] = features
            if n >= 3:
                from curate.index.knn import knn_graph

                out["knn_distances"], out["knn_neighbors"] = knn_graph(features, k=min(cfg.outlier_k, n - 1),
                                                                       progress=ctx.progress)
        maps = ctx.maybe_input("multi_labels")
        if maps is not None:
            multi, map_ids = maps.array("multi_labels")
            pos = require_ids(ids, map_ids, what="audited ids", where=f"annotated by step '{maps.step_id}'",
                              fix="annotate every row that `pred_probs` covers (relabel `split`)")
            out["multi_labels"] = np.asarray(multi)[pos].astype(bool)
        if cfg.categorize.hierarchy:
            hierarchy = _hierarchy(cfg.categorize.hierarchy, names)
            out["hierarchy_distance"] = hierarchy.distances
            if cfg.categorize.method == "fitted":
                out["ancestor_depth"] = hierarchy.ancestor_depths
        return out

    # -- outputs --
    def _write_tables(self, ctx: StepContext, ids, names, result, candidates) -> None:
        """``issues.parquet`` holds everything the report and the App show, so both are rebuilt from it."""
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
            "candidates": candidates[0], "candidate_probs": candidates[1],
        }
        if result.outlier_score is not None:
            columns.update(outlier_score=result.outlier_score, outlier=result.outlier,
                           nearest_id=ids[result.nearest], nearest_distance=result.nearest_distance,
                           duplicate_conflict=result.duplicate_conflict)
        arrow = pa.table({k: pa.array(v if isinstance(v, list) else np.asarray(v).tolist()
                                      if np.asarray(v).dtype == object else v)
                          for k, v in columns.items()})
        digest = ctx.write_file(ISSUES_FILE, lambda p: pq.write_table(arrow, p))
        flagged = arrow.take(pa.array(issues.ranking)).drop_columns(["candidates", "candidate_probs"])
        flagged = flagged.append_column("candidate_classes", pa.array(
            [" ".join(candidates[0][i]) for i in issues.ranking], type=pa.string()))
        ctx.write_file("issues.csv", lambda p: _write_csv(flagged, p))
        ctx.write_file("confusion.npy", lambda p: np.save(p, result.confusion))
        ctx.write_file("confident_joint.npy", lambda p: np.save(p, issues.confident_joint))
        ctx.add_output("label_issues", {
            "path": ISSUES_FILE, "fingerprint": digest, "rows": n, "issues": issues.num_issues, "csv": "issues.csv",
            "classes": len(names),
            "aligned_to": {"step": ctx.input("data").step_id,
                           "fingerprint": ctx.input("data").entry("table")["fingerprint"]},
        })

    @classmethod
    def show_in_fiftyone(cls, dataset, step: Input) -> dict[str, Any]:
        """Review fields and saved views from ``issues.parquet`` (see :mod:`audits.fo_review`)."""
        import pyarrow.parquet as pq

        from audits.fo_review import write_audit

        issues = pq.read_table(step.dir / step.entry("label_issues")["path"])
        pairs = [(a, b) for a, b, _ in step.metrics.get("confused_pairs", [])]
        return write_audit(dataset, step.step_id, issues=issues, confused_pairs=pairs,
                           categorizer=step.metrics.get("categorizer", "rules"))


def _candidates(result, probs, names, multi_labels, threshold: float) -> tuple[list, list]:
    """Per audited row, the class names and probabilities of its multi-label candidates (empty lists for
    rows that are not candidates), most probable first."""
    from audits.audit import candidate_classes

    classes: list[list[str]] = [[] for _ in range(result.num_rows)]
    probabilities: list[list[float]] = [[] for _ in range(result.num_rows)]
    rows = np.flatnonzero(result.multi_label)
    found = candidate_classes(rows, pred_probs=probs, threshold=threshold, multi_labels=multi_labels)
    for r, (cls, p_row) in zip(rows, found):
        classes[r] = [names[c] for c in cls]
        probabilities[r] = [float(p) for p in p_row]
    return classes, probabilities


def _hierarchy(path: str, names: list[str]) -> "ClassHierarchy":
    from audits.imagenet import ClassHierarchy

    if not all(len(n) == 9 and n[0] == "n" and n[1:].isdigit() for n in names):
        raise UsageError(f"with.categorize.hierarchy: the class names must be ImageNet wnids (e.g. n01440764) to "
                         f"look them up in {path}, got {names[:3]}; drop `hierarchy` to use class similarity")
    try:
        return ClassHierarchy.from_files(Path(path).expanduser(), names)
    except ValueError as exc:
        raise UsageError(f"with.categorize.hierarchy: {exc}") from exc


def _write_csv(arrow, path: Path) -> None:
    import pyarrow.csv as pacsv

    pacsv.write_csv(arrow, path)


def _file_stamp(path: str) -> list[Any]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"with.categorize.hierarchy: file {p} does not exist; pass wordnet.is_a.txt "
                         "(lines 'parent_wnid child_wnid')")
    stat = p.stat()
    return [str(p.resolve()), stat.st_size, stat.st_mtime_ns]


