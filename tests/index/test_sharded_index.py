"""FAISS built per shard and merged answers like one build: same neighbours on small data, locally and on Ray
workers, and the merged index saves and loads like any other."""

import numpy as np
import pytest

from curate.errors import UsageError
from curate.index import build_index, load_index
from curate.index.sharded import build_sharded_index


@pytest.fixture(scope="module")
def vectors(clustered):
    return clustered(1500, 16, clusters=12), [f"v{i}" for i in range(1500)]


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


SHARDED_RECIPE = """\
name: sharded
steps:
  - id: cifar
    uses: source
    with: {kind: demo, limit_per_class: 6}
  - id: embed
    uses: embed
    inputs: {data: cifar}
    with: {model: resnet20-cifar}
  - id: browse
    uses: fiftyone
    inputs: {data: cifar}
    with: {visualization: none}
  - id: single
    uses: index
    inputs: {data: cifar, embeddings: embed}
    with: {kind: ivf, nlist: 2, nprobe: 1, recall: null, fiftyone: false}
  - id: merged
    uses: index
    inputs: {data: cifar, embeddings: embed}
    with: {kind: ivf, nlist: 2, nprobe: 1, recall: null, shards: 3}
"""


def test_the_index_step_builds_in_shards_and_the_fiftyone_backend_takes_the_merged_index(tmp_path, fo):
    from curate.recipes import parse_recipe, run_recipe

    result = run_recipe(parse_recipe(SHARDED_RECIPE, filename="sharded.yaml"), workdir=tmp_path, progress=False)
    merged, single = (load_index(result.run_dir / step / "index.faiss") for step in ("merged", "single"))
    assert merged.meta["shards"] == 3 and len(merged) == len(single) == 120
    queries = merged.vectors(np.arange(0, 120, 7))
    np.testing.assert_array_equal(merged.search_rows(queries, 5)[1], single.search_rows(queries, 5)[1])
    assert result.outcome("merged").metrics["fiftyone"]["searchable_rows"] == 120


def test_a_sharded_index_step_refuses_hnsw_and_a_recall_target():
    from curate.errors import RecipeError
    from curate.recipes import parse_recipe

    text = SHARDED_RECIPE.replace("recall: null, shards: 3", "shards: 3").replace(
        "kind: ivf, nlist: 2, nprobe: 1, shards: 3", "kind: hnsw, shards: 3")
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, filename="sharded.yaml")
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and "step 'merged' with.shards: HNSW graphs cannot be merged" in lines[0]
    assert "step 'merged' with.recall: a sharded build cannot calibrate" in lines[1]
