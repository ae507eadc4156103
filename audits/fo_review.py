"""The review loop in the FiftyOne App: an audit's fields and saved views, and the reviewer's tags.

An audit step ``<key>`` (its step id as a field key) owns, on the samples it audited:

- ``<key>_score`` (label quality, lower = more suspicious), ``<key>_issue`` (flagged),
  ``<key>_outlier`` (k-NN outlier score, with embeddings);
- on flagged samples: ``<key>_suggested`` (a ``Classification`` with the suggested label and its
  probability), ``<key>_suggested_category``, ``<key>_suggested_severity`` (suggestions: the
  field description says how far they agree with human labels,
  :func:`audits.mistake_model.suggestion_agreement`);
- on multi-label candidates: ``<key>_candidates`` (``Classifications``, one per candidate class);

and the saved views ``<key>_label_issues`` (flagged, by score ascending), ``<key>_major_mistakes``,
``<key>_multi_label_candidates`` and ``<key>_confused_<a>_<b>`` for the most confused class
pairs, written from the step's ``issues.parquet``. Every write is one bulk ``set_values`` per field;
:func:`curate.fo.runs.show_step` first deletes what the previous run recorded, so the dataset
always matches the latest audit. Reviewers answer with sample tags
(vocabulary in :mod:`audits.review`) that ``audit_apply`` reads back.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from audits.mistake_model import suggestion_agreement
from curate.fo.database import connect
from curate.fo.fields import GROUND_TRUTH, ID_FIELD, field_key, set_field_values
from curate.fo.views import save_view, select_ids

if TYPE_CHECKING:  # pragma: no cover
    import fiftyone as fo
    import pyarrow as pa

log = logging.getLogger(__name__)

VIEW_SUFFIXES = ("label_issues", "major_mistakes", "multi_label_candidates")


def _slug(name: str) -> str:
    return re.sub(r"\W+", "_", str(name)).strip("_") or "class"


def _known(dataset: "fo.Dataset", ids: np.ndarray) -> np.ndarray:
    """Mask of ``ids`` that are samples of ``dataset``."""
    return np.isin(ids, np.asarray(dataset.values(ID_FIELD), dtype=str))


def write_audit(
    dataset: "fo.Dataset",
    step_id: str,
    *,
    issues: "pa.Table",
    confused_pairs: Sequence[tuple[str, str]] = (),
    categorizer: str = "rules",
) -> dict[str, Any]:
    """Write an audit's fields and views from its ``issues.parquet`` table; returns
    ``{"fields", "views", "samples", "missing"}``.

    Rows whose ids are not in the dataset are skipped (counted in ``missing``);
    ``confused_pairs``: class-name pairs that get a ``<key>_confused_<a>_<b>`` view;
    ``categorizer``: what suggested the categories and severities (``fitted`` or ``rules``, the
    audit's metric), described on their fields.
    """
    fo = connect()
    from fiftyone import ViewField as F

    key = field_key(step_id)
    col = {name: issues.column(name).to_pylist() for name in issues.column_names}
    ids = np.asarray(col["id"], dtype=str)
    known = _known(dataset, ids)
    missing = int((~known).sum())
    if not known.any():
        log.warning("none of the %d audited ids are samples of FiftyOne dataset '%s'; mirror the audited table "
                    "with the `fiftyone` step to review them in the App", len(ids), dataset.name)
        return {"fields": [], "views": [], "samples": 0, "missing": missing}
    rows = np.flatnonzero(known)
    flagged_mask = np.asarray(col["flagged"], dtype=bool)
    flagged = rows[flagged_mask[rows]]
    sid = ids.tolist()
    f = {name: f"{key}_{name}" for name in ("score", "issue", "suggested", "suggested_category",
                                              "suggested_severity", "outlier", "candidates")}
    written = [f["score"], f["issue"]]
    set_field_values(dataset, f["score"], {sid[i]: float(col["score"][i]) for i in rows})
    set_field_values(dataset, f["issue"], {sid[i]: bool(flagged_mask[i]) for i in rows})
    if "outlier_score" in col:
        set_field_values(dataset, f["outlier"], {sid[i]: float(col["outlier_score"][i]) for i in rows})
        written.append(f["outlier"])
    if len(flagged):
        set_field_values(dataset, f["suggested"], {
            sid[i]: fo.Classification(label=str(col["suggested_name"][i]), confidence=float(col["confidence"][i]))
            for i in flagged})
        agreement = suggestion_agreement(categorizer)
        for name in ("category", "severity"):
            field = f[f"suggested_{name}"]
            set_field_values(dataset, field, {sid[i]: str(col[name][i]) for i in flagged})
            schema_field = dataset.get_field(field)
            schema_field.description = f"suggested {name}; {agreement[name]}"
            schema_field.save()
        written += [f["suggested"], f["suggested_category"], f["suggested_severity"]]
    shown = [i for i in rows if col["candidates"][i]]
    if shown:
        set_field_values(dataset, f["candidates"], {
            sid[i]: fo.Classifications(classifications=[
                fo.Classification(label=str(c), confidence=float(p))
                for c, p in zip(col["candidates"][i], col["candidate_probs"][i])])
            for i in shown})
        written.append(f["candidates"])

    issue_view = dataset.match(F(f["issue"]) == True).sort_by(f["score"])  # noqa: E712 (a MongoDB expression)
    views = {f"{key}_label_issues": issue_view,
             f"{key}_major_mistakes": issue_view.match(F(f["suggested_severity"]) == "major"),
             f"{key}_multi_label_candidates": (dataset.exists(f["candidates"]).sort_by(f["score"]) if shown
                                               else dataset.limit(0))}
    if GROUND_TRUTH in dataset.get_field_schema():
        given, sugg = F(f"{GROUND_TRUTH}.label"), F(f"{f['suggested']}.label")
        for na, nb in confused_pairs:
            views[f"{key}_confused_{_slug(na)}_{_slug(nb)}"] = issue_view.match(
                ((given == na) & (sugg == nb)) | ((given == nb) & (sugg == na)))
    for name, view in views.items():
        save_view(dataset, name, view)
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
