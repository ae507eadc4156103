"""The near-chance check: an audit on pred_probs that know nothing of the labels warns in its log,
metrics and report; one on informative pred_probs does not."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from audit_step_helpers import cifar_table, run_step, save_array_input, save_table_input, symmetric_noise

from audits.chance import CHANCE_MARGIN, check_chance
from audits.steps import AuditStep


def one_hot_probs(predicted: np.ndarray, k: int) -> np.ndarray:
    probs = np.full((len(predicted), k), 0.1 / (k - 1))
    probs[np.arange(len(predicted)), predicted] = 0.9
    return probs


def predictions_with_accuracy(labels: np.ndarray, accuracy: float, k: int, seed: int = 0) -> np.ndarray:
    """Predicted classes that equal ``labels`` on exactly ``round(accuracy * N)`` rows."""
    rng = np.random.default_rng(seed)
    right = np.zeros(len(labels), bool)
    right[rng.permutation(len(labels))[:round(accuracy * len(labels))]] = True
    return np.where(right, labels, (labels + rng.integers(1, k, len(labels))) % k)


@pytest.mark.parametrize(("accuracy", "near"), [(0.10, True), (0.14, True), (0.16, False), (0.9, False)])
def test_balanced_classes_near_chance_is_within_the_margin_of_one_over_k(accuracy, near):
    labels = np.arange(1000) % 10
    check = check_chance(labels, one_hot_probs(predictions_with_accuracy(labels, accuracy, 10), 10))
    assert check.accuracy == pytest.approx(accuracy)
    assert check.chance == 0.1 and check.majority_share == 0.1 and check.margin == CHANCE_MARGIN
    assert check.near_chance is near


def test_an_accuracy_not_above_the_majority_share_is_near_chance():
    """80% of the labels are class 0: always answering 0 scores 0.8, so 0.8 is no signal (0.85 is)."""
    labels = np.where(np.arange(1000) < 800, 0, np.arange(1000) % 3 + 1)
    always_zero = one_hot_probs(np.zeros(1000, int), 4)
    check = check_chance(labels, always_zero)
    assert check.accuracy == pytest.approx(0.8) and check.majority_share == pytest.approx(0.8)
    assert check.near_chance
    better = labels.copy()
    better[800:850] = 1 + (labels[800:850] % 3)  # 50 of the minority rows wrong, the rest right: 0.95
    assert not check_chance(labels, one_hot_probs(better, 4)).near_chance


def test_few_rows_widen_the_margin_to_two_standard_errors():
    labels = np.arange(60) % 3  # 2 * sqrt(1/3 * 2/3 / 60) = 0.122 > 0.05
    check = check_chance(labels, one_hot_probs(predictions_with_accuracy(labels, 0.42, 3), 3))
    assert check.margin == pytest.approx(2 * np.sqrt(2 / 9 / 60))
    assert check.near_chance  # 0.42 is within noise of 1/3 on 60 rows


@pytest.fixture(scope="module")
def table_and_labels(shared_data, cifar_test_pred_probs):
    labels, probs = cifar_test_pred_probs
    noisy, _ = symmetric_noise(labels[:300], rate=0.1, seed=0)
    return cifar_table(shared_data, noisy, n=300), noisy, probs[:300]


@pytest.mark.parametrize("informative", [False, True])
def test_the_audit_step_warns_in_log_metrics_and_report_only_near_chance(tmp_path, table_and_labels, caplog,
                                                                        informative):
    table, noisy, resnet_probs = table_and_labels
    # near chance: a new head's kind of output, a random softmax per row
    probs = resnet_probs if informative else np.random.default_rng(99).dirichlet(np.ones(10), 300).astype(np.float32)
    data = save_table_input(tmp_path, table)
    pred = save_array_input(tmp_path, data, "pred_probs", probs, table["id"], step_id="teacher", kind="predict")
    with caplog.at_level(logging.WARNING, logger="audits.steps.audit"):
        ctx = run_step(AuditStep, tmp_path, "audit", {"data": [data], "pred_probs": [pred]}, top_issues=4)
    page = (ctx.dir / ctx.outputs["report"]["path"]).read_text()
    metrics = ctx.metrics
    assert metrics["pred_probs_near_chance"] is (not informative)
    assert metrics["chance_accuracy"] == 0.1 and metrics["majority_share"] == round(np.bincount(noisy).max() / 300, 4)
    warned = "pred_probs are near chance" in caplog.text
    banner = '<p class="warning"><strong>Warning:</strong> pred_probs are near chance: accuracy'
    assert warned is (banner in page) is (not informative)
    if not informative:
        assert page.index(banner) < page.index("<h2>Summary</h2>")  # at the top of the page
        assert f"accuracy {metrics['accuracy']:.1%} against the given labels" in page
