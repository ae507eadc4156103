"""Run-directory layout, the one atomic-write helper, step manifests and the run lock.

Every file curate writes goes through :func:`atomic_write`: the content is written
to a temporary name in the destination folder, fsynced, and moved into place with
``os.replace``, so a crash leaves either the old file or the new one, never half of
one. Folders are built as ``name.partial/`` and renamed when complete
(:func:`atomic_dir`). A step is complete only once its ``step.json`` is written,
last, through the same helper.

Every commit goes through :func:`_replace_into_place`, the one seam crash tests use to make the
n-th commit fail (the ``write_faults`` fixture in tests/conftest.py); production code never
touches it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from curate.errors import RunLocked, UsageError

MANIFEST = "step.json"
_UMASK = os.umask(0)
os.umask(_UMASK)
LOCK_FILE = ".lock"


def _replace_into_place(src: Path, dst: Path) -> None:
    """Commit a finished temporary file or folder: the testing seam for crashes at a commit."""
    os.replace(src, dst)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[^/]*)?$")
"""Names :func:`atomic_write` gives its temporary files (``mkstemp`` adds 8 random characters)."""


def remove_stale_writes(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary files that a killed process left mid-write under ``folder`` (call it holding the
    run lock, so no live writer owns them); returns what it removed."""
    stale = [p for p in Path(folder).rglob(".*.tmp*") if _TEMPORARY.match(p.name) and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], Any]) -> str:
    """Write ``path`` atomically; ``writer(tmp_path)`` produces the file. Returns its sha256.

    ``writer`` may be any function that writes a file at a path it is given
    (``np.save``, ``safetensors.save_file``, ``fig.savefig``...).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp name keeps the real suffix: writers such as np.save and savefig key off it.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get the usual permissions
        digest = file_sha256(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _replace_into_place(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # e.g. a full disk: say which file it hit
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    _fsync_dir(path.parent)
    return digest


def write_bytes(path: str | os.PathLike, data: bytes) -> str:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | os.PathLike, text: str) -> str:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> str:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_npy(path: str | os.PathLike, array: Any) -> str:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return write_bytes(path, buf.getvalue())


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a folder as ``path.partial/`` and rename it to ``path`` on success."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    old = path.with_name(path.name + ".old")
    try:
        yield partial
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        _replace_into_place(partial, path)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if old.exists() and not path.exists():  # a failed commit keeps the previous folder
            os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(path.parent)


def json_sha256(obj: Any) -> str:
    """A stable digest of a JSON-able description (keys sorted; other values by ``str``): cache keys,
    resume keys, annotation signatures."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_sha256(path: str | os.PathLike) -> str:
    """Fingerprint of a folder: names and contents of every file, in sorted order."""
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def inside(root: str | os.PathLike, relative: str | os.PathLike, *, what: str = "path") -> Path:
    """``root / relative``, refusing anything that would land outside ``root``."""
    root = Path(root).resolve()
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        raise UsageError(f"`{what}` {str(relative)!r} points outside the run directory {root}; "
                         "curate writes only inside the run directory")
    return target


# --- manifests -------------------------------------------------------------------


def read_manifest(step_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The step's ``step.json``, or None when the step never completed."""
    path = Path(step_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_manifest(step_dir: str | os.PathLike, manifest: dict[str, Any]) -> None:
    write_json(Path(step_dir) / MANIFEST, manifest)


def invalidate_manifest(step_dir: str | os.PathLike) -> None:
    (Path(step_dir) / MANIFEST).unlink(missing_ok=True)


# --- lock ------------------------------------------------------------------------


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the run directory; the kernel frees it if we die."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_path = run_dir / LOCK_FILE
    fh = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise RunLocked(f"run directory {run_dir} is in use by another curate process (pid {holder}); "
                            "wait for it to finish or stop it") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            fh.seek(0)
            fh.truncate()
        fh.close()
