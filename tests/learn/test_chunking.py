"""Chunk sizes: cache-sized on CPU, large on a GPU, whole batches where BatchNorm couples the batch."""

import numpy as np
import pytest
import torch

from curate.errors import UsageError
from curate.learn.chunking import CPU_CHUNK, GPU_CHUNK, check_chunk, couples_batch, resolve_chunk
from curate.models import create_model


def convnet(norm: str):
    return create_model("convnet", width=8, depth=2, num_classes=3, im_size=8, norm=norm)


@pytest.mark.parametrize("available, expected", [(False, CPU_CHUNK), (True, GPU_CHUNK)])
def test_the_default_follows_the_device(monkeypatch, available, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert resolve_chunk(None, convnet("instancenorm"), "auto") == expected
    assert resolve_chunk(None, convnet("instancenorm"), "cpu") == CPU_CHUNK == 16


def test_batchnorm_runs_whole_batches_and_refuses_an_explicit_chunk():
    bn = convnet("batchnorm")
    assert couples_batch(bn) and not couples_batch(convnet("instancenorm"))
    assert resolve_chunk(None, bn, "cpu") is None
    with pytest.raises(UsageError, match="`chunk` would change the batch statistics"):
        resolve_chunk(4, bn, "cpu")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8", np.float32(4)])
def test_a_chunk_is_a_positive_integer_named_in_the_error(bad):
    with pytest.raises(UsageError, match="`micro_batch` must be an integer >= 1 or None"):
        check_chunk(bad, convnet("instancenorm"), name="micro_batch")
    assert check_chunk(7, convnet("instancenorm")) == 7
    sized = check_chunk(np.int64(7), convnet("instancenorm"))
    assert sized == 7 and type(sized) is int
