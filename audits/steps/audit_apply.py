"""The `audit_apply` step: an audit and the reviewer's FiftyOne tags made into a new table version.

It reads the reviewers' tags back from the run's dataset (vocabulary in :mod:`audits.review`;
they are fingerprinted, so a changed review reruns it), and writes a new table version
without the dropped rows and with the corrected labels, plus the "major errors" slice of
confirmed major mistakes (ids file and saved view). The input table is never changed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from audits.review import ACTIONS, UNREVIEWED
from curate.config import option
from curate.errors import UsageError
from curate.steps.base import Input, Role, Step, StepContext

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class AuditApplyConfig:
    """Options of the `audit_apply` step (tag vocabulary in audits.review)."""

    action: Literal[ACTIONS] = option(  # type: ignore[valid-type]
        "drop", help="what a `confirmed` tag does: drop the sample or relabel it to the suggested label")
    unreviewed: Literal[UNREVIEWED] = option(  # type: ignore[valid-type]
        "keep", help="flagged samples without a review tag: keep them, or apply `action` as if confirmed")
    fiftyone: bool = option(True, help="read review tags from the run's FiftyOne dataset and save the "
                                       "major-errors view there")



class AuditApplyStep(Step):
    kind = "audit_apply"
    version = 2
    summary = ("Apply an audit and the reviewer's FiftyOne tags: a new table version with issues dropped or "
               "relabeled, and the major-errors slice")
    Config = AuditApplyConfig
    inputs = {
        "data": Role(("table",), help="the table version to clean (usually the audited one)"),
        "audit": Role(("label_issues",), help="an audit step"),
    }
    produces = ("table",)

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        return (f"{metrics['input_rows']:,} -> {metrics['rows']:,} rows ({metrics['dropped']:,} dropped, "
                f"{metrics['relabeled']:,} relabeled)")

    @classmethod
    def external_fingerprint(cls, config: AuditApplyConfig, *, run_dir: Path) -> str | None:
        """The review tags in the run's FiftyOne dataset: a changed review reruns the step."""
        if not config.fiftyone:
            return None
        from audits.review import review_tags
        from curate.fo.fields import read_tags, tags_fingerprint

        from curate.fo.runs import open_run_dataset

        run = open_run_dataset(run_dir, required=True)
        if run is None:
            return None
        return f"{run.dataset.name}:{tags_fingerprint(review_tags(read_tags(run.dataset)))}"

    def run(self, ctx: StepContext) -> None:
        import pyarrow.parquet as pq

        from audits.review import resolve_review, review_tags
        from curate.artifacts import locate_ids
        from curate.fo.fields import read_tags, tags_fingerprint
        from curate.fo.runs import open_run_dataset

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
        rows, found = locate_ids(ids, table["id"])
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

        run = open_run_dataset(ctx.run_dir, required=True) if cfg.fiftyone else None
        dataset = run.dataset if run is not None else None
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
        flagged = issues["flagged"].to_numpy(zero_copy_only=False)
        ctx.metrics.update({
            "rows": len(keep), "dropped": int(drop.sum()), "relabeled": int((status == "relabeled").sum()),
            "major_errors": len(major_ids), "input_rows": len(table), "action": cfg.action,
            "unreviewed": cfg.unreviewed, "flagged": int(flagged.sum()),
            "reviewed": int(decision.reviewed.sum()), "confirmed": int(decision.confirmed.sum()),
            "unreviewed_flagged": int((flagged & ~decision.reviewed).sum()),
            "ignored_tags": decision.ignored[:20], "tags_outside_audit": len(decision.outside),
            "tags_fingerprint": tags_fingerprint(review_tags(tags)),
        })
        log.info("audit_apply '%s': %d rows -> %d (%d dropped, %d relabeled); %d major errors", ctx.step_id,
                 len(table), len(keep), int(drop.sum()), int((status == "relabeled").sum()), len(major_ids))

    @staticmethod
    def _save_version(ctx: StepContext, table, keep: np.ndarray, new_labels, labels, status) -> None:
        """Write the new table version: kept rows, corrected labels, ``original_label`` and ``review`` columns."""
        import datasets

        from curate.data.table import new_table_version

        original = np.asarray(table["original_label"], dtype=np.int64) if "original_label" in table.column_names \
            else labels
        columns = {"label": (new_labels[keep], table.features["label"]),
                   "original_label": (original[keep], datasets.Value("int64")),
                   "review": (status[keep].astype(str), datasets.Value("string"))}
        with ctx.scratch() as scratch:
            ctx.save_table(new_table_version(table, keep=keep, columns=columns, scratch=scratch,
                                             where=f"audit_apply step '{ctx.step_id}'"))

    @classmethod
    def show_in_fiftyone(cls, dataset, step: Input) -> dict[str, Any]:
        """The saved view ``<key>_major_errors``: the confirmed major mistakes, worst first."""
        import json

        from audits.fo_review import save_ids_view
        from curate.fo.fields import field_key

        major_ids = json.loads((step.dir / "major_errors.json").read_text())["ids"]
        view = f"{field_key(step.step_id)}_major_errors"
        return {"views": [view], "samples": save_ids_view(dataset, view, major_ids)}


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


