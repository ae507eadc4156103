"""train_diffusion with text conditioning and the class_tokens synth method in a tiny recipe: tokens saved and
reloaded, samples filtered by a classifier that did not guide, provenance, sheets, KID/FID."""

import datasets
import numpy as np
import pytest

from curate.recipes import parse_recipe, run_recipe
from synth.class_tokens import load_token
from synth.train_diffusion import load_diffusion_model

RECIPE = """\
name: tokens_tiny
steps:
  - id: cifar
    uses: source
    with: {kind: demo, limit_per_class: 2}
  - id: t2i
    uses: train_diffusion
    inputs: {data: cifar}
    with: {image_size: 8, block_out_channels: [4, 8], attention_levels: [1], class_conditional: false,
           text_conditioning: true, tone_words: true, context_dim: 16, steps: 3, batch_size: 4}
  - id: guide
    uses: train
    inputs: {data: cifar}
    with: {model: convnet, model_config: {width: 8, depth: 1, im_size: 8}, epochs: 1, batch_size: 16}
  - id: sieve
    uses: train
    inputs: {data: cifar}
    with: {model: convnet, model_config: {width: 4, depth: 1, im_size: 8}, epochs: 1, batch_size: 16}
  - id: gen
    uses: synth
    inputs: {data: cifar, diffusion: t2i, classifier: guide, filter: sieve}
    with: {method: class_tokens, classes: [cat, ship], per_class: 2, max_epochs: 2, epoch_size: 1, train_steps: 2,
           num_inference_steps: 2, min_confidence: 0.0, min_copy_distance: 0.0TOKENS}
"""


def _run(tmp_path, tokens=""):
    text = RECIPE.replace("TOKENS", f", tokens: {tokens}" if tokens else "")
    result = run_recipe(parse_recipe(text, filename="tokens.yaml"), workdir=tmp_path, progress=False)
    table = datasets.load_from_disk(str(tmp_path / "tokens_tiny" / "gen" / "table"))
    return result.outcome("gen").metrics, table.filter(lambda s: s == "synthetic", input_columns="set")


def test_class_tokens_recipe_learns_saves_reloads_and_filters(tmp_path):
    run = tmp_path / "tokens_tiny"
    metrics, rows = _run(tmp_path)
    model = load_diffusion_model(run / "t2i" / "model")
    assert model.text_conditioned and (run / "t2i" / "model" / "tokenizer").is_dir()
    names = model.class_names
    assert rows["label"] == [names.index("cat")] * 2 + [names.index("ship")] * 2
    assert set(rows["method"]) == {"class_tokens"} and metrics["kept"] == 4
    assert metrics["guide_model"] == "convnet (step guide)" and metrics["filter_model"] == "convnet (step sieve)"
    assert metrics["filter_scoring"] == "independent" and {"kid_all", "fid_all"} <= set(metrics)
    assert set(metrics["token_epochs"]) == {"cat", "ship"} and (run / "gen" / "samples.png").is_file()
    token, meta = load_token(run / "gen" / "class_tokens" / "cat.safetensors")
    assert token.class_name == "cat" and meta["placeholder"] == "newclas" and "t2i" in meta["base_model"]
    assert token.row.shape == (1, 16)
    saved = str(run / "gen" / "class_tokens")
    again, reloaded = _run(tmp_path / "again", tokens=saved)  # same seeds, tokens loaded back: the same images
    assert again["tokens_from"] == saved
    for a, b in zip(rows["image"], reloaded["image"]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_text_conditioning_refuses_class_ids_and_embeddings():
    from curate.errors import UsageError

    bad = RECIPE.replace("class_conditional: false,", "")
    with pytest.raises(UsageError, match="class_conditional"):
        parse_recipe(bad.replace("TOKENS", ""), filename="tokens.yaml")
    untexted = RECIPE.replace("text_conditioning: true, ", "").replace("TOKENS", "")
    with pytest.raises(UsageError, match="tone_words.*text_conditioning: true"):
        parse_recipe(untexted, filename="tokens.yaml")
