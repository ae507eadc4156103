"""Discriminative class tokens (METHODS.md 7.2) on tiny random text-to-image components."""

import json

import numpy as np
import pytest
import torch
from text_helpers import NAMES, MeanColour, tiny_t2i

from curate.errors import UsageError
from synth.class_tokens import (PROMPT, TRAIN_TEMPLATES, LearnedToken, StopRule, TextToImage, TokenSettings,
                                generate, load_token, optimize_token, render, save_token)

FAST = dict(num_inference_steps=2, cfg_scale=5.0)


def _snapshot(t2i):
    return {f"{part}.{k}": v.detach().clone() for part in ("text_encoder", "unet")
            for k, v in getattr(t2i, part).state_dict().items()}


def test_only_the_placeholder_embedding_changes():
    """Two updates with AdamW's weight decay on: every vocabulary row and every weight stays bit-identical, the
    placeholder's row moves, and the tokenizer the model came with does not learn the placeholder."""
    t2i = tiny_t2i()
    before = _snapshot(t2i)
    vocab = len(t2i.tokenizer)
    settings = TokenSettings(epoch_size=1, max_epochs=2, patience=5, accuracy=1.0, weight_decay=0.5, lr=0.1, **FAST)
    classifier = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2))
    tok = optimize_token(t2i, classifier, class_name="red", target=0, settings=settings)
    assert all(p.grad is None and p.requires_grad for p in classifier.parameters())  # frozen inside, restored after
    after = _snapshot(t2i)
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    init = t2i.text_encoder.get_input_embeddings().weight[t2i.tokenizer("a", add_special_tokens=False).input_ids[0]]
    assert not torch.equal(tok.last.reshape(-1), init)
    assert len(t2i.tokenizer) == vocab and all(p.requires_grad for p in t2i.unet.parameters())


def test_loss_falls_with_a_toy_classifier():
    """Target "red" of a mean-colour classifier: the token's loss falls over 20 updates."""
    t2i = tiny_t2i()
    settings = TokenSettings(epoch_size=1, max_epochs=20, patience=100, accuracy=1.0, lr=0.3, **FAST)
    tok = optimize_token(t2i, MeanColour(), class_name="red", target=0, settings=settings)
    losses = np.array([h["loss"] for h in tok.history])
    assert len(losses) == 20 and tok.stop == "max_epochs"
    assert losses[-5:].mean() < losses[:5].mean() - 0.02
    assert tok.best_loss == pytest.approx(losses.min())


def test_each_epoch_scores_the_same_noise():
    """The seed is reset every epoch: with lr 0 every epoch's loss is the same."""
    t2i = tiny_t2i()
    settings = TokenSettings(epoch_size=2, max_epochs=3, patience=5, accuracy=1.0, lr=0.0, weight_decay=0.0, **FAST)
    losses = [h["loss"] for h in optimize_token(t2i, MeanColour(), class_name="red", target=0,
                                                settings=settings).history]
    assert losses[0] == losses[1] == losses[2]


@pytest.mark.parametrize(("losses", "accuracies", "patience", "stop_at", "reason"), [
    ([3.0, 2.0, 2.5, 2.6, 2.7, 1.0], [0.0] * 6, 2, 5, "patience"),   # 3 epochs without a better loss
    ([3.0, 2.0, 2.5, 1.5, 2.6, 2.7, 2.8], [0.0] * 7, 2, 7, "patience"),  # a better loss resets the patience
    ([3.0, 2.0, 1.0, 0.5], [0.2, 0.6, 0.8, 1.0], 15, 3, "accuracy"),  # accuracy above 0.7 (4 of 5)
    ([3.0, 2.0, 1.0, 0.5], [0.2, 0.7, 0.7, 0.7], 15, None, None),    # exactly 0.7 does not stop
])
def test_scripted_losses_stop_at_the_expected_epoch(losses, accuracies, patience, stop_at, reason):
    rule = StopRule(patience=patience)
    stopped = None
    for epoch, (loss, acc) in enumerate(zip(losses, accuracies), 1):
        _, _, why = rule.update(loss, acc)
        if why:
            stopped = (epoch, why)
            break
    assert stopped == ((stop_at, reason) if stop_at else None)


