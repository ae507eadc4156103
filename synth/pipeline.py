"""A thin guided sampling pipeline over diffusers components: one loop that reads like the paper.

A guided eps step follows guided-diffusion's ``condition_score``: the unguided ``x0_hat`` is clipped
(when the scheduler clips), eps is re-derived from it and guided, and a copy of the scheduler with
clipping off takes the step. A guided mean step follows ``condition_mean`` with the variance the
ancestral scheduler samples with (:func:`ancestral_variance`). Unguided steps (no guidance, or
scale 0) are the scheduler's own; a DDIM step then re-derives eps from the clipped ``x0_hat``
(``use_clipped_model_output``), as guided-diffusion's ``ddim_sample`` does, so guidance scales
near 0 approach the unguided sample.

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
from synth.guidance import ClassifierGuidance, condition_score, mean_shift
from synth.train_diffusion import to_uint8

Sampler = Literal["ddim", "ddpm"]
SAMPLERS = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}
MEAN_FORM_VARIANCES = ("fixed_small", "fixed_small_log", "fixed_large", "learned", "learned_range")


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


def ancestral_variance(variance_type: str, alphas_cumprod: torch.Tensor, timesteps: Sequence[int], i: int,
                       var_values: torch.Tensor | None = None) -> torch.Tensor:
    """``Sigma`` of step ``i`` of the respaced chain ``timesteps`` (descending), as the DDPM scheduler samples it.

    With ``beta_t = 1 - abar_t / abar_prev`` and ``beta~_t = beta_t (1 - abar_prev) / (1 - abar_t)``:
    fixed_small(_log) ``beta~_t``; fixed_large ``beta_t``; learned_range ``exp(f log beta_t + (1 - f) log beta~_t)``
    with ``f = (v + 1) / 2``; learned ``v`` itself (diffusers reads that output as the variance). At the last step
    no noise is drawn and ``beta~`` is 0, so fixed_large and learned_range use the ``beta~`` of the step before,
    as guided-diffusion's ``np.append(posterior_variance[1], ...)`` does.
    """
    def abar(k: int) -> torch.Tensor:
        return alphas_cumprod[timesteps[k]] if k < len(timesteps) else torch.tensor(1.0)

    def betas(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        beta = 1 - abar(k) / abar(k + 1)
        return beta, beta * (1 - abar(k + 1)) / (1 - abar(k))

    beta, tilde = betas(i)
    clipped = betas(i - 1)[1] if i == len(timesteps) - 1 and i > 0 else tilde
    if variance_type in ("fixed_small", "fixed_small_log"):
        return tilde
    if variance_type == "fixed_large":
        return clipped if i == len(timesteps) - 1 else beta
    if variance_type in ("learned", "learned_range") and var_values is None:
        raise UsageError(f"variance_type {variance_type!r} needs a UNet that predicts the variance "
                         "(out_channels = 2 x in_channels)")
    if variance_type == "learned_range":
        frac = (var_values + 1) / 2
        return torch.exp(frac * torch.log(beta).to(var_values) + (1 - frac) * torch.log(clipped).to(var_values))
    if variance_type == "learned":
        return var_values
    raise UsageError(f"the mean form supports variance_type {', '.join(MEAN_FORM_VARIANCES)}, "
                     f"got {variance_type!r}; use form eps")


class GuidedPipeline:
    """``unet`` (eps prediction) + ``scheduler`` (any eps scheduler) + optional classifier ``guidance``."""

    def __init__(self, unet: UNet2DModel, scheduler, guidance: ClassifierGuidance | None = None):
        if guidance is not None:
            config = scheduler.config
            if guidance.form == "mean" and not isinstance(scheduler, DDPMScheduler):
                raise UsageError("guidance form 'mean' shifts the ancestral (DDPM) posterior mean; "
                                 f"use the ddpm sampler or form 'eps' (got {type(scheduler).__name__})")
            if guidance.form == "mean" and config.variance_type not in MEAN_FORM_VARIANCES:
                raise UsageError(f"the mean form supports variance_type {', '.join(MEAN_FORM_VARIANCES)}, "
                                 f"got {config.variance_type!r}; use form eps")
            if config.get("prediction_type", "epsilon") != "epsilon":
                raise UsageError(f"classifier guidance needs an eps-prediction model; the scheduler's "
                                 f"prediction_type is {config.prediction_type!r}")
            if config.get("thresholding", False):
                raise UsageError("classifier guidance clips the unguided x0 as guided-diffusion does; dynamic "
                                 "thresholding is not supported: set the scheduler's thresholding to false")
        self.unet, self.scheduler, self.guidance = unet.eval(), scheduler, guidance

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def __call__(self, class_labels: Sequence[int] | np.ndarray, *, num_inference_steps: int = 50,
                 seeds: Sequence[int] | np.ndarray, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """uint8 images (N, H, W, C), one per label; sample ``i`` is drawn from ``seeds[i]`` alone."""
        labels = self._conditions(class_labels)
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

    @staticmethod
    def _conditions(values: Sequence[int] | np.ndarray) -> torch.Tensor:
        """What conditions each sample, as the UNet reads it (here class labels (N,))."""
        return torch.as_tensor(np.asarray(values), dtype=torch.long).reshape(-1)

    def _eps_model(self, x: torch.Tensor, t: int, y: torch.Tensor) -> torch.Tensor:
        """The UNet's output (eps, and variance channels if it learns them) for conditions ``y``."""
        conditional = self.unet.config.num_class_embeds is not None
        return self.unet(x, t, class_labels=y if conditional else None).sample

    def _shape(self) -> tuple[int, int, int]:
        size = self.unet.config.sample_size
        return (self.unet.config.in_channels, size, size)

    @torch.no_grad()
    def sample(self, y: torch.Tensor, generators: list[torch.Generator], *, num_inference_steps: int) -> torch.Tensor:
        """The sampling loop for one batch; returns float (B, C, H, W) in [-1, 1]."""
        sched = copy.deepcopy(self.scheduler)
        sched.set_timesteps(num_inference_steps)
        unclipped = self._unclipped(sched, num_inference_steps)
        clip_range = sched.config.clip_sample_range if sched.config.get("clip_sample", False) else None
        device, y = self.device, y.to(self.device)
        x = randn_tensor((len(y), *self._shape()), generator=generators, device=device) * sched.init_noise_sigma
        timesteps = sched.timesteps.tolist()
        for i, t in enumerate(timesteps):
            out = self._eps_model(sched.scale_model_input(x, t), t, y)
            eps, var_values = self._split(out)
            scale = self.guidance.scale_at(i, len(timesteps)) if self.guidance is not None else 0.0
            if scale == 0:
                x = sched.step(self._model_output(sched, eps, var_values), t, x, generator=generators,
                               **self._unguided_options(sched)).prev_sample
                continue
            alpha_bar = sched.alphas_cumprod[t].to(device)
            cond = self.guidance.cond(x, torch.tensor(t, device=device), y, eps=eps, alpha_bar=alpha_bar, scale=scale)
            if self.guidance.form == "eps":
                eps = condition_score(x, eps, cond, alpha_bar=alpha_bar, clip_range=clip_range)
                x = unclipped.step(self._model_output(sched, eps, var_values), t, x, generator=generators).prev_sample
            else:
                x_prev = sched.step(self._model_output(sched, eps, var_values), t, x, generator=generators).prev_sample
                variance = ancestral_variance(sched.config.variance_type, sched.alphas_cumprod, timesteps, i,
                                              var_values)
                x = mean_shift(x_prev, cond, variance=torch.as_tensor(variance).to(device))
        return x

    def _unclipped(self, sched, num_inference_steps: int):
        """The scheduler with clipping off, for guided eps steps (None when they cannot occur)."""
        if self.guidance is None or self.guidance.form != "eps":
            return None
        free = type(sched).from_config({**dict(sched.config), "clip_sample": False})
        free.set_timesteps(num_inference_steps)
        return free

    @staticmethod
    def _unguided_options(sched) -> dict:
        return {"use_clipped_model_output": True} if isinstance(sched, DDIMScheduler) else {}

    def _model_output(self, sched, eps: torch.Tensor, var_values: torch.Tensor | None) -> torch.Tensor:
        return torch.cat([eps, var_values], 1) if self._learned_variance(sched) else eps

    def _split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """eps, and the learned variance channels when the UNet predicts them (out_channels = 2 * in_channels)."""
        c = self.unet.config.in_channels
        return (out[:, :c], out[:, c:]) if out.shape[1] == 2 * c else (out, None)

    @staticmethod
    def _learned_variance(sched) -> bool:
        """Whether the scheduler reads variance channels: DDPM only (DDIM keeps a DDPM config's variance_type)."""
        return isinstance(sched, DDPMScheduler) and sched.config.variance_type in ("learned", "learned_range")
