"""Synth methods: how a `synth` step generates labelled images. Registry :data:`METHODS`.

A method is a class with a ``Config`` (a subclass of :class:`SynthOptions`, whose fields every
method shares: counts, filters, splits, feature model) and ``generate(config, inputs, ...)``
returning :class:`Generated`. The step around it filters, records provenance, writes the new
table version and measures quality the same way for every method, so Synth II methods
(class tokens, SSL-conditioned diffusion) only add a class here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np

from curate.config import ConfigValueError, option
from curate.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

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
        None, help="registry classifier that filters and scores the samples (null: inputs.classifier, "
                   "else the method's own classifier)")
    filter_weights: str | None = option("default", help="weights of filter_model")
    min_confidence: float = option(0.5, ge=0, le=1, help="keep samples whose target-class probability is >= this")
    min_copy_distance: float = option(
        0.02, ge=0, le=2, help="drop samples closer than this cosine distance to a real training image")
    feature_model: str = option("resnet20-cifar", help="registry model whose features drive the copy filter, KID, FID")
    sheet_per_class: int = option(8, gt=0, help="samples per class on the sample sheets")


@dataclass
class SynthInputs:
    """What a method may read: the diffusion model, real training images at its size, classes, a clean classifier."""

    diffusion: "DiffusionModel"
    real_images: np.ndarray
    real_labels: np.ndarray
    class_names: list[str]
    clean_classifier: Any | None = None


@dataclass
class Generated:
    """Generated samples: uint8 ``images (N, H, W, 3)``, target ``labels (N,)``, sample ``numbers (N,)``,
    ``seeds (N,)``, per-sample ``guidance_scale (N,)``, an optional classifier of uint8 images -> pred_probs
    (used to filter when no other is configured), and side files ``{name: writer(path)}``."""

    images: np.ndarray
    labels: np.ndarray
    numbers: np.ndarray
    seeds: np.ndarray
    guidance_scale: np.ndarray
    classify: Callable[[np.ndarray], np.ndarray] | None = None
    files: dict[str, Callable[["Path"], Any]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


METHODS: Registry[type] = Registry("synth method", entry_point_group="curate.synth_methods")


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
        None, help="clip each step's predicted clean image to [-1, 1] (null: as the model was trained); "
                   "with large guidance scales clipping can pull samples off the target class")
    classifier: Literal["noisy", "clean"] = option(
        "noisy", help="noisy: train a timestep-aware classifier here on noised real images; "
                      "clean: inputs.classifier (or classifier_model) applied to the predicted clean image")
    classifier_model: str | None = option(None, help="clean guidance: registry classifier when none is wired")
    classifier_weights: str | None = option("default", help="weights of classifier_model")
    noisy_steps: int = option(300, gt=0, help="training steps of the noise-aware classifier")
    noisy_width: int = option(32, gt=0, help="width of the noise-aware classifier")
    noisy_batch_size: int = option(64, gt=0)
    noisy_lr: float = option(1e-3, gt=0)

    def __post_init__(self) -> None:
        if self.form == "mean" and self.sampler != "ddpm":
            raise ConfigValueError("form", "the mean-shift form needs the ancestral sampler: set sampler: ddpm "
                                           "(or use form: eps)")


def guidance_sampler(cfg: ClassifierGuidanceConfig, scheduler_config: dict):
    """The configured sampler on the model's training noise schedule (``clip_sample`` overridden when set)."""
    from synth.pipeline import make_sampler

    overrides = {} if cfg.clip_sample is None else {"clip_sample": cfg.clip_sample}
    return make_sampler(cfg.sampler, scheduler_config, **overrides)


@METHODS.register("classifier_guidance")
class ClassifierGuidanceMethod:
    """Dhariwal & Nichol classifier guidance with a noise-aware classifier or a clean one on x0_hat."""

    Config = ClassifierGuidanceConfig

    def generate(self, cfg: ClassifierGuidanceConfig, inputs: SynthInputs, *, labels: np.ndarray,
                 numbers: np.ndarray, seeds: np.ndarray, base_seed: int, device: str, progress: bool) -> Generated:
        import torch

        from curate.errors import UsageError
        from curate.learn import predict_images
        from synth.guidance import PixelClassifier, create_guidance
        from synth.noisy_classifier import save_noisy_classifier_file, train_noisy_classifier
        from synth.pipeline import GuidedPipeline
        from synth.train_diffusion import to_model_space

        sampler = guidance_sampler(cfg, inputs.diffusion.scheduler_config)
        files, metrics, classify = {}, {}, None
        if cfg.classifier == "noisy":
            clf, losses = train_noisy_classifier(
                inputs.real_images, inputs.real_labels, alphas_cumprod=sampler.alphas_cumprod,
                num_classes=len(inputs.class_names), steps=cfg.noisy_steps, batch_size=cfg.noisy_batch_size,
                lr=cfg.noisy_lr, width=cfg.noisy_width, seed=base_seed, device=device,
                progress=progress)
            files["noisy_classifier.safetensors"] = lambda p: save_noisy_classifier_file(clf, p)
            metrics["noisy_classifier_loss"] = round(float(losses[-max(1, len(losses) // 10):].mean()), 4)
            guide = create_guidance("noisy_classifier", clf, scale=cfg.guidance_scale, schedule=cfg.schedule,
                                    form=cfg.form)

            @torch.no_grad()
            def classify(images: np.ndarray) -> np.ndarray:  # the noise-aware classifier at t = 0
                x = to_model_space(images).to(device)
                return torch.cat([clf(b, 0).softmax(1) for b in x.split(256)]).cpu().numpy()
        else:
            if inputs.clean_classifier is None:
                raise UsageError("classifier 'clean' needs a classifier: wire a `train` step to inputs.classifier "
                                 "or name a registry model in with.classifier_model")
            model = inputs.clean_classifier
            guide = create_guidance("clean_classifier", PixelClassifier(model).to(device), scale=cfg.guidance_scale,
                                    schedule=cfg.schedule, form=cfg.form)

            def classify(images: np.ndarray) -> np.ndarray:
                return predict_images(model, images, device=device)

        unet = inputs.diffusion.unet.to(device)
        pipe = GuidedPipeline(unet, sampler, guide)
        images = pipe(labels, num_inference_steps=cfg.num_inference_steps, seeds=seeds, batch_size=cfg.batch_size,
                      progress=progress)
        return Generated(images=images, labels=labels, numbers=numbers, seeds=seeds,
                         guidance_scale=np.full(len(labels), cfg.guidance_scale, dtype=np.float32),
                         classify=classify, files=files, metrics=metrics)
