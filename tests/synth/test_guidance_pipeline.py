"""Classifier guidance and the guided pipeline: identities, analytic gradients, and the steering effect."""

import numpy as np
import pytest
import torch

from curate.errors import UsageError
from curate.models import create_model
from synth.guidance import (GUIDANCE, PixelClassifier, classifier_guidance, create_guidance, eps_form,
                            schedule_factor)
from synth.pipeline import GuidedPipeline, sample_seeds
from synth.train_diffusion import to_model_space
from synth_helpers import PixelLinear, tiny_sampler, tiny_unet

LABELS = np.array([0, 1] * 4)


def _target_prob(clf, images, labels):
    probs = clf(to_model_space(images)).softmax(1)
    return probs[torch.arange(len(labels)), torch.as_tensor(labels)].mean().item()


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_scale_zero_reproduces_the_plain_sampler_exactly(sampler):
    """s = 0 must give bit-identical samples to the unguided pipeline for the same seeds; s > 0 must not."""
    unet, clf = tiny_unet(num_classes=2), PixelLinear()
    seeds = sample_seeds(3, range(len(LABELS)))
    plain = GuidedPipeline(unet, tiny_sampler(sampler))(LABELS, num_inference_steps=4, seeds=seeds)
    zero = GuidedPipeline(unet, tiny_sampler(sampler), create_guidance("noisy_classifier", clf, scale=0.0))(
        LABELS, num_inference_steps=4, seeds=seeds)
    guided = GuidedPipeline(unet, tiny_sampler(sampler), create_guidance("noisy_classifier", clf, scale=20.0))(
        LABELS, num_inference_steps=4, seeds=seeds)
    np.testing.assert_array_equal(zero, plain)
    assert (guided != plain).any()


@pytest.mark.parametrize("sampler,form,clip", [("ddpm", "eps", True), ("ddpm", "mean", True), ("ddim", "eps", False)])
def test_guidance_raises_the_guiding_classifiers_target_probability(sampler, form, clip):
    """A fixed linear pixel classifier: guided samples must score their target class higher than unguided ones."""
    unet, clf = tiny_unet(num_classes=2), PixelLinear()
    labels = np.array([0, 1] * 6)
    seeds = sample_seeds(0, range(len(labels)))
    sched = lambda: tiny_sampler(sampler, clip_sample=clip)  # noqa: E731
    plain = GuidedPipeline(unet, sched())(labels, num_inference_steps=6, seeds=seeds)
    guide = create_guidance("noisy_classifier", clf, scale=30.0, form=form)
    guided = GuidedPipeline(unet, sched(), guide)(labels, num_inference_steps=6, seeds=seeds)
    assert _target_prob(clf, guided, labels) > _target_prob(clf, plain, labels) + 0.1


def test_cond_fn_matches_the_analytic_logistic_gradient():
    """For log p(y|x) = w_y.x - logsumexp, s * grad = s * (w_y - sum_k p_k w_k) per sample (Dhariwal & Nichol toy)."""
    clf = PixelLinear(num_classes=3, dims=5)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 2, 1, 2])
    cond = classifier_guidance(x, y, log_probs=lambda v: clf(v).log_softmax(1), scale=2.5)
    w = clf.weight
    p = clf(x).softmax(1)
    np.testing.assert_allclose(cond, 2.5 * (w[y] - p @ w), rtol=1e-5, atol=1e-7)


