"""k-NN outlier scores and class balance."""

import numpy as np
import pytest

from audits.outliers import class_balance, find_outliers, knn_outlier_scores, robust_zscores


def _knn_distances(points: np.ndarray, k: int) -> np.ndarray:
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, :k]


def test_planted_far_points_are_the_outliers():
    rng = np.random.default_rng(0)
    cluster = rng.uniform(-1, 1, size=(60, 2))
    planted = np.array([[12.0, 0.0], [0.0, -15.0]])
    dist = _knn_distances(np.vstack([cluster, planted]), k=5)
    assert {60, 61} <= set(np.flatnonzero(find_outliers(dist)))  # corners of the square may join at z > 3.5
    assert set(np.flatnonzero(find_outliers(dist, z_threshold=20))) == {60, 61}
    scores = knn_outlier_scores(dist)
    assert set(np.argsort(scores)[-2:]) == {60, 61}


def test_scores_by_hand_and_column_order_does_not_matter():
    dist = np.array([[3.0, 1.0, 2.0], [1.0, 1.0, 4.0]])
    np.testing.assert_allclose(knn_outlier_scores(dist), [2.0, 2.0])
    np.testing.assert_allclose(knn_outlier_scores(dist, k=2), [1.5, 1.0])
    np.testing.assert_allclose(knn_outlier_scores(dist, k=2, reduce="kth"), [2.0, 1.0])


def test_robust_zscores_ignore_scale_and_constant_input():
    x = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    np.testing.assert_allclose(robust_zscores(x * 10), robust_zscores(x))
    assert robust_zscores(x)[-1] > 3.5 > robust_zscores(x)[:-1].max()
    np.testing.assert_array_equal(robust_zscores(np.ones(4)), np.zeros(4))


@pytest.mark.parametrize(("dist", "kwargs", "message"), [
    (np.ones(3), {}, r"must be \(N, k\)"),
    (np.ones((2, 3)), {"k": 4}, r"`k` must be in \[1, 3\]"),
    (np.array([[1.0, np.inf]]), {}, "must be finite; row 0"),
    (np.array([[1.0, -1.0]]), {}, "must be >= 0"),
    (np.ones((2, 3)), {"reduce": "median"}, "`reduce` must be one of"),
])
def test_bad_distances_give_clear_errors(dist, kwargs, message):
    with pytest.raises(ValueError, match=message):
        knn_outlier_scores(dist, **kwargs)


def test_class_balance_by_hand():
    b = class_balance(np.array([0, 0, 0, 0, 1, 1, 3]), num_classes=5, minority_fraction=0.8)
    assert b.counts.tolist() == [4, 2, 0, 1, 0]
    assert b.imbalance_ratio == 4.0
    assert b.empty.tolist() == [2, 4]
    assert b.minority.tolist() == [2, 3, 4]  # below 0.8 x the mean count 1.4
    balanced = class_balance(np.repeat(np.arange(4), 3))
    assert balanced.normalized_entropy == pytest.approx(1.0) and balanced.imbalance_ratio == 1.0
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
        class_balance(np.array([0, 2]), num_classes=2)
