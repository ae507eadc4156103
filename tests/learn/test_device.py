"""Device resolution: 'auto' follows the hardware, an unavailable GPU is a one-line usage error."""

import pytest
import torch

from curate.errors import UsageError
from curate.learn import resolve_device


@pytest.mark.parametrize("available, expected", [(False, "cpu"), (True, "cuda")])
def test_auto_picks_cuda_only_when_a_gpu_is_visible(monkeypatch, available, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"


def test_cuda_without_a_gpu_says_what_to_use_instead(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="no CUDA GPU is visible; use device 'auto' or 'cpu'") as err:
        resolve_device("cuda")
    assert "\n" not in str(err.value)


def test_unknown_device_names_the_choices():
    with pytest.raises(UsageError, match="must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"):
        resolve_device("gpu")
