"""Relabel: the teacher's soft labels for exactly the views a student trains on.

SRe2L's third phase trains a student on the distilled images with the teacher's soft
labels of each augmented view, with ``KL(softmax(t / T) || softmax(s / T))``
(``KLDivLoss(batchmean)``, no T^2 factor; :func:`kd_loss`). Two ways, both
:class:`curate.learn.TrainData` for :func:`curate.learn.fit` (``targets="soft"``,
``temperature=T``), the one training loop:

- on the fly (the default; ``relabel_cifar.py``): :class:`TeacherViews` draws each batch's
  views and runs the teacher on them;
- stored, FKD-style (``relabel/generate_soft_label.py``): :func:`record_soft_labels` fixes
  every epoch's order, crop boxes, flips and mix parameters and keeps the teacher's logits
  as fp16 (:class:`SoftLabels`, saved as safetensors); :class:`ReplayData` replays them bit
  for bit, so every student (and every run) sees the same views and labels. Training must
  then use the recorded batch size and at most the recorded epochs.

Without a teacher, :class:`TeacherViews` yields the images' own labels mixed as the views
are (the control that tells what the images carry from what the teacher's labels add).
The student's recipe and the views are :mod:`curate.condense.kd`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from curate.condense.synthetic_set import normalized
from curate.condense.kd import ViewDraw, Views
from curate.config import to_dict
from curate.errors import UsageError
from curate.models.preprocess import Preprocess

FORMAT = "curate.soft_labels/1"


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """``KL(softmax(t / T) || softmax(s / T))`` averaged over the batch (``KLDivLoss(reduction="batchmean")``)."""
    return F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.softmax(teacher_logits / temperature, dim=1), reduction="batchmean")


class TeacherViews:
    """uint8 images (N, H, W, C) seen through ``views``; targets: the teacher's ``softmax(logits / T)`` of each view,
    or without a teacher the mixed one-hot labels. Yields student input (normalized by ``student``) and soft rows.
    The teacher is put in eval mode: its BatchNorm layers use, and never update, their running statistics."""

    def __init__(self, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, *, num_classes: int,
                 views: Views, student: Preprocess, teacher: nn.Module | None = None, temperature: float = 1.0,
                 device: str = "cpu"):
        from curate.learn.data import as_tensor

        self.images = as_tensor(images)
        self.labels = as_tensor(labels).long()
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise UsageError(f"`images` must be uint8 (N, H, W, C), got {self.images.dtype} of shape "
                             f"{tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images),):
            raise UsageError(f"`labels` must have shape ({len(self.images)},), got {tuple(self.labels.shape)}")
        self.num_classes = num_classes
        self.views = views
        self.student = student
        self.teacher = teacher.eval() if teacher is not None else None
        self.temperature = temperature
        self.device = device

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.images.shape[1:3])

    def __len__(self) -> int:
        return len(self.images)

    def plan(self, *, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ViewDraw]]:
        """One epoch: a shuffled order, and each batch's views drawn as its turn comes (rows, draw)."""
        order = torch.randperm(len(self), generator=generator)
        for rows in order.split(batch_size):
            yield rows, self.views.draw(len(rows), self.size, generator)

    def view(self, rows: torch.Tensor, draw: ViewDraw) -> torch.Tensor:
        """The pixels (B, C, H, W) of rows ``rows`` under ``draw``, on the device."""
        return self.views.apply(self.images[rows], draw).to(self.device)

    @torch.no_grad()
    def teacher_logits(self, pixels: torch.Tensor) -> torch.Tensor:
        pre = self.teacher.preprocess
        return self.teacher(normalized(pixels, mean=pre.mean, std=pre.std, size=pre.size)).float()

    def student_input(self, pixels: torch.Tensor) -> torch.Tensor:
        pre = self.student
        return normalized(pixels, mean=pre.mean, std=pre.std, size=pre.size)

    def soft(self, logits: torch.Tensor) -> torch.Tensor:
        return F.softmax(logits.float() / self.temperature, dim=1)

    def targets(self, rows: torch.Tensor, draw: ViewDraw, pixels: torch.Tensor) -> torch.Tensor:
        if self.teacher is None:
            return self.views.mix_labels(self.labels[rows], draw, num_classes=self.num_classes)
        return self.soft(self.teacher_logits(pixels))

    def batches(self, *, batch_size: int, generator: torch.Generator,
                epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for rows, draw in self.plan(batch_size=batch_size, generator=generator):
            pixels = self.view(rows, draw)
            yield self.student_input(pixels), self.targets(rows, draw, pixels)


@dataclass(frozen=True)
class SoftLabels:
    """An FKD record: for each epoch e and position p (batch b = p // batch_size), the row ``order[e, p]``, its crop
    and flip, its mix partner (``perm``, local to the batch), the batch's ``lam`` and ``box``, and the teacher's
    fp16 ``logits`` of that view."""

    batch_size: int
    views: dict[str, Any]
    order: torch.Tensor   # (E, N) int64
    crop: torch.Tensor    # (E, N, 2 or 4) int64
    flip: torch.Tensor    # (E, N) bool
    perm: torch.Tensor    # (E, N) int64
    lam: torch.Tensor     # (E, batches) float64
    box: torch.Tensor     # (E, batches, 4) int64
    logits: torch.Tensor  # (E, N, K) float16
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return self.order.shape[0]

    def batch(self, epoch: int, b: int) -> tuple[torch.Tensor, ViewDraw, torch.Tensor]:
        """(rows, draw, fp16 logits) of batch ``b`` of ``epoch``."""
        lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, self.order.shape[1])
        draw = ViewDraw(self.crop[epoch, lo:hi], self.flip[epoch, lo:hi], self.perm[epoch, lo:hi],
                        float(self.lam[epoch, b]), tuple(int(v) for v in self.box[epoch, b]))
        return self.order[epoch, lo:hi], draw, self.logits[epoch, lo:hi]

    def save(self, path: str | Path) -> None:
        """Write to ``path`` (plain write: wrap in ``curate.workspace.atomic_write``)."""
        from safetensors.torch import save_file

        names = ("order", "crop", "flip", "perm", "lam", "box", "logits")
        tensors = {n: getattr(self, n).contiguous() for n in names}
        tensors["flip"] = tensors["flip"].to(torch.uint8)
        meta = {"format": FORMAT, "batch_size": self.batch_size, "views": self.views, "provenance": self.provenance}
        save_file(tensors, str(path), metadata={"curate": json.dumps(meta, default=str)})

    @classmethod
    def load(cls, path: str | Path) -> "SoftLabels":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {}).get("curate", "{}"))
            if meta.get("format") != FORMAT:
                raise UsageError(f"{path} is not a curate soft-label record (format {meta.get('format')!r})")
            t = {k: fh.get_tensor(k) for k in fh.keys()}
        return cls(batch_size=int(meta["batch_size"]), views=meta["views"], order=t["order"], crop=t["crop"],
                   flip=t["flip"].bool(), perm=t["perm"], lam=t["lam"], box=t["box"], logits=t["logits"],
                   provenance=meta.get("provenance", {}))


