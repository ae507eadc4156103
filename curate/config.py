"""Typed configs from plain mappings, validated strictly and all at once.

Every component config is a ``@dataclass(frozen=True, kw_only=True)``. Range rules
live in field metadata built with :func:`option`, so a bad value is reported
against its own field ("expected an integer > 0, got 'ten'"). Cross-field rules
go in ``__post_init__`` and raise :class:`ConfigValueError` naming the field.

Relative paths resolve against ``base_dir`` (a recipe's folder): ``Path`` fields always, and
string fields marked ``option(..., path=True)`` (they also take hub ids or names) when a file of
that name exists there. Values typed on the command line (:class:`CommandLineValue`) resolve
against the current directory instead, as a shell user expects.

:func:`parse_config` returns the instance together with every problem found;
:func:`from_mapping` raises them as one :class:`ConfigError` for library callers.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Union

from curate.errors import UsageError
from curate.registry import did_you_mean

_MISSING = dataclasses.MISSING


class ConfigValueError(ValueError):
    """Raised from ``__post_init__`` for a rule that involves ``field``."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


class ConfigError(UsageError):
    """All problems of one config, as ``(field, message)`` pairs."""

    def __init__(self, problems: list[tuple[str | None, str]], where: str = "config"):
        self.problems = problems
        lines = [f"{where} {f}: {m}" if f else f"{where}: {m}" for f, m in problems]
        super().__init__("\n".join(lines))


def option(
    default: Any = _MISSING,
    *,
    help: str = "",
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    default_factory: Any = _MISSING,
    path: bool = False,
) -> Any:
    """A dataclass field with a help text and numeric bounds checked at load; ``path``: a string that
    may name a file (resolved against the recipe's folder when it exists there)."""
    meta = {"help": help, "gt": gt, "ge": ge, "lt": lt, "le": le, "path": path}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# --- type conversion -------------------------------------------------------------


class CommandLineValue(str):
    """A string typed on the command line (``--set``): relative paths in it resolve against the cwd."""


def _resolve_path(value: Any, *, base_dir: Path | None, always: bool) -> Any:
    """``value`` (a str or Path) as an absolute path string against ``base_dir`` (the cwd for command-line
    values); unchanged when relative, not ``always`` and not existing there."""
    if not isinstance(value, (str, Path)) or base_dir is None:
        return value
    base = Path.cwd() if isinstance(value, CommandLineValue) else base_dir
    expanded = Path(value).expanduser()
    if expanded.is_absolute():
        return str(expanded)
    candidate = base / expanded
    return str(candidate) if always or candidate.exists() else value


class _Bad(Exception):
    pass


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    if tp is Path:
        return "a path"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin in (list, tuple):
        return "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _bounds_text(meta: Mapping[str, Any]) -> str:
    parts = []
    for key, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if meta.get(key) is not None:
            parts.append(f"{sym} {meta[key]:g}")
    return " and ".join(parts)


def _convert(value: Any, tp: Any, path: str, problems: list[tuple[str | None, str]],
             base_dir: Path | None = None) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            sub: list[tuple[str | None, str]] = []
            try:
                out = _convert(value, arg, path, sub, base_dir)
            except _Bad:  # not this alternative: try the next one
                continue
            if not sub:
                return out
        raise _Bad()
    if origin is Literal:
        for allowed in typing.get_args(tp):
            if value == allowed and type(value) is type(allowed):
                return value
        raise _Bad()
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Bad()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _Bad()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Bad()
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Bad()
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(_resolve_path(value, base_dir=base_dir, always=True))
        raise _Bad()
    if origin in (list, tuple):
        if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
            raise _Bad()
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        items = []
        for i, item in enumerate(value):
            try:
                items.append(_convert(item, item_tp, f"{path}[{i}]", problems, base_dir))
            except _Bad:
                problems.append((f"{path}[{i}]", f"expected {_type_name(item_tp)}, got {item!r}"))
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _Bad()
        args = typing.get_args(tp)
        if not args:
            return dict(value)
        out = {}
        for k, v in value.items():
            try:
                out[k] = _convert(v, args[1], f"{path}.{k}", problems, base_dir)
            except _Bad:
                problems.append((f"{path}.{k}", f"expected {_type_name(args[1])}, got {v!r}"))
        return out
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise _Bad()
        obj, sub = parse_config(tp, value, prefix=f"{path}.", base_dir=base_dir)
        problems.extend(sub)
        return obj
    if isinstance(value, tp):
        return value
    raise _Bad()


def _check_bounds(value: Any, meta: Mapping[str, Any]) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return True
    return not (
        (meta.get("gt") is not None and not value > meta["gt"])
        or (meta.get("ge") is not None and not value >= meta["ge"])
        or (meta.get("lt") is not None and not value < meta["lt"])
        or (meta.get("le") is not None and not value <= meta["le"])
    )


def parse_config(cls: type, data: Mapping[str, Any] | None, *, prefix: str = "",
                 base_dir: Path | None = None) -> tuple[Any, list[tuple[str | None, str]]]:
    """Build ``cls`` from ``data``; return ``(instance or None, [(field, message), ...])``.

    ``base_dir``: where relative paths resolve (None: they stay as written)."""
    data = {} if data is None else data
    problems: list[tuple[str | None, str]] = []
    if not isinstance(data, Mapping):
        return None, [(prefix.rstrip(".") or None, f"expected a mapping, got {data!r}")]
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            problems.append((f"{prefix}{key}", f"unknown field{did_you_mean(str(key), list(fields))}; "
                             f"fields: {', '.join(fields)}"))
    kwargs = {}
    for name, f in fields.items():
        path = f"{prefix}{name}"
        if name not in data:
            if f.default is _MISSING and f.default_factory is _MISSING:
                problems.append((path, f"missing required field ({_type_name(hints[name])})"))
            continue
        value = data[name]
        expect = _type_name(hints[name])
        bounds = _bounds_text(f.metadata)
        try:
            converted = _convert(value, hints[name], path, problems, base_dir)
            if f.metadata.get("path"):
                converted = _resolve_path(converted, base_dir=base_dir, always=False)
        except _Bad:
            problems.append((path, f"expected {expect}{' ' + bounds if bounds else ''}, got {value!r}"))
            continue
        if not _check_bounds(converted, f.metadata):
            problems.append((path, f"expected {expect} {bounds}, got {value!r}"))
            continue
        kwargs[name] = converted
    if problems:
        return None, problems
    try:
        return cls(**kwargs), []
    except ConfigValueError as exc:
        return None, [(f"{prefix}{exc.field}", str(exc))]
    except (ValueError, TypeError) as exc:
        return None, [(prefix.rstrip(".") or None, str(exc))]


def from_mapping(cls: type, data: Mapping[str, Any] | None, *, where: str = "config") -> Any:
    """Build ``cls`` from ``data`` or raise one :class:`ConfigError` listing every problem."""
    obj, problems = parse_config(cls, data)
    if problems:
        raise ConfigError(problems, where=where)
    return obj


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (paths as strings, tuples as lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    return plain(config)


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    name: str
    type: str
    default: Any
    required: bool
    help: str


def describe(cls: type) -> list[FieldInfo]:
    """Fields of a config class for listings (``curate steps``)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        required = f.default is _MISSING and f.default_factory is _MISSING
        default = None if required else (f.default if f.default is not _MISSING else f.default_factory())
        bounds = _bounds_text(f.metadata)
        tname = _type_name(hints[f.name]) + (f" {bounds}" if bounds else "")
        out.append(FieldInfo(f.name, tname, to_dict(default), required, f.metadata.get("help", "")))
    return out
