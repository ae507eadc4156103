"""The sample table: one row per sample, the join key of every artifact.

Columns (a ``datasets.Dataset``):

- ``id`` (string): stable across runs for the same source, unique in the table;
- ``image`` (``Image()``): PNG bytes for array sources, a path reference for file sources;
- ``label`` (``ClassLabel``): the class names travel with the table;
- ``split`` (string): e.g. ``train`` / ``test``;
- ``set`` (string): ``real`` for sources (``distilled`` / ``synthetic`` for later versions);
- ``path`` (string, optional): the absolute source file of the image.

Steps that change the data (audit apply, condense, synth) write a NEW version through
:func:`new_table_version`; rows a step generates come from :func:`generated_rows` with the
:data:`PROVENANCE` columns every producer fills the same way.

Saving: in datasets 5.2, ``Dataset.save_to_disk`` writes through an ``ArrowWriter`` with
``embed_local_files=True``, so every path-referenced image is READ from its source file
and EMBEDDED as bytes in the saved Arrow shards; its ``path`` field is cut to the
basename. A saved table therefore loads and decodes without the source folder (the
source is only read, never written), at the cost of copying the image bytes into the
run directory. The ``path`` column keeps the absolute source path for provenance and
for adapters (FiftyOne) that want to show the original file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from curate.data._parallel import thread_map
from curate.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    import pyarrow as pa

COLUMNS = ("id", "image", "label", "split", "set")
SETS = ("real", "distilled", "synthetic")
PROVENANCE = {"method": "string", "parameters": "string", "source_step": "string", "seed": "int64"}
"""Provenance columns of generated rows, the same for every producer: the method's registered name, its
settings as JSON, the id of the step that made the row, and the row's seed. Real rows hold nulls."""


