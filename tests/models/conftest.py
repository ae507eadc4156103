"""Tiny random-weight transformers checkpoints saved to a tmp folder (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TINY_VIT = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                image_size=16, patch_size=8)


def _write_processor(folder: Path, **fields) -> None:
    proc = {"image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.3], **fields}
    (folder / "preprocessor_config.json").write_text(json.dumps(proc))


@pytest.fixture(scope="session")
def hf_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """name -> local checkpoint folder: ResNet with a 3-class head, plain ViT, DINOv2 with a
    4-class head, full CLIP (text + vision)."""
    import torch
    import transformers as tf

    root = tmp_path_factory.mktemp("hf")
    paths = {name: root / name for name in ("resnet", "vit", "dinov2", "clip")}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        resnet = tf.ResNetForImageClassification(tf.ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3,
            id2label={0: "cat", 1: "dog", 2: "owl"}, label2id={"cat": 0, "dog": 1, "owl": 2}))
        vit = tf.ViTModel(tf.ViTConfig(**TINY_VIT))
        dinov2 = tf.Dinov2ForImageClassification(tf.Dinov2Config(
            hidden_size=16, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, image_size=16, patch_size=8,
            num_labels=4))
        clip = tf.CLIPModel(tf.CLIPConfig(
            projection_dim=12, vision_config=TINY_VIT,
            text_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                             vocab_size=64, bos_token_id=0, eos_token_id=1, pad_token_id=1)))
    for name, net in (("resnet", resnet), ("vit", vit), ("dinov2", dinov2), ("clip", clip)):
        net.save_pretrained(paths[name])
    _write_processor(paths["resnet"], size={"shortest_edge": 32})
    _write_processor(paths["vit"], size={"height": 16, "width": 16})
    _write_processor(paths["dinov2"], size={"shortest_edge": 20}, crop_size={"height": 16, "width": 16},
                     do_center_crop=True)
    _write_processor(paths["clip"], size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16},
                     do_center_crop=True)
    return paths
