"""Label maps in the FiftyOne App: multi-labels, a heatmap of the top class, and a saved view.

Joined on our sample id (``curate_id``) like every adapter; FiftyOne is imported only
when a function runs. What it writes for the samples of a label-map folder:

- ``<prefix>_labels``: ``Classifications``, the image's multi-labels (classes whose area
  share reaches ``threshold``, at most ``top_k`` of them, best first), confidence = share;
- ``<prefix>_map``: a ``Heatmap`` in [0, 1] of the image's top class (by area share):
  at each location, its softmax among the k stored scores (0 where it was not stored);
- the saved view ``multi_label_candidates``: images with two or more such classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from curate.fo.database import connect
from curate.fo.fields import ID_FIELD, check_field_name
from curate.fo.views import save_view, select_ids
from curate.relabel.maps import multi_labels
from curate.relabel.storage import LabelMapStore

if TYPE_CHECKING:  # pragma: no cover
    import fiftyone as fo

MULTI_LABEL_VIEW = "multi_label_candidates"


def top_class_maps(store: LabelMapStore, ids: np.ndarray, top_class: np.ndarray) -> np.ndarray:
    """Float32 (N, h, w): each image's ``top_class`` softmaxed among the stored scores of each location."""
    maps = store.read(ids)
    probs = maps.scores.float().softmax(dim=1).numpy()
    hit = maps.classes.numpy().astype(np.int64) == top_class[:, None, None, None]
    return (probs * hit).sum(axis=1).astype(np.float32)


def add_label_maps(
    dataset: "fo.Dataset",
    store: LabelMapStore,
    *,
    prefix: str,
    threshold: float,
    top_k: int = 5,
    class_names: Sequence[str] | None = None,
    view_name: str = MULTI_LABEL_VIEW,
) -> dict[str, Any]:
    """Write the fields ``<prefix>_labels`` and ``<prefix>_map`` and the saved view; returns what was written.

    Idempotent: a rerun overwrites the same fields and view.
    """
    fo = connect()
    labels_field, map_field = f"{prefix}_labels", f"{prefix}_map"
    for name in (labels_field, map_field):
        check_field_name(name)
    names = list(class_names or store.info.class_names or range(store.info.num_classes))
    ids = store.ids
    scores = store.read_array("label_scores", ids)
    chosen = multi_labels(scores, threshold=threshold)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    top = order[:, 0]
    labels = {}
    for sid, row, keep, ranked in zip(ids.tolist(), scores, chosen, order):
        picked = [c for c in ranked.tolist() if keep[c]]
        labels[sid] = fo.Classifications(classifications=[
            fo.Classification(label=str(names[c]), confidence=float(row[c])) for c in picked])
    heat = top_class_maps(store, ids, top)
    maps = {sid: fo.Heatmap(map=m, range=[0.0, 1.0]) for sid, m in zip(ids.tolist(), heat)}
    dataset.set_values(labels_field, labels, key_field=ID_FIELD)
    dataset.set_values(map_field, maps, key_field=ID_FIELD)
    candidates = ids[chosen.sum(axis=1) >= 2]
    save_view(dataset, view_name, select_ids(dataset, candidates, ordered=False))
    return {"fields": [labels_field, map_field], "views": [view_name], "candidates": int(len(candidates))}
