"""An executor's output shards on disk: written atomically as they finish, found again on a rerun.

A shard is named by a digest of the run's ``signature`` (what determines the outputs, e.g. the step's cache
key) and the table rows it holds, and it stores those rows next to the arrays, so a rerun reuses a shard only
when both match: a changed model or selection recomputes it, and a half-written shard never exists (the
temp-file-and-rename of :func:`curate.workspace.atomic_write`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from curate import workspace

ROWS = "__rows"


class ShardStore:
    """The shards of one executor call in ``folder``, keyed by ``signature`` and each shard's rows."""

    def __init__(self, folder: str | Path, *, signature: str):
        self.folder = Path(folder)
        self.signature = signature

    def path(self, rows: np.ndarray) -> Path:
        digest = hashlib.sha256(self.signature.encode() + b"\0" + np.asarray(rows, np.int64).tobytes())
        return self.folder / f"shard-{digest.hexdigest()[:24]}.npz"

    def load(self, rows: np.ndarray) -> dict[str, np.ndarray] | None:
        """The stored outputs of ``rows``, or None when no intact shard holds exactly them."""
        path = self.path(rows)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
        except (OSError, ValueError):
            return None
        if not np.array_equal(arrays.pop(ROWS, None), rows):
            return None
        return arrays

    def save(self, rows: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{ROWS: np.asarray(rows, np.int64)}, **arrays)

        workspace.atomic_write(self.path(rows), write)
