"""The train_diffusion and synth steps end to end in tiny recipes: new table version, provenance, compare,
and the filter that keeps and scores the samples: never the guide unless the recipe opts in."""

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
  - id: sieve
    uses: train
    inputs: {data: cifar}
    with: {model: convnet, model_config: {width: 8, depth: 1, im_size: 8}, epochs: 1, batch_size: 16}
  - id: gen
    uses: synth
    inputs: {data: cifar, diffusion: ddpm, filter: sieve}
    with:
      method: classifier_guidance
      guidance: noisy_classifier
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
NOISY_GUIDE = "noisy_classifier (trained in this step)"


def _variant(tmp_path, *, wiring="{data: cifar, diffusion: ddpm, filter: sieve}", extra="", size=8,
             guidance="noisy_classifier"):
    """Run the recipe up to the synth step with other wiring / options; returns (metrics, synthetic rows)."""
    text = TINY.replace("inputs: {data: cifar, diffusion: ddpm, filter: sieve}", f"inputs: {wiring}")
    text = text.replace("guidance: noisy_classifier", f"guidance: {guidance}")
    text = text.replace("image_size: 8,", f"image_size: {size},")
    text = text.replace("      min_copy_distance: 0.0\n", "      min_copy_distance: 0.0\n" + extra)
    result = run_recipe(parse_recipe(text, filename="tiny.yaml"), workdir=tmp_path, progress=False,
                        only=["cifar", "ddpm", "sieve", "gen"])
    table = datasets.load_from_disk(str(tmp_path / "synth_tiny" / "gen" / "table"))
    return result.outcome("gen").metrics, table.filter(lambda s: s == "synthetic", input_columns="set")


def test_tiny_synth_recipe_appends_synthetic_rows_and_compares(tmp_path):
    """Every generated sample passes the open filters, lands as a synthetic row with provenance, and trains;
    the wired `train` step filters and scores, and provenance and metrics name it."""
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
    parameters = [json.loads(p) for p in synthetic["parameters"]]
    assert {p["diffusion_model"] for p in parameters} == {"ddpm"} and len(set(synthetic["seed"])) == 10
    assert {p["filter_model"] for p in parameters} == {"convnet (step sieve)"}
    assert {p["filter_scoring"] for p in parameters} == {"independent"} and set(synthetic["method"]) == {
        "classifier_guidance"}
    assert np.asarray(synthetic[0]["image"]).shape == (8, 8, 3)
    gen = result.outcome("gen").metrics
    assert gen["kept"] == 10 and {"kid_all", "fid_all", "kid_real", "accuracy", "images_per_second"} <= set(gen)
    assert gen["filter_model"] == "convnet (step sieve)" and gen["filter_scoring"] == "independent"
    assert gen["guide_model"] == NOISY_GUIDE
    assert json.loads((run / "gen" / "filter.json").read_text())["filter_model"] == "convnet (step sieve)"
    assert (run / "gen" / "samples.png").is_file() and (run / "gen" / "noisy_classifier.safetensors").is_file()
    assert result.outcome("augmented").metrics["train_rows"] == result.outcome("real").metrics["train_rows"] + 10
    assert {"real", "augmented"} <= set(result.outcome("compare").metrics)
    again = run_recipe(plan, workdir=tmp_path, progress=False)
    assert {o.state for o in again.outcomes} == {"skipped"}


def test_the_default_filter_is_the_pretrained_resnet20_for_32px_cifar_samples(tmp_path):
    """Nothing wired, CIFAR-10 classes, 32x32 samples: resnet20-cifar filters, and each row's filter_confidence is
    its target-class probability on that row's image (not the guide's)."""
    from curate.learn import predict_images
    from curate.models import create_model

    metrics, synthetic = _variant(tmp_path, wiring="{data: cifar, diffusion: ddpm}", size=32)
    assert metrics["filter_model"] == "resnet20-cifar (weights default)" and metrics["filter_scoring"] == "independent"
    assert {json.loads(p)["filter_model"] for p in synthetic["parameters"]} == {"resnet20-cifar (weights default)"}
    images = np.stack([np.asarray(im) for im in synthetic["image"]])
    probs = predict_images(create_model("resnet20-cifar", num_classes=10), images, device="cpu")
    np.testing.assert_allclose(synthetic["filter_confidence"], probs[np.arange(10), synthetic["label"]], atol=1e-5)


