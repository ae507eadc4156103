"""Export shard layout: a multiple of the nodes, rows per shard within one of each other."""

import datasets
import pytest

from curate.export.dataset import shard_files, shard_rows


@pytest.mark.parametrize("rows, per_shard, nodes, expected", [(50, 7, 4, 8), (50, 100, 4, 4), (3, 1, 1, 3),
                                                              (10, 3, 2, 4)])
def test_shard_count_is_a_multiple_of_the_nodes_and_shards_stay_under_the_row_limit(rows, per_shard, nodes, expected):
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"id": [str(i) for i in range(rows)]})})
    names = shard_files(dd, per_shard, nodes=nodes)["train"]
    assert len(names) == expected and names[-1] == f"data/train-{expected - 1:05d}-of-{expected:05d}.parquet"
    sizes = shard_rows(rows, expected)
    assert sum(sizes) == rows and max(sizes) - min(sizes) <= 1 and max(sizes) <= per_shard
    assert sizes == [len(dd["train"].shard(num_shards=expected, index=i, contiguous=True)) for i in range(expected)]
