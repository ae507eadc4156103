"""Runner: skip rule, cache key, forcing, failures, crash-resume via the write-fault hook, status, clean."""

import json

import numpy as np
import pytest

from curate import workspace
from curate.errors import StepFailed, UsageError
from curate.recipes import clean_run, parse_recipe, run_recipe, run_status

from toy_steps import TOY_RECIPE


def run(tmp_path, text=TOY_RECIPE, **kwargs):
    return run_recipe(parse_recipe(text, filename="r.yaml"), workdir=tmp_path, progress=False, **kwargs)


def states(result):
    return {o.id: o.state for o in result.outcomes}


def test_second_run_skips_everything(tmp_path):
    first = run(tmp_path)
    assert states(first) == {"numbers": "ran", "scaled": "ran"}
    manifest = json.loads((first.run_dir / "scaled" / "step.json").read_text())
    assert manifest["metrics"]["total"] == 20.0 and manifest["outputs"]["report"]["path"] == "scaled.npy"
    assert json.loads((first.run_dir / "scaled" / "metrics.json").read_text())["total"] == 20.0
    assert states(run(tmp_path)) == {"numbers": "skipped", "scaled": "skipped"}


def test_config_change_reruns_that_step_and_dependents_only_when_output_changes(tmp_path):
    run(tmp_path)
    changed = run(tmp_path, TOY_RECIPE.replace("scale: 2.0", "scale: 3.0"))
    assert states(changed) == {"numbers": "skipped", "scaled": "ran"}
    upstream = run(tmp_path, TOY_RECIPE.replace("scale: 2.0", "scale: 3.0").replace("n: 5", "n: 6"))
    assert states(upstream) == {"numbers": "ran", "scaled": "ran"}


def test_seed_is_part_of_the_key(tmp_path):
    run(tmp_path)
    seeded = run(tmp_path, TOY_RECIPE.replace("name: toy", "name: toy\ndefaults: {seed: 1}"))
    assert states(seeded) == {"numbers": "ran", "scaled": "ran"}


def test_force_and_from(tmp_path):
    run(tmp_path)
    assert states(run(tmp_path, force=["scaled"])) == {"numbers": "skipped", "scaled": "ran"}
    assert states(run(tmp_path, from_step="numbers")) == {"numbers": "ran", "scaled": "ran"}
    with pytest.raises(UsageError, match="no step 'scaeld'.*did you mean 'scaled'"):
        run(tmp_path, force=["scaeld"])


def test_missing_output_reruns(tmp_path):
    result = run(tmp_path)
    (result.run_dir / "scaled" / "scaled.npy").unlink()
    assert states(run(tmp_path)) == {"numbers": "skipped", "scaled": "ran"}


def test_failure_is_step_failed_and_leaves_no_manifest(tmp_path):
    text = TOY_RECIPE + "  - id: bad\n    uses: toy_fail\n"
    with pytest.raises(StepFailed, match="step 'bad' failed: RuntimeError: boom"):
        run(tmp_path, text)
    rows = {s.id: s.state for s in run_status(tmp_path / "toy")}
    assert rows == {"numbers": "done", "scaled": "done", "bad": "incomplete"}


@pytest.mark.parametrize("fail_at", [3, 8, 10])
def test_crash_mid_run_resumes_to_identical_result(tmp_path, fail_at, write_faults):
    reference = run(tmp_path / "ref")
    write_faults.reset(fail_at)
    with pytest.raises(write_faults.Crash):
        run(tmp_path / "crash")
    write_faults.reset(None)
    resumed = run(tmp_path / "crash")
    # writes: run.json, recipe.yaml, then numbers: 3 parts, values.npy, metrics.json, step.json (#8)
    expected_numbers = "skipped" if fail_at > 8 else "ran"
    assert states(resumed) == {"numbers": expected_numbers, "scaled": "ran"}
    for step, name in (("numbers", "values.npy"), ("scaled", "scaled.npy")):
        assert np.array_equal(np.load(reference.run_dir / step / name), np.load(resumed.run_dir / step / name))
    def totals(result):
        return {o.id: o.metrics["total"] for o in result.outcomes}

    assert totals(resumed) == totals(reference)
    assert states(run(tmp_path / "crash")) == {"numbers": "skipped", "scaled": "skipped"}


def test_status_and_clean(tmp_path):
    result = run(tmp_path)
    rows = run_status(result.run_dir)
    assert [(r.id, r.state) for r in rows] == [("numbers", "done"), ("scaled", "done")]
    assert rows[0].metrics["total"] == 10.0
    clean_run(result.run_dir)
    assert not result.run_dir.exists()
    with pytest.raises(UsageError, match="not a curate run directory"):
        clean_run(tmp_path)


def test_only_runs_targets_and_their_inputs(tmp_path):
    text = TOY_RECIPE + "  - id: other\n    uses: toy_numbers\n    with: {n: 2}\n"
    result = run(tmp_path, text, only=["scaled"])
    assert states(result) == {"numbers": "ran", "scaled": "ran"}
    assert not (result.run_dir / "other").exists()


def test_run_steps_of_kind_reruns_from_saved_recipe(tmp_path):
    from curate.recipes.runner import run_steps_of_kind

    result = run(tmp_path)
    again = run_steps_of_kind(result.run_dir, ["toy_scale"], force=True, progress=False)
    assert states(again) == {"numbers": "skipped", "scaled": "ran"}
    with pytest.raises(UsageError, match="has no 'toy_fail' step"):
        run_steps_of_kind(result.run_dir, ["toy_fail"], progress=False)


def test_a_step_writing_an_undeclared_output_type_is_refused(tmp_path):
    """The artifact contract: outputs not in the kind's ``produces`` fail the step and leave no manifest."""
    from curate.steps.base import STEPS

    import toy_steps

    class Sneaky(toy_steps.ToyNumbers):
        produces = ()

    STEPS.register("toy_sneaky", Sneaky)
    text = TOY_RECIPE.replace("uses: toy_numbers", "uses: toy_sneaky").split("  - id: scaled")[0]
    with pytest.raises(StepFailed, match=r"wrote `pred_probs` but declares only nothing in `produces`"):
        run(tmp_path, text)
    assert workspace.read_manifest(tmp_path / "toy" / "numbers") is None
