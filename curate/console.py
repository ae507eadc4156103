"""Terminal presentation for the CLI: step progress lines, closing tables, listings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from curate.recipes.recipe import PlannedStep
from curate.recipes.runner import RunResult, StepOutcome, run_status

_STATE_STYLE = {"ran": "green", "skipped": "cyan", "done": "green", "incomplete": "yellow", "pending": "dim"}


def _fmt_metric(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt_metric(v)}" for k, v in value.items()) + "}"
    return str(value)


def format_metrics(metrics: dict[str, Any], *, limit: int = 4) -> str:
    shown = [(k, v) for k, v in metrics.items() if k != "seconds"][:limit]
    return "  ".join(f"{k}={_fmt_metric(v)}" for k, v in shown)


class RichReporter:
    """Prints one line per step as the run goes."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)

    def step_started(self, step: PlannedStep) -> None:
        self.console.print(f"[bold]▶ {step.id}[/bold] [dim]({step.kind})[/dim]")

    def step_finished(self, outcome: StepOutcome) -> None:
        style = _STATE_STYLE.get(outcome.state, "")
        verb = "up to date, skipped" if outcome.state == "skipped" else f"done in {outcome.seconds:.1f}s"
        self.console.print(f"[{style}]✓ {outcome.id}[/{style}] {verb}  [dim]{format_metrics(outcome.metrics)}[/dim]")


def print_summary(result: RunResult, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"run {result.run_dir}", title_justify="left")
    for col in ("step", "kind", "state", "time", "key metrics"):
        table.add_column(col)
    for o in result.outcomes:
        style = _STATE_STYLE.get(o.state, "")
        table.add_row(o.id, o.kind, f"[{style}]{o.state}[/{style}]", f"{o.seconds:.1f}s", format_metrics(o.metrics))
    console.print(table)


def print_status(run_dir: Path, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"run {run_dir}", title_justify="left")
    for col in ("step", "kind", "state", "started", "time", "key metrics"):
        table.add_column(col)
    for s in run_status(run_dir):
        style = _STATE_STYLE.get(s.state, "")
        table.add_row(s.id, s.kind, f"[{style}]{s.state}[/{style}]", s.started or "-",
                      f"{s.seconds:.1f}s" if s.seconds is not None else "-", format_metrics(s.metrics))
    console.print(table)


def print_steps(kind: str | None = None, console: Console | None = None) -> None:
    """`curate steps`: every step kind, or one kind's config fields in detail."""
    from curate.config import describe
    from curate.steps.base import STEPS, create_step

    console = console or Console()
    kinds = [kind] if kind else STEPS.names()
    for name in kinds:
        cls = create_step(name)
        inputs = ", ".join(f"{role}: {'|'.join(r.types)}{'[]' if r.many else ''}{'?' if r.optional else ''}"
                           for role, r in cls.inputs.items()) or "-"
        console.print(f"[bold]{name}[/bold] (v{cls.version}) {cls.summary}")
        console.print(f"  inputs: {inputs}    produces: {', '.join(cls.produces) or '-'}")
        for selector, config_cls in cls.config_variants().items():
            if selector:
                console.print(f"  [italic]with {selector}[/italic]")
            table = Table(show_header=True, box=None, padding=(0, 2), show_edge=False)
            for col in ("field", "type", "default", "help"):
                table.add_column(col, style="dim" if col == "help" else "")
            for f in describe(config_cls):
                table.add_row(f.name, f.type, "(required)" if f.required else repr(f.default), f.help)
            console.print(table)
        console.print()
