"""The distillation driver and the methods: learning, DCC vs DC, resume, and input checks."""

import numpy as np
import pytest
import torch

from curate.condense import DISTILLERS, distill, random_selection
from curate.condense.base import NetworkFactory, RealImages
from curate.condense.checkpoint import FILENAME
from curate.condense.gradient_matching import (DC_LOOPS, DCC_LOOPS, ContrastiveConfig, ContrastiveGradientMatching,
                                      GradientMatching, GradientMatchingConfig, classwise_phase, default_loops)
from curate.condense.matching import contrastive_gradient_loss
from curate.config import ConfigError
from curate.errors import UsageError

from condense_helpers import TINY_NET, real_cifar, textures


def test_registry_names_the_four_methods():
    assert {"dc", "dsa", "dm", "dcc"} <= set(DISTILLERS.names())


def probe_loss(method: str, synthetic, images, labels, options: dict) -> float:
    """The method's matching loss of ``synthetic`` on four fixed networks and real batches none of the runs saw."""
    classes = synthetic.num_classes
    factory = NetworkFactory("convnet", classes, TINY_NET, "cpu")
    real = RealImages.from_uint8(images, labels, preprocess=factory.build(0).preprocess, num_classes=classes,
                                 device="cpu")
    cls = DISTILLERS.get(method)
    distiller = cls(cls.resolve(cls.Config(**options), ipc=1, iterations=1), real=real, network=factory)
    losses = [distiller.matching_loss(factory.build(100 + s), synthetic.images, synthetic.labels,
                                      torch.Generator().manual_seed(s)) for s in range(4)]
    return float(torch.stack(losses).mean().detach())


@pytest.mark.parametrize("method,options", [
    ("dm", {"batch_real": 8}),
    ("dc", {"batch_real": 8, "lr_img": 1.0, "outer_loop": 1, "inner_loop": 0}),
    ("dcc", {"batch_real": 8, "lr_img": 1.0, "outer_loop": 1, "inner_loop": 0}),
])
def test_a_few_iterations_lower_the_matching_loss_on_real_images(method, options):
    """Measured on held-out random networks, so it is the set that improved, not the luck of the draws."""
    images, labels = real_cifar(per_class=8, classes=4)
    kwargs = dict(method=method, ipc=1, init="noise", model_config=TINY_NET, progress=False, seed=1, **options)
    start = distill(images, labels, iterations=0, **kwargs)
    end = distill(images, labels, iterations=16, **kwargs)
    assert probe_loss(method, end, images, labels, options) < 0.92 * probe_loss(method, start, images, labels, options)


def _toy_distillers(classes: int):
    images, labels = textures(per_class=6, classes=classes)
    factory = NetworkFactory("convnet", classes, TINY_NET, "cpu")
    real = RealImages.from_uint8(images, labels, preprocess=factory.build(0).preprocess, num_classes=classes,
                                 device="cpu")
    kwargs = dict(real=real, network=factory)
    dc = GradientMatching(GradientMatching.resolve(GradientMatchingConfig(batch_real=6), ipc=2, iterations=4),
                          **kwargs)
    dcc = ContrastiveGradientMatching(ContrastiveConfig(batch_real=6, outer_loop=1, inner_loop=0, outer_warmup=0),
                                      **kwargs)
    syn = torch.randn(classes * 2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    return dc, dcc, syn, torch.arange(classes).repeat_interleave(2), factory


def _loss(distiller, net, syn, labels):
    return distiller.matching_loss(net, syn, labels, torch.Generator().manual_seed(3), iteration=10, step=0)


def test_dcc_equals_dc_with_one_class():
    dc, dcc, syn, labels, factory = _toy_distillers(classes=1)
    net = factory.build(7)
    assert torch.allclose(_loss(dc, net, syn, labels), _loss(dcc, net, syn, labels), rtol=1e-5)


def test_dcc_matches_the_class_mean_gradients_and_differs_from_dc():
    """One cross-entropy over all synthetic images equals averaging per-class gradients (equal IPC)."""
    dc, dcc, syn, labels, factory = _toy_distillers(classes=3)
    net = factory.build(7)
    got = _loss(dcc, net, syn, labels)
    # the same real batches (same generator), per-class synthetic gradients averaged by the pure function
    params = list(net.parameters())
    g = torch.Generator().manual_seed(3)
    real_grads = [dcc.gradient(net, params, *dcc._real_batch(c, g)) for c in range(3)]
    syn_grads = [dcc.gradient(net, params, syn[labels == c], labels[labels == c]) for c in range(3)]
    expected = contrastive_gradient_loss(syn_grads, real_grads)
    assert torch.allclose(got, expected, rtol=1e-4)
    assert not torch.allclose(got, _loss(dc, net, syn, labels), rtol=1e-2)


def test_dcc_warm_up_truth_table_and_loop_tables():
    assert classwise_phase(249, 9, outer_warmup=250, inner_warmup=10)
    assert not classwise_phase(250, 0, outer_warmup=250, inner_warmup=10)
    assert not classwise_phase(0, 10, outer_warmup=250, inner_warmup=10)
    assert default_loops(1, DC_LOOPS) == (1, 1) and default_loops(1, DCC_LOOPS) == (10, 5)
    assert default_loops(10, DC_LOOPS) == (10, 50) and default_loops(50, DC_LOOPS) == (50, 10)
    assert default_loops(7, DC_LOOPS) == (10, 50)
    resolved = ContrastiveGradientMatching.resolve(ContrastiveConfig(), ipc=10, iterations=1000)
    assert (resolved.outer_loop, resolved.inner_loop, resolved.outer_warmup) == (10, 50, 250)


@pytest.mark.parametrize("method,options", [
    ("dsa", {"outer_loop": 2, "inner_loop": 1}),  # DSA draws, inner-loop fit, FYI hook
    ("dm", {}),
])
def test_resume_from_checkpoint_equals_an_uninterrupted_run(method, options, tmp_path, write_faults):
    images, labels = textures(per_class=6, classes=3)
    kwargs = dict(method=method, ipc=2, iterations=4, fyi=True, model_config=TINY_NET, progress=False, seed=3,
                  batch_real=6, **options)
    reference = distill(images, labels, **kwargs)
    write_faults.reset(3)  # the run dies while writing its third checkpoint (after iteration 3)
    with pytest.raises(write_faults.Crash):
        distill(images, labels, checkpoint_dir=tmp_path, checkpoint_every=1, **kwargs)
    write_faults.reset(None)
    resumed = distill(images, labels, checkpoint_dir=tmp_path, checkpoint_every=1, **kwargs)
    assert torch.equal(resumed.images, reference.images)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in reference.history]
    assert (tmp_path / FILENAME).is_file()


