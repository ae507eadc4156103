"""source -> embed -> fiftyone -> index -> duplicates -> export through the runner, then the library
functions behind `curate index query|build|dups` and `curate export`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from curate.errors import UsageError
from curate.recipes import parse_recipe, run_recipe

RECIPE = """\
name: idx
steps:
  - id: cifar
    uses: source
    with: {kind: demo, limit_per_class: 2}
  - id: embed
    uses: embed
    inputs: {data: cifar}
    with: {model: resnet20-cifar}
  - id: fiftyone
    uses: fiftyone
    inputs: {data: cifar}
    with: {visualization: none}
  - id: index
    uses: index
    inputs: {data: cifar, embeddings: embed}
  - id: duplicates
    uses: duplicates
    inputs: {data: cifar, embeddings: embed, index: index}
    with: {threshold: 0.01}
  - id: export
    uses: export
    inputs: {data: cifar}
    with: {license: other, source_datasets: [cifar10]}
"""


def test_recipe_indexes_finds_duplicates_exports_and_answers_queries(tmp_path, fo):
    import datasets
    from PIL import Image

    from curate.recipes.export_run import export_run
    from curate.index.query import query_index
    from curate.recipes.runner import run_steps_of_kind

    plan = parse_recipe(RECIPE, filename="idx.yaml")
    result = run_recipe(plan, workdir=tmp_path, progress=False)
    run_dir = result.run_dir
    assert result.outcome("index").metrics["rows"] == 40
    assert result.outcome("index").metrics["fiftyone"]["searchable_rows"] == 40
    assert result.outcome("duplicates").metrics["embedded_rows"] == 40
    record = json.loads((run_dir / "fiftyone.json").read_text())
    dataset = fo.load_dataset(record["dataset"])
    assert "index" in dataset.list_brain_runs() and dataset.has_saved_view("near_duplicates")

    # an image file is embedded with the embed step's model: its own sample comes back at distance ~0
    table = datasets.load_from_disk(str(run_dir / "cifar" / "table"))
    image_file = tmp_path / "query.png"
    table[7]["image"].save(image_file)
    hits = query_index(run_dir, image_path=image_file, k=3)
    assert hits[0].sample_id == table[7]["id"] and hits[0].distance < 1e-5 and hits[0].set == "real"
    by_id = query_index(run_dir, sample_id=table[7]["id"], k=3)
    assert table[7]["id"] not in [h.sample_id for h in by_id] and by_id == sorted(by_id, key=lambda h: h.distance)
    vector = np.load(run_dir / "embed" / "embeddings.npy")[7]
    assert query_index(run_dir, vector=vector, k=1)[0].sample_id == table[7]["id"]
    assert query_index(run_dir, vector=vector[None], k=1)[0].sample_id == table[7]["id"]
    with pytest.raises(UsageError, match=r"one numeric vector of shape \(D,\) or \(1, D\), got float32 of shape "
                                         r"\(2, 1, 64\)"):  # refused, not flattened into a 128-dim query
        query_index(run_dir, vector=np.stack([vector[None], vector[None]]), k=1)
    with pytest.raises(UsageError, match="NaN or infinite"):
        query_index(run_dir, vector=np.full_like(vector, np.nan), k=1)
    with pytest.raises(UsageError, match="exactly one of"):
        query_index(run_dir, k=3)

    # the capability commands rerun nothing that is up to date
    assert {o.id: o.state for o in run_steps_of_kind(run_dir, ["index"], progress=False).outcomes}["index"] == "skipped"
    assert run_steps_of_kind(run_dir, ["duplicates"], progress=False).outcome("duplicates").state == "skipped"
    dataset.delete_brain_run("index")  # gone from the App: the index step must register it again
    assert run_steps_of_kind(run_dir, ["index"], progress=False).outcome("index").state == "ran"
    assert "index" in fo.load_dataset(record["dataset"]).list_brain_runs()

    [exported] = export_run(run_dir, progress=False)
    assert exported.url is None and (exported.folder / "README.md").is_file()
    loaded = datasets.load_from_disk(str(exported.dataset_dir))
    assert sorted(loaded) == ["test", "train"] and len(loaded["train"]) == 20
    assert Image.open(image_file).size == loaded["train"][0]["image"].size
    with pytest.raises(UsageError, match=r"'me/idx'.*kept at"):
        export_run(run_dir, push_to="me/idx", progress=False)


def test_fiftyone_step_last_shows_every_earlier_step_and_a_rerun_skips_everything(tmp_path, fo):
    """Order independence: with the mirror last, the first run's App already has the index's brain run and
    the duplicates' fields and views (the fiftyone step shows the steps that ran before it), and a second
    run skips every step."""
    fo_step = RECIPE[RECIPE.index("  - id: fiftyone"):RECIPE.index("  - id: index")]
    last = RECIPE.replace(fo_step, "") + fo_step
    plan = parse_recipe(last, filename="idx.yaml")
    result = run_recipe(plan, workdir=tmp_path, progress=False)
    assert result.outcome("index").metrics["fiftyone"] is None  # no dataset yet when it ran
    assert set(result.outcome("fiftyone").metrics["steps_shown"]) == {"index", "duplicates"}
    dataset = fo.load_dataset(json.loads((result.run_dir / "fiftyone.json").read_text())["dataset"])
    assert "index" in dataset.list_brain_runs()
    assert dataset.has_saved_view("near_duplicates") and "duplicates_near" in dataset.get_field_schema()
    for step in ("index", "duplicates"):
        record = json.loads((result.run_dir / step / "fiftyone.json").read_text())
        assert record["dataset"] == dataset.name
    again = run_recipe(parse_recipe(last, filename="idx.yaml"), workdir=tmp_path, progress=False)
    assert {o.state for o in again.outcomes} == {"skipped"}


LOOKALIKES = """\
name: looks
steps:
  - id: cifar
    uses: source
    with: {kind: demo, limit_per_class: 2}
  - id: embed
    uses: embed
    inputs: {data: cifar}
    with: {model: resnet20-cifar}
  - id: index
    uses: index
    inputs: {data: cifar, embeddings: embed}
  - id: embed_test
    uses: embed
    inputs: {data: cifar}
    with: {model: resnet20-cifar, split: test}
  - id: index_test
    uses: index
    inputs: {data: cifar, embeddings: embed_test}
  - id: copies
    uses: duplicates
    inputs: {data: cifar, embeddings: embed}
    with: {threshold: 0.0001, exact: false}
  - id: loose
    uses: duplicates
    inputs: {data: cifar, embeddings: embed}
    with: {threshold: 0.4, exact: false}
