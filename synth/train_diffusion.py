"""DDPM training of a small diffusers ``UNet2DModel``, with EMA, atomic checkpoints and exact resume.

The loss is Ho et al.'s simple objective: draw ``t`` and ``eps``, form
``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` and regress ``eps`` with MSE. Images live in
``[-1, 1]`` NCHW. Every random draw (rows, flips, timesteps, noise) comes from ONE CPU
``torch.Generator`` whose state is checkpointed with the weights, EMA weights and optimizer, so a
run resumed from a checkpoint takes the same draws as an uninterrupted one (bit-identical on CPU).

A saved model is a folder in the diffusers layout (``unet/`` and ``scheduler/`` through
``save_pretrained``, safetensors) plus ``curate.json`` (class names, image size), so any diffusers
``UNet2DModel`` checkpoint a user has loads the same way (:func:`load_diffusion_model`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel
from tqdm.auto import tqdm

from curate import workspace
from curate.errors import UsageError

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
META_FILE = "curate.json"


def _norm_groups(channels: Sequence[int]) -> int:
    """GroupNorm groups: about 4 channels a group at the narrowest level, at most 32, dividing every width."""
    groups = min(32, max(1, min(channels) // 4))
    while any(c % groups for c in channels):
        groups -= 1
    return groups


def build_unet(
    *,
    image_size: int,
    block_out_channels: Sequence[int] = (32, 64),
    layers_per_block: int = 1,
    attention_levels: Sequence[int] = (),
    num_classes: int | None = None,
    channels: int = 3,
    seed: int = 0,
) -> UNet2DModel:
    """A ``UNet2DModel`` predicting eps; ``num_classes`` adds a class embedding (``num_class_embeds``).

    ``attention_levels`` lists the resolution levels (0 = full size) that get self-attention;
    the CPU demo uses none, CIFAR-size GPU models use the 16x16 level.
    """
    levels = len(block_out_channels)
    if image_size % 2 ** (levels - 1):
        raise UsageError(f"`image_size` {image_size} must be divisible by 2^{levels - 1} for {levels} UNet levels "
                         f"(block_out_channels {list(block_out_channels)})")
    bad = [lv for lv in attention_levels if not 0 <= lv < levels]
    if bad:
        raise UsageError(f"`attention_levels` must lie in 0..{levels - 1}, got {bad}")
    down = tuple("AttnDownBlock2D" if lv in attention_levels else "DownBlock2D" for lv in range(levels))
    up = tuple("AttnUpBlock2D" if lv in attention_levels else "UpBlock2D" for lv in reversed(range(levels)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DModel(
            sample_size=image_size, in_channels=channels, out_channels=channels, layers_per_block=layers_per_block,
            block_out_channels=tuple(block_out_channels), down_block_types=down, up_block_types=up,
            norm_num_groups=_norm_groups(block_out_channels), num_class_embeds=num_classes,
            attention_head_dim=min(8, min(block_out_channels)),
        )


def to_model_space(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [-1, 1]."""
    x = torch.as_tensor(np.ascontiguousarray(images) if isinstance(images, np.ndarray) else images)
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise UsageError(f"`images` must be uint8 (N, H, W, C), got {x.dtype} of shape {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) in [-1, 1] -> uint8 (N, H, W, C), clipped."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class EMA:
    """Exponential moving average of parameters, decay warmed up as ``min(decay, (1 + n) / (10 + n))``."""

    def __init__(self, model: torch.nn.Module, *, decay: float):
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].lerp_(v, 1.0 - d)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = state["decay"], state["updates"]
        self.shadow = state["shadow"]

    def copy_to(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.shadow)


@dataclass
class DDPMResult:
    """The trained UNet (EMA weights loaded), the raw weights, per-step losses and throughput."""

    unet: UNet2DModel
    raw_state: dict
    scheduler: DDPMScheduler
    losses: np.ndarray
    resumed_from: int
    images_per_second: float


def make_scheduler(*, num_train_timesteps: int = 1000, beta_schedule: str = "linear") -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                         variance_type="fixed_small", clip_sample=True, prediction_type="epsilon")


