"""audits.audit.audit_dataset and the class-pair signals it uses without a hierarchy."""

import numpy as np
import pytest

from audits.audit import AuditOptions, audit_dataset, candidate_classes
from audits.mistakes import class_similarity, pair_quantiles


def test_centered_centroid_similarity_separates_close_and_far_classes():
    # classes 0 and 1 share a direction; class 2 points elsewhere; all features are positive
    centres = np.array([[5.0, 1.0, 0.0], [5.0, 1.2, 0.2], [5.0, 0.0, 3.0]])
    labels = np.repeat([0, 1, 2], 4)
    x = centres[labels] + np.random.default_rng(0).normal(scale=0.01, size=(12, 3))
    sim = class_similarity(x, labels, num_classes=4, chunk_rows=5)  # chunks cut through classes
    assert sim[0, 1] > 0.5 > sim[0, 2] and sim[1, 0] == pytest.approx(sim[0, 1])
    assert sim[3, :3].tolist() == [0, 0, 0] and sim[3, 3] == 1  # absent class
    q = pair_quantiles(sim)
    assert q[0, 1] == 1.0 and q[0, 2] < q[0, 1] and np.all(np.diag(q) == 1)


def test_pair_quantiles_by_hand_with_ties():
    s = np.array([[1, 0.5, 0.1], [0.5, 1, 0.1], [0.1, 0.1, 1]])
    # three pairs: 0.5 (rank 2) and 0.1 twice (ranks 0 and 1, mean 0.5), over 2
    np.testing.assert_allclose(pair_quantiles(s), [[1, 1, 0.25], [1, 1, 0.25], [0.25, 0.25, 1]])


def test_audit_of_a_planted_flip_flags_it_with_context():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])
    probs = np.full((10, 3), 0.05)
    probs[np.arange(10), labels] = 0.9
    probs[9] = [0.05, 0.9, 0.05]  # labelled 0, clearly a 1
    probs[3] = [0.02, 0.5, 0.48]  # two classes above the threshold
    result = audit_dataset(labels, probs, options=AuditOptions(confused_pairs=2))
    assert np.flatnonzero(result.issues.mask).tolist() == [9]
    assert result.issues.suggested_label[9] == 1 and result.category[9] != "" and result.category[0] == ""
    assert result.multi_label.tolist() == [i == 3 for i in range(10)]
    assert result.confused_pairs.tolist() == [[0, 1, 1]]
    assert result.confusion[0, 1] == 1 and result.confusion.sum() == 10
    assert result.class_pair_signal == "pred_probs" and result.outlier is None
    assert result.per_class_issue_rate.tolist() == pytest.approx([0.25, 0, 0])
    summary = result.summary()
    assert summary["issues"] == 1 and summary["multi_label_candidates"] == 1 and "outliers" not in summary
    classes, probs_3 = candidate_classes(np.array([3]), pred_probs=probs, threshold=0.3)[0]
    assert classes.tolist() == [1, 2] and probs_3.tolist() == pytest.approx([0.5, 0.48])


def test_hierarchy_decides_severity_and_signals_are_shape_checked():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0])
    probs = np.full((11, 3), 0.05)
    probs[np.arange(11), labels] = 0.9
    probs[9] = [0.05, 0.9, 0.05]
    probs[10] = [0.05, 0.05, 0.9]
    distance = np.array([[0, 2, 12], [2, 0, 12], [12, 12, 0]])
    result = audit_dataset(labels, probs, hierarchy_distance=distance)
    assert result.class_pair_signal == "hierarchy"
    assert result.severity[9] == "minor" and result.severity[10] == "major"  # sibling vs far class
    with pytest.raises(ValueError, match=r"`features` must have shape \(11, D\)"):
        audit_dataset(labels, probs, features=np.zeros((10, 4)))
    with pytest.raises(ValueError, match="pass `knn_distances` and `knn_neighbors` together"):
        audit_dataset(labels, probs, knn_distances=np.zeros((11, 2)))
    with pytest.raises(ValueError, match=r"`hierarchy_distance` must be \(3, 3\)"):
        audit_dataset(labels, probs, hierarchy_distance=np.zeros((4, 4)))


def test_label_maps_are_multi_label_evidence_only_when_both_classes_are_in_the_image():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0])
    probs = np.full((11, 3), 0.05)
    probs[np.arange(11), labels] = 0.9
    probs[9] = probs[10] = [0.05, 0.05, 0.9]  # both labelled 0, both clearly a 2
    multi = np.eye(3, dtype=bool)[labels]
    multi[9] = [True, False, True]  # the map shows the given and the predicted class
    multi[10] = [False, False, True]  # only the predicted one (a model's map always has its own guess)
    far = np.array([[0, 12, 12], [12, 0, 12], [12, 12, 0]])
    result = audit_dataset(labels, probs, hierarchy_distance=far, multi_labels=multi)
    assert result.multi_label.tolist() == [i == 9 for i in range(11)]
    assert (result.category[9], result.severity[9]) == ("spurious_correlation", "minor")
    assert (result.category[10], result.severity[10]) == ("non_prototypical", "major")
