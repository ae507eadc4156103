"""The README's module map matches the tree: every file it names exists, and every module is named."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("curate", "audits", "synth")


def _mapped_files() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Module map"):text.index("## Extending curate")]
    files: set[str] = set()
    for ref in re.findall(r"`([a-z_/.{},]+\.py)`", section):
        if "/" not in ref:
            continue  # a bare name, resolved below against its row's folder
        match = re.fullmatch(r"(.*)\{(.*)\}(\.py)", ref)
        names = [f"{match[1]}{name}{match[3]}" for name in match[2].split(",")] if match else [ref]
        files.update(names)
    # "fit.py (`data.py`, ...)": bare names in a row live in the folder of the row's first path
    for row in section.splitlines():
        paths = re.findall(r"`([a-z_]+/[a-z_/]+)/[a-z_.{},]+\.py`", row)
        for bare in re.findall(r"`([a-z_]+\.py)`", row):
            if paths:
                files.add(f"{paths[0]}/{bare}")
    return files


def test_every_file_in_the_module_map_exists():
    missing = sorted(f for f in _mapped_files() if not (ROOT / f).is_file())
    assert not missing, f"the README's module map names files that do not exist: {missing}"


def test_every_module_of_the_packages_is_in_the_module_map():
    mapped = _mapped_files()
    modules = sorted(str(p.relative_to(ROOT)) for package in PACKAGES for p in (ROOT / package).rglob("*.py")
                     if p.name != "__init__.py" or p.parent.name == "execute")
    unmapped = [m for m in modules if m not in mapped]
    assert not unmapped, f"add these modules to the README's module map (concept -> file): {unmapped}"
