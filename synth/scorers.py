"""The classifiers around a synth run, named and fingerprinted: the one that guides, the one that filters.

A sample pushed up a classifier's gradient passes that classifier's own filter, so a filter equal to
the guide inflates the kept count, the rows' ``filter_confidence``, accuracy and ``mean_target_prob``. The filter
(which keeps samples and scores them) must therefore be a classifier that did not guide. Each role is
a :class:`Scorer`: a name for provenance and metrics, a digest of its weights, and
``classify(uint8 images) -> pred_probs``. Two roles are one classifier when their digests (the same
weights, whether from one `train` step or one registry name) or their names agree.

Without a configured filter the pretrained ``resnet20-cifar`` filters, but only where it can judge:
the table's classes are the CIFAR-10 classes in its order, and the samples are 32x32. Upsampled
from 16x16 it scores 31% on the CIFAR-10 test subset against 92% at 32x32, which is no filter.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from curate.errors import UsageError

PRETRAINED_FILTER = "resnet20-cifar"
PRETRAINED_FILTER_SIZE = 32
INDEPENDENT, SELF_SCORED = "independent", "self_scored"


@dataclass(frozen=True)
class Scorer:
    """A classifier in one role: ``name`` (provenance), ``digest`` (its weights), ``classify``."""

    name: str
    digest: str
    classify: Callable[[np.ndarray], np.ndarray]

    def same_as(self, other: "Scorer") -> bool:
        return self.digest == other.digest or self.name == other.name


def weights_digest(model: Any) -> str:
    """sha256 of a module's state dict (names, dtypes, shapes, bytes): equal weights, equal digest."""
    import torch

    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        t = value.detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_scorer(model: Any, *, name: str, device: str) -> Scorer:
    """A registry classifier as a :class:`Scorer` (``predict_images`` resizes to its input size)."""
    from curate.learn import predict_images

    return Scorer(name, weights_digest(model), lambda images: predict_images(model, images, device=device))


def pretrained_filter_refusal(class_names: Sequence[str], image_size: int) -> str | None:
    """Why the pretrained CIFAR-10 ResNet-20 cannot filter these samples, or None when it can."""
    from curate.models.resnet_cifar import CIFAR10_CLASSES

    if list(class_names) != list(CIFAR10_CLASSES):
        return (f"the table's classes ({', '.join(list(class_names)[:4])}, ...) are not the CIFAR-10 classes "
                f"in order, so the pretrained {PRETRAINED_FILTER} cannot judge them")
    if image_size != PRETRAINED_FILTER_SIZE:
        return (f"the samples are {image_size}x{image_size}, and the pretrained {PRETRAINED_FILTER} judges "
                f"{PRETRAINED_FILTER_SIZE}x{PRETRAINED_FILTER_SIZE} images only (31% accurate when upsampled "
                f"from 16x16)")
    return None


def no_filter_message(reason: str, image_size: int) -> str:
    """The one-line refusal when no independent filter is configured and the default cannot serve."""
    return (f"no independent filter classifier: {reason}; wire a `train` step "
            f"trained at {image_size}x{image_size} (e.g. model convnet, model_config {{im_size: {image_size}}}) "
            "to inputs.filter, name a registry classifier in with.filter_model, or set with.allow_self_filter: "
            "true (the metrics are then labelled self_scored)")


def choose_filter(candidate: Scorer | None, guide: Scorer | None, *, allow_self_filter: bool) -> tuple[Scorer, str]:
    """The filter and its scoring label: ``candidate`` when it did not guide, else the guide on opt-in only."""
    if candidate is not None and (guide is None or not candidate.same_as(guide)):
        return candidate, INDEPENDENT
    if not allow_self_filter:
        if candidate is None:
            raise UsageError("no filter classifier: wire a `train` step to inputs.filter, name one in "
                             "with.filter_model, or set with.allow_self_filter: true")
        raise UsageError(f"the filter classifier {candidate.name} is the classifier that guided the samples, and "
                         "they pass their own guide's filter; use another filter (inputs.filter or "
                         "with.filter_model) or set with.allow_self_filter: true")
    if guide is None:
        raise UsageError("no classifier guided the samples, so there is none to self-filter with; wire a `train` "
                         "step to inputs.filter or name one in with.filter_model")
    return guide, SELF_SCORED
