"""The `audit` and `audit_apply` steps on a real CIFAR-10 table with planted label noise (no FiftyOne)."""

from __future__ import annotations

import re

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from audit_step_helpers import (CIFAR_CLASSES, as_input, cifar_table, run_step, save_array_input, save_table_input,
                                symmetric_noise)

from audits.steps import AuditApplyStep, AuditStep
from curate import workspace
from curate.errors import UsageError


@pytest.fixture(scope="module")
def noisy(shared_data, cifar_test_pred_probs):
    """932 CIFAR-10 test images whose labels have 10% symmetric noise, and held-out pred_probs."""
    labels, probs = cifar_test_pred_probs
    noisy_labels, flipped = symmetric_noise(labels, rate=0.1, seed=0)
    return cifar_table(shared_data, noisy_labels), labels, noisy_labels, flipped, probs


@pytest.fixture(scope="module")
def audited(tmp_path_factory, noisy):
    tmp_path = tmp_path_factory.mktemp("run")
    table, true_labels, noisy_labels, flipped, probs = noisy
    data = save_table_input(tmp_path, table)
    pred = save_array_input(tmp_path, data, "pred_probs", probs, table["id"], step_id="teacher", kind="predict")
    # embeddings: tight clusters around one random centre per true class; row 1 is a copy of row 0
    # (a planted near duplicate) and row 2 points away from every cluster (a planted outlier)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 32))
    vectors = (centres[true_labels] + 0.3 * rng.normal(size=(len(table), 32))).astype(np.float32)
    vectors[1] = vectors[0]
    vectors[2] = -centres.sum(0)
    emb = save_array_input(tmp_path, data, "embeddings", vectors, table["id"], step_id="embed", kind="embed")
    ctx = run_step(AuditStep, tmp_path, "audit", {"data": [data], "pred_probs": [pred], "embeddings": [emb]},
                   top_issues=16)
    return ctx, data, noisy


def test_planted_noise_is_recovered_with_correct_suggestions(audited):
    """10% flipped labels: recall >= 0.85 and precision >= 0.5 (the model itself is ~91% accurate, so its own
    mistakes are flagged too), and the suggested label is the true one for >= 90% of recovered flips."""
    ctx, _, (table, true_labels, noisy_labels, flipped, _) = audited
    issues = pq.read_table(ctx.dir / ctx.outputs["label_issues"]["path"]).to_pandas()
    assert list(issues["id"]) == list(table["id"])  # every audited row, in pred_probs order
    mask = issues["flagged"].to_numpy()
    found = mask & flipped
    assert found.sum() / flipped.sum() >= 0.85
    assert found.sum() / mask.sum() >= 0.5
    assert (issues["suggested"].to_numpy()[found] == true_labels[found]).mean() >= 0.9
    assert (issues["label"].to_numpy() == noisy_labels).all()
    assert ctx.metrics["issues"] == int(mask.sum()) == ctx.outputs["label_issues"]["issues"]
    # the CSV holds the flagged rows, worst (lowest score) first
    csv = (ctx.dir / "issues.csv").read_text().splitlines()
    assert len(csv) == mask.sum() + 1
    scores = [float(line.split(",")[5]) for line in csv[1:]]
    assert scores == sorted(scores)
    # every flagged row has a category and a severity, unflagged rows none
    assert (issues.loc[mask, "severity"] != "").all() and (issues.loc[~mask, "category"] == "").all()


def test_outputs_confusion_metrics_and_planted_duplicate_conflict(audited):
    ctx, _, (table, _, noisy_labels, _, probs) = audited
    confusion = np.load(ctx.dir / "confusion.npy")
    assert confusion.sum() == len(table) and np.trace(confusion) == (probs.argmax(1) == noisy_labels).sum()
    rates = ctx.metrics["per_class_issue_rate"]
    assert list(rates) == CIFAR_CLASSES and all(0 <= r <= 1 for r in rates.values())
    assert ctx.metrics["class_pair_signal"] == "embeddings"
    issues = pq.read_table(ctx.dir / "issues.parquet").to_pandas()
    # rows 0 and 1 share one embedding: each other's nearest neighbour at distance 0
    assert issues["nearest_id"][0] == table["id"][1] and issues["nearest_distance"][0] == pytest.approx(0, abs=1e-5)
    assert issues["duplicate_conflict"][0] == (noisy_labels[0] != noisy_labels[1])
    assert issues["outlier"][2] and issues["outlier_score"].idxmax() == 2
    assert ctx.metrics["outliers"] == issues["outlier"].sum() < 0.02 * len(table)
    scores = np.load(ctx.dir / "scores.npy")
    np.testing.assert_allclose(scores, issues["score"], rtol=1e-6)


