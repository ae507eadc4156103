"""Batch functions: results independent of batching, in table order, loaded once."""

import numpy as np
import pytest
import torch
from learn_data import K, separable_images

from curate.data import make_table
from curate.learn import EmbedFn, PredictFn, embed, predict, predict_images


@pytest.fixture
def table():
    images, labels = separable_images(40, seed=3)
    ids = [f"s{i}" for i in range(len(images))]
    return make_table(ids=ids, images=images, labels=labels, class_names=["a", "b", "c"], splits="train"), images


def test_predict_is_the_same_at_batch_size_1_and_64(table, make_convnet):
    table, _ = table
    model = make_convnet()
    one = predict(model, table, batch_size=1, device="cpu", progress=False)
    many = predict(model, table, batch_size=64, device="cpu", progress=False)
    assert one.shape == (40, K) and one.dtype == np.float32
    np.testing.assert_allclose(one, many, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one.sum(1), 1.0, rtol=1e-5)


def test_predict_follows_indices_and_matches_the_model_on_the_decoded_images(table, make_convnet):
    table, images = table
    model = make_convnet()
    indices = np.array([5, 0, 39, 5, 33])
    probs = predict(model, table, indices=indices, batch_size=2, device="cpu", progress=False)
    with torch.inference_mode():
        expected = model(model.preprocess(images[indices])).softmax(1).numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)


def test_predict_images_equals_the_table_path(table, make_convnet):
    table, images = table
    model = make_convnet()
    np.testing.assert_allclose(predict_images(model, images, batch_size=16, device="cpu"),
                               predict(model, table, device="cpu", progress=False), rtol=1e-5, atol=1e-6)


def test_embed_normalize_gives_unit_rows_in_the_direction_of_the_raw_features(table, make_convnet):
    table, _ = table
    model = make_convnet()
    raw = embed(model, table, batch_size=32, device="cpu", progress=False)
    unit = embed(model, table, batch_size=32, normalize=True, device="cpu", progress=False)
    assert raw.shape == unit.shape == (40, model.num_features) and unit.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-4, atol=1e-6)


def test_a_factory_is_called_once_at_setup(make_convnet):
    calls = []

    def factory():
        calls.append(1)
        return make_convnet()

    fn = EmbedFn(factory, device="cpu")
    assert calls == []  # building the batch function loads nothing (cheap to ship to a worker)
    fn.setup()
    images, _ = separable_images(4)
    for _ in range(3):
        out = fn({"image": images})
    assert calls == [1] and out["embeddings"].shape == (4, fn.model.num_features)
    assert not fn.model.training


def test_calling_before_setup_says_so(make_convnet):
    with pytest.raises(RuntimeError, match=r"PredictFn.setup\(\) must run before the first batch"):
        PredictFn(make_convnet(), device="cpu")({"image": np.zeros((1, 8, 8, 3), np.uint8)})
