"""The one training loop: it learns, it repeats exactly for a seed, and it says clearly what is wrong."""

import math

import numpy as np
import pytest
import torch

from curate.errors import UsageError
from curate.learn import ArrayData, Augment, fit, learning_rate
from curate.learn.fit import progress_postfix
from curate.learn.mixing import MIXERS, create_mixer

FAST = dict(epochs=3, batch_size=32, lr=0.05, device="cpu", progress=False)


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_fit_lowers_loss_and_separates_the_classes(separable, make_convnet):
    images, labels = separable
    result = fit(make_convnet(), ArrayData(images, labels), eval_data=(images, labels), **{**FAST, "epochs": 8})
    losses = [h["loss"] for h in result.history]
    assert [h["epoch"] for h in result.history] == list(range(1, 9))
    assert losses[-1] < 0.3 * losses[0]
    assert result.final_accuracy == result.history[-1]["eval_accuracy"] >= 0.95
    assert not result.model.training  # handed back ready for inference


def test_history_has_each_epochs_held_out_accuracy_and_the_progress_bar_shows_it(separable, make_convnet, capsys):
    """One eval per epoch in the history; the bar's postfix ends with the last epoch's loss and accuracy."""
    images, labels = separable
    result = fit(make_convnet(), ArrayData(images, labels), eval_data=(images[:30], labels[:30]),
                 **{**FAST, "progress": True})
    scores = [h["eval_accuracy"] for h in result.history]
    assert len(scores) == 3 and all(s in {k / 30 for k in range(31)} for s in scores)
    shown = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    last = result.history[-1]
    assert f"eval_acc={last['eval_accuracy']:.2%}" in shown and f"loss={last['loss']:.4f}" in shown
    assert "epoch=3" in shown
    without = fit(make_convnet(), ArrayData(images, labels), **{**FAST, "progress": True})
    assert "eval_accuracy" not in without.history[-1] and "eval_acc" not in capsys.readouterr().err


def test_progress_postfix_shows_accuracy_only_once_scored():
    assert progress_postfix(1, 2.30259, None) == {"epoch": "1", "loss": "2.3026"}
    assert progress_postfix(4, 0.5, 0.4796) == {"epoch": "4", "loss": "0.5000", "eval_acc": "47.96%"}


def test_same_seed_same_weights_other_seed_other_weights(separable, make_convnet):
    images, labels = separable
    data = ArrayData(images, labels, augment=Augment())
    runs = {seed: weights(fit(make_convnet(), data, seed=seed, **FAST).model) for seed in (0, 1)}
    again = weights(fit(make_convnet(), data, seed=0, **FAST).model)
    assert torch.equal(runs[0], again)
    assert not torch.allclose(runs[0], runs[1])


def test_fit_leaves_the_global_rng_alone(separable, make_convnet):
    images, labels = separable
    before = torch.random.get_rng_state()
    fit(make_convnet(), ArrayData(images, labels, augment=Augment()), **FAST)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_one_hot_soft_targets_train_exactly_like_hard_labels(separable, make_convnet):
    images, labels = separable
    one_hot = np.eye(3, dtype=np.float32)[labels]
    hard = fit(make_convnet(), ArrayData(images, labels), targets="hard", **FAST)
    soft = fit(make_convnet(), ArrayData(images, one_hot), targets="soft", **FAST)
    for h, s in zip(hard.history, soft.history):
        assert h["loss"] == pytest.approx(s["loss"], rel=1e-5)
    torch.testing.assert_close(weights(hard.model), weights(soft.model), rtol=1e-4, atol=1e-5)


