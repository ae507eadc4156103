"""Weight files: safetensors or weights_only torch pickles, loaded strictly with named keys."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from curate.errors import UsageError
from curate.models import create_model
from curate.models.weights import read_state_dict


@pytest.fixture
def state():
    return create_model("resnet20-cifar", weights=None, seed=0).state_dict()


def test_missing_key_is_named_with_the_file(state, tmp_path):
    path = tmp_path / "broken.safetensors"
    save_file({k: v for k, v in state.items() if k != "layer2.1.bn1.weight"}, str(path))
    with pytest.raises(UsageError, match=r"broken\.safetensors.*missing keys: layer2\.1\.bn1\.weight"):
        create_model("resnet20-cifar", weights=path)


def test_unexpected_and_misshaped_keys_are_named(state, tmp_path):
    path = tmp_path / "extra.safetensors"
    save_file({**state, "linear.weight": torch.zeros(3, 64), "extra.bias": torch.zeros(1)}, str(path))
    with pytest.raises(UsageError) as err:
        create_model("resnet20-cifar", weights=path)
    assert "unexpected keys: extra.bias" in str(err.value)
    assert "linear.weight (3, 64) vs (10, 64)" in str(err.value)


def test_torch_file_with_wrapper_and_module_prefix_loads(state, tmp_path):
    """Checkpoints saved from DataParallel inside {'state_dict': ...} load to the same tensors."""
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    loaded = create_model("resnet20-cifar", weights=path).state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


class _Payload:
    """Any class instance: a full unpickler would construct it (and could run code)."""


def test_torch_file_with_arbitrary_objects_is_refused(state, tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"state_dict": state, "payload": _Payload()}, path)
    with pytest.raises(UsageError, match=r"unsafe\.pt.*weights_only=True"):
        read_state_dict(path)


@pytest.mark.parametrize(("filename", "message"), [("nope.safetensors", "does not exist"),
                                                   ("weights.bin", "has suffix '.bin'")])
def test_bad_paths_are_usage_errors(tmp_path, filename, message):
    path = tmp_path / filename
    if filename.endswith(".bin"):
        path.write_bytes(b"x")
    with pytest.raises(UsageError, match=message):
        read_state_dict(path)
