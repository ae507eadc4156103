"""The `curate` command line: a thin Click layer over the library.

Each command parses arguments, calls one library function and prints a summary.
Heavy imports happen inside the commands, so `curate --help` stays fast. Bad
input exits 2 with one line, a failing step exits 1 with one line, Ctrl-C exits
130 naming the interrupted step, and `--debug` shows the traceback instead.
Before any command loads torch, idle OpenMP threads are told to sleep rather than
spin (``OMP_WAIT_POLICY=PASSIVE``, see :mod:`curate.threads`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from curate import __version__
from curate.errors import CurateError, StepFailed
from curate.threads import prefer_passive_waiting

RUN_DIR = click.Path(file_okay=False, path_type=Path)
RECIPE = click.Path(dir_okay=False, path_type=Path)


class _Group(click.Group):
    """Turns curate's errors into one line and an exit code, unless --debug."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            step = getattr(exc, "step_id", None)  # curate.recipes.runner.RunInterrupted
            where = f" during step '{step}'" if step else ""
            click.secho(f"interrupted{where}; run the same command again to resume", fg="yellow", err=True)
            ctx.exit(130)
        except CurateError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            code = 1 if isinstance(exc, StepFailed) else 2
            lines = str(exc).splitlines() or [type(exc).__name__]
            click.secho(f"error: {lines[0]}", fg="red", err=True)
            for line in lines[1:]:
                click.secho(f"error: {line}", fg="red", err=True)
            if code == 1:
                click.echo("(run with `curate --debug ...` for the traceback)", err=True)
            ctx.exit(code)
        except OSError as exc:  # the machine, not the input: a full disk, a permission, a vanished mount
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.secho(f"error: {exc}", fg="red", err=True)
            click.echo("(run with `curate --debug ...` for the traceback)", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="curate")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Curate image datasets: relabel, audit, condense, synthesize and index, driven by YAML recipes."""
    ctx.obj = {"debug": debug}
    prefer_passive_waiting()
    import logging

    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _set_option(f):
    return click.option("--set", "overrides", multiple=True, metavar="STEP.FIELD=VALUE",
                        help="Override a step's config value (validated like the recipe). Repeatable.")(f)


@cli.command()
@click.argument("recipe", type=RECIPE)
@_set_option
def validate(recipe: Path, overrides: tuple[str, ...]) -> None:
    """Check RECIPE (schema, step kinds, configs, wiring) without running anything."""
    from curate.recipes import load_recipe

    plan = load_recipe(recipe, overrides=overrides)
    click.echo(f"{recipe}: ok ({len(plan.steps)} steps: {', '.join(plan.ids)})")


@cli.command()
@click.argument("recipe", type=RECIPE)
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), help="Parent folder of the run (default: ./runs).")
@_set_option
@click.option("--force", multiple=True, metavar="STEP", help="Rerun STEP even if it is up to date. Repeatable.")
@click.option("--from", "from_step", metavar="STEP", help="Rerun STEP and every step after it.")
@click.option("--step", "only", multiple=True, metavar="STEP",
              help="Run only STEP and what it needs. Repeatable.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def run(recipe: Path, workdir: Path | None, overrides: tuple[str, ...], force: tuple[str, ...],
        from_step: str | None, only: tuple[str, ...], quiet: bool) -> None:
    """Run RECIPE; up-to-date steps are skipped, so an interrupted run resumes."""
    from curate.recipes import run_recipe

    _report(run_recipe, recipe, workdir=workdir, overrides=overrides, force=force, from_step=from_step,
            only=only, quiet=quiet)


def _report(runner, *args, quiet: bool = False, **kwargs) -> Path:
    """Call a runner function with live step lines, then print the closing table."""
    from curate.console import RichReporter, print_summary

    reporter = RichReporter()
    result = runner(*args, reporter=reporter, progress=not quiet, **kwargs)
    print_summary(result, reporter.console)
    return result.run_dir


def _kind_command(name: str, kinds: tuple[str, ...], summary: str, *, group: click.Group | None = None) -> click.Command:
    """`curate NAME RUN_DIR`: run the run's steps of these kinds (and what they need)."""

    @click.argument("run_dir", type=RUN_DIR)
    @_set_option
    @click.option("--force", is_flag=True, help="Rerun the steps even if they are up to date.")
    @click.option("--quiet", is_flag=True, help="No progress bars.")
    def command(run_dir: Path, overrides: tuple[str, ...], force: bool, quiet: bool) -> None:
        from curate.recipes.runner import run_steps_of_kind

        _report(run_steps_of_kind, run_dir, kinds, overrides=overrides, force=force, quiet=quiet)

    command.__doc__ = f"{summary} Runs the `{'`/`'.join(kinds)}` steps of RUN_DIR's recipe."
    return (group or cli).command(name)(command)


