"""Recipes shipped inside the package (`curate demo` runs without a checkout)."""

from __future__ import annotations

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
