"""The `fiftyone` step, run on a hand-built context: what it mirrors, records and cleans up."""

from __future__ import annotations

import json

import numpy as np
import pytest

from curate import artifacts, config
from curate.fo import read_run_record
from curate.steps.base import Input, StepContext
from curate.steps.fiftyone import FiftyOneConfig, FiftyOneStep

CLASSES = ["cat", "dog", "ship"]


def make_inputs(tmp_path, table, *, probs_ids=None):
    data_dir = tmp_path / "run" / "source"
    table_entry = artifacts.save_table(data_dir, table)
    data = Input("source", data_dir, {"kind": "source", "outputs": {"table": table_entry}})
    aligned = {"step": "source", "fingerprint": table_entry["fingerprint"], "split": None}
    ids = np.asarray(table["id"]) if probs_ids is None else np.asarray(probs_ids)
    labels = np.asarray(table["label"])
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3) * 0.3, size=len(ids)).astype(np.float32)
    pred_dir = tmp_path / "run" / "teacher"
    pred = Input("teacher", pred_dir, {"kind": "predict", "outputs": {
        "pred_probs": artifacts.save_array(pred_dir, "pred_probs", probs, ids, aligned_to=aligned)}})
    emb_dir = tmp_path / "run" / "embed"
    vectors = rng.normal(size=(len(table), 16)).astype(np.float32)
    emb = Input("embed", emb_dir, {"kind": "embed", "outputs": {
        "embeddings": artifacts.save_array(emb_dir, "embeddings", vectors, table["id"], aligned_to=aligned)}})
    return data, pred, emb, probs, ids, labels


def run_step(tmp_path, inputs, **cfg):
    run_dir = tmp_path / "run"
    ctx = StepContext(step_id="browse", kind="fiftyone", run_dir=run_dir, dir=run_dir / "browse",
                      config=config.from_mapping(FiftyOneConfig, cfg), inputs=inputs, progress=False)
    FiftyOneStep().run(ctx)
    return ctx


def test_step_mirrors_predictions_plot_and_mistakes_view_and_records_them(tmp_path, make_table, fo, dataset_name):
    table, _ = make_table(20)
    data, pred, emb, probs, ids, labels = make_inputs(tmp_path, table)
    inputs = {"data": [data], "predictions": [pred], "embeddings": [emb]}

    ctx = run_step(tmp_path, inputs, dataset_name=dataset_name)

    record = read_run_record(tmp_path / "run")
    assert record == json.loads((ctx.dir / "fiftyone.json").read_text())
    assert record["dataset"] == dataset_name and record["samples"] == 20
    assert set(record["fields"]) == {"curate_id", "ground_truth", "split", "set", "origin", "teacher"}
    assert record["brain_keys"] == ["embed_viz"] and record["views"] == ["teacher_mistakes"]
    assert ctx.metrics["dataset"] == dataset_name and ctx.metrics["samples"] == 20
    dataset = fo.load_dataset(dataset_name)
    assert dataset.list_brain_runs() == ["embed_viz"]
    wrong = {i for i, p, y in zip(ids, probs, labels) if p.argmax() != y}
    mistakes = dataset.load_saved_view("teacher_mistakes")
    assert set(mistakes.values("curate_id")) == wrong and wrong
    confidences = mistakes.values("teacher.confidence")
    assert confidences == sorted(confidences, reverse=True)
    assert FiftyOneStep.is_intact({"id": "fo"}, ctx.dir)

    # rerun without predictions: same samples, and the predictions field and view are gone
    run_step(tmp_path, {"data": [data], "embeddings": [emb]}, dataset_name=dataset_name)
    dataset.reload()
    assert len(dataset) == 20
    assert "teacher" not in dataset.get_field_schema() and dataset.list_saved_views() == []
    dataset.delete_brain_run("embed_viz")
    assert not FiftyOneStep.is_intact({"id": "fo"}, ctx.dir)


def test_step_skips_prediction_rows_of_other_tables_and_falls_back_from_tsne(tmp_path, make_table, fo, dataset_name):
    table, _ = make_table(6)
    data, pred, emb, probs, ids, labels = make_inputs(tmp_path, table, probs_ids=["toy/0000", "gone/1", "toy/0002"])

    ctx = run_step(tmp_path, {"data": [data], "predictions": [pred], "embeddings": [emb]},
                   dataset_name=dataset_name, visualization="tsne")

    assert ctx.metrics["unmatched_ids"] == {"teacher": 1}
    dataset = fo.load_dataset(dataset_name)
    assert len(dataset.exists("teacher")) == 2
    assert dataset.get_brain_info("embed_viz").config.method == "pca"


def test_check_rejects_step_ids_that_collide_with_mirror_fields():
    cfg = config.from_mapping(FiftyOneConfig, {})
    assert FiftyOneStep.check(cfg, {"data": ["src"], "predictions": ["teacher"]}) == []
    problems = FiftyOneStep.check(cfg, {"predictions": ["split", "a-b", "a_b"]})
    assert [f for f, _ in problems] == ["inputs.predictions", "inputs.predictions"]
    assert "reserved" in problems[0][1] and "same field `a_b`" in problems[1][1]


def test_config_rejects_unknown_visualization():
    with pytest.raises(config.ConfigError, match="visualization"):
        config.from_mapping(FiftyOneConfig, {"visualization": "umap"})
