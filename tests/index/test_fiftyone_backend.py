"""The FiftyOne Brain backend ``faiss``: same answers as the Brain's sklearn backend, exact radius
queries, view restriction, and brain runs that survive ``load_brain_results``."""

from __future__ import annotations

import os

import numpy as np
import pytest

from curate.index import build_index

N, D = 50, 16


@pytest.fixture
def dataset(fo, dataset_name):
    """50 samples with curate ids ``s00..s49``, splits alternating train/test."""
    ds = fo.Dataset(dataset_name)
    ds.add_samples([fo.Sample(filepath=f"/nonexistent/{i:02d}.png", curate_id=f"s{i:02d}",
                              split="train" if i % 2 else "test") for i in range(N)])
    return ds


@pytest.fixture
def embeddings():
    """Zero-mean columns: the sklearn backend centres embeddings before cosine, so it agrees only then."""
    x = np.random.default_rng(7).standard_normal((N, D)).astype(np.float32)
    x[1] = x[0] + 0.05 * x[2]  # a close pair among random directions
    return x - x.mean(axis=0)


def cosine_distances(x: np.ndarray) -> np.ndarray:
    u = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    return 1.0 - u @ u.T


def both_backends(dataset, x):
    import fiftyone.brain as fob

    sk = fob.compute_similarity(dataset, embeddings=x, brain_key="sk", backend="sklearn", metric="cosine")
    fx = fob.compute_similarity(dataset, embeddings=x, brain_key="fx", backend="faiss", metric="cosine")
    return sk, fx


def test_sort_by_similarity_matches_sklearn_cosine(dataset, embeddings):
    """Same neighbours, same order and the same cosine distances as sklearn, by sample id and by vector."""
    both_backends(dataset, embeddings)
    ids = dataset.values("id")
    for q in (0, 17, 49):
        expect = dataset.sort_by_similarity(ids[q], k=10, brain_key="sk", dist_field="d_sk")
        got = dataset.sort_by_similarity(ids[q], k=10, brain_key="fx", dist_field="d_fx")
        assert got.values("id") == expect.values("id")
        assert got.values("id")[0] == ids[q]  # sort_by_similarity ranks the query first, as sklearn does
        np.testing.assert_allclose(got.values("d_fx"), expect.values("d_sk"), atol=1e-5)
        np.testing.assert_allclose(got.values("d_fx"), np.sort(cosine_distances(embeddings)[q])[:10], atol=1e-5)
    vector = embeddings[3] + embeddings[5]
    assert (dataset.sort_by_similarity(vector, k=7, brain_key="fx").values("id")
            == dataset.sort_by_similarity(vector, k=7, brain_key="sk").values("id"))


def test_knn_by_id_without_aggregation_excludes_the_query_like_sklearn(dataset, embeddings):
    """The duplicates machinery asks for neighbours of ids (aggregation=None): the sample itself is left out."""
    sk, fx = both_backends(dataset, embeddings)
    ids = dataset.values("id")[:5]
    got, _, dists = fx._kneighbors(query=ids, k=3, return_dists=True)
    expect, _ = sk._kneighbors(query=ids, k=3)
    assert got == [list(e) for e in expect]
    assert all(q not in row for q, row in zip(ids, got))
    assert np.all(np.diff(np.asarray(dists), axis=1) >= 0)


def test_radius_query_returns_exactly_the_pairs_within_the_threshold(dataset, embeddings):
    """Full-index radius query at cosine distance d == every pair with numpy distance <= d (d in a gap)."""
    _, fx = both_backends(dataset, embeddings)
    dist = cosine_distances(embeddings)
    upper = np.sort(dist[np.triu_indices(N, 1)])
    d = float((upper[40] + upper[41]) / 2)  # 41 pairs, threshold far from any pair's distance
    neighbours = fx._radius_neighbors(thresh=d)
    found = {(min(i, int(j)), max(i, int(j))) for i, row in enumerate(neighbours) for j in row}
    expect = {(int(i), int(j)) for i, j in zip(*np.nonzero(np.triu(dist <= d, 1)))}
    assert found == expect and len(expect) == 41
    ids, _, dists = fx._radius_neighbors(query=dataset.first().id, thresh=d, return_dists=True)
    assert dataset.first().id not in ids and all(x <= d for x in dists)


