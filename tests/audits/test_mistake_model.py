"""The fitted mistake categorizer: logistic regression, grouped cross-validation, skill metrics with
intervals, hierarchy features, the packaged model and how its suggestions are worded."""

from __future__ import annotations

import html
import itertools

import numpy as np
import pytest

from audits.audit import audit_dataset
from audits.mistake_model import (MeasuredSkill, MistakeModel, cross_validate, fit_logistic, hierarchy_features,
                                  load_mistake_model, measure_skill, save_mistake_model, suggestion_agreement,
                                  suggestion_note, threshold_features)
from audits.mistakes import CATEGORIES
from audits.skill import (Estimate, auroc, bootstrap_estimate, cohen_kappa, confusion, cross_val_proba,
                          stratified_group_folds)

# ---------------------------------------------------------------- logistic regression


def _toy(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    logits = x @ np.array([[2.0, -1.0, 0.0], [0.0, 1.5, -1.0], [0.5, 0.0, 0.0]])
    y = np.array(["a", "b", "c"])[(logits + rng.gumbel(size=logits.shape)).argmax(1)]
    return x, y


def test_logistic_fit_is_a_stationary_point_of_its_objective():
    """Gradient of sum cross-entropy + l2/2 ||W||^2 (+ 1e-6/2 ||b||^2) vanishes at the fit."""
    x, y = _toy()
    model = fit_logistic(x, y, l2=0.7)
    assert model.classes == ("a", "b", "c")
    z = (x - model.mean) / model.scale
    residual = model.proba(x) - (y[:, None] == np.array(model.classes)[None]).astype(float)
    np.testing.assert_allclose(z.T @ residual + 0.7 * model.weights, 0, atol=1e-6)
    np.testing.assert_allclose(residual.sum(0) + 1e-6 * model.bias, 0, atol=1e-6)
    np.testing.assert_allclose(model.proba(x).sum(1), 1)
    assert (model.predict(x) == y).mean() > 0.6
    with pytest.raises(ValueError, match=r"`features` must be \(N, 3\)"):
        model.proba(x[:, :2])


def test_logistic_fit_matches_scikit_learn_multinomial():
    sklearn = pytest.importorskip("sklearn.linear_model")
    x, y = _toy(seed=1)
    model = fit_logistic(x, y, l2=1.0)
    z = (x - x.mean(0)) / x.std(0)
    reference = sklearn.LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(z, y)
    np.testing.assert_allclose(model.proba(x), reference.predict_proba(z), atol=1e-4)


def test_model_round_trips_through_json(tmp_path):
    x, y = _toy()
    major = np.where(x[:, 0] > 0, "major", "minor")
    skill = MeasuredSkill(mistakes=120, images=100, folds=5, seeds=2,
                          **{name: Estimate(value=0.5, low=0.4, high=0.6) for name in MeasuredSkill._ESTIMATES})
    model = MistakeModel(distance_at_most=(2, 4), depth_at_least=(1,), category=fit_logistic(x, y),
                         severity=fit_logistic(x, major), skill=skill)
    path = tmp_path / "m.json"
    save_mistake_model(model, path)
    loaded = load_mistake_model(path)
    np.testing.assert_allclose(loaded.category.proba(x), model.category.proba(x))
    assert loaded.skill == skill and loaded.depth_at_least == (1,)
    with pytest.raises(FileNotFoundError, match="bench/mistakes.py --write-model"):
        load_mistake_model(tmp_path / "missing.json")


# ---------------------------------------------------------------- folds, metrics, intervals


def test_folds_keep_groups_together_and_stratify_labels():
    labels = np.repeat(["a", "b", "c"], [100, 60, 40])  # 50 / 30 / 20 groups of two
    groups = np.arange(200) // 2
    fold = stratified_group_folds(labels, groups, folds=5, rng=np.random.default_rng(0))
    assert (fold[::2] == fold[1::2]).all()  # both items of a group in one fold
    for name, per_fold in (("a", 20), ("b", 12), ("c", 8)):
        assert np.bincount(fold[labels == name], minlength=5).tolist() == [per_fold] * 5
    again = stratified_group_folds(labels, groups, folds=5, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(fold, again)
    with pytest.raises(ValueError, match=r"`folds` must be in \[2, 100\]"):
        stratified_group_folds(labels, groups, folds=101, rng=np.random.default_rng(0))


def test_grouped_folds_stop_a_memorising_model_from_leaking():
    """Each image appears twice with one random label. A lookup of the training rows would copy the label
    if the two copies straddled folds; grouped folds leave it nothing to copy."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(150), 2)
    labels = np.array(["a", "b"])[rng.integers(0, 2, 150)][groups]
    x = groups[:, None].astype(float)

    def lookup(x_train, y_train, x_test):
        seen = dict(zip(x_train[:, 0], y_train))
        return np.array([[seen.get(v, "a") == "a", seen.get(v, "a") == "b"] for v in x_test[:, 0]], dtype=float)

    proba = cross_val_proba(lookup, x, labels, groups=groups, folds=5, seeds=(0,))
    assert np.isfinite(proba).all()
    leaked = cross_val_proba(lookup, x, labels, groups=np.arange(300), folds=5, seeds=(0,))
    codes = (labels == "b").astype(int)

    def kappa(p):
        return cohen_kappa(confusion(codes, p[0].argmax(1), 2))

    assert abs(kappa(proba)) < 0.05 and kappa(leaked) > 0.5


def test_auroc_equals_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(3)
    score = rng.integers(0, 4, 40).astype(float)
    positive = rng.random(40) < 0.4
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p, n in itertools.product(score[positive],
                                                                                    score[~positive])]
    assert auroc(positive, score) == pytest.approx(np.mean(pairs))
    assert auroc(positive, np.zeros(40)) == 0.5
    assert np.isnan(auroc(np.ones(3, dtype=bool), np.arange(3)))


def test_kappa_is_one_for_perfect_and_zero_for_a_constant_rater():
    assert cohen_kappa(np.diag([5, 3, 2])) == pytest.approx(1.0)
    assert cohen_kappa(np.array([[7, 0], [3, 0]])) == 0.0  # always the first label
    assert cohen_kappa(np.array([[2, 1], [0, 1]])) == pytest.approx(0.5)  # (0.75 - 0.5) / 0.5


def test_bootstrap_resamples_whole_groups_and_brackets_the_value():
    groups = np.array([0, 0, 1, 1, 1, 2, 3, 3])
    sizes = np.bincount(groups)

    def whole(rows):  # every drawn group is present with all of its members, as often as it was drawn
        counts = np.bincount(groups[rows], minlength=4)
        return float((counts % sizes == 0).all())

    est = bootstrap_estimate(whole, groups, resamples=200, seed=1)
    assert est.value == est.low == est.high == 1.0
    values = np.arange(8.0)
    est = bootstrap_estimate(lambda rows: values[rows].mean(), groups, resamples=500, seed=1)
    assert est.low < est.value == 3.5 < est.high and est.excludes(0.0) and not est.excludes(4.0)


def _planted(rng, n_groups=120):
    """Two annotations per image; category and severity follow feature columns, and a noise column."""
    groups = np.repeat(np.arange(n_groups), 2)
    category = np.array(CATEGORIES[:3], dtype=object)[rng.integers(0, 3, n_groups)][groups]
    major = rng.random(n_groups)[groups] < 0.4
    x = np.column_stack([category == CATEGORIES[1], category == CATEGORIES[2], major,
                         rng.normal(size=2 * n_groups)]).astype(float)
    x[:, :3] += 0.1 * rng.normal(size=(2 * n_groups, 3))
    severity = np.where(major, "major", np.where(rng.random(2 * n_groups) < 0.5, "minor", "borderline"))
    return x, category, severity, groups


def test_cross_validated_skill_is_near_one_when_a_feature_decides_and_near_zero_when_shuffled():
    x, category, severity, groups = _planted(np.random.default_rng(0))
    cats, p_major = cross_validate(x, category, severity, groups=groups, folds=5, seeds=(0, 1))
    skill = measure_skill(category, severity, cats, p_major, p_major >= 0.5, groups=groups, folds=5, resamples=300)
    assert skill.category_kappa.value > 0.95 and skill.category_accuracy.value > 0.97
    assert skill.severity_auroc.value > 0.99 and skill.severity_kappa.value > 0.95
    assert skill.mistakes == 240 and skill.images == 120 and skill.seeds == 2

    perm = np.random.default_rng(1).permutation(120)  # shuffle whole images: labels no longer follow x
    shuffled = lambda a: a.reshape(120, 2)[perm].ravel()  # noqa: E731
    cats, p_major = cross_validate(x, shuffled(category), shuffled(severity), groups=groups, folds=5, seeds=(0, 1))
    skill = measure_skill(shuffled(category), shuffled(severity), cats, p_major, p_major >= 0.5, groups=groups,
                          folds=5, resamples=300)
    assert abs(skill.category_kappa.value) < 0.15 and skill.category_kappa.low < 0 < skill.category_kappa.high
    assert skill.severity_auroc.low < 0.5 < skill.severity_auroc.high


# ---------------------------------------------------------------- features and the packaged model


def test_threshold_features_by_hand():
    np.testing.assert_array_equal(threshold_features(np.array([2, 5, -1]), (2, 4), at_most=True),
                                  [[1, 1], [0, 0], [0, 0]])  # -1 (no common ancestor): infinitely far
    np.testing.assert_array_equal(threshold_features(np.array([3, 0, -1]), (1, 3), at_most=False),
                                  [[1, 1], [0, 0], [0, 0]])
    x = hierarchy_features(np.array([2, 13]), np.array([12, 1]))
    assert x.shape == (2, 12 + 14) and x[0, :12].all() and not x[1, :11].any() and x[1, 11] == 1
    with pytest.raises(ValueError, match="must be \\(N,\\) of equal length"):
        hierarchy_features(np.array([2]), np.array([1, 2]))


def test_packaged_model_has_skill_beyond_its_intervals_and_suggests_by_depth():
    model = load_mistake_model()
    s = model.skill
    assert s.mistakes == 627 and s.folds == 5
    assert s.category_kappa.excludes(0.0) and s.severity_auroc.excludes(0.5)
    # siblings under a deep ancestor (two cats) vs classes that meet high up (depth 4: e.g. "artifact")
    distance = np.array([[0, 2, 10], [2, 0, 10], [10, 10, 0]])
    depth = np.array([[12, 10, 4], [10, 12, 4], [4, 4, 11]])
    cats, sevs, p_major = model.suggest(np.array([0, 0]), np.array([1, 2]), hierarchy_distance=distance,
                                        ancestor_depth=depth)
    assert cats[0] == "fine_grained" and sevs[0] == "minor" and p_major[0] < p_major[1]
    assert set(cats) <= set(CATEGORIES) and set(sevs) <= {"major", "minor"}
    np.testing.assert_array_equal(sevs == "major", p_major >= 0.5)


def test_fitted_model_has_skill_on_the_annotated_mistakes(shared_data):
    """One seed of the bench's protocol on the deployed signals: kappa and AUROC above chance."""
    from audits.imagenet import ClassHierarchy, load_classes, load_mistakes, load_val_labels
    from audits.mistakes import mistake_arrays

    d = shared_data / "imagenet"
    h = ClassHierarchy.from_files(d / "hierarchy" / "wordnet.is_a.txt",
                                  load_classes(d / "classes" / "class_info.json").wnids)
    m = mistake_arrays([*load_mistakes(d / "mistakes" / "vit3b_mistakes.json").values(),
                        *load_mistakes(d / "mistakes" / "greedy_soups_mistakes.json").values()],
                       load_val_labels(d / "val_labels.txt"))
    x = hierarchy_features(h.distance(m["given"], m["predicted"]), h.ancestor_depths[m["given"], m["predicted"]])
    cats, p_major = cross_validate(x, m["category"], m["severity"], groups=m["val_index"], seeds=(0,))
    skill = measure_skill(m["category"], m["severity"], cats, p_major, p_major >= 0.5, groups=m["val_index"],
                          folds=5, resamples=200)
    assert skill.images == 463 and skill.category_kappa.low > 0 and skill.severity_auroc.low > 0.5
    assert skill.majority_accuracy.value == pytest.approx(413 / 627)


# ---------------------------------------------------------------- the audit and its wording


def _three_classes():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0])
    probs = np.full((11, 3), 0.05)
    probs[np.arange(11), labels] = 0.9
    probs[9] = [0.05, 0.9, 0.05]
    probs[10] = [0.05, 0.05, 0.9]
    distance = np.array([[0, 2, 10], [2, 0, 10], [10, 10, 0]])
    depth = np.array([[12, 10, 4], [10, 12, 4], [4, 4, 11]])
    return labels, probs, distance, depth


