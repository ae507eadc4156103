"""Artifact formats: how each artifact type is written into and read from a step folder.

A step's ``step.json`` lists its outputs as ``{type: entry}``; each entry holds the
relative ``path``, the content ``fingerprint`` (sha256, computed while writing) and
type-specific facts. Array artifacts (``pred_probs``, ``embeddings``, ``scores``)
record which table they are aligned to and keep their row ids beside them, so the
sample id stays the join key everywhere.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curate import workspace

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    import numpy as np

ARTIFACT_TYPES = (
    "table",
    "pred_probs",
    "embeddings",
    "model",
    "diffusion_model",
    "index",
    "label_maps",
    "label_issues",
    "label_scores",
    "multi_labels",
    "report",
    "synthetic_set",
    "export",
)


def save_table(step_dir: Path, table: "datasets.Dataset", *, name: str = "table") -> dict[str, Any]:
    """Write a sample-table version as an Arrow folder, atomically."""
    target = Path(step_dir) / name
    with workspace.atomic_dir(target) as tmp:
        table.save_to_disk(str(tmp))
    return {"path": name, "fingerprint": workspace.tree_sha256(target), "rows": len(table)}


def load_table(step_dir: Path, entry: dict[str, Any]) -> "datasets.Dataset":
    import datasets

    return datasets.load_from_disk(str(Path(step_dir) / entry["path"]))


def save_array(
    step_dir: Path,
    name: str,
    values: "np.ndarray",
    ids: "np.ndarray | list[str]",
    *,
    aligned_to: dict[str, Any],
) -> dict[str, Any]:
    """Write ``values`` (row i belongs to sample ``ids[i]``) as ``name.npy`` + ``name.ids.npy``."""
    import numpy as np

    ids = np.asarray(ids, dtype=str)
    if len(ids) != len(values):
        raise ValueError(f"`ids` has {len(ids)} rows but `{name}` has {len(values)}")
    ids_digest = workspace.write_npy(Path(step_dir) / f"{name}.ids.npy", ids)
    digest = workspace.write_npy(Path(step_dir) / f"{name}.npy", values)
    return {
        "path": f"{name}.npy",
        "ids": f"{name}.ids.npy",
        "fingerprint": hashlib.sha256((digest + ids_digest).encode()).hexdigest(),
        "shape": list(values.shape),
        "dtype": str(values.dtype),
        "aligned_to": aligned_to,
    }


def load_array(step_dir: Path, entry: dict[str, Any], *, mmap: bool = False) -> tuple["np.ndarray", "np.ndarray"]:
    """``(values, ids)`` of an array artifact."""
    import numpy as np

    values = np.load(Path(step_dir) / entry["path"], mmap_mode="r" if mmap else None, allow_pickle=False)
    ids = np.load(Path(step_dir) / entry["ids"], allow_pickle=False)
    return values, ids


def save_model(step_dir: Path, model: Any, *, name: str = "model") -> dict[str, Any]:
    """Write a registry model as ``name/`` (config.json + weights.safetensors)."""
    from curate.models import save_model as _save

    target = Path(step_dir) / name
    with workspace.atomic_dir(target) as tmp:
        _save(model, tmp)
    info = json.loads((target / "config.json").read_text())
    return {"path": name, "fingerprint": workspace.tree_sha256(target), "model": info.get("name")}


def load_model(step_dir: Path, entry: dict[str, Any]) -> Any:
    from curate.models import load_model as _load

    return _load(Path(step_dir) / entry["path"])
