"""SRe2L and CDA recovery (METHODS.md section 5): the BatchNorm loss, the curriculum, the loop, blocks."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curate.condense import distill
from curate.condense.blocks import Block, merge, plan_blocks, unit_seed
from curate.condense.bn_statistics import BNStatistics, layer_loss
from curate.condense.recover import CurriculumConfig, CurriculumRecovery, Recovery, RecoverConfig, crop_lower_bound
from curate.config import ConfigError, from_mapping
from curate.errors import UsageError

from condense_helpers import textures, tiny_teacher


def bn_net(weight: float = 2.0, bias: float = 3.0) -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 5, 3),
                        nn.BatchNorm2d(5))
    for bn in (net[1], net[4]):
        nn.init.constant_(bn.weight, weight)
        nn.init.constant_(bn.bias, bias)
    return net.eval()


def test_bn_loss_is_zero_at_its_optimum_and_reads_the_layer_input_with_the_biased_variance():
    net = bn_net()
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 3 + 1
    with torch.no_grad():  # set each layer's running statistics to the biased statistics of its own input
        h = net[0](x)
        net[1].running_mean.copy_(h.mean((0, 2, 3)))
        net[1].running_var.copy_(h.var((0, 2, 3), unbiased=False))
        h = net[3](net[2](net[1](h)))
        net[4].running_mean.copy_(h.mean((0, 2, 3)))
        net[4].running_var.copy_(h.var((0, 2, 3), unbiased=False))
    with BNStatistics(net) as bn:
        net(x)
        assert float(bn.loss().detach()) < 1e-6
        with torch.no_grad():  # an unbiased variance (n - 1) would be a different, non-optimal target
            net[1].running_var.copy_(net[0](x).var((0, 2, 3), unbiased=True))
        net(x)
        assert float(bn.loss().detach()) > 1e-3


def test_bn_loss_weighs_the_first_layer_and_sums_plain_l2_norms():
    net = bn_net()
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    inputs = {}
    for i in (1, 4):
        net[i].register_forward_hook(lambda m, inp, out, i=i: inputs.__setitem__(i, inp[0]))
    with BNStatistics(net, first_multiplier=10.0) as bn:
        net(x)
        loss = bn.loss()
    h1, h2 = inputs[1], inputs[4]
    by_hand = sum(w * (torch.linalg.vector_norm(h.var((0, 2, 3), unbiased=False) - layer.running_var)
                       + torch.linalg.vector_norm(h.mean((0, 2, 3)) - layer.running_mean))
                  for w, h, layer in ((10.0, h1, net[1]), (1.0, h2, net[4])))
    assert torch.allclose(loss, by_hand)
    assert torch.allclose(layer_loss(h2, net[4]), by_hand - 10 * layer_loss(h1, net[1]))


def test_bn_statistics_refuse_a_teacher_in_training_mode_or_without_batchnorm():
    with pytest.raises(UsageError, match="training mode; call teacher.eval"):
        BNStatistics(bn_net().train())
    with pytest.raises(UsageError, match="no BatchNorm2d layers"):
        BNStatistics(nn.Sequential(nn.Conv2d(3, 3, 1)))


@pytest.mark.parametrize("schedule", ["cosine", "linear", "step"])
def test_cda_schedule_falls_from_whole_images_to_the_floor_by_the_milestone(schedule):
    values = [crop_lower_bound(t, iterations=100, milestone=1.0, schedule=schedule) for t in range(130)]
    assert values[0] == 1.0 and all(v == 0.08 for v in values[100:])
    assert all(a >= b for a, b in zip(values, values[1:])), "the lower bound must never rise"
    half = [crop_lower_bound(t, iterations=100, milestone=0.5, schedule=schedule) for t in range(100)]
    assert half[0] == 1.0 and all(v == 0.08 for v in half[50:]) and half[49] > 0.08


def test_cda_schedule_values():
    assert crop_lower_bound(50, iterations=100, milestone=1.0) == pytest.approx(0.54)
    assert crop_lower_bound(25, iterations=100, milestone=1.0) == pytest.approx(0.08 + 0.92 * (1 + math.cos(
        math.pi / 4)) / 2)
    assert crop_lower_bound(25, iterations=100, milestone=1.0, schedule="linear") == pytest.approx(0.08 + 0.92 * 0.75)
    assert crop_lower_bound(25, iterations=100, milestone=0.5, schedule="linear") == pytest.approx(0.08 + 0.92 * 0.5)
    assert crop_lower_bound(25, iterations=100, milestone=0.5) == pytest.approx(0.54)
    assert crop_lower_bound(99, iterations=100, milestone=1.0, schedule="step") == 1.0
    assert {crop_lower_bound(t, iterations=100, milestone=0.0) for t in range(100)} == {0.08}  # m = 0: no curriculum


def test_cda_milestone_zero_is_refused_with_what_it_means():
    with pytest.raises(ConfigError, match="milestone: 0 switches the curriculum off.*method sre2l"):
        from_mapping(CurriculumConfig, {"milestone": 0})
    assert CurriculumConfig().milestone == 1.0  # the published commands' --milestone 1


def setup(method=Recovery, classes=2, **options):
    teacher = tiny_teacher(classes).eval().requires_grad_(False)
    config = from_mapping(method.Config, options)
    return method(config, real=None, network=None, teacher=teacher, num_classes=classes), teacher


def test_recovery_updates_only_the_images_and_raises_the_teachers_target_probability():
    distiller, teacher = setup(min_crop=1.0)
    state = {k: v.clone() for k, v in teacher.state_dict().items()}
    classes = torch.arange(2)
    start = torch.randn((2, 3, 32, 32), generator=torch.Generator().manual_seed(5))
    x, losses, _ = distiller.recover_unit(classes, iterations=20, generator=torch.Generator().manual_seed(5))
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(state[k], v) for k, v in teacher.state_dict().items()), "the teacher must stay frozen"
    assert not teacher._forward_hooks and all(not m._forward_hooks for m in teacher.modules())
    with torch.no_grad():
        before = teacher(start).softmax(1)[classes, classes]
        after = teacher(x).softmax(1)[classes, classes]
    assert (after > before).all() and losses[-1] < losses[0]


def test_recovered_pixels_stay_in_the_valid_range_of_the_teachers_normalization():
    distiller, teacher = setup()
    x, _, _ = distiller.recover_unit(torch.arange(2), iterations=3, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(teacher.preprocess.mean).view(1, 3, 1, 1)
    std = torch.tensor(teacher.preprocess.std).view(1, 3, 1, 1)
    pixels = x * std + mean
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
    assert pixels.min() < 1e-6 and pixels.max() > 1 - 1e-6  # noise starts far outside: the clamp bit


def reference_recovery(teacher, classes, *, iterations, generator, lr, r_bn, lower):
    """A plain transcription of the published loop (one unit) using the same random draws."""
    from curate.relabel.data import ResizedCrop

    pre = teacher.preprocess
    mean, std = torch.tensor(pre.mean).view(1, 3, 1, 1), torch.tensor(pre.std).view(1, 3, 1, 1)
    x = torch.randn((len(classes), 3, 32, 32), generator=generator).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr, betas=(0.5, 0.9), eps=1e-8)
    layers = [m for m in teacher.modules() if isinstance(m, nn.BatchNorm2d)]
    seen = {}
    handles = [m.register_forward_hook(lambda m, i, o: seen.__setitem__(m, i[0])) for m in layers]
    for t in range(iterations):
        opt.param_groups[0]["lr"] = 0.5 * (1 + math.cos(math.pi * t / iterations)) * lr
        draw = ResizedCrop(scale=(lower(t), 1.0)).sample(1, 32, 32, generator)
        x1, y1, x2, y2 = draw.boxes[0].tolist()
        view = F.interpolate(x[:, :, y1:y2, x1:x2], size=(32, 32), mode="bilinear", align_corners=False)
        view = view.flip(-1) if draw.flip[0] else view
        dy, dx = torch.randint(0, 5, (2,), generator=generator).tolist()
        out = teacher(torch.roll(view, (dy, dx), (2, 3)))
        bn = sum((10.0 if k == 0 else 1.0) * (
            torch.norm(m.running_var - seen[m].permute(1, 0, 2, 3).reshape(seen[m].shape[1], -1).var(1, unbiased=False))
            + torch.norm(m.running_mean - seen[m].mean((0, 2, 3)))) for k, m in enumerate(layers))
        loss = F.cross_entropy(out, classes) + r_bn * bn
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.copy_(torch.max(torch.min(x, (1 - mean) / std), -mean / std))
    for h in handles:
        h.remove()
    return x.detach()


@pytest.mark.parametrize("method", [Recovery, CurriculumRecovery])
def test_recovery_matches_a_plain_transcription_of_the_published_loop(method):
    distiller, teacher = setup(method, lr=0.3, r_bn=0.05)
    classes = torch.arange(2)
    ours, _, _ = distiller.recover_unit(classes, iterations=6, generator=torch.Generator().manual_seed(3))
    lower = (lambda t: crop_lower_bound(t, iterations=6, milestone=1.0)) if method is CurriculumRecovery \
        else (lambda t: 0.08)
    theirs = reference_recovery(teacher, classes, iterations=6, generator=torch.Generator().manual_seed(3), lr=0.3,
                                r_bn=0.05, lower=lower)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_the_view_shares_one_crop_flip_and_roll_across_the_batch():
    distiller, _ = setup(jitter=0.125)
    a, b = torch.randn(2, 1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    both = distiller.view(torch.cat([a, b]), lower=0.08, generator=torch.Generator().manual_seed(9))
    assert torch.equal(both[:1], distiller.view(a, lower=0.08, generator=torch.Generator().manual_seed(9)))
    assert torch.equal(both[1:], distiller.view(b, lower=0.08, generator=torch.Generator().manual_seed(9)))
    # whole-image crops and no flip leave a roll of at most 4 px (32 * 0.125), wrapping around
    distiller, _ = setup(jitter=0.125, min_crop=1.0, flip=False)
    shifts = set()
    for seed in range(40):
        view = distiller.view(a, lower=1.0, generator=torch.Generator().manual_seed(seed))
        found = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(view, a.roll((dy, dx), (2, 3)))]
        assert len(found) == 1
        shifts.add(found[0])
    assert (0, 0) in shifts and (4, 4) in shifts or len(shifts) > 10


def test_with_fyi_the_teacher_sees_each_view_and_its_mirror():
    from curate.condense.fyi import FlipYourImages

    teacher = tiny_teacher().eval().requires_grad_(False)
    batches = []
    teacher.register_forward_pre_hook(lambda m, inputs: batches.append(inputs[0].detach().clone()))
    distiller = Recovery(RecoverConfig(), real=None, network=None, teacher=teacher, num_classes=2,
                         plugins=[FlipYourImages()])
    distiller.recover_unit(torch.arange(2), iterations=2, generator=torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [4, 4]
    assert all(torch.equal(b[2:], b[:2].flip(-1)) for b in batches)


def test_blocks_are_pure_so_any_grouping_merges_to_the_same_set():
    distiller, _ = setup(class_block=1)
    whole = distiller.recover_block(Block((0, 2), (0, 3)), iterations=2, seed=4)
    pieces = [distiller.recover_block(b, iterations=2, seed=4) for b in plan_blocks(2, 3, class_block=2)]
    assert torch.equal(merge([whole], num_classes=2, ipc=3), merge(pieces, num_classes=2, ipc=3))
    seeds = {unit_seed(4, ipc_index=j, first_class=c) for j in range(3) for c in range(2)}
    assert len(seeds) == 6 and unit_seed(5, ipc_index=0, first_class=0) not in seeds
    assert not torch.equal(whole.images[0], whole.images[1]), "two IPC indices must not share their noise"


def test_a_smaller_ipc_is_a_prefix_of_a_larger_one_and_class_blocks_split_the_classes():
    images, labels = textures(per_class=4, classes=2)
    run = dict(method="sre2l", iterations=2, teacher=tiny_teacher(), progress=False, device="cpu", seed=1)
    small = distill(images, labels, ipc=1, **run)
    large = distill(images, labels, ipc=3, **run)
    assert torch.equal(small.images, large.images[[0, 3]])  # class-major: class 0 at 0..2, class 1 at 3..5
    split = distill(images, labels, ipc=1, class_block=1, **run)
    assert [b["classes"] for b in split.blocks] == [[0, 1], [1, 2]] and len(small.blocks) == 1
    assert split.provenance["options"]["class_block"] == 1


def test_a_checkpoint_of_another_length_is_not_resumed(tmp_path):
    images, labels = textures(per_class=4, classes=2)
    run = dict(method="cda", ipc=1, teacher=tiny_teacher(), progress=False, device="cpu", checkpoint_dir=tmp_path)
    distill(images, labels, iterations=2, **run)
    longer = distill(images, labels, iterations=3, **run)
    fresh = distill(images, labels, iterations=3, **{**run, "checkpoint_dir": None})
    assert torch.equal(longer.images, fresh.images) and len(longer.history) == 3


def test_a_larger_ipc_reuses_the_saved_blocks_of_a_smaller_one(tmp_path, monkeypatch):
    from curate.condense.recover import Recovery

    images, labels = textures(per_class=4, classes=2)
    run = dict(method="sre2l", iterations=2, teacher=tiny_teacher(), progress=False, device="cpu", seed=1)
    distill(images, labels, ipc=1, checkpoint_dir=tmp_path, **run)
    recovered, original = [], Recovery.recover_block
    monkeypatch.setattr(Recovery, "recover_block", lambda self, block, **kw: recovered.append(block.units)
                        or original(self, block, **kw))
    larger = distill(images, labels, ipc=2, checkpoint_dir=tmp_path, **run)
    assert recovered == [range(1, 2)], "the IPC index saved by the IPC 1 run must be reused, not recovered again"
    assert torch.equal(larger.images, distill(images, labels, ipc=2, **run).images)


def test_provenance_names_the_teacher_and_the_kd_protocol():
    images, labels = textures(per_class=4, classes=2)
    result = distill(images, labels, method="cda", ipc=1, iterations=1, teacher=tiny_teacher(), progress=False,
                     device="cpu", milestone=0.5)
    p = result.provenance
    assert p["teacher"]["name"] == "convnet" and len(p["teacher"]["weights_sha256"]) == 16
    assert p["evaluation"] == "kd" and p["options"]["milestone"] == 0.5 and p["init"] == "noise"
    assert result.blocks[0]["seconds"] > 0 and len(result.blocks[0]["final_loss"]) == 1


def test_a_saved_recovered_set_holds_no_wall_clock_time(tmp_path):
    from dataclasses import replace

    from curate.condense import SyntheticSet

    images, labels = textures(per_class=4, classes=2)
    result = distill(images, labels, method="sre2l", ipc=1, iterations=1, teacher=tiny_teacher(), progress=False,
                     device="cpu")
    slower = replace(result, blocks=[{**b, "seconds": b["seconds"] + 1} for b in result.blocks],
                     history=[{**r, "seconds": r["seconds"] + 1} for r in result.history])
    result.save(tmp_path / "a.safetensors")
    slower.save(tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    loaded = SyntheticSet.load(tmp_path / "a.safetensors")
    assert loaded.blocks == [{k: v for k, v in b.items() if k != "seconds"} for b in result.blocks]


def test_recovery_needs_a_trained_teacher_and_other_methods_take_none():
    images, labels = textures(per_class=4, classes=2)
    run = dict(ipc=1, iterations=1, progress=False, device="cpu")
    with pytest.raises(UsageError, match="method 'sre2l' recovers images from a trained teacher"):
        distill(images, labels, method="sre2l", **run)
    with pytest.raises(UsageError, match="untrained head"):
        distill(images, labels, method="sre2l", teacher="resnet20-cifar", **run)  # 2 classes: a new head
    with pytest.raises(UsageError, match="method 'dm' takes no `teacher`"):
        distill(images, labels, method="dm", teacher=tiny_teacher(), **run)
    with pytest.raises(UsageError, match="`init` 'real' is not available for method 'cda'"):
        distill(images, labels, method="cda", teacher=tiny_teacher(), init="real", **run)


def test_the_pretrained_resnet20_teacher_recovers_cifar_classes_it_recognizes():
    from curate.models import create_model

    images, labels = textures(per_class=2, classes=10)
    result = distill(images, labels, method="sre2l", ipc=1, iterations=15, teacher="resnet20-cifar", progress=False,
                     device="cpu", min_crop=1.0, class_names=list(create_model("resnet20-cifar").class_names))
    teacher = create_model("resnet20-cifar").eval()
    with torch.no_grad():
        predicted = teacher(result.model_input(teacher.preprocess.mean, teacher.preprocess.std, (32, 32))).argmax(1)
    assert (predicted == result.labels).float().mean() >= 0.8
    assert np.isfinite([row["loss"] for row in result.history]).all()
