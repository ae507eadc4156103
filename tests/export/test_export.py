"""The `export` step: DatasetDict round trips (load_from_disk, parquet), the card, and Hub pushes (mocked)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from curate import artifacts, config
from curate.errors import UsageError
from curate.steps.base import Input, StepContext

CLASSES = ["cat", "dog", "ship"]


def png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def run(tmp_path):
    """A run folder with a table (real train/test rows, 2 distilled rows with provenance and soft
    labels, one grayscale 12x10 image) and a predict step's probabilities for the test rows."""
    import datasets

    rng = np.random.default_rng(0)
    n = 10
    images = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(n)]
    images[3] = rng.integers(0, 256, (12, 10), dtype=np.uint8)  # grayscale, another size
    soft = rng.dirichlet(np.ones(3), size=n).astype(np.float64)
    distilled = [False] * 8 + [True, True]
    columns = {
        "id": [f"toy/{i}" for i in range(8)] + ["distilled:condense:0", "distilled:condense:1"],
        "image": [{"bytes": png(im), "path": None} for im in images],
        "label": rng.integers(0, 3, n).tolist(),
        "split": ["train", "test"] * 4 + ["train", "train"],
        "set": ["distilled" if d else "real" for d in distilled],
        "method": ["dm" if d else None for d in distilled],
        "ipc": [1 if d else None for d in distilled],
        "soft_label": [s.tolist() if d else None for s, d in zip(soft, distilled)],
    }
    features = datasets.Features({
        "id": datasets.Value("string"), "image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES),
        "split": datasets.Value("string"), "set": datasets.Value("string"), "method": datasets.Value("string"),
        "ipc": datasets.Value("int32"), "soft_label": datasets.Sequence(datasets.Value("float64"))})
    table = datasets.Dataset.from_dict(columns, features=features)
    root = tmp_path / "toy"
    entry = artifacts.save_table(root / "condense", table)
    data = Input("condense", root / "condense", {"kind": "condense", "outputs": {"table": entry}})
    test_ids = [i for i, s in zip(columns["id"], columns["split"]) if s == "test"]
    probs = rng.dirichlet(np.ones(3), size=len(test_ids)).astype(np.float32)
    aligned = {"step": "condense", "fingerprint": entry["fingerprint"], "split": "test"}
    teacher = Input("teacher", root / "teacher", {"kind": "predict", "outputs": {
        "pred_probs": artifacts.save_array(root / "teacher", "pred_probs", probs, test_ids, aligned_to=aligned)}})
    (root / "run.json").write_text(json.dumps({"name": "toy", "curate_version": "9.9.9", "steps": [
        {"id": "condense", "kind": "condense"}, {"id": "teacher", "kind": "predict"},
        {"id": "out", "kind": "export"}]}))
    (root / "recipe.yaml").write_text("name: toy\nsteps: []\n")
    return {"root": root, "inputs": {"data": [data], "columns": [teacher]}, "images": images, "columns": columns,
            "probs": dict(zip(test_ids, probs))}


def export(run, **cfg) -> StepContext:
    from curate.steps.export import ExportConfig, ExportStep

    root = run["root"]
    cfg = {"license": "mit", "source_datasets": ["cifar10"], **cfg}
    ctx = StepContext(step_id="out", kind="export", run_dir=root, dir=root / "out",
                      config=config.from_mapping(ExportConfig, cfg), inputs=run["inputs"], progress=False)
    (root / "out").mkdir(exist_ok=True)
    ExportStep().run(ctx)
    return ctx


def check_dataset_dict(dd, run) -> None:
    """Splits, images (size and mode), ClassLabel names, soft labels and the joined probabilities."""
    import datasets

    assert list(dd) == ["train", "test"] and len(dd["train"]) + len(dd["test"]) == 10
    source = dict(zip(run["columns"]["id"], run["images"]))
    for split in dd.values():
        assert split.features["label"].names == CLASSES
        assert split.features["soft_label"] == datasets.Sequence(datasets.Value("float32"))
        for row in split:
            original = source[row["id"]]
            assert row["image"].size == (original.shape[1], original.shape[0])
            assert row["image"].mode == ("L" if original.ndim == 2 else "RGB")
            np.testing.assert_array_equal(np.asarray(row["image"]), original)
            if row["soft_label"] is not None:
                assert abs(sum(row["soft_label"]) - 1.0) <= 1e-6
            if row["id"] in run["probs"]:
                np.testing.assert_allclose(row["teacher"], run["probs"][row["id"]], atol=1e-7)
                assert abs(sum(row["teacher"]) - 1.0) <= 1e-6
            else:
                assert row["teacher"] is None
    assert sum(s is not None for s in dd["train"]["soft_label"]) == 2
    train = dd["train"]
    assert [m for m, s in zip(train["method"], train["set"]) if s == "distilled"] == ["dm", "dm"]


