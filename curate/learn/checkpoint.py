"""Resumable training state in one file: what a killed training loop needs to continue exactly.

A checkpoint is a dict of tensors, ints and nested state dicts (weights, optimizer, EMA,
``torch.Generator`` state, losses) written atomically through
:func:`curate.workspace.atomic_write`, so a crash leaves the previous checkpoint intact, and read
back with ``torch.load(weights_only=True)``. It carries a ``key``, a digest of what makes it
reusable (config, data fingerprint, seed): a checkpoint with another key is ignored.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from curate import workspace

log = logging.getLogger(__name__)


def save_training_state(path: Path, *, key: str, step: int, state: dict[str, Any]) -> None:
    """Write ``state`` with its ``key`` and ``step`` (the number of steps or epochs done) atomically."""
    payload = {"key": key, "step": int(step), **state}
    workspace.atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_training_state(path: Path | None, *, key: str) -> dict[str, Any] | None:
    """The state at ``path`` when it exists and belongs to ``key``, else None."""
    if path is None or not Path(path).is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("key") != key:
        log.info("ignoring checkpoint %s: it belongs to another config or data", path)
        return None
    log.info("resuming at step %d from %s", state["step"], path)
    return state
