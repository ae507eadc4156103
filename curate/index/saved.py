"""Reading an index written by :meth:`~curate.index.faiss_index.SimilarityIndex.save`: the FAISS file is
checked against its sidecar JSON (format, kind, metric, size, vector count, ids) before it is trusted."""

from __future__ import annotations

import json
import os
from pathlib import Path

from curate.errors import UsageError
from curate.index.calibrate import Calibration
from curate.index.faiss_index import METRICS, SIDECAR_FORMAT, SimilarityIndex, sidecar_path
from curate.index.kinds import INDEX_KINDS, index_kind


def load_index(path: str | os.PathLike) -> SimilarityIndex:
    """Read an index written by :meth:`SimilarityIndex.save`, checking it against its sidecar."""
    import faiss

    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file():
        raise UsageError(f"no index file at {path}")
    if not side.is_file():
        raise UsageError(f"index {path} has no sidecar {side.name}: it was not saved by curate "
                         "(SimilarityIndex.save writes both); rebuild it with `curate index build` "
                         "or build_index(...).save()")
    try:
        info = json.loads(side.read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"sidecar {side} is not valid JSON ({err}); rebuild the index") from None
    required = ("format", "kind", "metric", "dim", "ntotal", "params", "ids")
    if not isinstance(info, dict) or info.get("format") != SIDECAR_FORMAT or any(k not in info for k in required):
        raise UsageError(f"sidecar {side} is not a {SIDECAR_FORMAT} sidecar (needs keys {', '.join(required)}); "
                         "rebuild the index")
    if info["kind"] not in INDEX_KINDS or info["metric"] not in METRICS:
        raise UsageError(f"sidecar {side} names kind {info['kind']!r} and metric {info['metric']!r}; "
                         f"known kinds: {', '.join(INDEX_KINDS.names())}; metrics: {', '.join(METRICS)}")
    size = path.stat().st_size
    if info.get("index_bytes") is not None and info["index_bytes"] != size:
        raise UsageError(f"index {path} has {size} bytes but its sidecar records {info['index_bytes']}: "
                         "the two were not written together; rebuild the index")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"cannot read FAISS index {path}: {first}") from None
    problems = []
    if int(index.d) != info["dim"]:
        problems.append(f"dim {index.d} in the index, {info['dim']} in the sidecar")
    if int(index.ntotal) != info["ntotal"]:
        problems.append(f"{index.ntotal} vectors in the index, {info['ntotal']} in the sidecar")
    if info["ids"] is not None and len(info["ids"]) != info["ntotal"]:
        problems.append(f"{len(info['ids'])} ids for {info['ntotal']} vectors in the sidecar")
    expected_metric = faiss.METRIC_INNER_PRODUCT if info["metric"] == "cosine" else faiss.METRIC_L2
    if int(index.metric_type) != expected_metric:
        problems.append(f"the index's FAISS metric does not match {info['metric']!r}")
    if not type(index).__name__.startswith(index_kind(info["kind"]).faiss_class):
        problems.append(f"a {type(index).__name__} is not a {info['kind']!r} index")
    if problems:
        raise UsageError(f"index {path} does not match its sidecar {side.name}: {'; '.join(problems)}; "
                         "rebuild the index")
    calibration = Calibration.from_dict(info["calibration"]) if info.get("calibration") else None
    return SimilarityIndex(index, kind=info["kind"], metric=info["metric"], ids=info["ids"], params=info["params"],
                           meta=info.get("meta") or {}, calibration=calibration)
