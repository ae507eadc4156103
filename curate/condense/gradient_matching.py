"""Gradient matching: DC, DSA and DCC (``VICO-UoE/DatasetCondensation`` ``main.py``, ``Saehyung-Lee/DCC``).

Each outer iteration draws a fresh random network and alternates ``outer_loop`` matching
steps (one SGD step on the synthetic images against the layer-wise gradient distance)
with ``inner_loop`` epochs of training that network on the synthetic set (SGD, lr_net,
no momentum, through :func:`curate.learn.fit`). DSA applies one shared random
augmentation per class to the real and synthetic batches. DCC matches the gradients
averaged over classes instead of class by class, after a class-wise warm-up.

Networks with BatchNorm are refused: the official code freezes their statistics on real
images first, which is not implemented here (the default ConvNet uses instance norm).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from curate.condense.base import Distiller, DistillerConfig, draw_seed
from curate.condense.train_data import SyntheticData
from curate.condense.matching import gradient_distance, mean_gradient
from curate.config import option
from curate.errors import UsageError

# (outer_loop, inner_loop) by IPC: utils.get_loops of DC; DCC gives IPC 1 ten matching steps
DC_LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}
DCC_LOOPS = {**DC_LOOPS, 1: (10, 5)}


def default_loops(ipc: int, table: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """The table's loops for ``ipc``; an IPC not in it takes the nearest listed one (the smaller on ties)."""
    nearest = min(table, key=lambda k: (abs(k - ipc), k))
    return table[nearest]


def classwise_phase(iteration: int, step: int, *, outer_warmup: int, inner_warmup: int) -> bool:
    """DCC's bi-level warm-up: class-wise matching while ``iteration < outer_warmup`` and ``step < inner_warmup``."""
    return iteration < outer_warmup and step < inner_warmup


@dataclass(frozen=True, kw_only=True)
class GradientMatchingConfig(DistillerConfig):
    outer_loop: int | None = option(None, gt=0, help="matching steps per iteration (null: DC's table by IPC)")
    inner_loop: int | None = option(None, ge=0, help="epochs on the synthetic set between matching steps "
                                                      "(null: DC's table by IPC)")
    lr_net: float = option(0.01, gt=0, help="learning rate of the inner-loop network training")
    batch_train: int = option(256, gt=0, help="batch size of the inner-loop network training")
    distance: Literal["layerwise", "mse", "cos"] = option("layerwise", help="gradient distance (DC's is layerwise)")


