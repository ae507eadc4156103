"""Embedding conditioning (METHODS.md section 8): the null context, the drop rate, classifier-free guidance in the
paper's w, slerp, one normalization for training and sampling, a model that reads its embedding, training with
dropout that resumes exactly, and the saved model."""

import math

import numpy as np
import pytest
import torch

from curate.errors import UsageError
from synth.conditioning import (Conditioner, ConditionedUNet, classifier_free, diffusers_guidance_scale, drop_mask,
                                slerp)
from synth.train_diffusion import CHECKPOINT, build_unet, load_diffusion_model, save_diffusion_model, train_ddpm
from synth_helpers import tiny_conditioned

G = torch.Generator().manual_seed(0)
X, T = torch.randn(3, 3, 8, 8, generator=G), torch.tensor(40)
V = torch.randn(3, 6, generator=G)


@pytest.mark.parametrize("kind", ["cross_attention", "vector"])
def test_null_context_is_the_projection_bias(kind):
    c = Conditioner(6, 8, kind=kind)
    null = c.null(4)
    expected = c.proj.bias.detach().expand(4, 8)
    torch.testing.assert_close(null.reshape(4, 8), expected)
    assert null.shape == ((4, 1, 8) if kind == "cross_attention" else (4, 8))
    assert null.abs().sum() > 0  # not a zero context
    dropped = c(V, drop=torch.tensor([True, False, True]))
    torch.testing.assert_close(dropped[[0, 2]], c.null(2))
    torch.testing.assert_close(dropped[1], c(V[1:2])[0])


def test_empirical_drop_rate_is_p_uncond():
    rate = drop_mask(10_000, 0.1, torch.Generator().manual_seed(1)).float().mean().item()
    assert abs(rate - 0.1) < 0.01
    assert drop_mask(100, 0.0, torch.Generator()).sum() == 0 and drop_mask(100, 1.0, torch.Generator()).all()
    with pytest.raises(UsageError, match="p_uncond"):
        drop_mask(4, 1.5, torch.Generator())


def test_cfg_in_the_papers_w_and_as_diffusers_scale():
    c, u = torch.randn(2, 3, generator=G), torch.randn(2, 3, generator=G)
    torch.testing.assert_close(classifier_free(c, u, 0.0), c)  # w = 0: conditional only
    for w in (0.5, 3.0):
        torch.testing.assert_close(classifier_free(c, c.clone(), w), c)  # equal eps: unchanged
        torch.testing.assert_close(classifier_free(c, u, w), (1 + w) * c - w * u)
        s = diffusers_guidance_scale(w)  # diffusers: eps_u + s (eps_c - eps_u)
        torch.testing.assert_close(u + s * (c - u), classifier_free(c, u, w))


def test_slerp_endpoints_unit_norm_and_lerp_fallback():
    a, b = torch.nn.functional.normalize(torch.randn(5, 4, generator=G), dim=1), \
        torch.nn.functional.normalize(torch.randn(5, 4, generator=G), dim=1)
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b)
    for t in (0.25, 0.5, 0.9):
        torch.testing.assert_close(slerp(a, b, t).norm(dim=1), torch.ones(5))
    e0, e1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(slerp(e0, e1, 0.5), torch.tensor([1.0, 1.0]) / math.sqrt(2))  # on paper
    near = a + 1e-4 * b  # |cos| > 0.9995: the linear fallback, exactly
    torch.testing.assert_close(slerp(a, near, 0.3), 0.7 * a + 0.3 * near)
    per_row = slerp(a, b, torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0]))
    torch.testing.assert_close(per_row[[0, 2, 4]], a[[0, 2, 4]])
    torch.testing.assert_close(per_row[[1, 3]], b[[1, 3]])


def test_one_normalization_for_training_and_sampling():
    """The conditioner normalizes inside forward: a vector and its multiple condition alike, and the training
    call and the sampling call (guided_eps at w = 0) give the same eps."""
    model = tiny_conditioned()
    with torch.no_grad():
        torch.testing.assert_close(model.conditioner(V * 7.0), model.conditioner(V))
        torch.testing.assert_close(model(X, T, V), model.guided_eps(X, T, V, w=0.0))
    raw = Conditioner(6, 8, normalize=False)
    assert not torch.allclose(raw(V * 7.0), raw(V))


@pytest.mark.parametrize("kind", ["cross_attention", "vector"])
def test_the_model_reads_its_embedding_and_the_null_path_is_the_unconditional_one(kind):
    model = tiny_conditioned(kind)
    with torch.no_grad():
        a = model(X, T, V)
        b = model(X, T, V.flip(0))
        assert not torch.allclose(a, b, atol=1e-6)  # another embedding, another prediction
        all_dropped = model(X, T, V, drop=torch.ones(3, dtype=torch.bool))
        torch.testing.assert_close(all_dropped, model.predict(X, T, model.conditioner.null(3)))
        torch.testing.assert_close(model(X, T, torch.randn(3, 6), drop=torch.ones(3, dtype=torch.bool)),
                                   all_dropped)  # the null path ignores the vector
        w = 2.0
        torch.testing.assert_close(model.guided_eps(X, T, V, w=w), (1 + w) * a - w * all_dropped,
                                   atol=1e-5, rtol=1e-4)


