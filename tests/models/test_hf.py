"""hf: checkpoints keep transformers' numbers, take preprocessing from the processor config,
and save into self-contained curate folders."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import transformers as tf

from curate.errors import UsageError
from curate.models import Preprocess, create_model, load_model, save_model


def _x(n: int, size: int) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_checkpoint_head_is_kept_and_gives_transformers_logits(hf_checkpoints):
    path = hf_checkpoints["resnet"]
    model = create_model(f"hf:{path}", num_classes=3)
    reference = tf.AutoModelForImageClassification.from_pretrained(path).eval()
    x = _x(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(pixel_values=x).logits)
    assert model.class_names == ["cat", "dog", "owl"]
    assert model.forward_features(x).shape == (2, 16, 4, 4)  # CNN: last hidden map, stride 8


def test_dinov2_head_reads_cls_and_mean_patch_tokens(hf_checkpoints):
    path = hf_checkpoints["dinov2"]
    model = create_model(f"hf:{path}", num_classes=4)
    reference = tf.AutoModelForImageClassification.from_pretrained(path).eval()
    x = _x(2, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(pixel_values=x).logits)
    assert model.num_features == 32


def test_other_class_count_replaces_the_head_and_keeps_the_backbone(hf_checkpoints):
    path = hf_checkpoints["resnet"]
    kept = create_model(f"hf:{path}", num_classes=3)
    replaced = create_model(f"hf:{path}", num_classes=7, seed=0)
    x = _x(2, 32)
    with torch.no_grad():
        assert replaced(x).shape == (2, 7)
        torch.testing.assert_close(replaced.features(x), kept.features(x))
    assert replaced.class_names is None


def test_vit_features_are_the_cls_token(hf_checkpoints):
    path = hf_checkpoints["vit"]
    model = create_model(f"hf:{path}", num_classes=5, seed=0)
    reference = tf.AutoModel.from_pretrained(path).eval()
    x = _x(2, 16)
    with torch.no_grad():
        tokens = reference(pixel_values=x).last_hidden_state
        torch.testing.assert_close(model.forward_features(x), tokens)  # (N, 1 + 4 patches, 16)
        torch.testing.assert_close(model.features(x), tokens[:, 0])


def test_clip_features_are_the_projected_image_embedding(hf_checkpoints):
    path = hf_checkpoints["clip"]
    model = create_model(f"hf:{path}", num_classes=2, seed=0)
    reference = tf.CLIPModel.from_pretrained(path).eval()
    x = _x(2, 16)
    with torch.no_grad():
        embeds = reference(pixel_values=x, input_ids=torch.zeros(2, 3, dtype=torch.long)).image_embeds
        # CLIPModel returns unit-norm embeddings; ours are the raw projection
        torch.testing.assert_close(torch.nn.functional.normalize(model.features(x), dim=-1), embeds)
    assert model.num_features == 12


@pytest.mark.parametrize(("name", "expected"), [
    ("resnet", Preprocess(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), size=(32, 32))),   # shortest_edge
    ("vit", Preprocess(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), size=(16, 16))),      # height/width
    ("dinov2", Preprocess(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), size=(16, 16))),   # crop wins
])
def test_preprocess_comes_from_the_processor_config(hf_checkpoints, name, expected):
    k = {"resnet": 3, "dinov2": 4}.get(name, 2)
    assert create_model(f"hf:{hf_checkpoints[name]}", num_classes=k, seed=0).preprocess == expected


def test_saved_model_reloads_without_the_checkpoint(hf_checkpoints, tmp_path):
    """save_model records the transformers config and preprocessing; the source may disappear."""
    source = tmp_path / "ckpt"
    shutil.copytree(hf_checkpoints["vit"], source)
    model = create_model(f"hf:{source}", num_classes=5, seed=0)
    save_model(model, tmp_path / "saved")
    shutil.rmtree(source)
    loaded = load_model(tmp_path / "saved")
    x = _x(2, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    assert loaded.preprocess == model.preprocess


def test_missing_local_path_is_one_line(tmp_path):
    with pytest.raises(UsageError, match="local path .*does-not-exist.* does not exist") as err:
        create_model(f"hf:{tmp_path / 'does-not-exist'}")
    assert "\n" not in str(err.value)


def test_unsupported_model_type_names_the_supported_ones(tmp_path):
    tf.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
                  vocab_size=16).save_pretrained(tmp_path)
    with pytest.raises(UsageError, match="model_type 'bert'; supported: clip, clip_vision_model, dinov2, resnet, vit"):
        create_model(f"hf:{tmp_path}")


def test_unknown_hub_id_offline_is_a_usage_error():
    with pytest.raises(UsageError, match="cannot read its config"):
        create_model("hf:curate-tests/no-such-model")


def test_missing_processor_config_falls_back_to_imagenet_stats(hf_checkpoints, tmp_path, caplog):
    source = tmp_path / "ckpt"
    shutil.copytree(hf_checkpoints["vit"], source)
    (source / "preprocessor_config.json").unlink()
    model = create_model(f"hf:{source}", num_classes=2, seed=0)
    assert model.preprocess == Preprocess(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), size=(16, 16))
    assert "no preprocessor_config.json" in caplog.text
    assert json.loads((source / "config.json").read_text())["model_type"] == "vit"


def test_head_trained_only_when_the_checkpoint_head_is_kept_for_its_own_classes(hf_checkpoints):
    path = hf_checkpoints["resnet"]
    assert create_model(f"hf:{path}", num_classes=3).head_trained is True
    assert create_model(f"hf:{path}", num_classes=3, class_names=["cat", "dog", "owl"]).head_trained is True
    assert create_model(f"hf:{path}", num_classes=3, class_names=["a", "b", "c"]).head_trained is False
    assert create_model(f"hf:{path}", num_classes=7, seed=0).head_trained is False
    assert create_model(f"hf:{path}", num_classes=3, weights=None, seed=0).head_trained is False
    assert create_model(f"hf:{hf_checkpoints['vit']}", num_classes=5, seed=0).head_trained is False  # no head
