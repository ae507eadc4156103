"""``curate index query RUN``: nearest neighbours from a run's saved index, by id, vector or image file.

An image file is embedded exactly as the index's rows were: the sidecar names the embed
step, whose embeddings entry records the model it used (a registry spec or a trained model
artifact), and the image goes through the same decoding and resizing as a table row.
Each neighbour carries its set, label and split: from the index's sidecar columns when it
stored them, else from the indexed table version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from curate import workspace
from curate.errors import UsageError


class Neighbor(NamedTuple):
    sample_id: str
    distance: float
    set: str | None  # real / distilled / synthetic, from the index's sidecar
    label: str | None = None  # class name
    split: str | None = None


NEIGHBOR_COLUMNS = ("distance", "set", "label", "split", "id")


def format_neighbors(neighbors: Sequence[Neighbor]) -> list[str]:
    """A header line, then one aligned line per neighbour (``curate index query``)."""
    rows = [(f"{n.distance:.4f}", n.set or "-", n.label or "-", n.split or "-", n.sample_id) for n in neighbors]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(NEIGHBOR_COLUMNS[:-1])]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1]
            for row in [NEIGHBOR_COLUMNS, *rows]]


def find_index_step(run_dir: str | Path, step: str | None = None) -> tuple[str, dict[str, Any]]:
    """The id and manifest of the run's index step (``step``, or the only one)."""
    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    if not info_path.is_file():
        raise UsageError(f"{run_dir} is not a curate run directory (no run.json); pass the folder `curate run` printed")
    steps = [s["id"] for s in json.loads(info_path.read_text())["steps"] if s["kind"] == "index"]
    if step is None:
        if len(steps) != 1:
            raise UsageError(f"run {run_dir} has {len(steps)} index steps ({', '.join(steps) or 'none'}); "
                             + ("name one with --step" if steps else "add an `index` step to its recipe"))
        step = steps[0]
    elif step not in steps:
        raise UsageError(f"run {run_dir} has no index step '{step}' (index steps: {', '.join(steps) or 'none'})")
    manifest = workspace.read_manifest(run_dir / step)
    if manifest is None:
        raise UsageError(f"index step '{step}' of run {run_dir} has not completed; run `curate index build {run_dir}`")
    return step, manifest


def query_index(
    run_dir: str | Path,
    *,
    index_step: str | None = None,
    sample_id: str | None = None,
    image_path: str | Path | None = None,
    vector: Any = None,
    k: int = 10,
    device: str = "auto",
) -> list[Neighbor]:
    """The ``k`` nearest indexed samples, ascending by distance (a queried sample itself excluded).

    Give exactly one of ``sample_id`` (an indexed sample), ``vector`` (D,) or ``image_path``.
    """
    from curate.index.saved import load_index

    given = [name for name, value in (("sample_id", sample_id), ("image_path", image_path), ("vector", vector))
             if value is not None]
    if len(given) != 1:
        raise UsageError(f"give exactly one of --id, --image, --vector (got {', '.join(given) or 'none'})")
    run_dir = Path(run_dir)
    step, manifest = find_index_step(run_dir, index_step)
    index = load_index(run_dir / step / manifest["outputs"]["index"]["path"])
    if sample_id is not None:
        dist, rows = index.neighbors_of_rows(_row_of(index, sample_id, run_dir), k)
    else:
        query = embed_image_file(run_dir, index.meta, image_path, device=device) if image_path is not None \
            else _one_vector(vector)
        dist, rows = index.search_rows(query, k)
    found = rows[0] >= 0
    rows, dist = rows[0][found], dist[0][found]
    ids = [str(sid) for sid in index.ids_at(rows)]
    columns = dict(index.meta.get("columns", {}))
    if "label" not in columns or "split" not in columns:
        columns = {**_table_columns(run_dir, index.meta, ids, rows), **columns}

    def column(name: str, r: int) -> str | None:
        values = columns.get(name)
        return None if values is None else values[r]

    return [Neighbor(sid, float(d), column("set", r), column("label", r), column("split", r))
            for sid, d, r in zip(ids, dist, rows.tolist())]


def _row_of(index, sample_id: str, run_dir: Path):
    """The index row of ``sample_id``; an unknown id is a UsageError showing what the index's ids look like."""
    try:
        return index.rows_of([sample_id])
    except UsageError:
        example = f"; ids look like {str(index.ids_at(np.zeros(1, np.int64))[0])!r}" if len(index) else ""
        raise UsageError(f"no sample with id {sample_id!r} in the index of run {run_dir}{example} "
                         "(the `id` column of the run's table)") from None


def _table_columns(run_dir: Path, meta: dict[str, Any], ids: list[str], rows) -> dict[str, dict[int, str]]:
    """``label`` (class names) and ``split`` of the neighbours, keyed by index row, from the table version the
    index was built on; empty when that step is gone."""
    from curate.artifacts import load_table, locate_ids

    step = (meta.get("table") or {}).get("step")
    manifest = workspace.read_manifest(run_dir / step) if step else None
    if manifest is None or "table" not in manifest.get("outputs", {}):
        return {}
    table = load_table(run_dir / step, manifest["outputs"]["table"]).select_columns(["id", "label", "split"])
    where, present = locate_ids(ids, table["id"])
    names = table.features["label"].names
    labels, splits = np.asarray(table["label"]), np.asarray(table["split"], dtype=object)
    out: dict[str, dict[int, str]] = {"label": {}, "split": {}}
    for r, t, ok in zip(rows.tolist(), where.tolist(), present.tolist()):
        if ok:
            out["label"][r], out["split"][r] = names[int(labels[t])], str(splits[t])
    return out


def embed_image_file(run_dir: Path, meta: dict[str, Any], image_path: str | Path, *,
                     device: str = "auto") -> np.ndarray:
    """Embed one image file (1, D) with the model the embed step named in an index's ``meta`` recorded."""
    from curate.artifacts import load_recorded_model
    from curate.data import make_table
    from curate.learn import embed

    image_path = Path(image_path)
    if not image_path.is_file():
        raise UsageError(f"image file {image_path} does not exist")
    step = meta.get("embed_step")
    manifest = workspace.read_manifest(run_dir / step) if step else None
    entry = (manifest or {}).get("outputs", {}).get("embeddings", {})
    if "model" not in entry:
        raise UsageError(f"the index does not name a completed embed step that recorded its model (got {step!r}); "
                         "query by --id or --vector, or rerun the embed and index steps (`curate run`)")
    model = load_recorded_model(entry["model"], run_dir=run_dir)
    class_names = list(getattr(model, "class_names", None) or [str(i) for i in range(model.num_classes)])
    row = make_table(ids=["query"], images=[image_path], labels=[0], class_names=class_names, splits="query")
    return embed(model, row, normalize=entry.get("normalize", True), device=device, progress=False)


def _one_vector(vector: Any) -> np.ndarray:
    """A query vector (D,) or (1, D) as one row; any other shape is refused rather than flattened."""
    array = np.asarray(vector)
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.number):
        raise UsageError(f"--vector must hold one numeric vector of shape (D,) or (1, D), got {array.dtype} of "
                         f"shape {array.shape}")
    return array.astype(np.float32).reshape(1, -1)
