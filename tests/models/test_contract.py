"""The contract every registered model keeps, so steps can swap architectures freely.

Parametrized over every registered name; the ``hf:`` prefix is covered by tiny local
checkpoints (a ResNet and a DINOv2 with classification heads, a plain ViT, a full CLIP).
"""

from __future__ import annotations

import json

import pytest
import torch

from curate.models import CurateModel, create_model, list_models, load_model, save_model

HF_CASES = {"hf:tiny-resnet": ("resnet", 3), "hf:tiny-vit": ("vit", 5), "hf:tiny-dinov2": ("dinov2", 4),
            "hf:tiny-clip": ("clip", 6)}
CASES = [n for n in list_models() if not n.endswith(":")] + list(HF_CASES)


@pytest.fixture(params=CASES)
def case(request, hf_checkpoints) -> tuple[str, int]:
    """(model name, num_classes) for one registered model."""
    if request.param in HF_CASES:
        folder, k = HF_CASES[request.param]
        return f"hf:{hf_checkpoints[folder]}", k
    return request.param, 10


def _batch(model: CurateModel, n: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, model.preprocess.channels, *model.preprocess.size, generator=gen)


def test_every_registered_prefix_has_a_contract_case():
    """A new registered prefix resolver must get tiny cases here, or it goes untested."""
    assert [n for n in list_models() if n.endswith(":")] == ["hf:"]


def test_shapes_attributes_and_finite_outputs(case):
    name, k = case
    model = create_model(name, num_classes=k, seed=0)
    x = _batch(model)
    with torch.no_grad():
        logits, feats, emb = model(x), model.forward_features(x), model.features(x)
    assert isinstance(model, CurateModel) and model.name == name
    assert model.num_classes == k and logits.shape == (3, k)
    assert feats.ndim in (3, 4) and feats.shape[0] == 3  # (N, C, h, w) map or (N, L, D) tokens
    assert emb.shape == (3, model.num_features)
    assert model.class_names is None or len(model.class_names) == k
    assert isinstance(model.cfg, dict) and not model.training
    for t in (logits, feats, emb):
        assert torch.isfinite(t).all()


def test_forward_is_head_of_features(case):
    """forward(x) == forward_head(forward_features(x)); features() is what the head reads."""
    name, k = case
    model = create_model(name, num_classes=k, seed=0)
    x = _batch(model)
    with torch.no_grad():
        feats = model.forward_features(x)
        torch.testing.assert_close(model(x), model.forward_head(feats))
        torch.testing.assert_close(model.classifier_head(model.features(x)), model(x))


def test_batch_equals_one_at_a_time(case):
    """Eval-mode outputs do not depend on batch composition (no batch statistics leak)."""
    name, k = case
    model = create_model(name, num_classes=k, seed=0)
    x = _batch(model)
    with torch.no_grad():
        single = torch.cat([model(x[i:i + 1]) for i in range(len(x))])
        torch.testing.assert_close(model(x), single, atol=1e-5, rtol=1e-4)


def test_seeded_random_init_is_deterministic_and_scoped(case):
    name, k = case
    before = torch.random.get_rng_state()
    a = create_model(name, num_classes=k, weights=None, seed=0).state_dict()
    b = create_model(name, num_classes=k, weights=None, seed=0).state_dict()
    c = create_model(name, num_classes=k, weights=None, seed=1).state_dict()
    assert torch.equal(torch.random.get_rng_state(), before), "seeded creation changed the global RNG"
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert any(not torch.equal(a[key], c[key]) for key in a if a[key].is_floating_point())


def test_save_load_round_trip(case, tmp_path):
    name, k = case
    model = create_model(name, num_classes=k, weights=None, seed=3, class_names=[f"c{i}" for i in range(k)])
    save_model(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["name"] == name and config["num_classes"] == k and "_curate_version" in config
    loaded = load_model(tmp_path)
    assert (loaded.name, loaded.num_classes, loaded.class_names) == (name, k, model.class_names)
    assert loaded.cfg == model.cfg and loaded.preprocess == model.preprocess
    x = _batch(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
        torch.testing.assert_close(loaded.features(x), model.features(x), atol=0, rtol=0)


def test_channels_last_gives_the_same_logits(case):
    name, k = case
    model = create_model(name, num_classes=k, seed=0)
    x = _batch(model)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        got = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