"""


def test_query_output_names_label_and_split_and_loose_duplicates_are_candidates_to_review(tmp_path):
    """`curate index query`: a header and each neighbour's label and split (from the indexed table); an unknown
    id shows what ids look like. Duplicates at a threshold where distinct images pair up are candidates."""
    import datasets

    from curate.index.query import format_neighbors, query_index

    result = run_recipe(parse_recipe(LOOKALIKES, filename="looks.yaml"), workdir=tmp_path, progress=False)
    run_dir = result.run_dir
    table = datasets.load_from_disk(str(run_dir / "cifar" / "table"))
    names = table.features["label"].names
    truth = {row["id"]: (names[row["label"]], row["split"]) for row in table}
    hits = query_index(run_dir, index_step="index", sample_id=table[3]["id"], k=5)
    assert len(hits) == 5 and all((h.label, h.split) == truth[h.sample_id] for h in hits)
    assert {h.split for h in hits} <= {"train", "test"} and all(h.set == "real" for h in hits)
    test_id = next(row["id"] for row in table if row["split"] == "test")
    test_hits = query_index(run_dir, index_step="index_test", sample_id=test_id, k=19)  # index rows != table rows
    assert all((h.label, h.split) == truth[h.sample_id] for h in test_hits) and len(test_hits) == 19
    lines = format_neighbors(hits)
    assert lines[0].split() == ["distance", "set", "label", "split", "id"]
    assert lines[1].split() == [f"{hits[0].distance:.4f}", "real", *truth[hits[0].sample_id], hits[0].sample_id]
    from click.testing import CliRunner

    from curate.cli import cli

    out = CliRunner().invoke(cli, ["index", "query", str(run_dir), "--id", table[3]["id"], "-k", "5", "--step", "index"])
    assert out.exit_code == 0 and out.output.splitlines() == lines
    with pytest.raises(UsageError) as caught:
        query_index(run_dir, index_step="index", sample_id="cat-0001", k=3)
    assert str(caught.value) == (f"no sample with id 'cat-0001' in the index of run {run_dir}; ids look like "
                                 f"{table[0]['id']!r} (the `id` column of the run's table)")

    copies, loose = result.outcome("copies").metrics, result.outcome("loose").metrics
    assert copies["near_pairs"] == 0 and copies["near_status"] == "duplicates"
    assert loose["near_pairs_across_labels"] > 0 and loose["near_status"] == "candidates to review"
    assert "leak_status" in loose
    report = (run_dir / "loose" / "duplicates.html").read_text()
    assert "Near duplicates: candidates to review" in report
    assert "candidates to review" not in (run_dir / "copies" / "duplicates.html").read_text()


def test_a_copy_is_a_duplicate_and_look_alikes_are_candidates_to_review(tmp_path):
    """60 demo images plus a copy of the first with +-1 pixel noise: at a tight threshold the copy pair alone is
    found and its pixels confirm it (duplicates); at a loose one same-class look-alikes join it (candidates).
    (A JPEG re-encode at quality 75 lands 0.02-0.12 from its original in ResNet-20 features, as far as the
    look-alikes, so it cannot be planted below them.)"""
    from importlib import resources

    demo = np.load(str(resources.files("curate.data") / "demo" / "cifar10_demo.npz"))
    images, labels = demo["train_images"][:60], demo["train_labels"][:60]
    noise = np.random.default_rng(0).integers(-1, 2, images[0].shape)
    copy = np.clip(images[0].astype(int) + noise, 0, 255).astype(np.uint8)
    np.savez(tmp_path / "planted.npz", images=np.concatenate([images, copy[None]]),
             labels=np.concatenate([labels, labels[:1]]))
    recipe = f"""\
