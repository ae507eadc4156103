"""SRe2L's feature-distribution loss: how far a batch's statistics lie from a BatchNorm teacher's.

A teacher trained on the real data keeps, in every ``BatchNorm2d``, running estimates of
the per-channel mean and variance of that layer's input. Recovery pushes synthetic images
until their own statistics match: forward hooks read each layer's *input* and compare its
mean and **biased** variance over (N, H, W) with the running ones, as plain (not squared)
L2 norms, ``||var - running_var||_2 + ||mean - running_mean||_2``, the first layer weighted
``first_multiplier`` and the others 1 (``VILA-Lab/SRe2L`` ``BNFeatureHook``,
``--first-bn-multiplier 10``). The teacher must be in eval mode, so its running statistics
stay frozen and the layers normalize with them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from curate.errors import UsageError


def batch_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance (what BatchNorm normalizes with) of ``x`` (N, C, H, W)."""
    return x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), correction=0)


def layer_loss(x: torch.Tensor, layer: nn.BatchNorm2d) -> torch.Tensor:
    """``||var(x) - running_var||_2 + ||mean(x) - running_mean||_2`` for the input ``x`` of ``layer``."""
    mean, var = batch_statistics(x)
    return (torch.linalg.vector_norm(var - layer.running_var.to(var.dtype))
            + torch.linalg.vector_norm(mean - layer.running_mean.to(mean.dtype)))


class BNStatistics:
    """Hooks on every ``BatchNorm2d`` of ``model``; after a forward pass, :meth:`loss` is the weighted sum.

    Use as a context manager so the hooks come off the teacher afterwards.
    """

    def __init__(self, model: nn.Module, *, first_multiplier: float = 10.0):
        self.layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        if not self.layers:
            raise UsageError(f"the teacher '{getattr(model, 'name', type(model).__name__)}' has no BatchNorm2d "
                             "layers, whose running statistics recovery matches; use a BatchNorm teacher "
                             "(e.g. resnet20-cifar)")
        if any(m.training for m in self.layers):
            raise UsageError("the teacher's BatchNorm layers are in training mode; call teacher.eval() so their "
                             "running statistics stay frozen")
        self.weights = [first_multiplier] + [1.0] * (len(self.layers) - 1)
        self._losses: list[torch.Tensor | None] = [None] * len(self.layers)
        self._handles: list[Any] = []

    def __enter__(self) -> "BNStatistics":
        for i, layer in enumerate(self.layers):
            self._handles.append(layer.register_forward_hook(self._hook(i)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, i: int):
        def hook(module: nn.BatchNorm2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            self._losses[i] = layer_loss(inputs[0], module)

        return hook

    def loss(self) -> torch.Tensor:
        """``sum_l w_l * layer_loss_l`` of the last forward pass."""
        if any(v is None for v in self._losses):
            raise RuntimeError("BNStatistics.loss() needs a forward pass of the teacher inside the `with` block")
        return sum(w * v for w, v in zip(self.weights, self._losses))
