"""``imagefolder``: ``root/<split>/<class>/<image>`` or ``root/<class>/<image>``.

Images are stored as path references (not copied); ids are the path relative to the
root, in posix form. Unreadable files (corrupt, truncated, empty, not an image, over PIL's
decompression-bomb limit) and broken or looping symlinks are skipped: counted, listed in the source
step's ``skipped.txt`` and reported in one warning, since one bad file in a big folder should not stop a run.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from curate.config import ConfigValueError, option
from curate.data._parallel import thread_map
from curate.data.sources import Source, existing_path, stat_fingerprint
from curate.data.table import make_table, validate_table
from curate.errors import UsageError

log = logging.getLogger(__name__)

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
SHOW_SKIPPED = 5


def _entries(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def _kind(entry: os.DirEntry) -> str:
    """"dir", "file", or "broken" for a symlink that loops or points nowhere (stat fails)."""
    try:
        return "dir" if entry.is_dir() else "file" if entry.is_file() else "broken"
    except OSError:
        return "broken"


def _subdirs(folder: Path) -> list[str]:
    return [e.name for e in _entries(folder) if _kind(e) == "dir"]


def _empty_class_folders(root: Path, rows: list[tuple[str, str, str]]) -> list[str]:
    """Folders beside the class folders that were read but hold no image: reported, since a class a user
    expects would otherwise vanish from the table without a word."""
    used = {Path(r).parent for _, _, r in rows}
    return sorted((c / d).as_posix() for c in {p.parent for p in used} for d in _subdirs(root / c) if c / d not in used)


def _images(folder: Path, extensions: tuple[str, ...]) -> list[str]:
    """Files with an image ending, and broken symlinks with one (kept so they are counted as skipped)."""
    return [e.name for e in _entries(folder) if _kind(e) != "dir" and e.name.lower().endswith(extensions)]


def _problem(path: Path) -> str | None:
    """Why PIL cannot read the file (None when it can): identify, verify, then a full decode, since a
    truncated file can pass ``verify`` and fail only when its pixels are read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.draft("RGB", (1, 1))  # JPEG: decode at 1/8 scale, which still reads every byte
            im.load()
        return None
    except Image.DecompressionBombError as exc:
        return f"over the decompression-bomb limit ({exc})".splitlines()[0]
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]


class ImageFolderSource(Source):
    """One class per folder; the folder names are the class names unless given."""

    @dataclass(frozen=True, kw_only=True)
    class Config:
        kind: Literal["imagefolder"] = "imagefolder"
        path: Path = option(help="root folder: root/<split>/<class>/* or root/<class>/*")
        split: str | tuple[str, ...] | None = option(
            None, help="split layout: the split folders to read (default all); flat layout: the split name (default train)")
        extensions: tuple[str, ...] = option(EXTENSIONS, help="file endings counted as images (case-insensitive)")
        class_names: tuple[str, ...] | None = option(None, help="class order (default: sorted folder names)")
        verify: bool = option(True, help="decode every image once and skip unreadable ones (listed in skipped.txt)")

        def __post_init__(self) -> None:
            if not self.extensions:
                raise ConfigValueError("extensions", "expected at least one file ending, got []")
            if self.class_names is not None and len(set(self.class_names)) != len(self.class_names):
                raise ConfigValueError("class_names", f"class names must be distinct, got {list(self.class_names)}")

    def _scan(self, config: Config, root: Path, where: str) -> list[tuple[str, str, str]]:
        """``(split, class folder, relative path)`` of every image, in sorted order."""
        extensions = tuple(e.lower() for e in config.extensions)
        top = _subdirs(root)
        flat = any(_images(root / d, extensions) for d in top)
        wanted = (config.split,) if isinstance(config.split, str) else config.split
        if flat:
            if wanted is not None and len(wanted) != 1:
                raise UsageError(f"{where}: `split` {list(wanted)} names several splits, but the folder has the "
                                 "flat layout root/<class>/<image>; give one split name")
            split = wanted[0] if wanted else "train"
            return [(split, c, f"{c}/{f}") for c in top for f in _images(root / c, extensions)]
        if wanted is not None:
            missing = [s for s in wanted if s not in top]
            if missing:
                raise UsageError(f"{where}: `split` '{missing[0]}' has no folder; "
                                 f"split folders: {', '.join(top) or 'none'}")
        return [(s, c, f"{s}/{c}/{f}") for s in (wanted or top) for c in _subdirs(root / s)
                for f in _images(root / s / c, extensions)]

    def load(self, config: Config, *, cache_dir: Path, progress: bool = True):
        where = f"imagefolder '{config.path}'"
        root = existing_path(config.path, where="imagefolder source").resolve()
        if not root.is_dir():
            raise UsageError(f"imagefolder source: `path` '{config.path}' is not a folder")
        rows = self._scan(config, root, where)
        folders = sorted({c for _, c, _ in rows})
        class_names = list(config.class_names) if config.class_names is not None else folders
        unknown = [c for c in folders if c not in class_names]
        if unknown:
            raise UsageError(f"{where}: class folder '{unknown[0]}' is not in `class_names` "
                             f"({', '.join(class_names)}); add it or remove the folder")
        empty = _empty_class_folders(root, rows)
        classless = [c for c in class_names if c not in folders]
        if empty or classless:
            log.warning("%s: %s", where, "; ".join(
                [f"class folder(s) without images, not read: {', '.join(empty)}"] * bool(empty) +
                [f"class(es) of `class_names` with no images: {', '.join(classless)}"] * bool(classless)))
        if config.verify and rows:
            problems = thread_map(_problem, [root / r for _, _, r in rows], progress=progress, desc="verify images")
            self.skipped = [(r, why) for (_, _, r), why in zip(rows, problems) if why is not None]
            if self.skipped:
                log.warning("%s: skipped %d unreadable image(s) of %d: %s%s", where, len(self.skipped), len(rows),
                            ", ".join(r for r, _ in self.skipped[:SHOW_SKIPPED]),
                            ", ..." if len(self.skipped) > SHOW_SKIPPED else "")
                rows = [row for row, why in zip(rows, problems) if why is None]
        index = {name: i for i, name in enumerate(class_names)}
        paths = [root / r for _, _, r in rows]
        table = make_table(
            ids=[r for _, _, r in rows],
            images=paths,
            labels=[index[c] for _, c, _ in rows],
            class_names=class_names,
            splits=[s for s, _, _ in rows],
            paths=paths,
        )
        validate_table(table, where=where)
        return table

    def fingerprint(self, config: Config) -> str | None:
        root = Path(config.path).expanduser().resolve()
        if not root.is_dir():
            return None
        try:  # exactly the files a load reads; a folder the scan refuses is left for load to report
            rows = self._scan(config, root, f"imagefolder '{config.path}'")
        except UsageError:
            return None
        return stat_fingerprint((root / r for _, _, r in rows), root=root)
