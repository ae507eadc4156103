"""Terminal presentation for the CLI: step progress lines, the end-of-run summary, listings.

Text that comes from users, configs or metrics goes through :func:`rich.markup.escape`, so
brackets such as ``[cifar10]`` print as they are instead of being read as rich markup; paths are
printed whole (never wrapped or shortened).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from curate.recipes.overview import RunOverview, StepSummary, run_overview, step_headline
from curate.recipes.recipe import PlannedStep
from curate.recipes.runner import RunResult, StepOutcome, run_status

_STATE_STYLE = {"ran": "green", "skipped": "cyan", "done": "green", "incomplete": "yellow", "pending": "dim",
                "failed": "red", "interrupted": "red"}


def _state(state: str) -> str:
    style = _STATE_STYLE.get(state, "")
    return f"[{style}]{escape(state)}[/{style}]" if style else escape(state)


class RichReporter:
    """Prints one line per step as the run goes: its state, time and headline result."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)

    def step_started(self, step: PlannedStep) -> None:
        self.console.print(f"[bold]▶ {escape(step.id)}[/bold] [dim]({escape(step.kind)})[/dim]")

    def step_finished(self, outcome: StepOutcome) -> None:
        style = _STATE_STYLE.get(outcome.state, "")
        verb = "up to date, skipped" if outcome.state == "skipped" else f"done in {outcome.seconds:.1f}s"
        headline = step_headline(outcome.kind, outcome.metrics)
        self.console.print(f"[{style}]✓ {escape(outcome.id)}[/{style}] {verb}  [dim]{escape(headline)}[/dim]")


def _steps_table(title: str, steps: list[StepSummary]) -> Table:
    table = Table(title=escape(title), title_justify="left")
    for col in ("step", "kind", "state", "time", "result"):
        table.add_column(col, overflow="fold")
    for s in steps:
        table.add_row(escape(s.id), escape(s.kind), _state(s.state),
                      f"{s.seconds:.1f}s" if s.seconds is not None else "-", escape(s.headline))
    return table


def print_overview(overview: RunOverview, console: Console | None = None) -> None:
    """The end of a run: each step's state, time and headline; every report by its full path; what next."""
    console = console or Console()
    console.print(_steps_table(f"run {overview.run_dir}", overview.steps))
    console.print("reports:")
    width = max([len(sid) for sid, _ in overview.reports] + [len("run index")])
    console.print(f"  {'run index':<{width}}  {escape(str(overview.index_page))}", soft_wrap=True)
    for sid, path in overview.reports:
        console.print(f"  {escape(sid):<{width}}  {escape(str(path))}", soft_wrap=True)
    console.print("next:")
    for line in overview.next_steps:
        console.print(f"  {escape(line)}", soft_wrap=True)


def print_summary(result: RunResult, console: Console | None = None) -> None:
    """:func:`print_overview` of a finished run (read back from disk when the runner could not write it)."""
    overview = result.overview or run_overview(result.run_dir, {o.id: o.state for o in result.outcomes})
    print_overview(overview, console)


def print_status(run_dir: Path, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=escape(f"run {run_dir}"), title_justify="left")
    for col in ("step", "kind", "state", "started", "time", "result"):
        table.add_column(col, overflow="fold")
    for s in run_status(run_dir):
        table.add_row(escape(s.id), escape(s.kind), _state(s.state), s.started or "-",
                      f"{s.seconds:.1f}s" if s.seconds is not None else "-", escape(step_headline(s.kind, s.metrics)))
    console.print(table)


def print_steps(kind: str | None = None, console: Console | None = None) -> None:
    """`curate steps`: every step kind, or one kind's config fields in detail (choices and help in full)."""
    from curate.config import describe
    from curate.steps.base import STEPS, create_step

    console = console or Console()
    kinds = [kind] if kind else STEPS.names()
    for name in kinds:
        cls = create_step(name)
        inputs = ", ".join(f"{role}: {'|'.join(r.types)}{'[]' if r.many else ''}{'?' if r.optional else ''}"
                           for role, r in cls.inputs.items()) or "-"
        console.print(f"[bold]{escape(name)}[/bold] (v{cls.version}) {escape(cls.summary)}")
        console.print(f"  inputs: {escape(inputs)}    produces: {escape(', '.join(cls.produces) or '-')}")
        for selector, config_cls in cls.config_variants().items():
            if selector:
                console.print(f"  [italic]with {escape(selector)}[/italic]")
            table = Table(show_header=True, box=None, padding=(0, 2), show_edge=False)
            for col in ("field", "type", "default", "help"):
                table.add_column(col, style="dim" if col == "help" else "", overflow="fold")
            for f in describe(config_cls):
                table.add_row(escape(f.name), escape(f.type), "(required)" if f.required else escape(repr(f.default)),
                              escape(f.help))
            console.print(table)
        console.print()
