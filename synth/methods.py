"""Synth methods: how a `synth` step generates labelled images. Registry :data:`synth.registry.METHODS`.

A method is a class with a ``Config`` (a subclass of :class:`SynthOptions`, whose fields every
method shares: counts, filters, splits, feature model), ``prepare(config, inputs, ...)`` returning
the :class:`Guide` that will steer the samples, and ``generate(config, inputs, guide, ...)``
returning :class:`Generated`. The step around it keeps the guide's classifier from filtering,
filters, records provenance, writes the new table version and measures quality the same way for
every method, so Synth II methods (class tokens, SSL-conditioned diffusion) only add a class here.
A method's ``conditioning`` says what its diffusion model must be conditioned on: ``classes`` (a
class-conditional or unconditional ``UNet2DModel``) or ``embeddings`` (:mod:`synth.conditioning`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal

import numpy as np

from curate.config import ConfigValueError, option
from synth.registry import GUIDANCE

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from synth.scorers import Scorer
    from synth.train_diffusion import DiffusionModel


@dataclass(frozen=True, kw_only=True)
class SynthOptions:
    """Options shared by every synth method."""

    method: str = option("classifier_guidance", help="synth method (registry: classifier_guidance, ...)")
    per_class: int = option(10, gt=0, help="samples generated per class (before filtering)")
    classes: list[str] | None = option(None, help="class names to generate (null: every class of the table)")
    seed: int | None = option(None, help="base seed of the per-sample seeds (null: the recipe seed)")
    batch_size: int = option(64, gt=0, help="samples per sampling batch (results do not depend on it)")
    split: str = option("train", help="split of the new synthetic rows")
    real_split: str = option("train", help="real rows the diffusion model saw: the copy filter compares against them")
    reference_split: str | None = option("test", help="held-out real rows for KID/FID (null: skip them)")
    diffusion_model: str | None = option(
        None, help="a diffusers model folder or hub id, instead of wiring a train_diffusion step to inputs.diffusion")
    filter_model: str | None = option(
        None, help="registry classifier that filters and scores the samples, instead of a `train` step wired to "
                   "inputs.filter (null and nothing wired: the pretrained resnet20-cifar for 32x32 samples of the "
                   "CIFAR-10 classes); never the classifier that guided")
    filter_weights: str | None = option("default", help="weights of filter_model")
    allow_self_filter: bool = option(
        False, help="let the guiding classifier filter and score its own samples (inflated; metrics labelled "
                    "self_scored) when no independent filter is given or it equals the guide")
    min_confidence: float = option(0.5, ge=0, le=1, help="keep samples whose target-class probability is >= this")
    confidence_quantile: float | None = option(
        None, ge=0, le=1, help="instead of min_confidence, keep samples whose target-class probability reaches this "
                               "quantile of the filter's probability of the true class on the reference_split's "
                               "real images (e.g. 0.1: as sure as of nine in ten real images)")
    min_copy_distance: float = option(
        0.02, ge=0, le=2, help="drop samples closer than this cosine distance to a real training image")
    feature_model: str = option("resnet20-cifar", help="registry model whose features drive the copy filter, KID, FID")
    sheet_per_class: int = option(8, gt=0, help="samples per class on the sample sheets")

    def __post_init__(self) -> None:
        if self.confidence_quantile is not None and self.reference_split is None:
            raise ConfigValueError("confidence_quantile", "calibrates on the held-out reference_split's real images; "
                                                          "set reference_split (e.g. test) or use min_confidence")


@dataclass
class SynthInputs:
    """What a method may read: the diffusion model, real training images at its size, classes, a
    classifier of clean images with its name (``inputs.classifier`` or ``with.classifier_model``), and
    for an embedding-conditioned model the real rows' ids and embeddings (as the model was trained on)."""

    diffusion: "DiffusionModel"
    real_images: np.ndarray
    real_labels: np.ndarray
    class_names: list[str]
    classifier: Any | None = None
    classifier_name: str | None = None
    real_ids: np.ndarray | None = None
    real_embeddings: np.ndarray | None = None


@dataclass
class Guide:
    """What steers a method's samples: its ``component`` (e.g. a guidance), the steering classifier as a
    ``scorer`` (None when no classifier steers), and side files ``{name: writer(path)}`` and metrics."""

    component: Any
    scorer: "Scorer | None"
    files: dict[str, Callable[["Path"], Any]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Generated:
    """Generated samples: uint8 ``images (N, H, W, 3)``, target ``labels (N,)``, sample ``numbers (N,)``,
    ``seeds (N,)``, per-sample ``guidance_scale (N,)`` (the method's own scale) and per-sample ``columns``
    of :data:`synth.filters.SAMPLE_COLUMNS` the method fills (e.g. ``source_id``; the rest stay null)."""

    images: np.ndarray
    labels: np.ndarray
    numbers: np.ndarray
    seeds: np.ndarray
    guidance_scale: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)


CONDITIONING = {
    "classes": ("class labels or nothing", "train_diffusion without inputs.embeddings or text_conditioning"),
    "embeddings": ("embeddings", "wire an `embed` step to train_diffusion's inputs.embeddings"),
    "text": ("text", "train_diffusion with text_conditioning: true, or a Stable Diffusion folder in "
                     "with.diffusion_model"),
}
"""A method's ``conditioning``: (what the model reads, how to get such a model)."""


