"""YAML with ``yaml.safe_load`` semantics that remembers where every key came from.

:func:`load_yaml` returns plain Python data plus a map from key paths such as
``("steps", 2, "with", "epochs")`` to 1-based line numbers, so validation errors
can point at the line a user has to fix. Duplicate keys are errors (safe_load
would silently keep the last one). Numbers read as a person writes them: YAML 1.1
(PyYAML) takes ``1e-3`` and ``5E2`` for strings, :class:`RecipeLoader` reads them as
floats as YAML 1.2 does.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from curate.errors import Problem, RecipeError

Path_ = tuple[Any, ...]


class RecipeLoader(yaml.SafeLoader):
    """``safe_load`` semantics, plus floats in exponent form without a dot or exponent sign (``1e-3``, ``2E5``)."""


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def load_value(text: str) -> Any:
    """One YAML value (a ``--set`` override's right-hand side) read as a recipe reads it."""
    loader = RecipeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_yaml(text: str, *, filename: str) -> tuple[Any, dict[Path_, int]]:
    try:
        loader = RecipeLoader(text)
    except yaml.reader.ReaderError as exc:  # a control character: the reader refuses the text up front
        raise RecipeError(Problem(f"invalid YAML: unacceptable character #x{exc.character:04x}", file=filename,
                                  line=text.count("\n", 0, max(exc.position, 0)) + 1)) from None
    try:
        try:  # parsing, then building values: a tag safe_load refuses fails while building
            node = loader.get_single_node()
            lines: dict[Path_, int] = {}
            if node is None:
                return None, lines
            lines[()] = node.start_mark.line + 1
            return _build(loader, node, (), lines, filename), lines
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 1
            raise RecipeError(Problem(f"invalid YAML: {exc.problem or exc}", file=filename, line=line)) from None
    finally:
        loader.dispose()


def _build(loader: RecipeLoader, node: yaml.Node, path: Path_, lines: dict[Path_, int], filename: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                raise RecipeError(Problem(f"duplicate key '{key}'", file=filename, line=key_node.start_mark.line + 1))
            lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _build(loader, value_node, path + (key,), lines, filename)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            items.append(_build(loader, item, path + (i,), lines, filename))
        return items
    return loader.construct_object(node, deep=True)


def line_of(lines: dict[Path_, int], path: Path_) -> int | None:
    """The line of ``path``, or of its nearest ancestor that has one."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())
