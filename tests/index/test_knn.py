"""knn_graph: every row's k nearest other rows, batched, self excluded."""

import numpy as np
import pytest

from curate.errors import UsageError
from curate.index import build_index, knn_graph


def brute_force_knn(e: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    en = e / np.linalg.norm(e, axis=1, keepdims=True)
    dist = 1.0 - en.astype(np.float64) @ en.T.astype(np.float64)
    np.fill_diagonal(dist, np.inf)
    rows = np.argsort(dist, axis=1)[:, :k]
    return np.take_along_axis(dist, rows, axis=1), rows


def test_knn_graph_equals_brute_force_and_is_independent_of_batch_size(clustered):
    """Rows equal a numpy k-NN with the diagonal removed; batches of 7 give the one-batch answer."""
    e = clustered(300, 16, seed=5)
    ref_d, ref_r = brute_force_knn(e, 5)
    dist, rows = knn_graph(e, k=5, batch_size=7)
    np.testing.assert_array_equal(rows, ref_r)
    np.testing.assert_allclose(dist, ref_d, atol=1e-5)
    assert rows.dtype == np.int64 and rows.shape == (300, 5)
    np.testing.assert_array_equal(knn_graph(e, k=5, batch_size=1000)[1], rows)
    assert not (rows == np.arange(300)[:, None]).any()


def test_exact_duplicates_list_each_other_but_never_themselves(clustered):
    """With 5 identical rows and k=3, self need not be the first hit: it is still dropped."""
    e = clustered(60, 8, seed=6)
    copies = [3, 17, 29, 41, 55]
    e[copies] = e[3]
    dist, rows = knn_graph(e, k=3)
    for r in copies:
        assert r not in rows[r]
        assert set(rows[r]) <= set(copies) - {r}
        np.testing.assert_allclose(dist[r], 0, atol=1e-6)


def test_knn_graph_accepts_a_built_index_and_checks_its_metric(clustered):
    e = clustered(200, 8, seed=7)
    index = build_index(e, kind="hnsw", metric="l2", ef_search=128)
    dist, rows = knn_graph(index, k=4)
    assert not (rows == np.arange(200)[:, None]).any()
    ref = np.linalg.norm(e[:, None] - e[None], axis=2)
    np.testing.assert_allclose(dist, np.take_along_axis(ref, rows, axis=1), rtol=1e-4)
    with pytest.raises(UsageError, match="built with 'l2'"):
        knn_graph(index, k=4, metric="cosine")
    with pytest.raises(UsageError, match="`batch_size` must be an integer >= 1"):
        knn_graph(e, k=4, batch_size=0)
