"""``curate export RUN``: run a run's export steps, then optionally push the result to the Hub.

It lives with the runner (the edge ring) because it runs steps; the export itself is in
:mod:`curate.export`, which never imports the runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from curate import workspace
from curate.errors import UsageError
from curate.recipes.runner import run_steps_of_kind


@dataclass(frozen=True)
class ExportResult:
    step: str
    folder: Path  # the Hub layout: README.md + data/*.parquet
    dataset_dir: Path  # save_to_disk copy (datasets.load_from_disk)
    url: str | None  # the Hub repo, when pushed


def export_run(run_dir: str | Path, *, push_to: str | None = None, private: bool = True,
               progress: bool = True) -> list[ExportResult]:
    """Run (or reuse) the run's ``export`` steps; with ``push_to`` upload the export to that Hub
    dataset repo (the run must have exactly one export step)."""
    from curate.export.hub import push_folder

    run_dir = Path(run_dir)
    outcome = run_steps_of_kind(run_dir, ["export"], progress=progress)
    steps = [o.id for o in outcome.outcomes if o.kind == "export"]
    if push_to is not None and len(steps) != 1:
        raise UsageError(f"run {run_dir} has {len(steps)} export steps ({', '.join(steps)}); "
                         "push one with its recipe's `push_to_hub` option instead of --push")
    results = []
    for step in steps:
        entry = workspace.read_manifest(run_dir / step)["outputs"]["export"]
        folder, dataset_dir = run_dir / step / entry["path"], run_dir / step / entry["dataset"]
        url = push_folder(folder, push_to, private=private, local_copy=folder) if push_to else None
        results.append(ExportResult(step=step, folder=folder, dataset_dir=dataset_dir, url=url))
    return results
