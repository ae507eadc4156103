"""Distribution matching, DM (Zhao & Bilen, WACV 2023; ``VICO-UoE/DatasetCondensation`` ``main_DM.py``).

Each iteration draws a fresh random network with frozen weights and matches, class by
class, the mean embedding (the flattened feature map before the classifier) of a real
batch and of the synthetic images, both under the class's shared DSA draw:
``L = sum_c ||mean psi(A(T_c)) - mean psi(A(S_c))||^2``, then one SGD step on the images.
All classes go through the network together (the embedding is per image with instance
norm, so this equals the official per-class loop); the real side runs without autograd.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from curate.condense.base import Distiller, DistillerConfig
from curate.condense.matching import mean_embedding_distance
from curate.config import option


# the official CIFAR-10 scripts' image lr: 1 at IPC 1/10/50, 10 at IPC 100/200/500/1000/1250 (CIFAR-100 keeps 1)
LR_IMG_SMALL, LR_IMG_LARGE, LARGE_IPC = 1.0, 10.0, 100


def default_lr_img(ipc: int) -> float:
    """DM's image learning rate for ``ipc`` as the official CIFAR-10 commands set it."""
    return LR_IMG_LARGE if ipc >= LARGE_IPC else LR_IMG_SMALL


@dataclass(frozen=True, kw_only=True)
class DistributionMatchingConfig(DistillerConfig):
    lr_img: float | None = option(None, gt=0, help="learning rate of the synthetic images (null: 1 below IPC 100, "
                                                   "10 from IPC 100, as the official CIFAR-10 commands)")
    dsa: bool = option(True, help="differentiable siamese augmentation of real and synthetic batches")


class DistributionMatching(Distiller):
    """DM: match per-class mean embeddings of a random frozen network."""

    Config = DistributionMatchingConfig
    channels_last = True  # the real side is forward-only

    @classmethod
    def resolve(cls, config: DistributionMatchingConfig, *, ipc: int, iterations: int) -> DistributionMatchingConfig:
        return config if config.lr_img is not None else replace(config, lr_img=default_lr_img(ipc))

    def iteration(self, images: torch.Tensor, labels: torch.Tensor, optimizer: torch.optim.Optimizer,
                  generator: torch.Generator, iteration: int) -> float:
        net = self.network(generator).requires_grad_(False)
        loss = self.matching_loss(net, images, labels, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach()) / self.num_classes

    def embed(self, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The flattened features of ``x``, computed chunk by chunk."""
        return torch.cat([net.features(self.net_input(chunk)) for chunk in self.chunks(x)])

    def matching_loss(self, net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                      generator: torch.Generator, *, iteration: int = 0, step: int = 0) -> torch.Tensor:
        """``sum_c ||mean psi(A(T_c)) - mean psi(A(S_c))||^2`` with a fresh real batch per class."""
        draw = self.siamese_draw(generator, images)
        real, real_labels = self.real.sample_classes(self.config.batch_real, generator)
        real = self.siamese(real, real_labels, draw)
        syn, syn_labels = self.synthetic(images, labels)
        syn = self.siamese(syn, syn_labels, draw)
        with torch.no_grad():
            real_embeddings = self.embed(net, real)
        syn_embeddings = self.embed(net, syn)
        return mean_embedding_distance(real_embeddings, real_labels, syn_embeddings, syn_labels.to(images.device),
                                       num_classes=self.num_classes)
