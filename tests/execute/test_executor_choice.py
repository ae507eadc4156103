"""`executor` in a recipe's defaults and per batch step: validated at load with one line naming the fix."""

import pytest

from curate.errors import RecipeError
from curate.recipes import parse_recipe

STEPS = """\
steps:
  - {id: s, uses: source, with: {kind: demo}}
  - {id: e, uses: embed, inputs: {data: s}, with: {model: resnet20-cifar%s}}
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, filename="r.yaml")
    return str(err.value).splitlines()


def test_an_unknown_executor_fails_validation_with_the_known_ones():
    assert _problems("name: r\ndefaults: {executor: dask}\n" + STEPS % "") == [
        "r.yaml:2: defaults.executor: unknown executor 'dask'; known: local, ray"]


def test_ray_without_ray_installed_fails_validation_with_the_install_command(monkeypatch):
    monkeypatch.setattr("curate.execute.ray.ray_installed", lambda: False)
    fix = "the 'ray' executor needs Ray, which is not installed: pip install 'curate-toolkit[ray]'"
    assert _problems("name: r\ndefaults: {executor: ray}\n" + STEPS % "") == [f"r.yaml:2: defaults.executor: {fix}"]
    assert _problems("name: r\n" + STEPS % ", executor: ray") == [f"r.yaml:4: step 'e' with.executor: {fix}"]


def test_ray_options_are_checked_and_a_step_may_override_the_default_executor():
    assert _problems("name: r\ndefaults: {ray: {workers: 0}}\n" + STEPS % "")[0].startswith(
        "r.yaml:2: defaults.ray.workers:")
    plan = parse_recipe("name: r\ndefaults: {executor: ray, ray: {workers: 3, address: 'auto'}}\n"
                        + STEPS % ", executor: local", filename="r.yaml")
    assert (plan.defaults.executor, plan.defaults.ray.workers, plan.defaults.ray.address) == ("ray", 3, "auto")
    assert plan.step("e").config.executor == "local"
