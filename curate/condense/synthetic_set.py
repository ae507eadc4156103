"""The distilled set: float images kept as tensors, their labels, and where they came from.

Synthetic images live in the normalized input space of the network they were distilled
with, ``(pixels - mean) / std`` with ``pixels`` in [0, 1]; they are never clipped or
quantized during distillation. :meth:`SyntheticSet.to_uint8` is the lossy export for tables,
grids and the Hub; :func:`curate.condense.evaluate` trains on the floats.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from curate.errors import UsageError

FORMAT = "curate.synthetic_set/1"


@dataclass(frozen=True)
class SyntheticSet:
    """``images`` float32 (N, C, H, W) in the space of ``mean``/``std``; ``labels`` int64 (N,), class-major.

    ``provenance`` records method, ipc, plugins, iterations, seed, init, model and the resolved
    method options (and ``eval_dsa``/``dsa_strategy``: the evaluation protocol the method
    calls for); ``history`` has one row per outer iteration: ``iteration``, ``loss``, ``seconds``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or not self.images.dtype.is_floating_point:
            raise UsageError(f"synthetic `images` must be float (N, C, H, W), got {self.images.dtype} "
                             f"of shape {tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images),):
            raise UsageError(f"synthetic `labels` must have shape ({len(self.images)},), "
                             f"got {tuple(self.labels.shape)}")
        if len(self.mean) != self.images.shape[1] or len(self.std) != self.images.shape[1]:
            raise UsageError(f"`mean`/`std` need {self.images.shape[1]} channels, got {len(self.mean)}/{len(self.std)}")

    def __len__(self) -> int:
        return len(self.images)

    def pixels(self) -> torch.Tensor:
        """The images in pixel units (N, C, H, W), nominally [0, 1] but not clipped."""
        c = len(self.mean)
        mean = torch.tensor(self.mean, dtype=self.images.dtype, device=self.images.device).view(1, c, 1, 1)
        std = torch.tensor(self.std, dtype=self.images.dtype, device=self.images.device).view(1, c, 1, 1)
        return self.images.detach() * std + mean

    def to_uint8(self) -> np.ndarray:
        """uint8 (N, H, W, C) images: clipped to [0, 1] and rounded (the export form)."""
        x = self.pixels().clamp(0, 1).mul(255).round().to(torch.uint8)
        return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()

    def model_input(self, mean: tuple[float, ...], std: tuple[float, ...], size: tuple[int, int]) -> torch.Tensor:
        """The floats re-expressed in another model's input space (its normalization and size)."""
        if len(mean) != len(self.mean):
            raise UsageError(f"the synthetic images have {len(self.mean)} channels but the model expects {len(mean)}")
        x = self.pixels()
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
        c = len(mean)
        m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
        s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
        return (x - m) / s

    # --- persistence: one safetensors file, metadata as JSON ---------------------------

    def save(self, path: str | Path) -> None:
        """Write the set to ``path`` (plain write: wrap in ``curate.workspace.atomic_write``)."""
        from safetensors.torch import save_file

        # Wall-clock seconds stay out (history.json has them): the file holds only what the data and
        # settings determine, so a resumed run writes the same bytes and downstream cache keys hold.
        history = [{k: v for k, v in row.items() if k != "seconds"} for row in self.history]
        meta = {"format": FORMAT, "num_classes": self.num_classes, "mean": list(self.mean), "std": list(self.std),
                "class_names": self.class_names, "provenance": self.provenance, "history": history}
        tensors = {"images": self.images.detach().float().cpu().contiguous(),
                   "labels": self.labels.detach().long().cpu().contiguous()}
        save_file(tensors, str(path), metadata={"curate": json.dumps(meta, default=str)})

    @classmethod
    def load(cls, path: str | Path) -> "SyntheticSet":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no synthetic set at {path}")
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get("curate")
            meta = json.loads(raw) if raw else {}
            if meta.get("format") != FORMAT:
                raise UsageError(f"{path} is not a curate synthetic set (format {meta.get('format')!r}, "
                                 f"expected {FORMAT!r})")
            images, labels = fh.get_tensor("images"), fh.get_tensor("labels")
        return cls(images=images, labels=labels, num_classes=int(meta["num_classes"]), mean=tuple(meta["mean"]),
                   std=tuple(meta["std"]), class_names=meta.get("class_names"), provenance=meta.get("provenance", {}),
                   history=meta.get("history", []))