def test_collapse_is_a_loss_above_twice_the_best():
    rule = StopRule()
    assert rule.update(1.0, 0)[1] is False and rule.update(1.9, 0)[1] is False and rule.update(2.1, 0)[1] is True


class Scripted(torch.nn.Module):
    """A 2-class "classifier" whose cross-entropy for class 0 follows a script, one value per call: logits [a, 0] with
    a = -log(e^L - 1), so CE = L and the argmax is right iff L < log 2; differentiable through the image."""

    def __init__(self, script):
        super().__init__()
        self.script, self.calls = [v for epoch in script for v in epoch], 0

    def forward(self, x):
        loss = self.script[self.calls]
        self.calls += 1
        return torch.tensor([[-np.log(np.expm1(loss)), 0.0]]) + 0 * x.mean()


def test_the_optimization_loop_stops_where_the_rules_say():
    """Scripted per-generation losses drive the loop: the accuracy rule stops it at epoch 3; without accuracy the
    patience (1) stops it at epoch 4; each epoch's loss is the mean of its generations'."""
    t2i = tiny_t2i()
    settings = TokenSettings(epoch_size=5, max_epochs=10, patience=1, lr=0.05, **FAST)
    accurate = [[1.0] * 5, [0.5] + [1.0] * 4, [0.5] * 4 + [1.0]] + [[0.5] * 5] * 7  # accuracy 0, .2, .8
    tok = optimize_token(t2i, Scripted(accurate), class_name="red", target=0, settings=settings)
    assert (tok.epochs, tok.stop) == (3, "accuracy")
    assert [h["accuracy"] for h in tok.history] == [0.0, 0.2, 0.8]
    assert [h["loss"] for h in tok.history] == pytest.approx([1.0, 0.9, 0.6])
    late = [[0.1, 0.1, 1.0, 1.0, 1.0], [0.6] * 4 + [1.0]] + [[0.5] * 5] * 8  # best loss at 1, accuracy .8 at 2
    tok = optimize_token(t2i, Scripted(late), class_name="red", target=0, settings=settings)
    assert (tok.epochs, tok.stop) == (2, "accuracy")
    init = t2i.init_row(t2i.with_placeholder("newclas")[0], "a")
    assert torch.equal(tok.row, init.reshape(tok.row.shape)) and not torch.equal(tok.row, tok.last)
    stuck = [[1.0] * 5, [0.9] * 5, [0.95] * 5, [0.95] * 5] + [[0.1] * 5] * 6  # best at 2, then 1 -> 0 -> -1
    tok = optimize_token(t2i, Scripted(stuck), class_name="red", target=0, settings=settings)
    assert (tok.epochs, tok.stop) == (4, "patience")


def test_rendered_prompts_contain_the_token_and_the_class():
    t2i = tiny_t2i()
    tokenizer, token_id = t2i.with_placeholder("newclas")
    for template in (*TRAIN_TEMPLATES, PROMPT):
        prompt = render(template, cls="blue", token="newclas")
        assert "newclas" in prompt and "blue" in prompt
        ids = tokenizer(prompt).input_ids
        assert ids.count(token_id) == 1 and tokenizer("blue", add_special_tokens=False).input_ids[0] in ids
    assert render(PROMPT, cls="blue", token=None) == "A photo of blue"
    with pytest.raises(UsageError, match="already a token"):
        t2i.with_placeholder("blue</w>")