def table_features(class_names: Sequence[str], *, with_path: bool = False) -> "datasets.Features":
    """The ``datasets.Features`` of a sample table with these classes."""
    import datasets

    columns = {
        "id": datasets.Value("string"),
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=list(class_names)),
        "split": datasets.Value("string"),
        "set": datasets.Value("string"),
    }
    if with_path:
        columns["path"] = datasets.Value("string")
    return datasets.Features(columns)


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def encode_png(images: np.ndarray, *, workers: int | None = None, progress: bool = False) -> list[bytes]:
    """Lossless PNG bytes of each image of a uint8 ``(N, H, W, 3)`` or grayscale ``(N, H, W)`` array."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"`images` must be uint8, got dtype {images.dtype}")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3)):
        raise ValueError(f"`images` must have shape (N, H, W, 3) or (N, H, W), got {images.shape}")
    return thread_map(_png, images, workers=workers, progress=progress, desc="encode PNG")


def _image_storage(images: Any, n: int, progress: bool) -> "pa.Array":
    """The Arrow storage (struct of bytes, path) of the ``image`` column."""
    import pyarrow as pa

    storage_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    if isinstance(images, (pa.Array, pa.ChunkedArray)):
        array = images.combine_chunks() if isinstance(images, pa.ChunkedArray) else images
        if not array.type.equals(storage_type):
            raise ValueError(f"`images` as an Arrow array must have type {storage_type}, got {array.type}")
        return array
    if isinstance(images, np.ndarray):
        data, paths = encode_png(images, progress=progress), [None] * n
    else:
        data, paths = [None] * n, [str(Path(p).absolute()) for p in images]
    return pa.StructArray.from_arrays(
        [pa.array(data, type=pa.binary()), pa.array(paths, type=pa.string())], fields=list(storage_type)
    )


def make_table(
    *,
    ids: Sequence[str],
    images: "np.ndarray | Sequence[str | os.PathLike] | pa.Array",
    labels: "np.ndarray | Sequence[int]",
    class_names: Sequence[str],
    splits: str | Sequence[str],
    set_: str = "real",
    paths: Sequence[str | os.PathLike] | None = None,
    progress: bool = False,
) -> "datasets.Dataset":
    """Build a sample table; call :func:`validate_table` on it before handing it on.

    ``images`` is a uint8 array ``(N, H, W, 3)`` or ``(N, H, W)`` (stored as lossless PNG),
    a list of file paths (stored as references, not copies), or the Arrow storage of an
    existing ``Image()`` column (passed through). ``splits`` is one name for every row
    or one per row. Labels are not range-checked here, so that :func:`validate_table`
    can report a bad one against the source it came from.
    """
    import datasets
    import pyarrow as pa

    ids = [str(i) for i in ids]
    n = len(ids)
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"`labels` must be a 1-D integer array, got dtype {labels.dtype} and shape {labels.shape}")
    split_values = [splits] * n if isinstance(splits, str) else [str(s) for s in splits]
    columns = {"ids": n, "images": len(images), "labels": len(labels), "splits": len(split_values)}
    if paths is not None:
        columns["paths"] = len(paths)
    for name, length in columns.items():
        if length != n:
            raise ValueError(f"`{name}` has {length} rows but `ids` has {n}")
    if set_ not in SETS:
        raise ValueError(f"`set_` must be one of {', '.join(SETS)}, got {set_!r}")

    features = table_features(class_names, with_path=paths is not None)
    arrays = {
        "id": pa.array(ids, type=pa.string()),
        "image": _image_storage(images, n, progress),
        "label": pa.array(labels.astype(np.int64, copy=False), type=pa.int64()),
        "split": pa.array(split_values, type=pa.string()),
        "set": pa.array([set_] * n, type=pa.string()),
    }
    if paths is not None:
        arrays["path"] = pa.array([str(Path(p).absolute()) for p in paths], type=pa.string())
    arrow = pa.table(arrays).cast(features.arrow_schema)
    return datasets.Dataset(datasets.table.InMemoryTable(arrow), info=datasets.DatasetInfo(features=features))


def column(table: "datasets.Dataset", name: str) -> "pa.ChunkedArray":
    """One column as Arrow, in row order (honours ``select``/``shuffle`` index mappings)."""
    return table.with_format("arrow", columns=[name])[name]


def validate_table(table: "datasets.Dataset", *, where: str) -> None:
    """Raise a one-line UsageError if ``table`` breaks the sample-table contract.

    ``where`` names the source in the message, e.g. ``"imagefolder '/data/pets'"``.
    """
    import datasets
    import pyarrow.compute as pc

    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise UsageError(f"{where}: the table has no {', '.join(f'`{c}`' for c in missing)} column "
                         f"(columns: {', '.join(table.column_names)})")
    label_feature = table.features["label"]
    if not isinstance(label_feature, datasets.ClassLabel):
        raise UsageError(f"{where}: `label` must be a ClassLabel with the class names, got {label_feature!r}")
    if not isinstance(table.features["image"], datasets.Image):
        raise UsageError(f"{where}: `image` must be an Image() column, got {table.features['image']!r}")
    if len(table) == 0:
        raise UsageError(f"{where}: the dataset is empty (0 samples); check the path and the split")

    labels = column(table, "label")
    k = label_feature.num_classes
    bad = pc.or_kleene(pc.less(labels, 0), pc.greater_equal(labels, k))
    bad = pc.fill_null(bad, True)
    if pc.any(bad).as_py():
        row = pc.index(bad, True).as_py()
        sample_id = column(table, "id")[row].as_py()
        names = label_feature.names
        preview = ", ".join(names[:5]) + (", ..." if k > 5 else "")
        raise UsageError(f"{where}: label {labels[row].as_py()} of sample '{sample_id}' is outside the class list "
                         f"(0..{k - 1}: {preview}); give every sample a label in that range")

    counts = pc.value_counts(column(table, "id"))
    repeated = pc.filter(counts, pc.greater(counts.field("counts"), 1))
    if len(repeated):
        first = repeated[0].as_py()
        raise UsageError(f"{where}: {len(repeated)} sample ids are not unique, e.g. '{first['values']}' appears "
                         f"{first['counts']} times; ids must be unique within a table")


def split_indices(table: "datasets.Dataset", split: str | None, *, where: str) -> "np.ndarray":
    """Row positions of ``split`` (all rows for None); an unknown or empty split is a usage error."""
    if split is None:
        return np.arange(len(table))
    splits = np.asarray(table["split"])
    idx = np.flatnonzero(splits == split)
    if len(idx) == 0:
        present = ", ".join(sorted(set(splits.tolist()))) or "none"
        raise UsageError(f"{where}: split '{split}' has no rows (splits in the table: {present})")
    return idx


def class_names_of(table: "datasets.Dataset") -> list[str]:
    return list(table.features["label"].names)


def generated_rows(
    *,
    ids: Sequence[str],
    images: np.ndarray,
    labels: "np.ndarray | Sequence[int]",
    class_names: Sequence[str],
    split: str,
    set_: str,
    method: str,
    parameters: dict[str, Any],
    source_step: str,
    seeds: "int | np.ndarray | Sequence[int]",
    extra: dict[str, tuple[Any, str]] | None = None,
) -> "datasets.Dataset":
    """Rows a step generated (``set_``: distilled or synthetic) with the :data:`PROVENANCE` columns.

    ``parameters`` is stored as sorted JSON, so equal settings compare equal; ``seeds`` is one per row or
    one for all. ``extra`` adds producer-specific per-row columns as ``{name: (values, dtype)}`` (e.g. a
    filter's confidence), named so they never collide with the provenance columns.
    """
    import json

    import datasets

    rows = make_table(ids=ids, images=images, labels=labels, class_names=class_names, splits=split, set_=set_)
    n = len(rows)
    values = {"method": method, "parameters": json.dumps(parameters, sort_keys=True, default=str),
              "source_step": source_step, "seed": seeds}
    columns = {name: (values[name], dtype) for name, dtype in PROVENANCE.items()}
    for name, column in (extra or {}).items():
        if name in columns or name in rows.column_names:
            raise ValueError(f"extra column `{name}` collides with a table or provenance column")
        columns[name] = column
    for name, (value, dtype) in columns.items():
        per_row = np.asarray(value).tolist() if np.ndim(value) else [value] * n
        if len(per_row) != n:
            raise ValueError(f"column `{name}` has {len(per_row)} values but there are {n} rows")
        rows = rows.add_column(name, per_row, feature=datasets.Value(dtype))
    return rows


def new_table_version(
    base: "datasets.Dataset",
    *,
    scratch: Path | None = None,
    keep: "np.ndarray | None" = None,
    columns: dict[str, tuple["np.ndarray", Any]] | None = None,
    add: "datasets.Dataset | None" = None,
    where: str,
) -> "datasets.Dataset":
    """A NEW version of ``base``: its rows at ``keep`` (all when None) with ``columns`` set on them
    (``{name: (values aligned to the kept rows, datasets feature)}``, replacing or adding), then the rows of
    ``add``; a column one side lacks is null on the other. ``base`` is never modified.

    Rewritten rows stream through a cache file in ``scratch`` (a folder of the calling step that it
    removes once the version is saved), so a large table is never held in memory and ``datasets`` writes
    nothing next to the input.
    """
    import datasets

    version = base if keep is None else base.select(np.asarray(keep, dtype=np.int64))
    if columns:
        features = version.features.copy()
        for name, (_, feature) in columns.items():
            features[name] = feature

        def rewrite(batch, indices):
            return {name: np.asarray(values)[np.asarray(indices)].tolist() for name, (values, _) in columns.items()}

        if scratch is None:
            raise ValueError("`scratch` is needed to rewrite columns (a folder of the calling step)")
        Path(scratch).mkdir(parents=True, exist_ok=True)
        version = version.map(rewrite, batched=True, with_indices=True, features=features,
                              cache_file_name=str(Path(scratch) / "rows.arrow"), load_from_cache_file=False,
                              desc="new table version")
    if add is not None:
        if add.features["label"].names != version.features["label"].names:
            raise UsageError(f"{where}: the new rows' classes differ from the table's; make them with the table's "
                             "class names")
        clash = set(version["id"]) & set(add["id"])
        if clash:
            raise UsageError(f"{where}: {len(clash)} new row ids already exist in the table (e.g. "
                             f"{sorted(clash)[0]!r}); give the step a new id")
        version, add = _with_columns(version, add.features), _with_columns(add, version.features)
        add = add.select_columns(version.column_names).cast(version.features)
        version = datasets.concatenate_datasets([version, add])
    validate_table(version, where=where)
    return version


def _with_columns(table: "datasets.Dataset", features: "datasets.Features") -> "datasets.Dataset":
    """``table`` with a null column for each of ``features`` it lacks."""
    for name, feature in features.items():
        if name not in table.column_names:
            table = table.add_column(name, [None] * len(table), feature=feature)
    return table

