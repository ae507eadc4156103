"""Recipes: load and validate YAML recipes, run them, inspect and clean runs."""

from curate.recipes.recipe import Defaults, Override, PlannedStep, Recipe, load_recipe, parse_recipe
from curate.recipes.runner import RunResult, StepOutcome, clean_run, run_dir_for, run_recipe, run_status

__all__ = [
    "Defaults", "Override", "PlannedStep", "Recipe", "RunResult", "StepOutcome",
    "clean_run", "load_recipe", "parse_recipe", "run_dir_for", "run_recipe", "run_status",
]