def test_a_saved_token_reloads_and_generates_the_same_images(tmp_path):
    """Saved as safetensors with its class, base model and settings; the reloaded row draws the same images for the
    same seeds, which differ from the plain prompt's."""
    t2i = tiny_t2i()
    settings = TokenSettings(epoch_size=1, max_epochs=2, patience=5, accuracy=1.0, lr=0.3, **FAST)
    tok = optimize_token(t2i, MeanColour(), class_name="red", target=0, settings=settings)
    tok = LearnedToken("red", tok.last * 3, epochs=tok.epochs)  # far from "a", so it changes the images
    save_token(tmp_path / "red.safetensors", tok, base_model="tiny", settings=settings)
    loaded, meta = load_token(tmp_path / "red.safetensors")
    assert loaded.class_name == "red" and meta["base_model"] == "tiny"
    assert json.loads(meta["settings"])["lr"] == 0.3
    torch.testing.assert_close(loaded.row, tok.row.reshape(1, -1), rtol=0, atol=0)
    labels, seeds = np.array([0, 0, 0]), np.array([5, 6, 7])
    kw = dict(steps=2, cfg_scale=5.0, batch_size=2)
    first = generate(t2i, {0: tok.row}, NAMES, labels, seeds, **kw)
    again = generate(t2i, {0: loaded.row}, NAMES, labels, seeds, **kw)
    np.testing.assert_array_equal(first, again)
    assert first.shape == (3, 8, 8, 3) and first.dtype == np.uint8
    assert not np.array_equal(first, generate(t2i, {0: None}, NAMES, labels, seeds, **kw))
    single = generate(t2i, {0: loaded.row}, NAMES, labels[1:2], seeds[1:2], **kw)
    np.testing.assert_array_equal(single[0], first[1])  # a sample depends on its own seed only


def test_a_latent_model_decodes_with_the_vae_scaling_factor():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(4, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        sample_size=8, scaling_factor=0.5).eval()
    t2i = tiny_t2i(vae=vae)
    latents = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(t2i.decode(latents), vae.decode(latents / 0.5).sample.clamp(-1, 1))
    images = generate(t2i, {1: None}, NAMES, np.array([1]), np.array([3]), steps=2, cfg_scale=2.0)
    assert images.shape == (1, 8, 8, 3)
    settings = TokenSettings(epoch_size=1, max_epochs=1, accuracy=1.0, **FAST)
    assert optimize_token(t2i, MeanColour(), class_name="blue", target=1, settings=settings).epochs == 1


def test_a_model_without_text_is_refused():
    from synth.train_diffusion import DiffusionModel
    from synth_helpers import tiny_unet

    with pytest.raises(UsageError, match="conditioned on text .*text_conditioning: true.*conditioned on class labels"
                                         ".*use method classifier_guidance"):
        TextToImage.from_diffusion(DiffusionModel(tiny_unet(num_classes=2), {}, NAMES))


def test_sampling_clips_as_the_model_was_trained():
    """The DDIM chain uses the model's own schedule: a pixel model trained with ``clip_sample`` ends inside [-1, 1]
    (the last step returns the clipped x0), and only an explicit override leaves it unclipped."""
    t2i = tiny_t2i()
    assert t2i.scheduler_config["clip_sample"] is True
    tokenizer, _ = t2i.with_placeholder("newclas")
    latents = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        context, null = t2i.context(tokenizer, ["a photo of a red"] * 4), t2i.context(tokenizer, [""] * 4)
        clipped = t2i.denoise(latents, context, null, steps=3, cfg_scale=5.0)
        free = TextToImage(t2i.tokenizer, t2i.text_encoder, t2i.unet, {**t2i.scheduler_config, "clip_sample": False})
        unclipped = free.denoise(latents, context, null, steps=3, cfg_scale=5.0)
    assert clipped.abs().max() <= 1.0
    assert unclipped.abs().max() > 1.0  # so the random UNet does leave the range and the check above means something


@pytest.mark.parametrize("grad_steps", [1, 3])
def test_the_gradient_flows_through_the_last_grad_steps_only(grad_steps):
    """The paper differentiates the final UNet call only (``grad_steps`` 1, the default); more is opt-in."""
    assert TokenSettings().grad_steps == 1
    t2i = tiny_t2i()
    calls = []
    hook = t2i.unet.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
    settings = TokenSettings(epoch_size=1, max_epochs=1, accuracy=1.0, num_inference_steps=4, cfg_scale=5.0,
                             grad_steps=grad_steps)
    optimize_token(t2i, MeanColour(), class_name="red", target=0, settings=settings)
    hook.remove()
    assert calls == [False] * (4 - grad_steps) + [True] * grad_steps
