"""Dataset condensation: distill a labelled image set into a few synthetic images per class.

``distill(images, labels, method=..., ipc=..., iterations=...)`` runs a registered method
(``DISTILLERS``: ``dc``, ``dsa``, ``dm``, ``dcc``, and ``sre2l``, ``cda``, which recover
images from a trained ``teacher=``) with the official defaults of its published tables, and
``plugins=[...]`` names from ``DISTILL_PLUGINS`` (``["fyi"]``, or ``fyi=True`` for short); it
returns a :class:`SyntheticSet`. ``evaluate`` scores it with the official protocol, or with
``protocol="kd"`` (students learn the teacher's soft labels of every view, as SRe2L's
relabel: :mod:`curate.condense.relabel`); ``random_baseline`` scores random real images
under the same protocol; ``curate.condense.budgets`` holds the published budgets a
"shortened protocol" falls short of. The matching losses (``curate.condense.matching``), DSA
(``curate.condense.dsa``) and the BatchNorm-statistics loss
(``curate.condense.bn_statistics``) are pure torch.

Names are imported on first use, so listing the registries does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from curate.condense.registry import DISTILL_PLUGINS, DISTILLERS

_LAZY = {
    "distill": "curate.condense.driver",
    "random_selection": "curate.condense.driver",
    "evaluate": "curate.condense.protocol",
    "official_phases": "curate.condense.protocol",
    "random_baseline": "curate.condense.protocol",
    "summarize": "curate.condense.protocol",
    "SyntheticSet": "curate.condense.synthetic_set",
    "Distiller": "curate.condense.base",
    "DistillerConfig": "curate.condense.base",
    "DSA": "curate.condense.dsa",
    "flip_expand": "curate.condense.fyi",
    "gradient_distance": "curate.condense.matching",
    "mean_embedding_distance": "curate.condense.matching",
    "distilled_table": "curate.condense.distilled_table",
    "KDRecipe": "curate.condense.kd",
    "Views": "curate.condense.kd",
    "kd_loss": "curate.condense.relabel",
    "record_soft_labels": "curate.condense.relabel",
    "SoftLabels": "curate.condense.relabel",
    "crop_lower_bound": "curate.condense.recover",
}

__all__ = ["DISTILLERS", "DISTILL_PLUGINS", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'curate.condense' has no attribute {name!r}")
