"""A run's table version as a ``datasets.DatasetDict`` by split, with Hub-style Parquet shards.

Every table column travels: ``image`` (``Image``), ``label`` (``ClassLabel`` with its
names), ``set``, provenance columns, and list columns of floats (soft labels) as
``Sequence(float32)``. Array artifacts (``pred_probs``, ``embeddings``) join as extra
``Sequence(float32)`` columns by sample id; rows without a value get null.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

import numpy as np

from curate import workspace
from curate.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    import pyarrow as pa

DATA_DIR = "data"


def soft_feature() -> "datasets.Sequence":
    import datasets

    return datasets.Sequence(datasets.Value("float32"))


def build_dataset_dict(
    table: "datasets.Dataset",
    *,
    columns: Mapping[str, tuple[np.ndarray, Sequence[str]]] | None = None,
    splits: Sequence[str] | None = None,
) -> "datasets.DatasetDict":
    """Split ``table`` by its ``split`` column (``splits``: which, in that order; default all, in
    order of first appearance), adding ``columns`` (``name -> (values (N, C), ids)``).

    Built in Arrow, in memory: ``datasets``' own map/cast/filter would write cache files
    beside the input table, i.e. into another step's folder.
    """
    import datasets

    arrow = table.with_format("arrow")[:]
    features = table.features.copy()
    table_ids = np.asarray(arrow.column("id").to_pylist(), dtype=str)
    for name, (values, ids) in (columns or {}).items():
        if name in features:
            raise UsageError(f"column `{name}` is already in the table; rename the step that produces it")
        arrow = arrow.append_column(name, _list_column(name, values, ids, table_ids))
        features[name] = soft_feature()
    for name, feature in features.items():
        if _is_float_list(feature):
            features[name] = soft_feature()
    arrow = arrow.cast(features.arrow_schema)

    split_col = np.asarray(arrow.column("split").to_pylist(), dtype=str)
    present = list(dict.fromkeys(split_col.tolist()))
    wanted = list(splits) if splits else present
    unknown = [s for s in wanted if s not in present]
    if unknown:
        raise UsageError(f"split '{unknown[0]}' has no rows (splits in the table: {', '.join(present)})")
    return datasets.DatasetDict({
        s: datasets.Dataset(datasets.table.InMemoryTable(arrow.take(np.flatnonzero(split_col == s))),
                            info=datasets.DatasetInfo(features=features))
        for s in wanted})


def _list_column(name: str, values, ids, table_ids: np.ndarray) -> "pa.ListArray":
    """``values (M, C)`` placed on the table rows of their ``ids`` as float32 lists; null elsewhere."""
    import pyarrow as pa

    from curate.artifacts import locate_ids

    values = np.asarray(values, dtype=np.float32)
    ids = np.asarray(ids, dtype=str)
    if values.ndim != 2 or len(values) != len(ids):
        raise UsageError(f"column `{name}` needs a 2-D array with one row per id, got shape {values.shape} "
                         f"for {len(ids)} ids")
    at, found = locate_ids(table_ids, ids)
    if not found.any():
        raise UsageError(f"none of the {len(ids)} rows of column `{name}` belong to the table's samples")
    aligned = np.where(found[:, None], values[at], 0.0).astype(np.float32)
    width = aligned.shape[1]
    offsets = pa.array(np.arange(0, (len(aligned) + 1) * width, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(aligned.reshape(-1)), mask=pa.array(~found))


def _is_float_list(feature) -> bool:
    import datasets

    inner = getattr(feature, "feature", None)
    return (isinstance(feature, (datasets.List, datasets.LargeList)) and isinstance(inner, datasets.Value)
            and inner.dtype.startswith("float"))


def shard_files(dataset_dict: "datasets.DatasetDict", rows_per_shard: int, *, nodes: int = 1
                ) -> dict[str, list[str]]:
    """The Parquet shard names of each split, ``data/<split>-XXXXX-of-YYYYY.parquet`` (Hub convention).

    Each split has a multiple of ``nodes`` shards (at most ``rows_per_shard`` rows each) of sizes differing by
    at most one row, so that ``datasets.distributed.split_dataset_by_node`` on the streamed Parquet gives each
    of ``nodes`` nodes whole shards and the same number of rows within one row per shard."""
    out = {}
    for split, ds in dataset_dict.items():
        n = nodes * max(1, math.ceil(len(ds) / (rows_per_shard * nodes)))
        out[split] = [f"{DATA_DIR}/{split}-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
    return out


def shard_rows(rows: int, shards: int) -> list[int]:
    """Rows of each of ``shards`` contiguous shards of ``rows`` rows (``Dataset.shard(contiguous=True)``)."""
    return [rows // shards + (i < rows % shards) for i in range(shards)]


@contextlib.contextmanager
def _datasets_progress(enabled: bool) -> Iterator[None]:
    """``datasets``' own progress bars on or off for a block, restored afterwards."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    (enable_progress_bars if enabled else disable_progress_bars)()
    try:
        yield
    finally:
        (disable_progress_bars if was_disabled else enable_progress_bars)()


def write_export(
    dataset_dict: "datasets.DatasetDict",
    folder: str | Path,
    *,
    card_text: str,
    rows_per_shard: int = 20_000,
    nodes: int = 1,
    progress: bool = False,
) -> dict[str, list[str]]:
    """Write ``folder/dataset`` (``save_to_disk``) and ``folder/hub`` (``README.md`` +
    ``data/<split>-XXXXX-of-YYYYY.parquet``, the layout the Hub loads), each folder atomically.

    The shards are written from the saved copy, whose images ``save_to_disk`` embedded as
    bytes, so they never point at files outside the export. Returns the shard files per split (a multiple of
    ``nodes`` each, see :func:`shard_files`).
    """
    folder = Path(folder)
    with _datasets_progress(progress):
        return _write_export(dataset_dict, folder, card_text=card_text, rows_per_shard=rows_per_shard, nodes=nodes)


def _write_export(dataset_dict, folder: Path, *, card_text: str, rows_per_shard: int, nodes: int
                  ) -> dict[str, list[str]]:
    import datasets

    with workspace.atomic_dir(folder / "dataset") as tmp:
        dataset_dict.save_to_disk(str(tmp))
    saved = datasets.load_from_disk(str(folder / "dataset"))
    shards = shard_files(saved, rows_per_shard, nodes=nodes)
    with workspace.atomic_dir(folder / "hub") as tmp:
        (tmp / DATA_DIR).mkdir()
        for split, names in shards.items():
            for i, name in enumerate(names):
                saved[split].shard(num_shards=len(names), index=i, contiguous=True).to_parquet(str(tmp / name))
        (tmp / "README.md").write_text(card_text)
    return shards
