"""Label-map storage: top-k maps in safetensors shards, plus an index from sample id to (shard, offset).

A label-map folder holds ``shard-00000.safetensors``, ``shard-00001.safetensors``, ... and
``index.json``. Each shard holds, for its n samples, ``scores`` float16 (n, k, h, w),
``classes`` uint16 (n, k, h, w) and the per-image arrays of the annotation
(``global_probs`` (n, K), ``label_scores`` (n, K), float32); its metadata names the
sample ids (JSON list, row order) and the annotation's ``signature``. Shards are written
atomically one at a time, so an interrupted annotation keeps every finished shard, and a
rerun with the same signature skips them. ``index.json`` is written last and records the
format, k, h, w, K, class names, the annotator, whether the values are logits, the
fill value for classes not stored, every shard's content digest, and ``{id: [shard, offset]}``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from curate import workspace
from curate.errors import UsageError
from curate.relabel.maps import TopKMaps

FORMAT = "curate.label_maps"
FORMAT_VERSION = 1
INDEX_FILE = "index.json"
MAP_ARRAYS = ("scores", "classes")


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.safetensors"


@dataclass(frozen=True)
class LabelMapInfo:
    """What every shard of one annotation shares; ``signature`` identifies the annotation's inputs."""

    num_classes: int
    top_k: int
    height: int
    width: int
    class_names: list[str] | None = None
    annotator: dict[str, Any] = field(default_factory=dict)
    values: str = "logits"
    fill_value: float = 0.0
    signature: str = ""


def write_shard(path: Path, *, ids: Sequence[str], arrays: dict[str, np.ndarray], signature: str) -> str:
    """Write one shard atomically; ``arrays`` holds ``scores``, ``classes`` and per-image extras.

    Returns the shard's content digest (also stored in its metadata): safetensors orders
    metadata keys arbitrarily, so the file bytes are no fingerprint.
    """
    from safetensors.numpy import save_file

    ids = [str(i) for i in ids]
    tensors = {name: np.ascontiguousarray(values) for name, values in arrays.items()}
    tensors["scores"] = tensors["scores"].astype(np.float16, copy=False)
    tensors["classes"] = tensors["classes"].astype(np.uint16, copy=False)
    for name, values in tensors.items():
        if len(values) != len(ids):
            raise ValueError(f"shard array `{name}` has {len(values)} rows but there are {len(ids)} ids")
    digest = hashlib.sha256(json.dumps([ids, signature]).encode())
    for name in sorted(tensors):
        digest.update(f"{name}:{tensors[name].dtype}:{tensors[name].shape}".encode())
        digest.update(tensors[name].tobytes())
    content = digest.hexdigest()
    metadata = {"format": FORMAT, "ids": json.dumps(ids), "signature": signature, "content_sha256": content}
    workspace.atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return content


