"""The `train` step over several seeds: distinct runs, deterministic per seed, mean +- t-interval, curves."""

import json
import math

import numpy as np
import pytest
from safetensors.numpy import load_file

from curate.errors import RecipeError
from curate.learn.curves import curve_figure
from curate.recipes import parse_recipe, run_recipe
from curate.steps.compare import CompareStep
from curate.steps.train import TrainStep

from figure_checks import texts_outside

RECIPE = """\
name: seeds
defaults: {seed: 5}
steps:
  - id: cifar
    uses: source
    with: {kind: demo, limit_per_class: 4}
  - id: single
    uses: train
    inputs: {data: cifar}
    with: {model: convnet, model_config: {width: 8, depth: 1}, epochs: 2, batch_size: 16}
  - id: three
    uses: train
    inputs: {data: cifar}
    with: {model: convnet, model_config: {width: 8, depth: 1}, epochs: 2, batch_size: 16, seeds: 3}
  - id: compare
    uses: compare
    inputs: {runs: [single, three]}
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The recipe run twice, in two work folders."""
    plan = parse_recipe(RECIPE, filename="seeds.yaml")
    return [run_recipe(plan, workdir=tmp_path_factory.mktemp(name), progress=False) for name in ("a", "b")]


def weights(result, step):
    return load_file(result.run_dir / step / "model" / "weights.safetensors")


def without_times(histories):
    """history.json entries without the wall-clock seconds (the only part that may differ between runs)."""
    return [[{k: v for k, v in row.items() if k != "seconds"} for row in h["history"]] for h in histories]


def test_seeds_train_distinct_runs_from_defaults_seed_up(runs):
    history = json.loads((runs[0].run_dir / "three" / "history.json").read_text())
    assert [h["seed"] for h in history] == [5, 6, 7]
    assert all([row["epoch"] for row in h["history"]] == [1, 2] for h in history)
    losses = [tuple(row["loss"] for row in h["history"]) for h in history]
    assert len(set(losses)) == 3  # three different runs, not one run three times
    metrics = runs[0].outcome("three").metrics
    assert metrics["seeds"] == 3 and metrics["eval_rows"] == 40
    assert metrics["accuracy_runs"] == [round(h["history"][-1]["eval_accuracy"], 4) for h in history]


def test_the_second_seed_is_a_run_with_defaults_seed_plus_one(runs, tmp_path):
    """Seed 6 of the seeds-3 step (base 5) is exactly the run of a one-seed step under base seed 6."""
    alone = RECIPE.replace("seed: 5", "seed: 6").split("  - id: three")[0]
    result = run_recipe(parse_recipe(alone, filename="alone.yaml"), workdir=tmp_path, progress=False)
    [only] = json.loads((result.run_dir / "single" / "history.json").read_text())
    history = json.loads((runs[0].run_dir / "three" / "history.json").read_text())
    assert only["seed"] == 6
    # equal up to float rounding: another allocation history may change the order of SIMD sums
    for a, b in zip(*without_times([only, history[1]]), strict=True):
        assert a == pytest.approx(b, rel=1e-5)


def test_accuracy_is_the_mean_and_ci95_the_student_t_half_width(runs):
    history = json.loads((runs[0].run_dir / "three" / "history.json").read_text())
    a = [h["history"][-1]["eval_accuracy"] for h in history]
    mean = sum(a) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in a) / 2)
    metrics = runs[0].outcome("three").metrics
    assert metrics["accuracy"] == round(mean, 4)
    assert metrics["accuracy_ci95"] == round(4.303 * sd / math.sqrt(3), 4)  # t(0.975, 2) = 4.303
    single = runs[0].outcome("single").metrics
    assert single["accuracy_ci95"] is None and single["seeds"] == 1 and single["accuracy_runs"] == [single["accuracy"]]


def test_each_seed_repeats_exactly_and_the_first_seed_is_the_steps_model(runs):
    first, second = runs
    for step in ("single", "three"):
        for name, w in weights(first, step).items():
            assert np.array_equal(w, weights(second, step)[name]), (step, name)
        assert without_times(json.loads((first.run_dir / step / "history.json").read_text())) == \
            without_times(json.loads((second.run_dir / step / "history.json").read_text()))
    single, three = weights(first, "single"), weights(first, "three")
    assert all(np.array_equal(single[k], three[k]) for k in single)  # seed 5 trained the same in both steps
    assert first.outcome("single").metrics["accuracy"] == first.outcome("three").metrics["accuracy_runs"][0]


def test_curve_png_is_written_with_one_line_per_seed(runs):
    run = runs[0].run_dir
    assert (run / "three" / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "curve.png" in json.loads((run / "three" / "step.json").read_text())["files"]
    histories = {h["seed"]: h["history"] for h in json.loads((run / "three" / "history.json").read_text())}
    fig = curve_figure(histories, title="three: convnet on 40 'train' rows, 3 seeds")
    loss_ax, acc_ax = fig.axes
    assert len(loss_ax.get_lines()) == len(acc_ax.get_lines()) == 3
    assert [t.get_text() for t in acc_ax.get_legend().get_texts()] == ["seed 5", "seed 6", "seed 7"]
    assert acc_ax.get_lines()[1].get_ydata().tolist() == [r["eval_accuracy"] for r in histories[6]]
    assert texts_outside(fig) == []


def test_curve_without_held_out_rows_has_the_loss_panel_only():
    fig = curve_figure({0: [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}]}, title="no eval split")
    assert len(fig.axes) == 1 and fig.axes[0].get_lines()[0].get_ydata().tolist() == [2.0, 1.5]


def test_compare_reads_the_interval_of_the_seeded_step(runs):
    run = runs[0].run_dir
    rows = (run / "compare" / "compare.csv").read_text().splitlines()
    three = runs[0].outcome("three").metrics
    assert rows[0] == "step,kind,accuracy,accuracy_ci95,runs"
    assert rows[1].startswith("single,train,") and rows[1].endswith(",,1")
    assert rows[2] == f"three,train,{three['accuracy']:.6f},{three['accuracy_ci95']:.6f},3"
    assert runs[0].outcome("compare").metrics["three_ci95"] == three["accuracy_ci95"]


def test_headlines_give_the_interval_where_there_is_one(runs):
    three, single = runs[0].outcome("three").metrics, runs[0].outcome("single").metrics
    assert TrainStep.headline(three) == (f"held-out accuracy {three['accuracy']:.2%} ± {three['accuracy_ci95']:.2%} "
                                         "(mean, 95% interval over 3 seeds; 40 rows)")
    assert TrainStep.headline(single) == f"held-out accuracy {single['accuracy']:.2%} (40 rows)"
    assert CompareStep.headline(runs[0].outcome("compare").metrics) == \
        f"single {single['accuracy']:.4g}, three {three['accuracy']:.4g} ± {three['accuracy_ci95']:.2g}"


def test_seeds_must_be_positive():
    with pytest.raises(RecipeError, match="seeds"):
        parse_recipe(RECIPE.replace("seeds: 3", "seeds: 0"), filename="seeds.yaml")
