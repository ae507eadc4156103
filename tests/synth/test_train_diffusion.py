"""DDPM training: exact resume from a checkpoint, checkpoint ownership, save/load round trip."""

import numpy as np
import torch

from synth.train_diffusion import CHECKPOINT, load_diffusion_model, save_diffusion_model, train_ddpm
from synth_helpers import tiny_unet

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(12, 8, 8, 3), dtype=np.uint8)
LABELS = np.arange(12) % 2
OPTS = dict(steps=4, batch_size=3, lr=1e-3, warmup_steps=2, ema_decay=0.9, checkpoint_every=2, seed=7)


def _states_equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_resume_from_a_checkpoint_gives_the_uninterrupted_result(tmp_path):
    """Stop after 2 of 4 steps, resume in a fresh process-like setup: weights, EMA and losses are bit-identical."""
    full = train_ddpm(tiny_unet(num_classes=2), IMAGES, LABELS, checkpoint_dir=tmp_path / "a", resume_key="k", **OPTS)
    first = train_ddpm(tiny_unet(num_classes=2), IMAGES, LABELS, checkpoint_dir=tmp_path / "b", resume_key="k",
                       stop_after=2, **OPTS)
    assert len(first.losses) == 2 and (tmp_path / "b" / CHECKPOINT).is_file()
    resumed = train_ddpm(tiny_unet(num_classes=2, seed=99), IMAGES, LABELS, checkpoint_dir=tmp_path / "b",
                         resume_key="k", **OPTS)
    assert resumed.resumed_from == 2
    np.testing.assert_array_equal(resumed.losses, full.losses)
    assert _states_equal(resumed.raw_state, full.raw_state)
    assert _states_equal(resumed.unet.state_dict(), full.unet.state_dict())  # EMA weights
    assert not _states_equal(full.unet.state_dict(), full.raw_state)  # the EMA really differs from the raw weights


def test_a_checkpoint_of_another_config_is_not_resumed(tmp_path):
    train_ddpm(tiny_unet(num_classes=2), IMAGES, LABELS, checkpoint_dir=tmp_path, resume_key="old", stop_after=1,
               **{**OPTS, "steps": 2, "checkpoint_every": 1})
    again = train_ddpm(tiny_unet(num_classes=2), IMAGES, LABELS, checkpoint_dir=tmp_path, resume_key="new",
                       **{**OPTS, "steps": 2})
    assert again.resumed_from == 0 and len(again.losses) == 2


def test_saved_model_loads_with_diffusers_and_predicts_the_same(tmp_path):
    result = train_ddpm(tiny_unet(num_classes=2), IMAGES, LABELS, steps=1, batch_size=2, seed=0)
    save_diffusion_model(tmp_path, result.unet, result.scheduler, class_names=["a", "b"])
    assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = load_diffusion_model(tmp_path)
    x, t, y = torch.randn(2, 3, 8, 8), torch.tensor([5, 50]), torch.tensor([0, 1])
    with torch.no_grad():
        expected = result.unet(x, t, class_labels=y).sample
        np.testing.assert_array_equal(loaded.unet(x, t, class_labels=y).sample, expected)
    assert loaded.class_names == ["a", "b"] and loaded.conditional and loaded.image_size == 8
    assert loaded.scheduler_config["num_train_timesteps"] == 1000
