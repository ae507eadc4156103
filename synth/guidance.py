"""Classifier guidance (Dhariwal & Nichol, "Diffusion Models Beat GANs"), as registry components.

``cond = s * grad_{x_t} sum_b log p(y_b | x_t)`` steers each sampling step toward class ``y``:

- **eps form** (any eps-prediction scheduler, DDIM included), guided-diffusion's ``condition_score``:
  the UNGUIDED ``x0_hat`` is clipped (when the model clips), ``eps`` re-derived from it, then
  ``eps' = eps - sqrt(1 - abar_t) * cond`` is stepped with clipping off (:func:`condition_score`);
  clipping the guided ``x0_hat`` instead would cut the guidance off wherever it leaves [-1, 1];
- **mean form** (ancestral DDPM), ``condition_mean``: ``mu' = mu + Sigma * cond`` with ``Sigma`` the
  variance the scheduler samples with (its ``variance_type``).

Components (:data:`synth.registry.GUIDANCE`, chosen by name) differ in how ``log p(y | x_t)`` is
computed and in :meth:`ClassifierGuidance.from_inputs`, which builds their classifier:
``noisy_classifier`` reads ``x_t`` and the original timestep ``t`` (a classifier trained on noised
images, :mod:`synth.noisy_classifier`); ``clean_classifier`` applies any registry classifier to the
predicted clean image ``x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``, with ``eps`` held
fixed, so ``d x0_hat / d x_t = 1 / sqrt(abar_t)`` and no gradient flows through the UNet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from curate.errors import UsageError
from synth.methods import Guide
from synth.registry import GUIDANCE
from synth.scorers import Scorer, model_scorer, weights_digest

if TYPE_CHECKING:  # pragma: no cover
    from synth.methods import SynthInputs

Schedule = Literal["constant", "linear"]
Form = Literal["eps", "mean"]
SCHEDULES = ("constant", "linear")
FORMS = ("eps", "mean")


def classifier_guidance(
    x_t: torch.Tensor, y: torch.Tensor, *, log_probs: Callable[[torch.Tensor], torch.Tensor], scale: float
) -> torch.Tensor:
    """``cond_fn``: ``scale * grad_{x_t} sum_b log_probs(x_t)[b, y_b]`` in float32; only ``x_t`` is differentiated."""
    with torch.enable_grad():
        x = x_t.detach().float().requires_grad_(True)
        selected = log_probs(x).gather(1, y.reshape(-1, 1).to(x.device)).sum()
        (grad,) = torch.autograd.grad(selected, x)
    return scale * grad


def eps_form(eps: torch.Tensor, cond: torch.Tensor, *, alpha_bar: torch.Tensor | float) -> torch.Tensor:
    """``eps - sqrt(1 - abar_t) * cond``: the guided noise prediction."""
    return eps - torch.as_tensor(1.0 - alpha_bar).sqrt().to(eps) * cond.to(eps.dtype)


def condition_score(x_t: torch.Tensor, eps: torch.Tensor, cond: torch.Tensor, *, alpha_bar: torch.Tensor | float,
                    clip_range: float | None) -> torch.Tensor:
    """guided-diffusion's ``condition_score``: the guided eps, to be stepped with clipping OFF.

    ``x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)`` is clipped to ``[-clip_range, clip_range]`` (None:
    no clipping), ``eps`` is re-derived from it, then :func:`eps_form` applies ``cond``.
    """
    a = torch.as_tensor(alpha_bar).to(eps)
    if clip_range is not None:
        x0 = ((x_t - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-clip_range, clip_range)
        eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
    return eps_form(eps, cond, alpha_bar=a)


def mean_shift(mean: torch.Tensor, cond: torch.Tensor, *, variance: torch.Tensor | float) -> torch.Tensor:
    """``mu + Sigma * cond``: the guided posterior mean (``variance`` scalar or per-element)."""
    return mean + torch.as_tensor(variance).to(mean) * cond.to(mean.dtype)


def schedule_factor(schedule: Schedule, *, step: int, num_steps: int) -> float:
    """Multiplier of the scale at sampling step ``step`` of ``num_steps``: 1, or ``(n - i) / n`` (linear decay)."""
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return (num_steps - step) / num_steps
    raise UsageError(f"`schedule` must be one of {', '.join(SCHEDULES)}, got {schedule!r}")


class ClassifierGuidance:
    """A guidance component: ``scale``, its ``schedule`` over the sampling steps, and the ``form`` it is applied in.

    Subclasses define :meth:`log_probs` and :meth:`from_inputs`; the pipeline calls :meth:`cond` once per step.
    """

    def __init__(self, classifier: nn.Module, *, scale: float = 1.0, schedule: Schedule = "constant",
                 form: Form = "eps"):
        if scale < 0:
            raise UsageError(f"guidance `scale` must be >= 0, got {scale}")
        if schedule not in SCHEDULES:
            raise UsageError(f"guidance `schedule` must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        if form not in FORMS:
            raise UsageError(f"guidance `form` must be one of {', '.join(FORMS)}, got {form!r}")
        self.classifier = classifier.eval()
        for p in self.classifier.parameters():
            p.requires_grad_(False)
        self.scale, self.schedule, self.form = float(scale), schedule, form

    def scale_at(self, step: int, num_steps: int) -> float:
        return self.scale * schedule_factor(self.schedule, step=step, num_steps=num_steps)

    @classmethod
    def from_inputs(cls, cfg: Any, inputs: "SynthInputs", *, alphas_cumprod: torch.Tensor, seed: int, device: str,
                    progress: bool) -> Guide:  # pragma: no cover - abstract
        """Build the component from a synth step's inputs: its classifier (trained here or given), and that
        classifier as a :class:`~synth.scorers.Scorer` of uint8 images, so the step can keep it from filtering.

        ``cfg`` is the method config: ``guidance_scale``, ``schedule``, ``form`` and the entry's own options.
        """
        raise NotImplementedError

    def log_probs(self, x_t: torch.Tensor, t: torch.Tensor, *, eps: torch.Tensor,
                  alpha_bar: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def cond(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor, *, eps: torch.Tensor,
             alpha_bar: torch.Tensor, scale: float) -> torch.Tensor:
        """``scale * grad_{x_t} log p(y | x_t)``."""
        fn = lambda x: self.log_probs(x, t, eps=eps.detach().float(), alpha_bar=alpha_bar)  # noqa: E731
        return classifier_guidance(x_t, y, log_probs=fn, scale=scale)


def _options(cfg: Any) -> dict[str, Any]:
    return {"scale": cfg.guidance_scale, "schedule": cfg.schedule, "form": cfg.form}


class NoisyClassifierGuidance(ClassifierGuidance):
    """``log softmax(classifier(x_t, t))``: the classifier was trained on noised images with ``t`` as input."""

    @classmethod
    def from_inputs(cls, cfg, inputs, *, alphas_cumprod, seed, device, progress):
        """Trains a noise-aware classifier here on the real rows (``noisy_steps``, ``noisy_width``, ...)."""
        from synth.noisy_classifier import save_noisy_classifier_file, train_noisy_classifier
        from synth.train_diffusion import to_model_space

        clf, losses = train_noisy_classifier(
            inputs.real_images, inputs.real_labels, alphas_cumprod=alphas_cumprod,
            num_classes=len(inputs.class_names), steps=cfg.noisy_steps, batch_size=cfg.noisy_batch_size,
            lr=cfg.noisy_lr, width=cfg.noisy_width, seed=seed, device=device, progress=progress)

        @torch.no_grad()
        def classify(images):  # the noise-aware classifier at t = 0
            x = to_model_space(images).to(device)
            return torch.cat([clf(b, 0).softmax(1) for b in x.split(256)]).cpu().numpy()

        return Guide(component=cls(clf, **_options(cfg)),
                     scorer=Scorer("noisy_classifier (trained in this step)", weights_digest(clf), classify),
                     files={"noisy_classifier.safetensors": lambda p: save_noisy_classifier_file(clf, p)},
                     metrics={"noisy_classifier_loss": round(float(losses[-max(1, len(losses) // 10):].mean()), 4)})

    def log_probs(self, x_t, t, *, eps, alpha_bar):
        return F.log_softmax(self.classifier(x_t, t).float(), dim=1)


class CleanClassifierGuidance(ClassifierGuidance):
    """``log softmax(classifier(x0_hat))``, a classifier of clean images in [-1, 1] (see :class:`PixelClassifier`)."""

    @classmethod
    def from_inputs(cls, cfg, inputs, *, alphas_cumprod, seed, device, progress):
        """Wraps the step's classifier (``inputs.classifier`` or ``with.classifier_model``)."""
        if inputs.classifier is None:
            raise UsageError("guidance 'clean_classifier' needs a classifier: wire a `train` step to "
                             "inputs.classifier or name a registry model in with.classifier_model")
        model = inputs.classifier
        return Guide(component=cls(PixelClassifier(model).to(device), **_options(cfg)),
                     scorer=model_scorer(model, name=inputs.classifier_name, device=device))

    def log_probs(self, x_t, t, *, eps, alpha_bar):
        a = torch.as_tensor(alpha_bar).to(x_t)
        x0_hat = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
        return F.log_softmax(self.classifier(x0_hat).float(), dim=1)


class PixelClassifier(nn.Module):
    """A curate registry model as a differentiable classifier of diffusion-space images ([-1, 1] NCHW).

    Mirrors the model's ``preprocess`` (``x / 255``, bilinear resize, mean/std) without the
    uint8 round trip, so gradients reach the pixels.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()
        pre = model.preprocess
        self.size = tuple(pre.size)
        self.register_buffer("mean", torch.tensor(pre.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pre.std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x + 1) / 2
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", antialias=True, align_corners=False)
        return self.model((x - self.mean) / self.std)


def create_guidance(name: str, classifier: nn.Module, **options) -> ClassifierGuidance:
    """``GUIDANCE.get(name)(classifier, **options)``: e.g. ``create_guidance("noisy_classifier", clf, scale=2.0)``."""
    return GUIDANCE.get(name)(classifier, **options)
