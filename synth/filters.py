"""Filters shared by every synth method, and the rows of the samples they keep.

A generated sample is kept when (1) the filter classifier (one that did not guide, see
:mod:`synth.scorers`) gives its target class at least ``min_confidence`` and (2) it is not a
near copy of a real training image: its cosine distance (``1 - cos``, on a registry model's
features) to the nearest real row, found with a FAISS k-NN search, is at least
``min_copy_distance``. Kept samples become rows ``synth:<step>:<n>`` (``n`` is the sample index
that also derives its seed) with ``set: synthetic``, the provenance every producer writes
(:data:`curate.data.table.PROVENANCE`: method, parameters, source step, seed) and the per-row
:data:`SAMPLE_COLUMNS`; the step appends them to a new table version
(:func:`curate.data.table.new_table_version`), never to the input table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from curate.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import datasets

KEPT, LOW_CONFIDENCE, NEAR_COPY = "kept", "low_confidence", "near_copy"

SAMPLE_COLUMNS = {
    "guidance_scale": "float32",
    "filter_confidence": "float32",
    "copy_distance": "float32",
    "nearest_real": "string",
    "source_id": "string",
    "source_b_id": "string",
    "slerp_t": "float32",
}
"""Per-row columns of synthetic rows besides the provenance; real rows hold nulls. ``guidance_scale`` is
the method's own scale (classifier guidance's ``s``, classifier-free guidance's ``w``). ``filter_confidence``
is the target-class probability of the filter named in the ``parameters`` (``filter_model``), which is
the guiding classifier itself only when ``filter_scoring`` is ``self_scored`` (see :mod:`synth.scorers`);
``nearest_real`` is the id of the closest real training row at ``copy_distance``. ``source_id`` is the real
row whose embedding conditioned a sample (``ssl_conditioned``), ``source_b_id`` the second row of an
interpolation at ``slerp_t``; null for methods that condition on no image."""
METHOD_COLUMNS = ("source_id", "source_b_id", "slerp_t")
"""The :data:`SAMPLE_COLUMNS` a method fills itself (``Generated.columns``); the step fills the others."""


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

    def subset(self, rows: np.ndarray) -> "FilterResult":
        """The result of the samples ``rows`` (a mask or positions), e.g. ``subset(keep)``."""
        return FilterResult(*(np.asarray(getattr(self, f.name))[rows] for f in dataclasses.fields(self)))


def copy_distances(features: np.ndarray, real_features: np.ndarray, *,
                   real_ids: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distance of each row of ``features (N, D)`` to its nearest row of ``real_features (M, D)``,
    and that row's id (or position), through an exact FAISS index."""
    from curate.index import build_index

    index = build_index(real_features, kind="flat", metric="cosine", ids=real_ids)
    dist, nearest = index.search(features, 1)
    return dist[:, 0].astype(np.float32), np.asarray(nearest[:, 0])


def calibrated_confidence(pred_probs: np.ndarray, labels: np.ndarray, quantile: float) -> float:
    """The ``quantile`` of the filter's probability of the true class over held-out real images
    (``pred_probs (M, K)``, ``labels (M,)``): with ``quantile`` 0.1 a sample is kept when the filter is at
    least as sure of its class as it is of nine in ten real images of the data."""
    pred_probs, labels = np.asarray(pred_probs), np.asarray(labels)
    if not 0 <= quantile <= 1:
        raise UsageError(f"the confidence quantile must lie in [0, 1], got {quantile}")
    if pred_probs.ndim != 2 or len(pred_probs) != len(labels) or len(labels) == 0:
        raise UsageError(f"calibration needs (M, K) probabilities of M >= 1 labelled real images, got shape "
                         f"{pred_probs.shape} for {len(labels)} labels")
    return float(np.quantile(pred_probs[np.arange(len(labels)), labels], quantile))


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
    seeds: np.ndarray,
    step_id: str,
    class_names: Sequence[str],
    split: str,
    method: str,
    parameters: Mapping[str, Any],
    guidance_scale: np.ndarray,
    kept: FilterResult,
    columns: Mapping[str, np.ndarray] | None = None,
) -> "datasets.Dataset":
    """Rows of the kept samples: ids ``synth:<step_id>:<n>``, ``set: synthetic``, the shared provenance and
    :data:`SAMPLE_COLUMNS` (``kept``: the filter result restricted to these samples; ``columns``: the
    method's own :data:`METHOD_COLUMNS` for these samples, null where absent)."""
    from curate.data.table import generated_rows

    unknown = sorted(set(columns or {}) - set(METHOD_COLUMNS))
    if unknown:
        raise UsageError(f"a method filled unknown sample column `{unknown[0]}`; known: {', '.join(METHOD_COLUMNS)}")
    n = len(np.asarray(labels))
    sample = {"guidance_scale": guidance_scale, "filter_confidence": kept.confidence,
              "copy_distance": kept.copy_distance, "nearest_real": kept.nearest,
              **{name: np.full(n, None, dtype=object) for name in METHOD_COLUMNS}, **(columns or {})}
    return generated_rows(
        ids=[f"synth:{step_id}:{int(i)}" for i in np.asarray(numbers)], images=images, labels=np.asarray(labels),
        class_names=class_names, split=split, set_="synthetic", method=method, parameters=dict(parameters),
        source_step=step_id, seeds=np.asarray(seeds), extra={name: (np.asarray(sample[name]), dtype)
                                                             for name, dtype in SAMPLE_COLUMNS.items()})