def test_export_round_trips_through_load_from_disk_and_parquet(run, tmp_path):
    import datasets

    ctx = export(run, rows_per_shard=3)
    check_dataset_dict(datasets.load_from_disk(str(ctx.dir / "dataset")), run)
    shards = ctx.outputs["export"]["shards"]
    assert shards["train"] == [f"data/train-{i:05d}-of-00002.parquet" for i in range(2)]
    files = {s: [str(ctx.dir / "hub" / f) for f in names] for s, names in shards.items()}
    check_dataset_dict(datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "hf")), run)
    assert ctx.metrics["rows"] == 10 and ctx.metrics["splits"] == {"train": 6, "test": 4}


def test_card_yaml_has_the_hub_keys_and_the_body_says_how_it_was_made(run):
    import yaml

    ctx = export(run, pretty_name="Toy set")
    text = (ctx.dir / "hub" / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["license"] == "mit" and meta["task_categories"] == ["image-classification"]
    assert meta["size_categories"] == ["n<1K"] and meta["source_datasets"] == ["cifar10"]
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-*"},
                                                {"split": "test", "path": "data/test-*"}]
    assert "`toy`" in body and "curate 9.9.9" in body and "# Toy set" in body
    assert "2 rows are distilled" in body and "`method`: dm" in body and "`ipc`: 1" in body
    assert "`teacher`" in body and "Limitations" in body


def test_the_hub_folder_loads_as_a_dataset_repo(run, tmp_path):
    """`load_dataset(<hub folder>)` reads the card's configs, as the Hub does after a push."""
    import datasets

    ctx = export(run)
    check_dataset_dict(datasets.load_dataset(str(ctx.dir / "hub"), cache_dir=str(tmp_path / "hf")), run)


def test_push_offline_names_the_repo_and_keeps_the_local_copy(run, monkeypatch):
    """HF_HUB_OFFLINE (set for tests) makes the real client refuse: one line, repo and folder named."""
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token_123")
    with pytest.raises(UsageError) as err:
        export(run, push_to_hub={"repo_id": "me/toy", "private": True})
    message = str(err.value)
    assert "'me/toy'" in message and str(run["root"] / "out" / "hub") in message and "\n" not in message
    assert (run["root"] / "out" / "hub" / "README.md").is_file()
    written = "".join(p.read_text(errors="ignore") for p in (run["root"] / "out").rglob("*") if p.is_file())
    assert "hf_not_a_real_token_123" not in written


def test_push_uploads_the_hub_folder_privately(run, monkeypatch):
    """A (mocked) reachable Hub gets a private dataset repo and exactly the exported folder."""
    from huggingface_hub import HfApi

    calls = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.update(create=(repo_id, kw))
                        or f"https://huggingface.co/datasets/{repo_id}")
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.update(upload=kw))
    ctx = export(run, push_to_hub={"repo_id": "me/toy"})
    assert calls["create"] == ("me/toy", {"repo_type": "dataset", "private": True, "exist_ok": True})
    assert calls["upload"]["folder_path"] == str(ctx.dir / "hub") and calls["upload"]["repo_type"] == "dataset"
    assert ctx.metrics["pushed_to"] == "https://huggingface.co/datasets/me/toy"


def test_unauthorized_push_is_one_usage_error(run, monkeypatch):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import LocalTokenNotFoundError

    def refuse(self, *a, **kw):
        raise LocalTokenNotFoundError("Token is required (`token=True`), but no token found.")

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    with pytest.raises(UsageError, match=r"repo 'me/toy' \(Token is required.*kept at .*out/hub$"):
        export(run, push_to_hub={"repo_id": "me/toy"})


def test_a_column_name_taken_by_the_table_and_unknown_splits_are_usage_errors(run):
    from curate.export import build_dataset_dict

    table = run["inputs"]["data"][0].table()
    with pytest.raises(UsageError, match="`soft_label` is already in the table"):
        build_dataset_dict(table, columns={"soft_label": (np.zeros((1, 3)), ["toy/0"])})
    with pytest.raises(UsageError, match="split 'val' has no rows"):
        build_dataset_dict(table, splits=["val"])