def test_audit_suggests_with_the_fitted_model_when_it_has_both_hierarchy_matrices():
    labels, probs, distance, depth = _three_classes()
    fitted = audit_dataset(labels, probs, hierarchy_distance=distance, ancestor_depth=depth)
    assert (fitted.categorizer, fitted.class_pair_signal) == ("fitted", "hierarchy")
    assert fitted.summary()["categorizer"] == "fitted"
    flagged = np.flatnonzero(fitted.issues.mask)
    cats, sevs, _ = load_mistake_model().suggest(labels[flagged], fitted.issues.suggested_label[flagged],
                                                 hierarchy_distance=distance, ancestor_depth=depth)
    assert list(fitted.category[flagged]) == list(cats) and list(fitted.severity[flagged]) == list(sevs)
    assert audit_dataset(labels, probs, hierarchy_distance=distance).categorizer == "rules"
    with pytest.raises(ValueError, match="`ancestor_depth` needs `hierarchy_distance`"):
        audit_dataset(labels, probs, ancestor_depth=depth)
    with pytest.raises(ValueError, match=r"`ancestor_depth` must be \(3, 3\)"):
        audit_dataset(labels, probs, hierarchy_distance=distance, ancestor_depth=depth[:2])


def test_wording_reads_the_measured_agreement_from_the_model():
    est = {"category_accuracy": Estimate(value=0.654, low=0.61, high=0.70),
           "category_kappa": Estimate(value=0.238, low=0.176, high=0.296),
           "majority_accuracy": Estimate(value=0.659, low=0.61, high=0.70),
           "severity_auroc": Estimate(value=0.679, low=0.63, high=0.73),
           "severity_kappa": Estimate(value=0.264, low=0.184, high=0.346)}
    x, y = _toy()
    model = MistakeModel(distance_at_most=(2,), depth_at_least=(1,), category=fit_logistic(x, y),
                         severity=fit_logistic(x, y), skill=MeasuredSkill(mistakes=627, images=463, folds=5, seeds=5,
                                                                          **est))
    agree = suggestion_agreement("fitted", model=model)
    assert agree["category"] == ("agrees with human labels 65% (kappa 0.24 [0.18, 0.30]; always 'fine_grained': "
                                 "66%) on 627 ImageNet mistakes (5-fold CV, 95% intervals)")
    assert "AUROC 0.68 [0.63, 0.73], kappa 0.26 [0.18, 0.35] on 627 ImageNet mistakes" in agree["severity"]
    assert suggestion_note("fitted", model=model).startswith(f"Suggested category: {agree['category']}.")
    assert "not measured" in suggestion_agreement("rules")["category"]
    assert "uncalibrated rules" in suggestion_note("rules")
    with pytest.raises(ValueError, match="unknown categorizer 'magic'"):
        suggestion_agreement("magic")


