"""``distill``: run a registered condensation method on a labelled image set.

The driver owns what every method shares: the synthetic images (initialized from real
images or noise, class-major, ``ipc`` per class), their optimizer, one
``torch.Generator`` seeded with ``seed`` from which every random draw comes (networks,
real batches, DSA, inner-loop shuffles), checkpoints every ``checkpoint_every``
iterations, and a progress bar showing the current matching loss. A run resumed from a
checkpoint continues the same random stream, so on CPU it ends bit-identical to an
uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from curate.condense.base import BlockDistiller, NetworkFactory, RealImages
from curate.condense.blocks import block_timings, merge, merged_history
from curate.condense.checkpoint import FILENAME, load_block, load_checkpoint, save_block, save_checkpoint
from curate.condense.registry import DISTILL_PLUGINS, DISTILLERS, plugin_names
from curate.condense.synthetic_set import SyntheticSet
from curate.condense.teacher import describe as describe_teacher
from curate.condense.teacher import resolve_teacher, weights_digest
from curate.config import from_mapping, to_dict
from curate.errors import UsageError

log = logging.getLogger(__name__)

INITS = ("real", "noise")


def distill(
    data: Any,
    labels: np.ndarray | None = None,
    *,
    method: str,
    ipc: int,
    iterations: int,
    model: str = "convnet",
    model_config: dict[str, Any] | None = None,
    plugins: Sequence[str] = (),
    fyi: bool | None = None,
    init: Literal["real", "noise"] | None = None,
    teacher: Any = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 10,
    channels_last: bool | None = None,
    chunk: int | None = None,
    class_names: list[str] | None = None,
    split: str | None = "train",
    **options: Any,
) -> SyntheticSet:
    """Distill ``ipc`` synthetic images per class with ``method`` (a name in ``DISTILLERS``).

    ``data`` is uint8 images (N, H, W, C) with ``labels`` (N,), or a sample table (its
    ``split`` rows; labels and class names come from the table). ``options`` are the
    method's own (e.g. ``lr_img``, ``batch_real``, ``dsa``), validated strictly; those left
    out take the official defaults (some by ``ipc``). ``init`` (None: the method's official
    default, noise for ``dc`` and real images otherwise) is where the images start.
    ``plugins`` names entries of ``DISTILL_PLUGINS`` that hook every synthetic batch, in
    order; ``fyi=True`` is shorthand for listing ``"fyi"``. With ``checkpoint_dir``, the
    state is saved every ``checkpoint_every`` iterations (and at the end) and a matching
    checkpoint found there is resumed. ``channels_last`` sets the networks' memory format
    (None: the method's choice) and ``chunk`` how many images go through a network at once
    (None: 16 on CPU, 256 on a GPU, whole batches with BatchNorm); both change speed, not
    results beyond float rounding.

    Methods that recover images from a trained teacher (``sre2l``, ``cda``: see
    :mod:`curate.condense.recover`) need ``teacher``, a registry name loaded with its
    pretrained weights (``"resnet20-cifar"``) or a trained model; their images live in the
    teacher's input space (``model`` is not used), and they run as independent blocks of
    classes and IPC indices, each saved under ``checkpoint_dir`` as it finishes.
    """
    images, labels, class_names = _training_arrays(data, labels, class_names=class_names, split=split)
    cls = DISTILLERS.get(method)
    init = cls.default_init if init is None else init
    _check_options(ipc=ipc, iterations=iterations, init=init, checkpoint_every=checkpoint_every)
    if init not in cls.inits:
        raise UsageError(f"`init` {init!r} is not available for method '{method}', which starts from "
                         f"{' or '.join(cls.inits)}")
    plugin_list = plugin_names(plugins, fyi=fyi)
    config = cls.resolve(from_mapping(cls.Config, options, where=f"`{method}` option"), ipc=ipc,
                         iterations=iterations)
    num_classes = len(class_names) if class_names is not None else int(labels.max()) + 1
    _check_counts(labels, num_classes, ipc=ipc, init=init)

    from curate.learn.chunking import resolve_chunk
    from curate.learn.device import resolve_device

    device = resolve_device(device)
    hooks = [DISTILL_PLUGINS.get(name)() for name in plugin_list]
    provenance = {"method": method, "ipc": ipc, "plugins": plugin_list, "iterations": iterations, "seed": seed,
                  "init": init, "evaluation": cls.evaluation}
    if issubclass(cls, BlockDistiller):
        if teacher is None:
            raise UsageError(f"method '{method}' recovers images from a trained teacher; pass `teacher`: a registry "
                             "model with trained weights (e.g. 'resnet20-cifar') or a trained model")
        teacher = resolve_teacher(teacher, num_classes=num_classes, class_names=class_names).to(device)
        distiller = cls(config, real=None, network=None, plugins=hooks, device=device, teacher=teacher,
                        num_classes=num_classes)
        provenance.update(model=teacher.name, model_config={}, options=to_dict(config), eval_dsa=False,
                          dsa_strategy=None, teacher=describe_teacher(teacher))
        # blocks are pure functions of (block, seed): the set's IPC stays out, so a larger IPC reuses them
        block_settings = {k: v for k, v in provenance.items() if k != "ipc"}
        fingerprint = _fingerprint({**block_settings, "teacher_weights": weights_digest(teacher)}, images, labels,
                                   device=device, channels_last=False, chunk=None, per_iterations=True)
        return _recover(distiller, ipc=ipc, iterations=iterations, seed=seed, progress=progress,
                        folder=checkpoint_dir if checkpoint_every else None, fingerprint=fingerprint,
                        class_names=class_names, provenance=provenance)
    if teacher is not None:
        raise UsageError(f"method '{method}' takes no `teacher`; only {', '.join(_teacher_methods())} recover "
                         "images from one")

    channels_last = cls.channels_last if channels_last is None else channels_last
    network = NetworkFactory(model, num_classes, dict(model_config or {}), device, channels_last)
    probe = network.build(seed=0)
    preprocess = probe.preprocess
    chunk = resolve_chunk(chunk, probe, device)
    images = _sized(images, data, preprocess.size)
    real = RealImages.from_uint8(images, labels, preprocess=preprocess, num_classes=num_classes, device=device)
    distiller = cls(config, real=real, network=network, plugins=hooks, device=device, chunk=chunk)

    generator = torch.Generator().manual_seed(seed)
    syn_labels = torch.arange(num_classes).repeat_interleave(ipc)
    syn = initial_images(real, ipc=ipc, init=init, generator=generator).to(device).requires_grad_(True)
    optimizer = distiller.optimizer(syn)
    provenance.update(model=model, model_config=dict(model_config or {}), options=to_dict(config),
                      eval_dsa=distiller.dsa is not None, dsa_strategy=config.dsa_strategy)
    fingerprint = _fingerprint(provenance, images, labels, device=device, channels_last=channels_last, chunk=chunk)

    history: list[dict[str, float]] = []
    start = 0
    path = Path(checkpoint_dir) / FILENAME if checkpoint_dir is not None else None
    state = load_checkpoint(path, fingerprint=fingerprint) if path is not None else None
    if state is not None and state.iteration <= iterations:
        with torch.no_grad():
            syn.copy_(state.images)
        optimizer.load_state_dict(state.optimizer)
        generator.set_state(state.generator)
        start, history = state.iteration, list(state.history)
        log.info("resuming %s from iteration %d (%s)", method, start, path)

    on_device = syn_labels.to(device)
    with tqdm(total=iterations, initial=start, desc=f"distill {method}", unit="it", disable=not progress) as bar:
        for it in range(start, iterations):
            began = time.perf_counter()
            loss = distiller.iteration(syn, on_device, optimizer, generator, it)
            history.append({"iteration": it + 1, "loss": loss, "seconds": time.perf_counter() - began})
            bar.update()
            bar.set_postfix(loss=f"{loss:.4g}")
            done = it + 1
            if path is not None and checkpoint_every and (done % checkpoint_every == 0 or done == iterations):
                save_checkpoint(path, fingerprint=fingerprint, iteration=done, images=syn, optimizer=optimizer,
                                generator=generator, history=history)

    return SyntheticSet(images=syn.detach().cpu(), labels=syn_labels, num_classes=num_classes,
                        mean=tuple(preprocess.mean), std=tuple(preprocess.std), class_names=class_names,
                        provenance=provenance, history=history)


def _recover(distiller: BlockDistiller, *, ipc: int, iterations: int, seed: int, progress: bool,
             folder: str | Path | None, fingerprint: str, class_names: list[str] | None,
             provenance: dict[str, Any]) -> SyntheticSet:
    """Run the distiller's blocks one by one (each saved under ``folder`` as it ends, found ones reused), then merge."""
    blocks = distiller.blocks(ipc)
    total = sum(len(b.units) for b in blocks) * iterations
    results = []
    with tqdm(total=total, desc=f"recover {provenance['method']}", unit="it", disable=not progress) as bar:
        def advance(loss: float) -> None:
            bar.update()
            bar.set_postfix(loss=f"{loss:.4g}")

        for block in blocks:
            result = load_block(folder, block, fingerprint=fingerprint) if folder is not None else None
            if result is None:
                result = distiller.recover_block(block, iterations=iterations, seed=seed, on_iteration=advance)
                if folder is not None:
                    save_block(folder, result, fingerprint=fingerprint)
            else:
                log.info("block %s of %s found in %s", block.key, provenance["method"], folder)
                bar.update(len(block.units) * iterations)
            results.append(result)
    pre = distiller.teacher.preprocess
    k = distiller.num_classes
    return SyntheticSet(images=merge(results, num_classes=k, ipc=ipc), labels=torch.arange(k).repeat_interleave(ipc),
                        num_classes=k, mean=tuple(pre.mean), std=tuple(pre.std), class_names=class_names,
                        provenance=provenance, history=merged_history(results), blocks=block_timings(results))


def _teacher_methods() -> list[str]:
    return [name for name in DISTILLERS.names() if getattr(DISTILLERS.get(name), "needs_teacher", False)]


def initial_images(real: RealImages, *, ipc: int, init: str, generator: torch.Generator) -> torch.Tensor:
    """``ipc`` distinct random real images per class, or standard normal noise, class-major (K*ipc, C, H, W)."""
    if init == "real":
        return torch.cat([real.sample(c, ipc, generator) for c in range(real.num_classes)]).detach().clone()
    shape = (real.num_classes * ipc, *real.images.shape[1:])
    return torch.randn(shape, generator=generator).to(real.images.device)


def random_selection(
    data: Any,
    labels: np.ndarray | None = None,
    *,
    ipc: int,
    seed: int = 0,
    model: str = "convnet",
    model_config: dict[str, Any] | None = None,
    class_names: list[str] | None = None,
    split: str | None = "train",
) -> SyntheticSet:
    """``ipc`` random real images per class as a synthetic set (method ``random``).

    For the same ``seed`` these are exactly the images ``distill(..., init="real")`` starts from.
    """
    images, labels, class_names = _training_arrays(data, labels, class_names=class_names, split=split)
    _check_options(ipc=ipc, iterations=0, init="real", checkpoint_every=0)
    num_classes = len(class_names) if class_names is not None else int(labels.max()) + 1
    _check_counts(labels, num_classes, ipc=ipc, init="real")
    preprocess = NetworkFactory(model, num_classes, dict(model_config or {}), "cpu").build(seed=0).preprocess
    real = RealImages.from_uint8(_sized(images, data, preprocess.size), labels, preprocess=preprocess,
                                 num_classes=num_classes, device="cpu")
    generator = torch.Generator().manual_seed(seed)
    provenance = {"method": "random", "ipc": ipc, "plugins": [], "iterations": 0, "seed": seed, "init": "real",
                  "evaluation": "hard", "model": model, "model_config": dict(model_config or {}), "options": {},
                  "eval_dsa": False, "dsa_strategy": None}
    return SyntheticSet(images=initial_images(real, ipc=ipc, init="real", generator=generator),
                        labels=torch.arange(num_classes).repeat_interleave(ipc), num_classes=num_classes,
                        mean=tuple(preprocess.mean), std=tuple(preprocess.std), class_names=class_names,
                        provenance=provenance)


# --- inputs ---------------------------------------------------------------------------


def _is_table(data: Any) -> bool:
    return hasattr(data, "features") and hasattr(data, "column_names")


def _training_arrays(data: Any, labels: np.ndarray | None, *, class_names: list[str] | None,
                     split: str | None) -> tuple[Any, np.ndarray, list[str] | None]:
    """(images or the table's row positions, labels, class names) of the training rows."""
    if _is_table(data):
        if labels is not None:
            raise UsageError("pass `labels` with an image array only; a table brings its own `label` column")
        idx = np.arange(len(data))
        if split is not None and "split" in data.column_names:
            idx = np.flatnonzero(np.asarray(data["split"]) == split)
            if len(idx) == 0:
                raise UsageError(f"the table has no rows in split '{split}'")
        names = list(data.features["label"].names)
        return idx, np.asarray(data["label"])[idx], class_names or names
    images = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise UsageError(f"`images` must be uint8 (N, H, W, C) with C 1 or 3, got {images.dtype} of shape "
                         f"{images.shape}")
    if labels is None:
        raise UsageError("pass `labels` (N,) with an image array")
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise UsageError(f"`labels` must be integers of shape ({len(images)},), got {labels.dtype} of shape "
                         f"{labels.shape}")
    if len(labels) and labels.min() < 0:
        raise UsageError(f"`labels` must be >= 0, got {labels.min()}")
    if class_names is not None and len(labels) and labels.max() >= len(class_names):
        raise UsageError(f"label {labels.max()} is outside the {len(class_names)} class names")
    return images, labels.astype(np.int64), class_names


def _sized(images: Any, data: Any, size: tuple[int, int]) -> np.ndarray:
    """The image array; a table's rows are decoded here, at the model's input size."""
    if _is_table(data):
        from curate.data import decode_images

        return decode_images(data, images, size=tuple(size))
    return images


def _check_options(*, ipc: int, iterations: int, init: str, checkpoint_every: int) -> None:
    for name, value, low in (("ipc", ipc, 1), ("iterations", iterations, 0), ("checkpoint_every", checkpoint_every, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise UsageError(f"`{name}` must be an integer >= {low}, got {value!r}")
    if init not in INITS:
        raise UsageError(f"`init` must be one of {', '.join(INITS)}, got {init!r}")


def _check_counts(labels: np.ndarray, num_classes: int, *, ipc: int, init: str) -> None:
    counts = np.bincount(labels, minlength=num_classes)
    need = ipc if init == "real" else 1
    short = np.flatnonzero(counts < need)
    if len(short):
        c = int(short[0])
        raise UsageError(f"class {c} has {counts[c]} training images but distillation needs at least {need} "
                         f"per class (ipc {ipc}, init {init!r}); lower `ipc` or add images")


def _fingerprint(provenance: dict[str, Any], images: np.ndarray, labels: np.ndarray, *, device: str,
                 channels_last: bool, chunk: int | None, per_iterations: bool = False) -> str:
    """What a checkpoint must match to be resumed: settings and data; the iteration count only with
    ``per_iterations`` (a schedule that spans the run, e.g. a cosine lr, makes a shorter run no prefix)."""
    h = hashlib.sha256()
    settings = {k: v for k, v in provenance.items() if per_iterations or k != "iterations"}
    run = {"device": device.split(":")[0], "channels_last": channels_last, "chunk": chunk}
    h.update(json.dumps({**settings, **run}, sort_keys=True, default=str).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()
