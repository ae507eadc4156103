"""Label maps in FiftyOne: multi-labels with confidences, the top-class heatmap, `multi_label_candidates`.

Uses the session MongoDB fixtures of tests/conftest.py.
"""

from __future__ import annotations

import numpy as np

from curate.fo import load_view, mirror_table
from curate.relabel import LabelMapInfo, LabelMapStore
from curate.relabel.fiftyone import MULTI_LABEL_VIEW, add_label_maps
from curate.relabel.storage import shard_name, write_index, write_shard

from relabel_helpers import tiny_table

CLASSES = ["c0", "c1", "c2"]


def write_maps(folder, ids, label_scores):
    """Top-2 maps (2x2) where class 0 leads the left column and class 2 the right column."""
    n = len(ids)
    scores = np.ones((n, 2, 2, 2), dtype=np.float16)
    scores[:, 0] = 4.0  # best first: 4 then 1 at every location
    classes = np.zeros((n, 2, 2, 2), dtype=np.uint16)
    classes[:, 0, :, 0], classes[:, 1, :, 0] = 0, 2
    classes[:, 0, :, 1], classes[:, 1, :, 1] = 2, 0
    arrays = {"scores": scores, "classes": classes, "label_scores": label_scores.astype(np.float32),
              "global_probs": label_scores.astype(np.float32)}
    digest = write_shard(folder / shard_name(0), ids=ids, arrays=arrays, signature="")
    write_index(folder, LabelMapInfo(num_classes=3, top_k=2, height=2, width=2, class_names=CLASSES),
                [{"file": shard_name(0), "ids": list(ids), "sha256": digest}])
    return LabelMapStore(folder)


def test_multi_labels_heatmap_and_candidates_view(dataset_name, tmp_path, fo):
    table, _ = tiny_table(6)
    dataset = mirror_table(table, dataset_name=dataset_name, media_dir=tmp_path / "media")
    ids = list(table["id"])
    label_scores = np.array([[0.5, 0.1, 0.4], [0.9, 0.05, 0.05], [0.3, 0.3, 0.4],
                             [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.34, 0.33, 0.33]])
    store = write_maps(tmp_path / "maps", ids, label_scores)

    written = add_label_maps(dataset, store, prefix="maps", threshold=0.3, top_k=2)
    assert written == {"fields": ["maps_labels", "maps_map"], "views": [MULTI_LABEL_VIEW], "candidates": 3}

    got = dict(zip(*dataset.values(["curate_id", "maps_labels"])))
    assert [(c.label, round(c.confidence, 2)) for c in got[ids[0]].classifications] == [("c0", 0.5), ("c2", 0.4)]
    assert [c.label for c in got[ids[2]].classifications] == ["c2", "c0"]  # top_k=2 of three above 0.3
    assert [c.label for c in got[ids[1]].classifications] == ["c0"]
    view = load_view(dataset, MULTI_LABEL_VIEW)
    assert sorted(view.values("curate_id")) == sorted([ids[0], ids[2], ids[5]])

    heat = dict(zip(*dataset.values(["curate_id", "maps_map"])))
    top = heat[ids[0]]  # top class c0: leads the left column
    assert top.range == [0.0, 1.0]
    softmax = 1 / (1 + np.exp(-3.0))
    np.testing.assert_allclose(top.map, [[softmax, 1 - softmax], [softmax, 1 - softmax]], atol=1e-3)

    again = add_label_maps(dataset, store, prefix="maps", threshold=0.3, top_k=2)  # idempotent
    assert again == written and len(dataset) == 6