def test_size_categories():
    from curate.export import size_category

    assert [size_category(n) for n in (0, 999, 1000, 99_999, 100_000, 2_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M"]


def test_the_input_table_folder_is_left_untouched(run):
    """Export builds in memory: no datasets cache files appear beside the input table."""
    before = sorted(p.name for p in (run["root"] / "condense" / "table").iterdir())
    export(run)
    assert sorted(p.name for p in (run["root"] / "condense" / "table").iterdir()) == before


def test_export_writes_nothing_outside_its_folder(run):
    before = {p for p in run["root"].rglob("*")}
    export(run)
    outside = {p for p in run["root"].rglob("*")} - before
    assert all(Path(p).is_relative_to(run["root"] / "out") for p in outside)


def _manifest(root: Path, step: str, kind: str, *, inputs=None, metrics=None, config=None, outputs=None) -> None:
    from curate import workspace

    (root / step).mkdir(parents=True, exist_ok=True)
    workspace.write_manifest(root / step, {
        "id": step, "kind": kind, "config": config or {}, "outputs": outputs or {}, "metrics": metrics or {},
        "inputs": {role: [{"step": s, "fingerprint": "x"}] for role, s in (inputs or {}).items()}, "seed": 0})


@pytest.fixture
def lineage(run):
    """Manifests around the exported table: cifar (demo source) -> condense (exported) -> teacher, and a
    sibling train step on cifar; only cifar and condense made the exported table."""
    root = run["root"]
    _manifest(root, "cifar", "source", config={"kind": "demo"}, metrics={"rows": 10})
    _manifest(root, "condense", "condense", inputs={"data": "cifar"},
              metrics={"accuracy": 0.333, "random_accuracy": 0.291},
              outputs={"table": run["inputs"]["data"][0].manifest["outputs"]["table"]})
    _manifest(root, "teacher", "predict", inputs={"data": "condense"}, metrics={"accuracy": 0.9163})
    _manifest(root, "train", "train", inputs={"data": "cifar"}, metrics={"accuracy": 0.4796})
    (root / "run.json").write_text(json.dumps({"name": "toy", "curate_version": "9.9.9", "steps": [
        {"id": s, "kind": k} for s, k in (("cifar", "source"), ("condense", "condense"), ("teacher", "predict"),
                                          ("train", "train"), ("out", "export"))]}))
    return run


def test_card_lists_only_metrics_of_steps_that_made_the_table_and_fills_the_source(lineage):
    import yaml

    ctx = export(lineage, license="other", source_datasets=[])
    _, front, body = (ctx.dir / "hub" / "README.md").read_text().split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["source_datasets"] == ["cifar10"] and meta["license"] == "unknown"
    evaluation = body[body.index("## Evaluation"):].split("\n## ")[0]
    assert "| `condense` | accuracy | 0.3330 |" in evaluation and "| `condense` | random_accuracy | 0.2910 |" in evaluation
    assert "0.4796" not in body and "0.9163" not in body  # a sibling model and a downstream prediction
    made = body[body.index("## How it was made"):].split("\n## ")[0]
    assert "| `cifar` | source |" in made and "| `condense` | condense | data: cifar |" in made
    assert "`train`" not in made

    explicit = export(lineage, license="mit", source_datasets=["me/mine"])
    meta = yaml.safe_load((explicit.dir / "hub" / "README.md").read_text().split("---\n", 2)[1])
    assert meta["license"] == "mit" and meta["source_datasets"] == ["me/mine"]


def test_run_facts_read_hub_ids_and_the_license_an_hf_source_recorded(tmp_path, monkeypatch):
    from curate.export import run_facts

    monkeypatch.chdir(tmp_path)  # `folder` below is a local folder, though it reads like a Hub id

    root = tmp_path / "run"
    table_dir = root / "flowers" / "table"
    table_dir.mkdir(parents=True)
    (table_dir / "dataset_info.json").write_text(json.dumps({"license": "cc-by-4.0"}))
    _manifest(root, "flowers", "source", config={"kind": "hf", "path": "someone/flowers"},
              outputs={"table": {"path": "table"}})
    local = tmp_path / "folder"
    local.mkdir()
    _manifest(root, "mine", "source", config={"kind": "hf", "path": "folder"})
    _manifest(root, "files", "source", config={"kind": "imagefolder", "path": "photos"})
    (root / "run.json").write_text(json.dumps({"name": "r", "steps": [
        {"id": "flowers", "kind": "source"}, {"id": "mine", "kind": "source"}, {"id": "files", "kind": "source"}]}))
    facts = run_facts(root)
    assert facts.source_datasets == ("someone/flowers",) and facts.source_license == "cc-by-4.0"
    assert run_facts(root, upstream_of="mine").source_datasets == ()
    assert [s["id"] for s in run_facts(root, upstream_of="files").steps] == ["files"]


def test_shards_split_evenly_across_nodes_and_the_card_records_the_layout(run, tmp_path):
    """`nodes: 2`: a multiple of 2 shards per split; split_dataset_by_node streams each node whole shards, every
    row exactly once, the same count within one row per shard; the card gives the layout."""
    import datasets
    from datasets.distributed import split_dataset_by_node

    ctx = export(run, rows_per_shard=2, nodes=2)
    shards = ctx.outputs["export"]["shards"]
    assert {s: len(f) for s, f in shards.items()} == {"train": 4, "test": 2}
    files = [str(ctx.dir / "hub" / f) for f in shards["train"]]
    stream = datasets.load_dataset("parquet", data_files={"train": files}, streaming=True,
                                   cache_dir=str(tmp_path / "hf"))["train"]
    per_node = [[row["id"] for row in split_dataset_by_node(stream, rank=r, world_size=2)] for r in range(2)]
    assert sorted(per_node[0] + per_node[1]) == sorted(datasets.load_from_disk(str(ctx.dir / "dataset"))["train"]["id"])
    assert [len(ids) for ids in per_node] == [3, 3]
    text = (ctx.dir / "hub" / "README.md").read_text()
    assert "| train | 6 |" in text and "| 4 | 1 or 2 |" in text and "world_size=2" in text