def test_confidence_quantile_keeps_what_the_filter_trusts_as_much_as_that_quantile_of_real_test_images(tmp_path):
    """The threshold is the 0.05-quantile of the filter's p(true class) over the table's test rows, recomputed here
    from the pretrained filter; a sample is dropped as low_confidence exactly when its confidence is below it."""
    from curate.data import decode_images
    from curate.data.table import split_indices
    from curate.learn import predict_images
    from curate.models import create_model

    metrics, synthetic = _variant(tmp_path, wiring="{data: cifar, diffusion: ddpm}", size=32,
                                  extra="      confidence_quantile: 0.05\n")
    table = datasets.load_from_disk(str(tmp_path / "synth_tiny" / "cifar" / "table"))
    rows = split_indices(table, "test", where="test")
    probs = predict_images(create_model("resnet20-cifar", num_classes=10), decode_images(table, rows, size=(32, 32)),
                           device="cpu")
    expected = float(np.quantile(probs[np.arange(len(rows)), np.asarray(table["label"])[rows]], 0.05))
    assert metrics["min_confidence"] == pytest.approx(expected, abs=1e-4) and 0 < expected < 1
    record = json.loads((tmp_path / "synth_tiny" / "gen" / "filter.json").read_text())
    assert record["confidence_quantile"] == 0.05 and record["min_confidence"] == pytest.approx(expected, abs=1e-6)
    low = np.asarray(record["confidence"]) < record["min_confidence"]
    assert (np.asarray(record["reason"]) == "low_confidence").tolist() == low.tolist()
    assert len(synthetic) == metrics["kept"] == int((~low).sum()) and 0 < metrics["kept"] < 10  # both sides
    assert {json.loads(p)["min_confidence"] for p in synthetic["parameters"]} <= {record["min_confidence"]}


def test_confidence_quantile_needs_a_reference_split():
    text = TINY.replace("      min_copy_distance: 0.0\n",
                        "      min_copy_distance: 0.0\n      confidence_quantile: 0.1\n      reference_split: null\n")
    with pytest.raises(UsageError, match="confidence_quantile.*reference_split"):
        parse_recipe(text, filename="bad.yaml")


def test_without_an_independent_filter_the_step_refuses_in_one_line(tmp_path):
    """8x8 samples: the pretrained ResNet-20 cannot judge them, nothing is wired, no opt-in -> one clear line."""
    with pytest.raises(UsageError, match="no independent filter classifier") as err:
        _variant(tmp_path, wiring="{data: cifar, diffusion: ddpm}")
    message = str(err.value)
    assert "\n" not in message and "inputs.filter" in message and "allow_self_filter" in message
    assert "8x8" in message and "im_size: 8" in message
    assert not (tmp_path / "synth_tiny" / "gen" / "noisy_classifier.safetensors").exists()  # refused before training


def test_allow_self_filter_labels_the_metrics_and_rows_self_scored(tmp_path):
    metrics, synthetic = _variant(tmp_path, wiring="{data: cifar, diffusion: ddpm}",
                                  extra="      allow_self_filter: true\n")
    assert metrics["filter_scoring"] == "self_scored"
    assert metrics["filter_model"] == metrics["guide_model"] == NOISY_GUIDE
    assert {"accuracy_self_scored", "mean_target_prob_self_scored"} <= set(metrics)
    assert "accuracy" not in metrics and "mean_target_prob" not in metrics  # no unlabelled self-score
    parameters = [json.loads(p) for p in synthetic["parameters"]]
    assert {p["filter_scoring"] for p in parameters} == {"self_scored"}
    assert {p["filter_model"] for p in parameters} == {NOISY_GUIDE}


