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


CPU_CHUNK = 16


def default_chunk(device: str) -> int | None:
    """Images per forward/backward pass when the caller does not say: :data:`CPU_CHUNK` on CPU, whole batches else.

    On CPU, chunks whose activations stay in cache run faster per image: a width-128 ConvNet
    on 32 px images took 1.8x less time for a forward pass over 2,560 images, and 1.5x less
    for a training step of 200, in chunks of 16 than in chunks of 256 (2-core EPYC, 32 MB
    L3). A GPU wants the whole batch.
    """
    return CPU_CHUNK if resolve_device(device) == "cpu" else None
