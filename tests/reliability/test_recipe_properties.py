"""Property-based: whatever YAML a user writes, and whatever they pass to --set, the loader returns a valid
recipe or raises RecipeError whose every problem is located (file plus a line, step or field, or the --set
override it came from); no other exception escapes."""

import copy
import math

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.errors import RecipeError
from curate.recipes import parse_recipe
from curate.recipes.bundled import bundled_recipe

DEMO_TEXT = bundled_recipe("demo").read_text()
DEMO = yaml.safe_load(DEMO_TEXT)
WORDS = ["name", "steps", "id", "uses", "with", "inputs", "defaults", "seed", "device", "threads", "executor",
         "source", "train", "predict", "embed", "audit", "index", "data", "model", "epochs", "kind", "demo", "path"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(WORDS))
documents = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(WORDS), st.text(max_size=6)), inner,
                                                 max_size=5)), max_leaves=25)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(text: str, overrides=()):
    """"ok" or the list of problems; any exception other than RecipeError fails the property."""
    try:
        parse_recipe(text, filename="r.yaml", overrides=overrides)
        return "ok"
    except RecipeError as exc:
        assert exc.problems, "a RecipeError with no problem"
        for problem in exc.problems:
            located = problem.line or problem.step or problem.field or problem.file.startswith("--set")
            assert problem.file and located, f"unlocated: {problem}"
            assert "\n" not in str(problem) and "Traceback" not in problem.message, problem.message
        return exc.problems


def paths(node, prefix=()):
    """Every key/index path into a nested document."""
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from paths(child, (*prefix, key))


def dump(document) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


@SETTINGS
@given(documents)
def test_any_yaml_document_loads_or_is_refused_with_located_problems(document):
    outcome(dump(document))


@SETTINGS
@given(st.text(max_size=200))
def test_any_text_loads_or_is_refused_with_located_problems(text):
    outcome(text)


@SETTINGS
@given(st.data())
def test_a_mutated_shipped_recipe_loads_or_is_refused_with_located_problems(data):
    """One value of the demo recipe replaced by anything, or one key deleted: the step validators see it."""
    document = copy.deepcopy(DEMO)
    target = data.draw(st.sampled_from([p for p in paths(document) if p]))
    parent = document
    for key in target[:-1]:
        parent = parent[key]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[target[-1]]
    else:
        parent[target[-1]] = data.draw(documents)
    outcome(dump(document))


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from([s["id"] for s in DEMO["steps"]] + ["nope", "defaults"]),
                          st.sampled_from(["epochs", "model", "with", "seed", "kind", "lr", "x.y", ""]),
                          st.one_of(st.text(max_size=10), st.integers().map(str), st.floats().map(str),
                                    st.sampled_from(["[1, 2]", "{a: 1}", "null", "!!python/object:os.system x",
                                                     "nan", "-inf", "'", "&a"]))), max_size=3))
def test_any_set_override_applies_or_is_refused_with_located_problems(overrides):
    outcome(DEMO_TEXT, [f"{step}.{field}={value}" for step, field, value in overrides])


def test_yaml_tags_that_safe_load_refuses_name_their_line():
    problems = outcome("name: x\nsteps:\n  - id: a\n    uses: !!python/object/apply:os.system ['true']\n")
    assert problems != "ok" and problems[0].line == 4


def test_non_finite_floats_are_refused_with_their_field():
    problems = outcome(DEMO_TEXT.replace("epochs: 20", "epochs: .nan", 1))
    assert problems != "ok" and any("epochs" in str(p) for p in problems)
    assert math.isnan(float("nan"))
