"""The guided pipeline against a direct transcription of openai/guided-diffusion on a tiny UNet.

``Reference`` restates ``gaussian_diffusion.py`` (``p_mean_variance``, ``condition_mean``, ``condition_score``,
``p_sample``, ``ddim_sample`` with eta 0) over the respaced chain, in float64, with its own cond_fn (the
analytic gradient of a linear pixel classifier). The pipeline must agree to float tolerance for clipping on
and off, each ``variance_type`` of the mean form, and ``s = 0`` must give the unguided sample.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import UNet2DModel
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from synth.guidance import create_guidance
from synth.pipeline import GuidedPipeline, sample_seeds
from synth_helpers import PixelLinear, tiny_sampler, tiny_unet

LABELS = torch.tensor([0, 1, 1, 0])
STEPS = 6


class PositiveVariance(nn.Module):
    """A learned-variance UNet whose variance channels are mapped into (0, 0.02): diffusers' ``learned`` reads
    that output as the variance itself, so it must be positive."""

    def __init__(self, unet):
        super().__init__()
        self.inner, self.config = unet, unet.config

    def forward(self, x, t, class_labels=None):
        out = self.inner(x, t, class_labels=class_labels).sample
        c = out.shape[1] // 2
        return SimpleNamespace(sample=torch.cat([out[:, :c], 0.02 * torch.sigmoid(out[:, c:])], 1))


def _unet(variance_type):
    if variance_type not in ("learned", "learned_range"):
        return tiny_unet(num_classes=2)
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=6, layers_per_block=1, block_out_channels=(4, 8),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=1, num_class_embeds=2, attention_head_dim=4)
    return PositiveVariance(unet) if variance_type == "learned" else unet


class Reference:
    """guided-diffusion's GaussianDiffusion over the respaced chain; index k = 0 is the last sampling step."""

    def __init__(self, alphas_cumprod, timesteps, *, clip, variance_type):
        self.ts = list(reversed(timesteps))  # respaced index k -> original timestep
        ac = alphas_cumprod.double()[self.ts]
        ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
        betas = 1 - ac / ac_prev
        self.ac, self.ac_prev, self.betas = ac, ac_prev, betas
        self.sqrt_recip_ac, self.sqrt_recipm1_ac = (1 / ac).sqrt(), (1 / ac - 1).sqrt()
        self.posterior_variance = betas * (1 - ac_prev) / (1 - ac)
        pv = self.posterior_variance
        self.posterior_log_variance_clipped = torch.log(torch.cat([pv[1:2], pv[1:]]))
        self.coef1 = betas * ac_prev.sqrt() / (1 - ac)
        self.coef2 = (1 - ac_prev) * (1 - betas).sqrt() / (1 - ac)
        self.clip, self.variance_type = clip, variance_type

    def predict_xstart_from_eps(self, x, k, eps):
        return self.sqrt_recip_ac[k] * x - self.sqrt_recipm1_ac[k] * eps

    def predict_eps_from_xstart(self, x, k, pred_xstart):
        return (self.sqrt_recip_ac[k] * x - pred_xstart) / self.sqrt_recipm1_ac[k]

    def q_posterior_mean(self, x_start, x, k):
        return self.coef1[k] * x_start + self.coef2[k] * x

    def p_mean_variance(self, model_output, x, k):
        c = x.shape[1]
        eps, v = model_output[:, :c], model_output[:, c:]
        if self.variance_type == "learned_range":
            frac = (v + 1) / 2
            log_var = frac * torch.log(self.betas[k]) + (1 - frac) * self.posterior_log_variance_clipped[k]
        elif self.variance_type == "learned":  # diffusers' reading: the output is the variance
            log_var = torch.log(v)
        elif self.variance_type == "fixed_large":
            log_var = torch.log(torch.cat([self.posterior_variance[1:2], self.betas[1:]]))[k]
        else:  # fixed_small
            log_var = self.posterior_log_variance_clipped[k]
        pred_xstart = self.predict_xstart_from_eps(x, k, eps)
        if self.clip:
            pred_xstart = pred_xstart.clamp(-1, 1)
        variance = self.posterior_variance[k] if self.variance_type == "fixed_small" else torch.exp(log_var)
        return {"mean": self.q_posterior_mean(pred_xstart, x, k), "variance": variance, "log_variance": log_var,
                "pred_xstart": pred_xstart}

    def condition_mean(self, cond_fn, out, x, t):
        return out["mean"] + out["variance"] * cond_fn(x, t)

    def condition_score(self, cond_fn, out, x, k, t):
        eps = self.predict_eps_from_xstart(x, k, out["pred_xstart"])
        eps = eps - (1 - self.ac[k]).sqrt() * cond_fn(x, t)
        out = dict(out)
        out["pred_xstart"] = self.predict_xstart_from_eps(x, k, eps)
        out["mean"] = self.q_posterior_mean(out["pred_xstart"], x, k)
        return out

    def sample(self, model, y, generators, cond_fn, *, sampler, form):
        x = randn_tensor((len(y), 3, 8, 8), generator=generators).double()
        for k in reversed(range(len(self.ts))):
            t = self.ts[k]
            with torch.no_grad():
                out = self.p_mean_variance(model(x.float(), t, class_labels=y).sample.double(), x, k)
            if sampler == "ddim":  # ddim_sample, eta 0
                out = self.condition_score(cond_fn, out, x, k, t)
                eps = self.predict_eps_from_xstart(x, k, out["pred_xstart"])
                x = out["pred_xstart"] * self.ac_prev[k].sqrt() + (1 - self.ac_prev[k]).sqrt() * eps
                continue
            if form == "mean":  # p_sample with cond_fn
                out["mean"] = self.condition_mean(cond_fn, out, x, t)
            else:
                out = self.condition_score(cond_fn, out, x, k, t)
            if k > 0:  # diffusers draws the noise only where it is used
                noise = randn_tensor((len(y), 3, 8, 8), generator=generators).double()
                x = out["mean"] + torch.exp(0.5 * out["log_variance"]) * noise
            else:
                x = out["mean"]
        return x


