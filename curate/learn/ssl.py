"""Self-supervised training without labels: SimCLR's NT-Xent on two augmented views of each image.

SimCLR (Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML
2020; google-research/simclr ``objective.py: add_contrastive_loss``): each image of a batch of N gives
two views; a backbone and a projection head map them to ``z``; ``z`` is L2-normalized and each of
the 2N views must pick its partner out of the other 2N - 1 views by softmax over cosine / ``temperature``.
The loss is the mean over the 2N anchors, so it does not change when the two views swap. The
backbone's pooled ``features`` (before the head) are the representation, so the trained model is a
registry model that ``embed``, ``index``, ``duplicates`` and diffusion conditioning use like any other.

Views follow SimCLR's CIFAR-10 recipe in plain torch on uint8 batches: a random resized crop with
flip (:class:`curate.relabel.ResizedCrop`), colour jitter of strength ``s`` (brightness, contrast,
saturation ``0.8 s``, hue ``0.2 s``; applied with probability 0.8) and grayscale with probability 0.2;
no blur at 32x32. The optimizer is SGD with momentum and a cosine schedule (SimCLR uses LARS at
batch sizes of 256 to 4096; a CPU-sized batch does without it). Every draw comes from one
``torch.Generator`` checkpointed with the weights, so a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from curate.errors import UsageError
from curate.learn.checkpoint import load_training_state, save_training_state
from curate.learn.data import as_tensor, model_input
from curate.learn.device import resolve_device
from curate.learn.fit import learning_rate

log = logging.getLogger(__name__)

CHECKPOINT = "ssl_checkpoint.pt"
_LUMA = (0.299, 0.587, 0.114)
# RGB <-> YIQ: a hue shift is a rotation of the (I, Q) chroma plane
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


@dataclass(frozen=True, kw_only=True)
class ColorJitter:
    """SimCLR's colour distortion on float images (B, H, W, 3) in [0, 1]; factors drawn per image.

    ``strength`` s sets brightness, contrast and saturation factors in ``[1 - 0.8 s, 1 + 0.8 s]`` and a
    hue rotation of up to ``0.2 s`` of the colour circle (done in YIQ space), applied with probability
    ``p``; then grayscale with probability ``p_gray``.
    """

    strength: float = 0.5
    p: float = 0.8
    p_gray: float = 0.2

    def __post_init__(self) -> None:
        if not 0 <= self.strength <= 1.25:
            raise UsageError(f"colour jitter `strength` must lie in [0, 1.25], got {self.strength}")
        for name in ("p", "p_gray"):
            if not 0 <= getattr(self, name) <= 1:
                raise UsageError(f"colour jitter `{name}` must lie in [0, 1], got {getattr(self, name)}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b = len(x)
        u = torch.rand(b, 6, generator=generator)  # a fixed number of draws per batch: streams stay aligned
        span = 0.8 * self.strength
        factors = 1 - span + 2 * span * u[:, :3]
        angle = (2 * u[:, 3] - 1) * 0.2 * self.strength * 2 * math.pi
        on, gray = (u[:, 4] < self.p)[:, None, None, None], (u[:, 5] < self.p_gray)[:, None, None, None]
        luma = torch.tensor(_LUMA, dtype=x.dtype)

        def gray_of(v):
            return (v * luma).sum(-1, keepdim=True)

        jittered = (x * factors[:, 0, None, None, None]).clamp(0, 1)
        mean = gray_of(jittered).mean(dim=(1, 2, 3), keepdim=True)
        jittered = ((jittered - mean) * factors[:, 1, None, None, None] + mean).clamp(0, 1)
        g = gray_of(jittered)
        jittered = ((jittered - g) * factors[:, 2, None, None, None] + g).clamp(0, 1)
        jittered = rotate_hue(jittered, angle).clamp(0, 1)
        out = torch.where(on, jittered, x)
        return torch.where(gray, gray_of(out).expand_as(out), out)


def rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma of RGB images (B, H, W, 3) by ``angle`` (B,) radians in YIQ space (luma kept)."""
    cos, sin = angle.cos(), angle.sin()
    rot = torch.zeros(len(x), 3, 3, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    matrix = _YIQ_TO_RGB.to(x.dtype) @ rot @ _RGB_TO_YIQ.to(x.dtype)  # (B, 3, 3)
    return torch.einsum("bij,bhwj->bhwi", matrix, x)


@dataclass(frozen=True, kw_only=True)
class TwoViews:
    """Two independent SimCLR views of a uint8 batch (B, H, W, 3): resized crop + flip, then colour jitter."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    color: ColorJitter = ColorJitter()

    def view(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        from curate.relabel.data import ResizedCrop

        crop = ResizedCrop(scale=tuple(self.crop_scale), flip=True)
        _, h, w, _ = images.shape
        cropped = crop.apply(images, crop.sample(len(images), h, w, generator)).float().div(255)
        return (self.color(cropped, generator) * 255).round().to(torch.uint8)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.view(images, generator), self.view(images, generator)


class ProjectionHead(nn.Module):
    """SimCLR's g(h) = W2 ReLU(W1 h): the loss reads its output, downstream tasks the backbone's h."""

    def __init__(self, in_features: int, *, hidden: int = 512, out: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, *, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent: mean over the 2N views of ``-log softmax(cos / temperature)`` at the view's partner,
    the softmax running over the other 2N - 1 views (row ``i`` of ``z1`` pairs with row ``i`` of ``z2``)."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise UsageError(f"`z1` and `z2` must be (N, D) of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if not temperature > 0:
        raise UsageError(f"`temperature` must be > 0, got {temperature}")
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, partner)


@dataclass
class SSLResult:
    """The backbone (trained in place, eval mode), its projection head, per-step losses, per-epoch history."""

    model: nn.Module
    head: ProjectionHead
    losses: np.ndarray
    history: list[dict[str, float]]
    resumed_from: int


def train_ssl(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 256,
    lr: float = 0.06,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    warmup_epochs: int = 0,
    temperature: float = 0.5,
    views: TwoViews | None = None,
    head_hidden: int = 512,
    head_out: int = 128,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 1,
    resume_key: str = "",
    stop_after: int | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> SSLResult:
    """Train a curate model's backbone with NT-Xent on uint8 ``images (N, H, W, 3)``; no labels are read.

    Each epoch runs ``N // batch_size`` batches (the remainder is dropped: a tiny last batch has too few
    negatives), at least one. With ``checkpoint_dir``, the state (backbone, head, optimizer, generator,
    losses) is written every ``checkpoint_every`` epochs and at the end, and a checkpoint there with the
    same ``resume_key`` is resumed from; ``stop_after`` ends after that many epochs (crash simulation).
    The classifier head of ``model`` is not trained and stays as it was.
    """
    data = as_tensor(images)
    if data.dtype != torch.uint8 or data.ndim != 4 or data.shape[-1] != 3:
        raise UsageError(f"`images` must be uint8 (N, H, W, 3), got {data.dtype} of shape {tuple(data.shape)}")
    if len(data) < 2:
        raise UsageError(f"NT-Xent needs at least 2 images (each view's negatives are the others), got {len(data)}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("checkpoint_every", checkpoint_every)):
        if not isinstance(value, int) or value < 1:
            raise UsageError(f"`{name}` must be an integer >= 1, got {value!r}")
    views = views or TwoViews()
    device = resolve_device(device)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = ProjectionHead(model.num_features, hidden=head_hidden, out=head_out)
    model.to(device)
    head.to(device)
    # the classifier head gets no gradient, and SGD leaves parameters without one untouched
    opt = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=lr, momentum=momentum,
                          weight_decay=weight_decay)
    per_epoch = max(1, len(data) // batch_size)
    total = epochs * per_epoch
    schedule = dict(base_lr=lr, total_steps=total, schedule="cosine", warmup_steps=warmup_epochs * per_epoch)
    losses = np.zeros(total, dtype=np.float32)
    history: list[dict[str, float]] = []
    path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    state = load_training_state(path, key=resume_key)
    start = 0
    if state is not None and len(state["losses"]) == total:
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        generator.set_state(state["rng"])
        losses[:] = state["losses"].numpy()
        history = state["history"]
        start = int(state["step"])
    last = epochs if stop_after is None else min(epochs, stop_after)
    with tqdm(total=total, initial=start * per_epoch, disable=not progress, desc="ssl", unit="it") as bar:
        for epoch in range(start, last):
            model.train()
            head.train()
            began = time.perf_counter()
            order = torch.randperm(len(data), generator=generator)
            for i in range(per_epoch):
                step = epoch * per_epoch + i
                v1, v2 = views(data[order[i * batch_size:(i + 1) * batch_size]], generator)
                x = model_input(model, torch.cat([v1, v2]), device=device)
                z1, z2 = head(model.features(x)).chunk(2)
                loss = nt_xent(z1, z2, temperature=temperature)
                rate = learning_rate(step, **schedule)
                for group in opt.param_groups:
                    group["lr"] = rate
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses[step] = loss.item()
                bar.update()
            record = {"epoch": epoch + 1, "loss": float(losses[epoch * per_epoch:(epoch + 1) * per_epoch].mean()),
                      "lr": rate, "seconds": time.perf_counter() - began}
            history.append(record)
            log.info("ssl epoch %d/%d: loss %.4f", epoch + 1, epochs, record["loss"])
            done = epoch + 1
            if path is not None and (done % checkpoint_every == 0 or done == last):
                save_training_state(path, key=resume_key, step=done, state={
                    "model": model.state_dict(), "head": head.state_dict(), "optimizer": opt.state_dict(),
                    "rng": generator.get_state(), "losses": torch.from_numpy(losses),
                    "history": history})
    model.eval()
    head.eval()
    return SSLResult(model=model, head=head, losses=losses[:last * per_epoch], history=history, resumed_from=start)

