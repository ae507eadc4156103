"""Artifact formats: how each artifact type is written into and read from a step folder.

A step's ``step.json`` lists its outputs as ``{type: entry}``; each entry holds the
relative ``path``, the content ``fingerprint`` (sha256, computed while writing) and
type-specific facts. Array artifacts (``pred_probs``, ``embeddings``, ``scores``)
record which table they are aligned to and keep their row ids beside them, so the
sample id stays the join key everywhere: :func:`locate_ids` / :func:`require_ids` are
the one place ids are joined to rows.
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
    "image_quality",
    "scores",
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


def trained_model_spec(step_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The recorded form of a model artifact (a `train` step's ``model`` output), see :func:`load_recorded_model`."""
    return {"name": entry.get("model"), "artifact": {"step": step_id, "path": entry["path"]}}


def load_recorded_model(spec: dict[str, Any], *, run_dir: str | Path | None = None) -> Any:
    """The model a step recorded: a model artifact of the run (``{"artifact": {"step", "path"}}``, needs
    ``run_dir``), or a registry model (``{"name", "weights", "config", "class_names", "seed"}``)."""
    if "artifact" in spec:
        if run_dir is None:
            raise ValueError("a recorded model artifact needs the run directory it lives in")
        return load_model(Path(run_dir) / spec["artifact"]["step"], spec["artifact"])
    from curate.models import create_model

    return create_model(spec["name"], num_classes=len(spec["class_names"]), weights=spec["weights"],
                        class_names=spec["class_names"], seed=spec["seed"], **spec["config"])


def locate_ids(ids: "np.ndarray | list[str]", reference: "np.ndarray | list[str]") -> tuple["np.ndarray", "np.ndarray"]:
    """``(rows, found)``: the position of each of ``ids`` in ``reference`` (e.g. a table's ``id`` column)
    and a mask of the ids that are there (``rows`` is meaningless where ``found`` is False).

    Sorting once makes this O((N + M) log M) instead of a Python dict of millions of strings.
    """
    import numpy as np

    ids = np.asarray(ids, dtype=str)
    reference = np.asarray(reference, dtype=str)
    if len(reference) == 0:
        return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
    sorter = np.argsort(reference, kind="stable")
    pos = np.clip(np.searchsorted(reference, ids, sorter=sorter), 0, len(reference) - 1)
    rows = sorter[pos].astype(np.int64)
    return rows, reference[rows] == ids


def require_ids(ids: "np.ndarray | list[str]", reference: "np.ndarray | list[str]", *, what: str, where: str,
                fix: str) -> "np.ndarray":
    """Rows of ``reference`` holding each of ``ids``; a one-line ``UsageError`` when any is missing.

    The message reads "<count> of the <n> <what> are not <where> (e.g. '<id>'); <fix>", so name the
    artifact and its step in ``what`` and say what to wire or rerun in ``fix``.
    """
    import numpy as np

    from curate.errors import UsageError

    rows, found = locate_ids(ids, reference)
    if not found.all():
        missing = np.asarray(ids, dtype=str)[~found]
        raise UsageError(f"{int((~found).sum())} of the {len(found)} {what} are not {where} "
                         f"(e.g. '{missing[0]}'); {fix}")
    return rows

