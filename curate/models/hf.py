"""``hf:<hub-id-or-path>``: transformers vision backbones behind the curate model surface.

Supported model types: ResNet, ViT, DINOv2 and CLIP (vision tower). A checkpoint
with an image-classification head keeps it when its class count equals
``num_classes``; otherwise a new linear head is added. Preprocessing comes from
the checkpoint's ``preprocessor_config.json`` (mean, std, size / crop size) as a
plain-torch :class:`Preprocess`; no PIL processor runs at inference.

What the head reads (``features()``), per type: ResNet, the average-pooled last map;
ViT, the CLS token; DINOv2, the CLS token (its own classifier reads CLS + mean patch
token); CLIP, the post-layernorm CLS token through the visual projection when there
is one (its own classifier reads the mean patch token).

The saved ``cfg`` holds the transformers config and the preprocessing, so a saved
model reloads without the original checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from curate.errors import UsageError
from curate.models.base import CurateModel
from curate.models.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

logger = logging.getLogger(__name__)

# model type -> attribute of its *ForImageClassification model that holds the backbone
_BACKBONE_ATTR = {"resnet": "resnet", "vit": "vit", "dinov2": "dinov2", "clip": "vision_model",
                  "clip_vision_model": "vision_model"}
_CLIP_TYPES = ("clip", "clip_vision_model")


class HFModel(CurateModel):
    """A transformers backbone, a pooling rule and a linear head.

    ``pooling``: "avg" (CNN map), "cls", "cls+mean" (DINOv2 classifier), "mean" (patch
    tokens, CLIP classifier) or "clip" (post-layernorm CLS, then the projection if any).
    """

    def __init__(self, *, backbone: nn.Module, head: nn.Linear, pooling: str, preprocess: Preprocess,
                 class_names: list[str] | None, cfg: dict[str, Any]):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.pooling = pooling
        self.num_classes = head.out_features
        self.num_features = head.in_features
        self.class_names = class_names
        self.preprocess = preprocess
        self.cfg = cfg

    @property
    def classifier_head(self) -> nn.Linear:
        return self.head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(pixel_values=x).last_hidden_state

    def pool_features(self, features: torch.Tensor) -> torch.Tensor:
        if self.pooling == "avg":
            return features.mean(dim=(2, 3))
        if self.pooling == "cls":
            return features[:, 0]
        if self.pooling == "cls+mean":
            return torch.cat([features[:, 0], features[:, 1:].mean(dim=1)], dim=1)
        if self.pooling == "mean":
            return features[:, 1:].mean(dim=1)
        pooled = getattr(self.backbone, "vision_model", self.backbone).post_layernorm(features[:, 0])
        projection = getattr(self.backbone, "visual_projection", None)
        return projection(pooled) if projection is not None else pooled


def _where(source: str) -> str:
    """A local folder as an absolute path; anything else is taken as a Hub id."""
    path = Path(source).expanduser()
    if path.exists():
        return str(path.resolve())
    if source.startswith(("/", ".", "~")) or source.count("/") > 1:
        raise UsageError(f"model 'hf:{source}': local path {str(path)!r} does not exist")
    return source


def _load_config(source: str, config: dict[str, Any] | None) -> Any:
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if config is not None:
        model_type = config.get("model_type")
        if model_type not in CONFIG_MAPPING:
            raise UsageError(f"model 'hf:{source}': saved config has unknown model_type {model_type!r}")
        return CONFIG_MAPPING[model_type].from_dict(config)
    try:
        return AutoConfig.from_pretrained(_where(source), trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise UsageError(f"model 'hf:{source}': cannot read its config ({str(err).splitlines()[0]}); pass a "
                         "local checkpoint folder or a Hub id available offline") from err


def _preprocess_from(source: str, hf_config: Any) -> Preprocess:
    """Mean, std and input size from the checkpoint's image-processor config."""
    from transformers.image_processing_base import ImageProcessingMixin

    vision = getattr(hf_config, "vision_config", hf_config)
    fallback = getattr(vision, "image_size", 224)
    try:
        proc, _ = ImageProcessingMixin.get_image_processor_dict(_where(source))
    except OSError:
        proc = {}
    if not proc:
        logger.warning("hf:%s has no preprocessor_config.json; using ImageNet mean/std at %dpx", source, fallback)
        return Preprocess(mean=IMAGENET_MEAN, std=IMAGENET_STD, size=(fallback, fallback))
    size = proc.get("crop_size") if proc.get("do_center_crop", "crop_size" in proc) else None
    size = size or proc.get("size") or fallback
    if isinstance(size, dict):
        size = (size["height"], size["width"]) if "height" in size else size.get("shortest_edge", fallback)
    size = (size, size) if isinstance(size, int) else tuple(size)
    if not proc.get("do_normalize", True):
        return Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), size=size)
    return Preprocess(mean=tuple(proc.get("image_mean", IMAGENET_MEAN)),
                      std=tuple(proc.get("image_std", IMAGENET_STD)), size=size)


