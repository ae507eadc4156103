"""Distillation checkpoints: everything a killed run needs to continue exactly where it stopped.

One safetensors file holds the synthetic images, the optimizer's tensor state and the
random generator's state; its metadata holds the iteration, the loss history, the
optimizer's other state and a fingerprint of the run's settings and data. It is written
atomically through :func:`curate.workspace.atomic_write`, so a crash leaves the previous
checkpoint intact. A checkpoint whose fingerprint differs is ignored (and overwritten).
Block methods (SRe2L, CDA) save each finished block as its own file under ``blocks/``
instead, so workers can write theirs side by side.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from curate import workspace

if TYPE_CHECKING:  # pragma: no cover
    from curate.condense.blocks import Block, BlockResult

log = logging.getLogger(__name__)

FILENAME = "distill.ckpt.safetensors"
FORMAT = "curate.distill_checkpoint/1"


@dataclass(frozen=True)
class Checkpoint:
    iteration: int
    images: torch.Tensor
    optimizer: dict[str, Any]
    generator: torch.Tensor
    history: list[dict[str, float]]


def save_checkpoint(path: str | Path, *, fingerprint: str, iteration: int, images: torch.Tensor,
                    optimizer: torch.optim.Optimizer, generator: torch.Generator,
                    history: list[dict[str, float]]) -> None:
    from safetensors.torch import save_file

    tensors = {"images": images.detach().cpu().contiguous(), "generator": generator.get_state()}
    state = optimizer.state_dict()
    other: dict[str, dict[str, Any]] = {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer/{pid}/{key}"] = value.detach().cpu().contiguous()
            else:
                other.setdefault(str(pid), {})[key] = value
    meta = {"format": FORMAT, "fingerprint": fingerprint, "iteration": iteration, "history": history,
            "optimizer": {"param_groups": state["param_groups"], "state": other}}
    workspace.atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"curate": json.dumps(meta)}))


def load_checkpoint(path: str | Path, *, fingerprint: str) -> Checkpoint | None:
    """The checkpoint at ``path`` if it belongs to this run (same fingerprint), else None."""
    found = _read(path, format=FORMAT, fingerprint=fingerprint, what="checkpoint")
    if found is None:
        return None
    meta, tensors = found
    state: dict[int, dict[str, Any]] = {int(pid): dict(v) for pid, v in meta["optimizer"]["state"].items()}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, pid, name = key.split("/", 2)
            state.setdefault(int(pid), {})[name] = value
    optimizer = {"state": state, "param_groups": meta["optimizer"]["param_groups"]}
    return Checkpoint(iteration=int(meta["iteration"]), images=tensors["images"], optimizer=optimizer,
                      generator=tensors["generator"], history=meta["history"])


BLOCK_FORMAT = "curate.distill_block/1"


def block_path(folder: str | Path, block: "Block") -> Path:
    return Path(folder) / "blocks" / f"{block.key}.safetensors"


def save_block(folder: str | Path, result: "BlockResult", *, fingerprint: str) -> None:
    """Write one finished block (images, per-unit losses and seconds) atomically beside the run's other blocks."""
    from safetensors.torch import save_file

    path = block_path(folder, result.block)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"images": result.images.contiguous(), "losses": result.losses.contiguous(),
               "seconds": result.seconds.contiguous()}
    meta = {"format": BLOCK_FORMAT, "fingerprint": fingerprint, "classes": list(result.block.classes),
            "ipc": list(result.block.ipc)}
    workspace.atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"curate": json.dumps(meta)}))


def load_block(folder: str | Path, block: "Block", *, fingerprint: str) -> "BlockResult | None":
    """The saved result of ``block`` if this run (same fingerprint) finished it, else None."""
    from curate.condense.blocks import BlockResult

    found = _read(block_path(folder, block), format=BLOCK_FORMAT, fingerprint=fingerprint, what="block")
    if found is None:
        return None
    tensors = found[1]
    return BlockResult(block, tensors["images"], tensors["losses"], tensors["seconds"])


def _read(path: str | Path, *, format: str, fingerprint: str, what: str
          ) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """(metadata, tensors) of the file at ``path`` if it exists and belongs to this run, else None (logged)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads((fh.metadata() or {}).get("curate", "{}"))
        if meta.get("format") != format or meta.get("fingerprint") != fingerprint:
            log.warning("ignoring %s %s: it belongs to other settings or data", what, path)
            return None
        return meta, {k: fh.get_tensor(k) for k in fh.keys()}
