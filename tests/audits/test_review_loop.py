"""The review loop through FiftyOne: the audit's fields and views, tags read back by `audit_apply`,
and a recipe that reruns `audit_apply` exactly when the review changes."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from audit_step_helpers import (CIFAR_CLASSES, as_input, cifar_table, run_step, save_array_input, save_table_input,
                                symmetric_noise, write_run_record)

from audits.steps import AuditApplyStep, AuditStep
from curate import workspace
from curate.fo.mirror import mirror_table


@pytest.fixture
def review(tmp_path, shared_data, cifar_test_pred_probs, dataset_name, fo):
    """200 noisy CIFAR test rows mirrored into the run's dataset, audited by step 'audit'."""
    labels, probs = cifar_test_pred_probs
    noisy, _ = symmetric_noise(labels[:200], rate=0.15, seed=1)
    table = cifar_table(shared_data, noisy)
    run_dir = tmp_path / "run"
    data = save_table_input(run_dir, table)
    pred = save_array_input(run_dir, data, "pred_probs", probs[:200], table["id"], step_id="teacher", kind="predict")
    mirror_table(table, dataset_name=dataset_name, media_dir=run_dir / "media", class_names=CIFAR_CLASSES)
    write_run_record(run_dir, dataset_name)
    ctx = run_step(AuditStep, run_dir, "audit", {"data": [data], "pred_probs": [pred]}, confused_pairs=2,
                   top_issues=8)
    return ctx, data, table, fo.load_dataset(dataset_name)


def test_audit_writes_fields_and_views_sorted_for_review(review):
    ctx, _, table, dataset = review
    issues = pq.read_table(ctx.dir / "issues.parquet").to_pandas()
    flagged = issues[issues["flagged"]]
    written = ctx.metrics["fiftyone"]
    assert written["samples"] == 200 and written["missing"] == 0
    assert set(written["fields"]) >= {"audit_score", "audit_issue", "audit_suggested", "audit_suggested_category",
                                      "audit_suggested_severity", "audit_candidates"}
    # CIFAR names are no wnids: uncalibrated rules, and the App's field descriptions say so
    assert ctx.metrics["categorizer"] == "rules"
    for name in ("category", "severity"):
        assert dataset.get_field(f"audit_suggested_{name}").description == \
            f"suggested {name}; agreement with human labels not measured (uncalibrated rules)"
    assert set(dataset.list_saved_views()) == set(written["views"])

    view = dataset.load_saved_view("audit_label_issues")
    assert set(view.values("curate_id")) == set(flagged["id"])
    scores = view.values("audit_score")
    assert scores == sorted(scores)  # worst first
    by_id = flagged.set_index("id")
    shown = zip(*view.values(["curate_id", "audit_suggested.label"]))
    assert all(by_id.loc[i, "suggested_name"] == s for i, s in shown)

    major = dataset.load_saved_view("audit_major_mistakes")
    assert set(major.values("curate_id")) == set(flagged.loc[flagged["severity"] == "major", "id"])
    candidates = dataset.load_saved_view("audit_multi_label_candidates")
    assert len(candidates) == issues["multi_label"].sum() > 0
    assert all(len(c.classifications) >= 2 for c in candidates.values("audit_candidates"))

    (a, b, n), second = ctx.metrics["confused_pairs"]
    pair = dataset.load_saved_view(f"audit_confused_{a}_{b}")
    assert len(pair) == n
    assert all({g, s} == {a, b} for g, s in zip(*pair.values(["ground_truth.label", "audit_suggested.label"])))
    assert AuditStep.is_intact({"outputs": ctx.outputs}, ctx.dir)
    dataset.delete_saved_view("audit_label_issues")
    assert not AuditStep.is_intact({"outputs": ctx.outputs}, ctx.dir)


def test_rerun_replaces_what_the_previous_audit_wrote(review):
    ctx, data, _, dataset = review
    pred = ctx.inputs["pred_probs"][0]
    run_step(AuditStep, ctx.run_dir, "audit", {"data": [data], "pred_probs": [pred]}, confused_pairs=0, top_issues=0)
    dataset.reload()
    assert not [v for v in dataset.list_saved_views() if v.startswith("audit_confused_")]
    assert "audit_label_issues" in dataset.list_saved_views()


