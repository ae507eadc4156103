"""Regenerate the README's recipe tables (demo, full, folder) from a fresh run's step.json files.

Runs the recipe into a fresh work folder, runs it again (everything skipped), and prints a Markdown table
of every step (kind, what the kind does, seconds, the step's headline result) with the machine it ran on
and both wall times, so the numbers in the README are what the commands print and cannot drift::

    python bench/readme_tables.py recipes/demo.yaml [--set STEP.FIELD=VALUE ...] [--workdir /tmp/readme]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path


def machine() -> str:
    """CPU model, usable cores, memory and the load before the run (other processes slow every number)."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{model}, {len(os.sched_getaffinity(0))} cores, {memory:.0f} GiB, Python {platform.python_version()}, "
            f"load average {os.getloadavg()[0]:.1f} before the run")


def uses_comments(recipe_text: str) -> dict[str, str]:
    """Step id -> the comment on its ``uses:`` line, the recipe's own word on what the step does."""
    comments, step = {}, None
    for line in recipe_text.splitlines():
        if line.strip().startswith("- id:"):
            step = line.split(":", 1)[1].split("#")[0].strip()
        elif line.strip().startswith("uses:") and "#" in line and step:
            comments[step] = line.split("#", 1)[1].strip()
    return comments


def table(run_dir: Path) -> str:
    """The Markdown table of a run: what each step does (its recipe comment, else its kind's summary), its
    time and its headline result, as `curate run` prints them."""
    from curate.recipes.overview import run_overview
    from curate.steps.base import create_step

    said = uses_comments((run_dir / "recipe.yaml").read_text())
    cell = lambda text: str(text).replace("|", "\\|")  # noqa: E731 (a pipe would end the Markdown cell)
    rows = ["| step | kind | what it does | time | result |", "|---|---|---|---|---|"]
    for step in run_overview(run_dir).steps:
        what = said.get(step.id) or create_step(step.kind).summary.rstrip(".")
        seconds = f"{step.seconds:.1f} s" if step.seconds is not None else ""
        rows.append(f"| `{step.id}` | `{step.kind}` | {cell(what)} | {seconds} | {cell(step.headline)} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="STEP.FIELD=VALUE")
    parser.add_argument("--workdir", type=Path, help="parent of the fresh run (default: a temporary folder)")
    args = parser.parse_args()

    from curate.recipes import run_recipe

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="curate-readme-"))
    where = machine()
    started = time.perf_counter()
    result = run_recipe(args.recipe, workdir=workdir, overrides=args.overrides, progress=False)
    first = time.perf_counter() - started
    started = time.perf_counter()
    run_recipe(args.recipe, workdir=workdir, overrides=args.overrides, progress=False)
    second = time.perf_counter() - started
    print(f"`{args.recipe}` on {where}: whole run {first:.0f} s, a second run with every step skipped "
          f"{second:.1f} s ({time.strftime('%Y-%m-%d')}).\n")
    print(table(result.run_dir))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
