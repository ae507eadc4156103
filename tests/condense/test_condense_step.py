"""The `condense` recipe step end to end: a new table version, the float set, pictures, metrics; validation."""

import json

import numpy as np
import pytest

from curate.condense import SyntheticSet
from curate.errors import RecipeError, UsageError
from curate.recipes import parse_recipe, run_recipe

RECIPE = """\
name: tiny-condense
steps:
  - id: cifar
    uses: source
    with: {kind: demo, limit_per_class: 4}
  - id: distilled
    uses: condense
    inputs: {data: cifar}
    with:
      method: dm
      ipc: 2
      iterations: 3
      plugins: [fyi]
      model_config: {width: 8, depth: 2}
      options: {batch_real: 4}
      checkpoint_every: 1
      chunk: 3
      evaluate: {runs: 2, epochs: 2}
"""


def test_condense_recipe_writes_a_distilled_table_version_and_its_evaluation(tmp_path, monkeypatch):
    import curate.condense.report as report

    notes = []
    describe = report.describe
    monkeypatch.setattr(report, "describe", lambda synthetic, note=None: notes.append(note) or describe(
        synthetic, note=note))
    result = run_recipe(parse_recipe(RECIPE, filename="tiny.yaml"), workdir=tmp_path, progress=False)
    step = tmp_path / "tiny-condense" / "distilled"
    manifest = json.loads((step / "step.json").read_text())
    assert set(manifest["outputs"]) == {"table", "synthetic_set", "report"}

    import datasets

    table = datasets.load_from_disk(str(step / "table"))
    distilled = table.filter(lambda row: row["set"] == "distilled")
    assert len(distilled) == 20 and distilled[0]["id"] == "distilled:distilled:0"
    assert set(distilled["split"]) == {"train"} and distilled[0]["method"] == "dm"
    parameters = json.loads(distilled[0]["parameters"])
    assert parameters["ipc"] == 2 and parameters["plugins"] == ["fyi"] and parameters["iterations"] == 3
    assert distilled[0]["source_step"] == "distilled" and distilled[0]["seed"] == 0
    real = table.filter(lambda row: row["set"] == "real")
    assert len(real) == 40 and set(real["split"]) == {"test"} and real[0]["method"] is None
    assert np.asarray(distilled[0]["image"]).shape == (32, 32, 3)

    synthetic = SyntheticSet.load(step / "synthetic.safetensors")
    assert synthetic.images.shape == (20, 3, 32, 32) and len(synthetic.history) == 3
    # the table's uint8 images are the export of the float set
    assert np.array_equal(np.stack([np.asarray(im) for im in distilled["image"]]), synthetic.to_uint8())
    for picture in ("grid.png", "loss.png"):
        assert (step / picture).read_bytes()[:4] == b"\x89PNG"

    metrics = result.outcome("distilled").metrics
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["random_accuracy"] <= 1
    assert metrics["accuracy_ci95"] is not None and metrics["eval_runs"] == 2
    assert metrics["plugins"] == ["fyi"] and metrics["init"] == "real"
    # 3 of DM's 20,000 iterations and 2 of its 1,000 evaluation epochs: marked in metrics.json, report, figures
    shortened = "shortened protocol: 3 of 20,000 iterations, 2 of 1,000 evaluation epochs"
    assert metrics["protocol"] == "shortened protocol" and metrics["protocol_shortfall"] == shortened
    assert (metrics["paper_iterations"], metrics["paper_eval_epochs"]) == (20000, 1000)
    assert json.loads((step / "metrics.json").read_text())["protocol"] == "shortened protocol"
    assert notes == [shortened, shortened]  # the titles of grid.png and loss.png
    evaluation = json.loads((step / "evaluation.json").read_text())
    assert len(evaluation["distilled"]["runs"]) == 2 and evaluation["protocol"]["dsa"] is True
    assert evaluation["protocol"]["chunk"] == 3 and evaluation["protocol"]["lr_schedule"] == "official"
    assert evaluation["budget"]["shortfall"] == shortened

    again = run_recipe(parse_recipe(RECIPE, filename="tiny.yaml"), workdir=tmp_path, progress=False)
    assert again.outcome("distilled").state == "skipped"


def test_bad_method_and_method_options_fail_validation_with_their_lines():
    bad = RECIPE.replace("method: dm", "method: dmm").replace("{batch_real: 4}", "{batch_reel: 4}")
    with pytest.raises(RecipeError, match=r"tiny.yaml:\d+: step 'distilled' with.method: unknown distiller 'dmm'"):
        parse_recipe(bad, filename="tiny.yaml")
    bad = RECIPE.replace("{batch_real: 4}", "{batch_reel: 4}")
    with pytest.raises(RecipeError, match=r"with.options.batch_reel: unknown field \(did you mean 'batch_real'"):
        parse_recipe(bad, filename="tiny.yaml")
    with pytest.raises(RecipeError, match=r"tiny.yaml:\d+: step 'distilled' with.chunk"):
        parse_recipe(RECIPE.replace("chunk: 3", "chunk: 0"), filename="tiny.yaml")


