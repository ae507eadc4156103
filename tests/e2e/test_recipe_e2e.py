"""End to end through the CLI on the bundled demo data: run, skip on rerun, resume after a crash."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file

from curate.cli import cli
from curate.recipes import parse_recipe, run_recipe
from curate.recipes.bundled import bundled_recipe

SMALL = """\
name: small
steps:
  - id: cifar
    uses: source
    with: {kind: demo, limit_per_class: 12}
  - id: teacher
    uses: predict
    inputs: {data: cifar}
    with: {model: resnet20-cifar, split: test}
  - id: oof
    uses: predict
    inputs: {data: cifar}
    with:
      model: convnet
      weights: null
      model_config: {width: 8, depth: 2}
      split: train
      folds: 2
      train: {epochs: 1, batch_size: 32}
  - id: train
    uses: train
    inputs: {data: cifar}
    with: {model: convnet, model_config: {width: 8, depth: 2}, epochs: 2, batch_size: 32}
  - id: embed
    uses: embed
    inputs: {data: cifar, model: train}
  - id: compare
    uses: compare
    inputs: {runs: [teacher, train]}
"""


def test_cli_run_writes_every_artifact_and_second_run_skips(tmp_path):
    recipe = tmp_path / "small.yaml"
    recipe.write_text(SMALL)
    runner = CliRunner()
    first = runner.invoke(cli, ["run", str(recipe), "--workdir", str(tmp_path), "--quiet"])
    assert first.exit_code == 0, first.output
    run_dir = tmp_path / "small"
    teacher = json.loads((run_dir / "teacher" / "step.json").read_text())
    assert teacher["outputs"]["pred_probs"]["shape"] == [120, 10]
    assert teacher["metrics"]["accuracy"] > 0.8  # pretrained ResNet-20 on real CIFAR test images
    probs = np.load(run_dir / "oof" / "pred_probs.npy")
    assert probs.shape == (120, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    ids = np.load(run_dir / "oof" / "pred_probs.ids.npy")
    assert ids[0].startswith("cifar10/train/")
    emb = np.load(run_dir / "embed" / "embeddings.npy")
    assert emb.shape[0] == 240 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    assert (run_dir / "train" / "model" / "weights.safetensors").is_file()
    assert (run_dir / "compare" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert "accuracy" in json.loads((run_dir / "train" / "metrics.json").read_text())
    second = runner.invoke(cli, ["run", str(recipe), "--workdir", str(tmp_path), "--quiet"])
    assert second.exit_code == 0
    assert second.output.count("up to date, skipped") == 6


def test_crash_in_training_resumes_to_identical_result(tmp_path, write_faults):
    plan = parse_recipe(SMALL, filename="small.yaml")
    reference = run_recipe(plan, workdir=tmp_path / "ref", progress=False)
    # count the writes of an uninterrupted run, then crash at one near the end (inside `train` or `embed`)
    write_faults.reset(None)
    run_recipe(plan, workdir=tmp_path / "count", progress=False)
    total = write_faults.count
    write_faults.reset(total - 6)
    with pytest.raises(write_faults.Crash):
        run_recipe(plan, workdir=tmp_path / "crash", progress=False)
    write_faults.reset(None)
    resumed = run_recipe(plan, workdir=tmp_path / "crash", progress=False)
    states = {o.id: o.state for o in resumed.outcomes}
    assert states["cifar"] == states["teacher"] == states["oof"] == "skipped"
    assert "ran" in states.values()
    for rel in ("oof/pred_probs.npy", "embed/embeddings.npy", "teacher/pred_probs.npy"):
        assert np.array_equal(np.load(reference.run_dir / rel), np.load(resumed.run_dir / rel)), rel
    ref_w = load_file(reference.run_dir / "train" / "model" / "weights.safetensors")
    new_w = load_file(resumed.run_dir / "train" / "model" / "weights.safetensors")
    assert ref_w.keys() == new_w.keys() and all(np.array_equal(ref_w[k], new_w[k]) for k in ref_w)


def test_bundled_demo_recipe_validates_and_matches_repo_copy(tmp_path):
    from pathlib import Path

    from curate.recipes import load_recipe

    packaged = bundled_recipe("demo")
    assert load_recipe(packaged).ids[0] == "cifar"
    repo_copy = Path(__file__).resolve().parents[2] / "recipes" / "demo.yaml"
    if repo_copy.exists():
        assert repo_copy.read_text() == packaged.read_text()


def test_fiftyone_step_in_a_recipe_rebuilds_when_dataset_is_gone_and_clean_deletes_it(tmp_path, fo):
    text = SMALL + ("  - id: fiftyone\n    uses: fiftyone\n"
                    "    inputs: {data: cifar, predictions: [teacher], embeddings: [embed]}\n")
    plan = parse_recipe(text, filename="small.yaml")
    first = run_recipe(plan, workdir=tmp_path, progress=False)
    record = json.loads((first.run_dir / "fiftyone.json").read_text())
    dataset = fo.load_dataset(record["dataset"])
    assert len(dataset) == 240 and dataset.count("teacher") == 120
    assert run_recipe(plan, workdir=tmp_path, progress=False).outcome("fiftyone").state == "skipped"
    fo.delete_dataset(record["dataset"])
    assert run_recipe(plan, workdir=tmp_path, progress=False).outcome("fiftyone").state == "ran"
    assert fo.dataset_exists(record["dataset"])
    result = CliRunner().invoke(cli, ["clean", str(first.run_dir), "--yes"])
    assert result.exit_code == 0 and not fo.dataset_exists(record["dataset"])