def test_clean_classifier_guidance_differentiates_through_x0_hat():
    """Clean guidance: grad wrt x_t = grad of log p(y | x0_hat) at x0_hat = (x_t - sqrt(1-a) eps)/sqrt(a), / sqrt(a)."""
    clf = PixelLinear(num_classes=2)
    g = torch.Generator().manual_seed(1)
    x_t, eps = torch.randn(3, 3, 8, 8, generator=g), torch.randn(3, 3, 8, 8, generator=g)
    y, a = torch.tensor([1, 0, 1]), torch.tensor(0.3)
    cond = create_guidance("clean_classifier", clf).cond(x_t, torch.tensor(10), y, eps=eps, alpha_bar=a, scale=1.5)
    x0 = ((x_t - (1 - a).sqrt() * eps) / a.sqrt()).flatten(1)
    p = clf(x0).softmax(1)
    expected = 1.5 * (clf.weight[y] - p @ clf.weight) / a.sqrt()
    np.testing.assert_allclose(cond.flatten(1), expected, rtol=1e-4, atol=1e-6)


def test_eps_form_and_schedules():
    """eps' = eps - sqrt(1 - abar) * cond; linear decay goes from s to s/n."""
    eps, cond = torch.ones(2, 3), torch.full((2, 3), 2.0)
    np.testing.assert_allclose(eps_form(eps, cond, alpha_bar=0.75), torch.zeros(2, 3), atol=1e-7)
    assert schedule_factor("constant", step=7, num_steps=10) == 1.0
    assert [schedule_factor("linear", step=i, num_steps=4) for i in range(4)] == [1.0, 0.75, 0.5, 0.25]
    assert set(GUIDANCE.names()) >= {"noisy_classifier", "clean_classifier"}


def test_per_sample_seeds_make_batch_size_irrelevant():
    """Sample i depends on (base_seed, i) only: batch sizes 3 and 8 give the same guided images; so does a slice."""
    unet, clf = tiny_unet(num_classes=2), PixelLinear()
    pipe = GuidedPipeline(unet, tiny_sampler("ddpm"), create_guidance("noisy_classifier", clf, scale=10.0))
    seeds = sample_seeds(5, range(len(LABELS)))
    whole = pipe(LABELS, num_inference_steps=3, seeds=seeds, batch_size=8)
    ones = pipe(LABELS, num_inference_steps=3, seeds=seeds, batch_size=3)
    tail = pipe(LABELS[5:], num_inference_steps=3, seeds=sample_seeds(5, range(5, 8)), batch_size=8)
    assert np.abs(whole.astype(int) - ones).max() <= 1 and (whole == ones).mean() > 0.99
    assert np.abs(whole[5:].astype(int) - tail).max() <= 1
    assert len(set(seeds.tolist())) == len(seeds) and (sample_seeds(6, range(8)) != seeds).all()


def test_mean_form_needs_the_ancestral_sampler():
    with pytest.raises(UsageError, match="ddpm"):
        guide = create_guidance("noisy_classifier", PixelLinear(), form="mean")
        GuidedPipeline(tiny_unet(), tiny_sampler("ddim"), guide)


@pytest.mark.parametrize(("clip", "want"), [(None, True), (False, False), (True, True)])
def test_clip_sample_option_overrides_the_training_schedule_only_when_set(clip, want):
    from curate.config import from_mapping
    from synth.methods import ClassifierGuidanceConfig, guidance_sampler

    trained = dict(tiny_sampler("ddpm").config)  # trained with clip_sample=True
    cfg = from_mapping(ClassifierGuidanceConfig, {} if clip is None else {"clip_sample": clip})
    sampler = guidance_sampler(cfg, trained)
    assert sampler.config.clip_sample is want
    assert np.allclose(sampler.alphas_cumprod, tiny_sampler("ddim").alphas_cumprod)


@pytest.mark.parametrize("side", [32, 64, 20])
def test_pixel_classifier_sees_what_the_model_saw_in_training(side):
    """The differentiable path ([-1, 1] images) must match the model's own uint8 preprocessing, including the
    antialiased resize when the generated size differs from the classifier's (a plain bilinear shrink would not)."""
    torch.manual_seed(0)
    model = create_model("convnet", num_classes=3).eval()
    images = np.random.default_rng(0).integers(0, 256, (4, side, side, 3), dtype=np.uint8)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        want = model(model.preprocess(images))
        got = PixelClassifier(model)(x)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
