"""Recipes shipped inside the package (`curate demo` runs without a checkout)."""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

from curate.errors import UsageError


def bundled_recipe(name: str) -> Path:
    """Path of the packaged recipe ``name`` (e.g. "demo")."""
    folder = resources.files("curate.recipes") / "yaml"
    path = Path(str(folder / f"{name}.yaml"))
    if not path.is_file():
        known = sorted(p.name.removesuffix(".yaml") for p in Path(str(folder)).glob("*.yaml"))
        raise UsageError(f"no bundled recipe '{name}'; bundled: {', '.join(known)}")
    return path


def recipes_using(kind: str) -> list[str]:
    """Shipped recipes with a step of ``kind``: the checkout's ``recipes/`` folder (when curate runs from
    one), then the packaged ones; shown relative to the current folder when inside it."""
    checkout = Path(__file__).resolve().parents[2] / "recipes"
    packaged = Path(str(resources.files("curate.recipes") / "yaml"))
    uses = re.compile(rf"^\s*(-\s+)?uses:\s*['\"]?{re.escape(kind)}['\"]?\s*(#.*)?$", re.MULTILINE)
    found = []
    for folder in (checkout, packaged):
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            if uses.search(path.read_text(encoding="utf-8", errors="replace")):
                relative = os.path.relpath(path)
                found.append(relative if not relative.startswith("..") else str(path))
    return found
