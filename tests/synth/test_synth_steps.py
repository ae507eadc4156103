"""The train_diffusion and synth steps end to end in a tiny recipe: new table version, provenance, compare."""

import json

import datasets
import numpy as np
import pytest

from curate.errors import UsageError
from curate.recipes import parse_recipe, run_recipe

TINY = """\
name: synth_tiny
steps:
  - id: cifar
    uses: source
    with: {kind: demo, limit_per_class: 3}
  - id: ddpm
    uses: train_diffusion
    inputs: {data: cifar}
    with: {image_size: 8, block_out_channels: [4, 8], steps: 3, batch_size: 4, checkpoint_every: 2}
  - id: gen
    uses: synth
    inputs: {data: cifar, diffusion: ddpm}
    with:
      method: classifier_guidance
      per_class: 1
      guidance_scale: 1.0
      num_inference_steps: 2
      noisy_steps: 2
      noisy_width: 8
      min_confidence: 0.0
      min_copy_distance: 0.0
  - id: real
    uses: train
    inputs: {data: cifar}
    with: {model: convnet, model_config: {width: 8, depth: 1}, epochs: 1, batch_size: 16}
  - id: augmented
    uses: train
    inputs: {data: gen}
    with: {model: convnet, model_config: {width: 8, depth: 1}, epochs: 1, batch_size: 16}
  - id: compare
    uses: compare
    inputs: {runs: [real, augmented]}
"""


def test_tiny_synth_recipe_appends_synthetic_rows_and_compares(tmp_path):
    """Every generated sample passes the open filters, lands as a synthetic row with provenance, and trains."""
    plan = parse_recipe(TINY, filename="tiny.yaml")
    result = run_recipe(plan, workdir=tmp_path, progress=False)
    run = tmp_path / "synth_tiny"
    ddpm = json.loads((run / "ddpm" / "step.json").read_text())
    assert ddpm["outputs"]["diffusion_model"]["format"] == "diffusers"
    assert (run / "ddpm" / "model" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (run / "ddpm" / "loss.png").is_file() and (run / "ddpm" / "checkpoints" / "checkpoint.pt").is_file()
    source = datasets.load_from_disk(str(run / "cifar" / "table"))
    table = datasets.load_from_disk(str(run / "gen" / "table"))
    assert len(table) == len(source) + 10
    synthetic = table.filter(lambda s: s == "synthetic", input_columns="set")
    assert synthetic["id"] == [f"synth:gen:{n}" for n in range(10)]
    assert synthetic["label"] == list(range(10)) and set(synthetic["split"]) == {"train"}
    assert set(synthetic["synth_model"]) == {"ddpm"} and len(set(synthetic["synth_seed"])) == 10
    assert np.asarray(synthetic[0]["image"]).shape == (8, 8, 3)
    gen = result.outcome("gen").metrics
    assert gen["kept"] == 10 and {"kid_all", "fid_all", "kid_real", "accuracy", "images_per_second"} <= set(gen)
    assert (run / "gen" / "samples.png").is_file() and (run / "gen" / "noisy_classifier.safetensors").is_file()
    assert result.outcome("augmented").metrics["train_rows"] == result.outcome("real").metrics["train_rows"] + 10
    assert {"real", "augmented"} <= set(result.outcome("compare").metrics)
    again = run_recipe(plan, workdir=tmp_path, progress=False)
    assert {o.state for o in again.outcomes} == {"skipped"}


def test_synth_needs_a_diffusion_model_and_a_known_method():
    bad = TINY.replace("inputs: {data: cifar, diffusion: ddpm}", "inputs: {data: cifar}")
    with pytest.raises(UsageError, match="diffusion"):
        parse_recipe(bad, filename="bad.yaml")
    with pytest.raises(UsageError, match="method"):
        parse_recipe(TINY.replace("method: classifier_guidance", "method: clasifier_guidance"), filename="bad.yaml")
