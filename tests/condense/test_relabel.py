"""Relabel and the KD protocol: views, the KL loss through fit, FKD-style record and bit-identical replay."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curate.condense import SyntheticSet, evaluate
from curate.condense.kd import KDRecipe, Views
from curate.condense.relabel import ReplayData, SoftLabels, TeacherViews, kd_loss, record_soft_labels
from curate.errors import UsageError
from curate.learn import fit
from curate.models import create_model
from curate.models.preprocess import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD, Preprocess

from condense_helpers import textures, tiny_teacher

STUDENT = Preprocess(mean=CIFAR10_MEAN, std=CIFAR10_STD, size=(32, 32))


def data(teacher=None, views=Views(), temperature=4.0, classes=2, per_class=6):
    images, labels = textures(per_class=per_class, classes=classes)
    return TeacherViews(images, labels, num_classes=classes, views=views, student=STUDENT, teacher=teacher,
                        temperature=temperature)


def test_kd_loss_is_zero_on_equal_logits_and_the_batch_mean_kl_otherwise():
    t = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    assert float(kd_loss(t, t, temperature=3.0)) == pytest.approx(0.0, abs=1e-7)
    s = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    p, q = (t / 3).softmax(1), (s / 3).softmax(1)
    assert float(kd_loss(s, t, temperature=3.0)) == pytest.approx(float((p * (p / q).log()).sum() / 5), rel=1e-5)


def test_fit_with_a_temperature_follows_the_gradient_of_the_kd_loss():
    teacher = tiny_teacher()
    plain = Views(crop_padding=0, flip=False, mix="none")
    d = data(teacher, plain, temperature=4.0)
    student = create_model("convnet", num_classes=2, weights=None, seed=3, width=8, depth=2)
    before = [p.detach().clone() for p in student.parameters()]
    x = d.student_input(d.images.permute(0, 3, 1, 2).float() / 255)
    t = d.teacher_logits(d.images.permute(0, 3, 1, 2).float() / 255)
    grads = torch.autograd.grad(kd_loss(student.train()(x), t, temperature=4.0), list(student.parameters()))
    fit(student, d, epochs=1, batch_size=len(d), lr=1.0, momentum=0.0, weight_decay=0.0, lr_schedule="constant",
        targets="soft", temperature=4.0, device="cpu", progress=False)
    for p0, g, p in zip(before, grads, student.parameters()):
        assert torch.allclose(p0 - g, p.detach(), atol=1e-5), "the step must be minus the KD loss's gradient"


def test_fit_refuses_a_temperature_with_hard_labels():
    from curate.learn import ArrayData

    images, labels = textures(per_class=2, classes=2)
    net = create_model("convnet", num_classes=2, weights=None, width=8, depth=2)
    with pytest.raises(UsageError, match="`temperature` must be > 0, and other than 1 only with targets='soft'"):
        fit(net, ArrayData(images, labels), epochs=1, temperature=2.0, progress=False, device="cpu")


def test_the_teacher_labels_exactly_the_view_the_student_sees():
    seen = []

    class Spy(nn.Module):
        preprocess = Preprocess(mean=IMAGENET_MEAN, std=IMAGENET_STD, size=(32, 32))

        def forward(self, x):
            seen.append(x)
            return x.mean((2, 3))[:, :2]

    d = data(Spy())
    (x, targets), = list(d.batches(batch_size=64, generator=torch.Generator().manual_seed(0), epoch=0))
    t_mean, t_std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    s_mean, s_std = (torch.tensor(v).view(1, 3, 1, 1) for v in (CIFAR10_MEAN, CIFAR10_STD))
    assert torch.allclose(seen[0] * t_std + t_mean, x * s_std + s_mean, atol=1e-5)
    assert torch.allclose(targets, (seen[0].mean((2, 3))[:, :2] / 4.0).softmax(1))


def test_relabeling_never_updates_the_teachers_running_statistics():
    teacher = tiny_teacher().train()
    state = {k: v.clone() for k, v in teacher.state_dict().items()}
    list(data(teacher).batches(batch_size=4, generator=torch.Generator().manual_seed(0), epoch=0))
    assert all(torch.equal(state[k], v) for k, v in teacher.state_dict().items())


def test_views_crop_flip_and_mix_as_drawn():
    images = torch.from_numpy(textures(per_class=3, classes=2)[0])
    pixels = images.permute(0, 3, 1, 2).float() / 255
    g = torch.Generator().manual_seed(0)
    identity = Views(crop_padding=0, flip=False, mix="none")
    assert torch.equal(identity.apply(images, identity.draw(6, (32, 32), g)), pixels)
    mixup = Views(crop_padding=0, flip=False)
    draw = mixup.draw(6, (32, 32), g)
    assert 0 < draw.lam < 1 and sorted(draw.perm.tolist()) == list(range(6))
    assert torch.allclose(mixup.apply(images, draw), draw.lam * pixels + (1 - draw.lam) * pixels[draw.perm])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    rows = mixup.mix_labels(labels, draw, num_classes=2)
    assert torch.allclose(rows.sum(1), torch.ones(6))
    assert torch.allclose(rows[0, 0], torch.tensor(draw.lam + (1 - draw.lam) * float(labels[draw.perm[0]] == 0)))
    cutmix = Views(crop_padding=0, flip=False, mix="cutmix", mix_alpha=1.0)
    draw = cutmix.draw(6, (32, 32), g)
    x1, y1, x2, y2 = draw.box
    out = cutmix.apply(images, draw)
    assert torch.equal(out[:, :, y1:y2, x1:x2], pixels[draw.perm][:, :, y1:y2, x1:x2])
    assert draw.lam == pytest.approx(1 - (x2 - x1) * (y2 - y1) / 1024)
    flipped = Views(crop_padding=4, flip=True, mix="none")
    draw = flipped.draw(6, (32, 32), g)
    out = flipped.apply(images, draw)
    i = int(draw.flip.nonzero()[0])
    dy, dx = draw.crop[i].tolist()
    padded = F.pad(pixels[i], (4, 4, 4, 4))
    assert torch.equal(out[i], padded[:, dy:dy + 32, dx:dx + 32].flip(-1))


def test_a_record_is_bit_identical_for_a_seed_and_replays_what_an_on_the_fly_run_sees(tmp_path):
    teacher = tiny_teacher()
    d = data(teacher)
    first = record_soft_labels(d, epochs=2, batch_size=4, seed=5)
    again = record_soft_labels(d, epochs=2, batch_size=4, seed=5)
    for name in ("order", "crop", "flip", "perm", "lam", "box", "logits"):
        assert torch.equal(getattr(first, name), getattr(again, name)), name
    assert first.logits.dtype == torch.float16 and first.logits.shape == (2, 12, 2)
    assert not torch.equal(first.crop, record_soft_labels(d, epochs=2, batch_size=4, seed=6).crop)

    first.save(tmp_path / "soft.safetensors")
    loaded = SoftLabels.load(tmp_path / "soft.safetensors")
    replay = ReplayData(d, loaded)
    for epoch in range(2):
        live = list(d.batches(batch_size=4, generator=torch.Generator().manual_seed(5), epoch=epoch)) if epoch == 0 \
            else None
        replayed = list(replay.batches(batch_size=4, generator=torch.Generator().manual_seed(99), epoch=epoch))
        again = list(ReplayData(d, first).batches(batch_size=4, generator=torch.Generator(), epoch=epoch))
        for (x, t), (x2, t2) in zip(replayed, again):
            assert torch.equal(x, x2) and torch.equal(t, t2)
        if live is not None:  # the record's views are those of an on-the-fly run with the record's seed
            for (x, t), (xl, tl) in zip(replayed, live):
                assert torch.equal(x, xl)
                assert torch.allclose(t, tl, atol=2e-3)  # only the logits' fp16 rounding differs
    rows, _, logits = loaded.batch(1, 0)
    assert torch.equal(replayed[0][1], (logits.float() / 4.0).softmax(1))


def test_replay_refuses_another_batch_size_more_epochs_or_other_views():
    d = data(tiny_teacher())
    record = record_soft_labels(d, epochs=1, batch_size=4, seed=0)
    replay = ReplayData(d, record)
    with pytest.raises(UsageError, match="recorded with batch size 4"):
        next(replay.batches(batch_size=8, generator=torch.Generator(), epoch=0))
    with pytest.raises(UsageError, match="cover 1 epochs"):
        next(replay.batches(batch_size=4, generator=torch.Generator(), epoch=1))
    with pytest.raises(UsageError, match="made with views"):
        ReplayData(data(tiny_teacher(), Views(mix="cutmix")), record)


def synthetic_set(classes=2, per_class=3) -> SyntheticSet:
    images, labels = textures(per_class=per_class, classes=classes)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (CIFAR10_MEAN, CIFAR10_STD))
    return SyntheticSet(images=(pixels - mean) / std, labels=torch.from_numpy(labels), num_classes=classes,
                        mean=CIFAR10_MEAN, std=CIFAR10_STD, provenance={"evaluation": "kd"})


def test_kd_protocols_train_students_and_leave_the_teacher_frozen(monkeypatch):
    s = synthetic_set()
    test_images, test_labels = textures(per_class=4, classes=2, seed=1)
    teacher = tiny_teacher().eval()
    state = {k: v.clone() for k, v in teacher.state_dict().items()}
    net = {"model_config": {"width": 8, "depth": 2}, "device": "cpu", "progress": False, "kd": KDRecipe(epochs=2)}
    result = evaluate(s, test_images, test_labels, runs=2, teacher=teacher, **net)  # provenance: kd
    assert len(result["runs"]) == 2 and result["ci95"] is not None
    assert all(torch.equal(state[k], v) for k, v in teacher.state_dict().items())
    hard = evaluate(s, test_images, test_labels, runs=1, protocol="kd_hard", **net)
    assert 0 <= hard["mean"] <= 1

    replays = []
    original = ReplayData.batches
    monkeypatch.setattr(ReplayData, "batches", lambda self, **kw: replays.append(kw["epoch"]) or original(self, **kw))
    record = record_soft_labels(TeacherViews(s.to_uint8(), s.labels, num_classes=2, views=Views(), student=STUDENT,
                                             teacher=teacher, temperature=30.0), epochs=2, batch_size=128, seed=0)
    evaluate(s, test_images, test_labels, runs=2, teacher=teacher, soft_labels=record, **net)
    assert replays == [0, 1, 0, 1]


def test_kd_protocol_errors_name_what_to_pass():
    s = synthetic_set()
    images, labels = textures(per_class=2, classes=2, seed=1)
    options = {"model_config": {"width": 8, "depth": 2}, "device": "cpu", "progress": False}
    with pytest.raises(UsageError, match="pass `teacher`"):
        evaluate(s, images, labels, protocol="kd", **options)
    with pytest.raises(UsageError, match=r"pass kd=KDRecipe\(epochs=...\)"):
        evaluate(s, images, labels, protocol="kd_hard", epochs=3, **options)
    with pytest.raises(UsageError, match="'kd_hard' trains on the set's own labels"):
        evaluate(s, images, labels, protocol="kd_hard", teacher=tiny_teacher(), **options)
    with pytest.raises(UsageError, match="belong to the KD protocols"):
        evaluate(s, images, labels, protocol="hard", teacher=tiny_teacher(), **options)
    with pytest.raises(UsageError, match="`protocol` must be one of hard, kd, kd_hard"):
        evaluate(s, images, labels, protocol="soft", **options)
    assert np.isfinite(evaluate(s, images, labels, protocol="hard", runs=1, epochs=1, **options)["mean"])
