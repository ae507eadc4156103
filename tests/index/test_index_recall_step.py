"""The `index` step's recall target: calibration in its metrics (step.json) and in the saved sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate import artifacts, config
from curate.steps.base import Input, StepContext
from curate.steps.index import IndexConfig, IndexStep


@pytest.fixture(scope="module")
def embedded(clustered, tmp_path_factory):
    """A 3,000-row table (ids only) and its embeddings, as an earlier source and embed step wrote them."""
    import datasets

    run = tmp_path_factory.mktemp("run")
    vectors = clustered(3000, 32, clusters=5, spread=1.0, seed=11)
    ids = [f"r{i:04d}" for i in range(len(vectors))]
    table = datasets.Dataset.from_dict({"id": ids, "set": ["real"] * len(ids)})
    entry = artifacts.save_table(run / "source", table)
    data = Input("source", run / "source", {"kind": "source", "outputs": {"table": entry}})
    aligned = {"step": "source", "fingerprint": entry["fingerprint"], "split": None}
    emb = Input("embed", run / "embed", {"kind": "embed", "config": {"model": "toy"}, "outputs": {
        "embeddings": artifacts.save_array(run / "embed", "embeddings", vectors, ids, aligned_to=aligned)}})
    return run, {"data": [data], "embeddings": [emb]}


def run_index(run: Path, inputs: dict, step_id: str, **cfg) -> StepContext:
    ctx = StepContext(step_id=step_id, kind="index", run_dir=run, dir=run / step_id,
                      config=config.from_mapping(IndexConfig, cfg), inputs=inputs, progress=False)
    ctx.dir.mkdir(parents=True, exist_ok=True)
    IndexStep().run(ctx)
    return ctx


@pytest.mark.parametrize(("kind", "knob"), [("hnsw", "ef_search"), ("ivf", "nprobe")])
def test_metrics_record_the_target_the_measured_recall_and_the_chosen_knob(embedded, kind, knob):
    run, inputs = embedded
    ctx = run_index(run, inputs, f"index_{kind}", kind=kind)
    m = json.loads(json.dumps(ctx.metrics))  # what step.json holds
    side = json.loads((ctx.dir / "index.faiss.json").read_text())
    assert m["recall_target"] == 0.95 and m["recall_reached"] is True and m["recall"] >= 0.95
    assert m[knob] == side["params"][knob] == side["calibration"]["value"]
    cal = m["calibration"]
    assert cal["chosen_by"] == "target" and cal["queries"] == 150 and cal["k"] == 10 and cal["seconds"] > 0
    assert [v for v, _, _ in cal["sweep"]] and f"{knob}={m[knob]}" in cal["summary"]


def test_an_explicit_knob_wins_a_missed_target_shows_and_null_recall_measures_nothing(embedded):
    run, inputs = embedded
    m = run_index(run, inputs, "explicit", kind="hnsw", ef_search=10, recall=0.999).metrics
    assert m["ef_search"] == 10 and m["calibration"]["chosen_by"] == "explicit"
    assert m["recall_reached"] is False and m["recall"] < 0.999
    manual = run_index(run, inputs, "manual", kind="hnsw", recall=None).metrics
    assert manual["ef_search"] == 64 and manual["recall"] is None and manual["calibration"] is None
    exact = run_index(run, inputs, "exact", kind="flat").metrics
    assert exact["recall"] == 1.0 and exact["calibration"] == "exact search"


def test_config_validates_the_kind_against_the_registry_and_recall_range():
    with pytest.raises(config.ConfigError, match="recall: expected .*<= 1"):
        config.from_mapping(IndexConfig, {"recall": 1.5})
    assert config.from_mapping(IndexConfig, {"recall": None}).build_options()["recall"] is None
    problems = IndexStep.check(config.from_mapping(IndexConfig, {"kind": "ivfflat"}), {})
    assert problems and problems[0][0] == "kind" and "known: flat, hnsw, ivf, ivfpq" in problems[0][1]
    assert IndexStep.check(config.from_mapping(IndexConfig, {"kind": "hnsw", "nprobe": 4}), {})[0][0] == "nprobe"
    assert IndexStep.check(config.from_mapping(IndexConfig, {"kind": "ivf", "ef_search": 4}), {})[0][0] == "ef_search"