def shard_header(path: Path) -> dict[str, Any] | None:
    """``{"ids": [...], "signature": ..., "sha256": content digest}`` of a finished shard, or None if
    missing or unreadable."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
    except Exception:  # a foreign or damaged file is recomputed, never trusted
        return None
    if meta.get("format") != FORMAT:
        return None
    return {"ids": json.loads(meta["ids"]), "signature": meta.get("signature", ""),
            "sha256": meta.get("content_sha256", "")}


def write_index(folder: Path, info: LabelMapInfo, shards: list[dict[str, Any]]) -> str:
    """Write ``index.json`` for ``shards`` ([{"file", "ids", "sha256"}], in order); returns its sha256.

    Its sha256 fingerprints the whole folder, since it lists every shard's content digest.
    """
    index: dict[str, list[int]] = {}
    for number, shard in enumerate(shards):
        for offset, sid in enumerate(shard["ids"]):
            if sid in index:
                raise ValueError(f"sample id {sid!r} appears twice in the label maps")
            index[sid] = [number, offset]
    body = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **asdict(info),
        "rows": len(index),
        "shards": [{"file": s["file"], "rows": len(s["ids"]), "sha256": s["sha256"]} for s in shards],
        "index": index,
    }
    return workspace.write_json(Path(folder) / INDEX_FILE, body)


class LabelMapStore:
    """Read access to a label-map folder: ``info``, ``ids``, and maps or per-image arrays by sample id."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / INDEX_FILE
        if not path.is_file():
            raise UsageError(f"{str(self.folder)!r} holds no label maps ({INDEX_FILE} is missing); "
                             "run the `relabel` step that writes them")
        body = json.loads(path.read_text())
        if body.get("format") != FORMAT:
            raise UsageError(f"{path}: not a curate label-map index (format {body.get('format')!r})")
        if body.get("format_version", 0) > FORMAT_VERSION:
            raise UsageError(f"{path}: written by a newer curate (format_version {body['format_version']})")
        names = {f for f in LabelMapInfo.__dataclass_fields__}
        self.info = LabelMapInfo(**{k: v for k, v in body.items() if k in names})
        self.shards = [s["file"] for s in body["shards"]]
        self._index = body["index"]
        self.ids = np.asarray(list(self._index), dtype=str)

    def __len__(self) -> int:
        return len(self._index)

    def check_classes(self, class_names: Sequence[str]) -> None:
        """Refuse maps annotated over other classes than ``class_names`` (the table's)."""
        names = self.info.class_names
        if self.info.num_classes != len(class_names) or (names is not None and list(names) != list(class_names)):
            raise UsageError(f"the label maps in {str(self.folder)!r} score {self.info.num_classes} classes "
                             f"({(names or [])[:3]}...) but the table has {len(class_names)} "
                             f"({list(class_names)[:3]}...); annotate with a model over the table's classes")

    def locate(self, ids: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(shard, offset)`` int arrays of ``ids``; an id without a map is a usage error."""
        ids = np.asarray(ids, dtype=str)
        missing = [i for i in ids.tolist() if i not in self._index]
        if missing:
            raise UsageError(f"{len(missing)} of {len(ids)} samples have no label map (e.g. {missing[0]!r}); "
                             "annotate the split you train on (the relabel step's `split`)")
        where = np.array([self._index[i] for i in ids.tolist()], dtype=np.int64).reshape(-1, 2)
        return where[:, 0], where[:, 1]

    def read(self, ids: Sequence[str] | np.ndarray | None = None) -> TopKMaps:
        """Top-k maps of ``ids`` (all, in index order, by default): float16 scores and uint16 classes."""
        scores, classes = (self._gather(name, ids) for name in MAP_ARRAYS)
        return TopKMaps(torch.from_numpy(scores), torch.from_numpy(classes))

    def read_array(self, name: str, ids: Sequence[str] | np.ndarray | None = None) -> np.ndarray:
        """A per-image array of the annotation (``global_probs``, ``label_scores``) for ``ids``."""
        return self._gather(name, ids)

    def _gather(self, name: str, ids: Sequence[str] | np.ndarray | None) -> np.ndarray:
        from safetensors import safe_open

        shard, offset = self.locate(self.ids if ids is None else ids)
        out: np.ndarray | None = None
        for number in np.unique(shard):
            with safe_open(str(self.folder / self.shards[number]), framework="np") as f:
                if name not in f.keys():
                    raise KeyError(f"label-map shard {self.shards[number]} has no array `{name}` "
                                   f"(it has: {', '.join(f.keys())})")
                values = f.get_tensor(name)
            rows = shard == number
            if out is None:
                out = np.empty((len(shard), *values.shape[1:]), dtype=values.dtype)
            out[rows] = values[offset[rows]]
        if out is None:
            raise UsageError("no sample ids given to read label maps for")
        return out


def signature_of(obj: Any) -> str:
    """A stable digest of a JSON-able description of an annotation's inputs."""
    return workspace.json_sha256(obj)