def test_identity_mixer_sees_float_nchw_and_one_hot_rows_and_changes_nothing(separable, make_convnet):
    images, labels = separable
    seen = []

    def recording(x, t, generator):
        seen.append((x.dtype, tuple(x.shape[1:]), t.dtype, t.sum(1)))
        return create_mixer("none")(x, t, generator)

    plain = fit(make_convnet(), ArrayData(images, labels), **FAST)
    mixed = fit(make_convnet(), ArrayData(images, labels), mix=recording, **FAST)
    dtype, shape, tdtype, sums = seen[0]
    assert (dtype, shape, tdtype) == (torch.float32, (3, 8, 8), torch.float32)
    torch.testing.assert_close(sums, torch.ones_like(sums))
    assert len(seen) == 3 * 3  # every batch of every epoch
    torch.testing.assert_close(weights(plain.model), weights(mixed.model), rtol=1e-4, atol=1e-5)
    assert "none" in MIXERS.names()


def test_channels_last_trains_the_same_and_hands_back_contiguous_weights(separable, make_convnet):
    images, labels = separable
    plain = fit(make_convnet(), ArrayData(images, labels), **FAST)
    fast = fit(make_convnet(), ArrayData(images, labels), channels_last=True, **FAST)
    torch.testing.assert_close(weights(plain.model), weights(fast.model), rtol=1e-3, atol=1e-4)
    assert all(p.is_contiguous() for p in fast.model.parameters())  # the default layout again


def test_micro_batches_train_the_same_in_chunks_of_at_most_that_size(separable, make_convnet):
    images, labels = separable
    plain = fit(make_convnet(), ArrayData(images, labels), **FAST)
    model, sizes = make_convnet(), []
    model.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    chunked = fit(model, ArrayData(images, labels), micro_batch=5, **FAST)
    assert max(sizes) == 5 and sum(sizes) == 3 * len(images)  # every image of every epoch, 5 at a time
    torch.testing.assert_close(weights(plain.model), weights(chunked.model), rtol=1e-4, atol=1e-5)
    for h, c in zip(plain.history, chunked.history):
        assert h["loss"] == pytest.approx(c["loss"], rel=1e-5)
    soft = np.eye(3, dtype=np.float32)[labels] * 0.8 + 0.2 / 3  # probability rows are split with the images
    soft_plain = fit(make_convnet(), ArrayData(images, soft), targets="soft", **FAST)
    soft_chunked = fit(make_convnet(), ArrayData(images, soft), targets="soft", micro_batch=5, **FAST)
    torch.testing.assert_close(weights(soft_plain.model), weights(soft_chunked.model), rtol=1e-4, atol=1e-5)
    numpy_sized = fit(make_convnet(), ArrayData(images, labels), micro_batch=np.int64(5), **FAST)
    torch.testing.assert_close(weights(chunked.model), weights(numpy_sized.model))


def test_micro_batches_are_refused_for_batchnorm_and_must_be_positive(separable):
    from curate.models import create_model

    images, labels = separable
    bn = create_model("convnet", width=8, depth=2, num_classes=3, im_size=images.shape[1], norm="batchnorm")
    with pytest.raises(UsageError, match="BatchNorm"):
        fit(bn, ArrayData(images, labels), micro_batch=4, **FAST)
    with pytest.raises(UsageError, match="`micro_batch` must be an integer >= 1"):
        fit(bn, ArrayData(images, labels), micro_batch=0, **FAST)


@pytest.mark.parametrize(
    "schedule, start, end",
    [("constant", 0.1, 0.1), ("cosine", 0.1, 0.0), ("step", 0.1, 0.001), ("halfway", 0.1, 0.01)],
)
def test_lr_schedules_start_at_base_lr_and_end_where_expected(schedule, start, end):
    at = lambda step: learning_rate(step, base_lr=0.1, total_steps=100, schedule=schedule)  # noqa: E731
    assert at(0) == pytest.approx(start)
    assert at(100 if schedule == "cosine" else 99) == pytest.approx(end, abs=1e-12)


