"""Conditioning a diffusion UNet on embedding vectors (SSL or any encoder), as the large-image paper does.

"Learned representation-guided diffusion models for large-image generation" (CVPR 2024;
cvlab-stonybrook/Large-Image-Diffusion ``ldm/modules/encoders/modules.py``): an embedding, optionally
L2-normalized, goes through a trainable ``Linear`` and becomes the cross-attention context of the UNet.
With probability ``p_uncond`` (0.1) a training row's vector is replaced by ZEROS before the projection,
so the null context is the projection of zeros, i.e. its bias, not a zero context. Sampling mixes the
two predictions with classifier-free guidance in the paper's form ``(1 + w) eps(x, c) - w eps(x, null)``:
``w = 0`` is purely conditional, and diffusers' ``guidance_scale`` is ``1 + w``.

The :class:`Conditioner` holds the only normalization, inside its ``forward``, so training and sampling
normalize identically by construction. Two kinds of UNet read its output:

- ``cross_attention`` (the paper): a diffusers ``UNet2DConditionModel``; the context is one token
  ``(B, 1, context_dim)`` passed as ``encoder_hidden_states``;
- ``vector`` (cheaper): a ``UNet2DModel`` with ``class_embed_type="identity"``; the context
  ``(B, time_embed_dim)`` is added to the timestep embedding, as a class embedding would be.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from curate.errors import UsageError

Kind = Literal["cross_attention", "vector"]
KINDS = ("cross_attention", "vector")
CONDITIONER_WEIGHTS = "conditioner.safetensors"
CONDITIONER_CONFIG = "conditioner.json"
SLERP_DOT_THRESHOLD = 0.9995  # the official slerp falls back to lerp above this |cos|


class Conditioner(nn.Module):
    """Embedding ``(B, D)`` -> context: L2-normalize (``normalize``), zero the dropped rows, ``Linear(D, context_dim)``."""

    def __init__(self, embedding_dim: int, context_dim: int, *, kind: Kind = "cross_attention",
                 normalize: bool = True):
        super().__init__()
        if kind not in KINDS:
            raise UsageError(f"conditioning `kind` must be one of {', '.join(KINDS)}, got {kind!r}")
        self.embedding_dim, self.context_dim, self.kind, self.normalize = embedding_dim, context_dim, kind, normalize
        self.proj = nn.Linear(embedding_dim, context_dim)

    def config(self) -> dict:
        return {"embedding_dim": self.embedding_dim, "context_dim": self.context_dim, "kind": self.kind,
                "normalize": self.normalize}

    def forward(self, vectors: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        v = vectors.to(self.proj.weight)
        if v.ndim != 2 or v.shape[1] != self.embedding_dim:
            raise UsageError(f"conditioning vectors must be (B, {self.embedding_dim}), got {tuple(v.shape)}")
        if self.normalize:
            v = F.normalize(v, dim=1)
        if drop is not None:
            v = torch.where(drop.to(v.device)[:, None], torch.zeros_like(v), v)
        out = self.proj(v)
        return out[:, None, :] if self.kind == "cross_attention" else out

    def null(self, batch: int) -> torch.Tensor:
        """The null context of ``batch`` rows: the projection of zero vectors (its bias)."""
        return self(torch.zeros(batch, self.embedding_dim, device=self.proj.weight.device))


def drop_mask(batch: int, p_uncond: float, generator: torch.Generator) -> torch.Tensor:
    """Which rows of a training batch are trained unconditionally: each with probability ``p_uncond``."""
    if not 0 <= p_uncond <= 1:
        raise UsageError(f"`p_uncond` must lie in [0, 1], got {p_uncond}")
    return torch.rand(batch, generator=generator) < p_uncond


def classifier_free(eps_cond: torch.Tensor, eps_null: torch.Tensor, w: float) -> torch.Tensor:
    """``(1 + w) eps_cond - w eps_null``: ``w = 0`` is conditional only (diffusers' guidance_scale is 1 + w)."""
    return eps_cond + w * (eps_cond - eps_null)


def diffusers_guidance_scale(w: float) -> float:
    """The paper's ``w`` as diffusers' ``guidance_scale`` (``eps_u + s (eps_c - eps_u)`` with ``s = 1 + w``)."""
    return 1.0 + w


def slerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor, *,
          dot_threshold: float = SLERP_DOT_THRESHOLD) -> torch.Tensor:
    """Spherical interpolation of rows of ``a`` and ``b`` (…, D) at ``t`` (scalar or per row); rows whose
    directions have ``|cos| > dot_threshold`` are interpolated linearly, where slerp is ill-conditioned."""
    a, b = a.float(), b.float()
    t = torch.as_tensor(t, dtype=a.dtype)
    if t.ndim:
        t = t.reshape(*t.shape, *([1] * (a.ndim - t.ndim)))
    dot = (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1, keepdim=True).clamp(-1, 1)
    theta = dot.arccos()
    sin = theta.sin()
    near = dot.abs() > dot_threshold
    safe = torch.where(near, torch.ones_like(sin), sin)
    s0 = torch.where(near, 1 - t, ((1 - t) * theta).sin() / safe)
    s1 = torch.where(near, t.expand_as(theta), (t * theta).sin() / safe)
    return s0 * a + s1 * b


