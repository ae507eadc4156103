"""Typed configs: strict, all problems at once, bounds named in the message."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from curate.config import ConfigError, ConfigValueError, describe, from_mapping, option, parse_config, to_dict


@dataclass(frozen=True, kw_only=True)
class Inner:
    depth: int = option(3, gt=0)


@dataclass(frozen=True, kw_only=True)
class Cfg:
    epochs: int = option(10, gt=0, help="passes")
    lr: float = option(0.1, gt=0, le=1)
    mode: Literal["a", "b"] = "a"
    flag: bool = False
    name: str | None = None
    path: Path | None = None
    sizes: tuple[int, ...] = (1, 2)
    inner: Inner = option(default_factory=Inner)

    def __post_init__(self):
        if self.mode == "b" and self.epochs > 5:
            raise ConfigValueError("epochs", "mode 'b' allows at most 5 epochs")


def test_defaults_and_conversion():
    cfg = from_mapping(Cfg, {"epochs": 3, "lr": 1, "path": "x/y", "sizes": [4, 5], "inner": {"depth": 2}})
    assert cfg.epochs == 3 and cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.path == Path("x/y") and cfg.sizes == (4, 5) and cfg.inner.depth == 2
    assert to_dict(cfg)["path"] == "x/y"


def test_every_problem_reported_with_field_and_value():
    _, problems = parse_config(Cfg, {"epochs": "ten", "lr": 2.0, "mode": "c", "flag": "yes", "epoch": 1,
                                     "inner": {"depth": 0}})
    by_field = dict(problems)
    assert by_field["epochs"] == "expected an integer > 0, got 'ten'"
    assert "<= 1" in by_field["lr"] and "2.0" in by_field["lr"]
    assert "'a'" in by_field["mode"] and "'c'" in by_field["mode"]
    assert "true or false" in by_field["flag"]
    assert "did you mean 'epochs'" in by_field["epoch"]
    assert "> 0" in by_field["inner.depth"]


def test_bool_is_not_an_integer_and_cross_field_rule_names_field():
    _, problems = parse_config(Cfg, {"epochs": True})
    assert problems and problems[0][0] == "epochs"
    with pytest.raises(ConfigError, match="epochs: mode 'b' allows at most 5"):
        from_mapping(Cfg, {"mode": "b", "epochs": 6})


def test_missing_required_field():
    @dataclass(frozen=True, kw_only=True)
    class Req:
        path: str

    _, problems = parse_config(Req, {})
    assert problems == [("path", "missing required field (a string)")]


def test_describe_lists_fields_with_bounds():
    fields = {f.name: f for f in describe(Cfg)}
    assert fields["epochs"].type == "an integer > 0" and fields["epochs"].default == 10
    assert fields["epochs"].help == "passes"


@dataclass(frozen=True, kw_only=True)
class Unions:
    split: str | tuple[str, ...] | None = None
    threads: int | Literal["auto"] = "auto"


def test_a_union_tries_every_alternative():
    """A value the first alternative rejects is tried against the next ones (a list for `str | tuple`)."""
    assert from_mapping(Unions, {"split": ["train", "test"], "threads": 2}) == Unions(split=("train", "test"), threads=2)
    assert from_mapping(Unions, {"split": "train", "threads": "auto"}) == Unions(split="train")
    obj, problems = parse_config(Unions, {"split": 3, "threads": "all"})
    assert obj is None and problems == [("split", "expected a string or a list or null, got 3"),
                                        ("threads", "expected an integer or one of 'auto', got 'all'")]
