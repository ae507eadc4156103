"""The reviewer's tag vocabulary, and how tags plus an audit decide a new table version.

Reviewers tag samples in the FiftyOne App (sample tags, any case):

==========================  ==============================================================
``confirmed``               the flagged issue is real: apply the step's ``action`` (relabel
                            to the suggested label, or drop the sample)
``relabel:<class name>``    the right label is ``<class name>``: relabel to it (confirms)
``drop``                    remove the sample (no class fits, unusable image; confirms)
``keep``                    the given label is right: leave the sample as it is
``major`` / ``minor`` /     override the suggested severity (``major`` puts a confirmed
``borderline``              error into the major-errors slice)
==========================  ==============================================================

``relabel:`` and ``drop`` act on any audited sample, flagged or not; ``confirmed`` only on
flagged ones (it confirms the audit's suggestion, and unflagged samples have none). Flagged
samples without ``confirmed``, ``relabel:``, ``drop`` or ``keep`` are *unreviewed*: kept as
they are, or, with ``unreviewed="apply"``, treated as confirmed. Contradicting tags on one
sample (``keep`` with ``drop``, two ``relabel:`` classes, two severities) are an error. Other
tags are ignored, so reviewers may use their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from audits.mistakes import SEVERITIES

CONFIRMED = "confirmed"
KEEP = "keep"
DROP = "drop"
RELABEL_PREFIX = "relabel:"
ACTIONS = ("drop", "relabel")
UNREVIEWED = ("keep", "apply")


def is_review_tag(tag: str) -> bool:
    """Whether ``tag`` belongs to the vocabulary (so adding or removing it changes a decision)."""
    t = tag.strip().lower()
    return t in (CONFIRMED, KEEP, DROP, *SEVERITIES) or t.startswith(RELABEL_PREFIX)


def review_tags(tags: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """``{sample id: tags}`` restricted to the vocabulary (lower-cased, sorted; untagged ids dropped)."""
    out = {}
    for sid, values in tags.items():
        kept = sorted({t.strip().lower() for t in values if is_review_tag(t)})
        if kept:
            out[sid] = kept
    return out


@dataclass(frozen=True, eq=False)
class ReviewDecision:
    """Per audited row (N,): ``drop``; ``new_label`` (the given label unless relabeled);
    ``relabeled`` (kept with a new label); ``confirmed`` (a label error, by a reviewer's tag or,
    with ``unreviewed="apply"``, by the audit); ``reviewed`` (has a deciding tag); ``severity``
    (after overrides; "" unless flagged or overridden); ``major``: confirmed and major (the
    major-errors slice). ``ignored``: ids whose tags decided nothing (``confirmed`` on an
    unflagged row); ``outside``: tagged ids that are not audited rows."""

    drop: np.ndarray
    new_label: np.ndarray
    relabeled: np.ndarray
    confirmed: np.ndarray
    reviewed: np.ndarray
    severity: np.ndarray
    major: np.ndarray
    ignored: list[str]
    outside: list[str]


def _parse(sid: str, tags: list[str], class_index: Mapping[str, int]) -> tuple[str | None, int | None, str | None]:
    """(decision, relabel class, severity) of one sample's vocabulary tags."""
    decisions = [t for t in tags if t in (CONFIRMED, KEEP, DROP)]
    relabels = sorted({t[len(RELABEL_PREFIX):].strip() for t in tags if t.startswith(RELABEL_PREFIX)})
    severities = [t for t in tags if t in SEVERITIES]
    targets = []
    for name in relabels:
        if name not in class_index:
            shown = ", ".join(list(class_index)[:10]) + (", ..." if len(class_index) > 10 else "")
            raise ValueError(f"sample {sid!r} is tagged 'relabel:{name}' but '{name}' is not a class "
                             f"(classes: {shown}); fix the tag")
        targets.append(class_index[name])
    deciding = set(decisions) - {CONFIRMED} | ({"relabel"} if relabels else set())
    if len(targets) > 1 or len(deciding) > 1 or len(severities) > 1:
        raise ValueError(f"sample {sid!r} has contradicting review tags {tags}; leave one of keep, drop, "
                         "relabel:<class> and at most one severity")
    if KEEP in decisions and CONFIRMED in decisions:
        raise ValueError(f"sample {sid!r} is tagged both 'keep' and 'confirmed'; leave one")
    decision = "relabel" if targets else (next(iter(deciding)) if deciding else (CONFIRMED if decisions else None))
    return decision, (targets[0] if targets else None), (severities[0] if severities else None)


