"""Tiny random-weight components for the synth tests (diffusers get_dummy_components style)."""

import torch
from torch import nn

from synth.pipeline import make_sampler
from synth.train_diffusion import DiffusionModel, build_unet, make_scheduler


def tiny_unet(*, num_classes=None, seed=0):
    return build_unet(image_size=8, block_out_channels=(4, 8), layers_per_block=1, num_classes=num_classes, seed=seed)


def tiny_sampler(name="ddim", *, timesteps=100, **overrides):
    return make_sampler(name, tiny_scheduler_config(timesteps), **overrides)


class PixelLinear(nn.Module):
    """A fixed linear classifier on pixels, ignoring t: log p(y|x) = w_y . x - logsumexp (analytic gradients)."""

    def __init__(self, *, num_classes=2, dims=3 * 8 * 8, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(num_classes, dims, generator=g) * 0.05, requires_grad=False)

    def forward(self, x, t=None):
        return x.flatten(1) @ self.weight.T


def tiny_conditioned(kind="cross_attention", *, dim=6, seed=0):
    """A tiny embedding-conditioned UNet (8x8, cross-attention at level 1 and the middle) and its conditioner."""
    from synth.conditioning import Conditioner, ConditionedUNet, context_width

    unet = build_unet(image_size=8, block_out_channels=(4, 8), layers_per_block=1, attention_levels=(1,),
                      conditioning=kind, context_dim=8, seed=seed)
    g = torch.random.fork_rng(devices=[])
    with g:
        torch.manual_seed(seed)
        conditioner = Conditioner(dim, context_width(unet, kind), kind=kind)
    return ConditionedUNet(unet, conditioner)


def tiny_scheduler_config(timesteps=100):
    return dict(make_scheduler(num_train_timesteps=timesteps).config)


def tiny_conditioned_diffusion(names, model=None):
    """A :class:`DiffusionModel` around :func:`tiny_conditioned` (or ``model``) and its conditioner."""
    model = model or tiny_conditioned()
    return DiffusionModel(model.unet, tiny_scheduler_config(), names, conditioner=model.conditioner)