class ConditionedUNet(nn.Module):
    """A UNet and its :class:`Conditioner`, trained and saved together: ``forward(x, t, vectors, drop)`` -> eps."""

    def __init__(self, unet: nn.Module, conditioner: Conditioner):
        super().__init__()
        check_pair(unet, conditioner)
        self.unet, self.conditioner = unet, conditioner

    def forward(self, x: torch.Tensor, t: torch.Tensor, vectors: torch.Tensor,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        return self.predict(x, t, self.conditioner(vectors, drop))

    def predict(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """eps for a context the conditioner made (e.g. conditional and null rows in one batch)."""
        if self.conditioner.kind == "cross_attention":
            return self.unet(x, t, encoder_hidden_states=context).sample
        return self.unet(x, t, class_labels=context).sample

    def guided_eps(self, x: torch.Tensor, t: torch.Tensor | int, vectors: torch.Tensor, *, w: float) -> torch.Tensor:
        """Classifier-free guided eps at scale ``w``: one batch of conditional and null rows (conditional only
        at ``w = 0``)."""
        cond = self.conditioner(vectors.to(x.device))
        if w == 0:
            return self.predict(x, t, cond)
        both = self.predict(torch.cat([x, x]), t, torch.cat([cond, self.conditioner.null(len(x))]))
        eps_cond, eps_null = both.chunk(2)
        return classifier_free(eps_cond, eps_null, w)


def context_width(unet: nn.Module, kind: Kind) -> int:
    """The context width ``unet`` reads: its cross-attention dim, or its time-embedding width (vector)."""
    if kind == "cross_attention":
        return int(unet.config.cross_attention_dim)
    return int(unet.config.block_out_channels[0] * 4)


def check_pair(unet: nn.Module, conditioner: Conditioner) -> None:
    """A UNet of the conditioner's kind and context width, else a one-line error."""
    from diffusers import UNet2DConditionModel, UNet2DModel

    kind = conditioner.kind
    if kind == "cross_attention" and not isinstance(unet, UNet2DConditionModel):
        raise UsageError(f"cross-attention conditioning needs a UNet2DConditionModel, got {type(unet).__name__}")
    if kind == "vector" and (not isinstance(unet, UNet2DModel) or unet.config.class_embed_type != "identity"):
        raise UsageError("vector conditioning needs a UNet2DModel with class_embed_type 'identity'")
    width = context_width(unet, kind)
    if conditioner.context_dim != width:
        raise UsageError(f"the conditioner projects to {conditioner.context_dim} but the UNet reads {width}-d "
                         f"{'cross-attention context' if kind == 'cross_attention' else 'class embeddings'}")


def save_conditioner(folder: Path, conditioner: Conditioner) -> None:
    """``conditioner.safetensors`` + ``conditioner.json`` (its config) in ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    if not isinstance(conditioner, Conditioner):  # a text conditioner: tokenizer/ and text_encoder/
        conditioner.save(folder)
        return
    state = {k: v.detach().cpu().contiguous() for k, v in conditioner.state_dict().items()}
    save_file(state, str(folder / CONDITIONER_WEIGHTS))
    (folder / CONDITIONER_CONFIG).write_text(json.dumps(conditioner.config(), indent=2) + "\n")


def load_conditioner(folder: Path) -> Conditioner | None:
    """The conditioner saved in ``folder`` (a text encoder with its tokenizer too), or None when the model has none."""
    from safetensors.torch import load_file

    from synth.text_conditioning import TextConditioner, has_text_encoder

    folder = Path(folder)
    if has_text_encoder(folder):
        return TextConditioner.load(folder)
    if not (folder / CONDITIONER_CONFIG).is_file():
        return None
    cfg = json.loads((folder / CONDITIONER_CONFIG).read_text())
    conditioner = Conditioner(cfg["embedding_dim"], cfg["context_dim"], kind=cfg["kind"], normalize=cfg["normalize"])
    conditioner.load_state_dict(load_file(str(folder / CONDITIONER_WEIGHTS)))
    return conditioner.eval()
