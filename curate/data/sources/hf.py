"""``hf``: a Hugging Face dataset, from the Hub or from a local folder.

A folder written by ``save_to_disk`` is opened with ``load_from_disk``; any other local
folder (image folder, parquet files) and any Hub id go through ``load_dataset``. Hub
repositories are first fetched with ``snapshot_download`` into ``cache_dir``, so that
no download lands in ``~/.cache`` (``load_dataset`` alone would put Hub files in the
global Hub cache whatever its ``cache_dir``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from curate.config import option
from curate.data.sources import Source, stat_fingerprint
from curate.data.table import column, make_table, validate_table
from curate.errors import UsageError

SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def _open(path: str, revision: str | None, cache_dir: Path, where: str) -> Any:
    """A ``Dataset`` or ``DatasetDict`` for ``path``."""
    import datasets

    local = Path(path).expanduser()
    if local.is_dir() and any((local / m).is_file() for m in SAVED_MARKERS):
        return datasets.load_from_disk(str(local))
    if local.is_file():
        raise UsageError(f"hf source: `path` '{path}' is a file; give a dataset folder or a Hub dataset id")
    if not local.exists():
        if not HUB_ID.match(path) or path.startswith((".", "~")):
            raise UsageError(f"hf source: `path` '{path}' does not exist (and is not a Hub dataset id)")
        from huggingface_hub import snapshot_download

        try:
            local = Path(snapshot_download(path, repo_type="dataset", revision=revision,
                                           cache_dir=str(cache_dir / "hub")))
        except OSError as exc:  # huggingface_hub's not-found and HTTP errors are OSErrors
            raise UsageError(f"{where}: cannot fetch Hub dataset `path` '{path}' ({type(exc).__name__}: {exc})") from exc
    try:
        return datasets.load_dataset(str(local), cache_dir=str(cache_dir / "datasets"))
    except FileNotFoundError as exc:  # includes EmptyDatasetError: a folder without data files
        raise UsageError(f"{where}: {exc}") from exc


def _labels(ds: Any, name: str, class_names: tuple[str, ...] | None, where: str) -> tuple[np.ndarray, list[str]]:
    """Integer labels and the class list of one split."""
    import datasets
    import pyarrow as pa
    import pyarrow.compute as pc

    feature = ds.features[name]
    values = column(ds, name)
    if isinstance(feature, datasets.ClassLabel):
        if class_names is not None and list(class_names) != feature.names:
            raise UsageError(f"{where}: `class_names` {list(class_names)} differ from the dataset's own "
                             f"ClassLabel names {feature.names}; drop `class_names` or make them equal")
        return values.to_numpy(), feature.names
    if pa.types.is_integer(values.type):
        if class_names is None:
            raise UsageError(f"{where}: `label_column` '{name}' holds integers without class names; "
                             "set `class_names` (one name per label value)")
        return values.to_numpy(), list(class_names)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        names = list(class_names) if class_names is not None else sorted(pc.unique(values).to_pylist())
        codes = pc.index_in(values, value_set=pa.array(names))
        if codes.null_count:
            bad = pc.filter(values, pc.is_null(codes))[0].as_py()
            raise UsageError(f"{where}: `label_column` '{name}' value {bad!r} is not in `class_names` ({', '.join(names)})")
        return codes.to_numpy(), names
    raise UsageError(f"{where}: `label_column` '{name}' has type {feature!r}; expected a ClassLabel, integers or strings")


def _select_splits(opened: Any, split: str | tuple[str, ...] | None, where: str) -> dict[str, Any]:
    """``{split name: Dataset}`` of the requested splits (all by default)."""
    import datasets

    wanted = (split,) if isinstance(split, str) else split
    if isinstance(opened, datasets.DatasetDict):
        missing = [s for s in wanted or () if s not in opened]
        if missing:
            raise UsageError(f"{where}: `split` '{missing[0]}' does not exist; splits: {', '.join(opened)}")
        return {s: opened[s] for s in wanted or opened}
    if wanted is not None and len(wanted) != 1:
        raise UsageError(f"{where}: `split` {list(wanted)} names several splits, but the dataset has one")
    return {wanted[0] if wanted else str(opened.split or "train"): opened}


class HFSource(Source):
    """Any ``datasets`` dataset with an Image column and a label column."""

    @dataclass(frozen=True, kw_only=True)
    class Config:
        kind: Literal["hf"] = "hf"
        path: str = option(help="Hub dataset id, or a local folder (save_to_disk output, image folder, parquet)",
                           path=True)
        split: str | tuple[str, ...] | None = option(None, help="split(s) to load (default: all)")
        image_column: str = option("image", help="column with an Image() feature")
        label_column: str = option("label", help="column with a ClassLabel, integer or string label")
        id_column: str | None = option(None, help="column with the sample ids (default: '<split>/<row>')")
        class_names: tuple[str, ...] | None = option(None, help="class names when the labels are not a ClassLabel")
        revision: str | None = option(None, help="Hub revision (branch, tag or commit) to pin")

    def load(self, config: Config, *, cache_dir: Path, progress: bool = True):
        import datasets
        import pyarrow as pa

        where = f"hf source '{config.path}'"
        splits = _select_splits(_open(config.path, config.revision, cache_dir, where), config.split, where)
        ids, images, labels, split_names, class_names = [], [], [], [], None
        for split, ds in splits.items():
            here = f"{where} split '{split}'"
            for field in ("image_column", "label_column", "id_column"):
                col = getattr(config, field)
                if col is not None and col not in ds.column_names:
                    raise UsageError(f"{here}: `{field}` '{col}' is not a column; columns: {', '.join(ds.column_names)}")
            if not isinstance(ds.features[config.image_column], datasets.Image):
                raise UsageError(f"{here}: `image_column` '{config.image_column}' has type "
                                 f"{ds.features[config.image_column]!r}; expected an Image() feature")
            split_labels, names = _labels(ds, config.label_column, config.class_names, here)
            if class_names is not None and names != class_names:
                raise UsageError(f"{here}: class names {names} differ from those of the first split {class_names}")
            class_names = names
            if config.id_column is not None:
                ids.append(np.asarray(column(ds, config.id_column).to_pylist(), dtype=str))
            else:
                ids.append(np.char.add(f"{split}/", np.arange(len(ds)).astype(str)))
            images.extend(column(ds, config.image_column).chunks)
            labels.append(split_labels)
            split_names.append(np.full(len(ds), split))
        table = make_table(
            ids=np.concatenate(ids),
            images=pa.chunked_array(images, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            labels=np.concatenate(labels),
            class_names=class_names,
            splits=np.concatenate(split_names),
        )
        validate_table(table, where=where)
        return table

    def fingerprint(self, config: Config) -> str | None:
        """Local folders only; a Hub dataset is identified by its id and ``revision`` (pin it)."""
        local = Path(config.path).expanduser()
        if local.is_dir():
            return stat_fingerprint((p for p in local.rglob("*") if p.is_file()), root=local)
        return None
