"""Cross-validated probes: out-of-fold rows never see their own label, and each probe computes what it says."""

import numpy as np
import pytest

from curate.errors import UsageError
from curate.learn import KnnProbe, LinearProbe, create_probe, cross_val_probe, stratified_folds

PROBES = [LinearProbe(), KnnProbe(k=5)]


def clusters(n: int = 60, k: int = 3, d: int = 8, *, spread: float = 0.3, seed: int = 0):
    """(embeddings (n, d) float32, labels): one tight cluster per class around a random centre."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    centres = rng.normal(size=(k, d)) * 3
    return (centres[labels] + spread * rng.normal(size=(n, d))).astype(np.float32), labels


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: p.name)
def test_a_rows_own_label_never_reaches_its_own_prediction(probe):
    """Relabel one row: its fold's predictions (its own included) stay exactly the same; only other
    folds, whose probes trained on it, may change."""
    x, y = clusters()
    fold_of = stratified_folds(y, folds=4, seed=0)
    before = cross_val_probe(x, y, probe, fold_of=fold_of)
    i = 7
    relabelled = y.copy()
    relabelled[i] = (y[i] + 1) % 3
    after = cross_val_probe(x, relabelled, probe, fold_of=fold_of)
    same_fold = fold_of == fold_of[i]
    np.testing.assert_array_equal(after[same_fold], before[same_fold])
    assert not np.array_equal(after[~same_fold], before[~same_fold])  # it does train the other folds


def test_knn_predicts_a_row_from_its_duplicate_in_another_fold_but_never_from_itself():
    x, y = clusters(n=30, spread=0.1)
    y = y.copy()
    fold_of = (np.arange(30) // 3) % 3  # rows 0, 3 and 10 in folds 0, 1 and 0; every fold holds every class
    x[3] = x[0]
    y[0] = y[3] = 2       # rows 0 and 3: the same image, both labelled 2 while they sit in cluster 0
    y[10] = 2             # row 10 sits in cluster 1, labelled 2, with no duplicate
    probs = cross_val_probe(x, y, KnnProbe(k=1), fold_of=fold_of, num_classes=3)
    assert probs[0].argmax() == 2 and probs[3].argmax() == 2  # each from the other's label
    assert probs[10].argmax() == 1                              # from its cluster, not from itself


def test_knn_votes_match_a_slow_loop():
    rng = np.random.default_rng(1)
    train, query = rng.normal(size=(25, 6)), rng.normal(size=(7, 6))
    labels = rng.integers(0, 4, 25)
    probe = KnnProbe(k=6, temperature=0.2)
    got = probe.predict_proba(train.astype(np.float32), labels, query.astype(np.float32), num_classes=4)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    for q, row in zip(unit(query), got):
        sims = unit(train) @ q
        top = np.argsort(-sims)[:6]
        w = np.exp(sims[top] / 0.2)
        expected = np.bincount(labels[top], weights=w / w.sum(), minlength=4)
        np.testing.assert_allclose(row, expected, rtol=1e-4, atol=1e-6)


def test_knn_with_a_huge_temperature_is_a_plain_vote():
    x, y = clusters(n=12)
    probs = KnnProbe(k=4, temperature=1e6).predict_proba(x, y, x[:3] + 0.01, num_classes=3)
    assert set(np.round(probs.ravel() * 4, 4)) <= {0.0, 1.0, 2.0, 3.0, 4.0}


def test_linear_probe_separates_clusters_out_of_fold():
    """Every row right out of fold; the default penalty (made for noisy labels) keeps the probabilities
    softer than a light one."""
    x, y = clusters(n=90, spread=0.5)
    probs = cross_val_probe(x, y, LinearProbe(), folds=5)
    assert probs.shape == (90, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == y).mean() == 1.0
    light = cross_val_probe(x, y, LinearProbe(l2=1.0), folds=5)
    assert (light.argmax(1) == y).mean() == 1.0
    assert light[np.arange(90), y].mean() > 0.9 > probs[np.arange(90), y].mean() > 0.5


def test_linear_probe_with_a_huge_penalty_predicts_the_training_class_shares():
    """W -> 0, so the bias alone fits: softmax(b) = the class frequencies of the training rows."""
    x, y = clusters(n=40)
    y = np.where(np.arange(40) < 20, 0, y)  # shares 0: 27/40, 1: 6/40, 2: 7/40
    probs = LinearProbe(l2=1e6).predict_proba(x, y, x[:5], num_classes=4)
    np.testing.assert_allclose(probs, np.tile(np.bincount(y, minlength=4) / 40, (5, 1)), atol=2e-3)


def test_linear_probe_standardizes_features():
    """Scaling one feature by 1000 changes nothing (without standardization the L2 penalty would see it)."""
    x, y = clusters(n=45, spread=1.5)
    scaled = x.copy()
    scaled[:, 0] *= 1000
    a = cross_val_probe(x, y, LinearProbe(l2=5.0), folds=3)
    b = cross_val_probe(scaled, y, LinearProbe(l2=5.0), folds=3)
    np.testing.assert_allclose(a, b, atol=2e-3)


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: p.name)
def test_seeded_folds_are_deterministic(probe):
    x, y = clusters(n=45, spread=2.0)
    a = cross_val_probe(x, y, probe, folds=3, seed=4)
    np.testing.assert_array_equal(a, cross_val_probe(x, y, probe, folds=3, seed=4))
    assert not np.array_equal(a, cross_val_probe(x, y, probe, folds=3, seed=5))


def test_stratified_folds_spread_every_class_and_a_class_of_two_is_predicted_from_its_twin():
    x, y = clusters(n=50, spread=0.1)
    y = y.copy()
    y[[4, 9]] = 3                  # a tiny class of 2 rows (fewer than the 5 folds) ...
    x[9] = x[4] + 1e-3             # ... whose rows look alike
    fold_of = stratified_folds(y, folds=5, seed=0)
    for c in range(4):
        per_fold = np.bincount(fold_of[y == c], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1
    assert fold_of[4] != fold_of[9]
    probs = cross_val_probe(x, y, KnnProbe(k=1), folds=5, seed=0)
    assert probs[4].argmax() == probs[9].argmax() == 3


def test_a_class_of_one_row_or_in_one_fold_is_a_clear_error():
    x, y = clusters(n=20)
    y = y.copy()
    y[5] = 3
    with pytest.raises(UsageError, match=r"class 3: its 1 row is in fold \d alone, so no other fold holds an "
                                         r"example of it.*give every class at least 2 rows"):
        cross_val_probe(x, y, LinearProbe(), folds=4)
    with pytest.raises(UsageError, match=r"class 0: its 7 rows are in fold 0 alone.*spread every class over at "
                                         r"least 2 folds"):
        cross_val_probe(x, y, LinearProbe(), fold_of=np.arange(20) % 3)


def test_input_errors_name_the_argument():
    x, y = clusters(n=20)
    with pytest.raises(UsageError, match="`folds` must be an integer from 2 to the number of rows"):
        cross_val_probe(x, y, LinearProbe(), folds=1)
    with pytest.raises(UsageError, match="`embeddings` has 20 rows but `labels` has 19"):
        cross_val_probe(x, y[:19], LinearProbe())
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(UsageError, match="`embeddings` row 3 holds NaN"):
        cross_val_probe(bad, y, LinearProbe())
    with pytest.raises(UsageError, match=r"`labels` must lie in 0..1"):
        cross_val_probe(x, y, LinearProbe(), num_classes=2)
    with pytest.raises(UsageError, match="unknown probe 'knnn'.*did you mean 'knn'"):
        create_probe("knnn")
    with pytest.raises(UsageError, match="knn probe `k` must be an integer >= 1"):
        create_probe("knn", k=0)
