"""Independent blocks of work: how a recovery run splits, seeds and merges.

SRe2L and CDA optimize each batch of classes at each IPC index on its own (the official
loop over ``ipc_id`` and over class batches of ``--batch-size``): nothing flows between
batches. A :class:`Block` is a range of classes times a range of IPC indices; within it,
every IPC index is one *unit* whose random stream is seeded from ``(seed, IPC index,
first class)`` alone (:func:`unit_seed`). A block's images are therefore a pure function
of (block, seed), the same on whichever worker and in whichever order it runs, and the
merged set does not depend on how the units were grouped into blocks: one block per
unit (the driver's plan, checkpointed one by one), one block per worker, or the IPC 10
set as the first 10 IPC indices of the IPC 50 set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Block:
    """Classes ``classes[0] <= c < classes[1]`` at IPC indices ``ipc[0] <= j < ipc[1]``."""

    classes: tuple[int, int]
    ipc: tuple[int, int]

    @property
    def key(self) -> str:
        """A file-name-safe name, e.g. ``c00000-00010_i00003-00004``."""
        return f"c{self.classes[0]:05d}-{self.classes[1]:05d}_i{self.ipc[0]:05d}-{self.ipc[1]:05d}"

    @property
    def num_classes(self) -> int:
        return self.classes[1] - self.classes[0]

    @property
    def units(self) -> range:
        """The IPC indices of the block, one unit each."""
        return range(*self.ipc)


@dataclass
class BlockResult:
    """A block's images ``(ipc indices, classes, C, H, W)`` and, per unit, the loss and seconds of each iteration."""

    block: Block
    images: torch.Tensor
    losses: torch.Tensor   # (units, iterations) float64
    seconds: torch.Tensor  # (units, iterations) float64


def plan_blocks(num_classes: int, ipc: int, *, class_block: int, ipc_block: int = 1) -> list[Block]:
    """Blocks of up to ``class_block`` classes and ``ipc_block`` IPC indices, IPC index by IPC index."""
    return [Block((c, min(c + class_block, num_classes)), (j, min(j + ipc_block, ipc)))
            for j in range(0, ipc, ipc_block) for c in range(0, num_classes, class_block)]


def unit_seed(seed: int, *, ipc_index: int, first_class: int) -> int:
    """The seed of one unit's generator: a function of the run's seed and where the unit sits, nothing else."""
    return int(np.random.SeedSequence([int(seed), int(ipc_index), int(first_class)]).generate_state(1)[0])


def merge(results: list[BlockResult], *, num_classes: int, ipc: int) -> torch.Tensor:
    """The blocks' images as one class-major set (num_classes * ipc, C, H, W); every slot must be filled once."""
    shape = results[0].images.shape[2:]
    out = torch.empty((num_classes * ipc, *shape), dtype=results[0].images.dtype)
    filled = torch.zeros(num_classes * ipc, dtype=torch.bool)
    for result in results:
        b = result.block
        classes = torch.arange(*b.classes)
        for k, j in enumerate(b.units):
            slots = classes * ipc + j
            if filled[slots].any():
                raise ValueError(f"block {b.key} overlaps another block")
            out[slots] = result.images[k]
            filled[slots] = True
    if not filled.all():
        raise ValueError(f"the blocks leave {int((~filled).sum())} of {len(filled)} images unfilled")
    return out


def merged_history(results: list[BlockResult]) -> list[dict[str, float]]:
    """One row per iteration: the loss averaged over all units, the seconds summed over them."""
    losses = torch.cat([r.losses for r in results])
    seconds = torch.cat([r.seconds for r in results])
    return [{"iteration": i + 1, "loss": float(losses[:, i].mean()), "seconds": float(seconds[:, i].sum())}
            for i in range(losses.shape[1])]


def block_timings(results: list[BlockResult]) -> list[dict[str, Any]]:
    """Per block: its classes, IPC indices, wall seconds and the final loss of each unit."""
    return [{"block": r.block.key, "classes": list(r.block.classes), "ipc": list(r.block.ipc),
             "seconds": float(r.seconds.sum()), "final_loss": r.losses[:, -1].tolist() if r.losses.shape[1] else []}
            for r in results]
