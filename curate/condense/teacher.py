"""The teacher of SRe2L/CDA recovery and of the KD evaluation protocol: a trained classifier, frozen.

SRe2L's *squeeze* phase is a classifier trained on the real data; here it is a registry
model with trained weights (``"resnet20-cifar"`` loads its bundled CIFAR-10 weights) or a
model object, e.g. a `train` step's. It is put in eval mode (BatchNorm running statistics
frozen) with gradients off, and refused when its head was never trained for these classes:
the images recovered from it and its soft labels would be noise.
"""

from __future__ import annotations

import hashlib
from typing import Any

from torch import nn

from curate.errors import UsageError


def resolve_teacher(teacher: nn.Module | str, *, num_classes: int, class_names: list[str] | None = None
                    ) -> nn.Module:
    """The teacher, frozen: a registry name is built with its default (pretrained) weights; a module is used as is."""
    if isinstance(teacher, str):
        from curate.models import create_model

        model = create_model(teacher, num_classes=num_classes, weights="default", class_names=class_names)
    elif isinstance(teacher, nn.Module):
        model = teacher
    else:
        raise UsageError(f"`teacher` must be a registry model name (e.g. 'resnet20-cifar') or a model, "
                         f"got {type(teacher).__name__}")
    name = getattr(model, "name", type(model).__name__)
    if getattr(model, "num_classes", num_classes) != num_classes:
        raise UsageError(f"the teacher '{name}' predicts {model.num_classes} classes but the data has {num_classes}; "
                         "use a teacher trained on these classes")
    names = getattr(model, "class_names", None)
    if class_names is not None and names is not None and list(names) != list(class_names):
        raise UsageError(f"the teacher '{name}' predicts classes {list(names)[:3]}... but the data's classes are "
                         f"{list(class_names)[:3]}...; use a teacher trained on these classes")
    if not getattr(model, "head_trained", True):
        raise UsageError(f"the teacher '{name}' has an untrained head for these classes, so the images recovered "
                         "from it and its soft labels would be noise; use trained weights (a `train` step's model, "
                         "or a registry model whose bundled weights cover these classes)")
    return model.eval().requires_grad_(False)


def weights_digest(model: nn.Module) -> str:
    """sha256 of the model's state (names, shapes and bytes): what a checkpoint of a recovery depends on."""
    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(str(tuple(value.shape)).encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def describe(model: nn.Module) -> dict[str, Any]:
    """What provenance records of a teacher: its registry name and a short digest of its weights."""
    return {"name": getattr(model, "name", type(model).__name__), "weights_sha256": weights_digest(model)[:16]}