def record_soft_labels(data: TeacherViews, *, epochs: int, batch_size: int, seed: int,
                       provenance: dict[str, Any] | None = None) -> SoftLabels:
    """Fix ``epochs`` epochs of views of ``data`` and the teacher's fp16 logits on them.

    The draws come from a generator seeded ``seed`` in the order ``fit(data, seed=seed)``
    would make them, so the record shows exactly the views an on-the-fly run with that seed sees.
    """
    if data.teacher is None:
        raise UsageError("recording soft labels needs a teacher")
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, list] = {k: [] for k in ("order", "crop", "flip", "perm", "lam", "box", "logits")}
    for _ in range(epochs):
        epoch: dict[str, list] = {k: [] for k in parts}
        for rows, draw in data.plan(batch_size=batch_size, generator=generator):
            epoch["order"].append(rows)
            epoch["crop"].append(draw.crop.long())
            epoch["flip"].append(draw.flip.bool())
            epoch["perm"].append(draw.perm.long())
            epoch["lam"].append(torch.tensor(draw.lam, dtype=torch.float64))
            epoch["box"].append(torch.tensor(draw.box, dtype=torch.int64))
            epoch["logits"].append(data.teacher_logits(data.view(rows, draw)).half().cpu())
        for k in parts:
            parts[k].append(torch.stack(epoch[k]) if k in ("lam", "box") else torch.cat(epoch[k]))
    stacked = {k: torch.stack(v) for k, v in parts.items()}
    return SoftLabels(batch_size=batch_size, views=to_dict(data.views), provenance=dict(provenance or {}), **stacked)


class ReplayData:
    """A :class:`curate.learn.TrainData` that replays a :class:`SoftLabels` record through ``data``'s images and
    student preprocessing: the recorded order and views, and ``softmax(logits / T)`` of the stored logits."""

    def __init__(self, data: TeacherViews, record: SoftLabels):
        if record.order.shape[1] != len(data):
            raise UsageError(f"the soft-label record covers {record.order.shape[1]} images but the set has {len(data)}")
        if record.views != to_dict(data.views):
            raise UsageError(f"the soft-label record was made with views {record.views}, not {to_dict(data.views)}")
        self.data = data
        self.record = record
        self.num_classes = data.num_classes

    def __len__(self) -> int:
        return len(self.data)

    def batches(self, *, batch_size: int, generator: torch.Generator,
                epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        r = self.record
        if batch_size != r.batch_size:
            raise UsageError(f"the soft labels were recorded with batch size {r.batch_size}; train with that batch "
                             f"size, not {batch_size}")
        if epoch >= r.epochs:
            raise UsageError(f"the soft labels cover {r.epochs} epochs; train at most that many (epoch {epoch + 1} "
                             "was asked for)")
        for b in range(-(-len(self) // batch_size)):
            rows, draw, logits = r.batch(epoch, b)
            yield self.data.student_input(self.data.view(rows, draw)), self.data.soft(logits.to(self.data.device))


def record_set(synthetic: Any, *, teacher: nn.Module, kd: Any, seed: int, device: str = "cpu") -> SoftLabels:
    """FKD-style soft labels of a distilled set's saved images: ``kd.epochs`` epochs of ``kd.views`` at
    ``kd.batch_size`` with ``teacher``'s fp16 logits (any student replays them; its own normalization applies)."""
    data = TeacherViews(synthetic.to_uint8(), synthetic.labels, num_classes=synthetic.num_classes, views=kd.views,
                        student=teacher.preprocess, teacher=teacher, temperature=kd.temperature, device=device)
    return record_soft_labels(data, epochs=kd.epochs, batch_size=kd.batch_size, seed=seed,
                              provenance={"teacher": getattr(teacher, "name", None), "seed": seed,
                                          "method": synthetic.provenance.get("method")})
