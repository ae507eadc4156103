"""The machine annotator: a classifier run fully convolutionally, written out as top-k label maps.

An annotator is a batch function (``setup()`` then ``__call__(batch) -> dict of arrays``,
see :mod:`curate.learn.batchfn`) registered in :data:`ANNOTATORS`, so the local and the
Ray executor run the same object. :func:`annotate` runs one over a table's rows shard by
shard and writes the label-map folder of :mod:`curate.relabel.storage`; finished shards
are kept across interruptions and never recomputed.

``dense_classifier`` (the default) applies the classifier head at every location of
``forward_features`` (:func:`dense_logits`): ReLabel's 1x1 convolution, which exists only
for a head over a globally pooled feature (CNNs with average pooling, ViTs). A head over
the flattened map (the ConvNet) has a weight per position, so it is refused rather than
approximated. Its output per image: ``scores`` float16 and
``classes`` uint16 (k, h, w), the top-k logits of each location; ``global_probs`` (K,),
the softmax of the model's own logits (the "soft" global target); ``label_scores`` (K,),
each class's share of the image (:func:`curate.relabel.maps.area_scores`), the pooled
score that global multi-labels threshold.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from curate.errors import UsageError
from curate.learn.batchfn import ModelBatchFn, ModelSource
from curate.learn.data import as_tensor
from curate.registry import Registry
from curate.relabel.maps import area_scores, topk_maps
from curate.relabel.storage import LabelMapInfo, shard_header, shard_name, write_index, write_shard

if TYPE_CHECKING:  # pragma: no cover
    import datasets

log = logging.getLogger(__name__)

ANNOTATORS: Registry[Callable[..., Any]] = Registry("annotator", entry_point_group="curate.annotators")


def dense_logits(model: nn.Module, features: torch.Tensor, *, input_size: tuple[int, int]) -> torch.Tensor:
    """Class scores (B, K, h, w) of the classifier head at every location of ``features``.

    Per model kind (a model may also define its own ``dense_logits(features)``):

    - map (B, C, h, w) and a head over C (global average pooling): the head as a 1x1
      convolution, ``L[:, y, x] = W F[:, y, x] + b``;
    - ViT tokens (B, L, D): the head over each patch token (DINOv2's CLS + mean-patch head
      as CLS part + that token; CLIP's layernorm and projection first), on the grid of
      ``input_size`` / patch size.

    With average pooling and the mean-patch heads the spatial mean equals the model's logits.
    A head over the flattened map (ConvNet) is refused: splitting its position-specific
    weights into per-location logits is not a classifier applied at each location.
    """
    own = getattr(model, "dense_logits", None)
    if callable(own):
        return own(features)
    head = model.classifier_head
    if features.ndim == 4:
        _, c, h, w = features.shape
        if head.in_features != c:
            raise UsageError(f"model '{getattr(model, 'name', '?')}' has a head over {head.in_features} features of "
                             f"its {c}x{h}x{w} feature map (a flattened map: a weight per position), so it has no "
                             "classifier to apply at each location as ReLabel's 1x1 convolution; annotate with a "
                             "globally pooled model (e.g. resnet20-cifar, resnet56-cifar or a ViT)")
        out = torch.einsum("bchw,kc->bkhw", features, head.weight)
        return out + head.bias.view(1, -1, 1, 1) if head.bias is not None else out
    if features.ndim == 3:
        return _token_logits(model, features, input_size)
    raise UsageError(f"`forward_features` gave shape {tuple(features.shape)}; expected a map (B, C, h, w) "
                     "or tokens (B, L, D)")


def _token_logits(model: nn.Module, tokens: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
    config = getattr(getattr(model, "backbone", None), "config", None)
    patch = getattr(config, "patch_size", None)
    pooling = getattr(model, "pooling", None)
    if patch is None or pooling is None:
        raise UsageError(f"model '{getattr(model, 'name', '?')}' returns tokens but no patch size and pooling; "
                         "give it a `dense_logits(features)` method to annotate with it")
    patch = patch if isinstance(patch, int) else patch[0]
    gh, gw = input_size[0] // patch, input_size[1] // patch
    patches = tokens[:, -gh * gw:]
    head = model.classifier_head
    if pooling == "cls+mean":
        d = tokens.shape[-1]
        out = patches @ head.weight[:, d:].T + (tokens[:, 0] @ head.weight[:, :d].T)[:, None]
        out = out + head.bias if head.bias is not None else out
    elif pooling == "clip":
        vision = getattr(model.backbone, "vision_model", model.backbone)
        x = vision.post_layernorm(patches)
        projection = getattr(model.backbone, "visual_projection", None)
        out = head(projection(x) if projection is not None else x)
    else:
        out = head(patches)
    return out.transpose(1, 2).reshape(len(tokens), -1, gh, gw)


def _square(resolution: int | Sequence[int] | None) -> tuple[int, int] | None:
    if resolution is None:
        return None
    size = (int(resolution), int(resolution)) if isinstance(resolution, (int, np.integer)) else tuple(resolution)
    if len(size) != 2 or min(size) < 1:
        raise UsageError(f"`resolution` must be a size >= 1 or (height, width), got {resolution!r}")
    return size


@ANNOTATORS.register("dense_classifier")
class DenseClassifier(ModelBatchFn):
    """Any registry classifier, run fully convolutionally at ``resolution`` (default: its own input size).

    ``{"image": uint8 (B, H, W, 3)}`` -> ``scores`` float16 (B, k, h, w), ``classes`` uint16
    (B, k, h, w), ``global_probs`` and ``label_scores`` float32 (B, K). Images are resized
    whole (no centre crop), so box fractions of the image are box fractions of the map.
    """

    def __init__(self, model: ModelSource, *, resolution: int | Sequence[int] | None = None, top_k: int = 5,
                 device: str = "auto", channels_last: bool | None = None):
        super().__init__(model, device=device, channels_last=channels_last)
        if not isinstance(top_k, int) or top_k < 1:
            raise UsageError(f"`top_k` must be an integer >= 1, got {top_k!r}")
        self.resolution = _square(resolution)
        self.top_k = top_k

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) the images are resized to; decoders may resize to it already."""
        if self.resolution is not None:
            return self.resolution
        model = self.model if self.model is not None else self.source
        if not isinstance(model, nn.Module):
            raise UsageError("pass `resolution` when the annotator's model comes from a factory")
        return tuple(model.preprocess.size)

    def setup(self) -> None:
        if self.model is None:  # executors call setup once per shard; load once
            super().setup()
            self._preprocess = dataclasses.replace(self.model.preprocess, size=self.size)

    def describe(self) -> dict[str, Any]:
        model = self.model if self.model is not None else self.source
        return {"name": "dense_classifier", "model": getattr(model, "name", None), "resolution": list(self.size),
                "top_k": self.top_k}

    @torch.inference_mode()
    def __call__(self, batch: dict) -> dict[str, np.ndarray]:
        if self.model is None:
            raise RuntimeError("DenseClassifier.setup() must run before the first batch")
        x = self._preprocess(as_tensor(batch["image"]).to(self._device, non_blocking=True))
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        features = self.model.forward_features(x)
        maps = dense_logits(self.model, features, input_size=self.size).float()
        top = topk_maps(maps, self.top_k)
        return {
            "scores": top.scores.cpu().numpy(),
            "classes": top.classes.to(torch.int32).cpu().numpy().astype(np.uint16),
            "global_probs": self.model.forward_head(features).float().softmax(1).cpu().numpy(),
            "label_scores": area_scores(maps).cpu().numpy(),
        }


def create_annotator(name: str, model: ModelSource, **options: Any):
    """The registered annotator ``name`` over ``model``, built with ``options``."""
    return ANNOTATORS.get(name)(model, **options)


@dataclass(frozen=True)
class Annotation:
    """What :func:`annotate` did: rows annotated, shards computed and reused, and the throughput."""

    folder: Path
    rows: int
    shards: int
    computed: int
    reused: int
    seconds: float
    images_per_s: float | None
    index_sha256: str


def annotate(
    annotator: Any,
    table: "datasets.Dataset",
    folder: str | Path,
    *,
    indices: Sequence[int] | np.ndarray | None = None,
    shard_size: int = 4096,
    batch_size: int = 256,
    signature: str = "",
    class_names: Sequence[str] | None = None,
    executor: Callable[..., dict[str, np.ndarray]] | None = None,
    progress: bool = True,
) -> Annotation:
    """Annotate the table's rows ``indices`` (all by default) into the label-map ``folder``.

    Rows go in shards of ``shard_size``; a shard already in ``folder`` with the same ids and
    ``signature`` (a digest of everything that determines the maps: model, weights,
    resolution, k) is kept, others are recomputed. ``executor`` has the signature of
    :func:`curate.execute.local.run_batches` (the default); one that streams shards (``iter_shards``, the
    Ray executor) runs every pending shard in one job. Writes ``index.json`` last.
    """
    from curate.data.table import column
    from curate.execute.local import run_batches

    if shard_size < 1:
        raise UsageError(f"`shard_size` must be >= 1, got {shard_size}")
    executor = executor or run_batches
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = np.arange(len(table)) if indices is None else np.asarray(indices, dtype=np.int64)
    if len(rows) == 0:
        raise UsageError("nothing to annotate: the selection has 0 rows")
    ids = column(table, "id").take(rows).to_pylist()
    starts = range(0, len(rows), shard_size)
    shards: list[dict[str, Any]] = [{"file": shard_name(number), "ids": ids[start:start + shard_size]}
                                    for number, start in enumerate(starts)]
    pending = []
    for number, start in enumerate(starts):
        header = shard_header(folder / shards[number]["file"])
        if header is not None and header["ids"] == shards[number]["ids"] and header["signature"] == signature:
            shards[number]["sha256"] = header["sha256"]
        else:
            pending.append((number, rows[start:start + shard_size]))
    computed_rows = sum(len(part) for _, part in pending)
    began = time.perf_counter()
    with tqdm(total=len(rows), disable=not progress, unit="img", desc="annotate") as bar:
        bar.update(len(rows) - computed_rows)
        for number, out in _run_shards(executor, annotator, table, pending, batch_size=batch_size):
            shards[number]["sha256"] = write_shard(folder / shards[number]["file"], ids=shards[number]["ids"],
                                                   arrays=out, signature=signature)
            bar.update(len(shards[number]["ids"]))
    compute_seconds = time.perf_counter() - began
    computed, reused = len(pending), len(shards) - len(pending)
    shape = _shard_shape(folder / shards[0]["file"])
    _remove_stale_shards(folder, len(shards))
    info = LabelMapInfo(num_classes=shape["num_classes"], top_k=shape["top_k"], height=shape["height"],
                        width=shape["width"], class_names=list(class_names) if class_names is not None else None,
                        annotator=annotator.describe() if hasattr(annotator, "describe") else {},
                        signature=signature)
    index_sha = write_index(folder, info, shards)
    rate = computed_rows / compute_seconds if computed_rows and compute_seconds > 0 else None
    if rate is not None:
        log.info("label maps: %d images annotated at %.1f images/s (%d shards reused)", computed_rows, rate, reused)
    return Annotation(folder, len(rows), len(shards), computed, reused, compute_seconds, rate, index_sha)


def _run_shards(executor: Callable[..., dict[str, np.ndarray]], annotator: Any, table: "datasets.Dataset",
                pending: list[tuple[int, np.ndarray]], *, batch_size: int):
    """``(number, outputs)`` of each pending shard as it finishes: all in one job when the executor streams
    shards (``iter_shards``, e.g. Ray: one pool, the model loaded once per worker), else a call per shard."""
    stream = getattr(executor, "iter_shards", None)
    if stream is not None:
        yield from stream(annotator, table, pending, batch_size=batch_size, size=annotator.size, progress=False)
        return
    for number, rows in pending:
        yield number, executor(annotator, table, batch_size=batch_size, indices=rows, size=annotator.size,
                               progress=False)


def _shard_shape(path: Path) -> dict[str, int]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        _, k, h, w = f.get_slice("scores").get_shape()
        num_classes = f.get_slice("global_probs").get_shape()[1]
    return {"top_k": k, "height": h, "width": w, "num_classes": num_classes}


def _remove_stale_shards(folder: Path, count: int) -> None:
    """Shards numbered beyond this annotation (left by an earlier, larger one) are not part of it."""
    for path in folder.glob("shard-*.safetensors"):
        number = path.name[len("shard-"):-len(".safetensors")]
        if number.isdigit() and int(number) >= count:
            path.unlink()
