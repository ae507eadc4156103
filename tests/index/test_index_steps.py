"""The `index` and `duplicates` steps on a hand-built run: planted copies, leaks, FiftyOne outputs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from curate import artifacts, config
from curate.recipes.runner import execute_step
from curate.steps.base import Input, StepContext

DEMO = Path(__file__).resolve().parents[2] / "curate" / "data" / "demo" / "cifar10_demo.npz"
CLASSES = [f"c{i}" for i in range(10)]


def encode(image: np.ndarray, fmt: str, **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **kw)
    return buf.getvalue()


def resized_jpeg(image: np.ndarray) -> bytes:
    """A 48x48 bicubic upscale stored as JPEG q80: new size, new bytes, lossy pixels."""
    from PIL import Image

    return encode(np.asarray(Image.fromarray(image).resize((48, 48), Image.BICUBIC)), "JPEG", quality=80)


@pytest.fixture(scope="module")
def planted(pooled_features):
    """36 real demo images (24 train, 12 test) and 3 planted copies:

    - row 36 (train): resized JPEG of train row 2 (a near duplicate);
    - row 37 (test): the pixels of train row 5 as a PNG of another compression (exact and a leak);
    - row 38 (test): resized JPEG of train row 9 (a leak).
    """
    import datasets

    demo = np.load(DEMO)
    images = np.concatenate([demo["train_images"][:24], demo["test_images"][:12]])
    labels = np.concatenate([demo["train_labels"][:24], demo["test_labels"][:12]]).astype(int)
    blobs = [encode(im, "PNG") for im in images]
    blobs += [resized_jpeg(images[2]), encode(images[5], "PNG", compress_level=1), resized_jpeg(images[9])]
    labels = np.concatenate([labels, labels[[2, 5, 9]]])
    splits = ["train"] * 24 + ["test"] * 12 + ["train", "test", "test"]
    n = len(blobs)
    features = datasets.Features({"id": datasets.Value("string"), "image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=CLASSES), "split": datasets.Value("string"),
                                  "set": datasets.Value("string")})
    table = datasets.Dataset.from_dict({"id": [f"r{i:02d}" for i in range(n)],
                                        "image": [{"bytes": b, "path": None} for b in blobs],
                                        "label": labels.tolist(), "split": splits, "set": ["real"] * n},
                                       features=features)
    from curate.data import decode_images

    assert blobs[37] != blobs[5]  # different bytes, same pixels
    return table, pooled_features(decode_images(table, size=(32, 32)))


def inputs(tmp_path: Path, table, embeddings, *, embed_ids=None):
    run = tmp_path / "run"
    entry = artifacts.save_table(run / "source", table)
    data = Input("source", run / "source", {"kind": "source", "outputs": {"table": entry}})
    ids = np.asarray(table["id"]) if embed_ids is None else np.asarray(embed_ids)
    rows = [list(table["id"]).index(i) for i in ids]
    aligned = {"step": "source", "fingerprint": entry["fingerprint"], "split": None}
    entry = artifacts.save_array(run / "embed", "embeddings", embeddings[rows], ids, aligned_to=aligned)
    entry["model"] = {"name": "pooled-pixels"}
    emb = Input("embed", run / "embed", {"kind": "embed", "outputs": {"embeddings": entry}})
    return run, data, emb


def run_step(step_cls, run: Path, step_id: str, inputs: dict, **cfg) -> StepContext:
    ctx = StepContext(step_id=step_id, kind=step_cls.kind or step_id, run_dir=run, dir=run / step_id,
                      config=config.from_mapping(step_cls.Config, cfg), inputs=inputs, progress=False)
    (run / step_id).mkdir(parents=True, exist_ok=True)
    execute_step(step_cls, ctx)
    return ctx


def read_members(ctx: StepContext) -> dict[str, list[dict]]:
    import pyarrow.parquet as pq

    rows = pq.read_table(ctx.dir / ctx.outputs["report"]["table"]).to_pylist()
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["kind"], []).append(r)
    return out


def groups_of(members: list[dict]) -> set[frozenset[str]]:
    by: dict[int, set[str]] = {}
    for m in members:
        by.setdefault(m["group"], set()).add(m["id"])
    return {frozenset(g) for g in by.values()}


def test_duplicates_step_finds_the_planted_copies_and_leaks_and_nothing_else(tmp_path, planted):
    """Exact: r05~r37 only (same pixels, other bytes); near: the three planted pairs and no distinct image;
    leaks: the two test copies of train rows, with the train rows kept."""
    from curate.steps.duplicates import DuplicatesStep

    table, emb = planted
    run, data, embed = inputs(tmp_path, table, emb)
    ctx = run_step(DuplicatesStep, run, "duplicates", {"data": [data], "embeddings": [embed]}, threshold=0.01)
    found = read_members(ctx)
    assert groups_of(found["exact"]) == {frozenset({"r05", "r37"})}
    assert groups_of(found["near"]) == {frozenset({"r02", "r36"}), frozenset({"r05", "r37"}),
                                        frozenset({"r09", "r38"})}
    assert groups_of(found["leak"]) == {frozenset({"r05", "r37"}), frozenset({"r09", "r38"})}
    kept = {m["id"] for m in found["leak"] if m["representative"]}
    assert kept == {"r05", "r09"}  # the train rows stay; the test copies are what leaks
    near = {m["id"]: m for m in found["near"]}
    assert near["r36"]["nearest_id"] == "r02" and 0 <= near["r36"]["distance"] <= 0.01
    assert ctx.metrics["near_groups"] == 3 and ctx.metrics["exact_duplicates"] == 1 and ctx.metrics["leaky_rows"] == 2
    assert ctx.metrics["fiftyone"] is None and "file_groups" not in ctx.metrics  # no `path` column, no run record
    page = (ctx.dir / "duplicates.html").read_text()
    assert "Leaky splits" in page and page.count("data:image/") >= 6


def test_duplicates_step_without_a_test_split_skips_leaks(tmp_path, planted):
    """Leaks need both splits; a train-only table still gets exact and near duplicates."""
    from curate.steps.duplicates import DuplicatesStep

    table, emb = planted
    train = np.flatnonzero(np.asarray(table["split"]) == "train")
    run, data, embed = inputs(tmp_path, table.select(train), emb[train])
    ctx = run_step(DuplicatesStep, run, "dups", {"data": [data], "embeddings": [embed]}, threshold=0.01)
    assert "leak" not in read_members(ctx) and "leaky_rows" not in ctx.metrics
    assert groups_of(read_members(ctx)["near"]) == {frozenset({"r02", "r36"})}


def test_index_step_indexes_every_embedded_row_with_sets_and_the_embed_step(tmp_path, planted):
    """Rows with embeddings are indexed in table order with their set; rows without are counted, not indexed."""
    from curate.index import load_index
    from curate.steps.index import IndexStep

    table, emb = planted
    ids = list(table["id"])
    run, data, embed = inputs(tmp_path, table, emb, embed_ids=ids[:30])
    ctx = run_step(IndexStep, run, "index", {"data": [data], "embeddings": [embed]}, kind="flat")
    index = load_index(ctx.dir / "index.faiss")
    assert list(index.ids) == ids[:30] and index.meta["embed_step"] == "embed"
    assert index.meta["model"] == "pooled-pixels" and index.meta["columns"]["set"] == ["real"] * 30
    assert ctx.metrics["rows"] == 30 and ctx.metrics["rows_without_embedding"] == 9
    assert ctx.outputs["index"]["rows"] == 30 and ctx.metrics["fiftyone"] is None
    dist, found = index.search_ids(["r02"], 1)
    assert found[0, 0] != "r02"


def test_index_and_duplicates_steps_write_brain_run_fields_and_views(tmp_path, planted, fo, dataset_name):
    """With a FiftyOne dataset in the run: the `faiss` brain run answers sort_by_similarity, the duplicates
    fields hold group ids, the three views hold the planted rows, and reruns are idempotent."""
    from curate.fo import mirror_table, write_run_record
    from curate.steps.duplicates import DuplicatesStep
    from curate.steps.index import IndexStep

    table, emb = planted
    run, data, embed = inputs(tmp_path, table, emb)
    mirror_table(table, dataset_name=dataset_name, media_dir=run / "media", class_names=CLASSES)
    write_run_record(run, {"dataset": dataset_name, "step": "fiftyone"})

    ctx = run_step(IndexStep, run, "index", {"data": [data], "embeddings": [embed]})
    assert ctx.metrics["fiftyone"]["brain_keys"] == ["index"]
    dataset = fo.load_dataset(dataset_name)
    query = dataset.match(fo.ViewField("curate_id") == "r02").first().id
    top = dataset.sort_by_similarity(query, k=2, brain_key="index").values("curate_id")
    assert top == ["r02", "r36"]
    assert IndexStep.is_intact({"id": "index", "files": ctx.files, "outputs": ctx.outputs}, ctx.dir)

    for _ in range(2):  # the second run rewrites the same fields and views
        dups = run_step(DuplicatesStep, run, "duplicates", {"data": [data], "embeddings": [embed]}, threshold=0.01)
    dataset.reload()
    assert set(dataset.list_saved_views()) == {"exact_duplicates", "near_duplicates", "leaky_splits"}
    assert set(dataset.load_saved_view("exact_duplicates").values("curate_id")) == {"r05", "r37"}
    assert set(dataset.load_saved_view("leaky_splits").values("curate_id")) == {"r05", "r37", "r09", "r38"}
    near = dataset.load_saved_view("near_duplicates")
    assert len(near) == 6 and near.values("duplicates_near") == sorted(near.values("duplicates_near"))
    assert dataset.count("duplicates_exact") == 2
    record = json.loads((dups.dir / "fiftyone.json").read_text())
    assert record["views"] == ["exact_duplicates", "near_duplicates", "leaky_splits"]
    manifest = {"id": "duplicates", "files": dups.files, "outputs": dups.outputs}
    assert DuplicatesStep.is_intact(manifest, dups.dir)
    dataset.delete_saved_view("leaky_splits")
    assert not DuplicatesStep.is_intact(manifest, dups.dir)


def test_configs_refuse_knobs_of_another_kind_and_equal_splits():
    from curate.steps.duplicates import DuplicatesConfig
    from curate.steps.index import IndexConfig, IndexStep

    flat = config.from_mapping(IndexConfig, {"kind": "flat", "nlist": 16, "nprobe": 4})
    assert [f for f, _ in IndexStep.check(flat, {})] == ["nlist", "nprobe"]
    assert IndexStep.check(config.from_mapping(IndexConfig, {"kind": "ivf", "m_pq": 8}), {})[0][0] == "m_pq"
    assert IndexStep.check(config.from_mapping(IndexConfig, {"kind": "ivfpq", "nlist": 8, "m_pq": 8}), {}) == []
    auto = config.from_mapping(IndexConfig, {"kind": "auto", "nlist": 8, "nprobe": 2})  # used when auto picks IVF
    assert IndexStep.check(auto, {}) == []
    assert IndexStep.check(config.from_mapping(IndexConfig, {"kind": "auto", "m_pq": 8}), {})[0][0] == "m_pq"
    assert config.from_mapping(IndexConfig, {"kind": "flat"}).build_options() == {"kind": "flat", "metric": "cosine",
                                                                                  "recall": 0.95}
    with pytest.raises(config.ConfigError, match="reference_split: must differ from query_split"):
        config.from_mapping(DuplicatesConfig, {"query_split": "train"})