_kind_command("relabel", ("relabel",), "Annotate localized multi-label maps.")
_kind_command("condense", ("condense",), "Distill the dataset into a few synthetic images per class.")
_kind_command("synth", ("synth",), "Generate class-steered synthetic images and add the kept ones as a new table version.")


@cli.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), help="Parent folder of the run (default: ./runs).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo(workdir: Path | None, quiet: bool) -> None:
    """Run the bundled demo recipe offline on the bundled CIFAR-10 sample."""
    from curate.recipes.bundled import bundled_recipe

    from curate.recipes import run_recipe

    _report(run_recipe, bundled_recipe("demo"), workdir=workdir, quiet=quiet)


@cli.command()
@click.argument("template", default="folder")
@click.option("--path", "data", required=True, type=click.Path(exists=True, path_type=Path),
              help="Your data, e.g. the root of root/<class>/* image folders.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Recipe file to write (default: NAME.yaml).")
@click.option("--name", help="Recipe and run name (default: the data folder's name).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def init(template: str, data: Path, out: Path | None, name: str | None, force: bool) -> None:
    """Write a recipe to start from (TEMPLATE: folder) for your data, then print how to run it."""
    from curate.recipes.bundled import init_recipe
    from curate.recipes.recipe import load_recipe

    if out is None:
        from curate.recipes.bundled import TEMPLATES

        out = Path(f"{name or data.resolve().name or template}.yaml") if template in TEMPLATES else Path("recipe.yaml")
    written = init_recipe(template, data=data, out=out, name=name, force=force)
    recipe = load_recipe(written)
    click.echo(f"wrote {written.resolve()} ({len(recipe.steps)} steps: {', '.join(recipe.ids)})")
    click.echo(f"next: curate run {written}    then: curate app runs/{recipe.name}")


@cli.command()
@click.argument("kind", required=False)
def steps(kind: str | None) -> None:
    """List step kinds with their inputs, outputs and config fields (or one KIND in detail)."""
    from curate.console import print_steps

    print_steps(kind)


@cli.command()
@click.argument("run_dir", type=RUN_DIR)
def status(run_dir: Path) -> None:
    """Show each step of RUN_DIR: state, start time, duration and key metrics."""
    from curate.console import print_status

    print_status(run_dir)


@cli.command()
@click.argument("run_dir", type=RUN_DIR)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def clean(run_dir: Path, yes: bool) -> None:
    """Delete RUN_DIR and everything the run created."""
    from curate.recipes import clean_run
    from curate.recipes.runner import require_run

    require_run(run_dir)  # a wrong path fails here, before any question
    if not yes and sys.stdin.isatty():
        click.confirm(f"delete {run_dir} and everything in it?", abort=True)
    removed = clean_run(run_dir)
    click.echo(f"removed {removed}")


@cli.command()
@click.argument("args", nargs=-1, required=True, metavar="[apply] RUN_DIR")
@_set_option
@click.option("--force", is_flag=True, help="Rerun the steps even if they are up to date.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def audit(args: tuple[str, ...], overrides: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Audit labels (`curate audit RUN_DIR`), or apply the App review (`curate audit apply RUN_DIR`).

    `audit` runs the run's `audit` steps: label issues, mistake categories, outliers, an HTML
    report and review views in the App. `audit apply` reads the reviewers' tags back and writes
    a cleaned table version (the `audit_apply` steps).
    """
    from curate.errors import UsageError
    from curate.recipes.runner import run_steps_of_kind

    if len(args) == 2 and args[0] == "apply":
        kinds, run_dir = ("audit_apply",), args[1]
    elif len(args) == 1 and args[0] != "apply":
        kinds, run_dir = ("audit",), args[0]
    else:
        raise UsageError("usage: curate audit RUN_DIR  or  curate audit apply RUN_DIR")
    _report(run_steps_of_kind, Path(run_dir), kinds, overrides=overrides, force=force, quiet=quiet)


@cli.group()
def index() -> None:
    """FAISS similarity index of a run: build it, query it, find duplicates."""


_kind_command("build", ("index",), "Build the run's FAISS index.", group=index)
_kind_command("dups", ("duplicates",), "Find exact and near duplicates and train/test leaks.", group=index)


@index.command("query")
@click.argument("run_dir", type=RUN_DIR)
@click.option("--id", "sample_id", help="Query by a sample id of the run's table.")
@click.option("--image", "image_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Query by an image file (embedded with the index's model).")
@click.option("--vector", "vector_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Query by a vector saved as .npy.")
@click.option("-k", default=10, show_default=True, help="Number of neighbours.")
@click.option("--step", "index_step", help="Which index step (default: the only one).")
def index_query(run_dir: Path, sample_id: str | None, image_path: Path | None, vector_path: Path | None, k: int,
                index_step: str | None) -> None:
    """Print the nearest neighbours (distance, set, label, split, sample id) of a sample, image or vector."""
    from curate.index.query import format_neighbors, query_index

    vector = None
    if vector_path is not None:
        import numpy as np

        vector = np.load(vector_path, allow_pickle=False)
    neighbors = query_index(run_dir, index_step=index_step, sample_id=sample_id, image_path=image_path,
                            vector=vector, k=k)
    for line in format_neighbors(neighbors):
        click.echo(line)


@cli.command()
@click.argument("run_dir", type=RUN_DIR)
@click.option("--push", "push_to", metavar="REPO_ID", help="Also push to this Hugging Face Hub dataset repo.")
@click.option("--public", is_flag=True, help="Make a pushed repo public (default: private).")
def export(run_dir: Path, push_to: str | None, public: bool) -> None:
    """Export the run's table as a DatasetDict (Parquet + save_to_disk) with a dataset card."""
    from curate.recipes.export_run import export_run

    for result in export_run(run_dir, push_to=push_to, private=not public):
        click.echo(f"{result.step}: {result.folder}" + (f"  -> {result.url}" if result.url else ""))


@cli.command()
@click.argument("run_dir", type=RUN_DIR)
@click.option("--port", type=int, default=5151, show_default=True, help="Port of the App server.")
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Interface to bind; 0.0.0.0 exposes the App to your network.")
@click.option("--telemetry/--no-telemetry", default=False, show_default=True,
              help="Allow FiftyOne's usage tracking.")
def app(run_dir: Path, port: int, address: str, telemetry: bool) -> None:
    """Open RUN_DIR's FiftyOne dataset in the App (Ctrl-C stops it)."""
    from curate.fo import open_app

    handle = open_app(run_dir, port=port, address=address, telemetry=telemetry)
    click.echo(f"FiftyOne App: {handle.url}   (Ctrl-C to stop)")
    try:
        handle.wait()
    except KeyboardInterrupt:
        pass
    finally:
        handle.close()


def main() -> None:
    cli(prog_name="curate")


if __name__ == "__main__":  # pragma: no cover
    main()

