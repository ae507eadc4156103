"""Recipe validation: every problem at once, each with file, line, step and field."""

import pytest

from curate.errors import RecipeError
from curate.recipes import load_recipe, parse_recipe

from toy_steps import TOY_RECIPE


def problems_of(text, **kwargs):
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, filename="r.yaml", **kwargs)
    return [str(p) for p in info.value.problems]


def test_valid_recipe_builds_typed_plan():
    recipe = parse_recipe(TOY_RECIPE, filename="r.yaml")
    assert recipe.ids == ["numbers", "scaled"]
    assert recipe.step("numbers").config.n == 5
    assert recipe.step("scaled").inputs == {"values": ["numbers"]}


def test_bad_value_names_file_line_step_field():
    text = TOY_RECIPE.replace("n: 5", "n: ten")
    assert problems_of(text) == ["r.yaml:6: step 'numbers' with.n: expected an integer > 0, got 'ten'"]


def test_all_problems_reported_together():
    text = TOY_RECIPE.replace("n: 5", "n: 0").replace("scale: 2.0", "scael: 2.0").replace("uses: toy_scale",
                                                                                           "uses: toy_scael")
    found = problems_of(text)
    assert any(p.startswith("r.yaml:6: step 'numbers' with.n:") for p in found)
    assert any("unknown step kind 'toy_scael'" in p and "did you mean 'toy_scale'" in p and p.startswith("r.yaml:9:")
               for p in found)


def test_unknown_field_did_you_mean():
    found = problems_of(TOY_RECIPE.replace("scale: 2.0", "scael: 2.0"))
    assert found == ["r.yaml:12: step 'scaled' with.scael: unknown field (did you mean 'scale'?); fields: scale"]


def test_unknown_top_level_and_step_keys():
    text = "nmae: x\n" + TOY_RECIPE.replace("    with:\n      scale", "    wiht:\n      scale")
    found = problems_of(text)
    assert any("r.yaml:1:" in p and "unknown top-level key 'nmae'" in p and "did you mean 'name'" in p for p in found)
    assert any("step 'scaled'" in p and "unknown key 'wiht'" in p and "did you mean 'with'" in p for p in found)


def test_wiring_errors_caught_before_running():
    text = TOY_RECIPE + "  - id: again\n    uses: toy_scale\n    inputs: {values: scaled}\n"
    found = problems_of(text)
    assert found == ["r.yaml:15: step 'again' inputs.values: needs pred_probs, but step 'scaled' produces report"]
    text = TOY_RECIPE.replace("{values: numbers}", "{values: numbrs}")
    assert "step 'numbrs' is not defined before this step (did you mean 'numbers'?)" in problems_of(text)[0]
    text = TOY_RECIPE.replace("{values: numbers}", "{valeus: numbers}")
    found = problems_of(text)
    assert any("unknown input role 'valeus'" in p for p in found)
    assert any("missing required input 'values'" in p for p in found)


def test_duplicate_ids_and_yaml_errors():
    text = TOY_RECIPE.replace("id: scaled", "id: numbers")
    assert any("duplicate step id 'numbers'" in p for p in problems_of(text))
    assert problems_of("name: x\nsteps: [\n")[0].startswith("r.yaml:3: invalid YAML")
    assert "duplicate key 'name'" in problems_of("name: a\nname: b\nsteps: []\n")[0]


def test_overrides_use_the_same_validator():
    recipe = parse_recipe(TOY_RECIPE, filename="r.yaml", overrides=["scaled.scale=3", "defaults.seed=7"])
    assert recipe.step("scaled").config.scale == 3.0 and recipe.defaults.seed == 7
    assert problems_of(TOY_RECIPE, overrides=["scaled.scale=-1"]) == [
        "--set scaled.scale=-1: step 'scaled' with.scale: expected a number > 0, got -1"]
    assert "no step 'scaeld' in the recipe (did you mean 'scaled'?)" in problems_of(
        TOY_RECIPE, overrides=["scaeld.scale=1"])[0]
    assert "expected STEP.FIELD=VALUE" in problems_of(TOY_RECIPE, overrides=["scale"])[0]


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(RecipeError, match="nope.yaml: recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")


@pytest.mark.parametrize("written,value", [("1e-3", 1e-3), ("5E-2", 5e-2), ("2e5", 2e5), ("1.5e3", 1500.0),
                                           ("0.05", 0.05), (".5", 0.5)])
def test_every_float_a_person_writes_is_a_number_in_the_recipe_and_in_overrides(written, value):
    """YAML 1.1 reads ``1e-3`` as a string; recipes read it (and --set values) as the number it is."""
    text = TOY_RECIPE.replace("scale: 2.0", f"scale: {written}")
    assert parse_recipe(text, filename="r.yaml").step("scaled").config.scale == value
    plan = parse_recipe(TOY_RECIPE, filename="r.yaml", overrides=[f"scaled.scale={written}"])
    assert plan.step("scaled").config.scale == value


def test_words_that_look_almost_like_numbers_stay_strings():
    from curate.recipes.yaml_lines import load_value

    assert [load_value(t) for t in ("1e", "e3", "1e-", "v1e3")] == ["1e", "e3", "1e-", "v1e3"]


FOLDER_RECIPE = """\
name: mine
steps:
  - id: source
    uses: source
    with: {kind: imagefolder, path: pics}
"""


def test_relative_input_paths_resolve_against_the_recipe_folder_and_set_values_against_the_cwd(tmp_path,
                                                                                              monkeypatch):
    (tmp_path / "project" / "pics").mkdir(parents=True)
    (tmp_path / "elsewhere" / "pics").mkdir(parents=True)
    recipe = tmp_path / "project" / "r.yaml"
    recipe.write_text(FOLDER_RECIPE)
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert load_recipe(recipe).step("source").config.path == tmp_path / "project" / "pics"
    overridden = load_recipe(recipe, overrides=["source.path=pics"]).step("source").config.path
    assert overridden == tmp_path / "elsewhere" / "pics"


def test_validate_reports_a_missing_source_path_with_its_line_and_field(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(FOLDER_RECIPE)
    with pytest.raises(RecipeError) as err:
        load_recipe(recipe)
    [line] = str(err.value).splitlines()
    assert line.startswith(f"{recipe}:5: step 'source' with.path: '{tmp_path / 'pics'}' does not exist")
    assert "relative paths resolve against the recipe file's folder" in line


def test_a_run_saved_recipe_keeps_resolving_against_the_original_folder(tmp_path, monkeypatch):
    """`curate audit RUN` & co. reload the run's saved copy of the recipe: its relative paths still resolve
    against the folder of the original recipe, not against the run directory."""
    import json

    from curate.recipes import run_recipe
    from curate.recipes.runner import run_steps_of_kind
    from PIL import Image
    import numpy as np

    for cls in ("a", "b"):
        (tmp_path / "project" / "pics" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((4, 4, 3), 40 * i, np.uint8)).save(tmp_path / "project" / "pics" / cls / f"{i}.png")
    recipe = tmp_path / "project" / "r.yaml"
    recipe.write_text(FOLDER_RECIPE)
    monkeypatch.chdir(tmp_path)
    result = run_recipe(recipe, workdir=tmp_path / "runs", progress=False)
    assert json.loads((result.run_dir / "run.json").read_text())["recipe_dir"] == str(tmp_path / "project")
    again = run_steps_of_kind(result.run_dir, ["source"], progress=False)
    assert again.outcome("source").state == "skipped"
