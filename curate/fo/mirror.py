"""Mirror a sample table into one persistent FiftyOne dataset, idempotently.

Each table row becomes a sample: our id in ``curate_id``, the ClassLabel as a
``Classification`` in ``ground_truth``, and every other scalar column (``split``,
``set``, provenance columns) as a field of the same name. Media: a row whose source
file exists (``path`` column, or an image stored as a path reference) is shown in
place; otherwise its encoded bytes are written once into ``media_dir`` under a name
derived from the id and the content hash, so a rerun writes nothing new.

A rerun updates the samples it finds by ``curate_id`` (keeping reviewer tags and the
fields later steps added), adds new rows and removes samples whose id left the table.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Sequence

import numpy as np

from curate import workspace
from curate.errors import UsageError
from curate.fo.database import connect
from curate.fo.fields import GROUND_TRUTH, ID_FIELD, RESERVED_FIELDS

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    import fiftyone as fo

log = logging.getLogger(__name__)

INFO_KEY = "curate"
# columns with a fixed meaning; every other scalar column is mirrored under its own name
_SPECIAL_COLUMNS = ("id", "image", "label", "path")
_MAGIC = ((b"\x89PNG", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"), (b"BM", ".bmp"))


def mirror_table(
    table: "datasets.Dataset",
    *,
    dataset_name: str,
    media_dir: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    media: Literal["reference", "write"] = "reference",
    batch_size: int = 1000,
    info: dict[str, Any] | None = None,
) -> "fo.Dataset":
    """Create or update the persistent dataset ``dataset_name`` so that it matches ``table``.

    ``media="write"`` copies every image into ``media_dir`` even when a source file
    exists (a self-contained run). ``info`` is stored in ``dataset.info["curate"]``.
    """
    fo = connect()
    if media not in ("reference", "write"):
        raise ValueError(f"`media` must be 'reference' or 'write', got {media!r}")
    for column in ("id", "image"):
        if column not in table.column_names:
            raise ValueError(f"`table` has no `{column}` column (columns: {', '.join(table.column_names)})")
    ids = np.asarray(table["id"], dtype=str)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"`table` has {int((counts > 1).sum())} ids that occur more than once, "
                         f"e.g. {unique[counts > 1][0]!r}; sample ids must be unique")
    if class_names is None and "label" in table.column_names:
        class_names = getattr(table.features["label"], "names", None)
    extra = _scalar_columns(table)

    # plain column values (ground truth as label names); compared with what is stored on reruns
    columns: dict[str, list[Any]] = {
        "filepath": _materialize_media(table, Path(media_dir), media=media, batch_size=batch_size)}
    if "label" in table.column_names:
        columns[GROUND_TRUTH] = _label_names(np.asarray(table["label"]), class_names)
    for name in extra:
        columns[name] = list(table[name])

    def field_value(name: str, value: Any) -> Any:
        return fo.Classification(label=value) if name == GROUND_TRUTH and value is not None else value

    dataset = _open_or_create(fo, dataset_name)
    id_list = ids.tolist()
    stored_ids = set(dataset.values(ID_FIELD))
    gone = stored_ids - set(id_list)
    if gone:
        dataset.delete_samples(dataset.select_by(ID_FIELD, sorted(gone)))
    schema = dataset.get_field_schema()
    updated = 0
    for name, values in columns.items():
        path = f"{GROUND_TRUTH}.label" if name == GROUND_TRUTH else name
        stored = dict(zip(*dataset.values([ID_FIELD, path]))) if name in schema else {}
        changed = {sid: field_value(name, v) for sid, v in zip(id_list, values)
                   if sid in stored_ids and (sid not in stored or stored[sid] != v)}
        if changed:
            dataset.set_values(name, changed, key_field=ID_FIELD)
            updated += len(changed)
    new_rows = [i for i, sid in enumerate(id_list) if sid not in stored_ids]
    for start in range(0, len(new_rows), batch_size):
        dataset.add_samples(
            [fo.Sample(**{ID_FIELD: id_list[i], **{n: field_value(n, v[i]) for n, v in columns.items()}})
             for i in new_rows[start:start + batch_size]],
            progress=False,
        )
    if class_names is not None:
        dataset.default_classes = list(class_names)
    dataset.info[INFO_KEY] = {**dataset.info.get(INFO_KEY, {}), **(info or {})}
    dataset.save()
    log.info("mirrored %d rows into FiftyOne dataset '%s' (%d new, %d removed, %d field values updated)",
             len(ids), dataset_name, len(new_rows), len(gone), updated)
    return dataset


def mirrored_fields(table: "datasets.Dataset") -> list[str]:
    """The sample fields :func:`mirror_table` writes for ``table``."""
    return [ID_FIELD] + ([GROUND_TRUTH] if "label" in table.column_names else []) + _scalar_columns(table)


def _open_or_create(fo: Any, name: str) -> "fo.Dataset":
    """Load our dataset ``name`` or create it; refuse a dataset curate did not create."""
    if fo.dataset_exists(name):
        dataset = fo.load_dataset(name)
        if INFO_KEY not in dataset.info:
            raise UsageError(f"FiftyOne dataset '{name}' exists but was not created by curate; "
                             "choose another `dataset_name` or delete that dataset")
        return dataset
    dataset = fo.Dataset(name, persistent=True)
    dataset.info[INFO_KEY] = {}
    dataset.add_sample_field(ID_FIELD, fo.StringField)
    dataset.create_index(ID_FIELD, unique=True)
    dataset.save()
    return dataset


def _scalar_columns(table: "datasets.Dataset") -> list[str]:
    """Scalar columns mirrored as fields of the same name (split, set, provenance)."""
    import datasets

    out = []
    for name, feature in table.features.items():
        if name in _SPECIAL_COLUMNS:
            continue
        if not isinstance(feature, datasets.Value):
            log.debug("column `%s` (%s) is not a scalar; not mirrored", name, type(feature).__name__)
            continue
        if name in RESERVED_FIELDS - {"split", "set"} or not re.fullmatch(r"[A-Za-z]\w*", name):
            log.warning("column `%s` cannot be a FiftyOne field name; not mirrored", name)
            continue
        out.append(name)
    return out


def _label_names(labels: np.ndarray, class_names: Sequence[str] | None) -> list[str | None]:
    """Class name of each label; None for -1 (unlabeled)."""
    if class_names is None:
        raise ValueError("`label` column has no ClassLabel names; pass `class_names`")
    names = np.asarray(list(class_names), dtype=object)
    bad = (labels >= len(names)) | (labels < -1)
    if bad.any():
        raise ValueError(f"`label` holds {labels[bad][0]} but there are {len(names)} class names")
    return np.where(labels < 0, None, names[np.clip(labels, 0, None)]).tolist()


def _materialize_media(table: "datasets.Dataset", media_dir: Path, *, media: str, batch_size: int) -> list[str]:
    """The filepath of every row; writes the bytes of rows without a usable source file into ``media_dir``."""
    columns = ["id", "image"] + (["path"] if "path" in table.column_names else [])
    rows = table.select_columns(columns).with_format("arrow")
    filepaths: list[str] = []
    with _media_writer(media_dir) as write:
        for batch in rows.iter(batch_size=batch_size):
            image = batch.column("image").combine_chunks()
            data = image.field("bytes").to_pylist()
            refs = image.field("path").to_pylist()
            sources = batch.column("path").to_pylist() if "path" in columns else [None] * len(data)
            for sid, blob, ref, source in zip(batch.column("id").to_pylist(), data, refs, sources):
                existing = next((p for p in (source, ref) if p and os.path.isabs(p) and os.path.isfile(p)), None)
                if existing is not None and media == "reference":
                    filepaths.append(os.path.abspath(existing))
                    continue
                if blob is None:
                    if existing is None:
                        raise FileNotFoundError(f"sample {sid!r} has no image bytes and its file {source or ref!r} "
                                                "does not exist")
                    blob = Path(existing).read_bytes()
                filepaths.append(write(_media_name(sid, blob), blob))
    with contextlib.suppress(OSError):  # every row had a source file: no empty folder
        media_dir.rmdir()
    return filepaths


@contextlib.contextmanager
def _media_writer(media_dir: Path) -> Iterator[Callable[[str, bytes], str]]:
    """``write(name, data) -> final path``: a new folder appears whole; an existing one gains missing files."""
    final = media_dir.resolve()
    if media_dir.exists():
        def write_missing(name: str, data: bytes) -> str:
            if not (final / name).exists():
                workspace.write_bytes(final / name, data)
            return str(final / name)

        yield write_missing
        return
    with workspace.atomic_dir(media_dir) as tmp:
        def write_staged(name: str, data: bytes) -> str:
            (tmp / name).write_bytes(data)
            return str(final / name)

        yield write_staged


def _media_name(sample_id: str, data: bytes) -> str:
    """``<readable id>-<content hash><ext>``: unique per id and content, stable across reruns."""
    ext = next((e for magic, e in _MAGIC if data.startswith(magic)), None)
    if ext is None:
        from PIL import Image

        ext = "." + (Image.open(io.BytesIO(data)).format or "img").lower()
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", sample_id)[-80:]
    digest = hashlib.sha256(sample_id.encode() + b"\0" + data).hexdigest()[:12]
    return f"{stem}-{digest}{ext}"
