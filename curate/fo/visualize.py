"""The App's embeddings plot: a FiftyOne brain visualization run on our own vectors.

``embeddings (N, D)`` arrive with their sample ids; they are reordered to the
dataset's sample order by ``curate_id`` and always passed explicitly (without them
FiftyOne would try to download a zoo model). t-SNE needs more points than its
perplexity allows on tiny sets: it is accepted from :data:`TSNE_MIN_SAMPLES` samples
on (about 3x the default perplexity of 30); use PCA below that. t-SNE is slow on CPU
(about 2 minutes for 3,000 64-d vectors on 2 cores); PCA takes under a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np

from curate.artifacts import locate_ids
from curate.fo.database import connect
from curate.fo.fields import ID_FIELD, check_field_name

if TYPE_CHECKING:  # pragma: no cover
    import fiftyone as fo

TSNE_MIN_SAMPLES = 100


def compute_embeddings_plot(
    dataset: "fo.Dataset",
    embeddings: np.ndarray,
    ids: Sequence[str] | np.ndarray,
    *,
    brain_key: str,
    method: Literal["pca", "tsne"] = "pca",
    seed: int = 0,
    progress: bool = False,
) -> str:
    """Compute (or recompute) the 2-D plot ``brain_key`` over the samples named by ``ids``; returns the key."""
    connect()
    import fiftyone.brain as fob

    check_field_name(brain_key, what="brain key")
    embeddings = np.asarray(embeddings)
    ids = np.asarray(ids, dtype=str)
    if embeddings.ndim != 2:
        raise ValueError(f"`embeddings` must be 2-D (N, D), got shape {embeddings.shape}")
    if len(ids) != len(embeddings):
        raise ValueError(f"`ids` has {len(ids)} rows but `embeddings` has {len(embeddings)}")
    if method not in ("pca", "tsne"):
        raise ValueError(f"`method` must be 'pca' or 'tsne', got {method!r}")
    if method == "tsne" and len(ids) < TSNE_MIN_SAMPLES:
        raise ValueError(f"t-SNE needs at least {TSNE_MIN_SAMPLES} samples, got {len(ids)}; use method='pca'")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("`ids` contains duplicates; each sample needs exactly one embedding")

    dataset_ids = np.asarray(dataset.values(ID_FIELD), dtype=str)
    known = np.isin(ids, dataset_ids)
    if not known.all():
        raise ValueError(f"{int((~known).sum())} embedding ids are not in dataset '{dataset.name}', "
                         f"e.g. {ids[~known][0]!r}")
    if len(ids) == len(dataset_ids):
        samples = dataset
        order = dataset_ids
    else:
        samples = dataset.select_by(ID_FIELD, ids.tolist())
        order = np.asarray(samples.values(ID_FIELD), dtype=str)
    rows, _ = locate_ids(order, ids)  # row of each sample (in collection order) in ``embeddings``

    if brain_key in dataset.list_brain_runs():
        dataset.delete_brain_run(brain_key)
    fob.compute_visualization(
        samples,
        embeddings=np.ascontiguousarray(embeddings[rows], dtype=np.float32),
        brain_key=brain_key,
        method=method,
        num_dims=2,
        seed=seed,
        progress=progress,
        **({"verbose": progress} if method == "tsne" else {}),
    )
    return brain_key
