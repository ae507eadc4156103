"""Tiny random text-to-image components for the class-token tests (METHODS.md 7.2: cross-attention UNet, 2-layer CLIP)."""

import torch
from torch import nn

from synth.class_tokens import TextToImage
from synth.text_conditioning import text_conditioner
from synth.train_diffusion import DiffusionModel, build_unet
from synth_helpers import tiny_scheduler_config

NAMES = ["red", "blue"]


def tiny_text_model(*, names=NAMES, seed=0, vae=None) -> DiffusionModel:
    """An 8x8 pixel-space (or latent, with ``vae``) UNet with cross-attention on a 2-layer, 16-wide CLIP text encoder."""
    conditioner = text_conditioner(names, context_dim=16, seed=seed)
    channels = 3 if vae is None else vae.config.latent_channels
    unet = build_unet(image_size=8 if vae is None else 4, block_out_channels=(4, 8), attention_levels=(1,),
                      conditioning="cross_attention", context_dim=16, channels=channels, seed=seed)
    return DiffusionModel(unet, tiny_scheduler_config(), list(names),
                          conditioner=conditioner, vae=vae)


def tiny_t2i(**kw) -> TextToImage:
    return TextToImage.from_diffusion(tiny_text_model(**kw))


class MeanColour(nn.Module):
    """A toy differentiable classifier: logits = mean RGB (in [-1, 1]) times a fixed matrix; class 0 is "red"."""

    def __init__(self):
        super().__init__()
        self.register_buffer("weight", torch.tensor([[4.0, -2.0, -2.0], [-2.0, -2.0, 4.0]]))

    def forward(self, x):
        return x.mean((2, 3)) @ self.weight.T