def _build(hf_config: Any, where: str | None) -> tuple[nn.Module, nn.Linear | None, Any]:
    """(backbone, the checkpoint's linear head or None, the backbone's config); loads weights from ``where``."""
    import transformers as tf

    model_type = hf_config.model_type
    if any(a.endswith("ForImageClassification") for a in hf_config.architectures or []):
        cls = tf.AutoModelForImageClassification
        net = (cls.from_pretrained(where, config=hf_config, trust_remote_code=False) if where
               else cls.from_config(hf_config))
        head = net.classifier[-1] if isinstance(net.classifier, nn.Sequential) else net.classifier
        backbone = getattr(net, _BACKBONE_ATTR[model_type])
        return backbone, head if isinstance(head, nn.Linear) else None, backbone.config
    if model_type in _CLIP_TYPES:
        vision = hf_config.vision_config if model_type == "clip" else hf_config
        if model_type == "clip":  # the projection size lives on the joint config
            vision.projection_dim = hf_config.projection_dim
        projected = model_type == "clip" or "CLIPVisionModelWithProjection" in (hf_config.architectures or [])
        cls = tf.CLIPVisionModelWithProjection if projected else tf.CLIPVisionModel
        backbone = cls.from_pretrained(where, config=vision) if where else cls._from_config(vision)
        return backbone, None, vision
    cls = tf.AutoModel
    backbone = cls.from_pretrained(where, config=hf_config, trust_remote_code=False) if where \
        else cls.from_config(hf_config)
    return backbone, None, hf_config


def _feature_dim(pooling: str, config: Any, backbone: nn.Module) -> int:
    if pooling == "avg":
        return config.hidden_sizes[-1]
    if pooling == "cls+mean":
        return 2 * config.hidden_size
    projection = getattr(backbone, "visual_projection", None)
    return projection.out_features if pooling == "clip" and projection is not None else config.hidden_size


def _class_names(hf_config: Any, num_classes: int) -> list[str] | None:
    names = [str(hf_config.id2label.get(i, "")) for i in range(num_classes)] if hf_config.id2label else []
    if not names or all(n == f"LABEL_{i}" for i, n in enumerate(names)):
        return None
    return names


def build_hf_model(source: str, *, num_classes: int, pretrained: bool, config: dict[str, Any] | None = None,
                   preprocess: dict[str, Any] | None = None) -> HFModel:
    """Registry resolver for ``hf:<source>``.

    ``pretrained``: load the checkpoint's weights (else a random init of its architecture).
    ``config`` / ``preprocess``: a transformers config dict and a :class:`Preprocess` dict that
    replace the checkpoint's (``save_model`` records both, so ``load_model`` needs no checkpoint).
    """
    hf_config = _load_config(source, config)
    model_type = hf_config.model_type
    if model_type not in _BACKBONE_ATTR:
        raise UsageError(f"model 'hf:{source}' has model_type {model_type!r}; supported: "
                         f"{', '.join(sorted(_BACKBONE_ATTR))}")
    backbone, head, backbone_config = _build(hf_config, _where(source) if pretrained else None)
    kept = head is not None and head.out_features == num_classes
    if head is not None and not kept:
        logger.info("hf:%s: replacing its %d-class head with a new %d-class head", source, head.out_features,
                    num_classes)
    cnn = model_type == "resnet"
    if kept:
        pooling = {"dinov2": "cls+mean", "clip": "mean"}.get(model_type, "avg" if cnn else "cls")
    else:
        pooling = "avg" if cnn else "clip" if model_type in _CLIP_TYPES else "cls"
        head = nn.Linear(_feature_dim(pooling, backbone_config, backbone), num_classes)
    prep = Preprocess(**{k: tuple(v) if isinstance(v, list) else v for k, v in preprocess.items()}) \
        if preprocess is not None else _preprocess_from(source, hf_config)
    model = HFModel(backbone=backbone, head=head, pooling=pooling, preprocess=prep,
                    class_names=_class_names(hf_config, num_classes) if kept else None,
                    cfg={"config": hf_config.to_dict(), "preprocess": prep.to_dict()})
    model.head_trained = pretrained and kept
    return model
