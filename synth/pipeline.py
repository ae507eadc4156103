"""A thin guided sampling pipeline over diffusers components: one loop that reads like the paper.

Each sample ``i`` owns a ``torch.Generator`` seeded from ``(base_seed, i)`` (:func:`sample_seeds`);
its initial noise and every ancestral noise draw come from it alone, so a sample does not depend
on the batch it was drawn in, nor on a resumed or re-batched run.
"""

from __future__ import annotations

import copy
from typing import Literal, Sequence

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from curate.errors import UsageError
from synth.guidance import ClassifierGuidance, eps_form, mean_shift
from synth.train_diffusion import to_uint8

Sampler = Literal["ddim", "ddpm"]
SAMPLERS = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}


def sample_seeds(base_seed: int, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """One 63-bit seed per sample index, from ``SeedSequence([base_seed, index])``: independent streams."""
    return np.array([np.random.SeedSequence([int(base_seed), int(i)]).generate_state(1, dtype=np.uint64)[0] >> 1
                     for i in np.asarray(indices).reshape(-1)], dtype=np.int64)


def make_sampler(name: Sampler, scheduler_config: dict, **overrides) -> DDIMScheduler | DDPMScheduler:
    """A DDIM (eta 0) or DDPM scheduler with the training noise schedule of ``scheduler_config``.

    ``overrides`` change config entries, e.g. ``clip_sample=False``.
    """
    if name not in SAMPLERS:
        raise UsageError(f"`sampler` must be one of {', '.join(SAMPLERS)}, got {name!r}")
    return SAMPLERS[name].from_config({**dict(scheduler_config), **overrides})


class GuidedPipeline:
    """``unet`` (eps prediction) + ``scheduler`` (any eps scheduler) + optional classifier ``guidance``."""

    def __init__(self, unet: UNet2DModel, scheduler, guidance: ClassifierGuidance | None = None):
        if guidance is not None and guidance.form == "mean" and not isinstance(scheduler, DDPMScheduler):
            raise UsageError("guidance form 'mean' shifts the ancestral (DDPM) posterior mean; "
                             f"use the ddpm sampler or form 'eps' (got {type(scheduler).__name__})")
        self.unet, self.scheduler, self.guidance = unet.eval(), scheduler, guidance

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def __call__(self, class_labels: Sequence[int] | np.ndarray, *, num_inference_steps: int = 50,
                 seeds: Sequence[int] | np.ndarray, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """uint8 images (N, H, W, C), one per label; sample ``i`` is drawn from ``seeds[i]`` alone."""
        labels = torch.as_tensor(np.asarray(class_labels), dtype=torch.long).reshape(-1)
        seeds = np.asarray(seeds).reshape(-1)
        if len(seeds) != len(labels):
            raise UsageError(f"`seeds` has {len(seeds)} entries but `class_labels` has {len(labels)}")
        out = []
        for start in tqdm(range(0, len(labels), batch_size), disable=not progress, desc="sample", unit="batch"):
            stop = start + batch_size
            gens = [torch.Generator().manual_seed(int(s)) for s in seeds[start:stop]]
            out.append(to_uint8(self.sample(labels[start:stop], gens, num_inference_steps=num_inference_steps)))
        if not out:
            c, h, w = self._shape()
            return np.zeros((0, h, w, c), dtype=np.uint8)
        return np.concatenate(out)

    def _shape(self) -> tuple[int, int, int]:
        size = self.unet.config.sample_size
        return (self.unet.config.in_channels, size, size)

    @torch.no_grad()
    def sample(self, y: torch.Tensor, generators: list[torch.Generator], *, num_inference_steps: int) -> torch.Tensor:
        """The sampling loop for one batch; returns float (B, C, H, W) in [-1, 1]."""
        sched = copy.deepcopy(self.scheduler)
        sched.set_timesteps(num_inference_steps)
        device, y = self.device, y.to(self.device)
        x = randn_tensor((len(y), *self._shape()), generator=generators, device=device) * sched.init_noise_sigma
        conditional = self.unet.config.num_class_embeds is not None
        timesteps = sched.timesteps.tolist()
        for i, t in enumerate(timesteps):
            out = self.unet(sched.scale_model_input(x, t), t, class_labels=y if conditional else None).sample
            eps, var_values = self._split(out)
            scale = self.guidance.scale_at(i, len(timesteps)) if self.guidance is not None else 0.0
            cond = None
            if scale > 0:
                alpha_bar = sched.alphas_cumprod[t].to(device)
                cond = self.guidance.cond(x, torch.tensor(t, device=device), y, eps=eps, alpha_bar=alpha_bar,
                                          scale=scale)
                if self.guidance.form == "eps":
                    eps = eps_form(eps, cond, alpha_bar=alpha_bar)
            model_output = torch.cat([eps, var_values], 1) if self._learned_variance(sched) else eps
            x_prev = sched.step(model_output, t, x, generator=generators).prev_sample
            if cond is not None and self.guidance.form == "mean":
                prev_t = timesteps[i + 1] if i + 1 < len(timesteps) else -1
                x_prev = mean_shift(x_prev, cond, variance=self._posterior_variance(sched, t, prev_t, var_values))
            x = x_prev
        return x

    def _split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """eps, and the learned variance channels when the UNet predicts them (out_channels = 2 * in_channels)."""
        c = self.unet.config.in_channels
        return (out[:, :c], out[:, c:]) if out.shape[1] == 2 * c else (out, None)

    @staticmethod
    def _learned_variance(sched) -> bool:
        return getattr(sched.config, "variance_type", None) in ("learned", "learned_range")

    def _posterior_variance(self, sched, t: int, prev_t: int, var_values: torch.Tensor | None) -> torch.Tensor:
        """``beta~_t = beta_t (1 - abar_prev) / (1 - abar_t)``, or the learned interpolation of Improved DDPM."""
        ab_t = sched.alphas_cumprod[t]
        ab_prev = sched.alphas_cumprod[prev_t] if prev_t >= 0 else torch.tensor(1.0)
        beta_t = 1 - ab_t / ab_prev
        variance = (1 - ab_prev) / (1 - ab_t) * beta_t
        if var_values is not None and sched.config.variance_type == "learned_range":
            frac = (var_values + 1) / 2
            log_var = frac * torch.log(beta_t) + (1 - frac) * torch.log(variance.clamp(min=1e-20))
            return log_var.exp()
        return variance.to(self.device)
