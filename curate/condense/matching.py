"""Matching losses of dataset condensation, as pure functions of tensors.

A "gradient" is the list of per-parameter gradients of a loss, in ``net.parameters()``
order. K is the number of classes and D the embedding width.

- :func:`gradient_distance` is DC's layer-wise distance (``VICO-UoE/DatasetCondensation``
  ``utils.distance_wb`` / ``match_loss``, metric ``ours``), or the ``mse`` / ``cos`` ablations.
- :func:`classwise_gradient_loss` sums that distance over classes (DC, DSA).
- :func:`contrastive_gradient_loss` averages the gradients over classes *before* the
  distance (DCC, Lee et al. ICML 2022), so it sees what separates classes.
- :func:`mean_embedding_distance` is DM's ``sum_c ||mean psi(real_c) - mean psi(syn_c)||^2``.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch

from curate.errors import UsageError

Gradient = Sequence[torch.Tensor]
DISTANCES = ("layerwise", "mse", "cos")
EPS = 1e-6  # absolute, as in the official code: rows with norms near 1e-3 never reach distance 0


def gradient_distance(
    syn: Gradient, real: Gradient, *, metric: Literal["layerwise", "mse", "cos"] = "layerwise"
) -> torch.Tensor:
    """Distance between two gradients (a 0-d tensor, differentiable in both).

    ``layerwise``: every parameter's gradient becomes rows, one per output unit (conv
    ``[out, in*kh*kw]``, linear ``[out, in]``, 3-D ``[C, h*w]``), and the distance is
    ``sum_rows (1 - <a, b> / (|a| |b| + 1e-6))``. 1-D tensors (biases, norm affines)
    contribute 0, as in the official distance. ``mse``: squared L2 distance of the
    flattened gradients. ``cos``: one minus one cosine over all flattened gradients.
    """
    if len(syn) != len(real):
        raise UsageError(f"the gradients have {len(syn)} and {len(real)} tensors; pass one per parameter to both")
    for a, b in zip(syn, real):
        if a.shape != b.shape:
            raise UsageError(f"gradient shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if metric == "layerwise":
        total = syn[0].new_zeros(())
        for a, b in zip(syn, real):
            if a.ndim == 1:
                continue
            a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
            cosine = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + EPS)
            total = total + (1 - cosine).sum()
        return total
    a = torch.cat([g.reshape(-1) for g in syn])
    b = torch.cat([g.reshape(-1) for g in real])
    if metric == "mse":
        return ((a - b) ** 2).sum()
    if metric == "cos":
        return 1 - (a * b).sum() / (a.norm() * b.norm() + EPS)
    raise UsageError(f"`metric` must be one of {', '.join(DISTANCES)}, got {metric!r}")


def mean_gradient(gradients: Sequence[Gradient]) -> list[torch.Tensor]:
    """The per-parameter mean of several gradients (e.g. one per class)."""
    if not gradients:
        raise UsageError("`gradients` is empty; pass at least one gradient")
    return [torch.stack(tensors).mean(0) for tensors in zip(*gradients)]


def classwise_gradient_loss(syn: Sequence[Gradient], real: Sequence[Gradient], *,
                            metric: str = "layerwise") -> torch.Tensor:
    """DC: ``sum_c D(g_syn_c, g_real_c)`` over K per-class gradients."""
    if len(syn) != len(real):
        raise UsageError(f"`syn` has {len(syn)} class gradients but `real` has {len(real)}")
    return torch.stack([gradient_distance(s, r, metric=metric) for s, r in zip(syn, real)]).sum()


def contrastive_gradient_loss(syn: Sequence[Gradient], real: Sequence[Gradient], *,
                              metric: str = "layerwise") -> torch.Tensor:
    """DCC: ``D(mean_c g_syn_c, mean_c g_real_c)``: the classes are combined before the distance."""
    if len(syn) != len(real):
        raise UsageError(f"`syn` has {len(syn)} class gradients but `real` has {len(real)}")
    return gradient_distance(mean_gradient(syn), mean_gradient(real), metric=metric)


def class_means(embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(means (K, D), counts (K,))`` of the embeddings of each class (zero rows for absent classes)."""
    one_hot = torch.nn.functional.one_hot(labels.long(), num_classes).to(embeddings.dtype)
    counts = one_hot.sum(0)
    return (one_hot.T @ embeddings) / counts.clamp(min=1)[:, None], counts


def mean_embedding_distance(
    real: torch.Tensor, real_labels: torch.Tensor, syn: torch.Tensor, syn_labels: torch.Tensor, *, num_classes: int
) -> torch.Tensor:
    """DM: ``sum_c ||mean(real_c) - mean(syn_c)||^2`` over embeddings real (N, D) and syn (M, D).

    Every class with synthetic rows must have real rows too.
    """
    if real.ndim != 2 or syn.ndim != 2 or real.shape[1] != syn.shape[1]:
        raise UsageError(f"embeddings must be (N, D) and (M, D) with one D, got {tuple(real.shape)} and "
                         f"{tuple(syn.shape)}")
    real_means, real_counts = class_means(real, real_labels, num_classes)
    syn_means, syn_counts = class_means(syn, syn_labels, num_classes)
    missing = torch.nonzero((syn_counts > 0) & (real_counts == 0)).flatten()
    if len(missing):
        raise UsageError(f"class {int(missing[0])} has synthetic rows but no real rows to match")
    present = syn_counts > 0
    return ((real_means[present] - syn_means[present]) ** 2).sum()
