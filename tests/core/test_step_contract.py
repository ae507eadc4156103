"""One contract for every registered step kind (built-in and entry-point ones)."""

import dataclasses
import typing

import pytest

from curate.artifacts import ARTIFACT_TYPES
from curate.config import parse_config, to_dict
from curate.steps import STEPS, Step, create_step

KINDS = [k for k in STEPS.names() if not k.startswith("toy_")]


def _sample_value(tp):
    """A valid value for a required field, by type."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return typing.get_args(tp)[0]
    if origin in (typing.Union, __import__("types").UnionType):
        return _sample_value(next(a for a in typing.get_args(tp) if a is not type(None)))
    return {str: "x", int: 1, float: 1.0, bool: True}.get(tp, "x")


@pytest.mark.parametrize("kind", KINDS)
def test_step_kind_declares_its_contract(kind):
    cls = create_step(kind)
    assert issubclass(cls, Step) and cls.summary and cls.version >= 1
    assert set(cls.produces) <= set(ARTIFACT_TYPES), f"unknown artifact type in {cls.produces}"
    for role, spec in cls.inputs.items():
        assert set(spec.types) <= set(ARTIFACT_TYPES), f"{kind}.{role}: {spec.types}"


@pytest.mark.parametrize("kind", KINDS)
def test_step_configs_round_trip(kind):
    """Every config variant: defaults (plus sample values for required fields) survive to_dict -> parse."""
    for selector, config_cls in create_step(kind).config_variants().items():
        hints = typing.get_type_hints(config_cls)
        raw = {f.name: _sample_value(hints[f.name]) for f in dataclasses.fields(config_cls)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        first, problems = parse_config(config_cls, raw)
        if problems:  # a cross-field rule rejects the naive sample: the message must name a field
            assert all(field for field, _ in problems), problems
            continue
        again, problems = parse_config(config_cls, to_dict(first))
        assert not problems and again == first, (selector, problems)