def test_report_page_references_existing_pngs_and_states_the_summary(audited):
    ctx, _, _ = audited
    page_path = ctx.dir / ctx.outputs["report"]["path"]
    page = page_path.read_text()
    assert ctx.metrics["report"] == str(page_path)
    pngs = [s for s in re.findall(r'src="([^"]+)"', page) if not s.startswith("data:")]
    assert {"confusion.png", "class_rates.png", "categories.png", "top_issues.png"} <= set(pngs)
    for name in pngs:
        assert (page_path.parent / name).read_bytes()[:4] == b"\x89PNG"
    assert page.count('src="data:image/png;base64,') == 16  # top_issues thumbnails, embedded
    for number in (ctx.metrics["rows"], ctx.metrics["issues"], f"{ctx.metrics['issue_rate']:.2%}"):
        assert f">{number}<" in page


def test_pred_probs_of_another_table_give_a_clear_error(tmp_path, noisy):
    table, _, _, _, probs = noisy
    data = save_table_input(tmp_path, table.select(range(100)))
    ids = [f"other/{i}" for i in range(3)] + list(table["id"][:97])
    pred = save_array_input(tmp_path, data, "pred_probs", probs[:100], ids, step_id="teacher", kind="predict")
    with pytest.raises(UsageError, match=r"3 of the 100 `pred_probs` ids of step 'teacher' are not in the table "
                                         r"of step 'data' \(e.g. 'other/0'\)"):
        run_step(AuditStep, tmp_path, "audit", {"data": [data], "pred_probs": [pred]})
    wrong_k = save_array_input(tmp_path, data, "pred_probs", probs[:100, :5] / probs[:100, :5].sum(1, keepdims=True),
                               table["id"][:100], step_id="five", kind="predict")
    with pytest.raises(UsageError, match="has shape \\(100, 5\\) but the table of step 'data' has 10 classes"):
        run_step(AuditStep, tmp_path, "audit", {"data": [data], "pred_probs": [wrong_k]})
    bad = probs[:100].copy()
    bad[7] = np.nan
    nan = save_array_input(tmp_path, data, "pred_probs", bad, table["id"][:100], step_id="nan", kind="predict")
    with pytest.raises(UsageError, match="pred_probs of step 'nan': .*row 7 holds NaN"):
        run_step(AuditStep, tmp_path, "audit", {"data": [data], "pred_probs": [nan]})


@pytest.mark.parametrize("action", ["drop", "relabel"])
def test_apply_without_review_writes_a_new_version_and_leaves_the_input(audited, action):
    ctx, data, (table, _, noisy_labels, _, _) = audited
    before = workspace.tree_sha256(data.dir / "table")
    applied = run_step(AuditApplyStep, ctx.run_dir, f"apply_{action}", {"data": [data], "audit": [as_input(ctx)]},
                       action=action, unreviewed="apply")
    assert workspace.tree_sha256(data.dir / "table") == before
    new = datasets.load_from_disk(str(applied.dir / "table"))
    issues = pq.read_table(ctx.dir / "issues.parquet").to_pandas()
    flagged_ids = set(issues.loc[issues["flagged"], "id"])
    if action == "drop":
        assert len(new) == len(table) - len(flagged_ids) and not flagged_ids & set(new["id"])
        assert (np.asarray(new["label"]) == np.asarray(new["original_label"])).all()
    else:
        assert list(new["id"]) == list(table["id"])
        suggested = dict(zip(issues["id"], issues["suggested"]))
        labels = dict(zip(new["id"], new["label"]))
        assert all(labels[i] == suggested[i] for i in flagged_ids)
        assert (np.asarray(new["original_label"]) == noisy_labels).all()
        assert {r for i, r in zip(new["id"], new["review"]) if i in flagged_ids} == {"relabeled"}
    assert new.features["label"].names == CIFAR_CLASSES
    assert applied.metrics["rows"] == len(new) and not (applied.dir / ".scratch").exists()
