"""A small noise-aware classifier ``p(y | x_t, t)`` for classifier guidance (Dhariwal & Nichol).

A clean-image classifier gives meaningless gradients on ``x_t``; this one is trained on
``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` with ``t`` as an input (sinusoidal embedding,
added to every conv block), using the diffusion model's own noise schedule.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from curate.errors import UsageError
from synth.train_diffusion import to_model_space


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, t_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm = nn.GroupNorm(min(8, c_out), c_out)
        self.time = nn.Linear(t_dim, c_out)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.conv(x)) + self.time(emb)[:, :, None, None]
        return F.avg_pool2d(F.silu(h), 2) if h.shape[-1] > 1 else F.silu(h)


class NoisyClassifier(nn.Module):
    """Conv blocks (width doubling, 2x pooling) conditioned on ``t``, global pooling, linear head.

    ``forward(x_t, t)``: ``x_t`` float (N, C, H, W) in the diffusion space ([-1, 1] at t = 0),
    ``t`` (N,) or scalar original timesteps -> logits (N, K).
    """

    def __init__(self, *, num_classes: int, channels: int = 3, width: int = 32, depth: int = 3):
        super().__init__()
        self.cfg = {"num_classes": num_classes, "channels": channels, "width": width, "depth": depth}
        self.num_classes = num_classes
        t_dim = 4 * width
        self.t_proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.t_embed = TimestepEmbedding(width, t_dim)
        widths = [width * 2 ** i for i in range(depth)]
        self.blocks = nn.ModuleList(_Block(c_in, c_out, t_dim) for c_in, c_out in zip([channels, *widths], widths))
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(len(x))
        emb = self.t_embed(self.t_proj(t).to(x.dtype))
        h = x
        for block in self.blocks:
            h = block(h, emb)
        return self.head(h.mean(dim=(2, 3)))


def train_noisy_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    alphas_cumprod: torch.Tensor,
    num_classes: int,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 1e-3,
    width: int = 32,
    depth: int = 3,
    flip: bool = True,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
) -> tuple[NoisyClassifier, np.ndarray]:
    """Fit a :class:`NoisyClassifier` on uint8 ``images (N, H, W, 3)`` noised at uniform ``t``; returns it, losses."""
    labels = np.asarray(labels)
    if len(labels) != len(images) or len(images) == 0:
        raise UsageError(f"`labels` has {len(labels)} rows but `images` has {len(images)} (need at least one)")
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = NoisyClassifier(num_classes=num_classes, channels=images.shape[-1], width=width, depth=depth)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    data = torch.from_numpy(np.ascontiguousarray(images))
    y_all = torch.as_tensor(labels, dtype=torch.long)
    abar = alphas_cumprod.float()
    losses = np.zeros(steps, dtype=np.float32)
    for step in tqdm(range(steps), disable=not progress, desc="noisy classifier", unit="it"):
        rows = torch.randint(len(data), (batch_size,), generator=g)
        x0 = to_model_space(data[rows])
        if flip:
            mirror = torch.rand(batch_size, generator=g) < 0.5
            x0 = torch.where(mirror[:, None, None, None], x0.flip(-1), x0)
        t = torch.randint(len(abar), (batch_size,), generator=g)
        a = abar[t][:, None, None, None]
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=g)
        for group in opt.param_groups:  # cosine decay
            group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * step / steps))
        loss = F.cross_entropy(model(x_t.to(device), t.to(device)), y_all[rows].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses[step] = loss.item()
    return model.eval(), losses


def save_noisy_classifier_file(model: NoisyClassifier, path: Path) -> None:
    """One safetensors file; the constructor options travel in its metadata (wrap in ``atomic_write``)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"config": json.dumps(model.cfg)})


def load_noisy_classifier(path: Path) -> NoisyClassifier:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        cfg = json.loads(fh.metadata()["config"])
    model = NoisyClassifier(**cfg)
    model.load_state_dict(load_file(str(path)))
    return model.eval()
