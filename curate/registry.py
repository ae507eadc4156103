"""A small generic registry: one instance per extension point.

Entries may be objects or dotted paths (``"pkg.module:attr"``) imported on first
use, so listing names never imports torch. Unknown names fail with the valid
names and the closest match.
"""

from __future__ import annotations

import difflib
import importlib
from importlib import metadata
from typing import Any, Callable, Generic, Iterator, TypeVar

from curate.errors import UnknownName

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str]) -> str:
    """A ' (did you mean X?)' suffix, or '' when nothing is close."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def import_object(path: str) -> Any:
    module, _, attr = path.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Name -> entry, with lazy dotted-path entries and an optional entry-point group."""

    def __init__(self, kind: str, *, entry_point_group: str | None = None):
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        self._group = entry_point_group
        self._group_loaded = False

    def register(self, name: str, obj: T | str | None = None) -> Callable[[T], T] | None:
        """Register ``obj`` under ``name``; used bare it is a decorator."""
        if obj is not None:
            self._entries[name] = obj
            return None

        def decorator(target: T) -> T:
            self._entries[name] = target
            return target

        return decorator

    def _load_group(self) -> None:
        if self._group and not self._group_loaded:
            self._group_loaded = True
            for ep in metadata.entry_points(group=self._group):
                self._entries.setdefault(ep.name, ep.value)

    def names(self) -> list[str]:
        self._load_group()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load_group()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def unknown_message(self, name: str) -> str:
        names = self.names()
        return f"unknown {self.kind} '{name}'{did_you_mean(name, names)}; known: {', '.join(names)}"

    def get(self, name: str) -> T:
        self._load_group()
        if name not in self._entries:
            raise UnknownName(self.unknown_message(name))
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = import_object(entry)
            self._entries[name] = entry
        return entry  # type: ignore[return-value]