def test_apply_reads_tags_and_fingerprints_the_review(review):
    ctx, data, table, dataset = review
    cfg = AuditApplyStep.Config()
    issues = pq.read_table(ctx.dir / "issues.parquet").to_pandas()
    flagged = issues[issues["flagged"]].reset_index()
    before = AuditApplyStep.external_fingerprint(cfg, run_dir=ctx.run_dir)
    dataset.select_by("curate_id", [flagged["id"][0]]).tag_samples("reviewed-by-ana")  # not in the vocabulary
    assert AuditApplyStep.external_fingerprint(cfg, run_dir=ctx.run_dir) == before

    drop_id, relabel_id, major_id, keep_id = flagged["id"][:4]
    dataset.select_by("curate_id", [drop_id]).tag_samples("confirmed")
    dataset.select_by("curate_id", [relabel_id]).tag_samples("relabel:ship")
    dataset.select_by("curate_id", [major_id]).tag_samples(["confirmed", "major"])
    dataset.select_by("curate_id", [keep_id]).tag_samples("keep")
    after = AuditApplyStep.external_fingerprint(cfg, run_dir=ctx.run_dir)
    assert after != before

    source = workspace.tree_sha256(data.dir / "table")
    applied = run_step(AuditApplyStep, ctx.run_dir, "clean", {"data": [data], "audit": [as_input(ctx)]})
    new = datasets.load_from_disk(str(applied.dir / "table"))
    assert workspace.tree_sha256(data.dir / "table") == source
    assert set(table["id"]) - set(new["id"]) == {drop_id, major_id}
    labels = dict(zip(new["id"], new["label"]))
    assert labels[relabel_id] == CIFAR_CLASSES.index("ship")
    assert applied.metrics["reviewed"] == 4 and applied.metrics["unreviewed_flagged"] == len(flagged) - 4
    major = json.loads((applied.dir / "major_errors.json").read_text())["ids"]
    assert major_id in major and drop_id not in major or flagged["severity"][0] == "major"
    assert dataset.load_saved_view("clean_major_errors").values("curate_id") == major


RECIPE = """\
name: review
steps:
  - id: data
    uses: source
    with: {{kind: npz, path: {npz}, class_names: {classes}, split: test}}
  - id: teacher
    uses: predict
    inputs: {{data: data}}
    with: {{model: resnet20-cifar}}
  - id: browse
    uses: fiftyone
    inputs: {{data: data}}
    with: {{dataset_name: {dataset}, visualization: none}}
  - id: audit
    uses: audit
    inputs: {{data: data, pred_probs: teacher}}
    with: {{top_issues: 4}}
  - id: clean
    uses: audit_apply
    inputs: {{data: data, audit: audit}}
"""


def test_recipe_reruns_apply_exactly_when_the_review_changes(tmp_path, shared_data, dataset_name, fo):
    from curate.recipes import parse_recipe, run_recipe

    images = np.load(shared_data / "cifar10" / "test" / "images.npy", mmap_mode="r")[:120]
    labels = np.load(shared_data / "cifar10" / "test" / "labels.npy")[:120]
    noisy, _ = symmetric_noise(labels, rate=0.15, seed=2)
    np.savez(tmp_path / "noisy.npz", images=np.asarray(images), labels=noisy)
    plan = parse_recipe(RECIPE.format(npz=tmp_path / "noisy.npz", classes=json.dumps(CIFAR_CLASSES),
                                      dataset=dataset_name))

    def states():
        result = run_recipe(plan, workdir=tmp_path, progress=False)
        return {o.id: o.state for o in result.outcomes}, result.run_dir

    first, run_dir = states()
    assert set(first.values()) == {"ran"}
    assert set(states()[0].values()) == {"skipped"}  # nothing changed: the review fingerprint matches
    source_table = workspace.tree_sha256(run_dir / "data" / "table")

    issues = pq.read_table(run_dir / "audit" / "issues.parquet").to_pandas()
    flagged = issues.loc[issues["flagged"], "id"].tolist()
    dataset = fo.load_dataset(dataset_name)
    dataset.select_by("curate_id", flagged[:1]).tag_samples("drop")
    dataset.select_by("curate_id", flagged[1:2]).tag_samples("relabel:frog")
    third, _ = states()
    assert third == {"data": "skipped", "teacher": "skipped", "browse": "skipped", "audit": "skipped",
                     "clean": "ran"}
    new = datasets.load_from_disk(str(run_dir / "clean" / "table"))
    assert flagged[0] not in set(new["id"]) and len(new) == 119
    assert dict(zip(new["id"], new["label"]))[flagged[1]] == CIFAR_CLASSES.index("frog")
    assert workspace.tree_sha256(run_dir / "data" / "table") == source_table
    assert states()[0]["clean"] == "skipped"
