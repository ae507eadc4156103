"""``npz``: image and label arrays, as one ``.npz`` or as ``.npy`` files.

``path`` is a ``.npz`` with keys ``images``, ``labels`` and optionally ``ids``; or a
folder holding ``images.npy``, ``labels.npy`` (and optionally ``ids.npy``); or a prefix
``P`` such that ``Pimages.npy`` etc. exist (``data/train_`` -> ``data/train_images.npy``).
Images are uint8 ``(N, H, W, 3)`` or grayscale ``(N, H, W)`` / ``(N, H, W, 1)``;
they are stored losslessly as PNG (grayscale stays one channel; decoding gives RGB).
Nothing is unpickled (``allow_pickle=False``).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from curate.config import ConfigValueError, option
from curate.data.sources import Source, read_class_names, stat_fingerprint
from curate.data.table import make_table, validate_table
from curate.errors import UsageError

KEYS = ("images", "labels", "ids")


def _files(path: Path) -> dict[str, Path] | None:
    """The ``.npy`` file of each key present, for a folder or a prefix; None when ``path`` is neither."""
    if path.is_dir():
        files = {k: path / f"{k}.npy" for k in KEYS}
    else:
        files = {k: path.with_name(f"{path.name}{k}.npy") for k in KEYS}
    files = {k: f for k, f in files.items() if f.is_file()}
    return files or None


def _read(path: Path, where: str) -> dict[str, np.ndarray]:
    files = None if path.is_file() else _files(path)
    if files is None and not (path.is_file() and path.suffix == ".npz"):
        state = "is not a .npz file" if path.is_file() else "does not exist"
        raise UsageError(f"npz source: `path` '{path}' {state} (expected a .npz file, a folder with "
                         "images.npy and labels.npy, or a prefix of such files)")
    try:
        if files is None:
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in KEYS if k in npz.files}
        return {k: np.load(f, allow_pickle=False, mmap_mode="r") for k, f in files.items()}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:  # corrupt files, object arrays
        raise UsageError(f"{where}: cannot read the arrays ({exc})") from exc


def _check(arrays: dict[str, np.ndarray], where: str) -> None:
    for key in ("images", "labels"):
        if key not in arrays:
            raise UsageError(f"{where}: no `{key}` array (found: {', '.join(arrays) or 'none'})")
    images, labels = arrays["images"], arrays["labels"]
    if images.dtype != np.uint8:
        raise UsageError(f"{where}: `images` has dtype {images.dtype}; expected uint8 (N, H, W, 3) or (N, H, W)")
    if not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] in (1, 3))):
        raise UsageError(f"{where}: `images` has shape {images.shape}; expected (N, H, W, 3) or (N, H, W)")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UsageError(f"{where}: `labels` must be 1-D integers, got dtype {labels.dtype} and shape {labels.shape}")
    for key in ("labels", "ids"):
        if key in arrays and len(arrays[key]) != len(images):
            raise UsageError(f"{where}: `{key}` has {len(arrays[key])} rows but `images` has {len(images)}")


class NpzSource(Source):
    """Arrays on disk; class names given inline or as a JSON list."""

    @dataclass(frozen=True, kw_only=True)
    class Config:
        kind: Literal["npz"] = "npz"
        path: Path = option(help="a .npz file, a folder with images.npy + labels.npy, or a prefix of those files")
        class_names: tuple[str, ...] | None = option(None, help="class names, label i = class_names[i]")
        classes_file: Path | None = option(None, help="JSON list of class names (instead of class_names)")
        split: str = option("train", help="split name of every row")

        def __post_init__(self) -> None:
            if (self.class_names is None) == (self.classes_file is None):
                raise ConfigValueError("class_names", "give exactly one of `class_names` and `classes_file`")
            if self.class_names is not None and len(set(self.class_names)) != len(self.class_names):
                raise ConfigValueError("class_names", f"class names must be distinct, got {list(self.class_names)}")

    def load(self, config: Config, *, cache_dir: Path, progress: bool = True):
        where = f"npz source '{config.path}'"
        path = Path(config.path).expanduser()
        class_names = (config.class_names if config.classes_file is None
                       else read_class_names(config.classes_file, where="npz source"))
        arrays = _read(path, where)
        _check(arrays, where)
        n = len(arrays["images"])
        ids = arrays["ids"].astype(str) if "ids" in arrays else np.char.add(f"{config.split}/", np.arange(n).astype(str))
        table = make_table(ids=ids, images=np.asarray(arrays["images"]), labels=arrays["labels"],
                           class_names=class_names, splits=config.split, progress=progress)
        validate_table(table, where=where)
        return table

    def fingerprint(self, config: Config) -> str | None:
        path = Path(config.path).expanduser()
        files = [path] if path.is_file() else list((_files(path) or {}).values())
        if config.classes_file is not None:
            files.append(Path(config.classes_file).expanduser())
        return stat_fingerprint(f for f in files if f.is_file())
