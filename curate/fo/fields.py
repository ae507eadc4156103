"""Bulk field writes and reviewer-tag reads, always joined on our sample id (``curate_id``).

Steps that show results in the App own fields named after their step id
(:func:`field_key`), write them with one :func:`set_field_values` call, and read the
reviewer's sample tags back with :func:`read_tags`. N is the number of samples,
K the number of classes.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from curate.fo.database import connect

if TYPE_CHECKING:  # pragma: no cover
    import fiftyone as fo

ID_FIELD = "curate_id"
GROUND_TRUTH = "ground_truth"
# Fields FiftyOne or the mirror already own; a step's field may not take these names.
RESERVED_FIELDS = frozenset(
    {"id", "_id", "filepath", "tags", "metadata", "media_type", "created_at", "last_modified_at",
     ID_FIELD, GROUND_TRUTH, "split", "set"}
)
# log(0) is -inf, which the App cannot show; probabilities are clipped here first.
MIN_PROB = 1e-12


def field_key(step_id: str) -> str:
    """A valid FiftyOne field / brain-run key for ``step_id`` (non-word characters become ``_``)."""
    key = re.sub(r"\W", "_", step_id)
    return key if re.match(r"[A-Za-z]", key) else f"s_{key}"


def check_field_name(name: str, *, what: str = "field") -> None:
    """Refuse names the mirror or FiftyOne already own, and names FiftyOne cannot store."""
    if name in RESERVED_FIELDS:
        raise ValueError(f"{what} `{name}` is reserved by the FiftyOne mirror; "
                         f"reserved names: {', '.join(sorted(RESERVED_FIELDS))}")
    if not re.fullmatch(r"[A-Za-z]\w*", name):
        raise ValueError(f"{what} `{name}` must start with a letter and contain only letters, digits and `_`")


def set_field_values(dataset: "fo.Dataset", field: str, values: Mapping[str, Any]) -> None:
    """Set ``field`` on the samples named by our ids (``{curate_id: value}``) in one bulk write.

    NumPy scalars are converted to Python values; an id that is not in the dataset is an
    error (FiftyOne names the first one).
    """
    check_field_name(field)
    plain = {str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in values.items()}
    dataset.set_values(field, plain, key_field=ID_FIELD)


def add_predictions(
    dataset: "fo.Dataset",
    field: str,
    pred_probs: np.ndarray,
    ids: Sequence[str] | np.ndarray,
    class_names: Sequence[str],
) -> None:
    """Store ``pred_probs (N, K)`` as ``Classification`` (label, confidence, log-prob logits) in ``field``."""
    fo = connect()
    check_field_name(field)
    pred_probs = np.asarray(pred_probs)
    ids = np.asarray(ids, dtype=str)
    if pred_probs.ndim != 2:
        raise ValueError(f"`pred_probs` must be 2-D (N, K), got shape {pred_probs.shape}")
    if pred_probs.shape[1] != len(class_names):
        raise ValueError(f"`pred_probs` has {pred_probs.shape[1]} columns but there are "
                         f"{len(class_names)} class names")
    if len(ids) != len(pred_probs):
        raise ValueError(f"`ids` has {len(ids)} rows but `pred_probs` has {len(pred_probs)}")
    if not np.isfinite(pred_probs).all():
        raise ValueError("`pred_probs` contains NaN or infinite values")
    best = pred_probs.argmax(axis=1)
    labels = np.asarray(class_names, dtype=object)[best]
    confidence = pred_probs[np.arange(len(best)), best].astype(float)
    logits = np.log(np.clip(pred_probs, MIN_PROB, None)).astype(float)
    values = {
        sid: fo.Classification(label=label, confidence=conf, logits=row)
        for sid, label, conf, row in zip(ids.tolist(), labels.tolist(), confidence.tolist(), logits.tolist())
    }
    dataset.set_values(field, values, key_field=ID_FIELD)


def read_tags(dataset: "fo.Dataset") -> dict[str, list[str]]:
    """The reviewer's sample tags, ``{curate_id: sorted tags}``, for tagged samples only."""
    ids, tags = dataset.values([ID_FIELD, "tags"])
    return {sid: sorted(t) for sid, t in zip(ids, tags) if t}


def tags_fingerprint(tags: Mapping[str, Sequence[str]]) -> str:
    """sha256 of a tag mapping, independent of order: any added or removed tag changes it."""
    canonical = json.dumps({k: sorted(set(v)) for k, v in tags.items() if v}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
