"""CIFAR ResNets: the akamaster architecture exactly, so its weights reproduce its accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from curate.models import create_model
from curate.models.resnet_cifar import CIFAR10_CLASSES, ResNet20Cifar
from curate.models.weights import read_state_dict

AKAMASTER = "models/cifar10_resnet_akamaster"


def _accuracy(model, root) -> float:
    images = np.load(root / "cifar10/test/images.npy", allow_pickle=False)
    labels = np.load(root / "cifar10/test/labels.npy", allow_pickle=False)
    with torch.inference_mode():
        pred = torch.cat([model(model.preprocess(images[i:i + 256])).argmax(1)
                          for i in range(0, len(images), 256)])
    return float((pred.numpy() == labels).mean() * 100)


def test_resnet20_bundled_weights_score_as_published_on_the_test_subset(shared_data):
    """91.63% on the 932 lossless test images (shared/data README section 6)."""
    model = create_model("resnet20-cifar")
    assert model.class_names == list(CIFAR10_CLASSES)
    assert _accuracy(model, shared_data) == pytest.approx(91.63, abs=0.2)


def test_resnet56_loads_the_original_th_file_with_module_prefix(shared_data):
    """The DataParallel .th checkpoint ({'state_dict': {'module.*'}}) loads strictly: 92.60%."""
    model = create_model("resnet56-cifar", weights=shared_data / AKAMASTER / "resnet56-4bfd9763.th")
    assert _accuracy(model, shared_data) == pytest.approx(92.60, abs=0.2)


def test_bundled_weights_equal_the_shared_copy(shared_data):
    bundled = read_state_dict(ResNet20Cifar.default_weights)
    original = read_state_dict(shared_data / AKAMASTER / "resnet20-12fca82f.th")
    assert bundled.keys() == original.keys()
    assert all(torch.equal(bundled[k], original[k]) for k in bundled)


@pytest.mark.parametrize(("name", "params"), [("resnet20-cifar", 269_722), ("resnet56-cifar", 853_018)])
def test_parameter_counts_match_the_paper(name, params):
    model = create_model(name, weights=None)
    assert sum(p.numel() for p in model.parameters()) == params


def test_feature_map_is_layer3_and_embedding_is_its_average():
    model = create_model("resnet20-cifar", weights=None, seed=0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fmap = model.forward_features(x)
        assert fmap.shape == (2, 64, 8, 8)
        torch.testing.assert_close(model.features(x), fmap.mean(dim=(2, 3)))


def test_option_a_shortcut_has_no_parameters():
    """Downsampling shortcuts are zero-pad + subsample, never 1x1 convs (akamaster keys have none)."""
    keys = create_model("resnet20-cifar", weights=None).state_dict().keys()
    assert not [k for k in keys if "shortcut" in k or "downsample" in k]


def test_default_weights_with_other_class_count_load_backbone_and_new_head():
    """num_classes=5 with weights='default': bundled backbone, fresh 5-class head, no CIFAR names."""
    bundled = read_state_dict(ResNet20Cifar.default_weights)
    model = create_model("resnet20-cifar", num_classes=5, seed=0)
    state = model.state_dict()
    assert torch.equal(state["layer3.2.conv2.weight"], bundled["layer3.2.conv2.weight"])
    assert state["linear.weight"].shape == (5, 64)
    assert model.class_names is None
