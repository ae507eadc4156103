"""Data sources: each turns something the user points at into a validated sample table.

A source is a class registered in :data:`SOURCES` with a frozen ``Config`` dataclass
whose first field is ``kind: Literal["<name>"]`` (a recipe's ``with.kind`` picks the
source), a ``load(config, *, cache_dir, progress)`` method and a cheap
``fingerprint(config)`` of what it reads from outside the run. Sources only read: they
never write next to the data they load, and every cache goes into ``cache_dir``.
Built-ins are dotted paths, so naming a source imports only that one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable

from curate.errors import UsageError
from curate.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    import datasets


class Source:
    """Base class of data sources."""

    Config: ClassVar[type]
    skipped: list[tuple[str, str]]
    """Inputs the last ``load`` left out, as (path relative to the source, why): the step lists them."""

    def __init__(self) -> None:
        self.skipped = []

    def load(self, config: Any, *, cache_dir: Path, progress: bool = True) -> "datasets.Dataset":  # pragma: no cover
        raise NotImplementedError

    def fingerprint(self, config: Any) -> str | None:
        """A cheap fingerprint (names, sizes, mtimes) of the files read; None when the config alone identifies the data."""
        return None


SOURCES: Registry[type[Source]] = Registry("data source", entry_point_group="curate.sources")
SOURCES.register("demo", "curate.data.sources.demo:DemoSource")
SOURCES.register("imagefolder", "curate.data.sources.imagefolder:ImageFolderSource")
SOURCES.register("hf", "curate.data.sources.hf:HFSource")
SOURCES.register("npz", "curate.data.sources.npz:NpzSource")


def source_config_class(kind: str) -> type:
    """The ``Config`` dataclass of the source named ``kind``."""
    return SOURCES.get(kind).Config


def load_source(config: Any, *, cache_dir: str | os.PathLike, progress: bool = True,
                skipped: list[tuple[str, str]] | None = None) -> "datasets.Dataset":
    """Load the sample table that ``config`` (any source's ``Config``) describes; the inputs it skipped
    (path, why) are appended to ``skipped`` when given."""
    source = SOURCES.get(config.kind)()
    table = source.load(config, cache_dir=Path(cache_dir), progress=progress)
    if skipped is not None:
        skipped.extend(source.skipped)
    return table


def source_fingerprint(config: Any) -> str | None:
    """:meth:`Source.fingerprint` of the source ``config`` names."""
    return SOURCES.get(config.kind)().fingerprint(config)


# --- helpers shared by the sources ----------------------------------------------------


def existing_path(path: str | os.PathLike, *, where: str, field: str = "path") -> Path:
    """``path`` (user-expanded) if it exists, else a one-line UsageError naming the field."""
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise UsageError(f"{where}: `{field}` '{path}' does not exist")
    return resolved


def read_class_names(path: str | os.PathLike, *, where: str, field: str = "classes_file") -> tuple[str, ...]:
    """Class names from a JSON list of strings."""
    file = existing_path(path, where=where, field=field)
    try:
        names = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{where}: `{field}` '{path}' is not readable JSON ({exc})") from exc
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise UsageError(f"{where}: `{field}` '{path}' must hold a non-empty JSON list of class-name strings")
    return tuple(names)


def stat_fingerprint(paths: Iterable[Path], *, root: Path | None = None) -> str:
    """sha256 over (name, size, mtime) of files: detects edits without reading the bytes. A path that
    cannot be stat'ed (a broken or looping symlink) counts by its name alone."""
    h = hashlib.sha256()
    for p in sorted(paths):
        try:
            st = p.stat()
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size = mtime = -1
        name = p.relative_to(root).as_posix() if root else str(p)
        h.update(f"{name}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()
