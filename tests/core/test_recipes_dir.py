"""Every recipe shipped under recipes/ (recursively) validates."""

from pathlib import Path

import pytest

from curate.recipes import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").rglob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_validates(path):
    assert load_recipe(path).steps


def test_recipes_found():
    assert RECIPES, "no recipes found under recipes/"