def test_audit_step_with_a_wordnet_hierarchy_reports_fitted_suggestions(tmp_path, shared_data):
    from audit_step_helpers import run_step, save_array_input, save_table_input

    from audits.imagenet import load_classes
    from audits.steps import AuditStep
    from curate.data import make_table

    wnids = list(load_classes(shared_data / "imagenet" / "classes" / "class_info.json").wnids[:6])
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 8)
    probs = np.full((48, 6), 0.02)
    probs[np.arange(48), labels] = 0.9
    probs[::7] = 0.02
    probs[np.arange(0, 48, 7), (labels[::7] + 1 + rng.integers(0, 5, 7)) % 6] = 0.9  # 7 confident mistakes
    probs /= probs.sum(1, keepdims=True)
    ids = [f"img{i:02d}" for i in range(48)]
    table = make_table(ids=ids, images=rng.integers(0, 255, (48, 8, 8, 3), dtype=np.uint8), labels=labels,
                       class_names=wnids, splits="val")
    data = save_table_input(tmp_path, table)
    pred = save_array_input(tmp_path, data, "pred_probs", probs.astype(np.float32), ids, step_id="p", kind="predict")
    hierarchy = str(shared_data / "imagenet" / "hierarchy" / "wordnet.is_a.txt")
    ctx = run_step(AuditStep, tmp_path, "audit", {"data": [data], "pred_probs": [pred]}, fiftyone=False,
                   categorize={"hierarchy": hierarchy})
    assert ctx.metrics["categorizer"] == "fitted" and ctx.metrics["issues"] >= 1
    assert set(ctx.metrics["severities"]) <= {"major", "minor"}
    page = (ctx.dir / ctx.outputs["report"]["path"]).read_text()
    assert html.escape(suggestion_agreement("fitted")["category"]) in page
    assert "suggested category</th>" in page
    ctx = run_step(AuditStep, tmp_path, "rules", {"data": [data], "pred_probs": [pred]}, fiftyone=False,
                   categorize={"hierarchy": hierarchy, "method": "rules"})
    assert ctx.metrics["categorizer"] == "rules"
    assert "not measured (uncalibrated rules)" in (ctx.dir / ctx.outputs["report"]["path"]).read_text()