def train_ddpm(
    unet: UNet2DModel,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 2e-4,
    warmup_steps: int = 0,
    ema_decay: float = 0.999,
    grad_clip: float = 1.0,
    num_train_timesteps: int = 1000,
    beta_schedule: Literal["linear", "squaredcos_cap_v2"] = "linear",
    flip: bool = True,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 100,
    resume_key: str = "",
    stop_after: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
) -> DDPMResult:
    """Train ``unet`` in place on uint8 ``images (N, H, W, 3)`` (and ``labels (N,)`` for a class-conditional UNet).

    With ``checkpoint_dir``, a checkpoint (weights, EMA, optimizer, generator state, losses) is
    written atomically every ``checkpoint_every`` steps and at the end, and a checkpoint there with
    the same ``resume_key`` is resumed from. ``stop_after`` ends the run early (crash simulation).
    """
    if len(images) == 0:
        raise UsageError("`images` is empty; the diffusion model needs at least one training image")
    conditional = unet.config.num_class_embeds is not None
    if conditional and labels is None:
        raise UsageError("the UNet is class-conditional (num_class_embeds set) but no `labels` were given")
    if labels is not None and len(labels) != len(images):
        raise UsageError(f"`labels` has {len(labels)} rows but `images` has {len(images)}")
    size = unet.config.sample_size
    if images.shape[1:3] != (size, size):
        raise UsageError(f"`images` are {images.shape[1]}x{images.shape[2]} but the UNet's sample_size is {size}")
    scheduler = make_scheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule)
    data = torch.from_numpy(np.ascontiguousarray(images))
    targets = torch.as_tensor(np.asarray(labels), dtype=torch.long) if conditional else None
    generator = torch.Generator().manual_seed(seed)
    unet.to(device).train()
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    ema = EMA(unet, decay=ema_decay)
    losses = np.zeros(steps, dtype=np.float32)
    start_step = _resume(checkpoint_dir, resume_key, unet, ema, opt, generator, losses)
    last = steps if stop_after is None else min(steps, stop_after)
    started = time.perf_counter()
    with tqdm(total=steps, initial=start_step, disable=not progress, desc="train_diffusion", unit="it") as bar:
        for step in range(start_step, last):
            rows = torch.randint(len(data), (batch_size,), generator=generator)
            x0 = to_model_space(data[rows])
            if flip:
                mirror = torch.rand(batch_size, generator=generator) < 0.5
                x0 = torch.where(mirror[:, None, None, None], x0.flip(-1), x0)
            t = torch.randint(num_train_timesteps, (batch_size,), generator=generator)
            noise = torch.randn(x0.shape, generator=generator)
            x_t = scheduler.add_noise(x0, noise, t)
            y = targets[rows].to(device) if conditional else None
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else lr
            pred = unet(x_t.to(device), t.to(device), class_labels=y).sample
            loss = F.mse_loss(pred, noise.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), grad_clip)
            opt.step()
            ema.update(unet)
            losses[step] = loss.item()
            bar.update()
            done = step + 1
            if checkpoint_dir is not None and (done % checkpoint_every == 0 or done == last):
                _save_checkpoint(checkpoint_dir / CHECKPOINT, done, resume_key, unet, ema, opt, generator, losses)
    seconds = time.perf_counter() - started
    raw = {k: v.detach().cpu().clone() for k, v in unet.state_dict().items()}
    ema.copy_to(unet)
    unet.eval()
    rate = (last - start_step) * batch_size / seconds if last > start_step else 0.0
    return DDPMResult(unet=unet, raw_state=raw, scheduler=scheduler, losses=losses[:last], resumed_from=start_step,
                      images_per_second=rate)


def _save_checkpoint(path: Path, step: int, key: str, unet, ema: EMA, opt, generator, losses) -> None:
    state = {"step": step, "key": key, "unet": unet.state_dict(), "ema": ema.state_dict(),
             "optimizer": opt.state_dict(), "rng": generator.get_state(), "losses": torch.from_numpy(losses)}
    workspace.atomic_write(path, lambda tmp: torch.save(state, tmp))


