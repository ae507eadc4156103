"""The matching losses: DC's layer-wise gradient distance, DCC's class-combined form, DM's mean embeddings."""

import pytest
import torch

from curate.condense.matching import (classwise_gradient_loss, contrastive_gradient_loss, gradient_distance,
                                      mean_embedding_distance, mean_gradient)
from curate.errors import UsageError


def gradient(seed: int = 0) -> list[torch.Tensor]:
    """A conv, a linear and a bias gradient at a realistic scale (rows far above the 1e-6 epsilon)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, 3, 3, generator=g), torch.randn(5, 6, generator=g), torch.randn(5, generator=g)]


def test_distance_is_zero_for_identical_gradients_and_positive_otherwise():
    g = gradient(0)
    assert gradient_distance(g, [t.clone() for t in g]).abs() < 1e-5
    assert gradient_distance(gradient(1), g) > 1.0


def test_distance_is_per_row_cosine_ignoring_1d_tensors():
    g = gradient(0)
    opposite = [-t for t in g]
    rows = 4 + 5  # conv rows (out channels) + linear rows; the bias adds nothing
    assert gradient_distance(opposite, g) == pytest.approx(2 * rows, abs=1e-4)
    # scaling one row of one layer by a positive factor leaves a per-row cosine unchanged
    scaled = [t.clone() for t in g]
    scaled[0][2] *= 7.0
    assert gradient_distance(scaled, g).abs() < 1e-5
    # a different bias gradient contributes exactly nothing
    other_bias = [g[0], g[1], torch.randn(5)]
    assert gradient_distance(other_bias, g) == gradient_distance(g, g)


def test_distance_matches_a_slow_row_loop():
    a, b = gradient(2), gradient(3)
    slow = 0.0
    for x, y in zip(a, b):
        if x.ndim == 1:
            continue
        for r in range(x.shape[0]):
            u, v = x[r].flatten(), y[r].flatten()
            slow += 1 - float(u @ v) / (float(u.norm() * v.norm()) + 1e-6)
    assert float(gradient_distance(a, b)) == pytest.approx(slow, rel=1e-5)


def test_mse_and_cos_ablations():
    a, b = gradient(0), gradient(1)
    flat_a, flat_b = torch.cat([t.flatten() for t in a]), torch.cat([t.flatten() for t in b])
    assert float(gradient_distance(a, b, metric="mse")) == pytest.approx(float(((flat_a - flat_b) ** 2).sum()),
                                                                          rel=1e-5)
    cos = float(flat_a @ flat_b / (flat_a.norm() * flat_b.norm()))
    assert float(gradient_distance(a, b, metric="cos")) == pytest.approx(1 - cos, abs=1e-5)
    with pytest.raises(UsageError, match="metric"):
        gradient_distance(a, b, metric="l1")


def test_dcc_combines_classes_before_the_distance():
    """Scaling each class's synthetic gradient by its own alpha_c keeps DC at 0 but not DCC."""
    real = [gradient(10 + c) for c in range(3)]
    alphas = (0.2, 1.0, 5.0)
    syn = [[a * t for t in g] for a, g in zip(alphas, real)]
    assert classwise_gradient_loss(syn, real).abs() < 1e-4
    assert contrastive_gradient_loss(syn, real) > 0.05
    assert contrastive_gradient_loss(real, real).abs() < 1e-4


def test_dcc_equals_dc_with_one_class():
    syn, real = [gradient(1)], [gradient(2)]
    assert torch.allclose(contrastive_gradient_loss(syn, real), classwise_gradient_loss(syn, real))


def test_mean_gradient_is_per_parameter_mean():
    gs = [gradient(s) for s in range(3)]
    mean = mean_gradient(gs)
    assert torch.allclose(mean[1], (gs[0][1] + gs[1][1] + gs[2][1]) / 3)


def test_dm_loss_is_zero_when_the_synthetic_batch_equals_the_real_one():
    emb = torch.randn(12, 5)
    labels = torch.arange(3).repeat_interleave(4)
    assert mean_embedding_distance(emb, labels, emb.clone(), labels, num_classes=3) == 0


def test_dm_loss_for_a_linear_embedding_is_the_distance_of_mapped_means():
    """For psi = W x the loss is sum_c ||W (mu_T,c - mu_S,c)||^2, computed here class by class."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 6, generator=g)
    real, syn = torch.randn(15, 6, generator=g), torch.randn(6, 6, generator=g)
    real_labels, syn_labels = torch.tensor([0] * 5 + [1] * 4 + [2] * 6), torch.tensor([0, 0, 1, 1, 2, 2])
    expected = sum(float(((w @ (real[real_labels == c].mean(0) - syn[syn_labels == c].mean(0))) ** 2).sum())
                   for c in range(3))
    got = mean_embedding_distance(real @ w.T, real_labels, syn @ w.T, syn_labels, num_classes=3)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_dm_loss_refuses_a_class_without_real_rows():
    with pytest.raises(UsageError, match="class 2 has synthetic rows but no real rows"):
        mean_embedding_distance(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]), torch.randn(1, 3), torch.tensor([2]),
                                num_classes=3)
