"""FAISS built per shard and merged answers like one build: same neighbours on small data, locally and on Ray
workers, and the merged index saves and loads like any other."""

import numpy as np
import pytest

from curate.errors import UsageError
from curate.index import build_index, load_index
from curate.index.sharded import build_sharded_index


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 16))
    x = centres[rng.integers(0, 12, 1500)] + 0.3 * rng.normal(size=(1500, 16))
    return x.astype(np.float32), [f"v{i}" for i in range(1500)]


@pytest.mark.parametrize("kind, options", [("ivf", {"nlist": 24, "nprobe": 4}), ("flat", {})])
def test_a_merged_index_returns_the_neighbours_of_a_single_build(vectors, kind, options):
    x, ids = vectors
    single = build_index(x, kind=kind, ids=ids, recall=None, **options)
    merged = build_sharded_index(x, shards=4, kind=kind, ids=ids, **options)
    assert len(merged) == len(single) == len(x) and merged.meta["shards"] == 4
    queries = x[::37] + 0.01
    (d1, r1), (d2, r2) = single.search_rows(queries, 10), merged.search_rows(queries, 10)
    np.testing.assert_array_equal(r2, r1)  # the same rows: every shard filled the one trained quantizer
    np.testing.assert_allclose(d2, d1, atol=1e-5)
    np.testing.assert_array_equal(merged.ids_at(r2[:, 0]), np.asarray(ids, dtype=object)[r2[:, 0]])
    np.testing.assert_allclose(merged.vectors([0, 777, 1499]), single.vectors([0, 777, 1499]), atol=1e-6)


def test_the_merged_index_saves_and_loads_like_one_build(vectors, tmp_path):
    x, ids = vectors
    merged = build_sharded_index(x, shards=3, kind="ivf", ids=ids, nlist=24, nprobe=24)
    merged.save(tmp_path / "index.faiss")
    loaded = load_index(tmp_path / "index.faiss")
    assert (loaded.kind, loaded.nprobe, loaded.ids) == ("ivf", 24, tuple(ids))
    np.testing.assert_array_equal(loaded.search_rows(x[:5], 3)[1], merged.search_rows(x[:5], 3)[1])
    exact = build_index(x, kind="flat", ids=ids)  # nprobe = nlist searches every cell: exact neighbours
    np.testing.assert_array_equal(loaded.search_rows(x[:50], 5)[1], exact.search_rows(x[:50], 5)[1])


def test_hnsw_cannot_be_merged(vectors):
    with pytest.raises(UsageError, match="'hnsw' index cannot be merged"):
        build_sharded_index(vectors[0], shards=2, kind="hnsw")


def test_shards_filled_on_ray_workers_merge_to_the_same_index(vectors, ray_cluster):
    from curate.execute.ray import RayExecutor, RayOptions

    x, ids = vectors
    executor = RayExecutor(RayOptions(workers=2))
    on_ray = build_sharded_index(x, shards=4, kind="ivf", ids=ids, nlist=24, nprobe=4, map_tasks=executor.map_tasks)
    local = build_sharded_index(x, shards=4, kind="ivf", ids=ids, nlist=24, nprobe=4)
    assert executor.record["tasks"] == 4
    np.testing.assert_array_equal(on_ray.search_rows(x[::50], 10)[1], local.search_rows(x[::50], 10)[1])
