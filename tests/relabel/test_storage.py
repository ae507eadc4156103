"""Top-k label maps: what top-k keeps, and the shard storage round trip."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from curate.errors import UsageError
from curate.relabel import LabelMapInfo, LabelMapStore, densify, multi_labels, topk_maps
from curate.relabel.storage import shard_name, write_index, write_shard


def test_top_k_with_k_at_least_k_classes_densifies_back_exactly():
    maps = torch.randn(3, 4, 5, 6, generator=torch.Generator().manual_seed(0)).half().float()
    assert torch.equal(densify(topk_maps(maps, 4), num_classes=4), maps)
    assert torch.equal(densify(topk_maps(maps, 9), num_classes=4), maps)  # k is capped at K


def test_top_k_keeps_the_k_largest_per_location_in_descending_order_and_zeros_elsewhere():
    maps = torch.randn(2, 12, 3, 4, generator=torch.Generator().manual_seed(1))
    top = topk_maps(maps, 5)
    assert top.shape == (5, 3, 4) and top.scores.dtype == torch.float16
    assert bool((top.scores[:, :-1] >= top.scores[:, 1:]).all())  # descending along k
    kept = torch.gather(maps, 1, top.classes)
    torch.testing.assert_close(top.scores.float(), kept, atol=1e-2, rtol=1e-3)
    fifth = maps.sort(dim=1, descending=True).values[:, 4:5]
    assert bool((kept >= fifth).all())
    dense = densify(top, num_classes=12)
    assert int((dense != 0).sum(1).max()) == 5


def _arrays(n, k=3, h=2, w=4, classes=7, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "scores": rng.normal(size=(n, k, h, w)).astype(np.float16),
        "classes": rng.integers(0, classes, size=(n, k, h, w)).astype(np.uint16),
        "global_probs": rng.dirichlet(np.ones(classes), size=n).astype(np.float32),
        "label_scores": rng.random((n, classes)).astype(np.float32),
    }


def test_storage_round_trip_is_bit_exact_and_indexed_by_sample_id(tmp_path):
    parts = [_arrays(5, seed=0), _arrays(3, seed=1)]
    ids = [[f"a{i}" for i in range(5)], [f"b{i}" for i in range(3)]]
    shards = []
    for number, (arrays, names) in enumerate(zip(parts, ids)):
        digest = write_shard(tmp_path / shard_name(number), ids=names, arrays=arrays, signature="sig")
        shards.append({"file": shard_name(number), "ids": names, "sha256": digest})
    info = LabelMapInfo(num_classes=7, top_k=3, height=2, width=4, class_names=list("abcdefg"))
    write_index(tmp_path, info, shards)

    store = LabelMapStore(tmp_path)
    assert store.info == info and len(store) == 8
    order = np.array(["b2", "a0", "a4", "b0"])
    maps = store.read(order)
    expect = {n: np.concatenate([p[n] for p in parts]) for n in parts[0]}
    rows = [7, 0, 4, 5]
    assert maps.scores.dtype == torch.float16 and maps.classes.dtype == torch.uint16
    np.testing.assert_array_equal(maps.scores.numpy(), expect["scores"][rows])
    np.testing.assert_array_equal(maps.classes.numpy(), expect["classes"][rows])
    np.testing.assert_array_equal(store.read_array("global_probs", order), expect["global_probs"][rows])
    shard, offset = store.locate(order)
    assert shard.tolist() == [1, 0, 0, 1] and offset.tolist() == [2, 0, 4, 0]
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["index"]["b2"] == [1, 2] and index["shards"][1]["rows"] == 3
    with safe_open(str(tmp_path / shard_name(0)), framework="np") as f:  # fp16 + uint16: 4 bytes a location
        assert f.get_tensor("scores").nbytes + f.get_tensor("classes").nbytes == 5 * 3 * 2 * 4 * 4


def test_unknown_ids_and_missing_index_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="no label maps"):
        LabelMapStore(tmp_path)
    write_shard(tmp_path / shard_name(0), ids=["x"], arrays=_arrays(1), signature="")
    write_index(tmp_path, LabelMapInfo(num_classes=7, top_k=3, height=2, width=4),
                [{"file": shard_name(0), "ids": ["x"], "sha256": ""}])
    with pytest.raises(UsageError, match="1 of 2 samples have no label map"):
        LabelMapStore(tmp_path).read(["x", "y"])
    with pytest.raises(UsageError, match="table has 3"):
        LabelMapStore(tmp_path).check_classes(["a", "b", "c"])


def test_multi_labels_threshold_the_pooled_scores():
    scores = np.array([[0.6, 0.3, 0.1], [0.25, 0.25, 0.5]])
    assert multi_labels(scores, threshold=0.25).tolist() == [[True, True, False], [True, True, True]]
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        multi_labels(scores, threshold=0.0)
