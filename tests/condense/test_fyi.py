"""FYI: one hook doubles every synthetic batch with exact mirrors, in every distiller, never at evaluation."""

import numpy as np
import pytest
import torch

import curate.condense.fyi as fyi
from curate.condense import distill, evaluate
from curate.condense.fyi import flip_expand

from condense_helpers import TINY_NET, textures


def test_flip_expand_appends_exact_mirrors_with_duplicated_labels():
    x = torch.randn(3, 3, 8, 8)
    y = torch.tensor([2, 0, 1])
    out, labels = flip_expand(x, y)
    assert out.shape == (6, 3, 8, 8) and labels.tolist() == [2, 0, 1, 2, 0, 1]
    assert torch.equal(out[:3], x) and torch.equal(out[3:], x.flip(-1))
    assert torch.equal(out[3:].flip(-1), x)
    # each image keeps its pixel multiset
    assert torch.equal(out[3:].flatten(1).sort(1).values, x.flatten(1).sort(1).values)


def test_gradient_through_the_hook_is_own_plus_mirrored_gradient():
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    weights = torch.randn(4, 3, 6, 6)
    f = lambda images: (images * weights).sum(dim=(1, 2, 3)).square().sum()  # noqa: E731
    (grad,) = torch.autograd.grad(f(flip_expand(x, torch.zeros(2))[0]), x)
    a = x.detach().clone().requires_grad_(True)
    b = x.detach().flip(-1).clone().requires_grad_(True)
    (g_a,) = torch.autograd.grad(f(torch.cat([a, torch.zeros_like(a)])), a)
    (g_b,) = torch.autograd.grad(f(torch.cat([torch.zeros_like(b), b])), b)
    assert torch.allclose(grad, g_a + g_b.flip(-1), atol=1e-4)


class Spy:
    """Records every batch the FYI hook returns."""

    def __init__(self, monkeypatch):
        self.calls = []
        original = fyi.flip_expand

        def spy(images, labels):
            out = original(images, labels)
            self.calls.append((images.detach().clone(), labels.clone(), out[0].detach().clone(), out[1].clone()))
            return out

        monkeypatch.setattr(fyi, "flip_expand", spy)


@pytest.mark.parametrize("method", ["dc", "dsa", "dm", "dcc"])
def test_every_distiller_sends_doubled_mirrored_batches_and_stores_the_unflipped_set(method, monkeypatch):
    spy = Spy(monkeypatch)
    images, labels = textures(per_class=6, classes=3)
    options = {"batch_real": 6}
    if method != "dm":
        options.update(outer_loop=2, inner_loop=1)  # one inner-loop epoch between two matching steps
    result = distill(images, labels, method=method, ipc=2, iterations=1, fyi=True, model_config=TINY_NET,
                     progress=False, **options)
    assert spy.calls, f"{method} never called the FYI hook"
    for before, y, after, y_after in spy.calls:
        n = len(before)
        assert len(after) == 2 * n and torch.equal(after[n:], before.flip(-1)) and torch.equal(y_after, y.repeat(2))
    if method != "dm":  # the inner loop trains on the whole hooked set: 6 images -> 12
        assert any(len(after) == 12 for _, _, after, _ in spy.calls)
    assert result.images.shape == (6, 3, 32, 32)
    assert result.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert not torch.allclose(result.images, result.images.flip(-1))


def test_fyi_changes_the_result_and_evaluation_never_calls_the_hook(monkeypatch):
    images, labels = textures(per_class=6, classes=3)
    kwargs = dict(method="dm", ipc=1, iterations=2, model_config=TINY_NET, progress=False, batch_real=6)
    plain = distill(images, labels, **kwargs)
    flipped = distill(images, labels, fyi=True, **kwargs)
    assert not torch.allclose(plain.images, flipped.images)
    spy = Spy(monkeypatch)
    result = evaluate(flipped, images, labels, model_config=TINY_NET, runs=1, epochs=2, progress=False)
    assert spy.calls == []
    assert 0 <= result["mean"] <= 1 and np.isfinite(result["mean"])


def test_plugins_list_and_fyi_shorthand_run_the_same_hook_and_are_recorded():
    images, labels = textures(per_class=4, classes=2)
    kwargs = dict(method="dm", ipc=1, iterations=2, model_config=TINY_NET, progress=False, batch_real=4)
    listed = distill(images, labels, plugins=["fyi"], **kwargs)
    short = distill(images, labels, fyi=True, **kwargs)
    both = distill(images, labels, fyi=True, plugins=["fyi"], **kwargs)
    assert torch.equal(listed.images, short.images) and torch.equal(listed.images, both.images)
    assert listed.provenance["plugins"] == short.provenance["plugins"] == ["fyi"]
    plain = distill(images, labels, **kwargs)
    assert plain.provenance["plugins"] == []
    assert distill(images, labels, fyi=False, **kwargs).provenance["plugins"] == []


def test_plugin_names_are_checked_before_any_work():
    from curate.errors import UsageError

    images, labels = textures(per_class=2, classes=2)
    kwargs = dict(method="dm", ipc=1, iterations=1, model_config=TINY_NET, progress=False)
    with pytest.raises(UsageError, match=r"unknown distillation plug-in 'fyo' \(did you mean 'fyi'\?\); known: fyi"):
        distill(images, labels, plugins=["fyo"], **kwargs)
    with pytest.raises(UsageError, match="`fyi: false` contradicts `plugins` \\['fyi'\\]"):
        distill(images, labels, plugins=["fyi"], fyi=False, **kwargs)
    with pytest.raises(UsageError, match="plug-in 'fyi' is listed twice"):
        distill(images, labels, plugins=["fyi", "fyi"], **kwargs)
    with pytest.raises(UsageError, match="`plugins` must be a list of names, got the string 'fyi'"):
        distill(images, labels, plugins="fyi", **kwargs)


def test_plugins_hook_every_batch_in_the_order_listed(monkeypatch):
    from curate.condense import DISTILL_PLUGINS

    order = []

    def recorder(name):
        class Record:
            def __call__(self, images, labels):
                order.append(name)
                return images, labels

        return Record

    monkeypatch.setitem(DISTILL_PLUGINS._entries, "first", recorder("first"))
    monkeypatch.setitem(DISTILL_PLUGINS._entries, "second", recorder("second"))
    images, labels = textures(per_class=2, classes=2)
    distill(images, labels, method="dm", ipc=1, iterations=2, model_config=TINY_NET, progress=False,
            plugins=["second", "first"])
    assert order == ["second", "first"] * 2