def test_cosine_halves_at_midpoint_and_step_decays_at_milestones():
    assert learning_rate(50, base_lr=0.1, total_steps=100) == pytest.approx(0.05)
    step = [learning_rate(s, base_lr=1.0, total_steps=100, schedule="step") for s in (49, 50, 74, 75)]
    assert step == pytest.approx([1.0, 0.1, 0.1, 0.01])
    halfway = [learning_rate(s, base_lr=1.0, total_steps=100, schedule="halfway") for s in (49, 50, 99)]
    assert halfway == pytest.approx([1.0, 0.1, 0.1])


def test_warmup_rises_linearly_to_base_lr_then_follows_the_schedule():
    lrs = [learning_rate(s, base_lr=1.0, total_steps=110, warmup_steps=10) for s in range(12)]
    assert lrs[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[11] == pytest.approx(0.5 * (1 + math.cos(math.pi / 100)))


def test_history_lr_is_the_schedule_at_each_epochs_last_iteration(separable, make_convnet):
    images, labels = separable  # 96 samples / 32 = 3 iterations per epoch
    result = fit(make_convnet(), ArrayData(images, labels), warmup_epochs=1, **FAST)
    expected = [learning_rate(3 * e - 1, base_lr=0.05, total_steps=9, warmup_steps=3) for e in (1, 2, 3)]
    assert [h["lr"] for h in result.history] == pytest.approx(expected)


def test_class_count_mismatch_is_a_usage_error(separable, make_convnet):
    images, labels = separable
    with pytest.raises(UsageError, match="3 classes but the model outputs 5; build the model with num_classes=3"):
        fit(make_convnet(num_classes=5), ArrayData(images, labels), **FAST)


def test_declared_targets_must_match_what_the_data_yields(separable, make_convnet):
    images, labels = separable
    one_hot = np.eye(3, dtype=np.float32)[labels]
    with pytest.raises(UsageError, match="targets='hard' expects int64 labels"):
        fit(make_convnet(), ArrayData(images, one_hot), targets="hard", **FAST)
    with pytest.raises(UsageError, match="targets='soft' expects float rows"):
        fit(make_convnet(), ArrayData(images, labels), targets="soft", **FAST)


@pytest.mark.parametrize(
    "targets, message",
    [
        (np.array([0, 1, 3]), "labels must lie in 0..2"),
        (np.array([0.0, 1.0, 2.0]), "must be integer class indices"),
        (np.full((3, 3), 0.5, dtype=np.float32), "rows must sum to 1, but row 0 sums to 1.5"),
        (np.zeros((3, 2, 2), dtype=np.float32), "must be labels"),
    ],
)
def test_array_data_rejects_bad_targets(targets, message):
    images = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    with pytest.raises(UsageError, match=message):
        ArrayData(images, targets, num_classes=3)


def test_bad_options_are_usage_errors(separable, make_convnet):
    images, labels = separable
    data = ArrayData(images, labels)
    with pytest.raises(UsageError, match="`lr_schedule` must be one of cosine, step, halfway, constant, got 'linear'"):
        fit(make_convnet(), data, epochs=1, lr_schedule="linear")
    with pytest.raises(UsageError, match="`epochs` must be an integer >= 1"):
        fit(make_convnet(), data, epochs=0)
    with pytest.raises(TypeError, match=r"`data` must implement TrainData \(e.g. ArrayData"):
        fit(make_convnet(), (images, labels), epochs=1)


def test_array_data_wants_channels_last_images():
    with pytest.raises(UsageError, match=r"channels-last \(N, H, W, C\) with C 1 or 3, got torch.uint8 of shape"):
        ArrayData(np.zeros((4, 3, 8, 8), np.uint8), np.zeros(4, np.int64))


def test_a_fitted_model_reports_a_trained_head(separable, make_convnet):
    images, labels = separable
    model = make_convnet()
    assert not model.head_trained  # a random init
    fit(model, ArrayData(images, labels, num_classes=int(labels.max()) + 1), epochs=1, batch_size=16, device="cpu",
        progress=False)
    assert model.head_trained
