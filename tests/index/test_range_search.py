"""Radius search and searches restricted to a subset of rows (`within`), against numpy."""

import numpy as np
import pytest

from curate.index import build_index


@pytest.fixture(scope="module")
def points(clustered):
    return clustered(600, 24, clusters=6, spread=0.4, seed=3)


def numpy_distances(q: np.ndarray, e: np.ndarray, metric: str) -> np.ndarray:
    q, e = q.astype(np.float64), e.astype(np.float64)
    if metric == "l2":
        return np.linalg.norm(q[:, None] - e[None], axis=2)
    q, e = q / np.linalg.norm(q, axis=1, keepdims=True), e / np.linalg.norm(e, axis=1, keepdims=True)
    return 1.0 - q @ e.T


def as_sets(lims, rows):
    return [set(rows[lims[i]:lims[i + 1]].tolist()) for i in range(len(lims) - 1)]


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_flat_radius_search_returns_exactly_the_rows_within_the_radius(points, metric):
    """<= radius (the radius taken between two observed distances), self dropped via `exclude`, ascending."""
    q = points[:40]
    ref = numpy_distances(q, points, metric)
    values = np.sort(ref[ref > 1e-6])
    radius = float((values[300] + values[301]) / 2)
    lims, dist, rows = build_index(points, kind="flat", metric=metric).range_search_rows(
        q, radius, exclude=np.arange(40), batch_size=16)
    expect = [set(np.flatnonzero(r <= radius).tolist()) - {i} for i, r in enumerate(ref)]
    assert as_sets(lims, rows) == expect and sum(map(len, expect)) > 40
    for i in range(40):
        d = dist[lims[i]:lims[i + 1]]
        assert np.all(np.diff(d) >= 0)
        np.testing.assert_allclose(d, ref[i, rows[lims[i]:lims[i + 1]]], atol=1e-4)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_within_restricts_searches_to_those_rows(points, kind):
    """k-NN and radius results come only from `within`, and equal numpy restricted to it (exact settings)."""
    options = {"ivf": {"nlist": 8, "nprobe": 8}, "hnsw": {"ef_search": 600}}.get(kind, {})
    index = build_index(points, kind=kind, **options)
    within = np.arange(1, 600, 3)
    q = points[:10]
    ref = numpy_distances(q, points[within], "cosine")
    _, rows = index.search_rows(q, 5, within=within)
    np.testing.assert_array_equal(rows, within[np.argsort(ref, axis=1)[:, :5]])
    lims, _, found = index.range_search_rows(q, 0.2, within=within)
    assert as_sets(lims, found) == [set(within[r <= 0.2].tolist()) for r in ref]
    dist, rows = index.neighbors_of_rows(np.array([1, 2]), 3, within=within)  # row 1 is in `within`, 2 is not
    assert 1 not in rows[0] and np.isin(rows, within).all() and np.all(np.diff(dist, axis=1) >= 0)


def test_neighbors_within_a_tiny_subset_pad_with_minus_one(points):
    """Asking for more neighbours than `within` holds leaves -1 / inf, never a row outside it."""
    index = build_index(points, kind="flat")
    dist, rows = index.neighbors_of_rows(np.array([0]), 4, within=[0, 7])
    assert rows.tolist() == [[7, -1]] and np.isinf(dist[0, 1])
