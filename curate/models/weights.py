"""Reading weight files safely and loading them strictly, with errors that name the keys.

Only two formats are read: safetensors, and PyTorch pickles (``.pt/.th/.pth``)
through ``torch.load(weights_only=True)``, which refuses arbitrary objects.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from curate.errors import UsageError

logger = logging.getLogger(__name__)

TORCH_SUFFIXES = (".pt", ".th", ".pth")
_MAX_KEYS_SHOWN = 8


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or ``.pt/.th/.pth`` file, on CPU.

    A ``{"state_dict": ...}`` wrapper is unwrapped and a DataParallel ``module.``
    prefix stripped, as in checkpoints saved by common training scripts.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"weights file {str(path)!r} does not exist; pass a .safetensors or .pt/.th/.pth file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    elif suffix in TORCH_SUFFIXES:
        try:
            with warnings.catch_warnings():  # torch's pickle-protocol notice says nothing a user can act on
                warnings.simplefilter("ignore", UserWarning)
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises UnpicklingError, RuntimeError... for unsafe or broken files
            # torch's message goes on to suggest weights_only=False; curate never unpickles arbitrary objects
            raise UsageError(f"weights file {str(path)!r} is refused: it holds more than tensors (or is broken), "
                             "and curate loads torch files only with torch.load(weights_only=True); save its "
                             "state_dict as .safetensors where you trust the file") from err
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    else:
        raise UsageError(f"weights file {str(path)!r} has suffix {suffix!r}; "
                         f"expected .safetensors or one of {', '.join(TORCH_SUFFIXES)}")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"weights file {str(path)!r} does not hold a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
    return shown + (f" (+{len(keys) - _MAX_KEYS_SHOWN} more)" if len(keys) > _MAX_KEYS_SHOWN else "")


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load the file at ``path`` into ``model`` strictly (see :func:`load_state`)."""
    load_state(model, read_state_dict(path), source=path)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], *, source: str | Path,
               skip_prefix: str | None = None) -> None:
    """Load ``state`` strictly: every key present, none extra, same shapes; errors name ``source``.

    Keys under ``skip_prefix`` (a head being replaced) are neither loaded nor required.
    ``num_batches_tracked`` buffers may be absent: BatchNorm fills them in itself.
    """
    own = model.state_dict()

    def kept(key: str) -> bool:
        return not (skip_prefix and key.startswith(skip_prefix))

    state = {k: v for k, v in state.items() if kept(k)}
    missing = sorted(k for k in own if kept(k) and k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in own)
    wrong_shape = sorted(f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
                         for k, v in state.items() if k in own and v.shape != own[k].shape)
    problems = [f"{label}: {_listing(keys)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected),
                 ("shape mismatch (file vs model)", wrong_shape)) if keys]
    if problems:
        raise UsageError(f"weights file {str(source)!r} does not match the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=skip_prefix is None)
    logger.debug("loaded %d tensors from %s", len(state), source)