@pytest.mark.parametrize("method,options", [
    ("dm", {}),
    ("dc", {"outer_loop": 2, "inner_loop": 2}),  # real and synthetic gradients, inner-loop fit
    ("dcc", {"outer_loop": 2, "inner_loop": 1, "outer_warmup": 0}),  # one gradient over every synthetic image
])
def test_chunks_bound_every_network_pass_and_leave_the_result(method, options, monkeypatch):
    images, labels = textures(per_class=8, classes=3)
    kwargs = dict(method=method, ipc=3, iterations=2, fyi=True, model_config=TINY_NET, progress=False, seed=2,
                  batch_real=8, **options)
    whole = distill(images, labels, chunk=1000, **kwargs)
    sizes = []
    build = NetworkFactory.build

    def recording_build(self, seed):
        net = build(self, seed)
        first_conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
        first_conv.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
        return net

    monkeypatch.setattr(NetworkFactory, "build", recording_build)
    chunked = distill(images, labels, chunk=4, **kwargs)
    assert max(sizes) == 4
    torch.testing.assert_close(chunked.images, whole.images, rtol=1e-4, atol=1e-4)


def test_chunks_must_be_positive_and_keep_away_from_batchnorm():
    images, labels = textures(per_class=2, classes=2)
    with pytest.raises(UsageError, match="`chunk` must be an integer >= 1"):
        distill(images, labels, method="dm", ipc=1, iterations=1, chunk=0)
    with pytest.raises(UsageError, match="`chunk` would change the batch statistics"):
        distill(images, labels, method="dm", ipc=1, iterations=1, chunk=4,
                model_config={**TINY_NET, "norm": "batchnorm"})


def test_a_checkpoint_of_other_settings_is_ignored(tmp_path):
    images, labels = textures(per_class=4, classes=2)
    kwargs = dict(method="dm", ipc=1, iterations=2, model_config=TINY_NET, progress=False, batch_real=4,
                  checkpoint_dir=tmp_path, checkpoint_every=1)
    distill(images, labels, seed=0, **kwargs)
    fresh = distill(images, labels, seed=1, **{**kwargs, "checkpoint_dir": None})
    other = distill(images, labels, seed=1, **kwargs)
    assert torch.equal(fresh.images, other.images)


def test_zero_iterations_from_real_images_is_the_random_selection_and_exports_them_exactly():
    images, labels = textures(per_class=5, classes=3)
    start = distill(images, labels, method="dm", ipc=2, iterations=0, model_config=TINY_NET, progress=False, seed=4)
    chosen = random_selection(images, labels, ipc=2, seed=4, model_config=TINY_NET)
    assert torch.equal(start.images, chosen.images)
    exported = start.to_uint8()
    assert all((exported[i] == images).all(axis=(1, 2, 3)).any() for i in range(len(exported)))


def test_input_errors_name_the_problem():
    images, labels = textures(per_class=2, classes=2)
    with pytest.raises(UsageError, match="unknown distiller 'dmm'.*did you mean 'dm'"):
        distill(images, labels, method="dmm", ipc=1, iterations=1)
    with pytest.raises(ConfigError, match="lr_imgs: unknown field"):
        distill(images, labels, method="dm", ipc=1, iterations=1, lr_imgs=1.0)
    with pytest.raises(UsageError, match="class 0 has 2 training images but distillation needs at least 3"):
        distill(images, labels, method="dm", ipc=3, iterations=1)
    with pytest.raises(UsageError, match="uint8"):
        distill(images.astype(np.float32), labels, method="dm", ipc=1, iterations=1)
    with pytest.raises(UsageError, match="BatchNorm"):
        distill(images, labels, method="dc", ipc=1, iterations=1, model_config={**TINY_NET, "norm": "batchnorm"})


def test_a_table_distils_like_its_arrays():
    from curate.data import make_table

    images, labels = textures(per_class=3, classes=2)
    test_images, test_labels = textures(per_class=2, classes=2, seed=9)
    table = make_table(ids=[f"s{i}" for i in range(10)], images=np.concatenate([images, test_images]),
                       labels=np.concatenate([labels, test_labels]), class_names=["a", "b"],
                       splits=["train"] * 6 + ["test"] * 4)
    kwargs = dict(method="dm", ipc=1, iterations=2, model_config=TINY_NET, progress=False, batch_real=3)
    from_table = distill(table, **kwargs)
    from_arrays = distill(images, labels, class_names=["a", "b"], **kwargs)
    assert torch.equal(from_table.images, from_arrays.images) and from_table.class_names == ["a", "b"]
