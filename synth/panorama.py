"""Large images from a patch diffusion model: windows conditioned on a grid of embeddings, fused at every step.

After Large-Image-Diffusion's ``get_panorama`` (``notebooks/utils.py``; "Learned representation-guided
diffusion models for large-image generation", CVPR 2024), on a pixel-space model:

1. one noise image of the full size ``grid * window``;
2. windows of the model's size at ``stride`` (they must tile the image exactly, so every pixel is covered);
3. the window at pixel offset ``(y, x)`` is conditioned on the grid embeddings at the fractional grid position
   ``(y / window, x / window)``: the four nearest grid cells (edges replicated), slerped along x, then along y;
4. at every step all windows are denoised in one batch (with classifier-free guidance), each window's ``x0_hat``
   is computed, the ``x0_hat`` are **averaged over the overlaps** (sum / coverage), eps is re-derived for the
   whole image from that average, and the scheduler takes one step (DDIM, ``eta`` 1 as the notebook);
5. the result is cut into windows again, each "decoded" (identity for a pixel model; a first-stage decoder for a
   latent one) and blended with the Gaussian weight ``exp(-d^2 / sigma^2)`` (``d``: distance from the window's
   centre on a ``[-1, 1]^2`` grid, ``sigma`` 0.8), normalized by the summed weights per pixel.

The averaging of ``x0_hat`` (MultiDiffusion-style) is what keeps neighbouring windows consistent: with
``stride == window`` the windows are sampled independently and the seams show.
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from curate.errors import UsageError
from synth.conditioning import slerp

Denoiser = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]
"""``eps(windows (B, C, h, w), t, vectors (B, D))``: e.g. ``partial(ConditionedUNet.guided_eps, w=3)``."""


def window_offsets(size: int, window: int, stride: int) -> list[int]:
    """Offsets ``0, stride, ..., size - window`` of windows that tile ``size`` exactly."""
    if window > size or stride < 1 or (size - window) % stride:
        raise UsageError(f"windows of {window} px at stride {stride} do not tile {size} px exactly: need "
                         f"window <= size and (size - window) divisible by stride")
    return list(range(0, size - window + 1, stride))


def window_grid(height: int, width: int, window: int, stride: int) -> list[tuple[int, int]]:
    """``(y, x)`` pixel offsets of every window, row by row."""
    return [(y, x) for y in window_offsets(height, window, stride) for x in window_offsets(width, window, stride)]


def coverage(height: int, width: int, window: int, offsets: list[tuple[int, int]]) -> torch.Tensor:
    """How many windows cover each pixel, ``(height, width)``."""
    count = torch.zeros(height, width)
    for y, x in offsets:
        count[y:y + window, x:x + window] += 1
    return count


def interpolate_grid(grid: torch.Tensor, fy: float, fx: float) -> torch.Tensor:
    """The embedding at fractional grid position ``(fy, fx)`` of ``grid (gh, gw, D)``: slerp of the four nearest
    cells (edges replicated), along x first, then along y."""
    gh, gw, _ = grid.shape
    r0, c0 = min(int(math.floor(fy)), gh - 1), min(int(math.floor(fx)), gw - 1)
    r1, c1 = min(r0 + 1, gh - 1), min(c0 + 1, gw - 1)
    ty, tx = fy - r0, fx - c0
    top = slerp(grid[r0, c0], grid[r0, c1], tx)
    bottom = slerp(grid[r1, c0], grid[r1, c1], tx)
    return slerp(top, bottom, ty)


def window_vectors(grid: torch.Tensor, offsets: list[tuple[int, int]], window: int) -> torch.Tensor:
    """One conditioning vector per window (``(len(offsets), D)``), from its fractional grid position."""
    return torch.stack([interpolate_grid(grid, y / window, x / window) for y, x in offsets])


def crop_windows(image: torch.Tensor, offsets: list[tuple[int, int]], window: int) -> torch.Tensor:
    """``image (C, H, W)`` -> its windows ``(n, C, window, window)``."""
    return torch.stack([image[:, y:y + window, x:x + window] for y, x in offsets])


def average_windows(windows: torch.Tensor, offsets: list[tuple[int, int]], size: tuple[int, int],
                    weights: torch.Tensor | None = None) -> torch.Tensor:
    """Windows ``(n, C, w, w)`` placed at ``offsets`` and averaged per pixel (``weights (w, w)``: a weighted
    average, normalized by the summed weights); returns ``(C, H, W)``."""
    n, c, h, w = windows.shape
    weight = torch.ones(h, w, dtype=windows.dtype) if weights is None else weights.to(windows.dtype)
    total = windows.new_zeros(c, *size)
    norm = windows.new_zeros(*size)
    for win, (y, x) in zip(windows, offsets):
        total[:, y:y + h, x:x + w] += win * weight
        norm[y:y + h, x:x + w] += weight
    if bool((norm <= 0).any()):
        raise UsageError("some pixels are covered by no window; choose window and stride that tile the image")
    return total / norm


def gaussian_weights(window: int, *, sigma: float = 0.8) -> torch.Tensor:
    """``exp(-d^2 / sigma^2)`` over a ``window x window`` grid spanning ``[-1, 1]^2`` (pixel centres)."""
    axis = (torch.arange(window, dtype=torch.float32) + 0.5) / window * 2 - 1
    d2 = axis[:, None] ** 2 + axis[None, :] ** 2
    return torch.exp(-d2 / sigma ** 2)


def blend_windows(image: torch.Tensor, offsets: list[tuple[int, int]], window: int, *, sigma: float = 0.8,
                  decode: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Cut ``image (C, H, W)`` into its windows, ``decode`` each (identity by default) and blend them with
    Gaussian weights; identical windows give back their content exactly."""
    windows = crop_windows(image, offsets, window)
    if decode is not None:
        windows = decode(windows)
    return average_windows(windows, offsets, tuple(image.shape[-2:]), gaussian_weights(window, sigma=sigma))


