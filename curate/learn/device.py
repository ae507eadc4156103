"""Which torch device a run uses: one rule for every step, training and batch function."""

from __future__ import annotations

import torch

from curate.errors import UsageError


def resolve_device(device: str) -> str:
    """``"auto"`` becomes ``"cuda"`` when a GPU is visible, else ``"cpu"``; ``"cuda"`` without one is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise UsageError(f"`device` must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if not torch.cuda.is_available():
        raise UsageError(f"`device` is {device!r} but no CUDA GPU is visible; use device 'auto' or 'cpu'")
    if index and int(index) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise UsageError(f"`device` is {device!r} but only {count} CUDA GPU(s) are visible; "
                         f"use 'cuda:0' to 'cuda:{count - 1}'")
    return device
