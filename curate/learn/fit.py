"""The one training loop: the train step, ReLabel training, the distillation evaluation
protocol and the synthetic-augmentation comparison all call :func:`fit`.

Every random draw (shuffling, augmentation, mixing) comes from one ``torch.Generator``
seeded with ``seed``, so a run on CPU repeats exactly and torch's global RNG is never
touched. Building and initializing the model is the caller's business.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from curate.errors import UsageError
from curate.learn.chunking import check_chunk
from curate.learn.data import TrainData, model_input
from curate.learn.device import resolve_device
from curate.learn.mixing import Mixer
from curate.learn.predict import predict_images

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("cosine", "step", "halfway", "constant")
TARGETS = ("hard", "soft")
STEP_MILESTONES = (0.5, 0.75)  # "step": lr x0.1 after half and after three quarters of the iterations


@dataclass(frozen=True)
class FitResult:
    """The trained model (the one passed in), per-epoch records, and the last eval accuracy if any.

    ``history`` rows: ``epoch`` (1-based), mean training ``loss``, ``lr`` at the epoch's last
    iteration, wall ``seconds`` of training, and ``eval_accuracy`` when ``eval_data`` was given.
    """

    model: nn.Module
    history: list[dict[str, float]]
    final_accuracy: float | None


def learning_rate(
    step: int, *, base_lr: float, total_steps: int, schedule: str = "cosine", warmup_steps: int = 0
) -> float:
    """The lr of iteration ``step`` (0-based): linear warmup to ``base_lr``, then the schedule.

    ``cosine`` decays from ``base_lr`` right after warmup to 0 at ``total_steps``; ``step``
    multiplies by 0.1 at each of :data:`STEP_MILESTONES` of the post-warmup iterations;
    ``halfway`` once, at half of them (the condensation papers' evaluation schedule).
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    if schedule == "step":
        return base_lr * 0.1 ** sum(progress >= m for m in STEP_MILESTONES)
    if schedule == "halfway":
        return base_lr * (0.1 if progress >= 0.5 else 1.0)
    if schedule == "constant":
        return base_lr
    raise UsageError(f"`lr_schedule` must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")


def fit(
    model: nn.Module,
    data: TrainData,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    optimizer: Literal["sgd", "adamw"] = "sgd",
    lr_schedule: Literal["cosine", "step", "halfway", "constant"] = "cosine",
    warmup_epochs: int = 0,
    targets: Literal["hard", "soft"] = "hard",
    mix: Mixer | None = None,
    seed: int = 0,
    device: str = "auto",
    eval_data: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool = True,
    channels_last: bool = False,
    micro_batch: int | None = None,
) -> FitResult:
    """Train ``model`` in place on ``data`` with cross-entropy; returns it (in eval mode) with its history.

    ``targets`` states what ``data`` yields: ``"hard"`` labels (B,) or ``"soft"`` rows (B, K).
    Soft targets, and hard ones under a mixer, use ``-(t * log_softmax(logits)).sum(1).mean()``.
    ``eval_data`` is ``(images uint8 (M, H, W, 3), labels (M,))``, scored after every epoch (about a
    fifth of the wall time of the demo's ConvNet: 932 held-out vs 2,000 training images); the progress
    bar then shows that accuracy beside the loss (:func:`progress_postfix`).
    The lr follows ``lr_schedule`` per iteration; ``momentum`` applies to SGD only.
    ``micro_batch`` runs each batch through the model in chunks of that many images and
    accumulates their gradients: the same update up to float rounding, faster on CPU (see
    :mod:`curate.learn.chunking`); refused for BatchNorm models, whose batch statistics it
    would change.
    """
    _check_options(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, lr_schedule=lr_schedule,
                   warmup_epochs=warmup_epochs, targets=targets)
    if micro_batch is not None:
        micro_batch = check_chunk(micro_batch, model, name="micro_batch")
    num_classes = _num_classes(model, data)
    if eval_data is not None:
        eval_data = _eval_arrays(eval_data)
    device = resolve_device(device)
    generator = torch.Generator().manual_seed(seed)
    model.to(device=device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    opt = _optimizer(model, optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(data) / batch_size)
    total_steps = epochs * steps_per_epoch
    schedule = dict(base_lr=lr, total_steps=total_steps, schedule=lr_schedule,
                    warmup_steps=warmup_epochs * steps_per_epoch)

    history: list[dict[str, float]] = []
    held_out = None  # the last epoch's eval accuracy, shown beside the running loss
    step = 0
    with tqdm(total=total_steps, disable=not progress, desc="fit", unit="it") as bar:
        for epoch in range(epochs):
            model.train()
            start = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            seen = 0
            for images, batch_targets in data.batches(batch_size=batch_size, generator=generator, epoch=epoch):
                y = _check_batch_targets(batch_targets, targets, num_classes).to(device, non_blocking=True)
                x = model_input(model, images, device=device, channels_last=channels_last)
                if mix is not None:
                    if y.ndim == 1:
                        y = F.one_hot(y, num_classes).to(x.dtype)
                    x, y = mix(x, y, generator)
                rate = learning_rate(step, **schedule)
                for group in opt.param_groups:
                    group["lr"] = rate
                opt.zero_grad(set_to_none=True)
                loss = _backward(model, x, y, micro_batch)
                opt.step()
                loss_sum += loss * len(x)
                seen += len(x)
                step += 1
                bar.update()
                if progress and step % 10 == 0:
                    bar.set_postfix(progress_postfix(epoch + 1, loss.item(), held_out))
            if seen == 0:
                raise UsageError(f"`data` yielded no batches in epoch {epoch + 1} (it reports {len(data)} samples)")
            record = {"epoch": epoch + 1, "loss": float(loss_sum) / seen, "lr": rate,
                      "seconds": time.perf_counter() - start}
            if eval_data is not None:
                held_out = record["eval_accuracy"] = _accuracy(
                    model, eval_data, batch_size=max(batch_size, 256), device=device, channels_last=channels_last)
            if progress:
                bar.set_postfix(progress_postfix(epoch + 1, record["loss"], held_out))
            history.append(record)
            log.info("epoch %d/%d: %s", epoch + 1, epochs,
                     ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch"))
    if channels_last:  # hand the weights back in the default layout
        model.to(memory_format=torch.contiguous_format)
    model.head_trained = True  # its head now holds weights trained for these classes
    model.eval()
    return FitResult(model=model, history=history, final_accuracy=history[-1].get("eval_accuracy"))


def progress_postfix(epoch: int, loss: float, eval_accuracy: float | None) -> dict[str, str]:
    """What the progress bar shows beside the count: epoch, loss and, once scored, the held-out accuracy.

    During an epoch ``loss`` is the last batch's and ``eval_accuracy`` the previous epoch's;
    at its end, the epoch's mean loss and its own accuracy.
    """
    postfix = {"epoch": str(epoch), "loss": f"{loss:.4f}"}
    if eval_accuracy is not None:
        postfix["eval_acc"] = f"{eval_accuracy:.2%}"
    return postfix


def _check_options(*, epochs: int, batch_size: int, lr: float, optimizer: str, lr_schedule: str,
                   warmup_epochs: int, targets: str) -> None:
    choices = {"optimizer": (optimizer, OPTIMIZERS), "lr_schedule": (lr_schedule, LR_SCHEDULES),
               "targets": (targets, TARGETS)}
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise UsageError(f"`{name}` must be one of {', '.join(allowed)}, got {value!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise UsageError(f"`{name}` must be an integer >= 1, got {value!r}")
    if not lr > 0:
        raise UsageError(f"`lr` must be > 0, got {lr!r}")
    if not isinstance(warmup_epochs, int) or not 0 <= warmup_epochs <= epochs:
        raise UsageError(f"`warmup_epochs` must be an integer in 0..epochs ({epochs}), got {warmup_epochs!r}")


def _backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor, micro_batch: int | None) -> torch.Tensor:
    """Backpropagate the batch's mean cross-entropy, in chunks of ``micro_batch``; returns the (detached) loss.

    ``F.cross_entropy`` takes int labels (B,) or probability rows (B, K): ``-(t * log_softmax).sum(1)``.
    """
    if micro_batch is None or len(x) <= micro_batch:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss.detach()
    total = x.new_zeros(())
    for xc, yc in zip(x.split(micro_batch), y.split(micro_batch)):
        part = F.cross_entropy(model(xc), yc, reduction="sum") / len(x)
        part.backward()
        total += part.detach()
    return total


def _num_classes(model: nn.Module, data: TrainData) -> int:
    if not isinstance(data, TrainData):
        raise TypeError(f"`data` must implement TrainData (e.g. ArrayData(images, labels)), got {type(data).__name__}")
    k = getattr(model, "num_classes", None)
    if k is None or not hasattr(model, "preprocess"):
        raise TypeError(f"fit needs a curate model (with `num_classes` and `preprocess`), got {type(model).__name__}")
    if data.num_classes != k:
        raise UsageError(f"the training data has {data.num_classes} classes but the model outputs {k}; "
                         f"build the model with num_classes={data.num_classes}")
    if len(data) == 0:
        raise UsageError("the training data is empty")
    return k


def _check_batch_targets(y: torch.Tensor, targets: str, num_classes: int) -> torch.Tensor:
    """Targets of one batch, checked against ``targets`` and K before they reach the loss."""
    if targets == "hard":
        if y.ndim != 1 or y.dtype.is_floating_point:
            raise UsageError(f"targets='hard' expects int64 labels (B,), but the data yielded {y.dtype} of shape "
                             f"{tuple(y.shape)}; pass targets='soft' for soft rows (B, K)")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise UsageError(f"labels must lie in 0..{num_classes - 1}, got a batch with values from "
                             f"{int(y.min())} to {int(y.max())}")
        return y.long()
    if y.ndim != 2 or not y.dtype.is_floating_point:
        raise UsageError(f"targets='soft' expects float rows (B, K), but the data yielded {y.dtype} of shape "
                         f"{tuple(y.shape)}; pass targets='hard' for labels (B,)")
    if y.shape[1] != num_classes:
        raise UsageError(f"soft targets have {y.shape[1]} columns but the model has {num_classes} classes")
    return y.float()


def _optimizer(model: nn.Module, name: str, *, lr: float, momentum: float,
               weight_decay: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _eval_arrays(eval_data: tuple[Any, Any]) -> tuple[Any, np.ndarray]:
    images, labels = eval_data
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(images):
        raise UsageError(f"`eval_data` must be (images (M, H, W, 3), labels (M,)), got {len(images)} images and "
                         f"labels of shape {labels.shape}")
    return images, labels


def _accuracy(model: nn.Module, eval_data: tuple[Any, np.ndarray], *, batch_size: int, device: str,
              channels_last: bool) -> float:
    images, labels = eval_data
    probs = predict_images(model, images, batch_size=batch_size, device=device, channels_last=channels_last)
    return float((probs.argmax(1) == labels).mean())
