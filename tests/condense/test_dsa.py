"""DSA: one draw gives the same transform to real and synthetic batches; each family does what it says."""

import pytest
import torch

from curate.condense.dsa import DSA, FAMILIES
from curate.errors import UsageError


def batch(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", FAMILIES)
def test_one_draw_transforms_real_and_synthetic_batches_identically(family):
    """Class c's row of a siamese draw is applied to real and synthetic images of c alike."""
    dsa = DSA(strategy=family)
    real = batch(5, 0)
    syn = torch.cat([real[3:4], real[1:2]]).clone().requires_grad_(True)  # the same pixels, another batch
    draw = dsa.draw(2, torch.Generator().manual_seed(1), size=(16, 16))
    real_out = dsa.apply(real, draw, index=torch.full((5,), 1))
    syn_out = dsa.apply(syn, draw, index=torch.tensor([1, 1]))
    assert torch.allclose(syn_out, real_out[[3, 1]], atol=1e-6)
    syn_out.square().sum().backward()
    assert torch.isfinite(syn.grad).all() and syn.grad.abs().sum() > 0


def test_rows_of_a_draw_differ_and_fresh_draws_differ():
    dsa = DSA()
    x = batch(2, 0)
    g = torch.Generator().manual_seed(0)
    first = dsa.apply(x, dsa.draw(2, g, size=(16, 16)), index=torch.tensor([0, 0]))
    second = dsa.apply(x, dsa.draw(2, g, size=(16, 16)), index=torch.tensor([0, 0]))
    assert not torch.allclose(first, second)


def test_crop_is_a_zero_filled_integer_translation():
    dsa = DSA(strategy="crop")
    x = batch(1, 3)
    draw = dsa.draw(1, torch.Generator().manual_seed(0), size=(16, 16))
    dy, dx = (int(v) for v in draw.shift[0])
    expected = torch.zeros_like(x)
    for i in range(16):
        for j in range(16):
            if 0 <= i + dy < 16 and 0 <= j + dx < 16:
                expected[0, :, i, j] = x[0, :, i + dy, j + dx]
    assert torch.equal(dsa.apply(x, draw), expected)


def test_cutout_zeroes_one_square_of_half_the_side():
    dsa = DSA(strategy="cutout")
    x = batch(1, 4).abs() + 1  # no zeros before the cutout
    draw = dsa.draw(1, torch.Generator().manual_seed(0), size=(16, 16))
    draw = draw._replace(cutout=torch.tensor([[8, 8]]))  # centred: fully inside
    out = dsa.apply(x, draw)
    zero = out[0, 0] == 0
    assert int(zero.sum()) == 64 and zero[4:12, 4:12].all()
    assert torch.equal(out[0, :, ~zero], x[0, :, ~zero])


def test_flip_mirrors_the_width_and_color_keeps_shape():
    x = batch(2, 5)
    flip = DSA(strategy="flip")
    draw = flip.draw(2, torch.Generator(), size=(16, 16))._replace(flip=torch.tensor([True, False]))
    out = flip.apply(x, draw)
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1])
    color = DSA(strategy="color")
    assert color(x, torch.Generator().manual_seed(0)).shape == x.shape


def test_training_call_uses_one_family_per_batch_and_per_image_parameters():
    dsa = DSA()
    draw = dsa.draw(32, torch.Generator().manual_seed(0), size=(16, 16), shared_family=True)
    assert len(set(draw.family.tolist())) == 1
    assert len(set(draw.brightness.tolist())) == 32
    per_class = dsa.draw(64, torch.Generator().manual_seed(0), size=(16, 16))
    assert len(set(per_class.family.tolist())) > 1


def test_rejects_unknown_families():
    with pytest.raises(UsageError, match="strategy"):
        DSA(strategy="color_warp")
