"""ConvNet-D as in the dataset-condensation code, so distilled sets are evaluated on the same net."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from curate.errors import UsageError
from curate.models import create_model


def test_convnet3_on_cifar_has_the_published_parameter_count():
    """DC/DSA/DM report ConvNet-3 (width 128, instancenorm) on 32x32x3, 10 classes: 320,010 params."""
    model = create_model("convnet")
    assert sum(p.numel() for p in model.parameters()) == 320_010
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 3 and all(m.num_groups == m.num_channels == 128 for m in norms)


def test_features_are_the_flattened_map():
    model = create_model("convnet", seed=0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fmap = model.forward_features(x)
        assert fmap.shape == (2, 128, 4, 4)
        torch.testing.assert_close(model.features(x), fmap.flatten(1))
    assert model.num_features == 2048


@pytest.mark.parametrize(("cfg", "num_features", "norm_type"), [
    ({"norm": "batchnorm", "width": 32, "depth": 2}, 32 * 8 * 8, nn.BatchNorm2d),
    ({"norm": "none", "depth": 4, "im_size": 64}, 128 * 4 * 4, None),
    ({"channels": 1, "im_size": 28}, 128 * 4 * 4, nn.GroupNorm),  # MNIST: first conv pads 3, 28 -> 32
])
def test_options_change_the_network(cfg, num_features, norm_type):
    model = create_model("convnet", seed=0, **cfg)
    assert model.num_features == num_features and model.cfg == {**model.cfg, **cfg}
    assert {type(m) for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))} == \
        ({norm_type} if norm_type else set())
    size = model.preprocess.size
    with torch.no_grad():
        assert model(torch.randn(2, model.preprocess.channels, *size)).shape == (2, 10)


@pytest.mark.parametrize(("cfg", "message"), [({"norm": "layer"}, "`norm` must be one of"),
                                              ({"depth": 6}, "`depth` 6 halves"),
                                              ({"widht": 64}, "did you mean 'width'")])
def test_bad_options_are_usage_errors(cfg, message):
    with pytest.raises(UsageError, match=message):
        create_model("convnet", **cfg)