def test_plugins_are_validated_at_recipe_load_and_fyi_stays_a_shorthand():
    with pytest.raises(RecipeError, match=r"tiny.yaml:\d+: step 'distilled' with.plugins\[0\]: unknown distillation "
                                          r"plug-in 'fyo' \(did you mean 'fyi'\?\); known: fyi"):
        parse_recipe(RECIPE.replace("plugins: [fyi]", "plugins: [fyo]"), filename="tiny.yaml")
    with pytest.raises(RecipeError, match=r"step 'distilled' with.fyi: `fyi: false` contradicts `plugins`"):
        parse_recipe(RECIPE.replace("plugins: [fyi]", "plugins: [fyi]\n      fyi: false"), filename="tiny.yaml")
    parse_recipe(RECIPE.replace("plugins: [fyi]", "fyi: true"), filename="tiny.yaml")
    parse_recipe(RECIPE.replace("plugins: [fyi]", "plugins: [fyi]\n      fyi: true"), filename="tiny.yaml")


def test_a_chunk_the_evaluation_network_cannot_take_fails_before_distilling(tmp_path):
    bad = RECIPE.replace("evaluate: {runs: 2, epochs: 2}",
                         "evaluate: {runs: 2, epochs: 2, model_config: {width: 8, depth: 2, norm: batchnorm}}")
    with pytest.raises(UsageError, match="step 'distilled': `chunk` would change the batch statistics"):
        run_recipe(parse_recipe(bad, filename="tiny.yaml"), workdir=tmp_path, progress=False)
    assert not (tmp_path / "tiny-condense" / "distilled" / "checkpoints").exists()


def test_listing_distillers_and_the_step_config_do_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, curate.condense, curate.steps.condense; "
            "assert curate.condense.DISTILLERS.names(); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


SOURCE = RECIPE[:RECIPE.index("  - id: distilled")]  # the name line and the source step
SRE2L = SOURCE.replace("tiny-condense", "tiny-recover").replace("limit_per_class: 4", "limit_per_class: 2") + """\
  - id: dm
    uses: condense
    inputs: {data: cifar}
    with: {method: dm, ipc: 1, iterations: 1, model_config: {width: 8, depth: 2}, options: {batch_real: 2},
           evaluate: {runs: 0}}
  - id: recovered
    uses: condense
    inputs: {data: cifar, compare: [dm]}
    with:
      method: cda
      ipc: 1
      iterations: 2
      teacher: {model: resnet20-cifar}
      options: {milestone: 0.5}
      model_config: {width: 8, depth: 2}
      evaluate: {runs: 2, kd: {epochs: 1, batch_size: 8}, relabel: stored}
"""