name: planted
steps:
  - id: data
    uses: source
    with: {{kind: npz, path: '{tmp_path / "planted.npz"}', class_names: [a, b, c, d, e, f, g, h, i, j]}}
  - id: embed
    uses: embed
    inputs: {{data: data}}
    with: {{model: resnet20-cifar}}
  - id: tight
    uses: duplicates
    inputs: {{data: data, embeddings: embed}}
    with: {{threshold: 0.002, exact: false}}
  - id: loose
    uses: duplicates
    inputs: {{data: data, embeddings: embed}}
    with: {{threshold: 0.05, exact: false}}
"""
    result = run_recipe(parse_recipe(recipe, filename="planted.yaml"), workdir=tmp_path, progress=False)
    tight, loose = result.outcome("tight").metrics, result.outcome("loose").metrics
    assert tight["near_pairs"] == 1 and tight["near_pairs_not_copies"] == 0 and tight["near_status"] == "duplicates"
    assert loose["near_pairs"] > 1 and loose["near_pairs_not_copies"] > 0
    assert loose["near_status"] == "candidates to review"
    assert loose["near_pairs_checked"] == loose["near_pairs"]


def test_thumbnail_correlation_tells_copies_from_other_pictures():
    from curate.index.duplicates import COPY_CORRELATION, thumbnail_correlation

    rng = np.random.default_rng(0)
    a = rng.uniform(0, 255, (5, 16, 16))
    brighter = np.clip(a * 0.8 + 30, 0, 255)  # contrast and brightness: still the same picture
    other = rng.uniform(0, 255, (5, 16, 16))
    assert (thumbnail_correlation(a, brighter) > 0.999).all()
    assert (thumbnail_correlation(a, other) < COPY_CORRELATION).all()
    assert thumbnail_correlation(np.zeros((1, 4, 4)), a[:1, :4, :4])[0] == 0.0  # a flat image: no evidence
    with pytest.raises(UsageError, match="paired thumbnails"):
        thumbnail_correlation(a, other[:, :8])
