"""The `predict` step: it refuses an untrained head, validates the probe route, and runs
`source -> embed -> predict(probe) -> audit` on a folder of images."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from curate.cli import cli
from curate.errors import RecipeError, UsageError
from curate.learn import create_probe, cross_val_probe
from curate.recipes import parse_recipe, run_recipe

CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FOLDER_CLASSES = ("cat", "dog", "ship")
PER_CLASS = 20


@pytest.fixture(scope="module")
def folder(tmp_path_factory, shared_data):
    """A 3-class image folder (root/<class>/*.png) of real CIFAR-10 test images: cat, dog, ship."""
    root = tmp_path_factory.mktemp("folder")
    images = np.load(shared_data / "cifar10" / "test" / "images.npy", mmap_mode="r")
    labels = np.load(shared_data / "cifar10" / "test" / "labels.npy")
    for name in FOLDER_CLASSES:
        (root / name).mkdir()
        for i in np.flatnonzero(labels == CIFAR.index(name))[:PER_CLASS]:
            Image.fromarray(np.asarray(images[i])).save(root / name / f"{i:04d}.png")
    return root


def recipe(source: str, *steps: str) -> str:
    return "name: r\nsteps:\n  - id: data\n    uses: source\n    with: " + source + "\n" + "".join(steps)


def step(sid: str, uses: str, inputs: str, with_: str = "{}") -> str:
    return f"  - id: {sid}\n    uses: {uses}\n    inputs: {inputs}\n    with: {with_}\n"


DEMO = "{kind: demo, limit_per_class: 6}"
EMBED = step("embed", "embed", "{data: data}", "{model: resnet20-cifar}")


def problems_of(text: str) -> list[str]:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, filename="r.yaml")
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(("predict", "expected"), [
    (step("p", "predict", "{data: data}", "{probe: linear}"),
     "step 'p' inputs.embeddings: `probe: linear` needs `inputs.embeddings`: wire an embed step of this table"),
    (step("p", "predict", "{data: data, embeddings: embed}", "{probe: knn, model: resnet20-cifar}"),
     "step 'p' with.model: a probe reads `inputs.embeddings`, not a model; drop `with.model`"),
    (step("p", "predict", "{data: data, embeddings: embed, model: embed}", "{probe: knn}"),
     "step 'p' inputs.model"),
    (step("p", "predict", "{data: data, embeddings: embed}", "{model: resnet20-cifar}"),
     "step 'p' inputs.embeddings: only a probe reads `inputs.embeddings`; set `probe: linear`"),
    (step("p", "predict", "{data: data, embeddings: embed}", "{probe: linear, folds: 0}"),
     "step 'p' with.folds: a probe needs at least 2 folds (null: 5), got 0"),
    (step("p", "predict", "{data: data, embeddings: embed}", "{probe: lin}"),
     "step 'p' with.probe: expected one of 'linear', 'knn' or null, got 'lin'"),
    (step("p", "predict", "{data: data, embeddings: embed}", "{probe: knn, knn_k: 0}"),
     "step 'p' with.knn_k: expected an integer > 0, got 0"),
])
def test_probe_validation_errors(predict, expected):
    found = problems_of(recipe(DEMO, EMBED, predict))
    assert any(expected in p for p in found), found


def test_a_new_untrained_head_is_refused_in_one_line_naming_the_three_fixes(tmp_path, folder):
    """The issue's case: resnet20-cifar on a 3-class folder gets a new head; predict must not score with it."""
    text = recipe(f"{{kind: imagefolder, path: {folder}}}",
                  step("teacher", "predict", "{data: data}", "{model: resnet20-cifar}"))
    (tmp_path / "r.yaml").write_text(text)
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "r.yaml"), "--workdir", str(tmp_path), "--quiet"])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.output.rstrip().endswith(errors[0])
    line = errors[0]
    assert "step 'teacher': model 'resnet20-cifar' has an untrained 3-class head for these classes (cat, dog, ship)" \
        in line
    for fix in ("train it (a `train` step wired to `inputs.model`)", "`folds: 5`", "`probe: linear`"):
        assert fix in line
    assert not (tmp_path / "r" / "teacher" / "pred_probs.npy").exists()


def test_a_random_init_without_folds_is_refused_and_a_trained_model_is_not(tmp_path):
    tiny = "{model: convnet, weights: null, model_config: {width: 8, depth: 1}"
    refused = recipe(DEMO, step("p", "predict", "{data: data}", tiny + "}"))
    with pytest.raises(UsageError, match="step 'p': model 'convnet' has an untrained 10-class head"):
        run_recipe(parse_recipe(refused, filename="r.yaml"), workdir=tmp_path / "a", progress=False)
    trained = recipe(DEMO, step("train", "train", "{data: data}", tiny + ", epochs: 1, batch_size: 32}"),
                     step("p", "predict", "{data: data, model: train}", "{split: test}"))
    out = run_recipe(parse_recipe(trained, filename="r.yaml"), workdir=tmp_path / "b", progress=False)
    assert out.outcome("p").state == "ran"


def test_resnet20_on_cifar10_class_names_keeps_its_trained_head(tmp_path):
    text = recipe(DEMO, step("teacher", "predict", "{data: data}", "{model: resnet20-cifar, split: test}"))
    out = run_recipe(parse_recipe(text, filename="r.yaml"), workdir=tmp_path, progress=False)
    metrics = json.loads((out.run_dir / "teacher" / "metrics.json").read_text())
    assert metrics["rows"] == 60 and metrics["accuracy"] > 0.8


def test_folder_to_audit_through_an_embedding_probe(tmp_path, folder):
    """source -> embed -> predict(probe) -> audit on the 3-class folder; the probe's pred_probs are the
    library's cross_val_probe on the embed step's vectors, for the embedded rows only."""
    text = recipe(f"{{kind: imagefolder, path: {folder}}}", EMBED,
                  step("linear", "predict", "{data: data, embeddings: embed}", "{probe: linear}"),
                  step("knn", "predict", "{data: data, embeddings: embed}", "{probe: knn, knn_k: 5, folds: 3}"),
                  step("audit", "audit", "{data: data, pred_probs: linear, embeddings: embed}", "{top_issues: 4}"))
    out = run_recipe(parse_recipe(text, filename="r.yaml"), workdir=tmp_path, progress=False)
    run = out.run_dir
    labels = np.repeat(np.arange(3), PER_CLASS)  # folder order: class folders sorted, files sorted
    vectors = np.load(run / "embed" / "embeddings.npy")
    for sid, probe, folds in (("linear", create_probe("linear"), 5), ("knn", create_probe("knn", k=5), 3)):
        probs = np.load(run / sid / "pred_probs.npy")
        ids = np.load(run / sid / "pred_probs.ids.npy")
        assert list(ids) == list(np.load(run / "embed" / "embeddings.ids.npy"))
        np.testing.assert_allclose(probs, cross_val_probe(vectors, labels, probe, folds=folds, seed=0), atol=1e-6)
        metrics = json.loads((run / sid / "metrics.json").read_text())
        assert metrics["probe"] == sid and metrics["folds"] == folds and metrics["rows"] == 3 * PER_CLASS
        assert metrics["accuracy"] == pytest.approx((probs.argmax(1) == labels).mean(), abs=1e-4)
        assert metrics["accuracy"] > 0.7 and metrics["probe_seconds"] < 10  # chance is 1/3
    audit = json.loads((run / "audit" / "metrics.json").read_text())
    assert audit["rows"] == 3 * PER_CLASS and audit["pred_probs_near_chance"] is False


def test_probe_rows_are_the_embedded_rows_of_split(tmp_path):
    """Embed only the test split; a probe over all rows predicts exactly the embedded ones."""
    text = recipe(DEMO, step("embed", "embed", "{data: data}", "{model: resnet20-cifar, split: test}"),
                  step("p", "predict", "{data: data, embeddings: embed}", "{probe: knn, folds: 2}"),
                  step("q", "predict", "{data: data, embeddings: embed}", "{probe: knn, folds: 2, split: train}"))
    with pytest.raises(UsageError, match="none of the 60 rows of split 'train' were embedded by step 'embed'"):
        run_recipe(parse_recipe(text, filename="r.yaml"), workdir=tmp_path, progress=False)
    ids = np.load(tmp_path / "r" / "p" / "pred_probs.ids.npy")
    assert len(ids) == 60 and all(i.startswith("cifar10/test/") for i in ids)


def test_the_step_defaults_are_the_probes_defaults():
    from curate.learn import KnnProbe, LinearProbe
    from curate.steps.predict import PredictConfig

    config = PredictConfig(probe="knn")
    assert (config.l2, config.knn_k, config.knn_temperature, config.num_folds) == \
        (LinearProbe().l2, KnnProbe().k, KnnProbe().temperature, 5)
    assert PredictConfig(model="convnet").num_folds == 0
