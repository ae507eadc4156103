"""SRe2L and CDA: recover synthetic images from a trained BatchNorm teacher.

*Squeeze* is the teacher (a registry model with trained weights, or a `train` step's
model). *Recover* optimizes images from noise so the teacher classifies them as their
class while their statistics at every BatchNorm input match the teacher's running ones
(:mod:`curate.condense.bn_statistics`):
``L = CE(teacher(A(x)), y) + r_bn * sum_l w_l (||var_l - rv_l||_2 + ||mean_l - rm_l||_2)``.
Per unit (one image for each class of a batch of ``class_block`` classes at one IPC index,
as the official ``--batch-size``): ``x ~ N(0, 1)`` in the teacher's normalized space, Adam
with betas (0.5, 0.9) and a cosine lr without warm-up over the iterations; each step one
random-resized crop (area in [lower bound, 1], aspect 3/4..4/3) and one flip drawn for the
whole batch, then a ``torch.roll`` by 0..jitter pixels on both axes (wrapping around); after
each step the pixels are clamped to the valid range; the last iterate is kept (``VILA-Lab/SRe2L``
``recover/data_synthesis.py``). *Relabel* is :mod:`curate.condense.relabel`.

CDA (``CDA/recover_cda_*.py``) changes only the crop's lower bound: easy (whole images) to
hard (0.08), by :func:`crop_lower_bound`. With the FYI plug-in the teacher also sees the
mirrored view, so the BatchNorm statistics cover both (our extrapolation: the FYI authors
did not release SRe2L code; experimental).

Published settings (CIFAR: ``SRe2L/*small_dataset/recover_cifar.sh``, CIFAR-100: lr 0.25,
r_bn 0.01, 1,000 iterations, jitter 4, batch 100, and no crop; ImageNet-1K:
``recover.sh``: lr 0.25, r_bn 0.01, 4,000 iterations, jitter 32; CDA: Tiny-ImageNet lr 0.4,
r_bn 0.05, 4K; ImageNet-1K lr 0.25, r_bn 0.01, 4K; ImageNet-21K lr 0.05, r_bn 0.25, 2K).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from curate.condense.base import BlockDistiller
from curate.condense.blocks import Block, BlockResult, plan_blocks, unit_seed
from curate.condense.bn_statistics import BNStatistics
from curate.config import ConfigValueError, option
from curate.errors import UsageError

CROP_FLOOR = 0.08  # RandomResizedCrop's default lower bound, and where CDA's curriculum ends
SCHEDULES = ("cosine", "linear", "step")


def crop_lower_bound(t: int, *, iterations: int, milestone: float, schedule: str = "cosine",
                     low: float = CROP_FLOOR, high: float = 1.0) -> float:
    """CDA's crop lower bound at iteration ``t`` of ``iterations``: from ``high`` down to ``low`` by ``milestone``.

    ``cosine``: ``low + (high - low) (1 + cos(pi t / (m N))) / 2``; ``linear``:
    ``low + (high - low) (1 - t / (m N))``; ``step``: ``high``; each for ``t < m N``, then
    ``low`` (``recover_cda_*.py``; m = 0 leaves ``low`` throughout, no curriculum).
    """
    if schedule not in SCHEDULES:
        raise UsageError(f"`schedule` must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    span = milestone * iterations
    if t >= span:
        return low
    if schedule == "step":
        return high
    if schedule == "linear":
        return low + (high - low) * (1 - t / span)
    return low + (high - low) * (1 + math.cos(math.pi * t / span)) / 2


@dataclass(frozen=True, kw_only=True)
class RecoverConfig:
    """SRe2L's recover options; lr and r_bn are ``recover_cifar.sh``'s and ``recover.sh``'s (both 0.25, 0.01)."""

    lr: float = option(0.25, gt=0, help="Adam learning rate of the images (recover.sh, recover_cifar.sh: 0.25)")
    r_bn: float = option(0.01, ge=0, help="weight of the BatchNorm-statistics loss (recover.sh, "
                                          "recover_cifar.sh: 0.01)")
    first_bn_multiplier: float = option(10.0, ge=0, help="extra weight of the first BatchNorm layer (10)")
    betas: tuple[float, float] = option((0.5, 0.9), help="Adam's betas")
    class_block: int = option(100, gt=0, help="classes optimized together at one IPC index, one image each "
                                              "(the official --batch-size 100)")
    jitter: float = option(32 / 224, ge=0, lt=1, help="largest roll per axis as a share of the image side: 32 px "
                                                      "at 224 (recover.sh), 4 px at 32 (recover_cifar.sh)")
    min_crop: float = option(CROP_FLOOR, gt=0, le=1, help="smallest crop area share (RandomResizedCrop's 0.08; "
                                                          "1 keeps whole images, as recover_cifar.py)")
    flip: bool = option(True, help="a random horizontal flip per step, shared by the batch")


