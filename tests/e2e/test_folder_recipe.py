"""The README's "Audit your own images" route: `curate init` and `recipes/folder.yaml` on a generated
3-class folder with planted problems, through the CLI, with the FiftyOne step last."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from curate.cli import cli
from curate.errors import UsageError
from curate.recipes.bundled import bundled_recipe, init_recipe

REPO_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "folder.yaml"


def _folder(root: Path) -> dict[str, str]:
    """12 bundled CIFAR-10 images each of cat, dog and ship, plus a ship filed under cat, a copy and a dark image."""
    from curate.data.sources.demo import DEMO_DIR

    data = np.load(DEMO_DIR / "cifar10_demo.npz", allow_pickle=False)
    images, labels = data["train_images"], data["train_labels"]
    classes = json.loads((DEMO_DIR / "classes.json").read_text())
    for name in ("cat", "dog", "ship"):
        (root / name).mkdir(parents=True)
        for i, row in enumerate(np.flatnonzero(labels == classes.index(name))[:12]):
            Image.fromarray(images[row]).save(root / name / f"{i:02d}.png")
    ship = np.flatnonzero(labels == classes.index("ship"))[20]
    Image.fromarray(images[ship]).save(root / "cat" / "mislabeled.png")
    (root / "dog" / "copy.png").write_bytes((root / "dog" / "03.png").read_bytes())
    Image.fromarray((images[np.flatnonzero(labels == classes.index("cat"))[30]] * 0.05).astype(np.uint8)).save(
        root / "cat" / "dark.png")
    return {"mislabeled": "cat/mislabeled.png", "copy": "dog/copy.png", "dark": "cat/dark.png"}


def test_the_folder_recipe_finds_the_planted_problems_and_a_rerun_skips(tmp_path, fo, monkeypatch):
    planted = _folder(tmp_path / "pics")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    args = ["run", str(REPO_RECIPE), "--workdir", str(tmp_path / "runs"), "--set", "images.path=pics", "--quiet"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "folder"

    import pyarrow.parquet as pq

    issues = {r["id"]: r for r in pq.read_table(run / "audit" / "issues.parquet").to_pylist()}
    assert issues[planted["mislabeled"]]["flagged"] and issues[planted["mislabeled"]]["suggested_name"] == "ship"
    quality = {r["id"]: r for r in pq.read_table(run / "quality" / "image_quality.parquet").to_pylist()}
    assert quality[planted["dark"]]["is_dark_issue"]
    groups = pq.read_table(run / "duplicates" / "duplicates.parquet").to_pylist()
    assert {"dog/03.png", planted["copy"]} <= {g["id"] for g in groups if g["kind"] == "exact"}
    record = json.loads((run / "fiftyone.json").read_text())
    dataset = fo.load_dataset(record["dataset"])
    assert dataset.has_saved_view("audit_label_issues") and "index" in dataset.list_brain_runs()

    from curate.recipes import run_recipe

    again = run_recipe(REPO_RECIPE, workdir=tmp_path / "runs", overrides=["images.path=pics"], progress=False)
    assert [o.state for o in again.outcomes] == ["skipped"] * 8


def test_init_writes_a_validated_copy_for_your_folder(tmp_path):
    (tmp_path / "My Pets" / "cat").mkdir(parents=True)
    out = init_recipe("folder", data=tmp_path / "My Pets", out=tmp_path / "pets.yaml")
    text = out.read_text()
    assert f"path: {tmp_path / 'My Pets'}" in text and "name: My-Pets" in text
    with pytest.raises(UsageError, match="exists; choose another --out or pass --force"):
        init_recipe("folder", data=tmp_path / "My Pets", out=out)
    with pytest.raises(UsageError, match="no recipe template 'foldr'; templates: folder"):
        init_recipe("foldr", data=tmp_path, out=tmp_path / "x.yaml")
    result = CliRunner().invoke(cli, ["init", "folder", "--path", str(tmp_path / "My Pets"), "--out",
                                      str(tmp_path / "cli.yaml"), "--name", "pets"])
    assert result.exit_code == 0 and "next: curate run" in result.output and "runs/pets" in result.output


def test_the_packaged_folder_recipe_is_the_repo_copy():
    assert bundled_recipe("folder").read_text() == REPO_RECIPE.read_text()
