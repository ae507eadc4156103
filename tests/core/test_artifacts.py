"""The one id join: stored ids to table rows, and its one-line error."""

import numpy as np
import pytest

from curate.artifacts import locate_ids, require_ids
from curate.errors import UsageError


def test_locate_ids_finds_each_row_and_marks_the_missing_ones():
    reference = np.array(["c", "a", "b", "d"])
    rows, found = locate_ids(["b", "x", "c", "d", "a"], reference)
    assert found.tolist() == [True, False, True, True, True]
    assert reference[rows[found]].tolist() == ["b", "c", "d", "a"]


def test_locate_ids_against_an_empty_reference_finds_nothing():
    rows, found = locate_ids(["a"], [])
    assert not found.any() and rows.shape == (1,)


def test_require_ids_names_the_artifact_the_example_and_the_fix():
    with pytest.raises(UsageError) as err:
        require_ids(["a", "zz", "yy"], ["a", "b"], what="`pred_probs` ids of step 'p'",
                    where="in the table of step 't'", fix="wire a predict step on this table")
    message = str(err.value)
    assert message.startswith("2 of the 3 `pred_probs` ids of step 'p' are not in the table of step 't'")
    assert "'zz'" in message and message.endswith("wire a predict step on this table")
    assert "\n" not in message
    assert require_ids(["b", "a"], ["a", "b"], what="x", where="y", fix="z").tolist() == [1, 0]