def resolve_review(
    ids: Sequence[str] | np.ndarray,
    labels: np.ndarray,
    flagged: np.ndarray,
    suggested: np.ndarray,
    severity: np.ndarray,
    tags: Mapping[str, Sequence[str]],
    *,
    class_names: Sequence[str],
    action: str = "drop",
    unreviewed: str = "keep",
) -> ReviewDecision:
    """Decide each audited row from its tags and the audit (see the module doc for the vocabulary).

    ``ids``, ``labels``, ``flagged``, ``suggested``, ``severity``: (N,) per audited row, as the
    audit wrote them. Raises ValueError naming the sample for an unknown class or
    contradicting tags.
    """
    if action not in ACTIONS:
        raise ValueError(f"`action` must be one of {ACTIONS}, got {action!r}")
    if unreviewed not in UNREVIEWED:
        raise ValueError(f"`unreviewed` must be one of {UNREVIEWED}, got {unreviewed!r}")
    ids = np.asarray(ids, dtype=str)
    labels = np.asarray(labels, dtype=np.int64)
    flagged = np.asarray(flagged, dtype=bool)
    suggested = np.asarray(suggested, dtype=np.int64)
    n = len(ids)
    for name, arr in (("labels", labels), ("flagged", flagged), ("suggested", suggested), ("severity", severity)):
        if len(arr) != n:
            raise ValueError(f"`{name}` has {len(arr)} rows but `ids` has {n}")
    class_index = {name: i for i, name in enumerate(class_names)}
    row_of = {sid: i for i, sid in enumerate(ids.tolist())}

    tagged = review_tags(tags)
    outside = sorted(sid for sid in tagged if sid not in row_of)
    rows = np.array([row_of[sid] for sid in tagged if sid in row_of], dtype=np.int64)
    parsed = [_parse(sid, tagged[sid], class_index) for sid in tagged if sid in row_of]
    decision = np.array([p[0] or "" for p in parsed], dtype=object)
    target = np.array([-1 if p[1] is None else p[1] for p in parsed], dtype=np.int64)
    override = np.array([p[2] or "" for p in parsed], dtype=object)

    reviewed = np.zeros(n, dtype=bool)
    confirmed = flagged.copy() if unreviewed == "apply" else np.zeros(n, dtype=bool)
    reviewed[rows[decision != ""]] = True
    confirmed[rows[decision != ""]] = False  # a reviewer's decision replaces the audit's
    is_relabel = decision == "relabel"
    is_drop = decision == DROP
    confirmed_by_tag = ((decision == CONFIRMED) & flagged[rows]) | is_drop \
        | (is_relabel & (target != labels[rows]))  # relabel to the given class is a keep
    confirmed[rows[confirmed_by_tag]] = True
    ignored_rows = rows[(decision == CONFIRMED) & ~flagged[rows]]

    # `action` applies to confirmed rows without an explicit drop or relabel tag
    by_action = confirmed.copy()
    by_action[rows[is_relabel | is_drop]] = False
    drop = by_action.copy() if action == "drop" else np.zeros(n, dtype=bool)
    drop[rows[is_drop]] = True
    new_label = labels.copy()
    if action == "relabel":
        new_label[by_action] = suggested[by_action]
    new_label[rows[is_relabel]] = target[is_relabel]
    sev = np.asarray(severity, dtype=object).copy()
    sev[rows[override != ""]] = override[override != ""]
    return ReviewDecision(drop=drop, new_label=new_label, relabeled=~drop & (new_label != labels),
                          confirmed=confirmed, reviewed=reviewed, severity=sev, major=confirmed & (sev == "major"),
                          ignored=sorted(ids[ignored_rows].tolist()), outside=outside)
