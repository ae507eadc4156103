"""Mistake taxonomy, the rule-based categorizer and its agreement tables."""

import numpy as np
import pytest

from audits.mistakes import (CATEGORIES, Thresholds, agreement, categorize, evaluate_categorizer, mistake_arrays,
                             normalize_category, normalize_severity)


def test_both_oov_spellings_normalise_to_one_value():
    assert normalize_category("Fine-grained error with OOV") == normalize_category("Fine-grained with OOV") \
        == "fine_grained_oov"
    assert normalize_category("Fine-grained with Multilabel Options") == "fine_grained_multilabel"
    assert normalize_category(" spurious  Correlation ") == "spurious_correlation"
    assert normalize_severity("Borderline") == "borderline"
    with pytest.raises(ValueError, match="unknown mistake category 'Other'"):
        normalize_category("Other")
    with pytest.raises(ValueError, match="unknown mistake severity"):
        normalize_severity("Severe")


def test_rules_on_hand_built_signals():
    given = np.array([0, 0, 0, 0, 0, 0])
    predicted = np.array([1, 2, 3, 4, 5, 6])
    distance = np.array([2, 2, 12, 12, 12, 5])
    ood = np.array([0.0, 0.9, 0.0, 0.0, 0.0, 0.0])
    evidence = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    confidence = np.array([0.9, 0.9, 0.9, 0.95, 0.3, 0.9])
    cats, sevs = categorize(given, predicted, hierarchy_distance=distance, ood_score=ood,
                            multilabel_evidence=evidence, confidence=confidence)
    assert list(cats) == ["fine_grained", "fine_grained_oov", "spurious_correlation", "non_prototypical",
                          "fine_grained", "fine_grained"]
    assert list(sevs) == ["minor", "minor", "minor", "major", "borderline", "borderline"]


def test_a_class_pair_matrix_is_looked_up_and_similarity_works_without_a_hierarchy():
    distance = np.array([[0, 2, 9], [2, 0, 9], [9, 9, 0]])
    cats, sevs = categorize(np.array([0, 0]), np.array([1, 2]), hierarchy_distance=distance)
    assert list(sevs) == ["minor", "major"]
    similarity = np.array([[1.0, 0.8, 0.1], [0.8, 1.0, 0.1], [0.1, 0.1, 1.0]])
    _, sevs = categorize(np.array([0, 0]), np.array([1, 2]), class_similarity=similarity)
    assert list(sevs) == ["minor", "major"]
    strict = Thresholds(near_similarity=0.9)
    _, sevs = categorize(np.array([0]), np.array([1]), class_similarity=similarity, thresholds=strict)
    assert list(sevs) == ["borderline"]
    with pytest.raises(ValueError, match="one class-pair signal is required"):
        categorize(np.array([0]), np.array([1]))
    with pytest.raises(ValueError, match=r"`ood_score` must be \(N,\)"):
        categorize(np.array([0]), np.array([1]), hierarchy_distance=np.array([3]), ood_score=np.array([1, 2]))


def test_agreement_table_and_kappa_by_hand():
    human = np.array(["a", "a", "a", "b"], dtype=object)
    suggested = np.array(["a", "a", "b", "b"], dtype=object)
    ag = agreement(human, suggested, ("a", "b"))
    np.testing.assert_array_equal(ag.confusion, [[2, 1], [0, 1]])
    assert ag.accuracy == 0.75 and ag.majority_baseline == 0.75
    # expected agreement (3*2 + 1*2) / 16 = 0.5 -> kappa (0.75 - 0.5) / 0.5 = 0.5
    assert ag.kappa == pytest.approx(0.5)
    np.testing.assert_allclose(ag.recall, [2 / 3, 1.0])
    np.testing.assert_allclose(ag.precision, [1.0, 0.5])
    assert "| a | 2 | 1 | 3 | 66.7% |" in ag.to_markdown("t")


def test_evaluation_on_the_annotated_mistakes(shared_data):
    """The 627 annotations: near pairs are mostly fine-grained and minor, and the tables add up."""
    from audits.imagenet import ClassHierarchy, load_classes, load_mistakes, load_val_labels

    d = shared_data / "imagenet"
    hierarchy = ClassHierarchy.from_files(d / "hierarchy" / "wordnet.is_a.txt",
                                          load_classes(d / "classes" / "class_info.json").wnids)
    annotations = [*load_mistakes(d / "mistakes" / "vit3b_mistakes.json").values(),
                   *load_mistakes(d / "mistakes" / "greedy_soups_mistakes.json").values()]
    m = mistake_arrays(annotations, load_val_labels(d / "val_labels.txt"))
    assert len(m["given"]) == 627 and (m["given"] != m["predicted"]).all()
    ev = evaluate_categorizer(m["given"], m["predicted"], m["category"], m["severity"],
                              hierarchy_distance=hierarchy.distances)
    assert ev.category.confusion.sum() == ev.severity.confusion.sum() == 627
    assert ev.category.confusion.sum(axis=1).tolist() == [413, 80, 84, 49, 1]  # METHODS.md 3.2 counts
    near = hierarchy.distance(m["given"], m["predicted"]) <= Thresholds().near_distance
    assert (m["category"][near] == "fine_grained").mean() > 0.8
    assert ev.severity_folded.accuracy > ev.severity_folded.majority_baseline
    assert set(CATEGORIES) == set(ev.category.labels)
