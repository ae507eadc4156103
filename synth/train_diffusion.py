"""DDPM training of a small diffusers UNet, with EMA, atomic checkpoints and exact resume.

The loss is Ho et al.'s simple objective: draw ``t`` and ``eps``, form
``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` and regress ``eps`` with MSE. Images live in
``[-1, 1]`` NCHW. Every random draw (rows, flips, timesteps, noise, dropped conditions) comes from
ONE CPU ``torch.Generator`` whose state is checkpointed with the weights, EMA weights and optimizer,
so a run resumed from a checkpoint takes the same draws as an uninterrupted one (bit-identical on CPU).

The UNet is unconditional, class-conditional (``UNet2DModel`` with ``num_class_embeds``) or
conditioned on embedding vectors through a trainable :class:`~synth.conditioning.Conditioner`
(``UNet2DConditionModel`` with cross-attention, or ``UNet2DModel`` with vector conditioning), whose
vectors are dropped to the null embedding with probability ``p_uncond``; the conditioner trains,
averages (EMA) and checkpoints with the UNet.

A saved model is a folder in the diffusers layout (``unet/`` and ``scheduler/`` through
``save_pretrained``, safetensors) plus ``curate.json`` (class names, image size, conditioning) and,
for an embedding-conditioned model, the conditioner and its encoder, so any diffusers
``UNet2DModel`` checkpoint a user has loads the same way (:func:`load_diffusion_model`).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel, UNet2DModel
from tqdm.auto import tqdm

from curate.errors import UsageError
from curate.learn.checkpoint import load_training_state, save_training_state
from synth.conditioning import Conditioner, ConditionedUNet, Kind, drop_mask, load_conditioner, save_conditioner

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
META_FILE = "curate.json"
ENCODER_DIR = "encoder"


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
    conditioning: Kind | None = None,
    context_dim: int = 64,
    channels: int = 3,
    seed: int = 0,
) -> UNet2DModel | UNet2DConditionModel:
    """A UNet predicting eps; ``num_classes`` adds a class embedding (``num_class_embeds``).

    ``attention_levels`` lists the resolution levels (0 = full size) that get self-attention;
    the CPU demo uses none, CIFAR-size GPU models use the 16x16 level. ``conditioning``
    ``cross_attention`` builds a ``UNet2DConditionModel`` whose middle block and ``attention_levels``
    attend to a ``context_dim`` context (self- and cross-attention); ``vector`` a ``UNet2DModel``
    that adds a vector of its time-embedding width to the time embedding.
    """
    levels = len(block_out_channels)
    if image_size % 2 ** (levels - 1):
        raise UsageError(f"`image_size` {image_size} must be divisible by 2^{levels - 1} for {levels} UNet levels "
                         f"(block_out_channels {list(block_out_channels)})")
    bad = [lv for lv in attention_levels if not 0 <= lv < levels]
    if bad:
        raise UsageError(f"`attention_levels` must lie in 0..{levels - 1}, got {bad}")
    if conditioning is not None and num_classes is not None:
        raise UsageError("a UNet is conditioned on classes (num_classes) or on embeddings (conditioning), not both")
    attn = "CrossAttn" if conditioning == "cross_attention" else "Attn"
    down = tuple(f"{attn}DownBlock2D" if lv in attention_levels else "DownBlock2D" for lv in range(levels))
    up = tuple(f"{attn}UpBlock2D" if lv in attention_levels else "UpBlock2D" for lv in reversed(range(levels)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if conditioning == "cross_attention":
            return UNet2DConditionModel(
                sample_size=image_size, in_channels=channels, out_channels=channels,
                layers_per_block=layers_per_block, block_out_channels=tuple(block_out_channels),
                down_block_types=down, up_block_types=up, mid_block_type="UNetMidBlock2DCrossAttn",
                norm_num_groups=_norm_groups(block_out_channels), cross_attention_dim=context_dim,
                attention_head_dim=min(8, min(block_out_channels)),
            )
        return UNet2DModel(
            sample_size=image_size, in_channels=channels, out_channels=channels, layers_per_block=layers_per_block,
            block_out_channels=tuple(block_out_channels), down_block_types=down, up_block_types=up,
            norm_num_groups=_norm_groups(block_out_channels), num_class_embeds=num_classes,
            class_embed_type="identity" if conditioning == "vector" else None,
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
    """The trained UNet and conditioner (EMA weights loaded), the raw weights, per-step losses and throughput."""

    unet: UNet2DModel | UNet2DConditionModel
    raw_state: dict
    scheduler: DDPMScheduler
    losses: np.ndarray
    resumed_from: int
    images_per_second: float
    conditioner: Conditioner | None = None


def make_scheduler(*, num_train_timesteps: int = 1000, beta_schedule: str = "linear") -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                         variance_type="fixed_small", clip_sample=True, prediction_type="epsilon")


def train_ddpm(
    unet: UNet2DModel | UNet2DConditionModel,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    embeddings: np.ndarray | None = None,
    conditioner: Conditioner | None = None,
    p_uncond: float = 0.1,
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

    With a ``conditioner``, row ``i`` is conditioned on ``embeddings[i]`` (float (N, D)), dropped to the
    null embedding with probability ``p_uncond``; the conditioner trains with the UNet.
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
    if (conditioner is None) != (embeddings is None):
        raise UsageError("an embedding-conditioned UNet needs both `conditioner` and `embeddings`")
    if embeddings is not None and len(embeddings) != len(images):
        raise UsageError(f"`embeddings` has {len(embeddings)} rows but `images` has {len(images)}")
    model = unet if conditioner is None else ConditionedUNet(unet, conditioner)
    vectors = None if embeddings is None else _condition_tensor(np.asarray(embeddings))
    size = unet.config.sample_size
    if images.shape[1:3] != (size, size):
        raise UsageError(f"`images` are {images.shape[1]}x{images.shape[2]} but the UNet's sample_size is {size}")
    scheduler = make_scheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule)
    data = torch.from_numpy(np.ascontiguousarray(images))
    targets = torch.as_tensor(np.asarray(labels), dtype=torch.long) if conditional else None
    generator = torch.Generator().manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    ema = EMA(model, decay=ema_decay)
    losses = np.zeros(steps, dtype=np.float32)
    path = checkpoint_dir / CHECKPOINT if checkpoint_dir is not None else None
    start_step = _resume(load_training_state(path, key=resume_key), model, ema, opt, generator, losses)
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
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else lr
            if conditioner is not None:
                drop = drop_mask(batch_size, p_uncond, generator)
                pred = model(x_t.to(device), t.to(device), vectors[rows].to(device), drop.to(device))
            else:
                y = targets[rows].to(device) if conditional else None
                pred = unet(x_t.to(device), t.to(device), class_labels=y).sample
            loss = F.mse_loss(pred, noise.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            ema.update(model)
            losses[step] = loss.item()
            bar.update()
            done = step + 1
            if path is not None and (done % checkpoint_every == 0 or done == last):
                save_training_state(path, key=resume_key, step=done, state={
                    "unet": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                    "rng": generator.get_state(), "losses": torch.from_numpy(losses)})
    seconds = time.perf_counter() - started
    raw = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    ema.copy_to(model)
    model.eval()
    rate = (last - start_step) * batch_size / seconds if last > start_step else 0.0
    return DDPMResult(unet=unet, raw_state=raw, scheduler=scheduler, losses=losses[:last], resumed_from=start_step,
                      images_per_second=rate, conditioner=conditioner)


def _condition_tensor(values: np.ndarray) -> torch.Tensor:
    """Embedding vectors as float32; token ids (a text conditioner's input) stay integers."""
    return torch.as_tensor(values) if values.dtype.kind in "iu" else torch.as_tensor(values, dtype=torch.float32)


def _resume(state: dict | None, model, ema: EMA, opt, generator, losses: np.ndarray) -> int:
    """Load a matching checkpoint's state; returns the step to continue from (0 when there is none)."""
    if state is None or len(state["losses"]) != len(losses):
        return 0
    model.load_state_dict(state["unet"])
    device = next(model.parameters()).device
    ema.load_state_dict({**state["ema"], "shadow": {k: v.to(device) for k, v in state["ema"]["shadow"].items()}})
    opt.load_state_dict(state["optimizer"])
    generator.set_state(state["rng"])
    losses[:] = state["losses"].numpy()
    return int(state["step"])


# --- saved models ----------------------------------------------------------------------


@dataclass
class DiffusionModel:
    """A loaded diffusion model: UNet, the scheduler config it was trained with, its classes, and for an
    embedding-conditioned model its conditioner and ``conditioning`` record (:func:`save_diffusion_model`)."""

    unet: UNet2DModel | UNet2DConditionModel
    scheduler_config: dict
    class_names: list[str] | None
    conditioner: Conditioner | None = None
    conditioning: dict[str, Any] | None = None
    folder: Path | None = None
    vae: Any = None

    @property
    def image_size(self) -> int:
        """Side of a sample in pixels: the UNet's size, times the VAE's downsampling for a latent model."""
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 1
        return int(self.unet.config.sample_size) * factor

    @property
    def conditional(self) -> bool:
        return self.unet.config.num_class_embeds is not None

    @property
    def embedding_conditioned(self) -> bool:
        return isinstance(self.conditioner, Conditioner)

    @property
    def text_conditioned(self) -> bool:
        return self.conditioner is not None and not self.embedding_conditioned

    @property
    def conditioned_on(self) -> str:
        """What the UNet reads besides the noisy image, as a synth method's ``conditioning`` names it."""
        return "text" if self.text_conditioned else "embeddings" if self.embedding_conditioned else "classes"

    def conditioned_unet(self) -> ConditionedUNet:
        if self.conditioner is None:
            raise UsageError("this diffusion model is not conditioned on embeddings; train it with an `embed` "
                             "step wired to train_diffusion's inputs.embeddings")
        return ConditionedUNet(self.unet, self.conditioner)

    def encoder(self):
        """The curate model whose embeddings condition this model (saved in it, or rebuilt from its registry spec)."""
        from curate.artifacts import load_recorded_model
        from curate.models import load_model

        record = (self.conditioning or {}).get("encoder")
        if record is None:
            raise UsageError("the diffusion model records no encoder; give the embeddings (an `embed` step run "
                             "with the model it was trained on)")
        if "saved" in record["model"]:
            return load_model(Path(self.folder) / record["model"]["saved"])
        return load_recorded_model(record["model"])

    def embed(self, images: np.ndarray, *, device: str = "cpu", encoder: torch.nn.Module | None = None) -> np.ndarray:
        """Conditioning vectors of uint8 ``images (N, H, W, 3)``: the encoder's features, normalized as the
        embeddings the model was trained on were (the conditioner then applies its own normalization).
        ``encoder``: :meth:`encoder`'s model when the caller already loaded it."""
        from curate.learn.embed import embed_images

        return embed_images(encoder or self.encoder(), images, batch_size=256,
                            normalize=bool(self.conditioning["encoder"]["normalize"]), device=device)


def save_diffusion_model(folder: Path, unet: UNet2DModel | UNet2DConditionModel, scheduler: DDPMScheduler, *,
                         class_names: Sequence[str] | None, conditioner: Conditioner | None = None,
                         encoder: dict[str, Any] | None = None, encoder_dir: Path | None = None) -> None:
    """Write ``unet/``, ``scheduler/`` (diffusers ``save_pretrained``, safetensors) and ``curate.json``.

    An embedding-conditioned model also writes its conditioner and ``encoder``, the record of what made its
    embeddings: ``{"model": spec, "normalize": bool, ...}`` (an `embed` step's entry); a model artifact of the
    run (``encoder_dir``) is copied into ``encoder/`` so the folder conditions new images anywhere.
    """
    folder = Path(folder)
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    scheduler.save_pretrained(folder / "scheduler")
    meta: dict[str, Any] = {"class_names": list(class_names) if class_names is not None else None,
                            "image_size": int(unet.config.sample_size),
                            "conditional": unet.config.num_class_embeds is not None}
    if conditioner is not None:
        save_conditioner(folder, conditioner)
        record = dict(encoder or {})
        if encoder_dir is not None:
            shutil.copytree(encoder_dir, folder / ENCODER_DIR)
            record["model"] = {"saved": ENCODER_DIR, "name": (record.get("model") or {}).get("name")}
        meta["conditioning"] = {**conditioner.config(), "encoder": record or None}
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def load_diffusion_model(source: str | Path) -> DiffusionModel:
    """A model saved by :func:`save_diffusion_model`, or any diffusers ``UNet2DModel`` folder or hub id.

    The UNet and scheduler are read from ``unet/`` and ``scheduler/`` when present, else from the root.
    """
    path = Path(source)
    if path.is_dir():
        sub = "unet" if (path / "unet").is_dir() else None
        sched_dir = path / "scheduler" if (path / "scheduler").is_dir() else path
        meta = json.loads((path / META_FILE).read_text()) if (path / META_FILE).is_file() else {}
        conditioner = load_conditioner(path)
        unet_class = UNet2DConditionModel if (conditioner is not None and conditioner.kind == "cross_attention") \
            else UNet2DModel
        unet = unet_class.from_pretrained(path, subfolder=sub, low_cpu_mem_usage=False)
        has_config = (sched_dir / "scheduler_config.json").is_file()
        scheduler_config = dict((DDPMScheduler.load_config(sched_dir) if has_config else make_scheduler().config))
        vae = None
        if (path / "vae").is_dir():  # a latent (Stable Diffusion style) model
            from diffusers import AutoencoderKL

            vae = AutoencoderKL.from_pretrained(path, subfolder="vae", low_cpu_mem_usage=False).eval()
        return DiffusionModel(unet.eval(), scheduler_config, meta.get("class_names"), conditioner=conditioner,
                              conditioning=meta.get("conditioning"), folder=path, vae=vae)
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
