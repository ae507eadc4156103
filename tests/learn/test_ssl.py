"""Self-supervised training (SimCLR NT-Xent): the loss against a slow loop and on paper, its symmetry in the
two views, views from one generator, training that lowers the loss, exact resume, and the `ssl` step whose
model embed, index and duplicates take while predict refuses its untrained head."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from curate.errors import UsageError
from curate.learn.ssl import ColorJitter, TwoViews, nt_xent, rotate_hue, train_ssl
from curate.models import create_model
from curate.recipes import parse_recipe, run_recipe

from learn_data import separable_images


def slow_nt_xent(z1, z2, t):
    """NT-Xent anchor by anchor, as the SimCLR paper writes it: l(i, j) = -log exp(s_ij/t) / sum_{k != i} exp(s_ik/t)."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        denom = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[j]) / t) / denom)
    return total / (2 * n)


def test_nt_xent_equals_the_anchor_by_anchor_loop_and_is_symmetric_in_the_views():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    loss = nt_xent(z1, z2, temperature=0.5)
    assert float(loss) == pytest.approx(slow_nt_xent(z1, z2, 0.5), rel=1e-5)
    torch.testing.assert_close(nt_xent(z2, z1, temperature=0.5), loss)  # the two views swap freely
    order = torch.randperm(6, generator=g)
    torch.testing.assert_close(nt_xent(z1[order], z2[order], temperature=0.5), loss)  # so do the images


def test_nt_xent_on_paper_identical_views_of_orthogonal_images():
    """z1 == z2 == one-hot rows: the partner scores 1/t, the 2N - 2 others 0."""
    n, t = 4, 0.5
    z = torch.eye(n)
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * n - 2))
    assert float(nt_xent(z, z, temperature=t)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(UsageError, match="temperature"):
        nt_xent(z, z, temperature=0.0)


def test_colour_jitter_is_the_identity_at_strength_zero_and_hue_rotation_keeps_luma():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 4, 4, 3, generator=g)
    torch.testing.assert_close(ColorJitter(strength=0.0, p_gray=0.0)(x, g), x, atol=1e-6, rtol=0)
    gray = ColorJitter(strength=0.0, p_gray=1.0)(x, g)
    assert torch.allclose(gray[..., 0], gray[..., 1]) and torch.allclose(gray[..., 1], gray[..., 2])
    turned = rotate_hue(x, torch.full((5,), 1.0))
    luma = torch.tensor([0.299, 0.587, 0.114])
    torch.testing.assert_close(turned @ luma, x @ luma, atol=1e-5, rtol=0)
    assert not torch.allclose(turned, x, atol=1e-3)
    torch.testing.assert_close(rotate_hue(x, torch.zeros(5)), x, atol=1e-6, rtol=0)


def test_two_views_differ_and_repeat_for_a_seed():
    images = torch.from_numpy(separable_images(6)[0])
    views = TwoViews()
    a1, a2 = views(images, torch.Generator().manual_seed(3))
    b1, _ = views(images, torch.Generator().manual_seed(3))
    assert a1.dtype == torch.uint8 and a1.shape == images.shape
    assert torch.equal(a1, b1) and not torch.equal(a1, a2)


def _convnet(seed=0):
    return create_model("convnet", num_classes=3, weights=None, width=8, depth=1, im_size=8, seed=seed)


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_training_lowers_the_loss_and_leaves_the_classifier_head_alone():
    images, _ = separable_images(32)
    model = _convnet()
    head_before = model.classifier_head.weight.detach().clone()
    result = train_ssl(model, images, epochs=12, batch_size=16, lr=0.1, device="cpu", progress=False,
                       views=TwoViews(crop_scale=(0.5, 1.0)))
    first, last = result.losses[:4].mean(), result.losses[-4:].mean()
    assert last < first - 0.1, (first, last)
    assert torch.equal(model.classifier_head.weight, head_before)
    assert not model.training and len(result.history) == 12