def test_a_filter_that_is_the_guide_is_refused_unless_opted_in(tmp_path):
    """Clean guidance by the `sieve` step's classifier, filtered by the same step: refused; with the opt-in the
    samples are kept and labelled self-scored."""
    wiring = "{data: cifar, diffusion: ddpm, classifier: sieve, filter: sieve}"
    with pytest.raises(UsageError, match="is the classifier that guided"):
        _variant(tmp_path, wiring=wiring, guidance="clean_classifier")
    metrics, synthetic = _variant(tmp_path, wiring=wiring, guidance="clean_classifier",
                                  extra="      allow_self_filter: true\n")
    assert metrics["filter_scoring"] == "self_scored" and metrics["guide_model"] == "convnet (step sieve)"
    assert {json.loads(p)["filter_scoring"] for p in synthetic["parameters"]} == {"self_scored"}


def test_a_method_for_another_conditioning_is_refused_in_one_line(tmp_path):
    """ssl_conditioned on the class-conditional ddpm: one line that names what each needs and the method that fits."""
    gen = TINY.index("      method: classifier_guidance")
    text = TINY[:gen] + "      method: ssl_conditioned\n      per_class: 1\n" + TINY[TINY.index("  - id: real"):]
    with pytest.raises(UsageError, match="method ssl_conditioned needs a diffusion model conditioned on embeddings"
                                         ".*conditioned on class labels.*use method classifier_guidance") as err:
        run_recipe(parse_recipe(text, filename="tiny.yaml"), workdir=tmp_path, progress=False,
                   only=["cifar", "ddpm", "sieve", "gen"])
    assert "\n" not in str(err.value)


def test_synth_needs_a_diffusion_model_and_known_method_and_guidance():
    bad = TINY.replace("inputs: {data: cifar, diffusion: ddpm, filter: sieve}", "inputs: {data: cifar, filter: sieve}")
    with pytest.raises(UsageError, match="diffusion"):
        parse_recipe(bad, filename="bad.yaml")
    with pytest.raises(UsageError, match="method"):
        parse_recipe(TINY.replace("method: classifier_guidance", "method: clasifier_guidance"), filename="bad.yaml")
    with pytest.raises(UsageError, match="guidance.*did you mean 'noisy_classifier'"):
        parse_recipe(TINY.replace("guidance: noisy_classifier", "guidance: nosy_classifier"), filename="bad.yaml")
    with pytest.raises(UsageError, match="`classifier: noisy` is now `guidance: noisy_classifier`"):
        parse_recipe(TINY.replace("guidance: noisy_classifier", "classifier: noisy"), filename="old.yaml")
    with pytest.raises(UsageError, match="filter_model"):
        parse_recipe(TINY.replace("      guidance: noisy_classifier\n",
                                  "      guidance: noisy_classifier\n      filter_model: resnet20-cifar\n"),
                     filename="bad.yaml")


@pytest.mark.parametrize("name", ["full.yaml", "synth_small.yaml"])
def test_shipped_recipes_filter_with_a_classifier_that_did_not_guide(name):
    """Their samples are 16x16, where the pretrained ResNet-20 cannot judge: each synth step wires a `train` step
    trained at 16x16 to inputs.filter and guides with the noise-aware classifier, chosen by name."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "recipes" / name
    plan = parse_recipe(path.read_text(), filename=name)
    synth = [s for s in plan.steps if s.kind == "synth"]
    assert synth
    for step in synth:
        assert step.config.guidance == "noisy_classifier" and not step.config.allow_self_filter
        (filter_id,) = step.inputs["filter"]
        sieve = next(s for s in plan.steps if s.id == filter_id)
        assert sieve.kind == "train" and sieve.config.model_config["im_size"] == 16