class GradientMatching(Distiller):
    """DC: class-wise layer-wise gradient matching (Zhao et al., ICLR 2021)."""

    Config = GradientMatchingConfig
    default_init = "noise"  # main.py's default, behind DC's published CIFAR-10 28.3 / 44.9 / 53.9
    loops = DC_LOOPS

    def __init__(self, config: GradientMatchingConfig, **kwargs):
        super().__init__(config, **kwargs)
        from curate.learn.chunking import couples_batch

        if couples_batch(self.network.build(seed=0)):
            raise UsageError("gradient matching needs networks without BatchNorm (the official frozen-statistics "
                             "procedure is not implemented); use model_config {norm: instancenorm}")

    @classmethod
    def resolve(cls, config: GradientMatchingConfig, *, ipc: int, iterations: int) -> GradientMatchingConfig:
        outer, inner = default_loops(ipc, cls.loops)
        return replace(config, outer_loop=config.outer_loop or outer,
                       inner_loop=inner if config.inner_loop is None else config.inner_loop)

    def iteration(self, images: torch.Tensor, labels: torch.Tensor, optimizer: torch.optim.Optimizer,
                  generator: torch.Generator, iteration: int) -> float:
        net = self.network(generator)
        outer = self.config.outer_loop
        total = 0.0
        for step in range(outer):
            net.train()
            loss = self.matching_loss(net, images, labels, generator, iteration=iteration, step=step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            if step < outer - 1 and self.config.inner_loop > 0:
                self.train_network(net, images, labels, generator)
        return total / (self.num_classes * outer)

    def matching_loss(self, net: nn.Module, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
                      *, iteration: int = 0, step: int = 0) -> torch.Tensor:
        """``sum_c D(grad CE(S_c), grad CE(T_c))`` over a fresh real batch per class."""
        params = [p for p in net.parameters() if p.requires_grad]
        draw = self.siamese_draw(generator, images)
        loss = images.new_zeros(())
        for c in range(self.num_classes):
            real, real_labels = self._real_batch(c, generator)
            syn, syn_labels = self.synthetic(images[labels == c], labels[labels == c])
            g_real = self.gradient(net, params, self.siamese(real, real_labels, draw), real_labels)
            g_syn = self.gradient(net, params, self.siamese(syn, syn_labels, draw), syn_labels, create_graph=True)
            loss = loss + gradient_distance(g_syn, g_real, metric=self.config.distance)
        return loss

    def gradient(self, net: nn.Module, params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
                 create_graph: bool = False) -> list[torch.Tensor]:
        """Gradient of the mean cross-entropy, summed over chunks; kept differentiable (synthetic side) or detached."""
        total: list[torch.Tensor] = []
        for xc, yc in zip(self.chunks(x), self.chunks(y.to(x.device))):
            loss = F.cross_entropy(net(self.net_input(xc)), yc, reduction="sum") / len(x)
            grads = torch.autograd.grad(loss, params, create_graph=create_graph)
            total = list(grads) if not total else [t + g for t, g in zip(total, grads)]
        return total if create_graph else [g.detach() for g in total]

    def train_network(self, net: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                      generator: torch.Generator) -> None:
        """The inner loop: ``inner_loop`` epochs of plain SGD on the (hooked, augmented) synthetic set."""
        from curate.learn import fit

        data = SyntheticData(images.detach(), labels, num_classes=self.num_classes, augment=self.dsa,
                             transform=self.synthetic)
        fit(net, data, epochs=self.config.inner_loop, batch_size=self.config.batch_train, lr=self.config.lr_net,
            momentum=0.0, weight_decay=0.0, lr_schedule="constant", seed=draw_seed(generator), device=self.device,
            progress=False, channels_last=self.network.channels_last, micro_batch=self.chunk)
        if self.network.channels_last:  # fit hands the weights back in the default layout
            net.to(memory_format=torch.channels_last)

    def _real_batch(self, c: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        real = self.real.sample(c, self.config.batch_real, generator)
        return real, torch.full((len(real),), c, dtype=torch.long, device=real.device)


@dataclass(frozen=True, kw_only=True)
class SiameseGradientMatchingConfig(GradientMatchingConfig):
    dsa: bool = option(True, help="differentiable siamese augmentation of real and synthetic batches")


class SiameseGradientMatching(GradientMatching):
    """DSA: DC with one shared differentiable augmentation per class (Zhao & Bilen, ICML 2021)."""

    Config = SiameseGradientMatchingConfig
    default_init = "real"  # the readme's DSA command: --init real


@dataclass(frozen=True, kw_only=True)
class ContrastiveConfig(GradientMatchingConfig):
    outer_warmup: int | None = option(None, ge=0, help="iterations of class-wise warm-up (null: a quarter of the "
                                                        "iterations, DCC's 250 of 1000)")
    inner_warmup: int = option(10, ge=0, help="matching steps per iteration that stay class-wise during warm-up")


class ContrastiveGradientMatching(GradientMatching):
    """DCC: gradients averaged over classes before the distance (Lee et al., ICML 2022); ``dsa: true`` is DSAC."""

    Config = ContrastiveConfig
    default_init = "real"  # DCC's main.py always starts from real images
    loops = DCC_LOOPS

    @classmethod
    def resolve(cls, config: ContrastiveConfig, *, ipc: int, iterations: int) -> ContrastiveConfig:
        config = super().resolve(config, ipc=ipc, iterations=iterations)
        return replace(config, outer_warmup=iterations // 4 if config.outer_warmup is None else config.outer_warmup)

    def matching_loss(self, net: nn.Module, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
                      *, iteration: int = 0, step: int = 0) -> torch.Tensor:
        """``D(grad mean_c CE(S_c), mean_c grad CE(T_c))``; class-wise (DC) during the warm-up."""
        if classwise_phase(iteration, step, outer_warmup=self.config.outer_warmup,
                           inner_warmup=self.config.inner_warmup):
            return super().matching_loss(net, images, labels, generator, iteration=iteration, step=step)
        params = [p for p in net.parameters() if p.requires_grad]
        draw = self.siamese_draw(generator, images)
        real_grads = []
        for c in range(self.num_classes):
            real, real_labels = self._real_batch(c, generator)
            real_grads.append(self.gradient(net, params, self.siamese(real, real_labels, draw), real_labels))
        syn, syn_labels = self.synthetic(images, labels)
        # one cross-entropy averaged over all C*IPC images: the class mean of the per-class losses (equal IPC)
        g_syn = self.gradient(net, params, self.siamese(syn, syn_labels, draw), syn_labels, create_graph=True)
        return gradient_distance(g_syn, mean_gradient(real_grads), metric=self.config.distance)
