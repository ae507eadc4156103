"""Executor output shards on disk: found again only for the same signature and rows, never half-written."""

import numpy as np

from curate.execute.shards import ShardStore


def test_a_shard_is_reused_only_for_the_same_signature_and_rows(tmp_path):
    store = ShardStore(tmp_path, signature="key")
    rows = np.array([4, 2, 9])
    store.save(rows, {"x": np.arange(6, dtype=np.float16).reshape(3, 2)})
    got = store.load(rows)
    assert list(got) == ["x"] and got["x"].dtype == np.float16
    np.testing.assert_array_equal(got["x"], np.arange(6).reshape(3, 2))
    assert store.load(np.array([4, 2, 8])) is None  # other rows
    assert ShardStore(tmp_path, signature="other key").load(rows) is None  # another model or config
    assert [p.name for p in tmp_path.iterdir()] == [store.path(rows).name]  # no temp file left


def test_a_damaged_shard_is_recomputed_not_trusted(tmp_path):
    store = ShardStore(tmp_path, signature="key")
    rows = np.arange(3)
    store.save(rows, {"x": np.zeros(3)})
    store.path(rows).write_bytes(b"truncated")
    assert store.load(rows) is None
