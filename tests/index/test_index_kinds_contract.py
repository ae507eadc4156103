"""One contract for every registered index kind (built-in and entry-point ones), and the registry itself."""

import json

import numpy as np
import pytest

from curate.config import from_mapping
from curate.errors import UsageError
from curate.index import INDEX_KINDS, build_index, load_index, sidecar_path
from curate.index.kinds import HNSW, index_kind

KINDS = INDEX_KINDS.names()
RECALL_FLOOR = {"ivfpq": 0.5}
"""recall@10 floors of kinds whose lossy codes may keep them below the target; a kind that reached its
recall target must keep it (less a little sampling noise) on fresh queries."""


class SparseHNSW(HNSW):
    """A plug-in kind: HNSW with 8 links a node."""

    name = "hnsw8"
    DEFAULT_M = 8


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


@pytest.fixture(scope="module")
def data(clustered):
    points = clustered(2300, 32, clusters=10, spread=0.5, seed=5)
    return points[:2000], points[2000:]


@pytest.fixture(scope="module")
def truth(data):
    e, q = data
    return build_index(e, kind="flat").search_rows(q, 10)[1]


def build(kind, e, **options):
    return build_index(e, kind=kind, ids=[f"s{i}" for i in range(len(e))], **options)


@pytest.mark.parametrize("kind", KINDS)
def test_search_returns_ids_of_the_nearest_rows_in_ascending_distance(kind, data, truth):
    e, q = data
    index = build(kind, e)
    assert (index.kind, len(index), index.dim) == (kind, 2000, 32)
    dist, found = index.search(q, 10)
    rows = index.search_rows(q, 10)[1]
    assert dist.shape == found.shape == (300, 10) and np.all(np.diff(dist, axis=1) >= 0)
    np.testing.assert_array_equal(found, np.asarray(index.ids, dtype=object)[rows])
    got = recall(rows, truth)
    cal = index.calibration
    if index_kind(kind).exact:
        assert got == 1.0 and cal is None
    elif cal.reached:
        assert got >= cal.target - 0.03
    else:
        assert got >= RECALL_FLOOR.get(kind, 0.5)


@pytest.mark.parametrize("kind", KINDS)
def test_stored_rows_come_back_at_their_ids_and_never_as_their_own_neighbour(kind, data):
    e, _ = data
    index = build(kind, e)
    rows = np.arange(0, 2000, 7)
    assert (index.search_rows(index.vectors(rows), 1)[1][:, 0] == rows).mean() >= 0.95
    dist, found = index.search_ids([f"s{r}" for r in rows], 5)
    assert not any(f"s{r}" in set(f) for r, f in zip(rows, found)) and np.all(np.diff(dist, axis=1) >= 0)
    within = np.arange(500, 1500)
    _, limited = index.search_rows(e[:20], 5, within=within)
    assert np.isin(limited[limited >= 0], within).all()


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_keep_results_knob_calibration_and_ids(kind, data, tmp_path):
    e, q = data
    index = build(kind, e)
    if index.knob is not None:
        index.knob_value = max(1, index.knob_value - 1)  # changed after the build: the file keeps the new value
    index.save(tmp_path / "i.faiss")
    loaded = load_index(tmp_path / "i.faiss")
    assert (loaded.kind, loaded.knob, loaded.knob_value, loaded.ids) == (kind, index.knob, index.knob_value, index.ids)
    assert loaded.calibration == index.calibration and loaded.params == index.params
    for a, b in zip(index.search(q, 10), loaded.search(q, 10)):
        np.testing.assert_array_equal(a, b)
    assert json.loads(sidecar_path(tmp_path / "i.faiss").read_text())["kind"] == kind


@pytest.mark.parametrize("kind", KINDS)
def test_options_of_other_kinds_are_refused_by_name(kind, data):
    foreign = {"hnsw_m": 8} if "hnsw_m" not in index_kind(kind).options else {"nlist": 8}
    with pytest.raises(UsageError, match=f"`{next(iter(foreign))}` applies to kind .*, not '{kind}'"):
        build_index(data[0], kind=kind, **foreign)


def test_a_plug_in_kind_is_built_calibrated_saved_and_accepted_by_the_step(monkeypatch, data, tmp_path):
    """A registered kind (here a sparser HNSW) goes through build_index, the sidecar and the `index` step
    config like a built-in one; unknown names fail with the registered ones."""
    from curate.steps.index import IndexConfig, IndexStep

    monkeypatch.setitem(INDEX_KINDS._entries, "hnsw8", SparseHNSW)
    e, _ = data
    index = build(kind="hnsw8", e=e)
    assert index.params["hnsw_m"] == 8 and index.calibration.knob == "ef_search" and index.calibration.reached
    index.save(tmp_path / "p.faiss")
    assert load_index(tmp_path / "p.faiss").kind == "hnsw8"
    assert IndexStep.check(from_mapping(IndexConfig, {"kind": "hnsw8", "ef_construction": 20}), {}) == []
    problems = IndexStep.check(from_mapping(IndexConfig, {"kind": "hnws"}), {})
    assert problems[0][0] == "kind" and "did you mean 'hnsw'" in problems[0][1] and "hnsw8" in problems[0][1]
    with pytest.raises(UsageError, match="unknown index kind 'hnws'.*known: flat, hnsw, hnsw8, ivf, ivfpq"):
        build_index(e, kind="hnws")


def test_kinds_of_the_entry_point_group_are_found(monkeypatch):
    """Another package's kind, declared under the `curate.index_kinds` entry-point group, is listed and loaded."""
    from importlib import metadata

    point = metadata.EntryPoint(name="hnsw8", value=f"{__name__}:SparseHNSW", group="curate.index_kinds")
    monkeypatch.setattr("curate.registry.metadata.entry_points",
                        lambda group: [point] if group == "curate.index_kinds" else [])
    monkeypatch.setattr(INDEX_KINDS, "_entries", dict(INDEX_KINDS._entries))
    monkeypatch.setattr(INDEX_KINDS, "_group_loaded", False)
    assert "hnsw8" in INDEX_KINDS.names() and index_kind("hnsw8").DEFAULT_M == 8
