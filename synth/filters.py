"""Filters and provenance shared by every synth method, and the new table version they produce.

A generated sample is kept when (1) the filter classifier (one that did not guide, see
:mod:`synth.scorers`) gives its target class at least ``min_confidence`` and (2) it is not a
near copy of a real training image: its cosine distance (``1 - cos``, on a registry model's
features) to the nearest real row, found with a FAISS k-NN search, is at least
``min_copy_distance``. Kept samples become rows ``synth:<step>:<n>`` (``n`` is the sample index
that also derives its seed) with ``set: synthetic`` and provenance columns, appended to a copy of
the input table; the input table is never modified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from curate.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import datasets

KEPT, LOW_CONFIDENCE, NEAR_COPY = "kept", "low_confidence", "near_copy"

PROVENANCE = {
    "synth_method": "string",
    "synth_step": "string",
    "synth_model": "string",
    "synth_seed": "int64",
    "synth_guidance_scale": "float32",
    "synth_filter_model": "string",
    "synth_self_scored": "bool",
    "synth_confidence": "float32",
    "synth_copy_distance": "float32",
    "synth_nearest": "string",
}
"""Provenance columns and their types; real rows hold nulls. The class is the row's ``label``;
``synth_confidence`` is the target-class probability of ``synth_filter_model``, which is the guiding
classifier itself only when ``synth_self_scored`` (see :mod:`synth.scorers`)."""


@dataclass
class FilterResult:
    """Per generated sample: ``keep`` (N,), ``reason`` (N,) str, target-class ``confidence`` (N,),
    ``copy_distance`` (N,) to the nearest real row and that row's sample id ``nearest`` (N,)."""

    keep: np.ndarray
    reason: np.ndarray
    confidence: np.ndarray
    copy_distance: np.ndarray
    nearest: np.ndarray

    def counts(self) -> dict[str, int]:
        return {r: int((self.reason == r).sum()) for r in (KEPT, LOW_CONFIDENCE, NEAR_COPY)}


def copy_distances(features: np.ndarray, real_features: np.ndarray, *,
                   real_ids: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distance of each row of ``features (N, D)`` to its nearest row of ``real_features (M, D)``,
    and that row's id (or position), through an exact FAISS index."""
    from curate.index import build_index

    index = build_index(real_features, kind="flat", metric="cosine", ids=real_ids)
    dist, nearest = index.search(features, 1)
    return dist[:, 0].astype(np.float32), np.asarray(nearest[:, 0])


def filter_samples(
    pred_probs: np.ndarray,
    labels: np.ndarray,
    features: np.ndarray,
    real_features: np.ndarray,
    *,
    real_ids: Sequence[str] | None = None,
    min_confidence: float = 0.5,
    min_copy_distance: float = 0.02,
) -> FilterResult:
    """Decide which generated samples to keep (confidence first, then copies).

    ``pred_probs (N, K)`` of the filter classifier, target ``labels (N,)``, ``features (N, D)`` of the
    samples and ``real_features (M, D)`` of the real training rows on the same feature model.
    """
    pred_probs, labels = np.asarray(pred_probs), np.asarray(labels)
    n = len(labels)
    if pred_probs.ndim != 2 or len(pred_probs) != n:
        raise UsageError(f"`pred_probs` must be (N, K) with N = {n} rows like `labels`, got shape {pred_probs.shape}")
    if len(features) != n:
        raise UsageError(f"`features` has {len(features)} rows but `labels` has {n}")
    if not 0 <= min_confidence <= 1:
        raise UsageError(f"`min_confidence` must lie in [0, 1], got {min_confidence}")
    confidence = pred_probs[np.arange(n), labels].astype(np.float32)
    distance, nearest = copy_distances(features, real_features, real_ids=real_ids)
    reason = np.full(n, KEPT, dtype=object)
    reason[distance < min_copy_distance] = NEAR_COPY
    reason[confidence < min_confidence] = LOW_CONFIDENCE
    return FilterResult(keep=reason == KEPT, reason=reason.astype(str), confidence=confidence,
                        copy_distance=distance, nearest=np.asarray(nearest).astype(str))


def synthetic_rows(
    *,
    images: np.ndarray,
    labels: np.ndarray,
    numbers: np.ndarray,
    step_id: str,
    class_names: Sequence[str],
    split: str,
    provenance: Mapping[str, Any],
) -> "datasets.Dataset":
    """A table of generated rows: ids ``synth:<step_id>:<n>``, ``set: synthetic`` and the provenance columns.

    ``provenance`` maps each name of :data:`PROVENANCE` to one value per row, or one value for all rows.
    """
    import datasets

    from curate.data import make_table

    missing = sorted(set(PROVENANCE) - set(provenance))
    unknown = sorted(set(provenance) - set(PROVENANCE))
    if missing or unknown:
        raise UsageError(f"`provenance` must give exactly the columns {', '.join(PROVENANCE)}; "
                         f"missing {missing or 'none'}, unknown {unknown or 'none'}")
    n = len(labels)
    ids = [f"synth:{step_id}:{int(i)}" for i in np.asarray(numbers)]
    rows = make_table(ids=ids, images=images, labels=np.asarray(labels), class_names=class_names, splits=split,
                      set_="synthetic")
    for name, dtype in PROVENANCE.items():
        value = provenance[name]
        values = list(np.asarray(value).tolist()) if np.ndim(value) else [value] * n
        if len(values) != n:
            raise UsageError(f"provenance `{name}` has {len(values)} values but there are {n} rows")
        rows = rows.add_column(name, values, feature=datasets.Value(dtype))
    return rows


def append_rows(table: "datasets.Dataset", rows: "datasets.Dataset") -> "datasets.Dataset":
    """A NEW table version: ``table`` then ``rows``; columns one side lacks are filled with nulls."""
    import datasets

    if table.features["label"].names != rows.features["label"].names:
        raise UsageError("the synthetic rows' classes differ from the table's; generate with the table's class names")
    clash = set(table["id"]) & set(rows["id"])
    if clash:
        raise UsageError(f"{len(clash)} synthetic ids already exist in the table (e.g. {sorted(clash)[0]!r}); "
                         "give the synth step a new id")
    table, rows = _with_columns(table, rows.features), _with_columns(rows, table.features)
    rows = rows.select_columns(table.column_names).cast(table.features)
    return datasets.concatenate_datasets([table, rows])


def _with_columns(table: "datasets.Dataset", features: "datasets.Features") -> "datasets.Dataset":
    for name, feature in features.items():
        if name not in table.column_names:
            table = table.add_column(name, [None] * len(table), feature=feature)
    return table
