"""The review loop in the FiftyOne App: an audit's fields and saved views, and the reviewer's tags.

An audit step ``<key>`` (its step id as a field key) owns, on the samples it audited:

- ``<key>_score`` (label quality, lower = more suspicious), ``<key>_issue`` (flagged),
  ``<key>_outlier`` (k-NN outlier score, with embeddings);
- on flagged samples: ``<key>_suggested`` (a ``Classification`` with the suggested label and its
  probability), ``<key>_category``, ``<key>_severity``;
- on multi-label candidates: ``<key>_candidates`` (``Classifications``, one per candidate class);

and the saved views ``<key>_label_issues`` (flagged, by score ascending), ``<key>_major_mistakes``,
``<key>_multi_label_candidates`` and ``<key>_confused_<a>_<b>`` for the most confused class
pairs. Every write is one bulk ``set_values`` per field; a rerun first deletes what the previous
run recorded, so the dataset always matches the latest audit. Reviewers answer with sample tags
(vocabulary in :mod:`audits.review`) that ``audit_apply`` reads back.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from audits.audit import AuditResult
from curate.fo.database import connect
from curate.fo.fields import GROUND_TRUTH, ID_FIELD, field_key, set_field_values
from curate.fo.views import save_view, select_ids

if TYPE_CHECKING:  # pragma: no cover
    import fiftyone as fo

log = logging.getLogger(__name__)

VIEW_SUFFIXES = ("label_issues", "major_mistakes", "multi_label_candidates")


def _slug(name: str) -> str:
    return re.sub(r"\W+", "_", str(name)).strip("_") or "class"


def clear_outputs(dataset: "fo.Dataset", record: Mapping[str, Any] | None) -> None:
    """Delete the fields and saved views an earlier run recorded (when it wrote to this dataset)."""
    if not record or record.get("dataset") != dataset.name:
        return
    schema = dataset.get_field_schema()
    for name in record.get("fields", []):
        if name in schema:
            dataset.delete_sample_field(name)
    for name in record.get("views", []):
        if dataset.has_saved_view(name):
            dataset.delete_saved_view(name)


def _known(dataset: "fo.Dataset", ids: np.ndarray) -> np.ndarray:
    """Mask of ``ids`` that are samples of ``dataset``."""
    return np.isin(ids, np.asarray(dataset.values(ID_FIELD), dtype=str))


def write_audit(
    dataset: "fo.Dataset",
    step_id: str,
    *,
    ids: np.ndarray,
    result: AuditResult,
    class_names: Sequence[str],
    candidates: Mapping[str, Sequence[tuple[str, float]]],
    pair_views: int,
) -> dict[str, Any]:
    """Write an audit's fields and views; returns ``{"fields", "views", "samples", "missing"}``.

    ``ids`` (N,) are the audited sample ids in ``result``'s row order; ids that are not in the
    dataset are skipped (counted in ``missing``). ``candidates``: sample id -> [(class, prob)].
    """
    fo = connect()
    from fiftyone import ViewField as F

    key = field_key(step_id)
    ids = np.asarray(ids, dtype=str)
    known = _known(dataset, ids)
    if not known.any():
        raise ValueError(f"none of the {len(ids)} audited ids are samples of FiftyOne dataset '{dataset.name}'; "
                         "mirror the audited table with the `fiftyone` step")
    names = np.asarray(list(class_names), dtype=object)
    rows = np.flatnonzero(known)
    flagged = rows[result.issues.mask[rows]]
    sid = ids.tolist()
    f = {name: f"{key}_{name}" for name in ("score", "issue", "suggested", "category", "severity", "outlier",
                                              "candidates")}
    written = [f["score"], f["issue"]]
    set_field_values(dataset, f["score"], {sid[i]: float(result.issues.scores[i]) for i in rows})
    set_field_values(dataset, f["issue"], {sid[i]: bool(result.issues.mask[i]) for i in rows})
    if result.outlier_score is not None:
        set_field_values(dataset, f["outlier"], {sid[i]: float(result.outlier_score[i]) for i in rows})
        written.append(f["outlier"])
    if len(flagged):
        suggested = result.issues.suggested_label
        set_field_values(dataset, f["suggested"], {
            sid[i]: fo.Classification(label=str(names[suggested[i]]), confidence=float(result.confidence[i]))
            for i in flagged})
        set_field_values(dataset, f["category"], {sid[i]: str(result.category[i]) for i in flagged})
        set_field_values(dataset, f["severity"], {sid[i]: str(result.severity[i]) for i in flagged})
        written += [f["suggested"], f["category"], f["severity"]]
    audited = set(ids[rows].tolist())
    shown = {s: c for s, c in candidates.items() if s in audited}
    if shown:
        set_field_values(dataset, f["candidates"], {
            s: fo.Classifications(classifications=[fo.Classification(label=str(c), confidence=float(p))
                                                   for c, p in classes])
            for s, classes in shown.items()})
        written.append(f["candidates"])

    issues = dataset.match(F(f["issue"]) == True).sort_by(f["score"])  # noqa: E712 (a MongoDB expression)
    views = {f"{key}_label_issues": issues,
             f"{key}_major_mistakes": issues.match(F(f["severity"]) == "major"),
             f"{key}_multi_label_candidates": (dataset.exists(f["candidates"]).sort_by(f["score"]) if shown
                                               else dataset.limit(0))}
    if GROUND_TRUTH in dataset.get_field_schema():
        given, sugg = F(f"{GROUND_TRUTH}.label"), F(f"{f['suggested']}.label")
        for a, b, _ in result.confused_pairs[:pair_views]:
            na, nb = str(names[a]), str(names[b])
            views[f"{key}_confused_{_slug(na)}_{_slug(nb)}"] = issues.match(
                ((given == na) & (sugg == nb)) | ((given == nb) & (sugg == na)))
    for name, view in views.items():
        save_view(dataset, name, view)
    missing = int((~known).sum())
    if missing:
        log.warning("%d of %d audited ids are not samples of FiftyOne dataset '%s'; they are not shown",
                    missing, len(ids), dataset.name)
    return {"fields": written, "views": list(views), "samples": int(known.sum()), "missing": missing}


def save_ids_view(dataset: "fo.Dataset", name: str, ids: Sequence[str] | np.ndarray) -> int:
    """Save the samples named by ``ids`` (in that order) as view ``name``; returns how many exist."""
    ids = np.asarray(ids, dtype=str)
    ids = ids[_known(dataset, ids)] if len(ids) else ids
    save_view(dataset, name, select_ids(dataset, ids))
    return len(ids)