def _cond_fn(clf, y, scale):
    """``s * grad_x log softmax(w x)[y]`` in closed form: ``s * (w_y - p @ w)``."""
    w = clf.weight.double()

    def cond_fn(x, t):
        p = (x.flatten(1) @ w.T).softmax(1)
        return scale * (w[y] - p @ w).reshape(x.shape)

    return cond_fn


def _compare(sampler, *, form="eps", clip=True, variance_type="fixed_small", scale=8.0):
    unet, clf = _unet(variance_type), PixelLinear()
    sched = tiny_sampler(sampler, clip_sample=clip, variance_type=variance_type)  # DDIM keeps, and must ignore, it
    seeds = sample_seeds(7, range(len(LABELS)))
    gens = lambda: [torch.Generator().manual_seed(int(s)) for s in seeds]  # noqa: E731
    guide = create_guidance("noisy_classifier", clf, scale=scale, form=form)
    ours = GuidedPipeline(unet, sched, guide).sample(LABELS, gens(), num_inference_steps=STEPS)
    ref_sched = tiny_sampler(sampler)
    ref_sched.set_timesteps(STEPS)
    ref = Reference(ref_sched.alphas_cumprod, ref_sched.timesteps.tolist(), clip=clip, variance_type=variance_type)
    expected = ref.sample(unet, LABELS, gens(), _cond_fn(clf, LABELS, scale), sampler=sampler, form=form)
    return ours.double(), expected, unet, sched, seeds


@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("scale", [0.0, 8.0])
@pytest.mark.parametrize("variance_type", ["fixed_small", "learned_range"])
def test_guided_ddim_is_condition_score(clip, scale, variance_type):
    """DDIM: clip the UNGUIDED x0 (when the model clips), re-derive eps, guide it, step without clipping; a UNet
    that also predicts the variance gives DDIM its eps channels only."""
    ours, expected, *_ = _compare("ddim", clip=clip, scale=scale, variance_type=variance_type)
    np.testing.assert_allclose(ours, expected, atol=2e-4, rtol=0)


@pytest.mark.parametrize("clip", [True, False])
def test_guided_ddpm_eps_form_is_condition_score_then_p_sample(clip):
    ours, expected, *_ = _compare("ddpm", form="eps", clip=clip)
    np.testing.assert_allclose(ours, expected, atol=2e-4, rtol=0)


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large", "learned_range", "learned"])
@pytest.mark.parametrize("clip", [True, False])
def test_guided_ddpm_mean_form_is_condition_mean_with_the_schedulers_variance(variance_type, clip):
    """mu' = mu + Sigma * cond with Sigma as the scheduler samples it (google/ddpm-cifar10-32 is fixed_large)."""
    ours, expected, *_ = _compare("ddpm", form="mean", clip=clip, variance_type=variance_type)
    np.testing.assert_allclose(ours, expected, atol=2e-4, rtol=0)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_scale_zero_is_the_unguided_sample_of_the_reference(sampler):
    """s = 0 through the reference equals the pipeline without any guidance, to float tolerance."""
    _, expected, unet, sched, seeds = _compare(sampler, scale=0.0)
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    plain = GuidedPipeline(unet, sched).sample(LABELS, gens, num_inference_steps=STEPS)
    np.testing.assert_allclose(plain.double(), expected, atol=2e-4, rtol=0)


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large", "learned_range", "learned"])
def test_ancestral_variance_is_the_references_model_variance_at_every_step(variance_type):
    """Step by step, including the last (where fixed_large takes posterior_variance[1], not beta)."""
    from synth.pipeline import ancestral_variance

    sched = tiny_sampler("ddpm")
    sched.set_timesteps(STEPS)
    timesteps = sched.timesteps.tolist()
    ref = Reference(sched.alphas_cumprod, timesteps, clip=True, variance_type=variance_type)
    v = torch.linspace(-0.9, 0.9, 6).reshape(1, 6, 1, 1) * 0.01 + 0.01  # positive: `learned` reads a variance
    for i in range(len(timesteps)):
        k = len(timesteps) - 1 - i
        expected = ref.p_mean_variance(torch.cat([torch.zeros(1, 3, 1, 1), v[:, :3]], 1).double(),
                                       torch.zeros(1, 3, 1, 1, dtype=torch.float64), k)["variance"]
        ours = ancestral_variance(variance_type, sched.alphas_cumprod, timesteps, i, v[:, :3])
        np.testing.assert_allclose(torch.as_tensor(ours).double().expand_as(v[:, :3]),
                                   torch.as_tensor(expected).expand_as(v[:, :3]), rtol=1e-5, err_msg=f"step {i}")
