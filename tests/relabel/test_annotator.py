"""The dense annotator: the head at every location, its batch-function outputs, and resumable sharding."""

import numpy as np
import pytest
import torch

from curate.errors import UnknownName, UsageError
from curate.execute.local import array_batches, map_batches, run_batches
from curate.models import create_model
from curate.relabel import ANNOTATORS, LabelMapStore, annotate, create_annotator, dense_logits

from relabel_helpers import tiny_table


def tiny_dinov2(tmp_path):
    """A random 4-class DINOv2 (CLS + mean-patch head) saved locally, loaded through the registry."""
    import transformers as tf

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = tf.Dinov2ForImageClassification(tf.Dinov2Config(
            hidden_size=16, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, image_size=16, patch_size=4,
            num_labels=4))
    net.save_pretrained(tmp_path / "dinov2")
    return create_model(f"hf:{tmp_path / 'dinov2'}", num_classes=4)


MODELS = {
    "resnet20": lambda tmp: create_model("resnet20-cifar", num_classes=10, weights=None, seed=0),
    "dinov2": tiny_dinov2,
}


@pytest.mark.parametrize("name", list(MODELS))
def test_spatial_mean_of_the_dense_map_is_the_models_logits(name, tmp_path):
    """Average-pool CNN (1x1 conv head) and ViT mean-patch head."""
    model = MODELS[name](tmp_path)
    h, w = model.preprocess.size
    x = torch.randn(3, 3, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = model.forward_features(x)
        maps = dense_logits(model, features, input_size=(h, w))
        logits = model(x)
    assert maps.shape[:2] == (3, model.num_classes) and maps.shape[2] > 1
    torch.testing.assert_close(maps.mean(dim=(2, 3)), logits, atol=1e-4, rtol=1e-4)


def test_cnn_head_at_one_location_is_the_linear_layer_on_that_feature_vector():
    model = create_model("resnet20-cifar", num_classes=10, weights=None, seed=0)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = model.forward_features(x)
        maps = dense_logits(model, features, input_size=(32, 32))
        torch.testing.assert_close(maps[0, :, 2, 5], model.linear(features[0, :, 2, 5]))


def test_resolution_sets_the_map_size():
    images = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    resnet = create_model("resnet20-cifar", num_classes=10, weights=None, seed=0)
    for resolution, side in ((None, 8), (64, 16)):
        fn = create_annotator("dense_classifier", resnet, resolution=resolution, top_k=3, device="cpu")
        out = map_batches(fn, array_batches(images, batch_size=2), rows=4)
        assert out["scores"].shape == (4, 3, side, side)


@pytest.mark.parametrize("resolution", [None, 64])
def test_a_head_over_the_flattened_map_has_no_dense_map_and_says_what_to_use(resolution):
    """The ConvNet's head has a weight per position: no 1x1 convolution to run, at any input size."""
    images = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    convnet = create_model("convnet", num_classes=10, width=8, depth=2, im_size=32, seed=0)
    fn = create_annotator("dense_classifier", convnet, resolution=resolution, device="cpu")
    with pytest.raises(UsageError, match=r"model 'convnet' has a head over \d+ features .* flattened map.* "
                                         "annotate with a globally pooled model \\(e.g. resnet20-cifar"):
        map_batches(fn, array_batches(images, batch_size=2), rows=4)


def test_batch_function_outputs_compact_sorted_top_k_and_the_global_softmax():
    model = create_model("resnet20-cifar", num_classes=10, weights=None, seed=0)
    images = np.random.default_rng(1).integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    out = map_batches(create_annotator("dense_classifier", model, top_k=4, device="cpu"),
                      array_batches(images, batch_size=3), rows=5)
    assert out["scores"].dtype == np.float16 and out["classes"].dtype == np.uint16
    assert (np.diff(out["scores"].astype(np.float32), axis=1) <= 0).all()  # best first
    assert (out["classes"] < 10).all()
    with torch.no_grad():
        probs = model(model.preprocess(images)).softmax(1).numpy()
    np.testing.assert_allclose(out["global_probs"], probs, atol=1e-5)
    np.testing.assert_allclose(out["label_scores"].sum(1), 1, atol=1e-5)


def test_unknown_annotator_lists_the_registered_ones():
    assert "dense_classifier" in ANNOTATORS.names()
    with pytest.raises(UnknownName, match="dense_classifier"):
        create_annotator("dense_clasifier", create_model("convnet", num_classes=3, im_size=8, depth=2, width=4))


class Counting:
    """The local executor, counting shards and failing on the ``fail_at``-th one (1-based)."""

    def __init__(self, fail_at=None):
        self.calls, self.fail_at = 0, fail_at

    def __call__(self, fn, table, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("interrupted")
        return run_batches(fn, table, **kwargs)


def _annotator():
    model = create_model("resnet20-cifar", num_classes=3, weights=None, seed=0)
    return create_annotator("dense_classifier", model, resolution=8, top_k=2, device="cpu")


def test_resuming_a_half_written_annotation_recomputes_only_the_missing_shards(tmp_path):
    table, _ = tiny_table(10)
    kwargs = dict(shard_size=3, batch_size=2, signature="s1", progress=False)
    whole = annotate(_annotator(), table, tmp_path / "whole", executor=Counting(), **kwargs)
    assert (whole.shards, whole.computed, whole.reused) == (4, 4, 0)

    crashing = Counting(fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        annotate(_annotator(), table, tmp_path / "maps", executor=crashing, **kwargs)
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["shard-00000.safetensors",
                                                                      "shard-00001.safetensors"]
    finished = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "maps").iterdir()}
    resumed_executor = Counting()
    resumed = annotate(_annotator(), table, tmp_path / "maps", executor=resumed_executor, **kwargs)
    assert resumed_executor.calls == 2 and (resumed.computed, resumed.reused) == (2, 2)
    assert all((tmp_path / "maps" / n).stat().st_mtime_ns == t for n, t in finished.items())  # untouched
    assert resumed.index_sha256 == whole.index_sha256  # same shards, same bytes
    store = LabelMapStore(tmp_path / "maps")
    assert store.ids.tolist() == table["id"]

    again = Counting()
    annotate(_annotator(), table, tmp_path / "maps", executor=again, **{**kwargs, "signature": "s2"})
    assert again.calls == 4  # another signature (model, resolution, k...) trusts no shard


def test_a_smaller_rerun_drops_shards_that_are_no_longer_part_of_it(tmp_path):
    table, _ = tiny_table(10)
    annotate(_annotator(), table, tmp_path, shard_size=3, signature="s", progress=False)
    done = annotate(_annotator(), table, tmp_path, indices=[1, 4, 7], shard_size=3, signature="s", progress=False)
    assert done.shards == 1 and sorted(p.name for p in tmp_path.glob("shard-*")) == ["shard-00000.safetensors"]
    assert LabelMapStore(tmp_path).ids.tolist() == ["toy/0001", "toy/0004", "toy/0007"]