def test_cda_recipe_recovers_from_a_registry_teacher_and_reports_the_kd_baselines(tmp_path, fo, dataset_name):
    text = SRE2L + (f"  - id: browse\n    uses: fiftyone\n    inputs: {{data: recovered}}\n"
                    f"    with: {{dataset_name: {dataset_name}, visualization: none}}\n"
                    "  - id: export\n    uses: export\n    inputs: {data: recovered}\n"
                    "    with: {license: other, source_datasets: [cifar10]}\n")
    result = run_recipe(parse_recipe(text, filename="tiny.yaml"), workdir=tmp_path, progress=False)
    step = tmp_path / "tiny-recover" / "recovered"

    import datasets

    table = datasets.load_from_disk(str(step / "table"))
    distilled = table.filter(lambda row: row["set"] == "distilled")
    assert len(distilled) == 10 and set(distilled["method"]) == {"cda"}
    parameters = json.loads(distilled[0]["parameters"])
    assert parameters["ipc"] == 1 and parameters["options"]["milestone"] == 0.5 and parameters["init"] == "noise"
    assert parameters["teacher"]["name"] == "resnet20-cifar" and distilled[0]["seed"] == 0
    synthetic = SyntheticSet.load(step / "synthetic.safetensors")
    assert np.array_equal(np.stack([np.asarray(im) for im in distilled["image"]]), synthetic.to_uint8())
    blocks = json.loads((step / "blocks.json").read_text())
    assert [b["classes"] for b in blocks] == [[0, 10]] and blocks[0]["seconds"] > 0

    metrics = result.outcome("recovered").metrics
    assert metrics["eval_protocol"] == "kd" and metrics["teacher"] == "resnet20-cifar" and metrics["blocks"] == 1
    for name in ("accuracy", "random_accuracy", "random_hard_accuracy", "dm_accuracy"):
        assert 0 <= metrics[name] <= 1 and metrics[f"{name}_ci95"] is not None, name
    shortened = "shortened protocol: 2 of 4,000 iterations, 1 of 400 evaluation epochs"
    assert metrics["protocol_shortfall"] == shortened
    from curate.steps.condense import CondenseStep

    headline = CondenseStep.headline(metrics)
    assert headline.startswith(f"accuracy {metrics['accuracy']:.2%} under KD vs {metrics['random_accuracy']:.2%} "
                               "for random real images under KD (")
    assert f"{metrics['random_hard_accuracy']:.2%} with their own labels)" in headline
    evaluation = json.loads((step / "evaluation.json").read_text())
    assert set(evaluation) >= {"distilled", "random", "random_hard", "dm"}
    assert evaluation["protocol"]["protocol"] == "kd" and evaluation["protocol"]["kd"]["epochs"] == 1
    assert evaluation["protocol"]["relabel"] == "stored"
    from curate.condense.relabel import SoftLabels

    record = SoftLabels.load(step / "soft_labels.safetensors")  # the distilled set's FKD-style labels
    assert record.logits.shape == (1, 10, 10) and record.batch_size == 8

    dataset = fo.load_dataset(dataset_name)  # the FiftyOne mirror shows the recovered rows with their provenance
    assert dataset.count() == len(table) and len(dataset.match({"set": "distilled"})) == 10
    exported = datasets.load_from_disk(str(tmp_path / "tiny-recover" / "export" / "dataset"))["train"]
    assert set(exported["method"]) == {"cda"} and len(exported) == 10
    assert json.loads(exported[0]["parameters"])["teacher"]["name"] == "resnet20-cifar"


def test_recovery_takes_a_train_steps_model_as_its_teacher(tmp_path):
    text = SRE2L.replace("""      teacher: {model: resnet20-cifar}
""", "").replace("inputs: {data: cifar, compare: [dm]}", "inputs: {data: cifar, teacher: teacher}").replace(
        "  - id: recovered", """  - id: teacher
    uses: train
    inputs: {data: cifar}
    with: {model: convnet, model_config: {width: 8, depth: 2, norm: batchnorm}, epochs: 1, batch_size: 8}
  - id: recovered""").replace("method: cda", "method: sre2l").replace("options: {milestone: 0.5}", "options: {}")
    text = text.replace("evaluate: {runs: 2, kd: {epochs: 1, batch_size: 8}, relabel: stored}",
                        "evaluate: {runs: 1, kd: {epochs: 1}}")
    result = run_recipe(parse_recipe(text, filename="tiny.yaml"), workdir=tmp_path, progress=False)
    metrics = result.outcome("recovered").metrics
    assert metrics["teacher"] == "convnet" and metrics["method"] == "sre2l" and "dm_accuracy" not in metrics
    assert metrics["protocol_shortfall"] == "shortened protocol: 2 of 1,000 iterations, 1 of 400 evaluation epochs"

    from click.testing import CliRunner

    from curate.cli import cli

    rerun = CliRunner().invoke(cli, ["condense", str(result.run_dir), "--set", "recovered.iterations=3", "--quiet"])
    assert rerun.exit_code == 0, rerun.output
    metrics = json.loads((result.run_dir / "recovered" / "metrics.json").read_text())
    assert metrics["iterations"] == 3 and metrics["protocol_shortfall"].startswith("shortened protocol: 3 of 1,000")


@pytest.mark.parametrize("change, message", [
    (("      teacher: {model: resnet20-cifar}\n", ""), r"with.teacher: method 'cda' recovers images from a trained "
                                                     r"teacher; name one in `with.teacher`"),
    (("options: {milestone: 0.5}", "options: {milestone: 0}"), r"with.options.milestone: 0 switches the curriculum "
                                                               r"off.*use method sre2l"),
    (("evaluate: {runs: 0}}", "evaluate: {runs: 1, protocol: kd}}"), r"step 'dm' with.teacher: the KD protocol "
                                                                      r"relabels with a teacher"),
    (("evaluate: {runs: 0}}", "evaluate: {runs: 0}, teacher: {model: resnet20-cifar}}"),
     r"step 'dm' with.teacher: method 'dm' evaluated under the hard protocol uses no teacher"),
    (("relabel: stored}", "relabel: stored, protocol: hard}"), r"with.evaluate.relabel: stored soft labels belong "
                                                               r"to the KD protocol"),
])
def test_recovery_settings_are_validated_at_recipe_load(change, message):
    with pytest.raises(RecipeError, match=message):
        parse_recipe(SRE2L.replace(*change), filename="tiny.yaml")
