"""The distiller interface: what every condensation method implements, and what it is given.

A method is one :class:`Distiller` subclass registered in
:data:`curate.condense.registry.DISTILLERS`, with a frozen ``Config`` dataclass of its
options. The driver (:func:`curate.condense.distill`) owns the synthetic tensor, its
optimizer, the random generator, checkpoints and progress; a distiller implements
:meth:`Distiller.iteration`, one outer iteration that updates the synthetic images.
A :class:`BlockDistiller` (SRe2L, CDA) instead recovers independent blocks of classes
and IPC indices, each a pure function of (block, seed) (:mod:`curate.condense.blocks`),
which the driver runs, checkpoints and merges.

Every synthetic batch goes through :meth:`Distiller.synthetic` before it enters a
network (matching steps, inner-loop training, embeddings): that is the one place the
plug-ins (FYI) hook in. Real images never pass through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal, Sequence

import numpy as np
import torch
from torch import nn

from curate.condense.blocks import Block, BlockResult, plan_blocks
from curate.condense.dsa import DEFAULT_STRATEGY, DSA, DSADraw, parse_strategy
from curate.config import ConfigValueError, option
from curate.errors import UsageError

Plugin = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True, kw_only=True)
class DistillerConfig:
    """Options shared by the matching methods (the official defaults of DC/DSA/DM/DCC)."""

    lr_img: float = option(0.1, gt=0, help="learning rate of the synthetic images (SGD)")
    momentum_img: float = option(0.5, ge=0, lt=1, help="momentum of the synthetic images' SGD")
    batch_real: int = option(256, gt=0, help="real images per class in each matching step")
    dsa: bool = option(False, help="differentiable siamese augmentation of real and synthetic batches")
    dsa_strategy: str = option(DEFAULT_STRATEGY, help="DSA families joined by '_' (drop 'flip' for digits)")

    def __post_init__(self) -> None:
        try:
            parse_strategy(self.dsa_strategy)
        except UsageError as exc:
            raise ConfigValueError("dsa_strategy", str(exc)) from None


class RealImages:
    """The real training images in model-input space (N, C, H, W) on the device, sampled per class."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, num_classes: int):
        self.images = images
        self.num_classes = num_classes
        labels = labels.long().cpu()
        order = torch.argsort(labels, stable=True)
        counts = torch.bincount(labels, minlength=num_classes)
        self.by_class = list(order.split(counts.tolist()))

    @classmethod
    def from_uint8(cls, images: np.ndarray, labels: np.ndarray, *, preprocess: Callable, num_classes: int,
                   device: str, chunk: int = 1024) -> "RealImages":
        x = torch.cat([preprocess(torch.from_numpy(np.ascontiguousarray(images[i:i + chunk])))
                       for i in range(0, len(images), chunk)])
        return cls(x.to(device), torch.as_tensor(np.asarray(labels)), num_classes=num_classes)

    def sample(self, c: int, n: int, generator: torch.Generator) -> torch.Tensor:
        """``min(n, count)`` distinct random images of class ``c``."""
        pool = self.by_class[c]
        pick = pool[torch.randperm(len(pool), generator=generator)[:n]]
        return self.images[pick.to(self.images.device)]

    def sample_classes(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`sample` for every class, concatenated class by class, with the labels."""
        parts = [self.sample(c, n, generator) for c in range(self.num_classes)]
        labels = torch.cat([torch.full((len(p),), c, dtype=torch.long) for c, p in enumerate(parts)])
        return torch.cat(parts), labels.to(self.images.device)


@dataclass(frozen=True)
class NetworkFactory:
    """Fresh randomly initialized registry networks, seeded from the distillation generator."""

    name: str
    num_classes: int
    config: dict[str, Any]
    device: str
    channels_last: bool = False

    def build(self, seed: int) -> nn.Module:
        from curate.models import create_model

        net = create_model(self.name, num_classes=self.num_classes, weights=None, seed=seed, **self.config)
        net.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        return net.train()

    def __call__(self, generator: torch.Generator) -> nn.Module:
        return self.build(draw_seed(generator))


def draw_seed(generator: torch.Generator) -> int:
    """A seed for a sub-process (a network init, a training run) drawn from ``generator``."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


class Distiller:
    """Base class of condensation methods; subclasses set ``Config`` and implement :meth:`iteration`."""

    Config: ClassVar[type] = DistillerConfig
    # where the synthetic images start unless `init` is given: the official script's `--init` behind the published
    # tables (DC's main.py defaults to noise; DSA's and DM's commands pass real; DCC always starts from real images)
    default_init: ClassVar[Literal["real", "noise"]] = "real"
    inits: ClassVar[tuple[str, ...]] = ("real", "noise")  # the starts the method accepts
    # memory format of the networks by default: channels-last speeds up CPU forward passes, but
    # GroupNorm's backward is slower in it, so backward-heavy methods keep the contiguous layout
    channels_last: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = False  # recovers images from a trained BatchNorm teacher (SRe2L, CDA)
    # the protocol behind the published numbers: "hard" (condensation's) or "kd" (the teacher's soft labels)
    evaluation: ClassVar[str] = "hard"

    def __init__(self, config: Any, *, real: RealImages | None, network: NetworkFactory | None,
                 plugins: Sequence[Plugin] = (), device: str = "cpu", chunk: int | None = None,
                 teacher: nn.Module | None = None, num_classes: int | None = None):
        self.config = config
        self.real = real
        self.network = network
        self.plugins = list(plugins)
        self.device = device
        self.chunk = chunk
        self.teacher = teacher
        self.num_classes = real.num_classes if num_classes is None else num_classes
        # the DSA of this run, also what the evaluation protocol trains with (None: no augmentation)
        self.dsa = DSA(strategy=config.dsa_strategy) if getattr(config, "dsa", False) else None

    @classmethod
    def resolve(cls, config: Any, *, ipc: int, iterations: int) -> Any:
        """The config with every default that depends on ``ipc`` or ``iterations`` filled in."""
        return config

    def optimizer(self, images: torch.Tensor) -> torch.optim.Optimizer:
        return torch.optim.SGD([images], lr=self.config.lr_img, momentum=self.config.momentum_img)

    def synthetic(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The hook: every synthetic batch passes here, through each plug-in, before a network sees it."""
        for plugin in self.plugins:
            images, labels = plugin(images, labels)
        return images, labels

    def siamese_draw(self, generator: torch.Generator, images: torch.Tensor) -> DSADraw | None:
        """One DSA draw per class, shared by that class's real and synthetic images (None without DSA)."""
        if self.dsa is None:
            return None
        return self.dsa.draw(self.num_classes, generator, size=tuple(images.shape[-2:]))

    def siamese(self, images: torch.Tensor, labels: torch.Tensor, draw: DSADraw | None) -> torch.Tensor:
        """Apply each class's row of ``draw`` to its images (identity without DSA)."""
        if draw is None:
            return images
        return self.dsa.apply(images, draw, index=labels)

    def chunks(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``x`` in the run's chunks of ``chunk`` images along dim 0 (one piece when ``chunk`` is None)."""
        return x.split(self.chunk) if self.chunk else (x,)

    def net_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.network.channels_last else x

    def iteration(self, images: torch.Tensor, labels: torch.Tensor, optimizer: torch.optim.Optimizer,
                  generator: torch.Generator, iteration: int) -> float:
        """One outer iteration: update ``images`` (a leaf tensor) in place; return the matching loss."""
        raise NotImplementedError

    def matching_loss(self, net: nn.Module, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
                      *, iteration: int = 0, step: int = 0) -> torch.Tensor:
        """The method's differentiable loss of ``images`` against fresh real batches, with network ``net``."""
        raise NotImplementedError


class BlockDistiller(Distiller):
    """A method whose work splits into independent blocks (:mod:`curate.condense.blocks`).

    :meth:`recover_block` must be a pure function of (block, ``iterations``, ``seed``) given
    the distiller's config, teacher and plug-ins: the driver runs the blocks of
    :meth:`blocks` one after another and saves each as it finishes, and a pool of workers
    may run them anywhere in any order; :func:`curate.condense.blocks.merge` puts them together.
    """

    inits = ("noise",)
    default_init = "noise"

    def blocks(self, ipc: int) -> list[Block]:
        """The driver's plan: one block per class batch and IPC index (its checkpoint unit)."""
        return plan_blocks(self.num_classes, ipc, class_block=self.num_classes)

    def recover_block(self, block: Block, *, iterations: int, seed: int,
                      on_iteration: Callable[[float], None] | None = None) -> BlockResult:
        """The images of ``block`` after ``iterations`` steps; ``on_iteration(loss)`` is called after each step."""
        raise NotImplementedError
