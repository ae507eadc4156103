"""Large-image assembly (METHODS.md section 8): windows tile and cover every pixel, grid embeddings are slerped
between cells, x0 averaging leaves a constant toy image seamless, Gaussian blending reproduces agreeing windows
and normalizes per pixel, and the loop runs on a tiny conditioned UNet."""

import functools

import numpy as np
import pytest
import torch

from curate.errors import UsageError
from synth.conditioning import slerp
from synth.panorama import (assemble, average_windows, blend_windows, coverage, crop_windows, gaussian_weights,
                            interpolate_grid, panorama_of, patch_grid, window_grid, window_offsets)
from synth_helpers import tiny_conditioned, tiny_conditioned_diffusion, tiny_sampler


@pytest.mark.parametrize(("size", "window", "stride"), [(32, 8, 4), (32, 8, 8), (24, 8, 2), (16, 16, 1)])
def test_windows_cover_every_pixel(size, window, stride):
    offsets = window_grid(size, size, window, stride)
    count = coverage(size, size, window, offsets)
    assert count.min() >= 1
    assert count.sum() == len(offsets) * window * window  # every window lands inside the image


def test_windows_that_do_not_tile_are_refused():
    assert window_offsets(32, 8, 8) == [0, 8, 16, 24]
    with pytest.raises(UsageError, match="tile"):
        window_offsets(30, 8, 4)


def test_grid_interpolation_hits_cells_replicates_edges_and_slerps_between():
    g = torch.nn.functional.normalize(torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0)), dim=-1)
    torch.testing.assert_close(interpolate_grid(g, 1.0, 2.0), g[1, 2])
    torch.testing.assert_close(interpolate_grid(g, 2.5, 3.5), g[2, 3])  # beyond the last cell: replicated
    torch.testing.assert_close(interpolate_grid(g, 0.0, 0.5), slerp(g[0, 0], g[0, 1], 0.5))
    x_first = slerp(slerp(g[0, 0], g[0, 1], 0.25), slerp(g[1, 0], g[1, 1], 0.25), 0.5)
    torch.testing.assert_close(interpolate_grid(g, 0.5, 0.25), x_first)


def test_averaging_x0_of_a_constant_toy_denoiser_gives_a_seamless_constant_panorama():
    """A toy denoiser whose x0_hat is the constant 0.3 for every window: the panorama is 0.3 everywhere."""
    sched = tiny_sampler()

    def denoise(windows, t, vectors):
        a = sched.alphas_cumprod[t]
        return (windows - a.sqrt() * 0.3) / (1 - a).sqrt()

    grid = torch.randn(3, 3, 4, generator=torch.Generator().manual_seed(0))
    out = assemble(denoise, sched, grid, window=8, stride=4, num_inference_steps=5,
                   generator=torch.Generator().manual_seed(1))
    assert out.shape == (3, 24, 24)
    torch.testing.assert_close(out, torch.full_like(out, 0.3), atol=1e-5, rtol=0)


def test_averaging_makes_overlapping_windows_agree_where_disjoint_windows_show_seams():
    """x0_hat of each window is the constant its vector names: with overlap the panorama varies smoothly, without
    overlap it is piecewise constant with jumps at the window borders."""
    sched = tiny_sampler()

    def denoise(windows, t, vectors):
        a = sched.alphas_cumprod[t]
        return (windows - a.sqrt() * vectors[:, :1, None, None]) / (1 - a).sqrt()

    grid = torch.tensor([[[-0.8], [0.8]], [[0.8], [-0.8]]])
    kwargs = dict(window=8, num_inference_steps=4, generator=torch.Generator().manual_seed(0))
    seams = assemble(denoise, sched, grid, stride=8, **kwargs)[0]
    smooth = assemble(denoise, sched, grid, stride=2, **kwargs)[0]
    assert (seams[:, 7] - seams[:, 8]).abs().max() > 1.5
    assert (smooth[:, 1:] - smooth[:, :-1]).abs().max() < 0.5


def test_gaussian_blending_reproduces_agreeing_windows_and_normalizes_per_pixel():
    image = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(0))
    offsets = window_grid(16, 16, 8, 4)
    torch.testing.assert_close(blend_windows(image, offsets, 8), image)
    torch.testing.assert_close(blend_windows(image, offsets, 8, decode=lambda w: w + 0.5), image + 0.5)
    same = image[:, :8, :8]
    torch.testing.assert_close(average_windows(torch.stack([same, same]), [(0, 0), (0, 0)], (8, 8),
                                               gaussian_weights(8)), same)
    w = gaussian_weights(8, sigma=0.8)
    corner = (1 - 1 / 8) ** 2 * 2  # d^2 at a corner pixel centre
    assert w.max() == w[3:5, 3:5].min() and float(w[0, 0]) == pytest.approx(np.exp(-corner / 0.64), rel=1e-5)


def test_patch_grid_splits_an_image_row_by_row():
    image = np.arange(16 * 8 * 3, dtype=np.uint8).reshape(16, 8, 3)
    patches = patch_grid(image, 4)
    assert patches.shape == (8, 4, 4, 3)
    np.testing.assert_array_equal(patches[3], image[4:8, 4:8])
    crops = crop_windows(torch.from_numpy(image).permute(2, 0, 1), window_grid(16, 8, 4, 4), 4)
    np.testing.assert_array_equal(crops.permute(0, 2, 3, 1).numpy(), patches)
    with pytest.raises(UsageError, match="patches"):
        patch_grid(image, 5)


def test_assemble_runs_a_conditioned_unet_and_repeats_for_a_generator():
    model = tiny_conditioned()
    denoise = functools.partial(model.guided_eps, w=3.0)
    grid = torch.randn(2, 2, 6, generator=torch.Generator().manual_seed(0))
    run = functools.partial(assemble, denoise, tiny_sampler(), grid, window=8, stride=4, num_inference_steps=2)
    a = run(generator=torch.Generator().manual_seed(5))
    assert a.shape == (3, 16, 16) and torch.isfinite(a).all()
    torch.testing.assert_close(run(generator=torch.Generator().manual_seed(5)), a)
    with pytest.raises(UsageError, match="DDIM"):
        assemble(denoise, tiny_sampler("ddpm"), grid, window=8, stride=4, num_inference_steps=2)


def test_panorama_of_a_reference_embeds_its_patches_with_the_models_encoder():
    diffusion = tiny_conditioned_diffusion(None)
    seen = []

    def embed(patches, device="cpu"):
        seen.append(patches.copy())
        return np.random.default_rng(0).normal(size=(len(patches), 6)).astype(np.float32)

    diffusion.embed = embed
    reference = np.random.default_rng(1).integers(0, 256, size=(16, 24, 3), dtype=np.uint8)
    out = panorama_of(diffusion, reference, num_inference_steps=2)
    assert out.shape == (16, 24, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(seen[0], patch_grid(reference, 8))  # 2 x 3 patches of the model's size
