"""Models by registry name: ``create_model("resnet20-cifar")``, ``create_model("hf:facebook/dinov2-small")``.

Every model shares one surface (:class:`CurateModel`): ``forward(x) -> logits (N, K)``,
``forward_features(x)`` (map (N, C, h, w) or ViT tokens (N, L, D)),
``forward_head(features)``, ``features(x) -> embeddings (N, D)``, plus ``num_classes``,
``num_features``, ``class_names``, ``name``, ``cfg`` and a plain-torch ``preprocess``.
Saved models are ``config.json`` + ``weights.safetensors``; other weight files load
only as safetensors or through ``torch.load(weights_only=True)``.
"""

from curate.models.base import CurateModel
from curate.models.preprocess import Preprocess
from curate.models.registry import MODELS, create_model, list_models, load_model, save_model

__all__ = ["MODELS", "CurateModel", "Preprocess", "create_model", "list_models", "load_model", "save_model"]
