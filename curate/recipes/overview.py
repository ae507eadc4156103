"""What a run produced, at a glance: each step's state and headline result, its reports, what to do next.

The same :class:`RunOverview` feeds the terminal summary after ``curate run`` and the run's
``index.html``, a page written (atomically) at the end of every run that links each step's HTML
reports and shows its plots, with the recipe at the bottom. A step's headline comes from its kind's
:meth:`~curate.steps.base.Step.headline` over the metrics in its ``step.json``; reports and plots
are the files its manifest lists.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote

from curate import workspace
from curate.errors import UnknownName
from curate.steps.base import create_step

log = logging.getLogger(__name__)

INDEX_PAGE = "index.html"
REPORT_SUFFIXES = (".html", ".md", ".csv")
PLOT_SUFFIXES = (".png", ".svg", ".jpg")


@dataclass(frozen=True)
class StepSummary:
    id: str
    kind: str
    state: str  # this run: ran | skipped | failed | interrupted; else from disk: done | incomplete | pending
    seconds: float | None
    headline: str
    reports: tuple[Path, ...] = ()  # absolute paths: HTML pages first, then cards and tables
    plots: tuple[Path, ...] = ()


@dataclass(frozen=True)
class RunOverview:
    run_dir: Path
    name: str
    recipe: str | None
    steps: list[StepSummary]
    index_page: Path
    next_steps: list[str] = field(default_factory=list)  # commands, one per line

    @property
    def reports(self) -> list[tuple[str, Path]]:
        """(step id, path) of every HTML report of the run, in recipe order."""
        return [(s.id, p) for s in self.steps for p in s.reports if p.suffix == ".html"]


def step_headline(kind: str, metrics: Mapping[str, Any]) -> str:
    """The headline the kind declares for these metrics; empty when it declares none or the metrics lack
    what it needs (a manifest of an older version, a plug-in kind that is no longer installed)."""
    try:
        return create_step(kind).headline(metrics) or ""
    except UnknownName:
        return ""
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        log.debug("no headline for a '%s' step from %s: %s", kind, sorted(metrics), exc)
        return ""


def step_files(manifest: Mapping[str, Any], step_dir: Path) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """(reports, plots) of a completed step: the files its manifest lists (``files`` and string values of its
    ``outputs`` entries) with a report or plot suffix that still exist, as absolute paths."""
    names = list(manifest.get("files", []))
    for entry in manifest.get("outputs", {}).values():
        names += [v for v in entry.values() if isinstance(v, str)]
    step_dir = Path(step_dir).resolve()
    found = [(step_dir / n).resolve() for n in dict.fromkeys(names)
             if Path(n).suffix.lower() in REPORT_SUFFIXES + PLOT_SUFFIXES]
    found = [p for p in found if p.is_file() and step_dir in p.parents]  # never a file outside the step
    reports = sorted((p for p in found if p.suffix.lower() in REPORT_SUFFIXES),
                     key=lambda p: REPORT_SUFFIXES.index(p.suffix.lower()))
    return tuple(reports), tuple(p for p in found if p.suffix.lower() in PLOT_SUFFIXES)


def run_overview(run_dir: str | Path, states: Mapping[str, str] | None = None) -> RunOverview:
    """The overview of a run directory; ``states`` gives this run's step states (ran, skipped, failed,
    interrupted), the others come from disk."""
    run_dir = Path(run_dir).resolve()
    info = json.loads((run_dir / "run.json").read_text())
    states = states or {}
    steps = []
    for s in info.get("steps", []):
        step_dir = run_dir / s["id"]
        manifest = workspace.read_manifest(step_dir)
        if manifest is None:
            state = states.get(s["id"]) or ("incomplete" if step_dir.exists() else "pending")
            steps.append(StepSummary(s["id"], s["kind"], state, None, ""))
            continue
        reports, plots = step_files(manifest, step_dir)
        steps.append(StepSummary(s["id"], s["kind"], states.get(s["id"], "done"), manifest.get("seconds"),
                                 step_headline(s["kind"], manifest.get("metrics", {})), reports, plots))
    index_page = run_dir / INDEX_PAGE
    return RunOverview(run_dir=run_dir, name=info.get("name", run_dir.name), recipe=info.get("recipe"), steps=steps,
                       index_page=index_page, next_steps=next_steps(run_dir))


def next_steps(run_dir: Path) -> list[str]:
    """Commands worth running after a run: browse its FiftyOne dataset (when it has one), check its state."""
    return ([f"curate app {run_dir}"] if (run_dir / "fiftyone.json").is_file() else []) + [f"curate status {run_dir}"]


def write_run_index(run_dir: str | Path, states: Mapping[str, str] | None = None) -> RunOverview:
    """Write ``<run>/index.html`` atomically and return the overview it shows."""
    overview = run_overview(run_dir, states)
    recipe = overview.run_dir / "recipe.yaml"
    page = render_run_index(overview, recipe_text=recipe.read_text() if recipe.is_file() else None)
    workspace.write_text(overview.index_page, page)
    return overview


_STYLE = ("body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:75em}"
          "table{border-collapse:collapse}td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left;"
          "vertical-align:top}.ran,.done,.skipped{color:#2a7}.failed,.interrupted,.incomplete{color:#c33}"
          ".pending{color:#888}img{max-height:180px;max-width:320px;margin:.2em;border:1px solid #ddd}"
          "pre{background:#f6f6f6;padding:1em;overflow:auto}")


def render_run_index(overview: RunOverview, *, recipe_text: str | None = None) -> str:
    """The index page: one row per step, then each step's plots, then the recipe. Every string that comes
    from the run (ids, headlines, file names, the recipe) is escaped."""
    esc = html.escape
    run_dir = overview.run_dir

    def href(path: Path) -> str:
        return esc(quote(path.relative_to(run_dir).as_posix()))

    rows = []
    for s in overview.steps:
        links = " · ".join(f"<a href='{href(p)}'>{esc(p.relative_to(run_dir / s.id).as_posix())}</a>"
                           for p in s.reports + s.plots)
        seconds = f"{s.seconds:.1f} s" if s.seconds is not None else "-"
        name = f"<a href='#{esc(s.id)}'>{esc(s.id)}</a>" if s.plots else esc(s.id)  # plots are further down
        rows.append(f"<tr><td>{name}</td><td>{esc(s.kind)}</td>"
                    f"<td class='{esc(s.state)}'>{esc(s.state)}</td><td>{seconds}</td><td>{esc(s.headline)}</td>"
                    f"<td>{links}</td></tr>")
    sections = []
    for s in overview.steps:
        if not s.plots:
            continue
        images = "".join(f"<a href='{href(p)}'><img src='{href(p)}' alt='{esc(p.name)}'></a>" for p in s.plots)
        sections.append(f"<h3 id='{esc(s.id)}'>{esc(s.id)} <small>({esc(s.kind)})</small></h3><p>{images}</p>")
    written = datetime.now(timezone.utc).isoformat(timespec="seconds")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(overview.name)} (curate run)</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(overview.name)}</h1>",
        f"<p>Run folder <code>{esc(str(run_dir))}</code>"
        + (f", recipe <code>{esc(overview.recipe)}</code>" if overview.recipe else "") + f". Written {written}.</p>",
        "<table><tr><th>step</th><th>kind</th><th>state</th><th>time</th><th>result</th><th>reports</th></tr>",
        *rows, "</table>",
        "<h2>Next</h2><ul>" + "".join(f"<li><code>{esc(line)}</code></li>" for line in overview.next_steps) + "</ul>",
    ]
    if sections:
        parts += ["<h2>Plots</h2>", *sections]
    if recipe_text is not None:
        parts += ["<h2>Recipe</h2>", f"<pre>{esc(recipe_text)}</pre>"]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