def _resume(checkpoint_dir: Path | None, key: str, unet, ema: EMA, opt, generator, losses: np.ndarray) -> int:
    """Load a matching checkpoint; returns the step to continue from (0 when there is none)."""
    if checkpoint_dir is None or not (checkpoint_dir / CHECKPOINT).is_file():
        return 0
    state = torch.load(checkpoint_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    if state.get("key") != key or len(state["losses"]) != len(losses):
        log.info("ignoring checkpoint %s: it belongs to another config or data", checkpoint_dir / CHECKPOINT)
        return 0
    unet.load_state_dict(state["unet"])
    device = next(unet.parameters()).device
    ema.load_state_dict({**state["ema"], "shadow": {k: v.to(device) for k, v in state["ema"]["shadow"].items()}})
    opt.load_state_dict(state["optimizer"])
    generator.set_state(state["rng"])
    losses[:] = state["losses"].numpy()
    log.info("resuming diffusion training at step %d from %s", state["step"], checkpoint_dir / CHECKPOINT)
    return int(state["step"])


def resume_key_of(**facts) -> str:
    """A digest of what makes a checkpoint reusable (config, data fingerprint, seed)."""
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


# --- saved models ----------------------------------------------------------------------


@dataclass
class DiffusionModel:
    """A loaded diffusion model: UNet, the scheduler config it was trained with, and its classes."""

    unet: UNet2DModel
    scheduler_config: dict
    class_names: list[str] | None

    @property
    def image_size(self) -> int:
        return int(self.unet.config.sample_size)

    @property
    def conditional(self) -> bool:
        return self.unet.config.num_class_embeds is not None


def save_diffusion_model(folder: Path, unet: UNet2DModel, scheduler: DDPMScheduler, *,
                         class_names: Sequence[str] | None) -> None:
    """Write ``unet/``, ``scheduler/`` (diffusers ``save_pretrained``, safetensors) and ``curate.json``."""
    folder = Path(folder)
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    scheduler.save_pretrained(folder / "scheduler")
    meta = {"class_names": list(class_names) if class_names is not None else None,
            "image_size": int(unet.config.sample_size), "conditional": unet.config.num_class_embeds is not None}
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def load_diffusion_model(source: str | Path) -> DiffusionModel:
    """A model saved by :func:`save_diffusion_model`, or any diffusers ``UNet2DModel`` folder or hub id.

    The UNet and scheduler are read from ``unet/`` and ``scheduler/`` when present, else from the root.
    """
    path = Path(source)
    if path.is_dir():
        sub = "unet" if (path / "unet").is_dir() else None
        sched_dir = path / "scheduler" if (path / "scheduler").is_dir() else path
        unet = UNet2DModel.from_pretrained(path, subfolder=sub, low_cpu_mem_usage=False)
        has_config = (sched_dir / "scheduler_config.json").is_file()
        scheduler_config = dict((DDPMScheduler.load_config(sched_dir) if has_config else make_scheduler().config))
        meta = json.loads((path / META_FILE).read_text()) if (path / META_FILE).is_file() else {}
        return DiffusionModel(unet.eval(), scheduler_config, meta.get("class_names"))
    try:
        unet = UNet2DModel.from_pretrained(str(source), subfolder="unet", low_cpu_mem_usage=False)
        scheduler_config = dict(DDPMScheduler.load_config(str(source), subfolder="scheduler"))
    except (OSError, EnvironmentError):
        unet = UNet2DModel.from_pretrained(str(source), low_cpu_mem_usage=False)
        scheduler_config = dict(DDPMScheduler.load_config(str(source)))
    return DiffusionModel(unet.eval(), scheduler_config, None)


def loss_curve_png(path: Path, losses: np.ndarray, *, title: str = "DDPM training loss") -> None:
    """Per-step loss and its moving average (window ~2% of the steps) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = max(1, len(losses) // 50)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(np.arange(1, len(losses) + 1), losses, color="#BBBBBB", lw=0.6, label="step")
    ax.plot(np.arange(window, len(losses) + 1), smooth, color="#4C72B0", lw=1.5, label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("MSE(eps)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
