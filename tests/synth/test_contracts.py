"""Contracts every registered guidance method and every registered synth method must keep.

Parametrized over the registries, so a new entry (built in or from an entry point) is tested by being
registered. Inputs are tiny: an 8x8 UNet conditioned as the method needs (``conditioning``: classes or
embeddings), 8 random real images with ids and embeddings, a width-8 ConvNet.
"""

import dataclasses

import numpy as np
import pytest
import torch

from curate.config import from_mapping
from curate.errors import UsageError
from curate.models import create_model
from synth.methods import ClassifierGuidanceConfig, SynthInputs, plan_samples
from synth.pipeline import GuidedPipeline, sample_seeds
from synth.filters import METHOD_COLUMNS
from synth.registry import GUIDANCE, METHODS
from synth.train_diffusion import DiffusionModel
from synth_helpers import tiny_conditioned_diffusion, tiny_sampler, tiny_scheduler_config, tiny_unet

NAMES = ["a", "b"]
TINY = {"per_class": 3, "batch_size": 4, "num_inference_steps": 2, "noisy_steps": 3, "noisy_width": 8,
        "guidance_scale": 5.0, "min_confidence": 0.0, "max_epochs": 2, "epoch_size": 1, "train_steps": 2}


def _inputs(conditioning="classes"):
    rng = np.random.default_rng(0)
    classifier = create_model("convnet", num_classes=2, weights=None, seed=0, width=8, depth=1, im_size=8)
    if conditioning == "embeddings":
        diffusion = tiny_conditioned_diffusion(NAMES)
    elif conditioning == "text":
        from text_helpers import tiny_text_model

        diffusion = tiny_text_model(names=NAMES)
    else:
        diffusion = DiffusionModel(tiny_unet(num_classes=2), tiny_scheduler_config(), NAMES)
    return SynthInputs(diffusion, rng.integers(0, 256, size=(8, 8, 8, 3), dtype=np.uint8), np.arange(8) % 2, NAMES,
                       classifier=classifier, classifier_name="convnet (test)",
                       real_ids=np.array([f"real:{i}" for i in range(8)]),
                       real_embeddings=rng.normal(size=(8, 6)).astype(np.float32))


def _config(cls, **extra):
    names = {f.name for f in dataclasses.fields(cls)}
    return from_mapping(cls, {k: v for k, v in {**TINY, **extra}.items() if k in names})


def _guide(name, **extra):
    cfg = _config(ClassifierGuidanceConfig, guidance=name, **extra)
    return GUIDANCE.get(name).from_inputs(cfg, _inputs(), alphas_cumprod=tiny_sampler().alphas_cumprod, seed=0,
                                          device="cpu", progress=False)


def _check_scorer(scorer, *, k=2):
    assert scorer.name and len(scorer.digest) == 64
    images = np.random.default_rng(1).integers(0, 256, size=(5, 8, 8, 3), dtype=np.uint8)
    probs = scorer.classify(images)
    assert probs.shape == (5, k) and np.allclose(probs.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("name", GUIDANCE.names())
def test_guidance_contract(name):
    """Built from a step's inputs: a component of the registered class, its classifier as a Scorer; cond has x's
    shape, is per sample, vanishes at s = 0, and a small step along it raises log p(y | x_t)."""
    guide = _guide(name)
    assert isinstance(guide.component, GUIDANCE.get(name))
    _check_scorer(guide.scorer)
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    y, t, a = torch.tensor([0, 1, 1, 0]), torch.tensor(40), torch.tensor(0.5)
    comp = guide.component
    cond = comp.cond(x, t, y, eps=eps, alpha_bar=a, scale=2.0)
    assert cond.shape == x.shape and torch.isfinite(cond).all() and cond.abs().sum() > 0
    assert comp.cond(x, t, y, eps=eps, alpha_bar=a, scale=0.0).abs().max() == 0
    moved = x.clone()
    moved[0] += 1.0
    alone = comp.cond(moved, t, y, eps=eps, alpha_bar=a, scale=2.0)
    torch.testing.assert_close(alone[1:], cond[1:], atol=1e-5, rtol=1e-4)  # sample 0 does not steer the others

    def log_p(v):
        return comp.log_probs(v, t, eps=eps, alpha_bar=a).gather(1, y[:, None]).sum()

    with torch.no_grad():
        assert log_p(x + 1e-3 * cond) > log_p(x)


@pytest.mark.parametrize("name", GUIDANCE.names())
def test_guidance_at_scale_zero_gives_the_unguided_sample(name):
    unet = tiny_unet(num_classes=2)
    seeds = sample_seeds(0, range(4))
    labels = np.array([0, 1, 1, 0])
    plain = GuidedPipeline(unet, tiny_sampler())(labels, num_inference_steps=3, seeds=seeds)
    zero = GuidedPipeline(unet, tiny_sampler(), _guide(name, guidance_scale=0.0).component)(
        labels, num_inference_steps=3, seeds=seeds)
    np.testing.assert_array_equal(zero, plain)


@pytest.mark.parametrize("name", METHODS.names())
def test_synth_method_contract(name):
    """prepare -> a Guide whose steering classifier (if any) is a Scorer; generate -> one uint8 image per planned
    sample at the model's size, with its label, number and seed, and only known per-sample columns; each sample
    depends on its own seed only; a model of the other conditioning is refused in one line."""
    cls = METHODS.get(name)
    assert cls.conditioning in ("classes", "embeddings", "text")
    method, cfg, inputs = cls(), _config(cls.Config), _inputs(cls.conditioning)
    labels, numbers, seeds = plan_samples(np.arange(2), per_class=cfg.per_class, base_seed=3)
    guide = method.prepare(cfg, inputs, base_seed=3, device="cpu", progress=False)
    if guide.scorer is not None:
        _check_scorer(guide.scorer)
    gen = method.generate(cfg, inputs, guide, labels=labels, numbers=numbers, seeds=seeds, device="cpu",
                          progress=False)
    n = len(labels)
    assert gen.images.dtype == np.uint8 and gen.images.shape == (n, 8, 8, 3)
    assert gen.labels.tolist() == labels.tolist() and gen.numbers.tolist() == numbers.tolist()
    assert gen.seeds.tolist() == seeds.tolist() and gen.guidance_scale.shape == (n,)
    assert set(gen.columns) <= set(METHOD_COLUMNS) and all(len(v) == n for v in gen.columns.values())
    again = method.generate(cfg, inputs, guide, labels=labels, numbers=numbers, seeds=seeds, device="cpu",
                            progress=False)
    np.testing.assert_array_equal(again.images, gen.images)
    tail = method.generate(cfg, inputs, guide, labels=labels[2:], numbers=numbers[2:], seeds=seeds[2:], device="cpu",
                           progress=False)
    assert np.abs(tail.images.astype(int) - gen.images[2:]).max() <= 1
    other = _inputs("classes" if cls.conditioning == "embeddings" else "embeddings")
    with pytest.raises(UsageError, match=f"method {name} needs a diffusion model conditioned on .*use method") as err:
        method.prepare(cfg, other, base_seed=3, device="cpu", progress=False)
    assert "\n" not in str(err.value)