@pytest.mark.parametrize("ivf_graph", [False, True], ids=["flat", "ivf-graph"])
def test_find_duplicates_agrees_with_sklearn(dataset, embeddings, monkeypatch, ivf_graph):
    """The Brain's own duplicate search on top of the radius query keeps the same samples as sklearn,
    also when a large flat index hands the all-pairs search to a temporary IVF graph index."""
    import curate.index.fiftyone_backend as backend

    built = []
    if ivf_graph:
        real = backend.graph_index
        monkeypatch.setattr(backend, "EXACT_GRAPH_MAX", 10)
        monkeypatch.setattr(backend, "graph_index", lambda x, **kw: built.append(len(x)) or real(x, **kw))
    sk, fx = both_backends(dataset, embeddings)
    sk.find_duplicates(thresh=0.05)
    fx.find_duplicates(thresh=0.05)
    assert fx.duplicate_ids == sk.duplicate_ids and len(fx.duplicate_ids) >= 1
    assert set(fx.neighbors_map) == set(sk.neighbors_map)
    assert built == ([N] if ivf_graph else [])


def test_queries_see_only_the_current_view(dataset, embeddings, fo):
    """Sorting a view by similarity returns only that view's samples, in sklearn's order."""
    both_backends(dataset, embeddings)
    train = dataset.match(fo.ViewField("split") == "train")
    query = dataset.values("id")[0]  # a test sample: not in the view, still a valid query
    got = train.sort_by_similarity(query, k=5, brain_key="fx").values("id")
    assert got == train.sort_by_similarity(query, k=5, brain_key="sk").values("id")
    assert set(got) <= set(train.values("id")) and len(got) == 5


def test_results_survive_load_brain_results_and_store_no_vectors(dataset, embeddings, fo):
    """A fresh load reads the index file named in the config and answers the same; the run holds a path."""
    _, fx = both_backends(dataset, embeddings)
    path = fx.config.index_path
    assert os.path.isfile(path) and fx.config.owns_index
    before = dataset.sort_by_similarity(dataset.first().id, k=5, brain_key="fx").values("id")
    reloaded = fo.load_dataset(dataset.name).load_brain_results("fx", cache=False)
    assert type(reloaded).__name__ == "FaissSimilarityIndex" and reloaded.config.index_path == path
    assert reloaded.sort_by_similarity(dataset.first().id, k=5).values("id") == before
    assert "embeddings" not in reloaded.serialize()
    np.testing.assert_allclose(reloaded.get_embeddings()[0], embeddings / np.linalg.norm(embeddings, axis=1,
                                                                                         keepdims=True), atol=1e-6)
    dataset.delete_brain_run("fx")  # FiftyOne created the file, so it goes with the run
    assert not os.path.exists(path)


def test_a_step_index_joins_on_curate_id_skips_foreign_rows_and_is_read_only(dataset, embeddings, tmp_path):
    """An index saved by curate (ids = curate ids, shuffled, plus rows not in the dataset) answers like
    sklearn, never returns the foreign rows, refuses edits and outlives its brain run."""
    from curate.index.fiftyone_backend import register_index

    both_backends(dataset, embeddings)
    order = np.random.default_rng(0).permutation(N)
    extra = np.random.default_rng(1).standard_normal((5, D)).astype(np.float32)
    ids = [f"s{i:02d}" for i in order] + [f"synth:x:{i}" for i in range(5)]
    path = tmp_path / "index.faiss"
    build_index(np.concatenate([embeddings[order], extra]), kind="flat", ids=ids).save(path)

    step = register_index(dataset, "step_index", path)
    assert step.total_index_size == N
    first = dataset.first().id
    got = dataset.sort_by_similarity(first, k=N, brain_key="step_index").values("id")
    assert got == dataset.sort_by_similarity(first, k=N, brain_key="sk").values("id")
    with pytest.raises(ValueError, match="belongs to a curate step"):
        step.add_to_index(embeddings[:1], [first])
    register_index(dataset, "step_index", path)  # re-registering replaces the run and keeps the file
    dataset.delete_brain_run("step_index")
    assert path.is_file()


