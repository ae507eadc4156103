"""ReaL accuracy, multi-label accuracy, variable top-k and the single/multi-label comparison."""

import numpy as np
import pytest

from audits.label_sets import in_label_set
from audits.multilabel import (imagenet_m_count, mean_by_set_size, multilabel_accuracy, per_class_multilabel_accuracy,
                               single_vs_multi_label, variable_topk_scores)
from audits.real import real_accuracy

SETS = [[1], [2, 3], [], [4], [0, 5]]


def test_real_accuracy_hand_example():
    """METHODS.md 3.1: 3 of the 4 non-empty sets contain the prediction."""
    assert real_accuracy(np.array([1, 3, 7, 2, 5]), SETS) == pytest.approx(0.75)
    # the two classic bugs give 0.6 (empties counted) and 0.2 (original labels): ours gives neither
    assert real_accuracy(np.array([1, 3, 7, 2, 5]), SETS) not in (0.6, 0.2)


def test_real_top5_counts_a_label_at_rank_3():
    ranked = np.array([[9, 8, 1, 7, 6],   # the label 1 sits at rank 3
                       [9, 8, 7, 6, 5],   # miss
                       [0, 1, 2, 3, 4],   # empty set: ignored
                       [4, 0, 0, 0, 0],
                       [9, 9, 9, 9, 9]])
    assert real_accuracy(ranked, SETS) == pytest.approx(0.5)
    assert real_accuracy(ranked[:, :2], SETS) == pytest.approx(0.25)


def test_real_accuracy_on_real_json_matches_a_plain_loop(shared_data):
    from audits.imagenet import load_real_labels, load_val_labels

    real = load_real_labels(shared_data / "imagenet" / "real" / "real.json")
    original = load_val_labels(shared_data / "imagenet" / "val_labels.txt")
    rng = np.random.default_rng(0)
    noisy = np.where(rng.random(len(original)) < 0.3, rng.integers(0, 1000, len(original)), original)
    for pred in (original, noisy):
        rated = [(p in s) for p, s in zip(pred.tolist(), real) if s]
        assert real_accuracy(pred, real) == pytest.approx(sum(rated) / len(rated), abs=1e-12)
    # README: the original label is in the ReaL set for 90.0% of the 46,837 rated images
    assert real_accuracy(original, real) == pytest.approx(0.900, abs=0.0005)


def test_real_accuracy_rejects_mismatched_lengths_and_all_empty():
    with pytest.raises(ValueError, match=r"`real_labels` has 5 label sets but `predictions` has 4"):
        real_accuracy(np.array([1, 2, 3, 4]), SETS)
    with pytest.raises(ValueError, match="every label set"):
        real_accuracy(np.array([1, 2]), [[], []])
    with pytest.raises(TypeError, match="integer class ids"):
        real_accuracy(np.array([1.0, 2.0, 0, 0, 0]), SETS)


def test_multilabel_accuracy_is_class_balanced():
    """METHODS.md 3.2: class 0 has 3 correct images, class 1 one wrong image -> 0.5, not the pooled 0.75."""
    pred = np.array([0, 0, 0, 5])
    original = np.array([0, 0, 0, 1])
    correct = [[0], [0], [0], [1]]
    assert multilabel_accuracy(pred, original, correct) == pytest.approx(0.5)
    np.testing.assert_allclose(per_class_multilabel_accuracy(pred, original, correct, num_classes=3),
                               [1.0, 0.0, np.nan])


def test_unclear_counts_as_correct_and_problematic_images_are_skipped():
    pred = np.array([0, 7, 1, 9])
    original = np.array([0, 0, 1, 1])
    correct = [[0], [0], [1], [1]]
    unclear = [[], [7], [], []]
    assert multilabel_accuracy(pred, original, correct) == pytest.approx(0.5)  # (1/2 + 1/2) / 2
    assert multilabel_accuracy(pred, original, correct, unclear) == pytest.approx(0.75)  # (1 + 1/2) / 2
    problematic = np.array([False, False, False, True])  # the wrong class-1 image
    assert multilabel_accuracy(pred, original, correct, unclear, problematic=problematic) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="1 of 3 classes have no non-problematic image"):
        multilabel_accuracy(pred, original, correct, unclear, num_classes=3, require_all_classes=True)


def test_imagenet_m_count_is_an_integer_hand_count():
    count = imagenet_m_count(np.array([3, 4, 5, 6]), [[3], [1], [5, 6], [2]], [[], [4], [], []])
    assert count == 3 and isinstance(count, int)


def test_variable_topk_hand_examples():
    """METHODS.md 3.3: L = {2, 5}: top-2 [5, 2] is strict-correct; [5, 9] is strict 0 and recall 0.5."""
    sets = [[2, 5], [2, 5], [7], []]
    ranked = np.array([[5, 2, 0], [5, 9, 2], [7, 1, 2], [0, 1, 2]])
    strict = variable_topk_scores(ranked, sets, mode="strict")
    recall = variable_topk_scores(ranked, sets, mode="recall")
    np.testing.assert_array_equal(strict[:3], [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(recall[:3], [1.0, 0.5, 1.0])
    assert np.isnan(strict[3]) and np.isnan(recall[3])
    assert mean_by_set_size(recall, sets) == {1: 1.0, 2: 0.75}


def test_variable_topk_reduces_to_top1_and_ignores_label_order():
    rng = np.random.default_rng(1)
    ranked = np.stack([rng.permutation(10) for _ in range(50)])
    single = [[int(rng.integers(10))] for _ in range(50)]
    top1 = (ranked[:, 0] == np.array(single)[:, 0]).astype(float)
    for mode in ("strict", "recall"):
        np.testing.assert_array_equal(variable_topk_scores(ranked, single, mode=mode), top1)
    multi = [list(rng.choice(10, size=int(rng.integers(1, 4)), replace=False)) for _ in range(50)]
    flipped = [s[::-1] for s in multi]
    for mode in ("strict", "recall"):
        np.testing.assert_array_equal(variable_topk_scores(ranked, multi, mode=mode),
                                      variable_topk_scores(ranked, flipped, mode=mode))
    with pytest.raises(ValueError, match="has 2 columns but a label set has 3"):
        variable_topk_scores(ranked[:, :2], [[1, 2, 3]] + single[1:])


def test_single_vs_multi_label_gap_decomposes():
    pred = np.array([0, 1, 2, 3, 4, 5])
    original = np.array([0, 1, 9, 9, 4, 9])
    sets = [[0], [1], [2], [3, 8], [4, 7], [6, 9]]
    r = single_vs_multi_label(pred, original, sets)
    assert (r.n_single, r.n_multi, r.multi_share) == (3, 3, 0.5)
    assert r.top1_single == pytest.approx(2 / 3) and r.top1_multi == pytest.approx(1 / 3)
    assert r.ml_single == pytest.approx(1.0) and r.ml_multi == pytest.approx(2 / 3)
    assert r.gap == pytest.approx((1 - r.multi_share) * r.gap_single + r.multi_share * r.gap_multi)
    assert r.explained_by_multi == pytest.approx(0.5 * (1 / 3) / r.gap)


def test_in_label_set_deduplicates_sets():
    np.testing.assert_array_equal(in_label_set(np.array([1, 2]), [[1, 1], [3, 3]]), [True, False])