def check_conditioning(method: str, diffusion: "DiffusionModel") -> None:
    """One line when the diffusion model reads something other than what ``method`` samples from."""
    from curate.errors import UsageError
    from synth.registry import METHODS

    wanted, have = METHODS.get(method).conditioning, diffusion.conditioned_on
    if wanted != have:
        fits = [name for name in METHODS.names() if METHODS.get(name).conditioning == have]
        raise UsageError(f"method {method} needs a diffusion model conditioned on {CONDITIONING[wanted][0]} "
                         f"({CONDITIONING[wanted][1]}); this one is conditioned on {CONDITIONING[have][0]}"
                         + (f": use method {' or '.join(fits)}" if fits else ""))


def plan_samples(class_ids: np.ndarray, *, per_class: int, base_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, numbers, seeds)``: each class ``per_class`` times; sample ``n`` gets seed ``(base_seed, n)``."""
    from synth.pipeline import sample_seeds

    labels = np.repeat(np.asarray(class_ids, dtype=np.int64), per_class)
    numbers = np.arange(len(labels))
    return labels, numbers, sample_seeds(base_seed, numbers)


@dataclass(frozen=True, kw_only=True)
class ClassifierGuidanceConfig(SynthOptions):
    guidance_scale: float = option(1.0, ge=0, help="s in eps - sqrt(1 - abar) s grad log p(y | x_t) (0: unguided)")
    schedule: Literal["constant", "linear"] = option("constant", help="scale over the steps: constant or linear decay")
    form: Literal["eps", "mean"] = option("eps", help="eps form (any sampler) or DDPM mean shift (sampler ddpm)")
    sampler: Literal["ddim", "ddpm"] = option("ddim")
    num_inference_steps: int = option(50, gt=0, help="sampling steps (respaced from the training timesteps)")
    clip_sample: bool | None = option(
        None, help="clip each step's UNGUIDED predicted clean image to [-1, 1] before the guidance is applied "
                   "(guided-diffusion's condition_score; null: as the model was trained)")
    guidance: str = option(
        "noisy_classifier", help="guidance method (registry synth.registry.GUIDANCE): noisy_classifier trains a "
                                 "timestep-aware classifier here on noised real images; clean_classifier applies "
                                 "inputs.classifier (or classifier_model) to the predicted clean image")
    classifier_model: str | None = option(
        None, help="clean_classifier guidance: registry classifier when no `train` step is wired to inputs.classifier")
    classifier_weights: str | None = option("default", help="weights of classifier_model")
    noisy_steps: int = option(300, gt=0, help="training steps of the noise-aware classifier")
    noisy_width: int = option(32, gt=0, help="width of the noise-aware classifier")
    noisy_batch_size: int = option(64, gt=0)
    noisy_lr: float = option(1e-3, gt=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.guidance not in GUIDANCE:
            raise ConfigValueError("guidance", GUIDANCE.unknown_message(self.guidance))
        if self.form == "mean" and self.sampler != "ddpm":
            raise ConfigValueError("form", "the mean-shift form needs the ancestral sampler: set sampler: ddpm "
                                           "(or use form: eps)")


def guidance_sampler(cfg: ClassifierGuidanceConfig, scheduler_config: dict):
    """The configured sampler on the model's training noise schedule (``clip_sample`` overridden when set)."""
    from synth.pipeline import make_sampler

    overrides = {} if cfg.clip_sample is None else {"clip_sample": cfg.clip_sample}
    return make_sampler(cfg.sampler, scheduler_config, **overrides)


class ClassifierGuidanceMethod:
    """Dhariwal & Nichol classifier guidance; the guidance method (and its classifier) is chosen by name."""

    Config = ClassifierGuidanceConfig
    conditioning: ClassVar[str] = "classes"

    def prepare(self, cfg: ClassifierGuidanceConfig, inputs: SynthInputs, *, base_seed: int, device: str,
                progress: bool) -> Guide:
        check_conditioning("classifier_guidance", inputs.diffusion)
        sampler = guidance_sampler(cfg, inputs.diffusion.scheduler_config)
        return GUIDANCE.get(cfg.guidance).from_inputs(cfg, inputs, alphas_cumprod=sampler.alphas_cumprod,
                                                      seed=base_seed, device=device, progress=progress)

    def generate(self, cfg: ClassifierGuidanceConfig, inputs: SynthInputs, guide: Guide, *, labels: np.ndarray,
                 numbers: np.ndarray, seeds: np.ndarray, device: str, progress: bool) -> Generated:
        from synth.pipeline import GuidedPipeline

        sampler = guidance_sampler(cfg, inputs.diffusion.scheduler_config)
        pipe = GuidedPipeline(inputs.diffusion.unet.to(device), sampler, guide.component)
        images = pipe(labels, num_inference_steps=cfg.num_inference_steps, seeds=seeds, batch_size=cfg.batch_size,
                      progress=progress)
        return Generated(images=images, labels=labels, numbers=numbers, seeds=seeds,
                         guidance_scale=np.full(len(labels), cfg.guidance_scale, dtype=np.float32))