def test_resume_from_a_checkpoint_repeats_the_uninterrupted_run(tmp_path):
    images, _ = separable_images(24)
    opts = dict(epochs=3, batch_size=8, device="cpu", progress=False, resume_key="k")
    whole = train_ssl(_convnet(), images, **opts)
    first = train_ssl(_convnet(), images, checkpoint_dir=tmp_path, stop_after=2, **opts)
    assert first.resumed_from == 0 and len(first.history) == 2
    resumed = train_ssl(_convnet(), images, checkpoint_dir=tmp_path, **opts)
    assert resumed.resumed_from == 2
    assert torch.equal(_params(resumed.model), _params(whole.model))
    np.testing.assert_array_equal(resumed.losses, whole.losses)
    drop_time = [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.history]
    assert drop_time == [{k: v for k, v in r.items() if k != "seconds"} for r in whole.history]  # not float32-rounded
    other = train_ssl(_convnet(), images, checkpoint_dir=tmp_path, **{**opts, "resume_key": "other"})
    assert other.resumed_from == 0  # a checkpoint of other settings is ignored


def test_train_ssl_refuses_a_single_image():
    with pytest.raises(UsageError, match="at least 2 images"):
        train_ssl(_convnet(), separable_images(1)[0], epochs=1, device="cpu", progress=False)


SSL_RECIPE = """\
name: ssl_tiny
steps:
  - id: cifar
    uses: source
    with: {kind: demo, limit_per_class: 3}
  - id: ssl
    uses: ssl
    inputs: {data: cifar}
    with: {model: convnet, model_config: {width: 8, depth: 1}, epochs: 2, batch_size: 8}
  - id: emb
    uses: embed
    inputs: {data: cifar, model: ssl}
  - id: idx
    uses: index
    inputs: {data: cifar, embeddings: emb}
  - id: dups
    uses: duplicates
    inputs: {data: cifar, embeddings: emb}
"""


def test_ssl_step_model_feeds_embed_index_and_duplicates_and_predict_refuses_its_head(tmp_path):
    result = run_recipe(parse_recipe(SSL_RECIPE, filename="ssl.yaml"), workdir=tmp_path, progress=False)
    run = tmp_path / "ssl_tiny"
    metrics = result.outcome("ssl").metrics
    assert 0 <= metrics["knn_accuracy"] <= 1 and metrics["train_rows"] == 30
    assert json.loads((run / "ssl" / "model" / "config.json").read_text())["head_trained"] is False
    emb = json.loads((run / "emb" / "step.json").read_text())["outputs"]["embeddings"]
    assert emb["model"]["artifact"]["step"] == "ssl" and emb["shape"][0] == 60
    assert result.outcome("idx").metrics["rows"] == 60 and "near_pairs" in result.outcome("dups").metrics
    predict = SSL_RECIPE + "  - id: probs\n    uses: predict\n    inputs: {data: cifar, model: ssl}\n"
    with pytest.raises(UsageError, match="untrained"):
        run_recipe(parse_recipe(predict, filename="ssl.yaml"), workdir=tmp_path, progress=False)


def test_ssl_features_put_jpeg_copies_next_to_their_originals_for_the_duplicates_audit(shared_data):
    """Issue 18's ask: the duplicates audit on SSL features pairs a JPEG re-encode with its original and no two
    distinct images at the threshold that catches every copy."""
    import io

    from PIL import Image

    from curate.index.duplicates import find_near_duplicates
    from curate.execute.local import array_batches, map_batches
    from curate.learn import EmbedFn

    images = np.load(shared_data / "cifar10" / "test" / "images.npy")[:48]

    def jpeg(image):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=75)
        return np.asarray(Image.open(buffer).convert("RGB"))

    copies = np.stack([jpeg(im) for im in images[:8]])
    model = create_model("resnet20-cifar", num_classes=10, weights=None, seed=0)
    train_ssl(model, images, epochs=1, batch_size=16, device="cpu", progress=False)
    both = np.concatenate([images, copies])
    x = map_batches(EmbedFn(model, device="cpu", normalize=True), array_batches(both, batch_size=64),
                    rows=len(both))["embeddings"]
    d_copy = 1 - np.einsum("ij,ij->i", x[48:], x[:8])
    groups = find_near_duplicates(x, threshold=float(d_copy.max()) + 1e-6, k=5, kind="flat")
    np.testing.assert_array_equal(groups.components[48:], groups.components[:8])  # each copy with its original
    assert groups.sizes.max() == 2  # and no distinct image joins a group
