"""The annotator contract, parametrized over every registered annotator (a new annotator is tested by registering it).

What the `relabel` step and :func:`curate.relabel.annotate` rely on: built by
``create_annotator(name, model, resolution=, top_k=, device=)``, a ``size`` to decode images to,
``setup()`` then ``__call__({"image": uint8 (B, H, W, 3)})`` giving top-k label maps (``scores``
float16 and ``classes`` uint16, (B, k, h, w), best first, distinct classes per location) and two
distributions per image (``global_probs``, ``label_scores``, float32 (B, K)); the same maps from
the same model and images; the batch left as it was; a JSON ``describe()`` naming the annotator.
"""

import json

import numpy as np
import pytest
import torch

from curate.models import create_model
from curate.relabel import ANNOTATORS, LabelMapStore, annotate, create_annotator
from curate.relabel.maps import TopKMaps, area_scores, densify

from relabel_helpers import tiny_table

CLASSES = 4


def _model(seed: int = 0):
    return create_model("resnet20-cifar", num_classes=CLASSES, weights=None, seed=seed)


def _images(n: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def _run(name: str, images: np.ndarray, *, top_k: int, resolution=None, seed: int = 0) -> dict[str, np.ndarray]:
    annotator = create_annotator(name, _model(seed), resolution=resolution, top_k=top_k, device="cpu")
    annotator.setup()
    return annotator({"image": images})


@pytest.mark.parametrize("name", ANNOTATORS.names())
@pytest.mark.parametrize("resolution", [None, 48])
def test_annotator_outputs_top_k_maps_and_two_distributions_per_image(name, resolution):
    images = _images()
    out = _run(name, images, top_k=2, resolution=resolution)
    assert {"scores", "classes", "global_probs", "label_scores"} <= set(out)
    b, k, h, w = out["scores"].shape
    assert (b, k) == (len(images), 2) and h >= 1 and w >= 1
    assert out["scores"].dtype == np.float16 and out["classes"].dtype == np.uint16
    assert out["classes"].shape == out["scores"].shape and int(out["classes"].max()) < CLASSES
    assert (np.diff(out["scores"].astype(np.float32), axis=1) <= 0).all()  # best first
    assert (out["classes"][:, 0] != out["classes"][:, 1]).all()  # k distinct classes per location
    for key in ("global_probs", "label_scores"):
        rows = out[key]
        assert rows.shape == (len(images), CLASSES) and rows.dtype == np.float32
        assert (rows >= 0).all() and np.allclose(rows.sum(1), 1, atol=1e-5), key


@pytest.mark.parametrize("name", ANNOTATORS.names())
def test_with_all_classes_kept_the_maps_agree_with_their_label_scores(name):
    """k = K keeps the whole map: each class's share of the image is the mean of the maps' softmax."""
    out = _run(name, _images(), top_k=CLASSES)
    maps = TopKMaps(torch.from_numpy(out["scores"]), torch.from_numpy(out["classes"].astype(np.int64)))
    shares = area_scores(densify(maps, num_classes=CLASSES, fill_value=float("-inf")))
    np.testing.assert_allclose(shares.numpy(), out["label_scores"], atol=2e-3)


@pytest.mark.parametrize("name", ANNOTATORS.names())
def test_annotator_is_repeatable_for_a_model_seed_and_leaves_the_batch_alone(name):
    images = _images()
    before = images.copy()
    first = _run(name, images, top_k=2)
    second = _run(name, images, top_k=2)
    assert np.array_equal(images, before)
    assert first.keys() == second.keys() and all(np.array_equal(first[key], second[key]) for key in first)
    other = _run(name, images, top_k=2, seed=1)  # another model: other maps (the outputs depend on the model)
    assert not np.array_equal(first["global_probs"], other["global_probs"])


@pytest.mark.parametrize("name", ANNOTATORS.names())
def test_annotate_writes_a_store_that_reads_back_what_the_annotator_gave(name, tmp_path):
    table, pixels = tiny_table(6, num_classes=CLASSES, side=32)  # the model's own size: decoded as they are
    annotator = create_annotator(name, _model(), top_k=2, device="cpu")
    assert tuple(annotator.size) == (32, 32)
    done = annotate(annotator, table, tmp_path / "maps", shard_size=4, batch_size=2, progress=False)
    store = LabelMapStore(done.folder)
    assert json.loads(json.dumps(store.info.annotator))["name"] == name
    assert len(store) == 6 and (store.info.top_k, store.info.num_classes) == (2, CLASSES)
    pairs = [_run(name, pixels[i:i + 2], top_k=2) for i in range(0, 6, 2)]  # the batches annotate ran
    direct = {key: np.concatenate([pair[key] for pair in pairs]) for key in pairs[0]}
    maps = store.read()
    assert np.array_equal(maps.scores.numpy(), direct["scores"])
    assert np.array_equal(maps.classes.numpy(), direct["classes"])
    for key in ("global_probs", "label_scores"):
        np.testing.assert_allclose(store.read_array(key), direct[key], atol=1e-6)
