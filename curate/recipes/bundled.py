"""Recipes shipped inside the package: `curate demo` runs one without a checkout, and `curate init`
writes a copy of one, pointed at the user's own data, to start from."""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

from curate import workspace
from curate.errors import UsageError

TEMPLATES = {"folder": ("images", "path")}
"""Bundled recipes `curate init` writes: name -> (the step and field that take the user's data path)."""


def bundled_recipe(name: str) -> Path:
    """Path of the packaged recipe ``name`` (e.g. "demo")."""
    folder = resources.files("curate.recipes") / "yaml"
    path = Path(str(folder / f"{name}.yaml"))
    if not path.is_file():
        known = sorted(p.name.removesuffix(".yaml") for p in Path(str(folder)).glob("*.yaml"))
        raise UsageError(f"no bundled recipe '{name}'; bundled: {', '.join(known)}")
    return path


def recipes_using(kind: str) -> list[str]:
    """Shipped recipes with a step of ``kind``: a checkout's ``recipes/`` folder (the current folder's,
    or the one beside an editable install), then the packaged ones; shown relative to the current folder
    when inside it."""
    checkouts = dict.fromkeys([Path.cwd().resolve() / "recipes", Path(__file__).resolve().parents[2] / "recipes"])
    packaged = Path(str(resources.files("curate.recipes") / "yaml"))
    uses = re.compile(rf"^\s*(-\s+)?uses:\s*['\"]?{re.escape(kind)}['\"]?\s*(#.*)?$", re.MULTILINE)
    found = []
    for folder in (*checkouts, packaged):
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            if uses.search(path.read_text(encoding="utf-8", errors="replace")):
                relative = os.path.relpath(path)
                found.append(relative if not relative.startswith("..") else str(path))
    return found


def init_recipe(template: str, *, data: str | Path, out: str | Path, name: str | None = None,
                force: bool = False) -> Path:
    """Write the bundled recipe ``template`` as ``out``, reading the user's ``data`` (an absolute path is
    written) and named ``name`` (default: the data folder's name); validated before it is written."""
    from curate.recipes.recipe import NAME_RE, parse_recipe
    from curate.recipes.yaml_lines import load_yaml

    if template not in TEMPLATES:
        raise UsageError(f"no recipe template '{template}'; templates: {', '.join(sorted(TEMPLATES))}")
    out, data = Path(out), Path(data).expanduser().resolve()
    if out.exists() and not force:
        raise UsageError(f"{out} exists; choose another --out or pass --force to replace it")
    if not data.exists():
        raise UsageError(f"`--path` {data} does not exist")
    name = name or (re.sub(r"[^A-Za-z0-9_.-]+", "-", data.name).strip("-.") or template)
    if not NAME_RE.match(name):
        raise UsageError(f"`--name` must be a folder-safe name (letters, digits, '_', '-', '.'), got {name!r}")
    text = bundled_recipe(template).read_text()
    data_doc, lines = load_yaml(text, filename=template)
    step_id, field = TEMPLATES[template]
    index = next(i for i, s in enumerate(data_doc["steps"]) if s["id"] == step_id)
    rows = text.splitlines(keepends=True)
    for key, value in ((("steps", index, "with", field), str(data)), (("name",), name)):
        row = lines[key] - 1
        rows[row] = re.sub(rf"^(\s*{key[-1]}:\s*).*$", lambda m: m.group(1) + value, rows[row].rstrip("\n")) + "\n"
    written = "".join(rows)
    parse_recipe(written, filename=str(out), path=out.resolve())  # refuse to write a recipe that does not validate
    workspace.write_text(out, written)
    return out