def test_a_unet_of_another_kind_or_width_is_refused():
    unet = build_unet(image_size=8, block_out_channels=(4, 8), conditioning="cross_attention", context_dim=8)
    with pytest.raises(UsageError, match="projects to 5"):
        ConditionedUNet(unet, Conditioner(6, 5))
    with pytest.raises(UsageError, match="UNet2DModel with class_embed_type"):
        ConditionedUNet(build_unet(image_size=8, block_out_channels=(4, 8)), Conditioner(6, 16, kind="vector"))
    with pytest.raises(UsageError, match="not both"):
        build_unet(image_size=8, block_out_channels=(4, 8), num_classes=2, conditioning="vector")


IMAGES = np.random.default_rng(0).integers(0, 256, size=(12, 8, 8, 3), dtype=np.uint8)
EMB = np.random.default_rng(1).normal(size=(12, 6)).astype(np.float32)
OPTS = dict(steps=4, batch_size=3, lr=1e-3, warmup_steps=2, ema_decay=0.9, checkpoint_every=2, seed=7, p_uncond=0.3)


def _train(tmp=None, *, seed=0, **extra):
    m = tiny_conditioned(seed=seed)
    return train_ddpm(m.unet, IMAGES, embeddings=EMB, conditioner=m.conditioner, checkpoint_dir=tmp,
                      resume_key="k", **{**OPTS, **extra})


def test_conditioned_training_trains_the_projection_and_resumes_exactly(tmp_path):
    before = tiny_conditioned().conditioner.proj.weight.detach().clone()
    full = _train(tmp_path / "a")
    assert not torch.allclose(full.conditioner.proj.weight, before)  # the projection learns with the UNet
    _train(tmp_path / "b", stop_after=2)
    assert (tmp_path / "b" / CHECKPOINT).is_file()
    resumed = _train(tmp_path / "b", seed=99)
    assert resumed.resumed_from == 2
    np.testing.assert_array_equal(resumed.losses, full.losses)
    for key, value in full.raw_state.items():
        assert torch.equal(resumed.raw_state[key], value), key
    torch.testing.assert_close(resumed.conditioner.proj.weight, full.conditioner.proj.weight, atol=0, rtol=0)
    with pytest.raises(UsageError, match="both `conditioner` and `embeddings`"):
        train_ddpm(full.unet, IMAGES, embeddings=EMB, steps=1)


def test_training_drops_rows_to_the_null_embedding_at_p_uncond(tmp_path):
    """p_uncond 1 feeds every row zeros: no gradient reaches the projection's weight, only its bias (the null
    context) trains; p_uncond 0 trains the weight."""
    proj = tiny_conditioned().conditioner.proj
    weight, bias = proj.weight.detach().clone(), proj.bias.detach().clone()
    dropped = _train(tmp_path / "all", p_uncond=1.0).raw_state
    assert torch.equal(dropped["conditioner.proj.weight"], weight)
    assert not torch.equal(dropped["conditioner.proj.bias"], bias)
    kept = _train(tmp_path / "none", p_uncond=0.0).raw_state
    assert not torch.equal(kept["conditioner.proj.weight"], weight)


@pytest.mark.parametrize("kind", ["cross_attention", "vector"])
def test_saved_conditioned_model_loads_and_predicts_the_same(tmp_path, kind):
    m = tiny_conditioned(kind)
    result = train_ddpm(m.unet, IMAGES, embeddings=EMB, conditioner=m.conditioner, steps=1, batch_size=2)
    record = {"spec": {"name": "resnet20-cifar", "weights": None, "config": {}, "class_names": list("abcdefghij"),
                       "seed": 0},
              "normalize": True}
    save_diffusion_model(tmp_path, result.unet, result.scheduler, class_names=["a", "b"],
                         conditioner=result.conditioner, encoder={**record, "model": record["spec"]})
    loaded = load_diffusion_model(tmp_path)
    assert loaded.embedding_conditioned and not loaded.conditional and loaded.conditioning["kind"] == kind
    with torch.no_grad():
        expected = ConditionedUNet(result.unet, result.conditioner)(X, T, V)
        torch.testing.assert_close(loaded.conditioned_unet()(X, T, V), expected, atol=0, rtol=0)
    vectors = loaded.embed(IMAGES[:2])
    assert vectors.shape == (2, 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
