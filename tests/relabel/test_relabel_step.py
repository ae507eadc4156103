"""The `relabel` step and `train` with soft / relabel targets, in a tiny recipe on the bundled demo data."""

import json

import numpy as np
import pytest

from curate.errors import RecipeError, UsageError
from curate.recipes import parse_recipe, run_recipe
from curate.relabel import LabelMapStore, multi_labels

RECIPE = """\
name: tiny
steps:
  - id: cifar
    uses: source
    with: {kind: demo, limit_per_class: 4}
  - id: maps
    uses: relabel
    inputs: {data: cifar}
    with: {model: resnet20-cifar, shard_size: 16, threshold: 0.2}
  - id: relabel
    uses: train
    inputs: {data: cifar, label_maps: maps}
    with: {model: convnet, model_config: {width: 8, depth: 2}, epochs: 1, batch_size: 16,
           targets: relabel, crop: resized, mix: cutmix}
  - id: exact
    uses: train
    inputs: {data: cifar, label_maps: maps}
    with: {model: convnet, model_config: {width: 8, depth: 2}, epochs: 1, batch_size: 16,
           targets: relabel, crop: resized, mix: cutmix, relabel_mix: exact}
  - id: soft
    uses: train
    inputs: {data: cifar, label_maps: maps}
    with: {model: convnet, model_config: {width: 8, depth: 2}, epochs: 1, batch_size: 16,
           targets: soft, mix: resizemix}
"""


def test_relabel_then_train_on_label_maps_and_soft_targets(tmp_path):
    result = run_recipe(parse_recipe(RECIPE, filename="tiny.yaml"), workdir=tmp_path, progress=False)
    assert [o.state for o in result.outcomes] == ["ran"] * 5
    run = tmp_path / "tiny"
    manifest = json.loads((run / "maps" / "step.json").read_text())
    entry = manifest["outputs"]["label_maps"]
    assert (entry["path"], entry["top_k"], entry["height"], entry["width"], entry["num_classes"]) == \
        ("label_maps", 5, 8, 8, 10)
    store = LabelMapStore(run / "maps" / entry["path"])
    train_ids = np.load(run / "maps" / "pred_probs.ids.npy")
    assert store.ids.tolist() == train_ids.tolist() and len(store) == manifest["metrics"]["rows"] == 40
    assert all(i.startswith("cifar10/train/") for i in train_ids)  # with.split defaults to train
    scores = np.load(run / "maps" / "label_scores.npy")
    mask = np.load(run / "maps" / "multi_labels.npy")
    assert np.array_equal(mask, multi_labels(scores, threshold=0.2))
    metrics = manifest["metrics"]
    assert metrics["mean_classes_per_image"] == pytest.approx(mask.sum(1).mean(), abs=1e-4)
    assert metrics["multi_label_share"] == pytest.approx((mask.sum(1) >= 2).mean(), abs=1e-4)
    assert metrics["images_per_s"] > 0 and metrics["shards_computed"] == 3
    probs = np.load(run / "maps" / "pred_probs.npy")
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    trained = {step: json.loads((run / step / "step.json").read_text())["metrics"]
               for step in ("relabel", "exact", "soft")}
    for step, targets in (("relabel", "relabel"), ("exact", "relabel"), ("soft", "soft")):
        assert trained[step]["targets"] == targets and np.isfinite(trained[step]["train_loss"])
    # ReLabel's own mixing is the default; the region-exact variant trains on other targets from the same draws
    assert (trained["relabel"]["relabel_mix"], trained["exact"]["relabel_mix"]) == ("paper", "exact")
    assert "relabel_mix" not in trained["soft"]
    assert trained["relabel"]["train_loss"] != trained["exact"]["train_loss"]

    again = run_recipe(parse_recipe(RECIPE, filename="tiny.yaml"), workdir=tmp_path, progress=False)
    assert [o.state for o in again.outcomes] == ["skipped"] * 5


def test_forced_rerun_reuses_every_finished_shard(tmp_path):
    plan = parse_recipe(RECIPE, filename="tiny.yaml")
    run_recipe(plan, workdir=tmp_path, only=["maps"], progress=False)
    again = run_recipe(plan, workdir=tmp_path, only=["maps"], force=["maps"], progress=False)
    metrics = again.outcome("maps").metrics
    assert (metrics["shards_computed"], metrics["shards_reused"]) == (0, 3)


@pytest.mark.parametrize("change, message", [
    ("targets: relabel, crop: resized, mix: cutmix", None),
    ("targets: onehot", "`inputs.label_maps` is wired but targets is 'onehot'"),
    ("targets: relabel, mix: cutmix", "set crop: resized"),
    ("targets: relabel, crop: resized, relabel_mix: exact", "needs targets: relabel and mix: cutmix or resizemix"),
    ("targets: relabel, crop: resized, mix: cutmix, relabel_mix: crop", "relabel_mix"),
])
def test_train_validation_rules_for_label_map_targets(change, message):
    text = RECIPE.replace("targets: relabel, crop: resized, mix: cutmix}", change + "}", 1)  # step relabel
    if message is None:
        parse_recipe(text, filename="tiny.yaml")
        return
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, filename="tiny.yaml")
    assert any(message in str(p) and "step 'relabel'" in str(p) for p in info.value.problems)


def test_soft_or_relabel_targets_need_a_relabel_step_wired():
    text = RECIPE.replace("inputs: {data: cifar, label_maps: maps}\n    with: {model: convnet, model_config: "
                          "{width: 8, depth: 2}, epochs: 1, batch_size: 16,\n           targets: soft",
                          "inputs: {data: cifar}\n    with: {model: convnet, model_config: "
                          "{width: 8, depth: 2}, epochs: 1, batch_size: 16,\n           targets: soft")
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, filename="tiny.yaml")
    assert any("targets 'soft' reads label maps" in str(p) for p in info.value.problems)


def test_relabel_with_a_flatten_head_model_fails_with_what_to_use_instead(tmp_path):
    """A trained ConvNet (head over the flattened map) wired as the annotator is refused in one line."""
    annotator = ("  - {id: convnet, uses: train, inputs: {data: cifar},\n"
                 "     with: {model: convnet, model_config: {width: 8, depth: 2}, epochs: 1, batch_size: 16}}\n")
    maps = "  - {id: maps, uses: relabel, inputs: {data: cifar, model: convnet}}\n"
    text = RECIPE.split("  - id: maps")[0] + annotator + maps
    with pytest.raises(UsageError, match="step 'maps': model 'convnet' has a head over .* globally pooled model") \
            as err:
        run_recipe(parse_recipe(text, filename="tiny.yaml"), workdir=tmp_path, progress=False)
    assert "\n" not in str(err.value)


def test_an_annotator_with_an_untrained_head_is_refused(tmp_path):
    """A randomly initialised annotator (as a new head on other classes) would annotate noise: refused in one line."""
    text = RECIPE.split("  - id: relabel")[0].replace("model: resnet20-cifar,", "model: resnet20-cifar, weights: null,")
    with pytest.raises(UsageError, match=r"untrained 10-class head .* so its label maps would be noise") as err:
        run_recipe(parse_recipe(text, filename="tiny.yaml"), workdir=tmp_path, progress=False)
    assert "\n" not in str(err.value)