@torch.no_grad()
def assemble(denoise: Denoiser, scheduler, grid: torch.Tensor, *, window: int, stride: int, channels: int = 3,
             num_inference_steps: int = 50, eta: float = 1.0, generator: torch.Generator | None = None,
             batch_size: int = 64, sigma: float = 0.8, clip: bool = True, device: str = "cpu",
             progress: bool = False) -> torch.Tensor:
    """A ``(C, gh * window, gw * window)`` image in [-1, 1] from ``grid (gh, gw, D)`` of embeddings.

    ``denoise`` predicts eps for a batch of windows and their vectors; ``scheduler`` is a DDIM scheduler on the
    model's training noise schedule (``eta`` 1: full stochastic noise, as the notebook's ``ddim=1``). ``clip``
    clips each window's ``x0_hat`` to [-1, 1] before averaging, as a clipping scheduler would.
    """
    from diffusers import DDIMScheduler

    if not isinstance(scheduler, DDIMScheduler):
        raise UsageError(f"the panorama loop takes DDIM steps; got a {type(scheduler).__name__}")
    gh, gw, _ = grid.shape
    height, width = gh * window, gw * window
    offsets = window_grid(height, width, window, stride)
    vectors = window_vectors(grid.float(), offsets, window).to(device)
    sched = copy.deepcopy(scheduler)
    sched.set_timesteps(num_inference_steps)
    free = type(sched).from_config({**dict(sched.config), "clip_sample": False})  # x0 is fused here
    free.set_timesteps(num_inference_steps)
    gen = generator or torch.Generator().manual_seed(0)
    x = torch.randn((1, channels, height, width), generator=gen).to(device) * sched.init_noise_sigma
    for t in tqdm(sched.timesteps.tolist(), disable=not progress, desc="panorama", unit="step"):
        a = sched.alphas_cumprod[t].to(device)
        windows = crop_windows(x[0], offsets, window)
        eps = torch.cat([denoise(windows[i:i + batch_size], t, vectors[i:i + batch_size])
                         for i in range(0, len(windows), batch_size)])
        x0 = (windows - (1 - a).sqrt() * eps) / a.sqrt()
        if clip:
            x0 = x0.clamp(-1, 1)
        fused = average_windows(x0, offsets, (height, width))[None]
        eps_full = (x - a.sqrt() * fused) / (1 - a).sqrt()
        x = free.step(eps_full, t, x, eta=eta, generator=gen).prev_sample
    return blend_windows(x[0], offsets, window, sigma=sigma)


def patch_grid(image: np.ndarray, window: int) -> np.ndarray:
    """The non-overlapping ``window x window`` patches of uint8 ``image (H, W, 3)``, row by row:
    ``(gh * gw, window, window, 3)`` (``H`` and ``W`` must be multiples of ``window``)."""
    h, w, c = image.shape
    if h % window or w % window:
        raise UsageError(f"a {h}x{w} reference does not split into {window} px patches; resize it to a multiple")
    gh, gw = h // window, w // window
    return image.reshape(gh, window, gw, window, c).transpose(0, 2, 1, 3, 4).reshape(gh * gw, window, window, c)


def panorama_of(diffusion, reference: np.ndarray, *, stride: int | None = None, w: float = 3.0,
                num_inference_steps: int = 50, eta: float = 1.0, seed: int = 0, batch_size: int = 64,
                device: str = "cpu", progress: bool = False) -> np.ndarray:
    """A uint8 image the size of ``reference (H, W, 3)`` assembled by an embedding-conditioned
    :class:`~synth.train_diffusion.DiffusionModel` from the embeddings of the reference's patches of the model's
    size (its own encoder, normalized as in training); windows at ``stride`` (default half a window), CFG ``w``."""
    import functools

    from synth.pipeline import make_sampler
    from synth.train_diffusion import to_uint8

    window = diffusion.image_size
    h, w_px, _ = reference.shape
    vectors = diffusion.embed(patch_grid(reference, window), device=device)
    grid = torch.from_numpy(vectors).reshape(h // window, w_px // window, -1)
    model = diffusion.conditioned_unet().to(device).eval()
    out = assemble(functools.partial(model.guided_eps, w=w), make_sampler("ddim", diffusion.scheduler_config), grid,
                   window=window, stride=stride or max(1, window // 2), channels=int(model.unet.config.in_channels),
                   num_inference_steps=num_inference_steps, eta=eta, generator=torch.Generator().manual_seed(seed),
                   batch_size=batch_size, device=device, progress=progress)
    return to_uint8(out[None])[0]
