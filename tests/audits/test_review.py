"""Review tags -> decisions (audits.review): the vocabulary, precedence and contradictions."""

import numpy as np
import pytest

from audits.review import is_review_tag, resolve_review, review_tags

CLASSES = ["cat", "dog", "ship"]
#            0      1      2      3      4      5
IDS = np.array(["a", "b", "c", "d", "e", "f"])
LABELS = np.array([0, 0, 1, 1, 2, 2])
FLAGGED = np.array([True, True, True, False, True, False])
SUGGESTED = np.array([1, 2, 0, 1, 0, 2])
SEVERITY = np.array(["minor", "major", "major", "", "borderline", ""], dtype=object)


def decide(tags, **kw):
    return resolve_review(IDS, LABELS, FLAGGED, SUGGESTED, SEVERITY, tags, class_names=CLASSES, **kw)


def test_vocabulary_filters_and_normalises_tags():
    assert is_review_tag("Confirmed") and is_review_tag("relabel:dog") and is_review_tag("MAJOR")
    assert not is_review_tag("validation") and not is_review_tag("relabel")
    assert review_tags({"a": ["Keep", "mine"], "b": ["todo"], "c": ["relabel:dog", "major"]}) == \
        {"a": ["keep"], "c": ["major", "relabel:dog"]}


def test_untagged_flags_are_kept_unless_unreviewed_apply():
    kept = decide({})
    assert not kept.drop.any() and not kept.relabeled.any() and not kept.confirmed.any()
    applied = decide({}, unreviewed="apply", action="relabel")
    np.testing.assert_array_equal(applied.new_label, np.where(FLAGGED, SUGGESTED, LABELS))
    np.testing.assert_array_equal(applied.relabeled, FLAGGED)
    np.testing.assert_array_equal(decide({}, unreviewed="apply").drop, FLAGGED)


def test_each_tag_does_what_the_vocabulary_says():
    tags = {"a": ["confirmed"], "b": ["keep"], "c": ["relabel:ship"], "d": ["drop"], "e": ["confirmed", "major"],
            "f": ["confirmed"], "zz": ["drop"]}
    relabel = decide(tags, action="relabel", unreviewed="apply")
    np.testing.assert_array_equal(relabel.drop, [False, False, False, True, False, False])
    np.testing.assert_array_equal(relabel.new_label, [1, 0, 2, 1, 0, 2])  # a: suggested; c: the tag's class
    np.testing.assert_array_equal(relabel.confirmed, [True, False, True, True, True, False])
    np.testing.assert_array_equal(relabel.reviewed, [True] * 6)
    # `keep` wins over `unreviewed: apply`; `confirmed` on an unflagged row decides nothing
    assert relabel.ignored == ["f"] and relabel.outside == ["zz"]
    # the major slice: confirmed and major, with the reviewer's severity override on e
    np.testing.assert_array_equal(relabel.major, [False, False, True, False, True, False])
    drop = decide(tags, action="drop")
    np.testing.assert_array_equal(drop.drop, [True, False, False, True, True, False])  # c is relabeled, not dropped
    np.testing.assert_array_equal(drop.relabeled, [False, False, True, False, False, False])


def test_relabel_to_the_given_class_is_a_keep():
    d = decide({"a": ["relabel:cat"]}, action="drop", unreviewed="apply")
    assert not d.drop[0] and not d.confirmed[0] and d.reviewed[0] and d.new_label[0] == 0


@pytest.mark.parametrize(("tags", "message"), [
    ({"a": ["keep", "drop"]}, "sample 'a' has contradicting review tags"),
    ({"a": ["relabel:dog", "relabel:ship"]}, "contradicting"),
    ({"a": ["major", "minor"]}, "contradicting"),
    ({"a": ["keep", "confirmed"]}, "both 'keep' and 'confirmed'"),
    ({"b": ["relabel:horse"]}, r"sample 'b' is tagged 'relabel:horse' but 'horse' is not a class \(classes: cat"),
])
def test_contradicting_or_unknown_tags_name_the_sample(tags, message):
    with pytest.raises(ValueError, match=message):
        decide(tags)


def test_bad_options_and_lengths():
    with pytest.raises(ValueError, match="`action` must be one of"):
        decide({}, action="fix")
    with pytest.raises(ValueError, match="`flagged` has 5 rows but `ids` has 6"):
        resolve_review(IDS, LABELS, FLAGGED[:5], SUGGESTED, SEVERITY, {}, class_names=CLASSES)
