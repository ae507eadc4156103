"""The `ssl_conditioned` synth method: samples of an embedding-conditioned diffusion model (representation guidance).

After "Learned representation-guided diffusion models for large-image generation" (CVPR 2024): the model
was trained on (image, SSL embedding) pairs (:mod:`synth.conditioning`), so an embedding steers a sample
without a human label. Two modes:

- ``variations``: each selected real training image's embedding conditions ``variations_per_image`` samples;
  the samples inherit its label, and their rows record its id (``source_id``);
- ``interpolations``: each sample is conditioned on the slerp of the embeddings of two distinct real images of
  its class (``source_id``, ``source_b_id``, at ``slerp_t``).

Sampling uses classifier-free guidance in the paper's form ``(1 + w) eps(x, c) - w eps(x, null)``
(``cfg_scale`` is ``w``; diffusers' ``guidance_scale`` is ``1 + w``). No classifier steers, so the synth
step's filter is independent by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Sequence

import numpy as np
import torch

from curate.config import option
from curate.errors import UsageError
from synth.methods import Generated, Guide, SynthInputs, SynthOptions, check_conditioning
from synth.pipeline import GuidedPipeline, make_sampler

Mode = Literal["variations", "interpolations"]


class EmbeddingPipeline(GuidedPipeline):
    """Per-sample-seeded sampling of an embedding-conditioned UNet with classifier-free guidance ``w``: the
    conditions are embedding vectors ``(N, D)``, and each step predicts conditional and null eps in one batch."""

    def __init__(self, model, scheduler, *, w: float):
        super().__init__(model.unet, scheduler)
        self.model, self.w = model.eval(), float(w)

    @staticmethod
    def _conditions(values: Sequence | np.ndarray) -> torch.Tensor:
        v = torch.as_tensor(np.asarray(values), dtype=torch.float32)
        if v.ndim != 2:
            raise UsageError(f"embedding conditions must be (N, D), got shape {tuple(v.shape)}")
        return v

    def _eps_model(self, x: torch.Tensor, t: int, y: torch.Tensor) -> torch.Tensor:
        return self.model.guided_eps(x, t, y, w=self.w)


@dataclass(frozen=True, kw_only=True)
class SSLConditionedConfig(SynthOptions):
    mode: Mode = option("variations", help="variations of real images, or slerp interpolations of same-class pairs")
    variations_per_image: int = option(1, gt=0, help="variations: k samples conditioned on each selected image")
    slerp_t: float | None = option(0.5, ge=0, le=1, help="interpolations: position between the two embeddings "
                                                         "(null: uniform per sample, drawn from its seed)")
    cfg_scale: float = option(3.0, ge=0, help="w in (1 + w) eps(x, c) - w eps(x, null); 0: conditional only "
                                              "(diffusers' guidance_scale = 1 + w; the paper's notebook: 3)")
    sampler: Literal["ddim", "ddpm"] = option("ddim")
    num_inference_steps: int = option(50, gt=0, help="sampling steps (respaced from the training timesteps)")
    panorama_references: int = option(
        0, ge=0, help="also assemble this many large images from reference_split rows: each is decoded at "
                      "panorama_grid x the model's size and rebuilt from its patches' embeddings (panorama.png)")
    panorama_grid: int = option(4, gt=0, help="patches per side of a panorama")
    panorama_stride: int | None = option(None, gt=0, help="window stride in pixels (null: half a window)")
    panorama_cfg_scale: float = option(3.0, ge=0, help="w of the panorama windows (the paper's notebook: 3)")


@dataclass
class Sources:
    """The real rows a method draws conditions from: per class, the positions (into the real rows) in a seeded
    order, and the rows' ids and embedding vectors."""

    by_class: dict[int, np.ndarray]
    ids: np.ndarray
    vectors: np.ndarray


class SSLConditionedMethod:
    """Variations and same-class interpolations of real images' embeddings, sampled with classifier-free guidance."""

    Config = SSLConditionedConfig
    conditioning: ClassVar[str] = "embeddings"

    def prepare(self, cfg: SSLConditionedConfig, inputs: SynthInputs, *, base_seed: int, device: str,
                progress: bool) -> Guide:
        check_conditioning("ssl_conditioned", inputs.diffusion)
        if inputs.real_embeddings is None or inputs.real_ids is None:
            raise UsageError("method ssl_conditioned needs the real rows' embeddings and ids")
        rng = np.random.default_rng(base_seed)
        labels = np.asarray(inputs.real_labels)
        by_class = {int(k): rng.permutation(np.flatnonzero(labels == k)) for k in np.unique(labels)}
        sources = Sources(by_class, np.asarray(inputs.real_ids, dtype=str),
                          np.asarray(inputs.real_embeddings, dtype=np.float32))
        return Guide(component=sources, scorer=None)

    def generate(self, cfg: SSLConditionedConfig, inputs: SynthInputs, guide: Guide, *, labels: np.ndarray,
                 numbers: np.ndarray, seeds: np.ndarray, device: str, progress: bool) -> Generated:
        from synth.conditioning import slerp

        sources: Sources = guide.component
        first, second, t = self._pick(cfg, sources, labels, numbers, seeds)
        vectors = torch.from_numpy(sources.vectors[first])
        if second is not None:
            vectors = slerp(vectors, torch.from_numpy(sources.vectors[second]), torch.from_numpy(t))
        sampler = make_sampler(cfg.sampler, inputs.diffusion.scheduler_config)
        pipe = EmbeddingPipeline(inputs.diffusion.conditioned_unet().to(device), sampler, w=cfg.cfg_scale)
        images = pipe(vectors.numpy(), num_inference_steps=cfg.num_inference_steps, seeds=seeds,
                      batch_size=cfg.batch_size, progress=progress)
        n = len(labels)
        columns = {"source_id": sources.ids[first],
                   "source_b_id": sources.ids[second] if second is not None else np.full(n, None, dtype=object),
                   "slerp_t": t if t is not None else np.full(n, None, dtype=object)}
        return Generated(images=images, labels=labels, numbers=numbers, seeds=seeds,
                         guidance_scale=np.full(n, cfg.cfg_scale, dtype=np.float32), columns=columns)

    @staticmethod
    def _pick(cfg: SSLConditionedConfig, sources: Sources, labels: np.ndarray, numbers: np.ndarray,
              seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Source positions of each sample, from its label and number (variations: ``number // k`` picks the
        image, so k consecutive samples share one) or its seed (interpolations: two distinct images and t)."""
        missing = sorted(set(np.asarray(labels).tolist()) - set(sources.by_class))
        if missing:
            raise UsageError(f"no real row of class {missing[0]} to condition on; pick classes the real split has")
        if cfg.mode == "variations":
            first = np.array([sources.by_class[int(y)][(int(n) // cfg.variations_per_image)
                                                       % len(sources.by_class[int(y)])]
                              for y, n in zip(labels, numbers)], dtype=np.int64)
            return first, None, None
        first, second, t = [], [], []
        for y, seed in zip(labels, seeds):
            rows = sources.by_class[int(y)]
            if len(rows) < 2:
                raise UsageError(f"interpolations need two real rows of class {int(y)}, it has {len(rows)}")
            rng = np.random.default_rng(int(seed))
            i, j = rng.choice(len(rows), 2, replace=False)
            first.append(rows[i])
            second.append(rows[j])
            t.append(cfg.slerp_t if cfg.slerp_t is not None else rng.uniform())
        return np.asarray(first), np.asarray(second), np.asarray(t, dtype=np.float32)
