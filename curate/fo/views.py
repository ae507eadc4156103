"""Saved views: named slices of a run's dataset that the App lists (e.g. ``<step_id>_mistakes``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from curate.fo.fields import ID_FIELD

if TYPE_CHECKING:  # pragma: no cover
    import fiftyone as fo
    import fiftyone.core.view as fov


def select_ids(dataset: "fo.Dataset", ids: Sequence[str] | np.ndarray, *, ordered: bool = True) -> "fov.DatasetView":
    """The samples with these curate ids, in the given order unless ``ordered=False``."""
    return dataset.select_by(ID_FIELD, np.asarray(ids, dtype=str).tolist(), ordered=ordered)


def save_view(dataset: "fo.Dataset", name: str, view: "fov.DatasetView") -> None:
    """Save ``view`` under ``name``, replacing an earlier view of that name (reruns are idempotent)."""
    dataset.save_view(name, view, overwrite=True)


def load_view(dataset: "fo.Dataset", name: str) -> "fov.DatasetView":
    if not dataset.has_saved_view(name):
        raise KeyError(f"dataset '{dataset.name}' has no saved view '{name}' "
                       f"(saved views: {', '.join(dataset.list_saved_views()) or 'none'})")
    return dataset.load_saved_view(name)