@dataclass(frozen=True, kw_only=True)
class CurriculumConfig(RecoverConfig):
    """CDA: the crop lower bound follows an easy-to-hard curriculum (``--easy2hard-mode``, ``--milestone``)."""

    schedule: Literal["cosine", "linear", "step"] = option("cosine", help="--easy2hard-mode: how the crop lower "
                                                                          "bound falls from 1 to min_crop")
    milestone: float = option(1.0, ge=0, le=1, help="share of the iterations the curriculum spans, in (0, 1] "
                                                    "(the published commands pass 1)")

    def __post_init__(self) -> None:
        if self.milestone == 0:
            raise ConfigValueError("milestone", "0 switches the curriculum off: the crop lower bound is min_crop "
                                                "from the first iteration, which is method sre2l (0 is the argparse "
                                                "default of recover_cda_*.py, but every published command passes "
                                                "--milestone 1); use method sre2l, or a milestone in (0, 1]")


class Recovery(BlockDistiller):
    """SRe2L: recover images from noise against a BatchNorm teacher (Yin et al., NeurIPS 2023)."""

    Config = RecoverConfig
    needs_teacher = True
    evaluation = "kd"

    def blocks(self, ipc: int) -> list[Block]:
        return plan_blocks(self.num_classes, ipc, class_block=self.config.class_block)

    def crop_lower_bound(self, t: int, iterations: int) -> float:
        return self.config.min_crop

    def recover_block(self, block: Block, *, iterations: int, seed: int,
                      on_iteration: Callable[[float], None] | None = None) -> BlockResult:
        units = [self.recover_unit(torch.arange(*block.classes), iterations=iterations, on_iteration=on_iteration,
                                   generator=torch.Generator().manual_seed(
                                       unit_seed(seed, ipc_index=j, first_class=block.classes[0])))
                 for j in block.units]
        images, losses, seconds = zip(*units)
        shape = (len(units), iterations)
        return BlockResult(block, torch.stack(images), torch.tensor(losses, dtype=torch.float64).reshape(shape),
                           torch.tensor(seconds, dtype=torch.float64).reshape(shape))

    def recover_unit(self, classes: torch.Tensor, *, iterations: int, generator: torch.Generator,
                     on_iteration: Callable[[float], None] | None = None
                     ) -> tuple[torch.Tensor, list[float], list[float]]:
        """One image per class of ``classes`` recovered from noise: (images (B, C, H, W) on CPU, losses, seconds)."""
        from curate.learn.fit import learning_rate

        cfg = self.config
        teacher = self.teacher
        pre = teacher.preprocess
        c, (h, w) = pre.channels, tuple(pre.size)
        mean = torch.tensor(pre.mean, device=self.device).view(1, c, 1, 1)
        std = torch.tensor(pre.std, device=self.device).view(1, c, 1, 1)
        low, high = -mean / std, (1 - mean) / std
        x = torch.randn((len(classes), c, h, w), generator=generator).to(self.device).requires_grad_(True)
        y = classes.to(self.device)
        optimizer = torch.optim.Adam([x], lr=cfg.lr, betas=tuple(cfg.betas), eps=1e-8)
        losses, seconds = [], []
        with BNStatistics(teacher, first_multiplier=cfg.first_bn_multiplier) as bn:
            for t in range(iterations):
                began = time.perf_counter()
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(t, base_lr=cfg.lr, total_steps=iterations, schedule="cosine")
                view = self.view(x, lower=self.crop_lower_bound(t, iterations), generator=generator)
                view, targets = self.synthetic(view, y)
                loss = F.cross_entropy(teacher(view), targets) + cfg.r_bn * bn.loss()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    torch.maximum(torch.minimum(x, high), low, out=x)
                losses.append(float(loss.detach()))
                seconds.append(time.perf_counter() - began)
                if on_iteration is not None:
                    on_iteration(losses[-1])
        return x.detach().cpu(), losses, seconds

    def view(self, x: torch.Tensor, *, lower: float, generator: torch.Generator) -> torch.Tensor:
        """One random-resized crop (area in [lower, 1]) and flip for the whole batch, then a roll of 0..jitter px."""
        from curate.relabel.data import ResizedCrop

        h, w = x.shape[-2:]
        draw = ResizedCrop(scale=(lower, 1.0), flip=self.config.flip).sample(1, h, w, generator)
        x1, y1, x2, y2 = (int(v) for v in draw.boxes[0])
        out = x[:, :, y1:y2, x1:x2]
        if (y2 - y1, x2 - x1) != (h, w):
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
        if bool(draw.flip[0]):
            out = out.flip(-1)
        jitter = int(min(h, w) * self.config.jitter + 1e-6)
        shifts = torch.randint(0, jitter + 1, (2,), generator=generator)
        return torch.roll(out, shifts=(int(shifts[0]), int(shifts[1])), dims=(2, 3))


class CurriculumRecovery(Recovery):
    """CDA: SRe2L with an easy-to-hard curriculum on the crop's lower bound (Yin & Shen, TMLR 2024)."""

    Config = CurriculumConfig

    def crop_lower_bound(self, t: int, iterations: int) -> float:
        cfg = self.config
        return crop_lower_bound(t, iterations=iterations, milestone=cfg.milestone, schedule=cfg.schedule,
                                low=cfg.min_crop)