def test_the_cached_id_map_follows_dataset_edits(dataset, embeddings, tmp_path, fo):
    """The row -> sample-id map is cached between loads; adding, deleting or re-keying samples misses the cache."""
    from curate.index.fiftyone_backend import _id_map_dir, register_index

    path = tmp_path / "index.faiss"
    build_index(embeddings, kind="flat", ids=[f"s{i:02d}" for i in range(N)]).save(path)
    register_index(dataset, "step_index", path)
    cached = set(_id_map_dir().glob("*.npz"))
    assert dataset.load_brain_results("step_index", cache=False).total_index_size == N
    assert set(_id_map_dir().glob("*.npz")) == cached  # a hit writes nothing new

    sample = dataset.first()
    sample["curate_id"] = "renamed"
    sample.save()
    assert dataset.load_brain_results("step_index", cache=False).total_index_size == N - 1
    dataset.delete_samples(dataset.skip(1).first())
    assert dataset.load_brain_results("step_index", cache=False).total_index_size == N - 2
    dataset.add_sample(fo.Sample(filepath="/nonexistent/back.png", curate_id="s00"))
    results = dataset.load_brain_results("step_index", cache=False)
    assert results.total_index_size == N - 1
    back = dataset.match(fo.ViewField("curate_id") == "s00").first().id
    assert back in results.sample_ids.tolist()
    assert set(_id_map_dir().glob("*.npz")) == cached  # misses replace the one map of this index and dataset


def test_brain_env_adds_faiss_to_the_declared_backends():
    """The App server gets the backend through the environment, without dropping the user's choices."""
    from curate.fo.database import brain_env

    assert brain_env({})["FIFTYONE_BRAIN_SIMILARITY_BACKENDS"] == "*,faiss"
    env = brain_env({"FIFTYONE_BRAIN_SIMILARITY_BACKENDS": "sklearn,qdrant"})
    assert env["FIFTYONE_BRAIN_SIMILARITY_BACKENDS"] == "sklearn,qdrant,faiss"
    assert env["FIFTYONE_BRAIN_SIMILARITY_FAISS_CONFIG_CLS"] == "curate.index.fiftyone_backend.FaissSimilarityConfig"


def test_a_plain_fiftyone_process_with_the_brain_env_uses_the_backend(dataset, embeddings, fiftyone_db):
    """What the App server does: a fresh process that only has the environment (no curate calls)
    lists `faiss` among its brain backends and answers sort_by_similarity from the saved run."""
    import json
    import subprocess
    import sys

    import fiftyone.brain as fob

    from curate.fo.database import brain_env

    fob.compute_similarity(dataset, embeddings=embeddings, brain_key="fx", backend="faiss", metric="cosine")
    query = dataset.values("id")[4]
    expect = dataset.sort_by_similarity(query, k=5, brain_key="fx").values("id")
    script = ("import json, sys, fiftyone as fo, fiftyone.brain as fob\n"
              "ds = fo.load_dataset(sys.argv[1])\n"
              "print(json.dumps(['faiss' in fob.brain_config.similarity_backends,"
              " ds.sort_by_similarity(sys.argv[2], k=5, brain_key='fx').values('id')]))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIFTYONE_BRAIN")}
    out = subprocess.run([sys.executable, "-c", script, dataset.name, query], env={**env, **brain_env(env)},
                         capture_output=True, text=True, timeout=120, check=True)
    registered, got = json.loads(out.stdout.strip().splitlines()[-1])
    assert registered and got == expect


def test_open_app_hands_the_brain_env_to_the_server(monkeypatch, tmp_path, fiftyone_db):
    import curate.fo.app as app

    seen = {}
    monkeypatch.setattr(app, "launch_app", lambda name, **kw: seen.update(name=name, env=kw["env"]))
    (tmp_path / "fiftyone.json").write_text('{"dataset": "some-dataset"}')
    app.open_app(tmp_path)
    assert seen["name"] == "some-dataset"
    assert "faiss" in seen["env"]["FIFTYONE_BRAIN_SIMILARITY_BACKENDS"].split(",")


def test_fiftyone_owned_index_grows_and_shrinks_like_sklearn(dataset, embeddings):
    """add_to_index / remove_from_index rebuild the owned file: answers match an index built at once."""
    import fiftyone.brain as fob

    ids = np.asarray(dataset.values("id"))
    both_backends(dataset, embeddings)
    fx = fob.compute_similarity(dataset, embeddings=False, brain_key="grow", backend="faiss", metric="cosine")
    assert fx.total_index_size == 0 and fx._kneighbors(query=ids[0], k=3) == ([], None)
    fx.add_to_index(embeddings[:30], ids[:30])
    fx.add_to_index(embeddings[30:], ids[30:])
    got = dataset.sort_by_similarity(ids[3], k=8, brain_key="grow").values("id")
    assert got == dataset.sort_by_similarity(ids[3], k=8, brain_key="sk").values("id")
    fx.remove_from_index(sample_ids=ids[10:20])
    assert fx.total_index_size == 40
    got = fx.sort_by_similarity(ids[3], k=40).values("id")
    assert not set(got) & set(ids[10:20]) and len(got) == 40
